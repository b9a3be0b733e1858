package nodejoin

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/hsmpool/hsmpool/internal/fault"
	"github.com/hsmpool/hsmpool/internal/secret"
)

// TokenValidity is how long a join token can be used after it is made.
const TokenValidity = time.Hour

// tokenPrefix starts every join token's text.
const tokenPrefix = "hsmpool-join.v1."

// Token is a parsed join token: a single-use secret and the SHA-256 fingerprint of the pool
// CA's certificate (DER), which the joining node pins before it trusts the node it joins
// through, as kubeadm's discovery hash does.
//
// The text is "hsmpool-join.v1.<base64url of 32 random bytes>.<hex SHA-256 of the CA DER>".
// It prints as [REDACTED]: the secret is read only through Text and Hash.
type Token struct {
	secret        secret.Bytes
	CAFingerprint [32]byte
}

// NewToken makes a join token for the pool whose CA certificate has the SHA-256 fingerprint
// ca.
func NewToken(ca [32]byte) (Token, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return Token{}, fmt.Errorf("make a join token: %w", err)
	}
	return Token{secret: secret.New(b), CAFingerprint: ca}, nil
}

// ParseToken parses a join token's text (surrounding white space is ignored).
func ParseToken(text string) (Token, error) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(text), tokenPrefix)
	sec, fp, ok2 := strings.Cut(rest, ".")
	if !ok || !ok2 {
		return Token{}, fmt.Errorf("parse join token: want %s<secret>.<CA fingerprint>: %w", tokenPrefix, fault.BadParameter)
	}
	b, err := base64.RawURLEncoding.DecodeString(sec)
	if err != nil || len(b) != 32 {
		return Token{}, fmt.Errorf("parse join token: the secret is not 32 bytes of base64url: %w", fault.BadParameter)
	}
	var t Token
	if n, err := hex.Decode(t.CAFingerprint[:], []byte(fp)); err != nil || n != 32 || len(fp) != 64 {
		return Token{}, fmt.Errorf("parse join token: the CA fingerprint is not 64 hex digits: %w", fault.BadParameter)
	}
	t.secret = secret.New(b)
	return t, nil
}

// Text is the token's text, which holds its secret.
func (t Token) Text() string {
	return tokenPrefix + base64.RawURLEncoding.EncodeToString(t.secret.Reveal()) + "." + hex.EncodeToString(t.CAFingerprint[:])
}

// Hash is the SHA-256 of the token's secret: what the pool's state keeps.
func (t Token) Hash() []byte {
	h := sha256.Sum256(t.secret.Reveal())
	return h[:]
}

// CAMatches tells, in constant time, whether der is the certificate the token pins.
func (t Token) CAMatches(der []byte) bool {
	h := sha256.Sum256(der)
	return subtle.ConstantTimeCompare(h[:], t.CAFingerprint[:]) == 1
}

// String, Format: a token never prints its secret.
func (t Token) String() string { return "[REDACTED]" }

// GoString hides the secret from %#v.
func (t Token) GoString() string { return "[REDACTED]" }
