package securitydomain

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/go-jose/go-jose/v4"
)

// The two JWE forms the security domain uses, through go-jose. go-jose writes the
// protected header with its keys sorted, which is exactly the order the Azure CLI writes
// ({"alg":…,"enc":…,"kid":…}); jwe_test.go checks the header bytes.

// shareKID is the "kid" the Azure CLI and service put in share and wrapped-key JWEs.
const shareKID = "not used"

// sealRSA encrypts plaintext to pub: RSA-OAEP-256 key wrap, A256CBC-HS512 content.
func sealRSA(pub *rsa.PublicKey, plaintext []byte) (string, error) {
	enc, err := jose.NewEncrypter(jose.A256CBC_HS512, jose.Recipient{Algorithm: jose.RSA_OAEP_256, Key: pub, KeyID: shareKID}, nil)
	if err != nil {
		return "", fmt.Errorf("make RSA-OAEP-256 encrypter: %w", err)
	}
	return seal(enc, plaintext)
}

// sealDir encrypts plaintext under the 64-byte content key cek with "kid" = tag.
func sealDir(cek []byte, tag string, plaintext []byte) (string, error) {
	enc, err := jose.NewEncrypter(jose.A256CBC_HS512, jose.Recipient{Algorithm: jose.DIRECT, Key: cek, KeyID: tag}, nil)
	if err != nil {
		return "", fmt.Errorf("make dir encrypter: %w", err)
	}
	return seal(enc, plaintext)
}

func seal(enc jose.Encrypter, plaintext []byte) (string, error) {
	obj, err := enc.Encrypt(plaintext)
	if err != nil {
		return "", fmt.Errorf("encrypt: %w", err)
	}
	return obj.CompactSerialize()
}

// parseCompact parses a compact JWE of the given key algorithm with A256CBC-HS512 content.
// Very old preview CLIs base64url-encoded the compact form once more (spec §2.7); such a
// string has no dots and is decoded first.
func parseCompact(s string, alg jose.KeyAlgorithm) (*jose.JSONWebEncryption, error) {
	if !strings.Contains(s, ".") {
		if b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "=")); err == nil {
			s = string(b)
		}
	}
	if strings.Count(s, ".") != 4 {
		return nil, fmt.Errorf("not a compact JWE (want 5 dot-separated parts): %w", ErrMalformed)
	}
	obj, err := jose.ParseEncryptedCompact(s, []jose.KeyAlgorithm{alg}, []jose.ContentEncryption{jose.A256CBC_HS512})
	if err != nil {
		return nil, fmt.Errorf("parse JWE: %w: %v", ErrMalformed, err)
	}
	return obj, nil
}

// openRSA decrypts an RSA-OAEP-256 JWE with key, which may live in an HSM.
func openRSA(s string, key crypto.Decrypter) ([]byte, error) {
	obj, err := parseCompact(s, jose.RSA_OAEP_256)
	if err != nil {
		return nil, err
	}
	pt, err := obj.Decrypt(oaepDecrypter{key})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKeyMismatch, err)
	}
	return pt, nil
}

// openDir decrypts a dir JWE under cek; a wrong key or changed bytes fail authentication.
func openDir(s string, cek []byte) ([]byte, error) {
	obj, err := parseCompact(s, jose.DIRECT)
	if err != nil {
		return nil, err
	}
	pt, err := obj.Decrypt(cek)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrIntegrity, err)
	}
	return pt, nil
}

// oaepDecrypter lets go-jose unwrap a content key with any crypto.Decrypter.
type oaepDecrypter struct{ key crypto.Decrypter }

func (d oaepDecrypter) DecryptKey(encryptedKey []byte, _ jose.Header) ([]byte, error) {
	return d.key.Decrypt(rand.Reader, encryptedKey, &rsa.OAEPOptions{Hash: crypto.SHA256})
}
