package hsm

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"fmt"
	"math/big"
	"strings"
	"testing"

	"github.com/hsmpool/hsmpool/internal/fault"
	"github.com/hsmpool/hsmpool/internal/keywrap"
	"github.com/hsmpool/hsmpool/internal/secret"
)

// rsaMaterial turns a Go RSA key into import material.
func rsaMaterial(k *rsa.PrivateKey) *Material {
	b := func(i *big.Int) secret.Bytes { return secret.New(i.Bytes()) }
	return &Material{
		N: k.N.Bytes(), E: big.NewInt(int64(k.E)).Bytes(),
		D: b(k.D), P: b(k.Primes[0]), Q: b(k.Primes[1]),
		DP: b(k.Precomputed.Dp), DQ: b(k.Precomputed.Dq), QI: b(k.Precomputed.Qinv),
	}
}

// importedRSA is an RSA key that both Go and the HSM hold, so that each side can check the
// other in both directions.
func importedRSA(t *testing.T, p *Pool, kek *KEK, bits int) (*rsa.PrivateKey, *Key) {
	t.Helper()
	goKey, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return goKey, importAndUnwrap(t, p, kek, Spec{Type: RSA, Bits: bits}, rsaMaterial(goKey), nil)
}

func importedAES(t *testing.T, p *Pool, kek *KEK, bits int) ([]byte, *Key) {
	t.Helper()
	raw := make([]byte, bits/8)
	rand.Read(raw)
	return raw, importAndUnwrap(t, p, kek, Spec{Type: AES, Bits: bits}, &Material{K: secret.Copy(raw)}, nil)
}

func TestRSAEncryptDecrypt(t *testing.T) {
	p := newPool(t, 0)
	kek := newKEK(t, p)
	ctx := context.Background()
	for _, bits := range []int{2048, 3072, 4096} {
		goKey, k := importedRSA(t, p, kek, bits)
		msg := []byte("attack at dawn, " + fmt.Sprint(bits))
		goEncrypt := map[Alg]func() ([]byte, error){
			RSAOAEP:    func() ([]byte, error) { return rsa.EncryptOAEP(sha1.New(), rand.Reader, &goKey.PublicKey, msg, nil) },
			RSAOAEP256: func() ([]byte, error) { return rsa.EncryptOAEP(sha256.New(), rand.Reader, &goKey.PublicKey, msg, nil) },
			//lint:ignore SA1019 testing Azure's RSA1_5
			RSA15: func() ([]byte, error) { return rsa.EncryptPKCS1v15(rand.Reader, &goKey.PublicKey, msg) },
		}
		goDecrypt := map[Alg]func([]byte) ([]byte, error){
			RSAOAEP:    func(c []byte) ([]byte, error) { return rsa.DecryptOAEP(sha1.New(), nil, goKey, c, nil) },
			RSAOAEP256: func(c []byte) ([]byte, error) { return rsa.DecryptOAEP(sha256.New(), nil, goKey, c, nil) },
			//lint:ignore SA1019 testing Azure's RSA1_5
			RSA15: func(c []byte) ([]byte, error) { return rsa.DecryptPKCS1v15(nil, goKey, c) },
		}
		for alg, enc := range goEncrypt {
			name := fmt.Sprintf("%s/%d", alg, bits)
			// Go encrypts, the HSM decrypts, through both Azure operations.
			ct, err := enc()
			if err != nil {
				t.Fatal(err)
			}
			for op, decrypt := range map[string]func() ([]byte, error){
				"decrypt":   func() ([]byte, error) { return p.Decrypt(ctx, k, alg, Ciphertext{Value: ct}, nil) },
				"unwrapkey": func() ([]byte, error) { return p.UnwrapKey(ctx, k, alg, ct) },
			} {
				pt, err := decrypt()
				if err != nil || !bytes.Equal(pt, msg) {
					t.Errorf("%s: HSM %s of Go ciphertext = %q, %v", name, op, pt, err)
				}
			}
			// The layer encrypts, Go decrypts.
			out, err := p.Encrypt(ctx, k, alg, msg, nil, nil)
			if err != nil {
				t.Fatalf("%s: encrypt: %v", name, err)
			}
			if pt, err := goDecrypt[alg](out.Value); err != nil || !bytes.Equal(pt, msg) {
				t.Errorf("%s: Go decrypt of layer ciphertext = %q, %v", name, pt, err)
			}
			wrapped, err := p.WrapKey(ctx, k, alg, msg)
			if err != nil {
				t.Fatalf("%s: wrapkey: %v", name, err)
			}
			if pt, err := goDecrypt[alg](wrapped); err != nil || !bytes.Equal(pt, msg) {
				t.Errorf("%s: Go decrypt of wrapkey output = %q, %v", name, pt, err)
			}
			// A corrupted ciphertext is the caller's fault, never a wrong plaintext.
			bad := bytes.Clone(ct)
			bad[len(bad)/2] ^= 1
			if pt, err := p.Decrypt(ctx, k, alg, Ciphertext{Value: bad}, nil); err == nil && bytes.Equal(pt, msg) {
				t.Errorf("%s: a corrupted ciphertext decrypted to the message", name)
			} else if err != nil && fault.Of(err) != fault.BadParameter {
				t.Errorf("%s: corrupted ciphertext: err = %v, want BadParameter", name, err)
			}
		}
		if _, err := p.Decrypt(ctx, k, RSAOAEP, Ciphertext{Value: make([]byte, 10)}, nil); fault.Of(err) != fault.BadParameter {
			t.Errorf("short RSA ciphertext: err = %v, want BadParameter", err)
		}
		if _, err := p.Encrypt(ctx, k, RSAOAEP256, make([]byte, bits/8), nil, nil); fault.Of(err) != fault.BadParameter {
			t.Errorf("too long RSA plaintext: err = %v, want BadParameter", err)
		}
	}
	if p.oaep256.Load() == oaepUnknown {
		t.Error("RSA-OAEP-256 ran but the route was not recorded")
	}
}

