package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/hsmpool/hsmpool/internal/fault"
)

var b64 = base64.RawURLEncoding

// signRaw signs arbitrary claims with key, alg and kid through go-jose, for tokens the issuer
// would never make.
func signRaw(t *testing.T, alg jose.SignatureAlgorithm, key any, kid string, claims any) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader(jose.HeaderKey("kid"), kid))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// goodClaims are the claims the fixture's issuer puts in a token for the app principal.
func (f *fixture) goodClaims() map[string]any {
	now := f.clock.now().Unix()
	return map[string]any{
		"iss": f.iss.Issuer(), "sub": appObjectID, "aud": testResource, "exp": now + 3600, "nbf": now, "iat": now,
		"tid": testTenant, "oid": appObjectID, "azp": appClientID, "appid": appClientID, "idtyp": "app", "ver": "2.0",
	}
}

func with(m map[string]any, kv ...any) map[string]any {
	c := make(map[string]any, len(m))
	for k, v := range m {
		c[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(c, kv[i].(string))
		} else {
			c[kv[i].(string)] = kv[i+1]
		}
	}
	return c
}

// flip changes one character of part (0 header, 1 payload, 2 signature) of a compact JWS.
func flip(tok string, part int) string {
	p := strings.Split(tok, ".")
	b := []byte(p[part])
	i := len(b) / 2
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	p[part] = string(b)
	return strings.Join(p, ".")
}

