package hsm

import (
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/pkcs11"

	"github.com/hsmpool/hsmpool/internal/fault"
	"github.com/hsmpool/hsmpool/internal/secret"
)

func TestConfigValidate(t *testing.T) {
	slot := uint(1)
	base := Default()
	base.TokenLabel, base.PINFile = "t", "/pin"
	tests := []struct {
		name  string
		edit  func(*Config)
		names string // the setting the error must name
	}{
		{"no module", func(c *Config) { c.Module = "" }, "module"},
		{"no slot", func(c *Config) { c.TokenLabel = "" }, "token_label, slot_id"},
		{"both slot choices", func(c *Config) { c.SlotID = &slot }, "set only one"},
		{"long label", func(c *Config) { c.TokenLabel = strings.Repeat("x", 33) }, "token_label"},
		{"no PIN", func(c *Config) { c.PINFile = "" }, "pin_file, pin_env"},
		{"zero sessions", func(c *Config) { c.Sessions = 0 }, "sessions"},
		{"too many sessions", func(c *Config) { c.Sessions = MaxSessions + 1 }, "sessions"},
	}
	if err := base.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := base
			tc.edit(&c)
			err := c.Validate()
			if fault.Of(err) != fault.BadParameter || !strings.Contains(err.Error(), tc.names) {
				t.Errorf("err = %v, want BadParameter naming %q", err, tc.names)
			}
		})
	}
}

