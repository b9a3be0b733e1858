package auth

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha1" // #nosec G505: x5t is SHA-1 by definition (RFC 7515 §4.1.7); it only selects a registered certificate
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

const (
	// maxAssertionLen bounds the client assertions the token endpoint parses: a JWT with an
	// x5c chain of a few certificates is well under it.
	maxAssertionLen = 32 << 10
	// maxAssertionLifetime bounds how far in the future a client assertion's exp may be
	// (MSAL makes them for 10 minutes); it also bounds how long a jti is remembered.
	maxAssertionLifetime = time.Hour
	// maxJTILen bounds the jti of a client assertion (MSAL sends a UUID).
	maxJTILen = 256
	// replayCacheSize bounds the jtis remembered per node.
	replayCacheSize = 1 << 16
	// minRSABits is the smallest RSA key a certificate credential may have.
	minRSABits = 2048
)

// assertionAlgs are the algorithms of client assertions: PS256 is what MSAL sends, RS256 what
// it sends to ADFS (and older MSALs), ES256 for EC certificates.
var assertionAlgs = []jose.SignatureAlgorithm{jose.PS256, jose.RS256, jose.ES256}

// CertificateThumbprint is the SHA-256 of a certificate's DER in lowercase hex: the value of
// a client assertion's x5t#S256 header (there in base64) and the conventional ID of a
// certificate credential.
func CertificateThumbprint(der []byte) string {
	s := sha256.Sum256(der)
	return hex.EncodeToString(s[:])
}

// ParseCertificate parses a DER certificate and checks that it can be a certificate
// credential: an RSA key of at least 2048 bits (for PS256 or RS256 assertions) or an ECDSA
// P-256 key (ES256). It does not check the validity period: an expired certificate can be
// registered, and is refused when used.
func ParseCertificate(der []byte) (*x509.Certificate, error) {
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse certificate: %w", err)
	}
	switch k := c.PublicKey.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < minRSABits {
			return nil, fmt.Errorf("certificate: RSA key of %d bits, want at least %d", k.N.BitLen(), minRSABits)
		}
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("certificate: ECDSA key on %s, want P-256", k.Curve.Params().Name)
		}
	default:
		return nil, fmt.Errorf("certificate: %T key, want RSA or ECDSA P-256", c.PublicKey)
	}
	return c, nil
}

// algFits reports whether a certificate key can make signatures of alg.
func algFits(alg string, key any) bool {
	switch key.(type) {
	case *rsa.PublicKey:
		return alg == string(jose.PS256) || alg == string(jose.RS256)
	case *ecdsa.PublicKey:
		return alg == string(jose.ES256)
	}
	return false
}

// tokenEndpoint is the URL of the pool's token endpoint, as the discovery document gives it.
func (i *Issuer) tokenEndpoint() string { return i.authority + "/" + i.tenant + "/oauth2/v2.0/token" }

// isTokenEndpoint reports whether aud names the pool's token endpoint: the URL of the
// discovery document, compared as a URL: host case-insensitive, ":443" or not, tenant
// case-insensitive, nothing else.
func (i *Issuer) isTokenEndpoint(aud string) bool {
	if aud == i.tokenEndpoint() {
		return true
	}
	u, err := url.Parse(aud)
	if err != nil || !strings.EqualFold(u.Scheme, "https") || u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return false
	}
	want, _ := url.Parse(i.authority) // parsed by parseAuthorityHost
	port := func(u *url.URL) string {
		if p := u.Port(); p != "" {
			return p
		}
		return "443"
	}
	return strings.EqualFold(u.Hostname(), want.Hostname()) && port(u) == port(want) &&
		strings.EqualFold(u.Path, "/"+i.tenant+"/oauth2/v2.0/token")
}

// sameClientID compares client IDs, case-insensitively when they are UUIDs.
func sameClientID(a, b string) bool {
	if uuidRE.MatchString(a) {
		return strings.EqualFold(a, b)
	}
	return a == b
}

// decodeThumbprint decodes an x5t or x5t#S256 header value of n bytes. RFC 7515 says
// base64url without padding; MSAL sends standard base64 with padding. Both are accepted.
func decodeThumbprint(v any, n int) ([]byte, bool) {
	s, ok := v.(string)
	if !ok || len(s) > 64 {
		return nil, false
	}
	for _, enc := range []*base64.Encoding{base64.RawURLEncoding, base64.URLEncoding, base64.StdEncoding, base64.RawStdEncoding} {
		if b, err := enc.DecodeString(s); err == nil && len(b) == n {
			return b, true
		}
	}
	return nil, false
}

