//go:build cgo

package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io/fs"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hsmpool/hsmpool/internal/daemon"
	"github.com/hsmpool/hsmpool/internal/softhsm"
	"github.com/hsmpool/hsmpool/pkg/client"
)

// requireSoftHSM fails the test in CI, and skips it elsewhere, when SoftHSM2 is not installed.
func requireSoftHSM(t *testing.T) {
	t.Helper()
	if _, err := softhsm.Module(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("SoftHSM2 is required in CI: %v", err)
		}
		t.Skipf("skipping: this test runs a pool on SoftHSM2, which is not installed (make deps installs it): %v", err)
	}
}

// TestPoolEndToEnd runs the CLI against a real pool: "hsmpoold dev" in this process (internal/daemon) on its own
// SoftHSM2 token, reached over TLS by its .localhost name with the client file it wrote. It goes through a pool's
// first day: three officers make their keys, the administrator activates the pool, officers check their shares,
// and an application creates, imports, uses, rotates, backs up, deletes and restores keys.
func TestPoolEndToEnd(t *testing.T) {
	requireSoftHSM(t)
	dir := t.TempDir()
	clientFile := startDevPool(t, filepath.Join(dir, "pool"))
	t.Setenv(client.EnvFile, clientFile)
	t.Setenv(envPassphrase, "")
	c := &cli{t: t, dir: dir}

	// Three officers make their keys; one with a passphrase file, one from the environment, one without.
	c.write("pass", "correct horse battery")
	c.ok("sd", "officer-keygen", "--out", c.path("o1"), "--bits", "2048", "--passphrase-file", c.path("pass"))
	t.Setenv(envPassphrase, "officer two's passphrase")
	c.ok("sd", "officer-keygen", "--out", c.path("o2"), "--bits", "2048")
	t.Setenv(envPassphrase, "")
	c.ok("sd", "officer-keygen", "--out", c.path("o3"), "--bits", "2048", "--no-passphrase")

	// Activation: the download writes the file 0600 and names the officers' thumbprints.
	out := c.ok("sd", "download", "--cert", c.path("o1.cer"), "--cert", c.path("o2.cer"), "--cert", c.path("o3.cer"),
		"--quorum", "2", "-o", c.path("sd.json"))
	c.match(c.lastStderr, `(?m)^hsmpool: next: each officer checks their own share, alone, with their own key:$`,
		`(?m)^hsmpool:   hsmpool sd inspect --sd-file \S+sd.json --key OFFICER.key$`)
	c.match(out, `(?m)^quorum: +2 of 3 officers$`, `(?m)^SHARE +THUMBPRINT +CERTIFICATE$`)
	inspected := c.ok("sd", "inspect", "--sd-file", c.path("sd.json"), "-o", "json")
	for i, o := range []string{"o1", "o2", "o3"} {
		cert, err := readCertificate(c.path(o + ".cer"))
		if err != nil {
			t.Fatal(err)
		}
		c.match(out, fmt.Sprintf(`(?m)^%d +%s +\S+%s.cer$`, i+1, thumbprintOf(cert), o))
		c.match(inspected, `"thumbprint": "`+thumbprintOf(cert)+`"`)
	}
	c.mode("sd.json", 0o600)
	c.fails("sd", "download", "--cert", c.path("o1.cer"), "--cert", c.path("o2.cer"), "--cert", c.path("o3.cer"),
		"--quorum", "2", "-o", c.path("sd.json")) // never over an existing file

	// Each officer's share opens with their own key, offline.
	c.ok("sd", "inspect", "--sd-file", c.path("sd.json"), "--key", c.path("o1.key"), "--passphrase-file", c.path("pass"))
	t.Setenv(envPassphrase, "officer two's passphrase")
	c.ok("sd", "inspect", "--sd-file", c.path("sd.json"), "--key", c.path("o2.key"))
	t.Setenv(envPassphrase, "")
	c.ok("sd", "inspect", "--sd-file", c.path("sd.json"), "--key", c.path("o3.key"))

	status := c.ok("sd", "status", "-o", "json")
	var st client.Status
	if err := json.Unmarshal([]byte(status), &st); err != nil || st.Status != client.StatusSuccess {
		t.Errorf("sd status -o json: %s (%v)", status, err)
	}

	// An EC key: create, get, list, sign, verify (by the pool, and locally with the public key it returns).
	out = c.ok("key", "create", "k1", "--kty", "EC-HSM", "--curve", "P-256", "--ops", "sign,verify", "--tag", "team=payments")
	c.match(out, `(?m)^name: +k1$`, `(?m)^kty: +EC-HSM$`, `(?m)^curve: +P-256$`, `(?m)^ops: +sign,verify$`, `(?m)^tags: +team=payments$`)
	k1 := c.keyJSON("k1")
	version := k1.Key.KID[strings.LastIndex(k1.Key.KID, "/")+1:]
	c.match(c.ok("key", "list"), `(?m)^NAME +KTY +ENABLED +VERSION +CREATED$`, `(?m)^k1 +EC-HSM +true +`+version+` +20\d\d-`)
	c.match(c.ok("key", "versions", "k1"), `(?m)^k1 +EC-HSM +true +`+version+` `)
	c.write("msg", "hello, pool")
	sig := strings.TrimSpace(c.ok("key", "sign", "k1", "--alg", "ES256", "--data-file", c.path("msg")))
	c.match(c.ok("key", "verify", "k1", "--alg", "ES256", "--data-file", c.path("msg"), "--signature", sig), `^ok\n$`)
	if !verifyES256(t, k1, []byte("hello, pool"), sig) {
		t.Errorf("the ES256 signature does not verify locally with the key's x and y")
	}
	c.write("other", "hello, world")
	c.failsWith("the signature does not verify", "key", "verify", "k1", "--alg", "ES256", "--data-file", c.path("other"), "--signature", sig)
	d := sha256.Sum256([]byte("hello, pool"))
	c.match(c.ok("key", "verify", "k1", "--version", version, "--alg", "ES256", "--digest", b64(d[:]), "--signature", sig, "-o", "json"), `"value": true`)

	// Disabled, the key does not sign; the error shows the pool's code and status.
	c.match(c.ok("key", "update", "k1", "--disable"), `(?m)^enabled: +false$`)
	c.failsWith("(HTTP 403 Forbidden)", "key", "sign", "k1", "--alg", "ES256", "--data-file", c.path("msg"))
	c.ok("key", "update", "k1", "--enable", "--tag", "team=ops", "--exp", "2099-01-01T00:00:00Z")

	// An RSA key: encrypt and decrypt, wrap and unwrap.
	c.match(c.ok("key", "create", "r1", "--kty", "RSA-HSM", "--size", "2048"), `(?m)^size: +2048$`)
	ct := c.field(c.ok("key", "encrypt", "r1", "--alg", "RSA-OAEP-256", "--value", b64([]byte("secret"))), "value")
	c.match(c.ok("key", "decrypt", "r1", "--alg", "RSA-OAEP-256", "--value", ct), "^"+b64([]byte("secret"))+"\n$")
	wrapped := strings.TrimSpace(c.ok("key", "wrap", "r1", "--alg", "RSA-OAEP", "--value", b64(bytes.Repeat([]byte{7}, 32))))
	c.match(c.ok("key", "unwrap", "r1", "--alg", "RSA-OAEP", "--value", wrapped), "^"+b64(bytes.Repeat([]byte{7}, 32))+"\n$")

	// An AES key: GCM with additional data, and key wrap.
	c.ok("key", "create", "a1", "--kty", "oct-HSM", "--size", "256")
	c.write("plain", "attack at dawn")
	enc := c.ok("key", "encrypt", "a1", "--alg", "A256GCM", "--in", c.path("plain"), "--aad", b64([]byte("ctx")))
	c.match(c.ok("key", "decrypt", "a1", "--alg", "A256GCM", "--value", c.field(enc, "value"), "--iv", c.field(enc, "iv"),
		"--tag", c.field(enc, "tag"), "--aad", b64([]byte("ctx"))), "^"+b64([]byte("attack at dawn"))+"\n$")
	c.fails("key", "decrypt", "a1", "--alg", "A256GCM", "--value", c.field(enc, "value"), "--iv", c.field(enc, "iv"),
		"--tag", c.field(enc, "tag"), "--aad", b64([]byte("other")))
	kw := strings.TrimSpace(c.ok("key", "wrap", "a1", "--alg", "A256KW", "--value", b64(bytes.Repeat([]byte{9}, 16))))
	c.match(c.ok("key", "unwrap", "a1", "--alg", "A256KW", "--value", kw), "^"+b64(bytes.Repeat([]byte{9}, 16))+"\n$")

	// Import: an EC key from PEM signs as the original key does; an AES key from a JWK.
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(ecKey)
	c.write("imported.pem", string(pemOf("PRIVATE KEY", der)))
	c.match(c.ok("key", "import", "i1", "--pem", c.path("imported.pem"), "--ops", "sign,verify"), `(?m)^kty: +EC-HSM$`)
	isig := strings.TrimSpace(c.ok("key", "sign", "i1", "--alg", "ES256", "--data-file", c.path("msg")))
	rawSig, _ := decodeB64(isig)
	if len(rawSig) != 64 || !ecdsa.Verify(&ecKey.PublicKey, d[:], new(big.Int).SetBytes(rawSig[:32]), new(big.Int).SetBytes(rawSig[32:])) {
		t.Errorf("the imported key's signature does not verify with the original key")
	}
	c.write("aes.jwk", `{"kty":"oct","k":"`+b64(bytes.Repeat([]byte{1}, 32))+`","key_ops":["wrapKey","unwrapKey"]}`)
	c.match(c.ok("key", "import", "i2", "--jwk", c.path("aes.jwk")), `(?m)^ops: +wrapKey,unwrapKey$`)

	// Rotation: a policy, then a new version.
	c.match(c.ok("key", "rotation-policy", "set", "k1", "--after-create", "P90D", "--expiry", "P2Y"), `(?m)^rotate: +after create P90D$`, `(?m)^expiry: +P2Y$`)
	c.match(c.ok("key", "rotation-policy", "get", "k1"), `(?m)^rotate: +after create P90D$`)
	rotated := c.ok("key", "rotate", "k1")
	if strings.Contains(rotated, version) {
		t.Errorf("key rotate did not make a new version:\n%s", rotated)
	}
	if n := strings.Count(c.ok("key", "versions", "k1"), "\nk1 "); n != 2 {
		t.Errorf("key versions k1: %d versions after a rotation, want 2", n)
	}

	// Backup, delete, recover, delete, purge, restore.
	c.ok("key", "backup", "k1", "-o", c.path("k1.backup"))
	c.mode("k1.backup", 0o600)
	c.match(c.ok("key", "delete", "k1"), `(?m)^recovery id: +https://`, `(?m)^purged after: +20`)
	c.failsWith("KeyNotFound (HTTP 404 Not Found)", "key", "get", "k1")
	c.ok("key", "recover", "k1")
	c.ok("key", "get", "k1")
	c.ok("key", "delete", "k1")
	c.match(c.ok("key", "purge", "k1"), `^$`)
	c.failsWith("(HTTP 404 Not Found)", "key", "recover", "k1")
	c.match(c.ok("key", "restore", "-i", c.path("k1.backup")), `(?m)^name: +k1$`)
	if n := strings.Count(c.ok("key", "versions", "k1"), "\nk1 "); n != 2 {
		t.Errorf("key versions k1 after restore: %d versions, want 2", n)
	}

	// Random bytes.
	c.match(c.ok("random", "--count", "32"), `^[A-Za-z0-9_-]{43}\n$`)
	c.match(c.ok("random", "--count", "5", "-o", "json"), `"value": "[A-Za-z0-9_-]{7}"`)

	// The cluster of a dev pool is its one node, which leads; there is no other to remove. --url names the same
	// node by the client file's URL.
	var cf map[string]any
	b, _ := os.ReadFile(clientFile)
	_ = json.Unmarshal(b, &cf)
	cs := c.ok("cluster", "status", "--url", cf["url"].(string))
	c.match(cs, `^leader: (node-\S+) \(answered by node-\S+\)\n`, `(?m)^NODE +ROLE +SUFFRAGE +RAFT ADDR +NODE API +TERM +APPLIED +LAG +HSM$`,
		`(?m)^node-\S+ +Leader +Voter +127\.0\.0\.1:\d+ +\S+ +[1-9]\d* +[1-9]\d* +0 +ok\n$`)
	var cst client.ClusterStatus
	if err := json.Unmarshal([]byte(c.ok("cluster", "status", "-o", "json")), &cst); err != nil || len(cst.Nodes) != 1 ||
		cst.LeaderID != cst.AnsweredBy || cst.Nodes[0].NodeID != cst.LeaderID || !cst.Nodes[0].HSMOk || !cst.Nodes[0].Reachable {
		t.Errorf("cluster status -o json: %+v (%v)", cst, err)
	}
	c.failsWith("cluster remove: BadParameter (HTTP 400 Bad Request)", "cluster", "remove", "node-absent")

	// A wrong secret: the token endpoint's error, never the secret.
	secret := cf["client_secret"].(string)
	cf["client_secret"] = "wrong-" + secret
	bad, _ := json.Marshal(cf)
	c.write("bad-client.json", string(bad))
	stderr := c.fails("key", "list", "--client-file", c.path("bad-client.json"))
	if strings.Contains(stderr, secret) || !strings.Contains(stderr, "hsmpool: hint: the pool did not accept the client file's credentials") {
		t.Errorf("key list with a wrong secret: stderr\n%s", stderr)
	}
}