func TestValidate(t *testing.T) {
	f := newFixture(t)
	app := Principal{ObjectID: appObjectID, ClientID: appClientID}
	good, _, err := f.iss.issue(app, testResource, credSecret.azpacr())
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&f.key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	// An issuer with the same key at another authority: a valid signature, the wrong issuer.
	elsewhere, err := NewIssuer(IssuerConfig{AuthorityHost: "https://elsewhere.test", TenantID: testTenant,
		Signer: f.key, KeyID: "test-key-1", Now: f.clock.nowFunc()}, directory{})
	if err != nil {
		t.Fatal(err)
	}
	fromElsewhere, _, err := elsewhere.issue(app, testResource, credSecret.azpacr())
	if err != nil {
		t.Fatal(err)
	}
	none := b64.EncodeToString([]byte(`{"alg":"none","typ":"JWT","kid":"test-key-1"}`)) + "." +
		strings.Split(good, ".")[1] + "."
	gc := f.goodClaims()
	es := func(c map[string]any) string { return signRaw(t, jose.ES256, f.key, "test-key-1", c) }
	jsonJWS := func() string {
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: f.key},
			(&jose.SignerOptions{}).WithHeader(jose.HeaderKey("kid"), "test-key-1"))
		if err != nil {
			t.Fatal(err)
		}
		payload, _ := json.Marshal(gc)
		obj, err := s.Sign(payload)
		if err != nil {
			t.Fatal(err)
		}
		return obj.FullSerialize()
	}()

	tests := []struct {
		name      string
		token     string
		audiences []string
		advance   time.Duration // of the clock before validating
		wantErr   string        // "" means valid
	}{
		{name: "issued token", token: good},
		{name: "one of several audiences", token: good, audiences: []string{"https://other.test", testResource}},
		{name: "within the skew after expiry", token: good, advance: DefaultLifetime + 50*time.Second},
		{name: "within the skew before nbf", token: good, advance: -50 * time.Second},
		{name: "hand-made with the same claims", token: es(gc)},

		{name: "wrong audience", token: good, audiences: []string{"https://managedhsm.localhost"}, wantErr: "audience"},
		{name: "no audience accepted", token: good, audiences: []string{}, wantErr: "no accepted audience"},
		{name: "expired", token: good, advance: DefaultLifetime + 2*time.Minute, wantErr: "expired"},
		{name: "another token type signed by the pool", token: es(with(gc, "idtyp", "user")), wantErr: "not an access token"},
		{name: "no token version", token: es(with(gc, "ver", "1.0")), wantErr: "not an access token"},
		{name: "not yet valid", token: good, advance: -2 * time.Minute, wantErr: "not valid before"},
		{name: "issued in the future", token: es(with(gc, "nbf", gc["nbf"].(int64)-3600, "iat", gc["iat"].(int64)+120)), wantErr: "future"},
		{name: "tampered header", token: flip(good, 0), wantErr: "validate token"}, // bad JSON or another kid
		{name: "tampered payload", token: flip(good, 1), wantErr: "signature"},
		{name: "tampered signature", token: flip(good, 2), wantErr: "signature"},
		{name: "signature removed", token: strings.Join(strings.Split(good, ".")[:2], ".") + ".", wantErr: "signature"},
		{name: "another key with the pool's kid", token: signRaw(t, jose.ES256, otherKey, "test-key-1", gc), wantErr: "signature"},
		{name: "another key with its own kid", token: signRaw(t, jose.ES256, otherKey, "other", gc), wantErr: "key id"},
		{name: "no kid", token: signRaw(t, jose.ES256, f.key, "", gc), wantErr: "key id"},
		{name: "alg none", token: none, wantErr: "not a compact JWS"},
		{name: "HS256 keyed with the public key", token: signRaw(t, jose.HS256, pubDER, "test-key-1", gc), wantErr: "not a compact JWS"},
		{name: "RS256", token: signRaw(t, jose.RS256, rsaKey, "test-key-1", gc), wantErr: "not a compact JWS"},
		{name: "ES384", token: signRaw(t, jose.ES384, p384, "test-key-1", gc), wantErr: "not a compact JWS"},
		{name: "JSON serialization", token: jsonJWS, wantErr: "not a compact JWS"},
		{name: "another issuer", token: fromElsewhere, wantErr: "issuer"},
		{name: "another tenant", token: es(with(gc, "tid", otherTenant)), wantErr: "tenant"},
		{name: "two audiences", token: es(with(gc, "aud", []string{testResource, "https://x.test"})), wantErr: "2 audiences"},
		{name: "no exp", token: es(with(gc, "exp", nil)), wantErr: "lacks exp"},
		{name: "no nbf", token: es(with(gc, "nbf", nil)), wantErr: "lacks exp"},
		{name: "no iat", token: es(with(gc, "iat", nil)), wantErr: "lacks exp"},
		{name: "exp is a string", token: es(with(gc, "exp", "tomorrow")), wantErr: "malformed"},
		{name: "no oid", token: es(with(gc, "oid", nil)), wantErr: "oid"},
		{name: "sub is not oid", token: es(with(gc, "sub", oldObjectID)), wantErr: "oid"},
		{name: "appid is not azp", token: es(with(gc, "appid", oldClientID)), wantErr: "oid"},
		{name: "empty", token: "", wantErr: "empty"},
		{name: "garbage", token: "not a token", wantErr: "not a compact JWS"},
		{name: "three dots of garbage", token: "a.b.c", wantErr: "not a compact JWS"},
		{name: "too long", token: good + strings.Repeat("A", maxTokenLen), wantErr: "longer than"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := f.clock.now()
			f.clock.advance(tc.advance)
			defer f.clock.set(start)
			auds := tc.audiences
			if auds == nil {
				auds = []string{testResource}
			}
			claims, err := f.iss.Validate(t.Context(), tc.token, auds...)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				if claims.ObjectID != appObjectID || claims.ClientID != appClientID || claims.TenantID != testTenant ||
					claims.Audience != testResource {
					t.Errorf("Validate = %+v", claims)
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
			if len(tc.token) > 10 && strings.Contains(err.Error(), tc.token) ||
				strings.Contains(err.Error(), strings.Split(good, ".")[2]) {
				t.Errorf("the error contains the token: %v", err)
			}
			if claims != (Claims{}) {
				t.Errorf("Validate returned claims with an error: %+v", claims)
			}
		})
	}
}