// checkAssertion authenticates p with a client_assertion (RFC 7523, as Entra ID takes it):
// a JWT signed with the key of one of p's certificates, which the header names by x5t#S256,
// x5t or the leaf of x5c; aud the token endpoint; iss and sub the client ID; exp within
// maxAssertionLifetime; nbf not in the future; a jti not seen on this node before.
func (i *Issuer) checkAssertion(p Principal, clientID, assertion string) *oauthError {
	refuse := func(aad int, format string, args ...any) *oauthError {
		return &oauthError{status: http.StatusUnauthorized, code: "invalid_client", aad: aad, desc: fmt.Sprintf(format, args...)}
	}
	if len(assertion) > maxAssertionLen {
		return refuse(50027, "client_assertion is longer than %d bytes", maxAssertionLen)
	}
	jws, err := jose.ParseSignedCompact(assertion, assertionAlgs)
	if err != nil || len(jws.Signatures) != 1 {
		return refuse(50027, "client_assertion is not a JWT signed with PS256, RS256 or ES256")
	}
	h := jws.Signatures[0].Header
	now := i.now()

	cert, oe := selectCertificate(p, h, now)
	if oe != nil {
		return oe
	}
	thumb := CertificateThumbprint(cert.Raw)
	if !algFits(h.Algorithm, cert.PublicKey) {
		return refuse(700027, "client assertion is signed with %s, which the key of certificate %s cannot make", h.Algorithm, thumb)
	}
	if now.Before(cert.NotBefore.Add(-skew)) {
		return refuse(700027, "the certificate %s used to sign the client assertion is not valid before %s",
			thumb, cert.NotBefore.UTC().Format(time.RFC3339))
	}
	if now.After(cert.NotAfter) {
		return refuse(700027, "the certificate %s used to sign the client assertion expired at %s",
			thumb, cert.NotAfter.UTC().Format(time.RFC3339))
	}
	payload, err := jws.Verify(cert.PublicKey)
	if err != nil {
		return refuse(700027, "client assertion failed signature validation with certificate %s", thumb)
	}

	// The signature is the certificate holder's from here on.
	var c jwt.Claims
	if json.Unmarshal(payload, &c) != nil {
		return refuse(50027, "client assertion claims are malformed")
	}
	if !sameClientID(c.Issuer, clientID) || !sameClientID(c.Subject, clientID) {
		return refuse(700021, "client assertion iss and sub must both be the client_id")
	}
	if !slices.ContainsFunc(c.Audience, i.isTokenEndpoint) {
		return refuse(0, "client assertion aud must be this pool's token endpoint %s", i.tokenEndpoint())
	}
	if c.Expiry == nil {
		return refuse(700024, "client assertion lacks exp")
	}
	exp := c.Expiry.Time()
	switch err := c.ValidateWithLeeway(jwt.Expected{Time: now}, skew); {
	case errors.Is(err, jwt.ErrExpired):
		return refuse(700024, "client assertion is not within its valid time range: it expired at %s", exp.UTC().Format(time.RFC3339))
	case errors.Is(err, jwt.ErrNotValidYet):
		return refuse(700024, "client assertion is not within its valid time range: not before %s", c.NotBefore.Time().UTC().Format(time.RFC3339))
	case errors.Is(err, jwt.ErrIssuedInTheFuture):
		return refuse(700024, "client assertion is issued in the future")
	case err != nil:
		return refuse(50027, "client assertion claims are not valid")
	}
	if exp.After(now.Add(maxAssertionLifetime + skew)) {
		return refuse(700024, "client assertion expires more than %v from now", maxAssertionLifetime)
	}
	if c.ID == "" || len(c.ID) > maxJTILen {
		return refuse(50027, "client assertion must have a jti of 1 to %d characters", maxJTILen)
	}
	switch i.replay.add(replayKey(clientID, c.ID), exp.Add(skew), now) {
	case replayed:
		return refuse(0, "client assertion was already used (its jti was seen before); make a new one for each request")
	case replayFull:
		i.log.Error("client assertion replay cache is full", "size", replayCacheSize)
		return &oauthError{status: http.StatusServiceUnavailable, code: "temporarily_unavailable",
			desc: "too many recent client assertions to check for replay; retry later"}
	}
	return nil
}