// TestOpenErrors: each way to misconfigure the HSM gives an error of the right kind that
// names what was wrong, and leaves nothing open.
func TestOpenErrors(t *testing.T) {
	cfg := newToken(t)
	ctx := context.Background()
	dir := t.TempDir()
	wrongPIN := filepath.Join(dir, "wrong")
	os.WriteFile(wrongPIN, []byte("not-the-pin"), 0o600)
	missingSlot := uint(987654)
	tests := []struct {
		name string
		edit func(*Config)
		kind fault.Kind
		says string
	}{
		{"wrong PIN", func(c *Config) { c.PINFile = wrongPIN }, fault.Unauthorized, "wrong PIN"},
		{"missing PIN file", func(c *Config) { c.PINFile = filepath.Join(dir, "nope") }, fault.BadParameter, "nope"},
		{"unset PIN variable", func(c *Config) { c.PINFile, c.PINEnv = "", "HSMPOOL_TEST_UNSET_PIN" }, fault.BadParameter, "HSMPOOL_TEST_UNSET_PIN"},
		{"no such token", func(c *Config) { c.TokenLabel = "no-such-token" }, fault.NotFound, `"no-such-token"`},
		{"no such slot", func(c *Config) { c.TokenLabel, c.SlotID = "", &missingSlot }, fault.NotFound, "slot 987654"},
		{"no such module", func(c *Config) { c.Module = filepath.Join(dir, "libnone.so") }, fault.NotFound, "libnone.so"},
		{"not a module", func(c *Config) { c.Module = wrongPIN }, fault.Unavailable, "could not be loaded"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := cfg
			tc.edit(&c)
			p, err := Open(ctx, c)
			if err == nil {
				p.Close()
				t.Fatal("Open succeeded")
			}
			if fault.Of(err) != tc.kind || !strings.Contains(err.Error(), tc.says) {
				t.Errorf("err = %v, want %v saying %q", err, tc.kind, tc.says)
			}
			if strings.Contains(err.Error(), testUserPIN) || strings.Contains(err.Error(), "not-the-pin") {
				t.Errorf("error shows a PIN: %v", err)
			}
		})
	}
	t.Run("PIN from the environment", func(t *testing.T) {
		c := cfg
		c.PINFile, c.PINEnv = "", "HSMPOOL_TEST_PIN"
		t.Setenv("HSMPOOL_TEST_PIN", testUserPIN)
		p, err := Open(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		p.Close()
	})
	t.Run("same slot twice", func(t *testing.T) {
		p, err := Open(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		if p2, err := Open(ctx, cfg); fault.Of(err) != fault.Conflict {
			if p2 != nil {
				p2.Close()
			}
			t.Errorf("second Open of one slot: err = %v, want Conflict", err)
		}
	})
	t.Run("by slot ID", func(t *testing.T) {
		p, err := Open(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		slot := p.Slot()
		p.Close()
		c := cfg
		c.TokenLabel, c.SlotID = "", &slot
		p, err = Open(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		if p.Label() != cfg.TokenLabel {
			t.Errorf("slot %d has token %q, want %q", slot, p.Label(), cfg.TokenLabel)
		}
		p.Close()
	})
	if _, err := InitToken(ctx, testEnv.module, cfg.TokenLabel, secret.Copy([]byte("so")), secret.Copy([]byte("user"))); fault.Of(err) != fault.AlreadyExists {
		t.Errorf("InitToken with a label in use: err = %v, want AlreadyExists", err)
	}
}

// TestConcurrentUse hammers one pool from many goroutines with operations that succeed and
// operations that fail in the token, then checks that every session came back.
func TestConcurrentUse(t *testing.T) {
	const sessions = 4
	p := newPool(t, sessions)
	kek := newKEK(t, p)
	ec := workingKey(t, p, kek, Spec{Type: EC, Curve: P256}, UseAll)
	aes := workingKey(t, p, kek, Spec{Type: AES, Bits: 256}, UseAll)
	cache := NewCache(8)
	gen, _ := p.Generate(context.Background(), Spec{Type: EC, Curve: P256}, UseAll)
	blob, err := p.Wrap(context.Background(), kek, gen)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 1000)
	for g := range 32 {
		wg.Go(func() {
			ctx := context.Background()
			digest := make([]byte, 32)
			rand.Read(digest)
			for i := range 20 {
				var err error
				switch (g + i) % 5 {
				case 0:
					_, err = p.Sign(ctx, ec, ES256, digest)
				case 1:
					var ct Ciphertext
					if ct, err = p.Encrypt(ctx, aes, A256GCM, digest, nil, nil); err == nil {
						_, err = p.Decrypt(ctx, aes, A256GCM, ct, nil)
					}
				case 2: // fails inside the token: tag does not authenticate
					_, e := p.Decrypt(ctx, aes, A256GCM, Ciphertext{Value: digest, IV: make([]byte, 12), Tag: make([]byte, 16)}, nil)
					if fault.Of(e) != fault.BadParameter {
						err = errors.Join(errors.New("bad tag not refused"), e)
					}
				case 3:
					err = cache.Use(ctx, "k1", func(ctx context.Context) (*Key, error) {
						return p.Unwrap(ctx, kek, blob, gen.Spec(), UseAll, gen.Public())
					}, func(k *Key) error {
						_, err := p.Sign(ctx, k, ES256, digest)
						return err
					})
				case 4:
					_, err = p.Random(ctx, 32)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := p.idle(); got != sessions {
		t.Errorf("%d of %d sessions are back in the pool", got, sessions)
	}
}

// TestSessionWaitIsBoundedByContext: with every session borrowed, an operation waits only
// until its context ends and returns the context's error unchanged; Close waits for the
// borrowed sessions and later operations fail as Unavailable.
func TestSessionWaitIsBoundedByContext(t *testing.T) {
	p := newPool(t, 2)
	release := make(chan struct{})
	held := make(chan struct{}, 2)
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			_ = p.withSession(context.Background(), func(pkcs11.SessionHandle) error {
				held <- struct{}{}
				<-release
				return nil
			})
		})
	}
	<-held
	<-held
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := p.Random(ctx, 8); !errors.Is(err, context.DeadlineExceeded) || err != context.DeadlineExceeded {
		t.Errorf("Random with all sessions busy: err = %v, want context.DeadlineExceeded unchanged", err)
	}
	cctx, ccancel := context.WithCancel(context.Background())
	ccancel()
	if _, err := p.Random(cctx, 8); err != context.Canceled {
		t.Errorf("Random with a cancelled context: err = %v, want context.Canceled", err)
	}

	closed := make(chan error)
	go func() { closed <- p.Close() }()
	select {
	case <-closed:
		t.Fatal("Close returned while sessions were borrowed")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	wg.Wait()
	if err := <-closed; err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, err := p.Random(context.Background(), 8); fault.Of(err) != fault.Unavailable {
		t.Errorf("Random after Close: err = %v, want Unavailable", err)
	}
}

// TestSessionReturnsAfterPanic: a panic inside an operation does not lose the session.
func TestSessionReturnsAfterPanic(t *testing.T) {
	p := newPool(t, 1)
	func() {
		defer func() { _ = recover() }()
		_ = p.withSession(context.Background(), func(pkcs11.SessionHandle) error { panic("boom") })
	}()
	if p.idle() != 1 {
		t.Fatal("the session did not come back after a panic")
	}
}

func TestRandom(t *testing.T) {
	p := newPool(t, 0)
	a, err := p.Random(context.Background(), 128)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := p.Random(context.Background(), 128)
	if len(a) != 128 || string(a) == string(b) {
		t.Errorf("Random returned %d bytes, equal twice: %v", len(a), string(a) == string(b))
	}
	for _, n := range []int{0, -1, maxRandom + 1} {
		if _, err := p.Random(context.Background(), n); fault.Of(err) != fault.BadParameter {
			t.Errorf("Random(%d): err = %v, want BadParameter", n, err)
		}
	}
}

// TestErrorMapping checks the CKR table through p11err, and real token failures end to end.
func TestErrorMapping(t *testing.T) {
	for _, tc := range []struct {
		rv   uint
		kind fault.Kind
	}{
		{pkcs11.CKR_PIN_INCORRECT, fault.Unauthorized},
		{pkcs11.CKR_SLOT_ID_INVALID, fault.NotFound},
		{pkcs11.CKR_MECHANISM_INVALID, fault.Unsupported},
		{pkcs11.CKR_KEY_TYPE_INCONSISTENT, fault.BadParameter},
		{pkcs11.CKR_DATA_LEN_RANGE, fault.BadParameter},
		{pkcs11.CKR_DEVICE_REMOVED, fault.Unavailable},
		{pkcs11.CKR_KEY_UNEXTRACTABLE, fault.Forbidden},
		{ckrActionProhibited, fault.Forbidden},
		{pkcs11.CKR_GENERAL_ERROR, fault.HSMFailure},
		{0x8000_0001, fault.HSMFailure}, // vendor-defined
	} {
		err := p11err("op", pkcs11.Error(tc.rv))
		if fault.Of(err) != tc.kind || !isCKR(err, tc.rv) || !errors.Is(err, pkcs11.Error(tc.rv)) {
			t.Errorf("CKR 0x%X: kind %v (want %v), err %v", tc.rv, fault.Of(err), tc.kind, err)
		}
	}
	if s := ckrError(ckrActionProhibited).Error(); s != "CKR_ACTION_PROHIBITED" {
		t.Errorf("CKR_ACTION_PROHIBITED prints as %q", s)
	}

	p := newPool(t, 0)
	kek := newKEK(t, p)
	k := workingKey(t, p, kek, Spec{Type: RSA, Bits: 2048}, UseAll)
	err := p.withSession(context.Background(), func(s pkcs11.SessionHandle) error {
		_, err := p.decryptOnce(s, k.obj, pkcs11.NewMechanism(pkcs11.CKM_RSA_AES_KEY_WRAP, nil), make([]byte, 256))
		return p11err("decrypt with CKM_RSA_AES_KEY_WRAP", err)
	})
	if fault.Of(err) != fault.Unsupported || !strings.Contains(err.Error(), "CKR_MECHANISM_INVALID") {
		t.Errorf("mechanism SoftHSM2 2.6.1 lacks: err = %v, want Unsupported", err)
	}
}
