package hsm

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/hsmpool/hsmpool/internal/secret"
	"github.com/hsmpool/hsmpool/internal/softhsm"
)

// The tests run against a real SoftHSM2. TestMain points SOFTHSM2_CONF at a temporary
// token directory before the module is first loaded; each test then makes a fresh token.
var testEnv struct {
	module   string
	tokenDir string
	missing  error // SoftHSM2 is not installed
}

func TestMain(m *testing.M) { os.Exit(testMain(m)) }

func testMain(m *testing.M) int {
	module, err := softhsm.Module()
	if err != nil {
		testEnv.missing = err
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "hsmpool-hsm-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	conf, err := softhsm.WriteConfig(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	os.Setenv("SOFTHSM2_CONF", conf)
	testEnv.module, testEnv.tokenDir = module, filepath.Join(dir, "tokens")
	return m.Run()
}

// requireSoftHSM fails the test when SoftHSM2 is missing in CI, and skips it, saying why,
// on a developer's machine.
func requireSoftHSM(t testing.TB) {
	t.Helper()
	if testEnv.missing == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("SoftHSM2 is required in CI: %v", testEnv.missing)
	}
	t.Skipf("skipping: this test needs SoftHSM2: %v (make test installs it)", testEnv.missing)
}

var tokenSeq atomic.Int64

const testUserPIN, testSOPIN = "user-1234", "so-5678"

// newToken initialises a fresh token and returns a Config for it with the PIN in a file.
func newToken(t testing.TB) Config {
	t.Helper()
	requireSoftHSM(t)
	label := fmt.Sprintf("t%d-%s", tokenSeq.Add(1), t.Name())
	if len(label) > 32 {
		label = label[:32]
	}
	if _, err := InitToken(context.Background(), testEnv.module, label, secret.Copy([]byte(testSOPIN)), secret.Copy([]byte(testUserPIN))); err != nil {
		t.Fatalf("init token: %v", err)
	}
	pinFile := filepath.Join(t.TempDir(), "pin")
	if err := os.WriteFile(pinFile, []byte(testUserPIN+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := Default()
	cfg.Module, cfg.TokenLabel, cfg.PINFile = testEnv.module, label, pinFile
	return cfg
}

// newPool opens a fresh token; it is closed when the test ends.
func newPool(t testing.TB, sessions int) *Pool {
	t.Helper()
	cfg := newToken(t)
	if sessions > 0 {
		cfg.Sessions = sessions
	}
	p, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("open pool: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("close pool: %v", err)
		}
	})
	return p
}

// newKEK makes a domain KEK on p.
func newKEK(t testing.TB, p *Pool) *KEK {
	t.Helper()
	kek, err := p.CreateKEK(context.Background(), "domain-kek")
	if err != nil {
		t.Fatalf("create KEK: %v", err)
	}
	return kek
}

// allSpecs is every key the pool supports.
var allSpecs = []Spec{
	{Type: RSA, Bits: 2048}, {Type: RSA, Bits: 3072}, {Type: RSA, Bits: 4096},
	{Type: EC, Curve: P256}, {Type: EC, Curve: P384}, {Type: EC, Curve: P521}, {Type: EC, Curve: P256K},
	{Type: AES, Bits: 128}, {Type: AES, Bits: 192}, {Type: AES, Bits: 256},
}

// workingKey generates a key, wraps it under kek and unwraps it, as the pool does for every
// key it serves: the result is a non-extractable object.
func workingKey(t testing.TB, p *Pool, kek *KEK, spec Spec, u Usage) *Key {
	t.Helper()
	ctx := context.Background()
	gen, err := p.Generate(ctx, spec, u)
	if err != nil {
		t.Fatalf("generate %s: %v", spec, err)
	}
	defer gen.Destroy(ctx)
	blob, err := p.Wrap(ctx, kek, gen)
	if err != nil {
		t.Fatalf("wrap %s: %v", spec, err)
	}
	k, err := p.Unwrap(ctx, kek, blob, spec, u, gen.Public())
	if err != nil {
		t.Fatalf("unwrap %s: %v", spec, err)
	}
	t.Cleanup(func() { _ = k.Destroy(context.Background()) })
	return k
}