// startDevPool starts the embedded default in dir, in this process, and returns the client file it wrote. The
// pool stops at the end of the test; its log is shown if the test fails.
func startDevPool(t *testing.T, dir string) string {
	t.Helper()
	var logBuf lockedBuffer
	log := slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithCancel(context.Background())
	cfg, _, err := daemon.DevConfig(ctx, daemon.DevOptions{DataDir: dir, Listen: freeListen(t), Name: "contoso"}, log)
	if err != nil {
		cancel()
		t.Fatalf("make the dev pool: %v", err)
	}
	ready := make(chan daemon.Ready, 1)
	done := make(chan error, 1)
	go func() { done <- daemon.Run(ctx, cfg, log, func(r daemon.Ready) { ready <- r }) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("the pool stopped with: %v", err)
			}
		case <-time.After(60 * time.Second):
			t.Errorf("the pool did not stop within 60 s")
		}
		if t.Failed() {
			t.Logf("pool log:\n%s", logBuf.String())
		}
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("the pool did not start: %v\n%s", err, logBuf.String())
	case <-time.After(2 * time.Minute):
		t.Fatalf("the pool did not start within 2 minutes\n%s", logBuf.String())
	}
	return filepath.Join(dir, "client.json")
}

// freeListen returns 127.0.0.1:P where P and P+1 (dev's Raft port) are free.
func freeListen(t *testing.T) string {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		l2, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port+1))
		if err != nil {
			continue
		}
		l2.Close()
		return fmt.Sprintf("127.0.0.1:%d", port)
	}
	t.Fatal("no two consecutive free ports")
	return ""
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// cli runs hsmpool commands in a test, as run does for the real binary.
type cli struct {
	t          *testing.T
	dir        string
	lastStderr string
}

