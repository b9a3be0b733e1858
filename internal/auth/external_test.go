package auth

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/hsmpool/hsmpool/internal/fault"
)

const (
	extIssuer   = "https://login.example.test/" + otherTenant + "/v2.0"
	extAudience = "api://hsmpool-test"
	extOID      = "dddddddd-bbbb-cccc-dddd-eeeeeeeeeeee"
)

// localIssuer is an OIDC issuer made in the test: an RSA and an EC key with their JWKS.
type localIssuer struct {
	rsa, ec any
	jwks    []byte
}

func newLocalIssuer(t *testing.T) *localIssuer {
	k, _ := testKeys()
	ec := mustP256(t)
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: &k.PublicKey, KeyID: "ext-rsa", Use: "sig"},
		{Key: &ec.PublicKey, KeyID: "ext-ec", Algorithm: "ES256", Use: "sig"},
	}}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return &localIssuer{rsa: k, ec: ec, jwks: b}
}

// claims are an external access token's claims at now.
func (l *localIssuer) claims(now time.Time) map[string]any {
	n := now.Unix()
	return map[string]any{"iss": extIssuer, "aud": extAudience, "sub": extOID, "oid": extOID, "tid": otherTenant,
		"azp": appClientID, "iat": n, "nbf": n, "exp": n + 3600}
}

