package hsm

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	"github.com/miekg/pkcs11"

	"github.com/hsmpool/hsmpool/internal/fault"
	"github.com/hsmpool/hsmpool/internal/secret"
)

func publicEqual(a, b crypto.PublicKey) bool {
	switch x := a.(type) {
	case *rsa.PublicKey:
		return x.Equal(b)
	case *ecdsa.PublicKey:
		return x.Equal(b)
	case *secp256k1.PublicKey:
		y, ok := b.(*secp256k1.PublicKey)
		return ok && x.IsEqual(y)
	}
	return a == nil && b == nil
}

// TestWrapUnwrapEveryKey: every key type wraps under the KEK and unwraps into a
// non-extractable object with the same public key; the unwrapped object can neither be
// read nor wrapped again.
func TestWrapUnwrapEveryKey(t *testing.T) {
	p := newPool(t, 0)
	kek := newKEK(t, p)
	ctx := context.Background()
	for _, spec := range allSpecs {
		t.Run(spec.String(), func(t *testing.T) {
			gen, err := p.Generate(ctx, spec, UseAll)
			if err != nil {
				t.Fatal(err)
			}
			defer gen.Destroy(ctx)
			blob, err := p.Wrap(ctx, kek, gen)
			if err != nil {
				t.Fatal(err)
			}
			k, err := p.Unwrap(ctx, kek, blob, spec, UseAll, gen.Public())
			if err != nil {
				t.Fatal(err)
			}
			defer k.Destroy(ctx)
			if !publicEqual(gen.Public(), k.Public()) {
				t.Errorf("public key changed across wrap and unwrap")
			}
			if spec.Type != AES && k.Public() == nil {
				t.Errorf("no public key")
			}
			if _, err := p.Wrap(ctx, kek, k); fault.Of(err) != fault.Forbidden {
				t.Errorf("wrapping an unwrapped key again: err = %v, want Forbidden", err)
			}
			attrs := readAttrs(t, p, k.obj, pkcs11.CKA_SENSITIVE, pkcs11.CKA_EXTRACTABLE)
			if !bytes.Equal(attrs[0], []byte{1}) || !bytes.Equal(attrs[1], []byte{0}) {
				t.Errorf("unwrapped key: sensitive=%v extractable=%v, want true/false", attrs[0], attrs[1])
			}
			secretAttr := uint(pkcs11.CKA_VALUE)
			if spec.Type == RSA {
				secretAttr = pkcs11.CKA_PRIVATE_EXPONENT
			}
			if err := getAttr(p, k.obj, secretAttr); !isCKR(err, pkcs11.CKR_ATTRIBUTE_SENSITIVE) {
				t.Errorf("reading the private value: err = %v, want CKR_ATTRIBUTE_SENSITIVE", err)
			}
		})
	}
	t.Run("wrong metadata", func(t *testing.T) {
		gen, _ := p.Generate(ctx, Spec{Type: RSA, Bits: 2048}, UseAll)
		other, _ := p.Generate(ctx, Spec{Type: RSA, Bits: 2048}, UseAll)
		defer gen.Destroy(ctx)
		defer other.Destroy(ctx)
		blob, _ := p.Wrap(ctx, kek, gen)
		if _, err := p.Unwrap(ctx, kek, blob, gen.Spec(), UseAll, other.Public()); fault.Of(err) != fault.BadParameter {
			t.Errorf("unwrap with another key's public key: err = %v, want BadParameter", err)
		}
		if _, err := p.Unwrap(ctx, kek, blob, Spec{Type: EC, Curve: P256}, UseAll, other.Public()); fault.Of(err) != fault.BadParameter {
			t.Errorf("unwrap with an RSA public key for an EC spec: err = %v, want BadParameter", err)
		}
		bad := bytes.Clone(blob)
		bad[len(bad)-1] ^= 1
		// Blobs come from the pool's own state: a bad one is an internal error, not the caller's.
		if _, err := p.Unwrap(ctx, kek, bad, gen.Spec(), UseAll, gen.Public()); fault.Of(err) != fault.Internal {
			t.Errorf("unwrap of a corrupted blob: err = %v, want Internal", err)
		}
	})
}

