package main

import (
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
)

var testRSAKey = func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
}()

func pemOf(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func mustPKCS8(t *testing.T, key any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestPEMToJWKRSA(t *testing.T) {
	k := testRSAKey
	for name, text := range map[string][]byte{
		"PKCS#8": pemOf("PRIVATE KEY", mustPKCS8(t, k)),
		"PKCS#1": pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(k)),
		"after a certificate": append(pemOf("CERTIFICATE", []byte{1, 2, 3}),
			pemOf("PRIVATE KEY", mustPKCS8(t, k))...),
	} {
		t.Run(name, func(t *testing.T) {
			jwk, err := pemToJWK(text)
			if err != nil {
				t.Fatal(err)
			}
			// Build the key back from the JWK and compare.
			back := &rsa.PrivateKey{
				PublicKey: rsa.PublicKey{N: new(big.Int).SetBytes(jwk.N), E: int(new(big.Int).SetBytes(jwk.E).Int64())},
				D:         new(big.Int).SetBytes(jwk.D),
				Primes:    []*big.Int{new(big.Int).SetBytes(jwk.P), new(big.Int).SetBytes(jwk.Q)},
			}
			back.Precompute()
			if err := back.Validate(); err != nil || !back.Equal(k) {
				t.Errorf("the JWK is not the key: %v", err)
			}
			if *jwk.Kty != azkeys.KeyTypeRSAHSM || b64(jwk.E) != "AQAB" ||
				b64(jwk.DP) != b64(k.Precomputed.Dp.Bytes()) || b64(jwk.DQ) != b64(k.Precomputed.Dq.Bytes()) || b64(jwk.QI) != b64(k.Precomputed.Qinv.Bytes()) {
				t.Errorf("kty %s, e %s, or CRT values differ", *jwk.Kty, b64(jwk.E))
			}
		})
	}
}

func TestPEMToJWKEC(t *testing.T) {
	for _, tt := range []struct {
		curve elliptic.Curve
		crv   azkeys.CurveName
		size  int
	}{{elliptic.P256(), azkeys.CurveNameP256, 32}, {elliptic.P384(), azkeys.CurveNameP384, 48}, {elliptic.P521(), azkeys.CurveNameP521, 66}} {
		t.Run(string(tt.crv), func(t *testing.T) {
			// Until one key has a short coordinate or scalar, which the JWK must pad to the field size.
			for range 20 {
				k, err := ecdsa.GenerateKey(tt.curve, rand.Reader)
				if err != nil {
					t.Fatal(err)
				}
				sec1, err := x509.MarshalECPrivateKey(k)
				if err != nil {
					t.Fatal(err)
				}
				for _, text := range [][]byte{pemOf("EC PRIVATE KEY", sec1), pemOf("PRIVATE KEY", mustPKCS8(t, k))} {
					jwk, err := pemToJWK(text)
					if err != nil {
						t.Fatal(err)
					}
					if *jwk.Kty != azkeys.KeyTypeECHSM || *jwk.Crv != tt.crv || len(jwk.X) != tt.size || len(jwk.Y) != tt.size || len(jwk.D) != tt.size {
						t.Fatalf("kty %s crv %s, lengths x %d y %d d %d; want %d", *jwk.Kty, *jwk.Crv, len(jwk.X), len(jwk.Y), len(jwk.D), tt.size)
					}
					back, err := ecdsa.ParseRawPrivateKey(tt.curve, jwk.D)
					if err != nil || !back.Equal(k) {
						t.Fatalf("d is not the key's: %v", err)
					}
					pub, _ := k.PublicKey.Bytes()
					if string(pub[1:]) != string(jwk.X)+string(jwk.Y) {
						t.Fatalf("x, y are not the key's")
					}
				}
			}
		})
	}
}

func TestPEMToJWKRefuses(t *testing.T) {
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	x25519, _ := ecdh.X25519().GenerateKey(rand.Reader)
	tests := []struct {
		name string
		text []byte
		err  string
	}{
		{"no PEM", []byte("hello"), "no PEM private key in it"},
		{"only a certificate", pemOf("CERTIFICATE", []byte{1}), "no PEM private key in it"},
		{"encrypted PKCS#8", pemOf("ENCRYPTED PRIVATE KEY", []byte{1}), "the key is encrypted"},
		{"legacy encrypted", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-256-CBC,00"}, Bytes: []byte{1}}), "the key is encrypted"},
		{"ed25519", pemOf("PRIVATE KEY", mustPKCS8(t, edKey)), "ed25519.PrivateKey: not an RSA or EC key"},
		{"x25519", pemOf("PRIVATE KEY", mustPKCS8(t, x25519)), "not an RSA or EC key"},
		{"damaged", pemOf("PRIVATE KEY", []byte{0x30, 0x03, 1, 2, 3}), "not a PRIVATE KEY this reads: "},
		{"DSA", pemOf("DSA PRIVATE KEY", []byte{1}), `a "DSA PRIVATE KEY" is not a key this imports`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := pemToJWK(tt.text)
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("pemToJWK: %v; want an error with %q", err, tt.err)
			}
		})
	}
}

