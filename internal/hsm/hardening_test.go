package hsm

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"testing"
	"time"

	"github.com/miekg/pkcs11"

	"github.com/hsmpool/hsmpool/internal/fault"
	"github.com/hsmpool/hsmpool/internal/secret"
)

// TestPlantedKEK: a user-PIN holder can destroy the KEK and create a key of their own under
// its label. FindKEK refuses one that lacks the KEK policy; one that copies the policy
// passes FindKEK, and VerifyKEK against the domain's check record refuses it.
func TestPlantedKEK(t *testing.T) {
	p := newPool(t, 0)
	ctx := context.Background()
	kek := newKEK(t, p)
	check, err := p.NewKEKCheck(ctx, kek)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.VerifyKEK(ctx, kek, check); err != nil {
		t.Fatalf("the real KEK fails its own check: %v", err)
	}
	found, err := p.FindKEK(ctx, "domain-kek")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.VerifyKEK(ctx, found, check); err != nil {
		t.Fatalf("the KEK found again fails its check: %v", err)
	}

	plant := func(decrypt bool) {
		t.Helper()
		err := p.withSession(ctx, func(s pkcs11.SessionHandle) error {
			if objs, _ := p.findByLabel(s, "domain-kek"); len(objs) == 1 {
				if err := p.mod.ctx.DestroyObject(s, objs[0]); err != nil {
					return err
				}
			}
			nested, free := nestedTemplate(kekUnwrapPolicy)
			defer free()
			var tmpl []*pkcs11.Attribute
			for _, a := range kekTemplate("domain-kek", nested) {
				switch a.Type {
				case pkcs11.CKA_VALUE_LEN:
					continue
				case pkcs11.CKA_DECRYPT:
					a = attr(pkcs11.CKA_DECRYPT, decrypt)
				case pkcs11.CKA_MODIFIABLE: // the attacker's value goes before it
					tmpl = append(tmpl, attr(pkcs11.CKA_VALUE, make([]byte, 32)))
				}
				tmpl = append(tmpl, a)
			}
			_, err := p.mod.ctx.CreateObject(s, tmpl)
			return err
		})
		if err != nil {
			t.Fatalf("plant a KEK: %v", err)
		}
	}
	plant(true)
	if _, err := p.FindKEK(ctx, "domain-kek"); fault.Of(err) != fault.Forbidden {
		t.Errorf("FindKEK of a planted key with CKA_DECRYPT: err = %v, want Forbidden", err)
	}
	plant(false)
	fake, err := p.FindKEK(ctx, "domain-kek")
	if err != nil {
		t.Fatalf("a planted key with the KEK's attributes: %v", err)
	}
	if err := p.VerifyKEK(ctx, fake, check); fault.Of(err) != fault.Forbidden {
		t.Errorf("VerifyKEK of a planted key: err = %v, want Forbidden", err)
	}
}

// TestRSAMechanismLimits: the token, not only the layer, keeps an RSA key to what its
// usage allows; in particular a sign-only key cannot do raw RSA, which would decrypt.
func TestRSAMechanismLimits(t *testing.T) {
	p := newPool(t, 0)
	kek := newKEK(t, p)
	ctx := context.Background()
	signOnly := workingKey(t, p, kek, Spec{Type: RSA, Bits: 2048}, UseSign)
	decryptOnly := workingKey(t, p, kek, Spec{Type: RSA, Bits: 2048}, UseDecrypt)
	raw := []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_X_509, nil)}
	err := p.withSession(ctx, func(s pkcs11.SessionHandle) error {
		c := p.mod.ctx
		if err := c.SignInit(s, raw, signOnly.obj); err == nil {
			_, _ = c.Sign(s, make([]byte, 256))
			t.Error("a sign-only RSA key does raw RSA")
		}
		if err := c.DecryptInit(s, raw, signOnly.obj); err == nil {
			_, _ = c.Decrypt(s, make([]byte, 256))
			t.Error("a sign-only RSA key decrypts")
		}
		if err := c.SignInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS, nil)}, decryptOnly.obj); err == nil {
			_, _ = c.Sign(s, make([]byte, 51))
			t.Error("a decrypt-only RSA key signs")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The routes the layer needs still work.
	digest := make([]byte, 32)
	if _, err := p.Sign(ctx, signOnly, PS256, digest); err != nil {
		t.Errorf("PS256 with a sign-only key: %v", err)
	}
	ct, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, decryptOnly.Public().(*rsa.PublicKey), digest, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Decrypt(ctx, decryptOnly, RSAOAEP256, Ciphertext{Value: ct}, nil); err != nil {
		t.Errorf("RSA-OAEP-256 with a decrypt-only key: %v", err)
	}
}