func readAttrs(t *testing.T, p *Pool, o pkcs11.ObjectHandle, types ...uint) [][]byte {
	t.Helper()
	var out [][]byte
	err := p.withSession(context.Background(), func(s pkcs11.SessionHandle) error {
		var tmpl []*pkcs11.Attribute
		for _, ty := range types {
			tmpl = append(tmpl, attr(ty, nil))
		}
		attrs, err := p.mod.ctx.GetAttributeValue(s, o, tmpl)
		for _, a := range attrs {
			out = append(out, a.Value)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func getAttr(p *Pool, o pkcs11.ObjectHandle, ty uint) error {
	return p.withSession(context.Background(), func(s pkcs11.SessionHandle) error {
		_, err := p.mod.ctx.GetAttributeValue(s, o, []*pkcs11.Attribute{attr(ty, nil)})
		return err
	})
}

// TestKEKPolicy checks, against the token, every protection docs/hsm.md claims for the
// domain KEK: each is an attack a user-PIN holder could otherwise mount.
func TestKEKPolicy(t *testing.T) {
	cfg := newToken(t)
	p, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	kek, err := p.CreateKEK(ctx, "domain-kek")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.CreateKEK(ctx, "domain-kek"); fault.Of(err) != fault.AlreadyExists {
		t.Errorf("second KEK with the same label: err = %v, want AlreadyExists", err)
	}
	app, err := p.Generate(ctx, Spec{Type: EC, Curve: P256}, UseAll)
	if err != nil {
		t.Fatal(err)
	}
	blob, err := p.Wrap(ctx, kek, app)
	if err != nil {
		t.Fatal(err)
	}

	checkKEKPolicy(t, p, kek, blob)
	_ = app.Destroy(ctx)

	// The KEK is a token object: it outlives the pool, and the blob still unwraps.
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	p2, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	kek2, err := p2.FindKEK(ctx, "domain-kek")
	if err != nil {
		t.Fatal(err)
	}
	k, err := p2.Unwrap(ctx, kek2, blob, app.Spec(), UseAll, app.Public())
	if err != nil {
		t.Fatalf("unwrap after reopening: %v", err)
	}
	digest := make([]byte, 32)
	rand.Read(digest)
	if _, err := p2.Sign(ctx, k, ES256, digest); err != nil {
		t.Errorf("sign after reopening: %v", err)
	}
	if _, err := p2.FindKEK(ctx, "other"); fault.Of(err) != fault.NotFound {
		t.Errorf("FindKEK of a missing label: err = %v, want NotFound", err)
	}
	// A blob from another domain does not unwrap.
	foreign := newKEKOn(t, p2, "foreign")
	if _, err := p2.Unwrap(ctx, foreign, blob, app.Spec(), UseAll, app.Public()); fault.Of(err) != fault.Internal {
		t.Errorf("unwrap under another KEK: err = %v, want Internal", err)
	}
}

// checkKEKPolicy mounts, as a user-PIN holder, every attack docs/hsm.md says the KEK's
// attributes stop, and checks the token refuses each. blob is an EC key wrapped under kek.
func checkKEKPolicy(t *testing.T, p *Pool, kek *KEK, blob []byte) {
	t.Helper()
	ctx := context.Background()
	attack := func(name string, want uint, f func(c *pkcs11.Ctx, s pkcs11.SessionHandle) error) {
		t.Helper()
		err := p.withSession(ctx, func(s pkcs11.SessionHandle) error { return f(p.mod.ctx, s) })
		if !isCKR(err, want) {
			t.Errorf("%s: err = %v, want %s", name, err, ckrError(want))
		}
	}
	kwp := []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_WRAP_PAD, nil)}
	attack("read the KEK value", pkcs11.CKR_ATTRIBUTE_SENSITIVE, func(c *pkcs11.Ctx, s pkcs11.SessionHandle) error {
		_, err := c.GetAttributeValue(s, kek.obj, []*pkcs11.Attribute{attr(pkcs11.CKA_VALUE, nil)})
		return err
	})
	attack("grant the KEK CKA_DECRYPT (AES-ECB oracle)", ckrActionProhibited, func(c *pkcs11.Ctx, s pkcs11.SessionHandle) error {
		return c.SetAttributeValue(s, kek.obj, []*pkcs11.Attribute{attr(pkcs11.CKA_DECRYPT, true)})
	})
	attack("copy the KEK", ckrActionProhibited, func(c *pkcs11.Ctx, s pkcs11.SessionHandle) error {
		_, err := c.CopyObject(s, kek.obj, []*pkcs11.Attribute{attr(pkcs11.CKA_LABEL, "copy")})
		return err
	})
	attack("encrypt with the KEK", pkcs11.CKR_KEY_FUNCTION_NOT_PERMITTED, func(c *pkcs11.Ctx, s pkcs11.SessionHandle) error {
		return c.EncryptInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_ECB, nil)}, kek.obj)
	})
	attack("unwrap an app key as readable", pkcs11.CKR_TEMPLATE_INCONSISTENT, func(c *pkcs11.Ctx, s pkcs11.SessionHandle) error {
		_, err := c.UnwrapKey(s, kwp, kek.obj, blob, []*pkcs11.Attribute{
			attr(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY), attr(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_EC),
			attr(pkcs11.CKA_TOKEN, false), attr(pkcs11.CKA_SENSITIVE, false), attr(pkcs11.CKA_EXTRACTABLE, false),
		})
		return err
	})
	attack("unwrap an app key as extractable", pkcs11.CKR_TEMPLATE_INCONSISTENT, func(c *pkcs11.Ctx, s pkcs11.SessionHandle) error {
		_, err := c.UnwrapKey(s, kwp, kek.obj, blob, []*pkcs11.Attribute{
			attr(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY), attr(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_EC),
			attr(pkcs11.CKA_TOKEN, false), attr(pkcs11.CKA_SENSITIVE, true), attr(pkcs11.CKA_EXTRACTABLE, true),
		})
		return err
	})
	attack("wrap the KEK under a key the user made", pkcs11.CKR_KEY_NOT_WRAPPABLE, func(c *pkcs11.Ctx, s pkcs11.SessionHandle) error {
		mine, err := c.CreateObject(s, []*pkcs11.Attribute{
			attr(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY), attr(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
			attr(pkcs11.CKA_TOKEN, false), attr(pkcs11.CKA_WRAP, true), attr(pkcs11.CKA_VALUE, make([]byte, 32)),
		})
		if err != nil {
			return err
		}
		defer c.DestroyObject(s, mine)
		_, err = c.WrapKey(s, kwp, mine, kek.obj)
		return err
	})
}