func (c *cli) path(name string) string { return filepath.Join(c.dir, name) }

func (c *cli) write(name, content string) {
	c.t.Helper()
	if err := os.WriteFile(c.path(name), []byte(content), 0o600); err != nil {
		c.t.Fatal(err)
	}
}

func (c *cli) exec(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = run(args, &out, &errOut)
	c.lastStderr = errOut.String()
	return code, out.String(), errOut.String()
}

// ok runs hsmpool with args, fails the test unless it exits 0, and returns its stdout.
func (c *cli) ok(args ...string) string {
	c.t.Helper()
	code, out, errOut := c.exec(args...)
	if code != 0 {
		c.t.Fatalf("hsmpool %s: exit code %d\nstderr:\n%s", strings.Join(args, " "), code, errOut)
	}
	return out
}

// fails runs hsmpool with args, fails the test if it exits 0, and returns its stderr, which must have the prefix.
func (c *cli) fails(args ...string) string {
	c.t.Helper()
	code, out, errOut := c.exec(args...)
	if code == 0 {
		c.t.Fatalf("hsmpool %s: exit code 0, want an error\nstdout:\n%s", strings.Join(args, " "), out)
	}
	if !strings.HasPrefix(errOut, "hsmpool: ") {
		c.t.Errorf("hsmpool %s: stderr %q, want the prefix \"hsmpool: \"", strings.Join(args, " "), errOut)
	}
	return errOut
}

