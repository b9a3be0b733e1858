package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/hsmpool/hsmpool/internal/fault"
)

const (
	// jwksRefreshInterval is the shortest time between two reads of an external issuer's JWKS:
	// a token with an unknown kid triggers a read at most this often.
	jwksRefreshInterval = time.Minute
	// jwksMaxAge is how long a JWKS is used before it is read again on the next use, so that a
	// key the issuer withdrew stops being trusted. If that read fails the old set stays in use.
	jwksMaxAge = time.Hour
	// jwksFetchTimeout bounds one fetch of a JWKS URL.
	jwksFetchTimeout = 10 * time.Second
	// maxJWKSLen bounds a JWKS document.
	maxJWKSLen = 1 << 20
)

// externalAlgs are the algorithms accepted from external issuers.
var externalAlgs = []jose.SignatureAlgorithm{jose.RS256, jose.PS256, jose.ES256}

// ExternalIssuer is an OpenID Connect issuer whose access tokens Validate accepts besides the
// pool's own: a token whose iss is exactly Issuer, signed with a key of its JWKS (RS256, PS256
// or ES256), with an aud among Audiences, an oid, and exp (and nbf, iat if present) within
// the usual skew.
type ExternalIssuer struct {
	// Issuer is the "iss" of its tokens, compared exactly (an https URL).
	Issuer string
	// Audiences are the "aud" values accepted from it. They replace the audiences the caller
	// of Validate passes, which are the pool's resource(s).
	Audiences []string
	// JWKSFile is a file with its JWKS (JSON); or
	JWKSFile string
	// JWKSURL is the https URL of its JWKS, fetched when first needed.
	JWKSURL string
	// HTTPClient fetches JWKSURL; nil means a client with the system roots. Each fetch has a
	// 10 s timeout either way.
	HTTPClient *http.Client
}

// external is a trusted external issuer.
type external struct {
	issuer    string
	audiences []string
	keys      *jwks
}

func newExternal(e ExternalIssuer, pool string, now func() time.Time) (*external, error) {
	u, err := url.Parse(e.Issuer)
	switch {
	case err != nil || u.Scheme != "https" || u.Host == "":
		return nil, fmt.Errorf("issuer %q is not an https URL", e.Issuer)
	case e.Issuer == pool:
		return nil, fmt.Errorf("issuer %q is the pool's own", e.Issuer)
	case len(e.Audiences) == 0 || slices.Contains(e.Audiences, ""):
		return nil, fmt.Errorf("issuer %q: at least one audience is required, and none may be empty", e.Issuer)
	case (e.JWKSFile == "") == (e.JWKSURL == ""):
		return nil, fmt.Errorf("issuer %q: exactly one of JWKSFile and JWKSURL is required", e.Issuer)
	}
	k := &jwks{file: e.JWKSFile, url: e.JWKSURL, client: e.HTTPClient, now: now, sem: make(chan struct{}, 1)}
	if e.JWKSURL != "" {
		if u, err := url.Parse(e.JWKSURL); err != nil || u.Scheme != "https" || u.Host == "" {
			return nil, fmt.Errorf("issuer %q: JWKS URL %q is not an https URL", e.Issuer, e.JWKSURL)
		}
		if k.client == nil {
			k.client = &http.Client{}
		}
	} else if err := k.refresh(context.Background()); err != nil {
		// A file is read at once, so that a wrong path or content stops the daemon at start.
		return nil, fmt.Errorf("issuer %q: %w", e.Issuer, err)
	}
	return &external{issuer: e.Issuer, audiences: slices.Clone(e.Audiences), keys: k}, nil
}

// jwks is the key set of an external issuer, read from a file or fetched from a URL, and
// read again when a token names an unknown kid (at most once per jwksRefreshInterval) or the
// set is older than jwksMaxAge.
type jwks struct {
	file, url string
	client    *http.Client
	now       func() time.Time
	set       atomic.Pointer[keySet]
	sem       chan struct{} // held while reading; guards last and lastErr
	last      time.Time     // of the last read, successful or not
	lastErr   error
}

type keySet struct {
	keys []jose.JSONWebKey // public signing keys only
	read time.Time
}

// key returns the key with key ID kid (any single key when kid is empty and the set has one).
func (k *jwks) key(ctx context.Context, kid string) (jose.JSONWebKey, error) {
	s := k.set.Load()
	if s != nil {
		if key, ok := s.find(kid); ok && k.now().Sub(s.read) < jwksMaxAge {
			return key, nil
		}
	}
	err := k.refresh(ctx)
	if s2 := k.set.Load(); s2 != nil {
		if key, ok := s2.find(kid); ok {
			return key, nil // from the new set, or the old one when the read failed
		}
	}
	if err != nil {
		return jose.JSONWebKey{}, err
	}
	return jose.JSONWebKey{}, errors.New("the token's key id is not in the issuer's JWKS")
}

func (s *keySet) find(kid string) (jose.JSONWebKey, bool) {
	if kid == "" {
		if len(s.keys) == 1 {
			return s.keys[0], true
		}
		return jose.JSONWebKey{}, false
	}
	for _, k := range s.keys {
		if k.KeyID == kid {
			return k, true
		}
	}
	return jose.JSONWebKey{}, false
}

