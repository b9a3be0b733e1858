// Smoke test of the unmodified Azure SDK for JavaScript (@azure/keyvault-keys, @azure/identity) against a running,
// activated hsmpool. test/js_test.go runs it with:
//
//   HSMPOOL_URL            https://<name>.managedhsm.localhost:<port>
//   HSMPOOL_TENANT         tenant id
//   HSMPOOL_AUTHORITY      authority host, e.g. https://127.0.0.1:<port>
//   HSMPOOL_CLIENT_ID      client id
//   HSMPOOL_CLIENT_SECRET  client secret
//   NODE_EXTRA_CA_CERTS    the pool's CA file
//   NODE_OPTIONS           --require ./localhost-dns.cjs (*.localhost → 127.0.0.1)
//
// It prints one line per step and exits 1 with the failing step, the error and the recent HTTP exchanges on the
// first failure. AZURE_LOG_LEVEL=verbose adds the SDK's own log.
import { ClientSecretCredential } from "@azure/identity";
import { CryptographyClient, KeyClient } from "@azure/keyvault-keys";
import crypto from "node:crypto";

function env(name) {
  const v = process.env[name];
  if (!v) {
    console.error(`smoke: environment variable ${name} is not set`);
    process.exit(2);
  }
  return v;
}

const url = env("HSMPOOL_URL");
const tenant = env("HSMPOOL_TENANT");
const authority = env("HSMPOOL_AUTHORITY");
const clientId = env("HSMPOOL_CLIENT_ID");
const secret = env("HSMPOOL_CLIENT_SECRET");

// The recent HTTP exchanges of the Key Vault clients, printed when a step fails.
const trail = [];
const recorder = {
  name: "hsmpoolSmokeRecorder",
  async sendRequest(request, next) {
    const entry = { method: request.method, url: request.url, reqBody: request.body };
    trail.push(entry);
    if (trail.length > 12) trail.shift();
    try {
      const response = await next(request);
      entry.status = response.status;
      entry.resBody = response.bodyAsText;
      entry.wwwAuth = response.headers.get("www-authenticate");
      return response;
    } catch (e) {
      entry.error = String(e);
      throw e;
    }
  },
};
// Every client gets the recorder, so the number of requests a step sent is known (local crypto sends none).
const clientOptions = { additionalPolicies: [{ policy: recorder, position: "perRetry" }] };
let requests = 0;
const counter = { name: "hsmpoolSmokeCounter", sendRequest: (req, next) => (requests++, next(req)) };
clientOptions.additionalPolicies.push({ policy: counter, position: "perRetry" });

const credential = new ClientSecretCredential(tenant, clientId, secret, {
  authorityHost: authority,
  disableInstanceDiscovery: true,
});
const keys = new KeyClient(url, credential, clientOptions);
const cryptoClient = (key) => new CryptographyClient(key, credential, clientOptions);

let current = "";
async function step(name, fn) {
  current = name;
  const t0 = Date.now();
  const detail = await fn();
  console.log(`ok   ${name}${detail ? ": " + detail : ""} (${Date.now() - t0} ms)`);
}

function check(cond, msg) {
  if (!cond) throw new Error(`check failed: ${msg}`);
}

function eq(a, b) {
  return Buffer.from(a).equals(Buffer.from(b));
}

async function expectStatus(promise, status, what) {
  try {
    await promise;
  } catch (e) {
    if (e.statusCode === status) return e.code;
    throw new Error(`${what}: want HTTP ${status}, got ${e.statusCode ?? ""} ${e.code ?? ""}: ${e.message}`);
  }
  throw new Error(`${what}: want HTTP ${status}, but it succeeded`);
}

const b64u = (b) => Buffer.from(b).toString("base64url");
const suffix = crypto.randomBytes(4).toString("hex");
const ecName = `js-ec-${suffix}`;
const rsaName = `js-rsa-${suffix}`;
const octName = `js-oct-${suffix}`;
const hsmKty = { EC: "EC-HSM", RSA: "RSA-HSM", oct: "oct-HSM" };