func (l *localIssuer) file(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(p, l.jwks, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func newExternalIssuer(t *testing.T, c *clock, ext ...ExternalIssuer) (*Issuer, error) {
	return NewIssuer(IssuerConfig{AuthorityHost: "https://127.0.0.1:8443", TenantID: testTenant, Signer: mustP256(t),
		KeyID: "test-key-1", Now: c.nowFunc(), External: ext}, directory{})
}

func TestExternalIssuer(t *testing.T) {
	l := newLocalIssuer(t)
	c := newClock(time.Now())
	iss, err := newExternalIssuer(t, c, ExternalIssuer{Issuer: extIssuer, Audiences: []string{"api://other", extAudience}, JWKSFile: l.file(t)})
	if err != nil {
		t.Fatal(err)
	}
	gc := l.claims(c.now())
	other := mustP256(t)
	poolTok, _, err := iss.issue(Principal{ObjectID: appObjectID, ClientID: appClientID}, testResource, "1")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		token   string
		advance time.Duration
		wantErr string
	}{
		{name: "RS256", token: signRaw(t, jose.RS256, l.rsa, "ext-rsa", gc)},
		{name: "PS256", token: signRaw(t, jose.PS256, l.rsa, "ext-rsa", gc)},
		{name: "ES256", token: signRaw(t, jose.ES256, l.ec, "ext-ec", gc)},
		{name: "aud list", token: signRaw(t, jose.RS256, l.rsa, "ext-rsa", with(gc, "aud", []string{"x", extAudience}))},
		{name: "no nbf or iat", token: signRaw(t, jose.RS256, l.rsa, "ext-rsa", with(gc, "nbf", nil, "iat", nil))},
		{name: "the pool's own token still", token: poolTok},

		{name: "untrusted issuer", token: signRaw(t, jose.RS256, l.rsa, "ext-rsa", with(gc, "iss", "https://login.example.test/x/v2.0")),
			wantErr: "neither this pool's nor a trusted"},
		{name: "issuer differs in case", token: signRaw(t, jose.RS256, l.rsa, "ext-rsa", with(gc, "iss", strings.ToUpper(extIssuer))),
			wantErr: "neither this pool's nor a trusted"},
		{name: "expired", token: signRaw(t, jose.RS256, l.rsa, "ext-rsa", gc), advance: time.Hour + 2*time.Minute, wantErr: "expired"},
		{name: "not yet valid", token: signRaw(t, jose.RS256, l.rsa, "ext-rsa", gc), advance: -2 * time.Minute, wantErr: "not valid before"},
		{name: "no exp", token: signRaw(t, jose.RS256, l.rsa, "ext-rsa", with(gc, "exp", nil)), wantErr: "lacks exp"},
		{name: "bad signature", token: signRaw(t, jose.ES256, other, "ext-ec", gc), wantErr: "signature"},
		{name: "tampered", token: flip(signRaw(t, jose.RS256, l.rsa, "ext-rsa", gc), 1), wantErr: "validate token"},
		{name: "wrong audience", token: signRaw(t, jose.RS256, l.rsa, "ext-rsa", with(gc, "aud", "api://elsewhere")), wantErr: "audience"},
		{name: "the pool's audience", token: signRaw(t, jose.RS256, l.rsa, "ext-rsa", with(gc, "aud", testResource)), wantErr: "audience"},
		{name: "no oid", token: signRaw(t, jose.RS256, l.rsa, "ext-rsa", with(gc, "oid", nil)), wantErr: "oid"},
		{name: "unknown kid", token: signRaw(t, jose.RS256, l.rsa, "ext-nope", gc), wantErr: "not in the issuer's JWKS"},
		{name: "alg other than the key's", token: signRaw(t, jose.RS256, l.rsa, "ext-ec", gc), wantErr: "does not fit"},
		{name: "HS256", token: signRaw(t, jose.HS256, []byte("0123456789abcdef0123456789abcdef"), "ext-rsa", gc), wantErr: "not a compact JWS"},
		{name: "RS256 in the pool's name", token: signRaw(t, jose.RS256, l.rsa, "test-key-1", with(gc, "iss", iss.Issuer())),
			wantErr: "signed with ES256"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := c.now()
			c.advance(tc.advance)
			defer c.set(start)
			claims, err := iss.Validate(t.Context(), tc.token, testResource)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				if tc.token == poolTok {
					return
				}
				want := Claims{Issuer: extIssuer, External: true, ObjectID: extOID, ClientID: appClientID, TenantID: otherTenant, Audience: extAudience,
					Expiry: time.Unix(gc["exp"].(int64), 0)}
				if _, ok := unverifiedClaims(t, tc.token)["nbf"]; ok {
					want.NotBefore = time.Unix(gc["nbf"].(int64), 0)
				}
				if !claims.Expiry.Equal(want.Expiry) || !claims.NotBefore.Equal(want.NotBefore) {
					t.Errorf("times = %v, %v; want %v, %v", claims.Expiry, claims.NotBefore, want.Expiry, want.NotBefore)
				}
				claims.Expiry, claims.NotBefore = want.Expiry, want.NotBefore
				if claims != want {
					t.Errorf("Validate = %+v, want %+v", claims, want)
				}
				// From the cache: its audiences still apply, not the caller's.
				if again, err := iss.Validate(t.Context(), tc.token, "https://anything.test"); err != nil || again.ObjectID != extOID {
					t.Errorf("cached: %+v, %v", again, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate accepted the token: %+v", claims)
			}
			if fault.Of(err) != fault.Unauthorized {
				t.Errorf("kind = %v, want unauthorized (%v)", fault.Of(err), err)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q does not mention %q", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), tc.token) {
				t.Error("the error contains the token")
			}
		})
	}
}

func unverifiedClaims(t *testing.T, tok string) map[string]any {
	jws, err := jose.ParseSignedCompact(tok, externalAlgs)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestExternalIssuerJWKSURL serves the JWKS over TLS: fetched when first needed, fetched
// again for an unknown kid at most once a minute, and after key rotation.
func TestExternalIssuerJWKSURL(t *testing.T) {
	l := newLocalIssuer(t)
	var mu sync.Mutex
	body := []byte(`{"keys":[]}`) // nothing until the test sets it
	var hits atomic.Int64
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		mu.Lock()
		defer mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	defer srv.Close()
	setBody := func(b []byte) { mu.Lock(); body = b; mu.Unlock() }

	c := newClock(time.Now())
	iss, err := newExternalIssuer(t, c, ExternalIssuer{Issuer: extIssuer, Audiences: []string{extAudience},
		JWKSURL: srv.URL + "/keys", HTTPClient: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("NewIssuer fetched the JWKS %d times, want 0 (fetched when needed)", n)
	}
	tok := signRaw(t, jose.RS256, l.rsa, "ext-rsa", l.claims(c.now()))
	// First use: an empty set is refused as unusable.
	if _, err := iss.Validate(t.Context(), tok, testResource); err == nil || !strings.Contains(err.Error(), "no usable signing key") {
		t.Fatalf("with an empty JWKS: %v", err)
	}
	setBody(l.jwks)
	if _, err := iss.Validate(t.Context(), tok, testResource); err == nil {
		t.Fatal("fetched again within a minute of the last fetch")
	}
	if n := hits.Load(); n != 1 {
		t.Fatalf("%d fetches, want 1", n)
	}
	c.advance(jwksRefreshInterval + time.Second)
	tok = signRaw(t, jose.RS256, l.rsa, "ext-rsa", l.claims(c.now()))
	claims, err := iss.Validate(t.Context(), tok, testResource)
	if err != nil || claims.ObjectID != extOID {
		t.Fatalf("after a minute: %+v, %v", claims, err)
	}
	// Unknown kids: one fetch, then none for a minute.
	for range 5 {
		if _, err := iss.Validate(t.Context(), signRaw(t, jose.RS256, l.rsa, "ext-new", l.claims(c.now())), testResource); err == nil {
			t.Fatal("unknown kid accepted")
		}
	}
	if n := hits.Load(); n != 2 {
		t.Fatalf("%d fetches, want 2", n)
	}
	// Rotation: the issuer publishes a new key; a token with its kid is accepted after a minute.
	rotated := mustP256(t)
	b, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &rotated.PublicKey, KeyID: "ext-new", Use: "sig"}}})
	setBody(b)
	c.advance(jwksRefreshInterval + time.Second)
	if _, err := iss.Validate(t.Context(), signRaw(t, jose.ES256, rotated, "ext-new", l.claims(c.now())), testResource); err != nil {
		t.Fatalf("rotated key: %v", err)
	}
	// The withdrawn key stops working once the set is read again (an hour later at most).
	c.advance(jwksMaxAge)
	if _, err := iss.Validate(t.Context(), signRaw(t, jose.RS256, l.rsa, "ext-rsa", l.claims(c.now())), testResource); err == nil {
		t.Fatal("a withdrawn key still verifies tokens")
	}
	// A server that fails: the cached set stays in use.
	srvFail := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "down", http.StatusServiceUnavailable) }))
	defer srvFail.Close()
	iss2, err := newExternalIssuer(t, c, ExternalIssuer{Issuer: extIssuer, Audiences: []string{extAudience},
		JWKSURL: srvFail.URL, HTTPClient: srvFail.Client()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := iss2.Validate(t.Context(), tok, testResource); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("JWKS server down: %v", err)
	}
}

