package hsm

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/miekg/pkcs11"

	"github.com/hsmpool/hsmpool/internal/fault"
)

func TestExchangeKey(t *testing.T) {
	ctx := context.Background()
	cfg := newToken(t)
	p, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ex, err := p.CreateExchangeKey(ctx, "exchange-1")
	if err != nil {
		t.Fatalf("CreateExchangeKey: %v", err)
	}
	if ex.Public().N.BitLen() != ExchangeKeyBits || ex.Label() != "exchange-1" {
		t.Fatalf("exchange key: %d bits, label %q", ex.Public().N.BitLen(), ex.Label())
	}
	if _, err := p.CreateExchangeKey(ctx, "exchange-1"); !errors.Is(err, fault.AlreadyExists) {
		t.Errorf("second CreateExchangeKey: %v, want AlreadyExists", err)
	}

	// The certificate the node publishes, self-signed through the token.
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "contoso exchange key"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageKeyEncipherment}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, ex.Public(), ex.Signer(ctx))
	if err != nil {
		t.Fatalf("CreateCertificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := cert.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature); err != nil {
		t.Errorf("self-signature: %v", err)
	}

	// The key and its public half survive a restart.
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	p, err = Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	ex, err = p.FindExchangeKey(ctx, "exchange-1")
	if err != nil {
		t.Fatalf("FindExchangeKey after reopening: %v", err)
	}
	if !ex.Public().Equal(cert.PublicKey) {
		t.Fatal("the exchange key found is not the one certified")
	}

	dec := ex.Decrypter(ctx)
	for _, n := range []int{0, 1, 32, 48, 64, 190} {
		msg := bytes.Repeat([]byte{byte(n)}, n)
		ct, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, ex.Public(), msg, nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := dec.Decrypt(rand.Reader, ct, &rsa.OAEPOptions{Hash: crypto.SHA256})
		if err != nil || !bytes.Equal(got, msg) {
			t.Errorf("Decrypt of %d bytes = %x, %v", n, got, err)
		}
	}

	ct, _ := rsa.EncryptOAEP(sha256.New(), rand.Reader, ex.Public(), []byte("hello"), nil)
	sha1CT, _ := rsa.EncryptOAEP(sha1.New(), rand.Reader, ex.Public(), []byte("hello"), nil)
	labelled, _ := rsa.EncryptOAEP(sha256.New(), rand.Reader, ex.Public(), []byte("hello"), []byte("l"))
	tampered := bytes.Clone(ct)
	tampered[100] ^= 1
	for _, tc := range []struct {
		name string
		ct   []byte
		opts crypto.DecrypterOpts
	}{
		{"tampered", tampered, &rsa.OAEPOptions{Hash: crypto.SHA256}},
		{"OAEP-SHA1 ciphertext", sha1CT, &rsa.OAEPOptions{Hash: crypto.SHA256}},
		{"other label", labelled, &rsa.OAEPOptions{Hash: crypto.SHA256}},
		{"short", ct[1:], &rsa.OAEPOptions{Hash: crypto.SHA256}},
		{"SHA-1 options", ct, &rsa.OAEPOptions{Hash: crypto.SHA1}},
		{"a hash instead of OAEP options", ct, crypto.SHA256},
		{"no options", ct, nil},
		{"label", ct, &rsa.OAEPOptions{Hash: crypto.SHA256, Label: []byte("l")}},
	} {
		if got, err := dec.Decrypt(rand.Reader, tc.ct, tc.opts); !errors.Is(err, fault.BadParameter) {
			t.Errorf("%s: Decrypt = %x, %v; want BadParameter", tc.name, got, err)
		}
	}

	signer := ex.Signer(ctx)
	digest := sha256.Sum256([]byte("data"))
	if _, err := signer.Sign(rand.Reader, digest[:], &rsa.PSSOptions{Hash: crypto.SHA256}); !errors.Is(err, fault.BadParameter) {
		t.Errorf("PSS signature: %v, want BadParameter", err)
	}
	if _, err := signer.Sign(rand.Reader, digest[:20], crypto.SHA1); !errors.Is(err, fault.BadParameter) {
		t.Errorf("SHA-1 signature: %v, want BadParameter", err)
	}

	// The private half is sensitive, unextractable, cannot gain rights, and signs nothing itself.
	err = p.withSession(ctx, func(s pkcs11.SessionHandle) error {
		c := p.mod.ctx
		if _, err := c.GetAttributeValue(s, ex.obj, []*pkcs11.Attribute{attr(pkcs11.CKA_PRIVATE_EXPONENT, nil)}); !isCKR(err, pkcs11.CKR_ATTRIBUTE_SENSITIVE) {
			t.Errorf("read CKA_PRIVATE_EXPONENT: %v, want CKR_ATTRIBUTE_SENSITIVE", err)
		}
		if err := c.SetAttributeValue(s, ex.obj, []*pkcs11.Attribute{attr(pkcs11.CKA_SIGN, true)}); err == nil {
			t.Error("CKA_SIGN could be set on the exchange key")
		}
		if err := c.SignInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_SHA256_RSA_PKCS, nil)}, ex.obj); err == nil {
			t.Error("C_SignInit with the exchange key succeeded")
		}
		attrs, err := c.GetAttributeValue(s, ex.obj, []*pkcs11.Attribute{attr(pkcs11.CKA_TOKEN, nil), attr(pkcs11.CKA_EXTRACTABLE, nil)})
		if err != nil {
			return err
		}
		if attrs[0].Value[0] != 1 || attrs[1].Value[0] != 0 {
			t.Errorf("CKA_TOKEN=%v CKA_EXTRACTABLE=%v", attrs[0].Value, attrs[1].Value)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	if err := p.DestroyExchangeKey(ctx, "exchange-1"); err != nil {
		t.Fatalf("DestroyExchangeKey: %v", err)
	}
	if _, err := p.FindExchangeKey(ctx, "exchange-1"); !errors.Is(err, fault.NotFound) {
		t.Errorf("FindExchangeKey after destroy: %v, want NotFound", err)
	}
	err = p.withSession(ctx, func(s pkcs11.SessionHandle) error {
		privs, pubs, err := p.findExchange(s, "exchange-1")
		if len(privs)+len(pubs) != 0 {
			t.Errorf("after destroy: %d private, %d public objects left", len(privs), len(pubs))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.DestroyExchangeKey(ctx, "exchange-1"); err != nil {
		t.Errorf("second DestroyExchangeKey: %v", err)
	}
}

// A key under the exchange key's label that does not carry its policy is refused.
func TestFindExchangeKeyRefusesOtherKeys(t *testing.T) {
	ctx := context.Background()
	p := newPool(t, 0)
	err := p.withSession(ctx, func(s pkcs11.SessionHandle) error {
		_, _, err := p.mod.ctx.GenerateKeyPair(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, nil)},
			[]*pkcs11.Attribute{attr(pkcs11.CKA_TOKEN, true), attr(pkcs11.CKA_LABEL, "planted"), attr(pkcs11.CKA_MODULUS_BITS, 2048)},
			[]*pkcs11.Attribute{attr(pkcs11.CKA_TOKEN, true), attr(pkcs11.CKA_LABEL, "planted"), attr(pkcs11.CKA_SENSITIVE, false), attr(pkcs11.CKA_EXTRACTABLE, true), attr(pkcs11.CKA_DECRYPT, true)})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.FindExchangeKey(ctx, "planted"); !errors.Is(err, fault.Forbidden) {
		t.Errorf("FindExchangeKey(planted) = %v, want Forbidden", err)
	}
	if _, err := p.FindExchangeKey(ctx, "absent"); !errors.Is(err, fault.NotFound) {
		t.Errorf("FindExchangeKey(absent) = %v, want NotFound", err)
	}
}