// failsWith is fails, and checks that stderr contains want.
func (c *cli) failsWith(want string, args ...string) {
	c.t.Helper()
	if errOut := c.fails(args...); !strings.Contains(errOut, want) {
		c.t.Errorf("hsmpool %s: stderr\n%s\nwant it to contain %q", strings.Join(args, " "), errOut, want)
	}
}

// match fails the test unless s matches every pattern.
func (c *cli) match(s string, patterns ...string) {
	c.t.Helper()
	for _, p := range patterns {
		if !regexp.MustCompile(p).MatchString(s) {
			c.t.Errorf("output\n%s\ndoes not match %s", s, p)
		}
	}
}

// field returns the value of the line "name: value" of s.
func (c *cli) field(s, name string) string {
	c.t.Helper()
	m := regexp.MustCompile(`(?m)^` + name + `: +(\S+)$`).FindStringSubmatch(s)
	if m == nil {
		c.t.Fatalf("no %s in\n%s", name, s)
	}
	return m[1]
}

// mode fails the test unless the file's permission bits are perm.
func (c *cli) mode(name string, perm fs.FileMode) {
	c.t.Helper()
	fi, err := os.Stat(c.path(name))
	if err != nil {
		c.t.Fatal(err)
	}
	if fi.Mode().Perm() != perm {
		c.t.Errorf("%s has mode %#o, want %#o", name, fi.Mode().Perm(), perm)
	}
}