// TestJWKSVerifiesToken fetches the JWKS over TLS and verifies a token with go-jose alone.
func TestJWKSVerifiesToken(t *testing.T) {
	f := newFixture(t)
	tok, _, err := f.iss.issue(Principal{ObjectID: appObjectID, ClientID: appClientID}, testResource, credSecret.azpacr())
	if err != nil {
		t.Fatal(err)
	}
	resp, err := f.srv.Client().Get(f.srv.URL + "/" + testTenant + "/discovery/v2.0/keys")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET keys: %s", resp.Status)
	}
	var raw struct {
		Keys []map[string]any `json:"keys"`
	}
	var set jose.JSONWebKeySet
	body := readAll(t, resp)
	if err := json.Unmarshal(body, &raw); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(body, &set); err != nil {
		t.Fatal(err)
	}
	if len(raw.Keys) != 1 || len(set.Keys) != 1 {
		t.Fatalf("JWKS has %d keys, want 1: %s", len(set.Keys), body)
	}
	for k, want := range map[string]string{"kty": "EC", "crv": "P-256", "kid": "test-key-1", "alg": "ES256", "use": "sig"} {
		if raw.Keys[0][k] != want {
			t.Errorf("JWKS %s = %v, want %q", k, raw.Keys[0][k], want)
		}
	}
	if _, ok := raw.Keys[0]["d"]; ok {
		t.Fatal("JWKS publishes the private key")
	}
	parsed, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	keys := set.Key(parsed.Headers[0].KeyID)
	if len(keys) != 1 {
		t.Fatalf("no JWKS key for kid %q", parsed.Headers[0].KeyID)
	}
	var reg jwt.Claims
	var ext map[string]any
	if err := parsed.Claims(keys[0].Key, &reg, &ext); err != nil {
		t.Fatalf("verify with the JWKS key: %v", err)
	}
	if err := reg.ValidateWithLeeway(jwt.Expected{Issuer: f.iss.Issuer(), AnyAudience: []string{testResource}}, time.Minute); err != nil {
		t.Errorf("claims: %v", err)
	}
	if ext["oid"] != appObjectID || ext["azp"] != appClientID || ext["appid"] != appClientID || ext["tid"] != testTenant {
		t.Errorf("claims = %v", ext)
	}
	if h := parsed.Headers[0]; h.Algorithm != "ES256" || h.ExtraHeaders["typ"] != "JWT" {
		t.Errorf("header = %+v", h)
	}
}

// TestValidateCache checks that a token answered from the cache of valid tokens is still held
// to its audience, nbf and exp.
func TestValidateCache(t *testing.T) {
	f := newFixture(t)
	app := Principal{ObjectID: appObjectID, ClientID: appClientID}
	tok, _, err := f.iss.issue(app, testResource, credSecret.azpacr())
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	before := f.iss.valid.Len()
	for range 2 { // the second call is a cache hit
		if _, err := f.iss.Validate(ctx, tok, testResource); err != nil {
			t.Fatalf("Validate: %v", err)
		}
	}
	if n := f.iss.valid.Len() - before; n != 1 {
		t.Fatalf("two validations cached %d tokens, want 1", n)
	}
	if _, err := f.iss.Validate(ctx, tok, "https://other.localhost"); fault.Of(err) != fault.Unauthorized {
		t.Errorf("cached token for another audience: %v", err)
	}
	if _, err := f.iss.Validate(ctx, tok, testResource); err != nil {
		t.Fatalf("Validate after a wrong-audience call: %v", err)
	}
	f.clock.advance(-2 * time.Minute) // before nbf - skew
	if _, err := f.iss.Validate(ctx, tok, testResource); fault.Of(err) != fault.Unauthorized {
		t.Errorf("cached token before its nbf: %v", err)
	}
	f.clock.advance(2*time.Minute + DefaultLifetime + 2*time.Minute)
	if _, err := f.iss.Validate(ctx, tok, testResource); fault.Of(err) != fault.Unauthorized {
		t.Errorf("cached token after its exp: %v", err)
	}
	// A tampered token is never a cache hit.
	f.clock.advance(-DefaultLifetime)
	if _, err := f.iss.Validate(ctx, flip(tok, 2), testResource); fault.Of(err) != fault.Unauthorized {
		t.Errorf("tampered token: %v", err)
	}
}
