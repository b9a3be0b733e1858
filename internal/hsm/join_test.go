package hsm

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"os"
	"path/filepath"
	"testing"

	"github.com/miekg/pkcs11"

	"github.com/hsmpool/hsmpool/internal/fault"
	"github.com/hsmpool/hsmpool/internal/keywrap"
	"github.com/hsmpool/hsmpool/internal/nodejoin"
	"github.com/hsmpool/hsmpool/internal/secret"
)

// soConfig is the security officer's config for the token of cfg.
func soConfig(t testing.TB, cfg Config) SOConfig {
	t.Helper()
	f := filepath.Join(t.TempDir(), "so-pin")
	if err := os.WriteFile(f, []byte(testSOPIN+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return SOConfig{Module: cfg.Module, TokenLabel: cfg.TokenLabel, SOPINFile: f}
}

func openPool(t testing.TB, cfg Config) *Pool {
	t.Helper()
	p, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("open pool: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// trust runs the security officer's step on the token of cfg. A and the SO share this test
// process, so the source pool must be closed meanwhile (one login per process and token);
// in production the SO's admin tool is a process of its own (softhsm-notes 1.4b).
func trust(t testing.TB, cfg Config, label string, pub *rsa.PublicKey) {
	t.Helper()
	if err := TrustJoinKey(context.Background(), soConfig(t, cfg), label, pub); err != nil {
		t.Fatalf("trust join key: %v", err)
	}
}

// TestJoinTransfer moves a KEK from token A to token B through both layers: B's join key,
// the SO's trust on A, A's wrap, the HPKE envelope, B's unwrap. B's KEK then carries the
// KEK policy, passes A's check record, and reads A's blobs and A reads B's.
func TestJoinTransfer(t *testing.T) {
	ctx := context.Background()
	cfgA, cfgB := newToken(t), newToken(t)
	a := openPool(t, cfgA)
	kekA := newKEK(t, a)
	check, err := a.NewKEKCheck(ctx, kekA)
	if err != nil {
		t.Fatal(err)
	}
	spec := Spec{Type: EC, Curve: P256}
	genA, err := a.Generate(ctx, spec, UseAll)
	if err != nil {
		t.Fatal(err)
	}
	blobA, err := a.Wrap(ctx, kekA, genA)
	if err != nil {
		t.Fatal(err)
	}

	// B: the join key and the offer.
	b := openPool(t, cfgB)
	jk, err := b.CreateJoinKey(ctx, "join-transport")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.CreateJoinKey(ctx, "join-transport"); fault.Of(err) != fault.AlreadyExists {
		t.Errorf("second join key under one label: err = %v, want AlreadyExists", err)
	}
	joiner, err := nodejoin.NewJoiner(jk.Public())
	if err != nil {
		t.Fatal(err)
	}
	offerBytes, _ := joiner.Offer().MarshalBinary()

	// A: the offer arrives; nothing is trusted yet.
	offer, err := nodejoin.ParseOffer(offerBytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.SendKEK(ctx, kekA, offer.Transport); fault.Of(err) != fault.Forbidden {
		t.Fatalf("SendKEK before the SO trusted the key: err = %v, want Forbidden", err)
	}
	if err := TrustJoinKey(ctx, soConfig(t, cfgA), "join-node-b", offer.Transport); fault.Of(err) != fault.Conflict {
		t.Errorf("TrustJoinKey beside an open pool: err = %v, want Conflict", err)
	}
	a.Close()
	trust(t, cfgA, "join-node-b", offer.Transport)
	a = openPool(t, cfgA)
	kekA, err = a.FindKEK(ctx, "domain-kek")
	if err != nil {
		t.Fatal(err)
	}
	wrapped, err := a.SendKEK(ctx, kekA, offer.Transport)
	if err != nil {
		t.Fatal(err)
	}
	if len(wrapped) != JoinKeyBits/8 {
		t.Errorf("wrapped KEK is %d bytes, want %d", len(wrapped), JoinKeyBits/8)
	}
	if _, err := a.SendKEK(ctx, kekA, offer.Transport); fault.Of(err) != fault.Forbidden {
		t.Errorf("second SendKEK on one trust: err = %v, want Forbidden (the trusted key is spent)", err)
	}
	binding := nodejoin.Binding{Pool: "contoso", Sender: "node-a", Joiner: "node-b"}
	sealed, err := nodejoin.Seal(offer, wrapped, binding)
	if err != nil {
		t.Fatal(err)
	}

	// B: open the envelope, receive the KEK.
	opened, err := joiner.Open(sealed, binding)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.ReceiveKEK(ctx, jk, "domain-kek", opened[1:]); fault.Of(err) != fault.BadParameter {
		t.Errorf("ReceiveKEK of a short blob: err = %v, want BadParameter", err)
	}
	garbage := bytes.Clone(opened)
	garbage[len(garbage)/2] ^= 1
	if _, err := b.ReceiveKEK(ctx, jk, "domain-kek", garbage); fault.Of(err) != fault.BadParameter {
		t.Errorf("ReceiveKEK of a corrupt blob: err = %v, want BadParameter", err)
	}
	if _, err := b.ReceiveKEK(ctx, jk, "domain-kek", opened); err != nil {
		t.Fatal(err)
	}
	kekB, err := b.FindKEK(ctx, "domain-kek") // checkPolicy: the whole KEK policy
	if err != nil {
		t.Fatal(err)
	}
	checkKEKPolicy(t, b, kekB, blobA)

	// The join key is gone.
	if _, err := b.FindJoinKey(ctx, "join-transport"); fault.Of(err) != fault.NotFound {
		t.Errorf("join key after ReceiveKEK: err = %v, want NotFound", err)
	}
	_ = b.withSession(ctx, func(s pkcs11.SessionHandle) error {
		privs, pubs, err := b.findExchange(s, "join-transport")
		if err != nil || len(privs)+len(pubs) != 0 {
			t.Errorf("join key objects after ReceiveKEK: %d private, %d public, err %v", len(privs), len(pubs), err)
		}
		return nil
	})

	// Same KEK: the check record verifies on both, and blobs cross both ways.
	for name, p := range map[string]*Pool{"A": a, "B": b} {
		kek := kekA
		if p == b {
			kek = kekB
		}
		if err := p.VerifyKEK(ctx, kek, check); err != nil {
			t.Errorf("VerifyKEK on %s: %v", name, err)
		}
	}
	kB, err := b.Unwrap(ctx, kekB, blobA, spec, UseAll, genA.Public())
	if err != nil {
		t.Fatalf("B unwraps A's blob: %v", err)
	}
	digest := make([]byte, 32)
	rand.Read(digest)
	sig, err := b.Sign(ctx, kB, ES256, digest)
	if err != nil {
		t.Fatal(err)
	}
	verifyInGo(t, genA.Public(), ES256, digest, sig)
	genB, err := b.Generate(ctx, Spec{Type: AES, Bits: 256}, UseEncrypt|UseDecrypt)
	if err != nil {
		t.Fatal(err)
	}
	blobB, err := b.Wrap(ctx, kekB, genB)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Unwrap(ctx, kekA, blobB, genB.Spec(), UseDecrypt, nil); err != nil {
		t.Errorf("A unwraps B's blob: %v", err)
	}

	// B's KEK leaves B only to a trusted key: not to an untrusted one a PIN holder makes.
	_ = b.withSession(ctx, func(s pkcs11.SessionHandle) error {
		other, _ := rsa.GenerateKey(rand.Reader, JoinKeyBits)
		o := createPublic(t, b, s, &other.PublicKey, false)
		defer b.destroy(s, o)
		if _, err := b.wrapKEKTo(s, kekB, o); fault.Of(err) != fault.Forbidden || !isCKR(err, pkcs11.CKR_KEY_NOT_WRAPPABLE) {
			t.Errorf("wrap B's KEK to an untrusted key: err = %v, want Forbidden with CKR_KEY_NOT_WRAPPABLE", err)
		}
		return nil
	})
}

// createPublic makes an RSA public key object in a user session, marked trusted if asked.
func createPublic(t testing.TB, p *Pool, s pkcs11.SessionHandle, pub *rsa.PublicKey, trusted bool) pkcs11.ObjectHandle {
	t.Helper()
	tmpl := []*pkcs11.Attribute{
		attr(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY),
		attr(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_RSA),
		attr(pkcs11.CKA_TOKEN, false),
		attr(pkcs11.CKA_MODULUS, pub.N.Bytes()),
		attr(pkcs11.CKA_PUBLIC_EXPONENT, []byte{1, 0, 1}),
		attr(pkcs11.CKA_WRAP, true),
	}
	if trusted {
		tmpl = append(tmpl, attr(pkcs11.CKA_TRUSTED, true))
	}
	o, err := p.mod.ctx.CreateObject(s, tmpl)
	if err != nil {
		t.Fatalf("create public key (trusted=%v): %v", trusted, err)
	}
	return o
}

// TestSendKEKUntrusted: a user-PIN holder cannot make a key trusted, and the token refuses
// to wrap the KEK to an untrusted one, even one with the right modulus.
func TestSendKEKUntrusted(t *testing.T) {
	ctx := context.Background()
	p := newPool(t, 0)
	kek := newKEK(t, p)
	k, _ := rsa.GenerateKey(rand.Reader, JoinKeyBits)
	_ = p.withSession(ctx, func(s pkcs11.SessionHandle) error {
		tmpl := []*pkcs11.Attribute{
			attr(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY), attr(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_RSA),
			attr(pkcs11.CKA_TOKEN, false), attr(pkcs11.CKA_MODULUS, k.N.Bytes()),
			attr(pkcs11.CKA_PUBLIC_EXPONENT, []byte{1, 0, 1}), attr(pkcs11.CKA_WRAP, true),
			attr(pkcs11.CKA_TRUSTED, true),
		}
		if _, err := p.mod.ctx.CreateObject(s, tmpl); !isCKR(err, pkcs11.CKR_ATTRIBUTE_READ_ONLY) {
			t.Errorf("user creates a trusted key: err = %v, want CKR_ATTRIBUTE_READ_ONLY", err)
		}
		o := createPublic(t, p, s, &k.PublicKey, false)
		defer p.destroy(s, o)
		if err := p.mod.ctx.SetAttributeValue(s, o, []*pkcs11.Attribute{attr(pkcs11.CKA_TRUSTED, true)}); !isCKR(err, pkcs11.CKR_ATTRIBUTE_READ_ONLY) {
			t.Errorf("user marks a key trusted: err = %v, want CKR_ATTRIBUTE_READ_ONLY", err)
		}
		if _, err := p.wrapKEKTo(s, kek, o); fault.Of(err) != fault.Forbidden || !isCKR(err, pkcs11.CKR_KEY_NOT_WRAPPABLE) {
			t.Errorf("wrap the KEK to an untrusted key: err = %v, want Forbidden with CKR_KEY_NOT_WRAPPABLE", err)
		}
		return nil
	})
	// SendKEK looks only for trusted keys: the untrusted one above does not count.
	if _, err := p.SendKEK(ctx, kek, &k.PublicKey); fault.Of(err) != fault.Forbidden {
		t.Errorf("SendKEK to an untrusted key: err = %v, want Forbidden", err)
	}
	small, _ := rsa.GenerateKey(rand.Reader, 2048)
	if _, err := p.SendKEK(ctx, kek, &small.PublicKey); fault.Of(err) != fault.BadParameter {
		t.Errorf("SendKEK to RSA-2048: err = %v, want BadParameter", err)
	}
}

// TestSendKEKIsOAEP: what leaves the source token is RSA-OAEP (SHA-1) of the KEK and
// nothing else. With a known KEK and a Go key the SO trusted (test only), Go decrypts the
// blob to exactly the KEK's bytes: so the SO's trust is the only gate, as docs/hsm.md says.
func TestSendKEKIsOAEP(t *testing.T) {
	ctx := context.Background()
	cfg := newToken(t)
	value := make([]byte, 32)
	rand.Read(value)
	p := openPool(t, cfg)
	if _, err := p.ImportKEK(ctx, "domain-kek", secret.Copy(value)); err != nil {
		t.Fatal(err)
	}
	p.Close()
	k, _ := rsa.GenerateKey(rand.Reader, JoinKeyBits)
	trust(t, cfg, "join-go", &k.PublicKey)
	if err := TrustJoinKey(ctx, soConfig(t, cfg), "join-go", &k.PublicKey); fault.Of(err) != fault.AlreadyExists {
		t.Errorf("second trust under one label: err = %v, want AlreadyExists", err)
	}
	bad := soConfig(t, cfg)
	os.WriteFile(bad.SOPINFile, []byte("wrong"), 0o600)
	if err := TrustJoinKey(ctx, bad, "join-x", &k.PublicKey); fault.Of(err) != fault.Unauthorized {
		t.Errorf("wrong SO PIN: err = %v, want Unauthorized", err)
	}
	p = openPool(t, cfg)
	kek, err := p.FindKEK(ctx, "domain-kek")
	if err != nil {
		t.Fatal(err)
	}
	wrapped, err := p.SendKEK(ctx, kek, &k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(wrapped, value) {
		t.Fatal("the KEK's bytes appear in the wrapped blob")
	}
	got, err := rsa.DecryptOAEP(sha1.New(), nil, k, wrapped, nil)
	if err != nil {
		t.Fatalf("the blob is not RSA-OAEP with SHA-1: %v", err)
	}
	if !bytes.Equal(got, value) {
		t.Error("the blob holds other bytes than the KEK")
	}
}

// TestReceivedKEKIsTheKey: a received KEK is the sender's bytes (Go unwraps its blobs with
// RFC 5649 under the known value) though the bytes were never in either daemon's memory.
func TestReceivedKEKIsTheKey(t *testing.T) {
	ctx := context.Background()
	cfgA, cfgB := newToken(t), newToken(t)
	value := make([]byte, 32)
	rand.Read(value)
	a := openPool(t, cfgA)
	if _, err := a.ImportKEK(ctx, "domain-kek", secret.Copy(value)); err != nil {
		t.Fatal(err)
	}
	a.Close()
	b := openPool(t, cfgB)
	jk, err := b.CreateJoinKey(ctx, "join-transport")
	if err != nil {
		t.Fatal(err)
	}
	trust(t, cfgA, "join-node-b", jk.Public())
	a = openPool(t, cfgA)
	kekA, _ := a.FindKEK(ctx, "domain-kek")
	wrapped, err := a.SendKEK(ctx, kekA, jk.Public())
	if err != nil {
		t.Fatal(err)
	}
	kekB, err := b.ReceiveKEK(ctx, jk, "domain-kek", wrapped)
	if err != nil {
		t.Fatal(err)
	}
	gen, _ := b.Generate(ctx, Spec{Type: AES, Bits: 256}, UseEncrypt)
	blob, err := b.Wrap(ctx, kekB, gen)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := aes.NewCipher(value)
	if _, err := keywrap.UnwrapPad(block, blob); err != nil {
		t.Errorf("B's KEK is not the sender's bytes: %v", err)
	}
}

// TestJoinKeyPolicy: the join key unwraps only into a sensitive AES key with the KEK's
// rights; it cannot decrypt; FindJoinKey checks its policy.
func TestJoinKeyPolicy(t *testing.T) {
	ctx := context.Background()
	p := newPool(t, 0)
	jk, err := p.CreateJoinKey(ctx, "join-transport")
	if err != nil {
		t.Fatal(err)
	}
	if jk.Public().N.BitLen() != JoinKeyBits {
		t.Errorf("join key is %d bits", jk.Public().N.BitLen())
	}
	found, err := p.FindJoinKey(ctx, "join-transport")
	if err != nil || !found.Public().Equal(jk.Public()) {
		t.Fatalf("FindJoinKey: %v", err)
	}
	attrs := readAttrs(t, p, jk.obj, pkcs11.CKA_TOKEN, pkcs11.CKA_EXTRACTABLE, pkcs11.CKA_SENSITIVE)
	if !bytes.Equal(attrs[0], []byte{1}) || !bytes.Equal(attrs[1], []byte{0}) || !bytes.Equal(attrs[2], []byte{1}) {
		t.Errorf("join key token/extractable/sensitive = %v/%v/%v", attrs[0], attrs[1], attrs[2])
	}
	// An attacker with the PIN who made an OAEP blob of chosen bytes to the join key (or
	// who holds a real one) tries to unwrap it into something readable.
	enc, _ := rsa.EncryptOAEP(sha1.New(), rand.Reader, jk.Public(), make([]byte, 32), nil)
	nested, free := nestedTemplate(kekUnwrapPolicy)
	defer free()
	_ = p.withSession(ctx, func(s pkcs11.SessionHandle) error {
		for name, bad := range map[string]*pkcs11.Attribute{
			"readable":   attr(pkcs11.CKA_SENSITIVE, false),
			"decrypting": attr(pkcs11.CKA_DECRYPT, true),
			"untrusted":  attr(pkcs11.CKA_WRAP_WITH_TRUSTED, false),
			"modifiable": attr(pkcs11.CKA_MODIFIABLE, true),
		} {
			var tmpl []*pkcs11.Attribute
			for _, a := range kekTemplate("x", nested) {
				switch a.Type {
				case pkcs11.CKA_VALUE_LEN:
					continue
				case bad.Type:
					a = bad
				}
				tmpl = append(tmpl, a)
			}
			if _, err := p.mod.ctx.UnwrapKey(s, oaepSHA1(), jk.obj, enc, tmpl); !isCKR(err, pkcs11.CKR_TEMPLATE_INCONSISTENT) {
				t.Errorf("unwrap a %s KEK with the join key: err = %v, want CKR_TEMPLATE_INCONSISTENT", name, err)
			}
		}
		if err := p.mod.ctx.DecryptInit(s, oaepSHA1(), jk.obj); !isCKR(err, pkcs11.CKR_KEY_FUNCTION_NOT_PERMITTED) {
			t.Errorf("decrypt with the join key: err = %v, want CKR_KEY_FUNCTION_NOT_PERMITTED", err)
		}
		return nil
	})
	if err := p.DestroyJoinKey(ctx, "join-transport"); err != nil {
		t.Fatal(err)
	}
	if _, err := p.FindJoinKey(ctx, "join-transport"); fault.Of(err) != fault.NotFound {
		t.Errorf("FindJoinKey after DestroyJoinKey: err = %v, want NotFound", err)
	}
}