// keyJSON is the part of "key get -o json" that the test reads.
type keyJSON struct {
	Key struct {
		KID string `json:"kid"`
		X   string `json:"x"`
		Y   string `json:"y"`
	} `json:"key"`
}

func (c *cli) keyJSON(name string) keyJSON {
	c.t.Helper()
	var k keyJSON
	out := c.ok("key", "get", name, "-o", "json")
	if err := json.Unmarshal([]byte(out), &k); err != nil || k.Key.KID == "" {
		c.t.Fatalf("key get %s -o json: %v\n%s", name, err, out)
	}
	return k
}

// verifyES256 verifies sig, base64url r||s, over SHA-256 of data with the P-256 key k.
func verifyES256(t *testing.T, k keyJSON, data []byte, sig string) bool {
	t.Helper()
	x, err1 := decodeB64(k.Key.X)
	y, err2 := decodeB64(k.Key.Y)
	s, err3 := decodeB64(sig)
	if err1 != nil || err2 != nil || err3 != nil || len(s) != 64 {
		t.Fatalf("bad key or signature: %v %v %v (%d bytes)", err1, err2, err3, len(s))
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
	if err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256(data)
	return ecdsa.Verify(pub, d[:], new(big.Int).SetBytes(s[:32]), new(big.Int).SetBytes(s[32:]))
}

func thumbprintOf(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return b64(sum[:])
}