func newKEKOn(t *testing.T, p *Pool, label string) *KEK {
	t.Helper()
	kek, err := p.CreateKEK(context.Background(), label)
	if err != nil {
		t.Fatal(err)
	}
	return kek
}

// TestNoPlaintextKeyBytesOnDisk imports keys whose bytes the test knows, wraps them under
// the KEK, stores the blobs next to the token files as the pool stores them in its data
// directory, and proves that no file holds any of the secret bytes.
func TestNoPlaintextKeyBytesOnDisk(t *testing.T) {
	p := newPool(t, 0)
	kek := newKEK(t, p)
	ctx := context.Background()
	dataDir := t.TempDir()

	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(curves[P256].goCurve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecD, _ := ecKey.Bytes()
	ecPub, _ := ecKey.PublicKey.Bytes()
	aesKey := make([]byte, 32)
	rand.Read(aesKey)

	secrets := map[string][]byte{
		"RSA d": rsaKey.D.Bytes(), "RSA p": rsaKey.Primes[0].Bytes(), "RSA q": rsaKey.Primes[1].Bytes(),
		"EC d": ecD, "AES key": aesKey,
	}
	imports := []struct {
		spec Spec
		m    *Material
	}{
		{Spec{Type: RSA, Bits: 2048}, rsaMaterial(rsaKey)},
		{Spec{Type: EC, Curve: P256}, &Material{X: ecPub[1:33], Y: ecPub[33:], D: secret.Copy(ecD)}},
		{Spec{Type: AES, Bits: 256}, &Material{K: secret.Copy(aesKey)}},
	}
	for i, im := range imports {
		k, err := p.Import(ctx, im.spec, UseAll, im.m)
		if err != nil {
			t.Fatalf("import %s: %v", im.spec, err)
		}
		for _, s := range []secret.Bytes{im.m.D, im.m.P, im.m.K} {
			if s.Len() > 0 && !bytes.Equal(s.Reveal(), make([]byte, s.Len())) {
				t.Errorf("import %s did not wipe the material", im.spec)
			}
		}
		blob, err := p.Wrap(ctx, kek, k)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dataDir, "blob"+string(rune('0'+i))), blob, 0o600); err != nil {
			t.Fatal(err)
		}
		_ = k.Destroy(ctx)
	}
	// A KEK is a token object, so it is on disk: imported from known bytes, the scan can
	// look for them.
	kekBytes := make([]byte, 32)
	rand.Read(kekBytes)
	secrets["imported KEK"] = kekBytes
	if _, err := p.ImportKEK(ctx, "known-kek", secret.Copy(kekBytes)); err != nil {
		t.Fatal(err)
	}

	for _, dir := range []string{testEnv.tokenDir, dataDir} {
		if hits := scanFor(t, dir, secrets); len(hits) > 0 {
			t.Errorf("plaintext key bytes on disk: %v", hits)
		}
	}
	// The scanner itself finds what is there.
	if err := os.WriteFile(filepath.Join(dataDir, "leak"), append([]byte("xx"), ecD...), 0o600); err != nil {
		t.Fatal(err)
	}
	if hits := scanFor(t, dataDir, secrets); len(hits) != 1 {
		t.Errorf("scanner control: found %v, want exactly the planted EC d", hits)
	}
}