func TestAESEncryptDecrypt(t *testing.T) {
	p := newPool(t, 0)
	kek := newKEK(t, p)
	ctx := context.Background()
	for _, bits := range []int{128, 192, 256} {
		raw, k := importedAES(t, p, kek, bits)
		block, err := aes.NewCipher(raw)
		if err != nil {
			t.Fatal(err)
		}
		gcm, _ := cipher.NewGCM(block)
		aad := []byte("header")
		for _, n := range []int{0, 1, 16, 4096} {
			msg := make([]byte, n)
			rand.Read(msg)
			gcmAlg := Alg(fmt.Sprintf("A%dGCM", bits))
			// HSM encrypts, Go decrypts.
			out, err := p.Encrypt(ctx, k, gcmAlg, msg, nil, aad)
			if err != nil {
				t.Fatalf("%s: %v", gcmAlg, err)
			}
			if len(out.IV) != 12 || len(out.Tag) != 16 {
				t.Fatalf("%s: IV %d bytes, tag %d bytes; want 12 and 16", gcmAlg, len(out.IV), len(out.Tag))
			}
			pt, err := gcm.Open(nil, out.IV, append(bytes.Clone(out.Value), out.Tag...), aad)
			if err != nil || !bytes.Equal(pt, msg) {
				t.Errorf("%s/%d: Go open of HSM output: %v", gcmAlg, n, err)
			}
			// Go encrypts, HSM decrypts; a changed tag, IV or aad fails as BadParameter.
			iv := make([]byte, 12)
			rand.Read(iv)
			sealed := gcm.Seal(nil, iv, msg, aad)
			ct := Ciphertext{Value: sealed[:n], IV: iv, Tag: sealed[n:]}
			if pt, err := p.Decrypt(ctx, k, gcmAlg, ct, aad); err != nil || !bytes.Equal(pt, msg) {
				t.Errorf("%s/%d: HSM decrypt of Go ciphertext: %v", gcmAlg, n, err)
			}
			badTag := ct
			badTag.Tag = bytes.Clone(ct.Tag)
			badTag.Tag[0] ^= 1
			for what, c := range map[string]Ciphertext{"tag": badTag} {
				if _, err := p.Decrypt(ctx, k, gcmAlg, c, aad); fault.Of(err) != fault.BadParameter {
					t.Errorf("%s: altered %s: err = %v, want BadParameter", gcmAlg, what, err)
				}
			}
			if _, err := p.Decrypt(ctx, k, gcmAlg, ct, []byte("other")); fault.Of(err) != fault.BadParameter {
				t.Errorf("%s: altered aad: err = %v, want BadParameter", gcmAlg, err)
			}

			// CBC with and without padding, in both directions.
			cbcPad := Alg(fmt.Sprintf("A%dCBCPAD", bits))
			out, err = p.Encrypt(ctx, k, cbcPad, msg, nil, nil)
			if err != nil {
				t.Fatalf("%s: %v", cbcPad, err)
			}
			if got := cbcDecryptPKCS7(t, block, out.IV, out.Value); !bytes.Equal(got, msg) {
				t.Errorf("%s/%d: Go decrypt of HSM output differs", cbcPad, n)
			}
			if pt, err := p.Decrypt(ctx, k, cbcPad, out, nil); err != nil || !bytes.Equal(pt, msg) {
				t.Errorf("%s/%d: round trip: %v", cbcPad, n, err)
			}
			if n > 0 && n%16 == 0 {
				cbc := Alg(fmt.Sprintf("A%dCBC", bits))
				iv := make([]byte, 16)
				rand.Read(iv)
				goCT := make([]byte, n)
				cipher.NewCBCEncrypter(block, iv).CryptBlocks(goCT, msg)
				if pt, err := p.Decrypt(ctx, k, cbc, Ciphertext{Value: goCT, IV: iv}, nil); err != nil || !bytes.Equal(pt, msg) {
					t.Errorf("%s: HSM decrypt of Go ciphertext: %v", cbc, err)
				}
				out, err := p.Encrypt(ctx, k, cbc, msg, iv, nil)
				if err != nil || !bytes.Equal(out.Value, goCT) || !bytes.Equal(out.IV, iv) {
					t.Errorf("%s with a given IV differs from Go: %v", cbc, err)
				}
			}
		}
		if _, err := p.Encrypt(ctx, k, Alg(fmt.Sprintf("A%dCBC", bits)), make([]byte, 15), nil, nil); fault.Of(err) != fault.BadParameter {
			t.Errorf("CBC of 15 bytes: err = %v, want BadParameter", err)
		}
		if _, err := p.Encrypt(ctx, k, Alg(fmt.Sprintf("A%dGCM", bits)), []byte("x"), make([]byte, 12), nil); fault.Of(err) != fault.BadParameter {
			t.Errorf("GCM with a caller IV: err = %v, want BadParameter", err)
		}
		other := 128
		if bits == 128 {
			other = 256
		}
		if _, err := p.Encrypt(ctx, k, Alg(fmt.Sprintf("A%dGCM", other)), []byte("x"), nil, nil); fault.Of(err) != fault.BadParameter || !strings.Contains(err.Error(), "AES-") {
			t.Errorf("A%dGCM on an AES-%d key: err = %v, want BadParameter about the key size", other, bits, err)
		}
	}
}

