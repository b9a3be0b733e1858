package main

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"strings"
	"testing"

	"github.com/youmark/pkcs8"

	"github.com/hsmpool/hsmpool/internal/secret"
)

func TestParseKeyArg(t *testing.T) {
	tests := []struct {
		arg, key, cert, err string
	}{
		{arg: "officer1.key", key: "officer1.key", cert: "officer1.cer"},
		{arg: "keys/officer1.pem", key: "keys/officer1.pem", cert: "keys/officer1.cer"},
		{arg: "officer1", key: "officer1", cert: "officer1.cer"},
		{arg: "a.b/officer1", key: "a.b/officer1", cert: "a.b/officer1.cer"}, // the Azure CLI would look for "a.cer"
		{arg: "officer1.key:certs/one.pem", key: "officer1.key", cert: "certs/one.pem"},
		{arg: "officer1.key:odd:name.cer", key: "officer1.key", cert: "odd:name.cer"},
		{arg: "officer1.key:", err: `--key "officer1.key:": no certificate file after the colon; want KEY or KEY:CERT`},
		{arg: ":one.cer", err: `--key ":one.cer": no key file`},
		{arg: "", err: `--key "": no key file`},
	}
	for _, tt := range tests {
		t.Run(tt.arg, func(t *testing.T) {
			got, err := parseKeyArg(tt.arg)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("parseKeyArg(%q) = %+v, %v; want error %q", tt.arg, got, err, tt.err)
				}
				return
			}
			if err != nil || got.keyPath != tt.key || got.certPath != tt.cert || got.certGiven != strings.Contains(tt.arg, ":") {
				t.Fatalf("parseKeyArg(%q) = %+v, %v; want key %q, cert %q", tt.arg, got, err, tt.key, tt.cert)
			}
		})
	}
}

func TestOrdinal(t *testing.T) {
	for n, want := range map[int]string{1: "1st", 2: "2nd", 3: "3rd", 4: "4th", 10: "10th", 11: "11th", 12: "12th", 13: "13th", 21: "21st", 112: "112th"} {
		if got := ordinal(n); got != want {
			t.Errorf("ordinal(%d) = %q, want %q", n, got, want)
		}
	}
}

// TestParsePrivateKeyDamaged checks that an encrypted PKCS#8 key whose ciphertext is not whole AES blocks, on which
// the pkcs8 library panics, is an error.
func TestParsePrivateKeyDamaged(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	pass := []byte("correct horse")
	opts := &pkcs8.Opts{Cipher: pkcs8.AES256CBC, KDFOpts: pkcs8.PBKDF2Opts{SaltSize: 16, IterationCount: 1000, HMACHash: crypto.SHA256}}
	der, err := pkcs8.MarshalPrivateKey(key, pass, opts)
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		Algo pkix.AlgorithmIdentifier
		Data []byte
	}
	if _, err := asn1.Unmarshal(der, &info); err != nil {
		t.Fatal(err)
	}
	info.Data = info.Data[:len(info.Data)-1]
	damaged, err := asn1.Marshal(info)
	if err != nil {
		t.Fatal(err)
	}
	passphrase := func() (secret.Bytes, error) { return secret.Copy(pass), nil }

	good := pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: der})
	if got, err := parsePrivateKey("good.key", good, passphrase); err != nil || !got.Equal(key) {
		t.Fatalf("parsePrivateKey(good key) = %v; want the key", err)
	}
	bad := pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: damaged})
	_, err = parsePrivateKey("bad.key", bad, passphrase)
	if err == nil || !strings.HasPrefix(err.Error(), "bad.key: damaged encrypted key: ") || errors.Is(err, errWrongPassphrase) {
		t.Fatalf("parsePrivateKey(damaged key) = %v; want an error about bad.key that is not a wrong passphrase", err)
	}
}

// FuzzParsePrivateKey feeds parsePrivateKey arbitrary PEM: it may fail, never panic.
func FuzzParsePrivateKey(f *testing.F) {
	f.Add("ENCRYPTED PRIVATE KEY", "", []byte{0x30, 0x03, 0x02, 0x01, 0x00})
	f.Add("RSA PRIVATE KEY", "4,ENCRYPTED", []byte{0x30, 0x00})
	f.Add("PRIVATE KEY", "", []byte{})
	f.Fuzz(func(t *testing.T, typ, procType string, body []byte) {
		block := &pem.Block{Type: typ, Bytes: body}
		if procType != "" {
			block.Headers = map[string]string{"Proc-Type": procType, "DEK-Info": "AES-256-CBC,00112233445566778899AABBCCDDEEFF"}
		}
		text := pem.EncodeToMemory(block)
		if text == nil {
			return
		}
		_, _ = parsePrivateKey("fuzz.key", text, func() (secret.Bytes, error) { return secret.Copy([]byte("passphrase")), nil })
	})
}
