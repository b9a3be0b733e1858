package hsm

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"testing"

	"github.com/miekg/pkcs11"

	"github.com/hsmpool/hsmpool/internal/fault"
	"github.com/hsmpool/hsmpool/internal/keywrap"
	"github.com/hsmpool/hsmpool/internal/secret"
)

// TestPKCS8Encoding: the encodings built from raw JWK fields are byte for byte what Go's
// x509 package writes for the same keys.
func TestPKCS8Encoding(t *testing.T) {
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	got, err := rsaPKCS8(rsaMaterial(rk))
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := x509.MarshalPKCS8PrivateKey(rk); !bytes.Equal(got, want) {
		t.Errorf("RSA PKCS#8 differs from crypto/x509's")
	}
	for _, c := range []Curve{P256, P384, P521} {
		ek, _ := ecdsa.GenerateKey(curves[c].goCurve, rand.Reader)
		d, _ := ek.Bytes()
		pt, _ := ek.PublicKey.Bytes()
		size := curves[c].size
		// JWK fields may come without leading zeros; the encoding pads them back.
		m := &Material{X: bytes.TrimLeft(pt[1:1+size], "\x00"), Y: pt[1+size:], D: secret.Copy(bytes.TrimLeft(d, "\x00"))}
		got, err := ecPKCS8(c, m)
		if err != nil {
			t.Fatal(err)
		}
		if want, _ := x509.MarshalPKCS8PrivateKey(ek); !bytes.Equal(got, want) {
			t.Errorf("%s PKCS#8 differs from crypto/x509's", c)
		}
	}
	incomplete := rsaMaterial(rk)
	incomplete.QI = secret.Bytes{}
	if _, err := rsaPKCS8(incomplete); fault.Of(err) != fault.BadParameter {
		t.Errorf("RSA without qi: err = %v, want BadParameter", err)
	}
}

// TestImportKEK: a KEK imported from known bytes is that key (Go unwraps its blobs with
// RFC 5649), carries the whole KEK policy, and two tokens holding the same bytes read each
// other's blobs, which is what recovery and joining rely on.
func TestImportKEK(t *testing.T) {
	ctx := context.Background()
	value := make([]byte, 32)
	rand.Read(value)
	a := newPool(t, 0)
	kekA, err := a.ImportKEK(ctx, "domain-kek", secret.Copy(value))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.ImportKEK(ctx, "domain-kek", secret.Copy(value)); fault.Of(err) != fault.AlreadyExists {
		t.Errorf("second import under one label: err = %v, want AlreadyExists", err)
	}
	if _, err := a.ImportKEK(ctx, "short", secret.Copy(value[:16])); fault.Of(err) != fault.BadParameter {
		t.Errorf("16-byte KEK: err = %v, want BadParameter", err)
	}

	gen, err := a.Generate(ctx, Spec{Type: EC, Curve: P256}, UseAll)
	if err != nil {
		t.Fatal(err)
	}
	blob, err := a.Wrap(ctx, kekA, gen)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := aes.NewCipher(value)
	p8, err := keywrap.UnwrapPad(block, blob)
	if err != nil {
		t.Fatalf("the blob does not unwrap in Go under the imported bytes: %v", err)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(p8)
	if err != nil {
		t.Fatalf("unwrapped blob is not PKCS#8: %v", err)
	}
	if !parsed.(*ecdsa.PrivateKey).PublicKey.Equal(gen.Public()) {
		t.Error("the blob under the imported KEK holds another key")
	}
	checkKEKPolicy(t, a, kekA, blob)

	b := newPool(t, 0)
	kekB, err := b.ImportKEK(ctx, "domain-kek", secret.Copy(value))
	if err != nil {
		t.Fatal(err)
	}
	k, err := b.Unwrap(ctx, kekB, blob, gen.Spec(), UseAll, gen.Public())
	if err != nil {
		t.Fatalf("token B cannot unwrap token A's blob under the same KEK: %v", err)
	}
	digest := make([]byte, 32)
	rand.Read(digest)
	sig, err := b.Sign(ctx, k, ES256, digest)
	if err != nil {
		t.Fatal(err)
	}
	verifyInGo(t, gen.Public(), ES256, digest, sig)
}

// TestTransportKeyPolicy: the import transport key unwraps only one-use AES keys that
// cannot be read, extracted or used for anything but unwrapping.
func TestTransportKeyPolicy(t *testing.T) {
	p := newPool(t, 0)
	ctx := context.Background()
	err := p.withSession(ctx, func(s pkcs11.SessionHandle) error {
		priv, pub, err := p.transportKey(s)
		if err != nil {
			return err
		}
		eph := make([]byte, 32)
		enc, _ := rsa.EncryptOAEP(sha1.New(), rand.Reader, pub, eph, nil)
		oaep := []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_OAEP, pkcs11.NewOAEPParams(pkcs11.CKM_SHA_1, pkcs11.CKG_MGF1_SHA1, pkcs11.CKZ_DATA_SPECIFIED, nil))}
		for name, bad := range map[string]*pkcs11.Attribute{
			"readable":    attr(pkcs11.CKA_SENSITIVE, false),
			"extractable": attr(pkcs11.CKA_EXTRACTABLE, true),
			"decrypting":  attr(pkcs11.CKA_DECRYPT, true),
		} {
			tmpl := ephemeralTemplate()
			for i, a := range tmpl {
				if a.Type == bad.Type {
					tmpl[i] = bad
				}
			}
			if _, err := p.mod.ctx.UnwrapKey(s, oaep, priv, enc, tmpl); !isCKR(err, pkcs11.CKR_TEMPLATE_INCONSISTENT) {
				t.Errorf("unwrap a %s key with the transport key: err = %v, want CKR_TEMPLATE_INCONSISTENT", name, err)
			}
		}
		if err := p.mod.ctx.DecryptInit(s, oaep, priv); !isCKR(err, pkcs11.CKR_KEY_FUNCTION_NOT_PERMITTED) {
			t.Errorf("decrypt with the transport key: err = %v, want CKR_KEY_FUNCTION_NOT_PERMITTED", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