func TestExternalIssuerConfig(t *testing.T) {
	l := newLocalIssuer(t)
	file := l.file(t)
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte(`{"keys":[{"kty":"oct","k":"AAAA"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	c := newClock(time.Now())
	ok := ExternalIssuer{Issuer: extIssuer, Audiences: []string{extAudience}, JWKSFile: file}
	for name, tc := range map[string]struct {
		ext  []ExternalIssuer
		want string
	}{
		"http issuer":        {[]ExternalIssuer{{Issuer: "http://x.test", Audiences: []string{"a"}, JWKSFile: file}}, "https"},
		"no audience":        {[]ExternalIssuer{{Issuer: extIssuer, JWKSFile: file}}, "audience"},
		"empty audience":     {[]ExternalIssuer{{Issuer: extIssuer, Audiences: []string{""}, JWKSFile: file}}, "audience"},
		"no JWKS":            {[]ExternalIssuer{{Issuer: extIssuer, Audiences: []string{"a"}}}, "exactly one"},
		"both JWKS":          {[]ExternalIssuer{{Issuer: extIssuer, Audiences: []string{"a"}, JWKSFile: file, JWKSURL: "https://x.test/k"}}, "exactly one"},
		"http JWKS URL":      {[]ExternalIssuer{{Issuer: extIssuer, Audiences: []string{"a"}, JWKSURL: "http://x.test/k"}}, "https"},
		"missing JWKS file":  {[]ExternalIssuer{{Issuer: extIssuer, Audiences: []string{"a"}, JWKSFile: file + ".nope"}}, "read JWKS"},
		"JWKS without keys":  {[]ExternalIssuer{{Issuer: extIssuer, Audiences: []string{"a"}, JWKSFile: bad}}, "no usable"},
		"the pool's issuer":  {[]ExternalIssuer{{Issuer: "https://127.0.0.1:8443/" + testTenant + "/v2.0", Audiences: []string{"a"}, JWKSFile: file}}, "pool's own"},
		"listed twice":       {[]ExternalIssuer{ok, ok}, "twice"},
		"second one invalid": {[]ExternalIssuer{ok, {Issuer: "x"}}, "External[1]"},
	} {
		_, err := newExternalIssuer(t, c, tc.ext...)
		if err == nil || !strings.Contains(err.Error(), tc.want) || fault.Of(err) != fault.BadParameter {
			t.Errorf("%s: %v, want a BadParameter error mentioning %q", name, err, tc.want)
		}
	}
}
