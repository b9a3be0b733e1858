package hsm

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"hash"
	"math/big"
	"strings"
	"testing"

	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	secpecdsa "github.com/decred/dcrd/dcrec/secp256k1/v4/ecdsa"
	"github.com/miekg/pkcs11"

	"github.com/hsmpool/hsmpool/internal/fault"
	"github.com/hsmpool/hsmpool/internal/secret"
)

var signHashes = map[Alg]crypto.Hash{
	RS256: crypto.SHA256, RS384: crypto.SHA384, RS512: crypto.SHA512,
	PS256: crypto.SHA256, PS384: crypto.SHA384, PS512: crypto.SHA512,
	ES256: crypto.SHA256, ES256K: crypto.SHA256, ES384: crypto.SHA384, ES512: crypto.SHA512,
}

// verifyInGo checks a signature made by the HSM with Go's own crypto (decred's for
// secp256k1, which Go lacks).
func verifyInGo(t *testing.T, pub crypto.PublicKey, alg Alg, digest, sig []byte) {
	t.Helper()
	h := signHashes[alg]
	var ok bool
	switch alg {
	case RS256, RS384, RS512:
		ok = rsa.VerifyPKCS1v15(pub.(*rsa.PublicKey), h, digest, sig) == nil
	case PS256, PS384, PS512:
		ok = rsa.VerifyPSS(pub.(*rsa.PublicKey), h, digest, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}) == nil
	case ES256K:
		var r, s secp256k1.ModNScalar
		if len(sig) != 64 || r.SetByteSlice(sig[:32]) || s.SetByteSlice(sig[32:]) {
			t.Fatalf("%s signature is not r||s of 32 bytes each: %d bytes", alg, len(sig))
		}
		ok = secpecdsa.NewSignature(&r, &s).Verify(digest, pub.(*secp256k1.PublicKey))
	default:
		pk := pub.(*ecdsa.PublicKey)
		size := (pk.Curve.Params().BitSize + 7) / 8
		if len(sig) != 2*size {
			t.Fatalf("%s signature is %d bytes, want raw r||s of %d", alg, len(sig), 2*size)
		}
		ok = ecdsa.Verify(pk, digest, new(big.Int).SetBytes(sig[:size]), new(big.Int).SetBytes(sig[size:]))
	}
	if !ok {
		t.Errorf("%s signature from the HSM does not verify in Go", alg)
	}
}

// TestSignEveryKeyAndAlgorithm runs every signature algorithm on every key type: where it
// fits, the HSM signs and Go verifies; where it does not, a BadParameter error says why.
func TestSignEveryKeyAndAlgorithm(t *testing.T) {
	p := newPool(t, 0)
	kek := newKEK(t, p)
	ctx := context.Background()
	for _, spec := range allSpecs {
		t.Run(spec.String(), func(t *testing.T) {
			k := workingKey(t, p, kek, spec, UseAll)
			for alg, a := range signAlgs {
				if a.key == AES {
					continue // TestHMAC
				}
				digest := make([]byte, a.hashLen)
				rand.Read(digest)
				sig, err := p.Sign(ctx, k, alg, digest)
				fits := a.key == spec.Type && (a.key != EC || a.curve == spec.Curve)
				if !fits {
					if fault.Of(err) != fault.BadParameter || !strings.Contains(err.Error(), string(alg)) {
						t.Errorf("%s on %s: err = %v, want BadParameter naming the algorithm", alg, spec, err)
					}
					continue
				}
				if err != nil {
					t.Errorf("%s on %s: %v", alg, spec, err)
					continue
				}
				verifyInGo(t, k.Public(), alg, digest, sig)
				if ok, err := p.Verify(ctx, k, alg, digest, sig); !ok || err != nil {
					t.Errorf("Verify(%s) of a good signature = %v, %v", alg, ok, err)
				}
				sig[len(sig)-1] ^= 1
				if ok, err := p.Verify(ctx, k, alg, digest, sig); ok || err != nil {
					t.Errorf("Verify(%s) of a flipped signature = %v, %v", alg, ok, err)
				}
				if _, err := p.Verify(ctx, k, alg, digest[1:], sig); fault.Of(err) != fault.BadParameter {
					t.Errorf("Verify(%s) of a short digest: err = %v, want BadParameter", alg, err)
				}
			}
		})
	}
}

func TestSignRejectsWrongDigestLength(t *testing.T) {
	p := newPool(t, 0)
	kek := newKEK(t, p)
	ctx := context.Background()
	ec := workingKey(t, p, kek, Spec{Type: EC, Curve: P256}, UseAll)
	rsaKey := workingKey(t, p, kek, Spec{Type: RSA, Bits: 2048}, UseAll)
	for _, tc := range []struct {
		k      *Key
		alg    Alg
		length int
	}{{ec, ES256, 31}, {ec, ES256, 48}, {ec, ES256, 0}, {rsaKey, RS256, 64}, {rsaKey, PS512, 32}} {
		_, err := p.Sign(ctx, tc.k, tc.alg, make([]byte, tc.length))
		if fault.Of(err) != fault.BadParameter || !strings.Contains(err.Error(), "digest") {
			t.Errorf("%s with a %d-byte digest: err = %v, want BadParameter about the digest", tc.alg, tc.length, err)
		}
	}
	if _, err := p.Sign(ctx, ec, "ES257", make([]byte, 32)); fault.Of(err) != fault.BadParameter {
		t.Errorf("unknown algorithm: err = %v, want BadParameter", err)
	}
	signOnly := workingKey(t, p, kek, Spec{Type: EC, Curve: P256}, UseVerify)
	if _, err := p.Sign(ctx, signOnly, ES256, make([]byte, 32)); fault.Of(err) != fault.Forbidden {
		t.Errorf("sign with a verify-only key: err = %v, want Forbidden", err)
	}
}