func TestParseJWK(t *testing.T) {
	tests := []struct {
		name, json string
		check      func(t *testing.T, k *azkeys.JSONWebKey)
		err        string
	}{
		{name: "oct", json: `{"kty":"oct","k":"AAECAwQFBgcICQoLDA0ODw","key_ops":["encrypt","decrypt"]}`,
			check: func(t *testing.T, k *azkeys.JSONWebKey) {
				if *k.Kty != azkeys.KeyTypeOctHSM || len(k.K) != 16 || len(k.KeyOps) != 2 || *k.KeyOps[1] != azkeys.KeyOperationDecrypt {
					t.Errorf("got %+v", k)
				}
			}},
		{name: "padded base64url", json: `{"kty":"oct-HSM","k":"AAECAwQFBgcICQoLDA0ODw=="}`,
			check: func(t *testing.T, k *azkeys.JSONWebKey) {
				if len(k.K) != 16 {
					t.Errorf("k has %d bytes", len(k.K))
				}
			}},
		{name: "EC", json: `{"kty":"EC","crv":"P-256","x":"AQ","y":"Ag","d":"Aw","alg":"ES256","use":"sig","kid":"x"}`,
			check: func(t *testing.T, k *azkeys.JSONWebKey) {
				if *k.Kty != azkeys.KeyTypeECHSM || *k.Crv != azkeys.CurveNameP256 || k.X[0] != 1 || k.Y[0] != 2 || k.D[0] != 3 {
					t.Errorf("got %+v", k)
				}
			}},
		{name: "RSA", json: `{"kty":"RSA","n":"AQ","e":"AQAB","d":"Ag","p":"Aw","q":"BA","dp":"BQ","dq":"Bg","qi":"Bw"}`,
			check: func(t *testing.T, k *azkeys.JSONWebKey) {
				if *k.Kty != azkeys.KeyTypeRSAHSM || k.QI[0] != 7 || k.DQ[0] != 6 || len(k.E) != 3 {
					t.Errorf("got %+v", k)
				}
			}},
		{name: "public RSA", json: `{"kty":"RSA","n":"AQ","e":"AQAB"}`, err: `RSA keys need "d": only private keys can be imported`},
		{name: "public EC", json: `{"kty":"EC","crv":"P-256","x":"AQ","y":"Ag"}`, err: `EC keys need "d"`},
		{name: "no k", json: `{"kty":"oct"}`, err: `oct keys need "k"`},
		{name: "bad kty", json: `{"kty":"OKP","d":"AQ"}`, err: `kty "OKP": want RSA, EC or oct`},
		{name: "bad base64", json: `{"kty":"oct","k":"secret+bytes/"}`, err: `"k": not base64url`},
		{name: "bad op", json: `{"kty":"oct","k":"AQ","key_ops":["deriveBits"]}`, err: `"key_ops" "deriveBits": want decrypt, encrypt`},
		{name: "not an object", json: `[1]`, err: "not a JSON Web Key"},
		{name: "number member", json: `{"kty":"oct","k":12}`, err: `not a JSON Web Key: "k" is not a string`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := parseJWK([]byte(tt.json))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("parseJWK: %v; want an error with %q", err, tt.err)
				}
				if strings.Contains(err.Error(), "secret") {
					t.Errorf("the error shows the key material: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, k)
		})
	}
}

func FuzzParseJWK(f *testing.F) {
	f.Add([]byte(`{"kty":"oct","k":"AAECAwQFBgcICQoLDA0ODw","key_ops":["encrypt"]}`))
	f.Add([]byte(`{"kty":"EC","crv":"P-256","x":"AQ","y":"Ag","d":"Aw"}`))
	f.Add([]byte(`{"kty":"RSA","n":"AQ","e":"AQAB","d":"Ag"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := parseJWK(b)
		if err != nil {
			return
		}
		if k.Kty == nil {
			t.Fatalf("parseJWK(%q): no kty", b)
		}
		if len(k.D) == 0 && len(k.K) == 0 {
			t.Fatalf("parseJWK(%q): accepted a key without private part", b)
		}
	})
}

func FuzzPEMToJWK(f *testing.F) {
	f.Add(pemOf("PRIVATE KEY", []byte{0x30, 0}))
	f.Add(pemOf("EC PRIVATE KEY", []byte{0x30, 0}))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = pemToJWK(b) // must not panic
	})
}
