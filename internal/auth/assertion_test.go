package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

const (
	certClientID = "33333333-2222-3333-4444-555555555555"
	certObjectID = "cccccccc-bbbb-cccc-dddd-eeeeeeeeeeee"
)

// testCert is a certificate credential with its private key.
type testCert struct {
	key  crypto.Signer
	cert *x509.Certificate
}

func (c testCert) credential() Certificate {
	return Certificate{ID: CertificateThumbprint(c.cert.Raw), DER: c.cert.Raw}
}

// makeCert makes a self-signed client certificate valid from notBefore to notAfter.
func makeCert(t testing.TB, key crypto.Signer, notBefore, notAfter time.Time) testCert {
	t.Helper()
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: "hsmpool test client"},
		NotBefore: notBefore, NotAfter: notAfter, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return testCert{key: key, cert: c}
}

// testKeys are made once: RSA key generation is slow.
var testKeys = sync.OnceValues(func() (*rsa.PrivateKey, *rsa.PrivateKey) {
	a, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	b, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return a, b
})

// certSet is the certificate principal's credentials.
type certSet struct {
	rsa, ec, expired, other testCert // other is not registered
}

func newCertSet(t testing.TB, now time.Time) certSet {
	t.Helper()
	k1, k2 := testKeys()
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return certSet{
		rsa:     makeCert(t, k1, now.Add(-time.Hour), now.Add(365*24*time.Hour)),
		ec:      makeCert(t, ek, now.Add(-time.Hour), now.Add(365*24*time.Hour)),
		expired: makeCert(t, k2, now.Add(-48*time.Hour), now.Add(-24*time.Hour)),
		other:   makeCert(t, k2, now.Add(-time.Hour), now.Add(time.Hour)),
	}
}

func (s certSet) principal() Principal {
	return Principal{ObjectID: certObjectID, ClientID: certClientID, DisplayName: "cert app",
		Certificates: []Certificate{s.expired.credential(), s.rsa.credential(), s.ec.credential()}}
}

// assertion signs claims as a client assertion with headers (nil values are left out).
func assertion(t testing.TB, alg jose.SignatureAlgorithm, key any, headers map[string]any, claims any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	for k, v := range headers {
		if v != nil {
			opts = opts.WithHeader(jose.HeaderKey(k), v)
		}
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func x5tS256(c testCert) string {
	s := sha256.Sum256(c.cert.Raw)
	return base64.StdEncoding.EncodeToString(s[:]) // as MSAL sends it
}

func x5t(c testCert) string {
	s := sha1.Sum(c.cert.Raw)
	return base64.RawURLEncoding.EncodeToString(s[:]) // as RFC 7515 says
}

// assertionClaims are MSAL's claims for clientID at the fixture's token endpoint.
func (f *fixture) assertionClaims(clientID, jti string) map[string]any {
	now := f.clock.now().Unix()
	return map[string]any{"aud": f.iss.tokenEndpoint(), "iss": clientID, "sub": clientID, "jti": jti,
		"nbf": now, "exp": now + 600}
}

// certCredential is a stock azidentity.ClientCertificateCredential pointed at the fixture.
func (f *fixture) certCredential(t *testing.T, c testCert, sendChain bool) *azidentity.ClientCertificateCredential {
	t.Helper()
	cred, err := azidentity.NewClientCertificateCredential(testTenant, certClientID, []*x509.Certificate{c.cert}, c.key,
		&azidentity.ClientCertificateCredentialOptions{
			ClientOptions: azcore.ClientOptions{
				Cloud:     cloud.Configuration{ActiveDirectoryAuthorityHost: f.srv.URL + "/"},
				Transport: f.srv.Client(),
			},
			DisableInstanceDiscovery: true,
			SendCertificateChain:     sendChain,
		})
	if err != nil {
		t.Fatal(err)
	}
	return cred
}

// TestAzidentityClientCertificate runs the real azidentity ClientCertificateCredential (MSAL
// Go: PS256, x5t#S256 in standard base64, optionally x5c) against the handler over TLS.
func TestAzidentityClientCertificate(t *testing.T) {
	certs := newCertSet(t, time.Now())
	f := newFixture(t, certs.principal())
	for _, chain := range []bool{false, true} {
		t.Run(map[bool]string{false: "x5t#S256", true: "x5t#S256 and x5c"}[chain], func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			tok, err := getToken(ctx, f.certCredential(t, certs.rsa, chain), testTenant)
			if err != nil {
				t.Fatalf("GetToken: %v", err)
			}
			claims, err := f.iss.Validate(ctx, tok.Token, testResource)
			if err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if claims.ObjectID != certObjectID || claims.ClientID != certClientID || claims.Issuer != f.iss.Issuer() {
				t.Errorf("Validate = %+v", claims)
			}
			var ext tokenClaims
			if err := jwtClaims(t, tok.Token, &ext); err != nil || ext.AuthMethod != "2" {
				t.Errorf("azpacr = %q (%v), want 2 (certificate)", ext.AuthMethod, err)
			}
		})
	}
	// An expired certificate: the real credential reports the pool's refusal.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	_, err := getToken(ctx, f.certCredential(t, certs.expired, false), testTenant)
	if err == nil || !strings.Contains(err.Error(), "AADSTS700027") || !strings.Contains(err.Error(), "expired") {
		t.Errorf("GetToken with an expired certificate: %v", err)
	}
	// A certificate the principal does not have.
	_, err = getToken(ctx, f.certCredential(t, certs.other, false), testTenant)
	if err == nil || !strings.Contains(err.Error(), "not registered") {
		t.Errorf("GetToken with an unregistered certificate: %v", err)
	}
	f.checkNoLeak(t)
}

func jwtClaims(t *testing.T, tok string, v any) error {
	t.Helper()
	p, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return err
	}
	return p.UnsafeClaimsWithoutVerification(v)
}