// TestES256KLowS shows that SoftHSM2 returns high-S secp256k1 signatures about half the
// time and that Sign normalises every one.
func TestES256KLowS(t *testing.T) {
	p := newPool(t, 0)
	kek := newKEK(t, p)
	ctx := context.Background()
	k := workingKey(t, p, kek, Spec{Type: EC, Curve: P256K}, UseAll)
	halfN := new(big.Int).Rsh(secp256k1.Params().N, 1)
	digest := sha256.Sum256([]byte("low s"))

	rawHigh := 0
	err := p.withSession(ctx, func(s pkcs11.SessionHandle) error {
		for range 32 {
			if err := p.mod.ctx.SignInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil)}, k.obj); err != nil {
				return err
			}
			sig, err := p.mod.ctx.Sign(s, digest[:])
			if err != nil {
				return err
			}
			if new(big.Int).SetBytes(sig[32:]).Cmp(halfN) > 0 {
				rawHigh++
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if rawHigh == 0 {
		t.Errorf("32 raw SoftHSM2 signatures were all low-S; the normalisation is untested (chance 2^-32)")
	}
	for range 32 {
		sig, err := p.Sign(ctx, k, ES256K, digest[:])
		if err != nil {
			t.Fatal(err)
		}
		if new(big.Int).SetBytes(sig[32:]).Cmp(halfN) > 0 {
			t.Fatalf("ES256K returned a high-S signature")
		}
		verifyInGo(t, k.Public(), ES256K, digest[:], sig)
	}
}

// TestHMAC checks HS256 against Go's HMAC with the same key, and the refusals RFC 7518
// §3.2 asks for.
func TestHMAC(t *testing.T) {
	p := newPool(t, 0)
	kek := newKEK(t, p)
	ctx := context.Background()
	raw := make([]byte, 32)
	rand.Read(raw)
	k := importAndUnwrap(t, p, kek, Spec{Type: AES, Bits: 256}, &Material{K: secret.Copy(raw)}, nil)

	for _, n := range []int{1, 32, 1000} {
		msg := make([]byte, n)
		rand.Read(msg)
		got, err := p.Sign(ctx, k, HS256, msg)
		if err != nil {
			t.Fatalf("HS256: %v", err)
		}
		if want := hmacOf(sha256.New, raw, msg); !hmac.Equal(got, want) {
			t.Errorf("HS256 over %d bytes differs from Go's HMAC", n)
		}
	}
	for _, alg := range []Alg{HS384, HS512} {
		if _, err := p.Sign(ctx, k, alg, []byte("x")); fault.Of(err) != fault.BadParameter || !strings.Contains(err.Error(), "RFC 7518") {
			t.Errorf("%s with a 256-bit key: err = %v, want BadParameter citing RFC 7518", alg, err)
		}
	}
	small := workingKey(t, p, kek, Spec{Type: AES, Bits: 128}, UseAll)
	if _, err := p.Sign(ctx, small, HS256, []byte("x")); fault.Of(err) != fault.BadParameter {
		t.Errorf("HS256 with a 128-bit key: err = %v, want BadParameter", err)
	}
	gen, err := p.Generate(ctx, Spec{Type: AES, Bits: 256}, UseAll)
	if err != nil {
		t.Fatal(err)
	}
	defer gen.Destroy(ctx)
	if _, err := p.Sign(ctx, gen, HS256, []byte("x")); fault.Of(err) != fault.Unsupported {
		t.Errorf("HS256 on a key that was never wrapped: err = %v, want Unsupported", err)
	}
}

func hmacOf(h func() hash.Hash, key, msg []byte) []byte {
	m := hmac.New(h, key)
	m.Write(msg)
	return m.Sum(nil)
}

// importAndUnwrap imports m, wraps it and returns the unwrapped working key.
func importAndUnwrap(t testing.TB, p *Pool, kek *KEK, spec Spec, m *Material, pub crypto.PublicKey) *Key {
	t.Helper()
	ctx := context.Background()
	imp, err := p.Import(ctx, spec, UseAll, m)
	if err != nil {
		t.Fatalf("import %s: %v", spec, err)
	}
	defer imp.Destroy(ctx)
	if pub == nil {
		pub = imp.Public()
	}
	blob, err := p.Wrap(ctx, kek, imp)
	if err != nil {
		t.Fatalf("wrap %s: %v", spec, err)
	}
	k, err := p.Unwrap(ctx, kek, blob, spec, UseAll, pub)
	if err != nil {
		t.Fatalf("unwrap %s: %v", spec, err)
	}
	t.Cleanup(func() { _ = k.Destroy(context.Background()) })
	return k
}
