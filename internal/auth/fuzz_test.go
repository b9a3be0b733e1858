package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/hsmpool/hsmpool/internal/fault"
)

// fuzzIssuer is an issuer at a fixed time with one principal, without a server.
func fuzzIssuer(f *testing.F) (*Issuer, string, Claims, string) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	s, h, err := NewSecret()
	if err != nil {
		f.Fatal(err)
	}
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	iss, err := NewIssuer(IssuerConfig{
		AuthorityHost: "https://127.0.0.1:8443", TenantID: testTenant, Signer: key, KeyID: "k1",
		Now: func() time.Time { return now },
	}, directory{appClientID: {ObjectID: appObjectID, ClientID: appClientID, Secrets: []SecretHash{h}}})
	if err != nil {
		f.Fatal(err)
	}
	tok, exp, err := iss.issue(Principal{ObjectID: appObjectID, ClientID: appClientID}, testResource, credSecret.azpacr())
	if err != nil {
		f.Fatal(err)
	}
	want := Claims{Issuer: iss.Issuer(), ObjectID: appObjectID, ClientID: appClientID, TenantID: testTenant, Audience: testResource, Expiry: exp}
	return iss, tok, want, string(s.Reveal())
}

// FuzzValidate: Validate never panics, fails only with fault.Unauthorized without echoing the
// token, and accepts nothing but the claims the issuer signed (the one genuine token, or an
// encoding of it that go-jose decodes to the same signed bytes).
func FuzzValidate(f *testing.F) {
	iss, good, want, _ := fuzzIssuer(f)
	p := strings.Split(good, ".")
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	s, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: other}, (&jose.SignerOptions{}).WithHeader("kid", "k1"))
	forged, _ := s.Sign([]byte(`{"iss":"` + iss.Issuer() + `"}`))
	forgedCompact, _ := forged.CompactSerialize()
	for _, seed := range []string{
		good,
		p[0] + "." + p[1] + ".",
		"eyJhbGciOiJub25lIn0." + p[1] + ".",
		forgedCompact,
		"", "a.b.c", "...", "e30.e30.e30",
		p[0] + "." + p[1] + "." + p[2] + "." + p[2],
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, token string) {
		claims, err := iss.Validate(t.Context(), token, testResource)
		if err == nil {
			if claims.Expiry.Equal(want.Expiry) {
				claims.Expiry = want.Expiry
			}
			if claims.NotBefore.Equal(want.Expiry.Add(-DefaultLifetime)) {
				claims.NotBefore = time.Time{}
			}
			if claims != want {
				t.Fatalf("accepted claims %+v that the issuer did not sign", claims)
			}
			return
		}
		if fault.Of(err) != fault.Unauthorized {
			t.Fatalf("kind %v for %v", fault.Of(err), err)
		}
		if len(token) >= 16 && strings.Contains(err.Error(), token) {
			t.Fatal("the error echoes the token")
		}
	})
}