// TestClientAssertion posts hand-made assertions to the token endpoint.
func TestClientAssertion(t *testing.T) {
	certs := newCertSet(t, time.Now())
	f := newFixture(t, certs.principal())
	ecOther, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	jti := func() string {
		n++
		return "jti-" + strings.Repeat("x", n%3) + string(rune('a'+n%26)) + time.Now().Format("150405.000000000")
	}
	good := func() map[string]any { return f.assertionClaims(certClientID, jti()) }
	now := f.clock.now().Unix()
	b64x5c := func(c testCert) []string { return []string{base64.StdEncoding.EncodeToString(c.cert.Raw)} }
	hs, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: []byte("0123456789abcdef0123456789abcdef")}, nil)
	hsTok, _ := jwt.Signed(hs).Claims(good()).Serialize()

	tests := []struct {
		name       string
		clientID   string // default certClientID
		assertion  string
		wantStatus int
		wantAADSTS string // "" for none
		wantDesc   string
	}{
		{name: "PS256 x5t#S256 (MSAL)", assertion: assertion(t, jose.PS256, certs.rsa.key, map[string]any{"x5t#S256": x5tS256(certs.rsa)}, good()), wantStatus: 200},
		{name: "RS256 x5t (ADFS style)", assertion: assertion(t, jose.RS256, certs.rsa.key, map[string]any{"x5t": x5t(certs.rsa)}, good()), wantStatus: 200},
		{name: "ES256 x5t#S256 base64url", assertion: assertion(t, jose.ES256, certs.ec.key, map[string]any{
			"x5t#S256": base64.RawURLEncoding.EncodeToString(sha256Of(certs.ec.cert.Raw))}, good()), wantStatus: 200},
		{name: "x5c only", assertion: assertion(t, jose.PS256, certs.rsa.key, map[string]any{"x5c": b64x5c(certs.rsa)}, good()), wantStatus: 200},
		{name: "x5t#S256, x5t and x5c", assertion: assertion(t, jose.PS256, certs.rsa.key, map[string]any{
			"x5t#S256": x5tS256(certs.rsa), "x5t": x5t(certs.rsa), "x5c": b64x5c(certs.rsa)}, good()), wantStatus: 200},
		{name: "aud with the tenant in upper case", assertion: assertion(t, jose.PS256, certs.rsa.key, map[string]any{"x5t#S256": x5tS256(certs.rsa)},
			with(good(), "aud", strings.Replace(f.iss.tokenEndpoint(), testTenant, strings.ToUpper(testTenant), 1))), wantStatus: 200},
		{name: "aud among others", assertion: assertion(t, jose.PS256, certs.rsa.key, map[string]any{"x5t#S256": x5tS256(certs.rsa)},
			with(good(), "aud", []string{"https://elsewhere.test", f.iss.tokenEndpoint()})), wantStatus: 200},

		{name: "unknown thumbprint", assertion: assertion(t, jose.PS256, certs.other.key, map[string]any{"x5t#S256": x5tS256(certs.other)}, good()),
			wantStatus: 401, wantAADSTS: "700027", wantDesc: "not registered"},
		{name: "no thumbprint", assertion: assertion(t, jose.PS256, certs.rsa.key, nil, good()),
			wantStatus: 401, wantAADSTS: "700027", wantDesc: "names no certificate"},
		{name: "thumbprint not base64", assertion: assertion(t, jose.PS256, certs.rsa.key, map[string]any{"x5t#S256": "!!"}, good()),
			wantStatus: 401, wantAADSTS: "700027", wantDesc: "thumbprint"},
		{name: "x5c of another certificate", assertion: assertion(t, jose.PS256, certs.other.key, map[string]any{"x5c": b64x5c(certs.other)}, good()),
			wantStatus: 401, wantAADSTS: "700027", wantDesc: "x5c"},
		{name: "x5c differs from x5t#S256", assertion: assertion(t, jose.PS256, certs.rsa.key, map[string]any{
			"x5t#S256": x5tS256(certs.rsa), "x5c": b64x5c(certs.other)}, good()), wantStatus: 401, wantAADSTS: "700027", wantDesc: "x5c"},
		{name: "x5t differs from x5t#S256", assertion: assertion(t, jose.PS256, certs.rsa.key, map[string]any{
			"x5t#S256": x5tS256(certs.rsa), "x5t": x5t(certs.ec)}, good()), wantStatus: 401, wantAADSTS: "700027", wantDesc: "x5t"},
		{name: "bad signature", assertion: assertion(t, jose.PS256, certs.other.key, map[string]any{"x5t#S256": x5tS256(certs.rsa)}, good()),
			wantStatus: 401, wantAADSTS: "700027", wantDesc: "signature"},
		{name: "tampered claims", assertion: flip(assertion(t, jose.PS256, certs.rsa.key, map[string]any{"x5t#S256": x5tS256(certs.rsa)}, good()), 1),
			wantStatus: 401, wantAADSTS: "700027", wantDesc: "signature"},
		{name: "ES256 claimed for an RSA certificate", assertion: assertion(t, jose.ES256, ecOther, map[string]any{"x5t#S256": x5tS256(certs.rsa)}, good()),
			wantStatus: 401, wantAADSTS: "700027", wantDesc: "cannot make"},
		{name: "HS256", assertion: hsTok, wantStatus: 401, wantAADSTS: "50027", wantDesc: "PS256, RS256 or ES256"},
		{name: "expired certificate", assertion: assertion(t, jose.PS256, certs.expired.key, map[string]any{"x5t#S256": x5tS256(certs.expired)}, good()),
			wantStatus: 401, wantAADSTS: "700027", wantDesc: "expired"},
		{name: "expired certificate with x5c", assertion: assertion(t, jose.PS256, certs.expired.key, map[string]any{
			"x5t#S256": x5tS256(certs.expired), "x5c": b64x5c(certs.expired)}, good()), wantStatus: 401, wantAADSTS: "700027", wantDesc: "expired"},
		{name: "wrong aud", assertion: assertion(t, jose.PS256, certs.rsa.key, map[string]any{"x5t#S256": x5tS256(certs.rsa)},
			with(good(), "aud", "https://login.microsoftonline.com/"+testTenant+"/oauth2/v2.0/token")), wantStatus: 401, wantDesc: "aud"},
		{name: "aud of another tenant", assertion: assertion(t, jose.PS256, certs.rsa.key, map[string]any{"x5t#S256": x5tS256(certs.rsa)},
			with(good(), "aud", strings.Replace(f.iss.tokenEndpoint(), testTenant, otherTenant, 1))), wantStatus: 401, wantDesc: "aud"},
		{name: "no aud", assertion: assertion(t, jose.PS256, certs.rsa.key, map[string]any{"x5t#S256": x5tS256(certs.rsa)},
			with(good(), "aud", nil)), wantStatus: 401, wantDesc: "aud"},
		{name: "iss is another client", assertion: assertion(t, jose.PS256, certs.rsa.key, map[string]any{"x5t#S256": x5tS256(certs.rsa)},
			with(good(), "iss", appClientID)), wantStatus: 401, wantAADSTS: "700021"},
		{name: "sub is another client", assertion: assertion(t, jose.PS256, certs.rsa.key, map[string]any{"x5t#S256": x5tS256(certs.rsa)},
			with(good(), "sub", appClientID)), wantStatus: 401, wantAADSTS: "700021"},
		{name: "client without certificates", clientID: appClientID, assertion: assertion(t, jose.PS256, certs.rsa.key,
			map[string]any{"x5t#S256": x5tS256(certs.rsa)}, f.assertionClaims(appClientID, jti())), wantStatus: 401, wantAADSTS: "700027",
			wantDesc: "no certificate"},
		{name: "expired assertion", assertion: assertion(t, jose.PS256, certs.rsa.key, map[string]any{"x5t#S256": x5tS256(certs.rsa)},
			with(good(), "nbf", now-900, "exp", now-120)), wantStatus: 401, wantAADSTS: "700024", wantDesc: "expired"},
		{name: "no exp", assertion: assertion(t, jose.PS256, certs.rsa.key, map[string]any{"x5t#S256": x5tS256(certs.rsa)},
			with(good(), "exp", nil)), wantStatus: 401, wantAADSTS: "700024", wantDesc: "exp"},
		{name: "exp two hours ahead", assertion: assertion(t, jose.PS256, certs.rsa.key, map[string]any{"x5t#S256": x5tS256(certs.rsa)},
			with(good(), "exp", now+7200)), wantStatus: 401, wantAADSTS: "700024", wantDesc: "more than"},
		{name: "nbf in the future", assertion: assertion(t, jose.PS256, certs.rsa.key, map[string]any{"x5t#S256": x5tS256(certs.rsa)},
			with(good(), "nbf", now+300)), wantStatus: 401, wantAADSTS: "700024", wantDesc: "not before"},
		{name: "no jti", assertion: assertion(t, jose.PS256, certs.rsa.key, map[string]any{"x5t#S256": x5tS256(certs.rsa)},
			with(good(), "jti", nil)), wantStatus: 401, wantAADSTS: "50027", wantDesc: "jti"},
		{name: "garbage", assertion: "eyJub3QiOiJhIEpXVCJ9.bm90IGEgSldU", wantStatus: 401, wantAADSTS: "50027"},
		{name: "too long", assertion: strings.Repeat("A", maxAssertionLen+1), wantStatus: 401, wantAADSTS: "50027", wantDesc: "longer"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clientID := tc.clientID
			if clientID == "" {
				clientID = certClientID
			}
			status, body := f.postAssertion(t, clientID, tc.assertion)
			if status != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", status, tc.wantStatus, body)
			}
			if sig := strings.Split(tc.assertion+"..", ".")[2]; strings.Contains(body, tc.assertion) || sig != "" && strings.Contains(body, sig) {
				t.Fatal("the response contains the assertion")
			}
			if tc.wantStatus == 200 {
				return
			}
			checkOAuthError(t, []byte(body), "invalid_client", tc.wantAADSTS)
			if !strings.Contains(body, tc.wantDesc) {
				t.Errorf("error does not mention %q: %s", tc.wantDesc, body)
			}
		})
	}

	t.Run("replay", func(t *testing.T) {
		a := assertion(t, jose.PS256, certs.rsa.key, map[string]any{"x5t#S256": x5tS256(certs.rsa)}, good())
		if status, body := f.postAssertion(t, certClientID, a); status != 200 {
			t.Fatalf("first use: %d %s", status, body)
		}
		status, body := f.postAssertion(t, certClientID, a)
		if status != 401 || !strings.Contains(body, "already used") {
			t.Fatalf("second use: %d %s", status, body)
		}
		// A refused assertion does not burn its jti: only accepted ones are remembered.
		claims := good()
		bad := assertion(t, jose.PS256, certs.rsa.key, map[string]any{"x5t#S256": x5tS256(certs.rsa)}, with(claims, "aud", "https://x.test"))
		if status, _ := f.postAssertion(t, certClientID, bad); status != 401 {
			t.Fatalf("bad aud: %d", status)
		}
		if status, body := f.postAssertion(t, certClientID, assertion(t, jose.PS256, certs.rsa.key,
			map[string]any{"x5t#S256": x5tS256(certs.rsa)}, claims)); status != 200 {
			t.Fatalf("the jti of a refused assertion: %d %s", status, body)
		}
	})
	f.checkNoLeak(t)
}

