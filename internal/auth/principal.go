package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"time"

	"github.com/hsmpool/hsmpool/internal/secret"
)

// Principal is a service principal as auth sees it.
type Principal struct {
	ObjectID    string // "oid" and "sub" of its tokens: the principalId of role assignments
	ClientID    string // "azp"/"appid": what its credential sends as client_id
	DisplayName string
	Secrets     []SecretHash
	// Certificates are the principal's certificate credentials: a client assertion signed with
	// the private key of one of them authenticates the principal (see the package doc).
	Certificates []Certificate
}

// Certificate is one certificate credential of a principal. Only its public part is stored;
// the principal keeps the private key.
type Certificate struct {
	ID  string // names the credential, for listing and removal; by convention CertificateThumbprint(DER)
	DER []byte // the X.509 certificate, DER-encoded; see ParseCertificate
}

// SecretHash is what the pool stores of one client secret.
type SecretHash struct {
	ID      string    // names the secret, for listing and removal; not secret
	Hash    []byte    // see hashSecret
	Expires time.Time // zero: never
}

// Directory finds principals by client ID. The daemon implements it over the replicated
// state.
type Directory interface {
	// PrincipalByClientID returns the principal whose ClientID is clientID, or an error of
	// kind fault.NotFound when there is none. It must be safe for concurrent use.
	PrincipalByClientID(ctx context.Context, clientID string) (Principal, error)
}

const (
	// secretEntropy is the number of random bytes in a client secret (256 bits).
	secretEntropy = 32
	// maxSecretLen bounds the secrets the token endpoint hashes; longer ones cannot match.
	maxSecretLen = 256
)

// secretHashKey separates client-secret hashes from every other use of SHA-256. Changing it
// invalidates every stored secret.
var secretHashKey = []byte("hsmpool auth client secret hash v1")

// hashSecret is HMAC-SHA256 of the secret under secretHashKey.
func hashSecret(s []byte) []byte {
	m := hmac.New(sha256.New, secretHashKey)
	m.Write(s)
	return m.Sum(nil)
}

// NewSecret makes a client secret and its hash. The secret is 256 bits from crypto/rand in
// unpadded base64url (43 characters), to be shown to the administrator once; the hash, with a
// random ID and no expiry, is what the directory stores. Set Expires on it to make the secret
// expire.
func NewSecret() (secret.Bytes, SecretHash, error) {
	raw := make([]byte, secretEntropy)
	defer clear(raw)
	if _, err := rand.Read(raw); err != nil {
		return secret.Bytes{}, SecretHash{}, fmt.Errorf("new client secret: %w", err)
	}
	text := make([]byte, base64.RawURLEncoding.EncodedLen(len(raw)))
	base64.RawURLEncoding.Encode(text, raw)
	id, err := newUUID()
	if err != nil {
		clear(text)
		return secret.Bytes{}, SecretHash{}, fmt.Errorf("new client secret: %w", err)
	}
	return secret.New(text), SecretHash{ID: id, Hash: hashSecret(text)}, nil
}

// secretCheck is the outcome of checking a presented secret against a principal's hashes.
type secretCheck int

const (
	secretWrong   secretCheck = iota + 1 // matches no stored hash
	secretExpired                        // matches only expired hashes
	secretValid                          // matches a hash that has not expired
)

// checkSecret compares presented with every hash of p in constant time (it does not stop at
// the first match, so the time taken does not depend on which hash matched).
func checkSecret(p Principal, presented []byte, now time.Time) secretCheck {
	if len(presented) == 0 || len(presented) > maxSecretLen {
		return secretWrong
	}
	h := hashSecret(presented)
	var valid, expired int
	for _, s := range p.Secrets {
		match := subtle.ConstantTimeCompare(h, s.Hash)
		live := 1
		if !s.Expires.IsZero() && !now.Before(s.Expires) {
			live = 0
		}
		valid |= match & live
		expired |= match & (1 - live)
	}
	switch {
	case valid == 1:
		return secretValid
	case expired == 1:
		return secretExpired
	default:
		return secretWrong
	}
}

// newUUID returns a random (version 4) UUID in its canonical lowercase form.
func newUUID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
}