// FuzzTokenRequest: the token endpoint never panics, issues a token only to a request that
// carries the principal's secret, and never echoes the secret.
func FuzzTokenRequest(f *testing.F) {
	iss, _, _, sec := fuzzIssuer(f)
	h := iss.Handler()
	good := url.Values{"client_id": {appClientID}, "client_secret": {sec}, "grant_type": {"client_credentials"},
		"scope": {testScope + " openid offline_access profile"}}.Encode()
	for _, seed := range []string{
		good,
		strings.Replace(good, "client_credentials", "password", 1),
		"client_id=" + appClientID + "&client_secret=x&grant_type=client_credentials&scope=https%3A%2F%2Fx%2F.default",
		"client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=a.b.c",
		"", "=", "&&&", "%zz", "scope=%2F.default",
	} {
		f.Add(seed, "")
	}
	f.Add("grant_type=client_credentials&scope=https%3A%2F%2Fx%2F.default", "Basic "+basic(appClientID, sec))
	f.Fuzz(func(t *testing.T, body, authorization string) {
		req := httptest.NewRequest(http.MethodPost, "https://127.0.0.1:8443/"+testTenant+"/oauth2/v2.0/token", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if authorization != "" {
			req.Header.Set("Authorization", authorization)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		form, _ := url.ParseQuery(body)
		_, pass, _ := req.BasicAuth()
		pass, _ = url.QueryUnescape(pass)
		if rec.Code == http.StatusOK && form.Get("client_secret") != sec && pass != sec {
			t.Fatalf("issued a token to a request without the secret")
		}
		if strings.Contains(rec.Body.String(), sec) {
			t.Fatal("the response echoes the secret")
		}
		if rec.Code != http.StatusOK && rec.Code < 400 {
			t.Fatalf("status %d", rec.Code)
		}
	})
}

func basic(user, pass string) string {
	r, _ := http.NewRequest("GET", "/", nil)
	r.SetBasicAuth(user, pass)
	return strings.TrimPrefix(r.Header.Get("Authorization"), "Basic ")
}

// FuzzClientAssertion: the assertion check never panics, refuses with invalid_client (or
// temporarily_unavailable) without echoing the assertion, and accepts only assertions made
// here with a registered certificate's key, each jti once.
func FuzzClientAssertion(f *testing.F) {
	iss, _, _, _ := fuzzIssuer(f)
	now := iss.now()
	certs := newCertSet(f, now)
	p := certs.principal()
	claims := func(jti string) map[string]any {
		return map[string]any{"aud": iss.tokenEndpoint(), "iss": certClientID, "sub": certClientID, "jti": jti,
			"nbf": now.Unix(), "exp": now.Unix() + 600}
	}
	genuine := map[string]bool{}
	add := func(jti string, alg jose.SignatureAlgorithm, key any, h map[string]any) {
		genuine[jti] = true
		f.Add(assertion(f, alg, key, h, claims(jti)))
	}
	add("g1", jose.PS256, certs.rsa.key, map[string]any{"x5t#S256": x5tS256(certs.rsa)})
	add("g2", jose.RS256, certs.rsa.key, map[string]any{"x5t": x5t(certs.rsa)})
	add("g3", jose.ES256, certs.ec.key, map[string]any{"x5t#S256": x5tS256(certs.ec)})
	add("g4", jose.PS256, certs.rsa.key, map[string]any{"x5c": []string{base64.StdEncoding.EncodeToString(certs.rsa.cert.Raw)}})
	f.Add(assertion(f, jose.PS256, certs.other.key, map[string]any{"x5t#S256": x5tS256(certs.other)}, claims("o1")))
	f.Add(assertion(f, jose.PS256, certs.expired.key, map[string]any{"x5t#S256": x5tS256(certs.expired)}, claims("o2")))
	for _, s := range []string{"", "a.b.c", "...", "e30.e30.e30", `{"payload":"e30","signatures":[]}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, a string) {
		oe := iss.checkAssertion(p, certClientID, a)
		if oe == nil {
			jws, err := jose.ParseSignedCompact(a, assertionAlgs)
			if err != nil {
				t.Fatalf("accepted an assertion go-jose cannot parse: %v", err)
			}
			var c struct {
				ID string `json:"jti"`
			}
			if json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &c) != nil || !genuine[c.ID] {
				t.Fatalf("accepted an assertion that was not made here")
			}
			return
		}
		if oe.code != "invalid_client" && oe.code != "temporarily_unavailable" {
			t.Fatalf("error code %q", oe.code)
		}
		if len(a) >= 16 && strings.Contains(oe.description(), a) {
			t.Fatal("the error echoes the assertion")
		}
	})
}

// FuzzParseJWKS: a fetched JWKS is untrusted bytes; parseJWKS never panics and returns only
// public RSA (2048 bits or more) or P-256 signing keys.
func FuzzParseJWKS(f *testing.F) {
	k := mustP256(f)
	set, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: k, KeyID: "private"}, {Key: &k.PublicKey, KeyID: "a", Use: "sig"}}})
	for _, s := range []string{string(set), `{"keys":[]}`, `{"keys":[{"kty":"oct","k":"AAAA"}]}`, `{}`, `[]`, `{"keys":[null,1,"x"]}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		keys, err := parseJWKS(b)
		if err != nil {
			if len(keys) != 0 {
				t.Fatal("keys with an error")
			}
			return
		}
		if len(keys) == 0 {
			t.Fatal("no keys and no error")
		}
		for _, key := range keys {
			if !key.IsPublic() {
				t.Fatal("a private key")
			}
			switch pk := key.Key.(type) {
			case *rsa.PublicKey:
				if pk.N.BitLen() < minRSABits {
					t.Fatal("a small RSA key")
				}
			case *ecdsa.PublicKey:
				if pk.Curve != elliptic.P256() {
					t.Fatal("an EC key not on P-256")
				}
			default:
				t.Fatalf("a %T key", key.Key)
			}
		}
	})
}