// TestImportChecksThePair: imports of every size and curve work, and a private key that
// does not belong to the public key given with it is refused.
func TestImportChecksThePair(t *testing.T) {
	p := newPool(t, 0)
	ctx := context.Background()
	for _, c := range []Curve{P256, P384, P521} {
		a, _ := ecdsa.GenerateKey(curves[c].goCurve, rand.Reader)
		b, _ := ecdsa.GenerateKey(curves[c].goCurve, rand.Reader)
		da, _ := a.Bytes()
		pa, _ := a.PublicKey.Bytes()
		pb, _ := b.PublicKey.Bytes()
		size := curves[c].size
		k, err := p.Import(ctx, Spec{Type: EC, Curve: c}, UseAll, &Material{X: pa[1 : 1+size], Y: pa[1+size:], D: secret.Copy(da)})
		if err != nil {
			t.Errorf("import %s: %v", c, err)
		} else {
			_ = k.Destroy(ctx)
		}
		_, err = p.Import(ctx, Spec{Type: EC, Curve: c}, UseAll, &Material{X: pb[1 : 1+size], Y: pb[1+size:], D: secret.Copy(da)})
		if fault.Of(err) != fault.BadParameter {
			t.Errorf("import %s with another key's public point: err = %v, want BadParameter", c, err)
		}
	}
	a, _ := rsa.GenerateKey(rand.Reader, 2048)
	b, _ := rsa.GenerateKey(rand.Reader, 2048)
	for _, u := range []Usage{UseSign, UseDecrypt} {
		m := rsaMaterial(a)
		m.N = b.N.Bytes()
		if _, err := p.Import(ctx, Spec{Type: RSA, Bits: 2048}, u, m); fault.Of(err) != fault.BadParameter {
			t.Errorf("import RSA (usage %b) with another modulus: err = %v, want BadParameter", u, err)
		}
	}
}

// TestDestroyWithCancelledContext: a cancelled context does not leave the object behind.
func TestDestroyWithCancelledContext(t *testing.T) {
	p := newPool(t, 0)
	k, err := p.Generate(context.Background(), Spec{Type: AES, Bits: 128}, UseAll)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := k.Destroy(ctx); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	if err := getAttr(p, k.obj, pkcs11.CKA_KEY_TYPE); !isCKR(err, pkcs11.CKR_OBJECT_HANDLE_INVALID) {
		t.Errorf("the object survives Destroy with a cancelled context: %v", err)
	}
}

// TestCacheLoaderPanic: a loader that panics does not leave its ID hanging.
func TestCacheLoaderPanic(t *testing.T) {
	f := newCacheFixture(t, 1)
	c := NewCache(2)
	func() {
		defer func() { _ = recover() }()
		_ = c.Use(context.Background(), "v0", func(context.Context) (*Key, error) { panic("boom") }, func(*Key) error { return nil })
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Use(ctx, "v0", f.load("v0"), func(*Key) error { return nil }); err != nil {
		t.Fatalf("the ID is stuck after a panicking load: %v", err)
	}
}

// TestCacheHealsStaleHandle: a cached key whose object vanished from the token is unwrapped
// again on the next use instead of failing for ever.
func TestCacheHealsStaleHandle(t *testing.T) {
	f := newCacheFixture(t, 1)
	c := NewCache(2)
	ctx := context.Background()
	digest := make([]byte, 32)
	sign := func(k *Key) error { _, err := f.p.Sign(ctx, k, ES256, digest); return err }
	var first *Key
	if err := c.Use(ctx, "v0", f.load("v0"), func(k *Key) error { first = k; return sign(k) }); err != nil {
		t.Fatal(err)
	}
	_ = f.p.withSession(ctx, func(s pkcs11.SessionHandle) error { return f.p.mod.ctx.DestroyObject(s, first.obj) })
	err := c.Use(ctx, "v0", f.load("v0"), sign)
	if !errors.Is(err, fault.NotFound) {
		t.Fatalf("sign with a vanished object: err = %v, want NotFound", err)
	}
	if err := c.Use(ctx, "v0", f.load("v0"), sign); err != nil {
		t.Errorf("the cache did not unwrap the key again: %v", err)
	}
	if f.unwraps.Load() != 2 {
		t.Errorf("%d unwraps, want 2", f.unwraps.Load())
	}
}

// TestCacheInvalidateDuringLoad: a key invalidated while it is being unwrapped is used
// once and then destroyed, not cached.
func TestCacheInvalidateDuringLoad(t *testing.T) {
	f := newCacheFixture(t, 1)
	c := NewCache(2)
	ctx := context.Background()
	var got *Key
	err := c.Use(ctx, "v0", func(ctx context.Context) (*Key, error) {
		k, err := f.load("v0")(ctx)
		c.Invalidate(ctx, "v0")
		return k, err
	}, func(k *Key) error { got = k; return nil })
	if err != nil {
		t.Fatal(err)
	}
	if c.Len() != 0 || f.alive(t, got) {
		t.Errorf("a key invalidated during its load is cached (%d) or alive", c.Len())
	}
}