func cbcDecryptPKCS7(t *testing.T, b cipher.Block, iv, ct []byte) []byte {
	t.Helper()
	if len(ct) == 0 || len(ct)%16 != 0 {
		t.Fatalf("CBC-PAD ciphertext of %d bytes", len(ct))
	}
	pt := make([]byte, len(ct))
	cipher.NewCBCDecrypter(b, iv).CryptBlocks(pt, ct)
	n := int(pt[len(pt)-1])
	if n < 1 || n > 16 {
		t.Fatalf("bad PKCS#7 padding %d", n)
	}
	return pt[:len(pt)-n]
}

// TestAESKeyWrapOfClientData checks the HSM's AES-KW and AES-KWP of client data byte for
// byte against RFC 3394/5649 in Go with the same key, for every length up to 80 bytes.
func TestAESKeyWrapOfClientData(t *testing.T) {
	p := newPool(t, 0)
	kek := newKEK(t, p)
	ctx := context.Background()
	for _, bits := range []int{128, 192, 256} {
		raw, k := importedAES(t, p, kek, bits)
		block, _ := aes.NewCipher(raw)
		kwAlg := Alg(fmt.Sprintf("A%dKW", bits))
		for n := 1; n <= 80; n++ {
			value := make([]byte, n)
			rand.Read(value)

			wantKWP, err := keywrap.WrapPad(block, value)
			if err != nil {
				t.Fatal(err)
			}
			got, err := p.WrapKey(ctx, k, AESKWP, value)
			if err != nil || !bytes.Equal(got, wantKWP) {
				t.Errorf("KWP of %d bytes with AES-%d: HSM output is not RFC 5649 (err %v)", n, bits, err)
			}
			if back, err := p.UnwrapKey(ctx, k, AESKWP, wantKWP); err != nil || !bytes.Equal(back, value) {
				t.Errorf("KWP unwrap of %d bytes: %v", n, err)
			}

			for _, alg := range []Alg{kwAlg, AESKW} {
				got, err := p.WrapKey(ctx, k, alg, value)
				if n < 16 || n%8 != 0 {
					if fault.Of(err) != fault.BadParameter {
						t.Errorf("%s of %d bytes: err = %v, want BadParameter", alg, n, err)
					}
					continue
				}
				want, _ := keywrap.Wrap(block, value)
				if err != nil || !bytes.Equal(got, want) {
					t.Errorf("%s of %d bytes: HSM output is not RFC 3394 (err %v)", alg, n, err)
				}
				if back, err := p.UnwrapKey(ctx, k, alg, want); err != nil || !bytes.Equal(back, value) {
					t.Errorf("%s unwrap of %d bytes: %v", alg, n, err)
				}
				bad := bytes.Clone(want)
				bad[3] ^= 1
				if _, err := p.UnwrapKey(ctx, k, alg, bad); fault.Of(err) != fault.BadParameter {
					t.Errorf("%s unwrap of a corrupted value: err = %v, want BadParameter", alg, err)
				}
			}
		}
		other := 256
		if bits == 256 {
			other = 128
		}
		if _, err := p.WrapKey(ctx, k, Alg(fmt.Sprintf("A%dKW", other)), make([]byte, 16)); fault.Of(err) != fault.BadParameter {
			t.Errorf("A%dKW with an AES-%d key: err = %v, want BadParameter", other, bits, err)
		}
	}
}

