// Preloaded with NODE_OPTIONS=--require: resolves localhost and every *.localhost name to 127.0.0.1 in this process.
// Such names do not resolve everywhere (RFC 6761 leaves it to the resolver; glibc here answers ENOTFOUND), and the
// pool's URL is https://<name>.managedhsm.localhost:<port>. Keeping the hostname, rather than dialing 127.0.0.1,
// keeps SNI, the Host header and the SDK's challenge-resource verification exactly as against a real Managed HSM
// (shared spec client-compat.md §7, option 3).
"use strict";
const dns = require("node:dns");

// Node 18 (Debian 12's nodejs) has Web Crypto only as require("node:crypto").webcrypto; the Azure SDK expects the
// global that Node 20 provides.
if (typeof globalThis.crypto === "undefined") {
  globalThis.crypto = require("node:crypto").webcrypto;
}

const lookup = dns.lookup;
dns.lookup = function (hostname, options, callback) {
  if (typeof options === "function") {
    callback = options;
    options = {};
  }
  const name = String(hostname).toLowerCase().replace(/\.$/, "");
  if (name !== "localhost" && !name.endsWith(".localhost")) {
    return lookup.call(this, hostname, options, callback);
  }
  const all = typeof options === "object" && options !== null && options.all;
  process.nextTick(() => (all ? callback(null, [{ address: "127.0.0.1", family: 4 }]) : callback(null, "127.0.0.1", 4)));
  return {};
};
