package test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The JavaScript smoke test runs test/js/smoke.mjs, which uses the unmodified Azure SDK for JavaScript
// (@azure/keyvault-keys and @azure/identity, pinned in test/js/package-lock.json) against a real pool. It needs
// Node.js 18 or later. The packages declare Node 20 (@azure/identity stays at 4.13.1, the last 4.x release that
// supports Node 20); on Node 18, Debian 12's nodejs, which scripts/deps.sh installs on a machine without node, they
// only miss the Web Crypto global, which localhost-dns.cjs provides.

// jsDir holds package.json, package-lock.json and smoke.mjs; npm installs into jsDir/node_modules.
const jsDir = "js"

// jsStamp, inside node_modules, records the hash of the package files that the installed tree came from.
const jsStamp = ".hsmpool-installed"

// npmInstall runs npm ci in jsDir unless node_modules already matches package.json and package-lock.json.
func npmInstall(t *testing.T, npm string) {
	t.Helper()
	h := sha256.New()
	for _, f := range []string{"package.json", "package-lock.json"} {
		b, err := os.ReadFile(filepath.Join(jsDir, f))
		if err != nil {
			t.Fatal(err)
		}
		h.Write(b)
		h.Write([]byte{0})
	}
	sum := hex.EncodeToString(h.Sum(nil))
	stamp := filepath.Join(jsDir, "node_modules", jsStamp)
	if b, err := os.ReadFile(stamp); err == nil && strings.TrimSpace(string(b)) == sum {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund")
	cmd.Dir = jsDir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("npm ci in test/js: %v\n%s", err, out)
	}
	if err := os.WriteFile(stamp, []byte(sum+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("npm ci in test/js took %v", time.Since(start).Round(time.Millisecond))
}

// requireNode18 fails in CI, and skips elsewhere, when node is older than 18.
func requireNode18(t *testing.T, node string) {
	t.Helper()
	out, err := exec.Command(node, "--version").Output()
	if err != nil {
		t.Fatalf("node --version: %v", err)
	}
	v := strings.TrimSpace(string(out))
	major, _, _ := strings.Cut(strings.TrimPrefix(v, "v"), ".")
	if n, err := strconv.Atoi(major); err == nil && n >= 18 {
		return
	}
	msg := fmt.Sprintf("the JavaScript smoke test needs Node.js 18 or later; %s is %s", node, v)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip("skipping: " + msg)
}

func TestJSSmoke(t *testing.T) {
	node := requireTool(t, "node", "nodejs")
	npm := requireTool(t, "npm", "npm")
	requireNode18(t, node)
	npmInstall(t, npm)

	p := startPool(t)
	p.activate()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "smoke.mjs")
	cmd.Dir = jsDir
	env := []string{
		"HSMPOOL_URL=" + p.client.URL,
		"HSMPOOL_TENANT=" + p.client.TenantID,
		"HSMPOOL_AUTHORITY=" + p.client.AuthorityHost,
		"HSMPOOL_CLIENT_ID=" + p.client.ClientID,
		"HSMPOOL_CLIENT_SECRET=" + p.client.ClientSecret.Reveal(),
		"NODE_EXTRA_CA_CERTS=" + p.client.CAFile,
		// *.localhost does not resolve everywhere; this maps it to 127.0.0.1 inside node (client-compat.md §7).
		"NODE_OPTIONS=--require ./localhost-dns.cjs",
		// The SDK honours HTTP(S)_PROXY; the pool is on loopback.
		"NO_PROXY=localhost,.localhost,127.0.0.1",
		"no_proxy=localhost,.localhost,127.0.0.1",
	}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "NODE_EXTRA_CA_CERTS", "NODE_OPTIONS", "NO_PROXY", "no_proxy":
			continue
		}
		env = append(env, kv)
	}
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	if err != nil {
		if ctx.Err() != nil {
			err = errors.New("no result within 2 minutes")
		}
		// Stop the daemon first: its stderr is only safe to read once it has exited.
		p.stop()
		t.Fatalf("node smoke.mjs failed: %v\n%s\nhsmpoold stderr (end):\n%s", err, out.String(), lastBytes(p.stderr.String(), 16<<10))
	}
	t.Logf("node smoke.mjs (%v):\n%s", time.Since(start).Round(time.Millisecond), out.String())
}

// lastBytes returns at most the last n bytes of s.
func lastBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