func sha256Of(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

// postAssertion posts a client_credentials request with a client assertion.
func (f *fixture) postAssertion(t *testing.T, clientID, a string) (int, string) {
	t.Helper()
	body := url.Values{"client_id": {clientID}, "client_assertion_type": {assertionTypeJWT}, "client_assertion": {a},
		"grant_type": {"client_credentials"}, "scope": {testScope}, "client_info": {"1"}}.Encode()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, f.srv.URL+"/"+testTenant+"/oauth2/v2.0/token", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return resp.StatusCode, string(readAll(t, resp))
}

func TestIsTokenEndpoint(t *testing.T) {
	for _, authority := range []string{"https://hsm.example.test", "https://hsm.example.test:443"} {
		iss, err := NewIssuer(IssuerConfig{AuthorityHost: authority, TenantID: testTenant, Signer: mustP256(t)}, directory{})
		if err != nil {
			t.Fatal(err)
		}
		for aud, want := range map[string]bool{
			"https://hsm.example.test/" + testTenant + "/oauth2/v2.0/token":                  true,
			"https://hsm.example.test:443/" + testTenant + "/oauth2/v2.0/token":              true,
			"https://HSM.example.test/" + strings.ToUpper(testTenant) + "/oauth2/v2.0/token": true,
			"https://hsm.example.test:8443/" + testTenant + "/oauth2/v2.0/token":             false,
			"http://hsm.example.test/" + testTenant + "/oauth2/v2.0/token":                   false,
			"https://hsm.example.test/" + testTenant + "/oauth2/token":                       false,
			"https://hsm.example.test/" + testTenant + "/oauth2/v2.0/token?x=1":              false,
			"https://hsm.example.test/" + otherTenant + "/oauth2/v2.0/token":                 false,
			"https://other.example.test/" + testTenant + "/oauth2/v2.0/token":                false,
			"https://user@hsm.example.test/" + testTenant + "/oauth2/v2.0/token":             false,
			"https://hsm.example.test/" + testTenant + "/v2.0":                               false,
			"": false,
		} {
			if got := iss.isTokenEndpoint(aud); got != want {
				t.Errorf("authority %s: isTokenEndpoint(%q) = %v, want %v", authority, aud, got, want)
			}
		}
	}
}

func mustP256(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestReplayCache(t *testing.T) {
	r := newReplayCache(2)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	k := func(s string) [32]byte { return replayKey(certClientID, s) }
	steps := []struct {
		key   string
		until time.Duration
		now   time.Duration
		want  replayResult
	}{
		{"a", 10 * time.Minute, 0, replayFresh},
		{"a", 10 * time.Minute, time.Minute, replayed},
		{"b", 5 * time.Minute, time.Minute, replayFresh},
		{"c", 10 * time.Minute, 2 * time.Minute, replayFull},   // full of live entries: fail closed
		{"c", 10 * time.Minute, 6 * time.Minute, replayFresh},  // b expired and was purged
		{"a", 20 * time.Minute, 11 * time.Minute, replayFresh}, // a expired: a jti may come back after its assertion's life
	}
	for n, s := range steps {
		if got := r.add(k(s.key), t0.Add(s.until), t0.Add(s.now)); got != s.want {
			t.Errorf("step %d (%s): %v, want %v", n, s.key, got, s.want)
		}
	}
	if replayKey(strings.ToUpper(certClientID), "x") != replayKey(certClientID, "x") {
		t.Error("the replay key depends on the case of the client ID")
	}
}

func TestParseCertificate(t *testing.T) {
	now := time.Now()
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	for name, tc := range map[string]struct {
		der  []byte
		want string
	}{
		"rsa":      {newCertSet(t, now).rsa.cert.Raw, ""},
		"ec p-256": {makeCert(t, mustP256(t), now, now.Add(time.Hour)).cert.Raw, ""},
		"ec p-384": {makeCert(t, p384, now, now.Add(time.Hour)).cert.Raw, "P-256"},
		"rsa 1024": {makeCert(t, small, now, now.Add(time.Hour)).cert.Raw, "2048"},
		"garbage":  {[]byte("not a certificate"), "parse"},
	} {
		_, err := ParseCertificate(tc.der)
		if (err == nil) != (tc.want == "") || err != nil && !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
	if got := CertificateThumbprint([]byte("abc")); got != "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" {
		t.Errorf("CertificateThumbprint = %s", got)
	}
}