// scanFor returns "file: secret" for every file under dir that contains a secret.
func scanFor(t *testing.T, dir string, secrets map[string][]byte) []string {
	t.Helper()
	var hits []string
	files := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		for name, s := range secrets {
			if bytes.Contains(b, s) {
				hits = append(hits, path+": "+name)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files == 0 {
		t.Fatalf("no files under %s: the scan proves nothing", dir)
	}
	return hits
}

// TestDestroyKEK: a leaving node destroys its copy of the domain KEK. Afterwards the token
// finds no KEK, cannot unwrap a blob made under it, and a second destroy finds nothing.
func TestDestroyKEK(t *testing.T) {
	p := newPool(t, 0)
	kek := newKEK(t, p)
	ctx := context.Background()
	other := newKEKOn(t, p, "another-kek")
	gen, err := p.Generate(ctx, Spec{Type: AES, Bits: 256}, UseAll)
	if err != nil {
		t.Fatal(err)
	}
	defer gen.Destroy(ctx)
	blob, err := p.Wrap(ctx, kek, gen)
	if err != nil {
		t.Fatal(err)
	}
	n, err := p.DestroyKEK(ctx, "domain-kek")
	if err != nil || n != 1 {
		t.Fatalf("DestroyKEK = %d, %v; want 1, nil", n, err)
	}
	if _, err := p.FindKEK(ctx, "domain-kek"); fault.Of(err) != fault.NotFound {
		t.Errorf("FindKEK after DestroyKEK: err = %v, want NotFound", err)
	}
	if k, err := p.Unwrap(ctx, kek, blob, Spec{Type: AES, Bits: 256}, UseAll, nil); err == nil {
		k.Destroy(ctx)
		t.Error("a blob still unwraps under the destroyed KEK")
	}
	if n, err := p.DestroyKEK(ctx, "domain-kek"); err != nil || n != 0 {
		t.Errorf("second DestroyKEK = %d, %v; want 0, nil", n, err)
	}
	if _, err := p.FindKEK(ctx, other.label); err != nil {
		t.Errorf("the KEK of another label is gone: %v", err)
	}
}