// TestWrongKeyTypeForAlgorithm: every encryption and wrap algorithm on every key it does
// not fit is refused with BadParameter before the HSM is asked.
func TestWrongKeyTypeForAlgorithm(t *testing.T) {
	p := newPool(t, 0)
	kek := newKEK(t, p)
	ctx := context.Background()
	keys := map[KeyType]*Key{
		RSA: workingKey(t, p, kek, Spec{Type: RSA, Bits: 2048}, UseAll),
		EC:  workingKey(t, p, kek, Spec{Type: EC, Curve: P256}, UseAll),
		AES: workingKey(t, p, kek, Spec{Type: AES, Bits: 256}, UseAll),
	}
	for alg, a := range cipherAlgs {
		for kt, k := range keys {
			if kt == a.key {
				continue
			}
			var err error
			if a.wrap {
				_, err = p.WrapKey(ctx, k, alg, make([]byte, 32))
			} else {
				_, err = p.Encrypt(ctx, k, alg, make([]byte, 32), nil, nil)
			}
			if fault.Of(err) != fault.BadParameter || !strings.Contains(err.Error(), string(alg)) {
				t.Errorf("%s on a %s key: err = %v, want BadParameter naming it", alg, kt, err)
			}
		}
	}
	if _, err := p.Encrypt(ctx, keys[AES], A256KW, make([]byte, 32), nil, nil); fault.Of(err) != fault.BadParameter {
		t.Errorf("a wrap algorithm used to encrypt: err = %v, want BadParameter", err)
	}
	noDecrypt := workingKey(t, p, kek, Spec{Type: AES, Bits: 256}, UseEncrypt)
	if _, err := p.Decrypt(ctx, noDecrypt, A256CBCPAD, Ciphertext{Value: make([]byte, 16), IV: make([]byte, 16)}, nil); fault.Of(err) != fault.Forbidden {
		t.Errorf("decrypt with an encrypt-only key: err = %v, want Forbidden", err)
	}
}