async function main() {
  const message = Buffer.from("hsmpool JS smoke test");

  // EC P-256: the service signs, the client and Node's crypto verify.
  let ec;
  await step("createEcKey P-256", async () => {
    ec = await keys.createEcKey(ecName, { curve: "P-256" });
    check(ec.name === ecName, `name ${ec.name}`);
    check(ec.keyType === hsmKty.EC, `keyType ${ec.keyType}, want EC-HSM`);
    check(ec.key?.crv === "P-256", `crv ${ec.key?.crv}`);
    check(ec.key?.x?.length === 32 && ec.key?.y?.length === 32, "x/y are not 32 bytes");
    check(ec.id?.startsWith(`${url}/keys/${ecName}/`), `id ${ec.id}`);
    check(ec.properties.version?.length > 0, "no version");
    check(ec.properties.enabled === true, `enabled ${ec.properties.enabled}`);
    return ec.id;
  });
  const ecPub = crypto.createPublicKey({
    key: { kty: "EC", crv: "P-256", x: b64u(ec.key.x), y: b64u(ec.key.y) },
    format: "jwk",
  });
  // A client built from the versionless key id fetches the key itself (GET /keys/<name>/).
  const ecCrypto = cryptoClient(`${url}/keys/${ecName}`);
  let sig;
  await step("ES256 sign (server)", async () => {
    const digest = crypto.createHash("sha256").update(message).digest();
    const r = await ecCrypto.sign("ES256", digest);
    sig = r.result;
    check(r.algorithm === "ES256", `algorithm ${r.algorithm}`);
    check(sig.length === 64, `signature is ${sig.length} bytes, want 64 (r||s)`);
    check(r.keyID === ec.id, `keyID ${r.keyID}, want ${ec.id}`);
    return `${sig.length}-byte signature`;
  });
  await step("ES256 verify (Node crypto, from the returned JWK)", async () => {
    check(crypto.verify("sha256", message, { key: ecPub, dsaEncoding: "ieee-p1363" }, sig), "Node rejects the signature");
    const bad = Buffer.from(sig);
    bad[5] ^= 1;
    check(!crypto.verify("sha256", message, { key: ecPub, dsaEncoding: "ieee-p1363" }, bad), "Node accepts a corrupted signature");
  });
  await step("ES256 verify (CryptographyClient)", async () => {
    const digest = crypto.createHash("sha256").update(message).digest();
    const good = await ecCrypto.verify("ES256", digest, sig);
    check(good.result === true, "verify(good signature) = false");
    const bad = Buffer.from(sig);
    bad[5] ^= 1;
    const r = await ecCrypto.verify("ES256", digest, bad);
    check(r.result === false, "verify(corrupted signature) = true");
    const v = await ecCrypto.verifyData("ES256", message, sig);
    check(v.result === true, "verifyData(good signature) = false");
  });
  await step("ES256 signData (server) + Node verify", async () => {
    const r = await ecCrypto.signData("ES256", message);
    check(crypto.verify("sha256", message, { key: ecPub, dsaEncoding: "ieee-p1363" }, r.result), "Node rejects signData's signature");
  });

  // RSA 2048: OAEP-256 on the service, OAEP (SHA-1) encrypted locally by the client from n/e.
  let rsa;
  await step("createRsaKey 2048", async () => {
    rsa = await keys.createRsaKey(rsaName, { keySize: 2048 });
    check(rsa.keyType === hsmKty.RSA, `keyType ${rsa.keyType}, want RSA-HSM`);
    check(rsa.key?.n?.length === 256, `n is ${rsa.key?.n?.length} bytes, want 256`);
    check(eq(rsa.key?.e ?? [], [1, 0, 1]), `e ${b64u(rsa.key?.e ?? [])}`);
    return rsa.id;
  });
  const rsaCrypto = cryptoClient(rsa);
  const rsaPub = crypto.createPublicKey({ key: { kty: "RSA", n: b64u(rsa.key.n), e: b64u(rsa.key.e) }, format: "jwk" });
  const secretText = Buffer.from("sixteen byte key and then some");
  await step("RSA-OAEP-256 encrypt/decrypt (server)", async () => {
    const before = requests;
    const enc = await rsaCrypto.encrypt({ algorithm: "RSA-OAEP-256", plaintext: secretText });
    check(requests > before, "RSA-OAEP-256 encrypt sent no request (want it on the server)");
    check(enc.result.length === 256, `ciphertext is ${enc.result.length} bytes`);
    const dec = await rsaCrypto.decrypt({ algorithm: "RSA-OAEP-256", ciphertext: enc.result });
    check(eq(dec.result, secretText), "decrypt did not recover the plaintext");
  });
  await step("RSA-OAEP-256 encrypt (Node crypto) + decrypt (server)", async () => {
    const ct = crypto.publicEncrypt({ key: rsaPub, padding: crypto.constants.RSA_PKCS1_OAEP_PADDING, oaepHash: "sha256" }, secretText);
    const dec = await rsaCrypto.decrypt({ algorithm: "RSA-OAEP-256", ciphertext: ct });
    check(eq(dec.result, secretText), "decrypt did not recover the plaintext");
  });
  await step("RSA-OAEP encrypt (client-local, n/e) + decrypt (server)", async () => {
    const before = requests;
    const enc = await rsaCrypto.encrypt({ algorithm: "RSA-OAEP", plaintext: secretText });
    check(requests === before, `RSA-OAEP encrypt sent ${requests - before} request(s); the JS client should do it locally`);
    const dec = await rsaCrypto.decrypt({ algorithm: "RSA-OAEP", ciphertext: enc.result });
    check(eq(dec.result, secretText), "decrypt did not recover the plaintext");
    return "encrypt sent no request";
  });

  // AES-256 (oct-HSM): GCM on the service.
  let oct;
  await step("createOctKey 256 (hsm)", async () => {
    oct = await keys.createOctKey(octName, { keySize: 256, hsm: true });
    check(oct.keyType === hsmKty.oct, `keyType ${oct.keyType}, want oct-HSM`);
    check(oct.key?.k === undefined, "the service returned the secret key material");
    return oct.id;
  });
  await step("A256GCM encrypt/decrypt (server)", async () => {
    const octCrypto = cryptoClient(oct);
    const aad = Buffer.from("associated data");
    const enc = await octCrypto.encrypt({ algorithm: "A256GCM", plaintext: message, additionalAuthenticatedData: aad });
    check(enc.iv?.length === 12, `iv is ${enc.iv?.length} bytes, want 12`);
    check(enc.authenticationTag?.length === 16, `tag is ${enc.authenticationTag?.length} bytes, want 16`);
    check(enc.result.length === message.length, `ciphertext is ${enc.result.length} bytes, want ${message.length}`);
    const dec = await octCrypto.decrypt({
      algorithm: "A256GCM",
      ciphertext: enc.result,
      iv: enc.iv,
      authenticationTag: enc.authenticationTag,
      additionalAuthenticatedData: aad,
    });
    check(eq(dec.result, message), "decrypt did not recover the plaintext");
    const tag = Buffer.from(enc.authenticationTag);
    tag[0] ^= 1;
    await expectStatus(
      octCrypto.decrypt({ algorithm: "A256GCM", ciphertext: enc.result, iv: enc.iv, authenticationTag: tag, additionalAuthenticatedData: aad }),
      400,
      "decrypt with a corrupted tag",
    );
  });

  // Reads.
  await step("getKey (latest and by version)", async () => {
    const k = await keys.getKey(ecName);
    check(k.id === ec.id, `id ${k.id}, want ${ec.id}`);
    check(eq(k.key.x, ec.key.x) && eq(k.key.y, ec.key.y), "public key differs from createEcKey's");
    const v = await keys.getKey(ecName, { version: ec.properties.version });
    check(v.id === ec.id, `id ${v.id}`);
    await expectStatus(keys.getKey(`js-missing-${suffix}`), 404, "getKey of a missing key");
  });
  await step("listPropertiesOfKeys", async () => {
    const names = new Set();
    for await (const p of keys.listPropertiesOfKeys()) names.add(p.name);
    for (const n of [ecName, rsaName, octName]) check(names.has(n), `${n} is not listed (got ${[...names].join(", ")})`);
    return `${names.size} keys`;
  });

  // Soft delete, recover, delete, purge.
  await step("beginDeleteKey.pollUntilDone", async () => {
    const poller = await keys.beginDeleteKey(ecName, { intervalInMs: 200 });
    const d = await poller.pollUntilDone();
    check(d.name === ecName, `name ${d.name}`);
    check(d.properties.recoveryId === `${url}/deletedkeys/${ecName}`, `recoveryId ${d.properties.recoveryId}`);
    check(d.properties.deletedOn instanceof Date, "no deletedOn");
    check(d.properties.scheduledPurgeDate instanceof Date, "no scheduledPurgeDate");
  });
  await step("getDeletedKey", async () => {
    const d = await keys.getDeletedKey(ecName);
    check(d.name === ecName, `name ${d.name}`);
    check(d.key?.crv === "P-256", `crv ${d.key?.crv}`);
    await expectStatus(keys.getKey(ecName), 404, "getKey of a deleted key");
  });
  await step("listDeletedKeys", async () => {
    const names = [];
    for await (const d of keys.listDeletedKeys()) names.push(d.name);
    check(names.includes(ecName), `${ecName} is not listed (got ${names.join(", ")})`);
  });
  await step("beginRecoverDeletedKey.pollUntilDone", async () => {
    const poller = await keys.beginRecoverDeletedKey(ecName, { intervalInMs: 200 });
    const k = await poller.pollUntilDone();
    check(k.name === ecName, `name ${k.name}`);
  });
  await step("getKey after recovery + sign", async () => {
    const k = await keys.getKey(ecName);
    check(k.id === ec.id, `id ${k.id}, want ${ec.id}`);
    const r = await cryptoClient(k).signData("ES256", message);
    check(crypto.verify("sha256", message, { key: ecPub, dsaEncoding: "ieee-p1363" }, r.result), "Node rejects the signature");
  });
  await step("delete + purgeDeletedKey", async () => {
    for (const n of [ecName, rsaName, octName]) {
      await (await keys.beginDeleteKey(n, { intervalInMs: 200 })).pollUntilDone();
      await keys.purgeDeletedKey(n);
      await expectStatus(keys.getDeletedKey(n), 404, `getDeletedKey of purged ${n}`);
      await expectStatus(keys.getKey(n), 404, `getKey of purged ${n}`);
    }
    return "3 keys";
  });
}

const t0 = Date.now();
try {
  await main();
  console.log(`PASS hsmpool JS smoke: ${requests} requests in ${Date.now() - t0} ms`);
} catch (e) {
  console.error(`FAIL ${current}: ${e?.stack ?? e}`);
  if (e?.statusCode || e?.code) console.error(`  HTTP ${e.statusCode ?? "-"} code=${e.code ?? "-"}`);
  console.error("recent requests (oldest first):");
  for (const x of trail) {
    console.error(`  ${x.method} ${x.url} -> ${x.status ?? x.error ?? "?"}`);
    if (x.reqBody && typeof x.reqBody === "string") console.error(`    request:  ${x.reqBody.slice(0, 2000)}`);
    if (x.wwwAuth) console.error(`    www-authenticate: ${x.wwwAuth}`);
    if (x.resBody) console.error(`    response: ${x.resBody.slice(0, 2000)}`);
  }
  process.exit(1);
}