// refresh reads the set again unless it was read less than jwksRefreshInterval ago, in which
// case it returns that read's error. Concurrent callers wait for one read (bounded by ctx).
func (k *jwks) refresh(ctx context.Context) error {
	select {
	case k.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-k.sem }()
	now := k.now()
	if !k.last.IsZero() && now.Sub(k.last) < jwksRefreshInterval {
		return k.lastErr
	}
	k.last = now
	b, err := k.read(ctx)
	if err == nil {
		var keys []jose.JSONWebKey
		if keys, err = parseJWKS(b); err == nil {
			k.set.Store(&keySet{keys: keys, read: now})
		}
	}
	k.lastErr = err
	return err
}

func (k *jwks) read(ctx context.Context) ([]byte, error) {
	if k.file != "" {
		b, err := os.ReadFile(k.file)
		if err != nil {
			return nil, fmt.Errorf("read JWKS: %w", err)
		}
		return b, nil
	}
	ctx, cancel := context.WithTimeout(ctx, jwksFetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.url, nil)
	if err != nil {
		return nil, fmt.Errorf("fetch JWKS %s: %w", k.url, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch JWKS: %w", err) // the error names the URL
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch JWKS %s: %s", k.url, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSLen+1))
	switch {
	case err != nil:
		return nil, fmt.Errorf("fetch JWKS %s: %w", k.url, err)
	case len(b) > maxJWKSLen:
		return nil, fmt.Errorf("fetch JWKS %s: larger than %d bytes", k.url, maxJWKSLen)
	}
	return b, nil
}

// parseJWKS returns the public signing keys of a JWKS: RSA of at least 2048 bits or EC
// P-256, with use "sig" or none. Keys it cannot use (other types, encryption keys, malformed
// entries) are skipped, since issuers publish them too; a set without a usable key is an
// error. Private parts, if any, are dropped.
func parseJWKS(b []byte) ([]jose.JSONWebKey, error) {
	var raw struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, errors.New("JWKS is not a JSON object with keys")
	}
	var keys []jose.JSONWebKey
	for _, r := range raw.Keys {
		var k jose.JSONWebKey
		if k.UnmarshalJSON(r) != nil || (k.Use != "" && k.Use != "sig") {
			continue
		}
		pub := k.Public()
		switch p := pub.Key.(type) {
		case *rsa.PublicKey:
			if p.N.BitLen() < minRSABits {
				continue
			}
		case *ecdsa.PublicKey:
			if p.Curve != elliptic.P256() {
				continue
			}
		default:
			continue
		}
		keys = append(keys, pub)
	}
	if len(keys) == 0 {
		return nil, errors.New("JWKS has no usable signing key (RSA of 2048 bits or more, or EC P-256)")
	}
	return keys, nil
}

// externalClaims are the claims read from an external issuer's access token beyond the
// registered ones (Entra ID's names).
type externalClaims struct {
	ObjectID        string `json:"oid"`
	TenantID        string `json:"tid"`
	AuthorizedParty string `json:"azp"`
	AppID           string `json:"appid"`
}

// validateExternal checks a token whose (unverified) iss is e's. Its audiences are e's.
func (i *Issuer) validateExternal(ctx context.Context, e *external, jws *jose.JSONWebSignature) (Claims, error) {
	fail := func(format string, args ...any) (Claims, error) {
		return Claims{}, fmt.Errorf("validate token of %s: %s: %w", e.issuer, fmt.Sprintf(format, args...), fault.Unauthorized)
	}
	h := jws.Signatures[0].Header
	key, err := e.keys.key(ctx, h.KeyID)
	if err != nil {
		return fail("%v", err)
	}
	if !algFits(h.Algorithm, key.Key) || (key.Algorithm != "" && key.Algorithm != h.Algorithm) {
		return fail("the token's alg %s does not fit its key", h.Algorithm)
	}
	payload, err := jws.Verify(key.Key)
	if err != nil {
		return fail("signature is not valid")
	}
	var reg jwt.Claims
	var ext externalClaims
	if json.Unmarshal(payload, &reg) != nil || json.Unmarshal(payload, &ext) != nil {
		return fail("claims are malformed")
	}
	if reg.Issuer != e.issuer { // checked unverified before: the same bytes, so only a bug gets here
		return fail("issuer is not %q", e.issuer)
	}
	if reg.Expiry == nil {
		return fail("token lacks exp")
	}
	err = reg.ValidateWithLeeway(jwt.Expected{AnyAudience: e.audiences, Time: i.now()}, skew)
	switch {
	case errors.Is(err, jwt.ErrInvalidAudience):
		return fail("audience %q is not one of %q", []string(reg.Audience), e.audiences)
	case errors.Is(err, jwt.ErrExpired):
		return fail("token expired at %s", reg.Expiry.Time().UTC().Format(time.RFC3339))
	case errors.Is(err, jwt.ErrNotValidYet):
		return fail("token is not valid before %s", reg.NotBefore.Time().UTC().Format(time.RFC3339))
	case errors.Is(err, jwt.ErrIssuedInTheFuture):
		return fail("token is issued in the future (%s)", reg.IssuedAt.Time().UTC().Format(time.RFC3339))
	case err != nil:
		return fail("claims are not valid")
	}
	if ext.ObjectID == "" {
		return fail("token lacks oid")
	}
	c := Claims{
		Issuer:   e.issuer,
		External: true,
		ObjectID: ext.ObjectID,
		ClientID: ext.AuthorizedParty,
		TenantID: ext.TenantID,
		Expiry:   reg.Expiry.Time(),
	}
	if c.ClientID == "" {
		c.ClientID = ext.AppID
	}
	for _, a := range reg.Audience {
		if slices.Contains(e.audiences, a) {
			c.Audience = a
			break
		}
	}
	if reg.NotBefore != nil {
		c.NotBefore = reg.NotBefore.Time()
	}
	return c, nil
}