// selectCertificate returns the certificate of p that the assertion header names. The header
// may name it by x5t#S256 (SHA-256 of the DER), x5t (SHA-1) and x5c (the leaf); each one present
// must name the same registered certificate. An x5c chain is not trusted for anything else.
// The validity period is the caller's to check.
func selectCertificate(p Principal, h jose.Header, now time.Time) (*x509.Certificate, *oauthError) {
	refuse := func(format string, args ...any) (*x509.Certificate, *oauthError) {
		return nil, &oauthError{status: http.StatusUnauthorized, code: "invalid_client", aad: 700027, desc: fmt.Sprintf(format, args...)}
	}
	var sel *Certificate
	// pick selects the registered certificate that match accepts; false if there is none or
	// it is not the one selected before.
	pick := func(match func(Certificate) bool) bool {
		for k := range p.Certificates {
			if c := &p.Certificates[k]; match(*c) {
				if sel != nil && sel != c {
					return false
				}
				sel = c
				return true
			}
		}
		return false
	}
	if v, ok := h.ExtraHeaders["x5t#S256"]; ok {
		tp, ok := decodeThumbprint(v, sha256.Size)
		if !ok {
			return refuse("the x5t#S256 header of the client assertion is not a base64 SHA-256 thumbprint")
		}
		if !pick(func(c Certificate) bool { s := sha256.Sum256(c.DER); return bytes.Equal(s[:], tp) }) {
			return refuse("the certificate with thumbprint (SHA-256) %x is not registered for the application", tp)
		}
	}
	if v, ok := h.ExtraHeaders["x5t"]; ok {
		tp, ok := decodeThumbprint(v, sha1.Size)
		if !ok {
			return refuse("the x5t header of the client assertion is not a base64 SHA-1 thumbprint")
		}
		if !pick(func(c Certificate) bool { s := sha1.Sum(c.DER); return bytes.Equal(s[:], tp) }) { // #nosec G401
			return refuse("the certificate with thumbprint (SHA-1) %x is not registered for the application, or is not the one x5t#S256 names", tp)
		}
	}
	var cert *x509.Certificate
	if sel != nil {
		c, err := ParseCertificate(sel.DER)
		if err != nil {
			return refuse("the registered certificate %s cannot be used: %v", sel.ID, err)
		}
		cert = c
	}

	// x5c: go-jose hands out the chain only through x509 verification, so it is verified with
	// the registered certificates as roots, and its leaf must be one of them: a chain up to a
	// registered certificate is not enough. When a thumbprint selected the certificate, the
	// leaf must be that one; its validity period is checked by the caller, so the chain is
	// verified at a time inside it.
	opts := x509.VerifyOptions{Roots: x509.NewCertPool(), CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
	if cert != nil {
		opts.Roots.AddCert(cert)
		opts.CurrentTime = cert.NotBefore
	} else {
		for _, c := range p.Certificates {
			if pc, err := x509.ParseCertificate(c.DER); err == nil {
				opts.Roots.AddCert(pc)
			}
		}
	}
	chains, err := h.Certificates(opts)
	switch {
	case errors.Is(err, jose.ErrMissingX5cHeader):
		if cert == nil {
			return refuse("the client assertion names no certificate: its header needs x5t#S256 (or x5t, or x5c)")
		}
		return cert, nil
	case err != nil || len(chains) == 0 || len(chains[0]) == 0:
		if cert != nil {
			return refuse("the leaf of the client assertion's x5c is not the certificate its thumbprint names")
		}
		return refuse("the leaf of the client assertion's x5c is not a registered certificate of the application valid now")
	}
	leaf := chains[0][0].Raw
	if cert != nil {
		if !bytes.Equal(leaf, cert.Raw) {
			return refuse("the leaf of the client assertion's x5c is not the certificate its thumbprint names")
		}
		return cert, nil
	}
	if !pick(func(c Certificate) bool { return bytes.Equal(c.DER, leaf) }) {
		return refuse("the leaf of the client assertion's x5c is not a registered certificate of the application")
	}
	c, err := ParseCertificate(sel.DER)
	if err != nil {
		return refuse("the registered certificate %s cannot be used: %v", sel.ID, err)
	}
	return c, nil
}

// replayKey identifies a client assertion: the client and its jti.
func replayKey(clientID, jti string) [sha256.Size]byte {
	return sha256.Sum256([]byte(strings.ToLower(clientID) + "\x00" + jti))
}

// replayResult is the outcome of recording a jti.
type replayResult int

const (
	replayFresh replayResult = iota + 1 // not seen before: recorded
	replayed                            // seen before and not yet expired
	replayFull                          // not recorded: the cache is full of live entries
)

// replayCache remembers the jtis of accepted client assertions until they expire, so that
// each assertion authenticates once. It is per node: see the package doc. It is bounded,
// and fails closed: when it is full of unexpired entries, new assertions are refused.
type replayCache struct {
	mu      sync.Mutex
	max     int
	seen    map[[sha256.Size]byte]time.Time // until when each key is remembered
	purgeAt time.Time                       // no entry expires before this
}

func newReplayCache(max int) *replayCache {
	return &replayCache{max: max, seen: make(map[[sha256.Size]byte]time.Time)}
}

// add records key until the given time, unless it is already recorded.
func (r *replayCache) add(key [sha256.Size]byte, until, now time.Time) replayResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	if t, ok := r.seen[key]; ok && now.Before(t) {
		return replayed
	}
	if len(r.seen) >= r.max && !now.Before(r.purgeAt) {
		// Scan only when an entry may have expired, so a full cache is not rescanned per request.
		var earliest time.Time
		for k, t := range r.seen {
			if !now.Before(t) {
				delete(r.seen, k)
			} else if earliest.IsZero() || t.Before(earliest) {
				earliest = t
			}
		}
		r.purgeAt = earliest
	}
	if _, ok := r.seen[key]; !ok && len(r.seen) >= r.max {
		return replayFull
	}
	r.seen[key] = until
	if r.purgeAt.IsZero() || until.Before(r.purgeAt) {
		r.purgeAt = until
	}
	return replayFresh
}
