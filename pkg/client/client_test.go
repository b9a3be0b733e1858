package client

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
)

var noRetry = policy.RetryOptions{MaxRetries: -1}

func TestParseChallenge(t *testing.T) {
	tests := []struct {
		name, header                       string
		authorization, resource, scope, tn string
		tokenScope, err                    string
	}{
		{name: "pool", header: `Bearer authorization="https://127.0.0.1:8443/t1", resource="https://managedhsm.localhost:8443"`,
			authorization: "https://127.0.0.1:8443/t1", resource: "https://managedhsm.localhost:8443", tn: "t1",
			tokenScope: "https://managedhsm.localhost:8443/.default"},
		{name: "azure vault", header: `Bearer authorization="https://login.windows.net/72f9", resource="https://vault.azure.net"`,
			authorization: "https://login.windows.net/72f9", resource: "https://vault.azure.net", tn: "72f9",
			tokenScope: "https://vault.azure.net/.default"},
		{name: "unquoted, spaces only", header: `bearer authorization=https://a/t2 resource=https://r`,
			authorization: "https://a/t2", resource: "https://r", tn: "t2", tokenScope: "https://r/.default"},
		{name: "authorization_uri", header: `Bearer authorization_uri="https://a/t3/oauth2/authorize", resource="https://r/"`,
			authorization: "https://a/t3/oauth2/authorize", resource: "https://r/", tn: "t3", tokenScope: "https://r/.default"},
		{name: "scope", header: `Bearer authorization="https://a/t4", scope="https://r/.default"`,
			authorization: "https://a/t4", scope: "https://r/.default", tn: "t4", tokenScope: "https://r/.default"},
		{name: "no tenant", header: `Bearer authorization="https://a", resource="https://r"`,
			authorization: "https://a", resource: "https://r", tokenScope: "https://r/.default"},
		{name: "extra parameters", header: `Bearer realm="", authorization="https://a/t5", error="invalid_token", resource="https://r"`,
			authorization: "https://a/t5", resource: "https://r", tn: "t5", tokenScope: "https://r/.default"},
		{name: "basic", header: `Basic realm="x"`, err: "not of the Bearer scheme"},
		{name: "empty", header: ``, err: "not of the Bearer scheme"},
		{name: "no resource", header: `Bearer authorization="https://a/t"`, err: "names no resource"},
		{name: "unterminated", header: `Bearer resource="https://r`, err: "unterminated quoted value of resource"},
		{name: "no equals", header: `Bearer resource`, err: "malformed parameter"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseChallenge(tt.header)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ParseChallenge(%q) = %+v, %v; want an error with %q", tt.header, c, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseChallenge(%q): %v", tt.header, err)
			}
			want := Challenge{Authorization: tt.authorization, Resource: tt.resource, Scope: tt.scope}
			if c != want || c.Tenant() != tt.tn || c.TokenScope() != tt.tokenScope {
				t.Errorf("ParseChallenge(%q) = %+v, tenant %q, scope %q; want %+v, tenant %q, scope %q",
					tt.header, c, c.Tenant(), c.TokenScope(), want, tt.tn, tt.tokenScope)
			}
		})
	}
}

func FuzzParseChallenge(f *testing.F) {
	f.Add(`Bearer authorization="https://127.0.0.1:8443/t1", resource="https://managedhsm.localhost:8443"`)
	f.Add(`Bearer a=b c="d e"`)
	f.Fuzz(func(t *testing.T, header string) {
		c, err := ParseChallenge(header)
		if err == nil && c.Resource == "" && c.Scope == "" {
			t.Errorf("ParseChallenge(%q) = %+v: no resource and no error", header, c)
		}
	})
}

func TestChallengeVerify(t *testing.T) {
	tests := []struct {
		resource, host string
		ok             bool
	}{
		{"https://managedhsm.localhost:8443", "contoso.managedhsm.localhost:8443", true},
		{"https://managedhsm.localhost:8443", "CONTOSO.ManagedHSM.localhost:8443", true},
		{"https://managedhsm.localhost:8443", "managedhsm.localhost:8443", true},
		{"https://managedhsm.azure.net", "contoso.managedhsm.azure.net", true},
		{"https://managedhsm.localhost:8443", "contoso.managedhsm.localhost:9443", false}, // the port counts, as in Go's SDK
		{"https://managedhsm.localhost", "contoso.managedhsm.localhost:8443", false},
		{"https://managedhsm.localhost:8443", "127.0.0.1:8443", false},
		{"https://localhost:8443", "evil-localhost:8443", false},
		{"https://attacker.example", "contoso.managedhsm.localhost:8443", false},
		{"not a url", "contoso.managedhsm.localhost:8443", false},
	}
	for _, tt := range tests {
		err := Challenge{Resource: tt.resource}.verify(tt.host)
		if (err == nil) != tt.ok {
			t.Errorf("verify resource %q for host %q: %v; want ok=%v", tt.resource, tt.host, err, tt.ok)
		}
	}
}

func TestLoopbackAddr(t *testing.T) {
	for addr, want := range map[string]string{
		"localhost:443":                       "127.0.0.1:443",
		"LocalHost:8443":                      "127.0.0.1:8443",
		"contoso.managedhsm.localhost:8443":   "127.0.0.1:8443",
		"contoso.managedhsm.localhost.:8443":  "127.0.0.1:8443",
		"127.0.0.1:8443":                      "127.0.0.1:8443",
		"[::1]:8443":                          "[::1]:8443",
		"example.com:443":                     "example.com:443",
		"localhost.example.com:443":           "localhost.example.com:443",
		"notlocalhost:443":                    "notlocalhost:443",
		"contoso.managedhsm.azure.net:443":    "contoso.managedhsm.azure.net:443",
		"no-port.localhost":                   "no-port.localhost",
		"contoso.managedhsm.localhost:https:": "contoso.managedhsm.localhost:https:",
	} {
		if got := LoopbackAddr(addr); got != want {
			t.Errorf("LoopbackAddr(%q) = %q, want %q", addr, got, want)
		}
	}
}

// TestHTTPClient checks the transport on its own: a name under .localhost reaches the server on 127.0.0.1 and is
// verified against the pool's CA; another CA, or TLS below 1.2, is refused; a proxy is never used for .localhost.
func TestHTTPClient(t *testing.T) {
	p := newFakePool(t)
	p.handle("GET /ping", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, 200, "pong") })
	hc, err := NewHTTPClient(p.caFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{p.url(), "https://localhost:" + p.port, p.authority()} {
		resp, err := hc.Get(u + "/" + testTenant + "/v2.0/.well-known/openid-configuration")
		if err != nil {
			t.Fatalf("GET %s: %v", u, err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != 200 || resp.TLS == nil || resp.TLS.Version < 0x0303 {
			t.Errorf("GET %s: status %d, TLS %+v", u, resp.StatusCode, resp.TLS)
		}
	}

	// A name outside .localhost is dialed as it is (here it does not resolve).
	if _, err := hc.Get("https://contoso.managedhsm.invalid:" + p.port + "/"); err == nil {
		t.Errorf("GET a .invalid name: no error")
	}

	// The system roots do not include the pool's CA.
	other, err := NewHTTPClient("")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Get(p.url() + "/"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("GET with the system roots: %v; want a certificate error", err)
	}

	// TLS 1.1 is refused.
	old := newFakePool(t)
	old.srv.TLS.MaxVersion = 0x0302
	hcOld, _ := NewHTTPClient(old.caFile)
	if _, err := hcOld.Get(old.url() + "/"); err == nil {
		t.Errorf("GET from a TLS 1.1 server: no error")
	}

	// .localhost never goes through a proxy.
	tr := hc.Transport.(*http.Transport)
	req, _ := http.NewRequest("GET", p.url(), nil)
	if u, err := tr.Proxy(req); u != nil || err != nil {
		t.Errorf("proxy for %s: %v, %v; want none", p.url(), u, err)
	}

	if _, err := NewHTTPClient(filepath.Join(t.TempDir(), "nope.pem")); err == nil {
		t.Errorf("NewHTTPClient with a missing CA file: no error")
	}
	notPEM := filepath.Join(t.TempDir(), "ca.pem")
	_ = os.WriteFile(notPEM, []byte("not a certificate"), 0o644)
	if _, err := NewHTTPClient(notPEM); err == nil || !strings.Contains(err.Error(), "holds no PEM certificate") {
		t.Errorf("NewHTTPClient with a file without PEM: %v", err)
	}
}

// TestSecurityDomainDownload runs the download as the pool sees it: a first request without a token, the 401
// challenge, a token for the challenge's resource and tenant, the request again, then later requests with the
// token from the start. The body is checked field by field against security-domain-format.md §2.1.
func TestSecurityDomainDownload(t *testing.T) {
	p := newFakePool(t)
	var body []byte
	var query url.Values
	p.handle("POST /securitydomain/download", func(w http.ResponseWriter, r *http.Request) {
		body, _ = io.ReadAll(r.Body)
		query = r.URL.Query()
		w.Header().Set("Azure-AsyncOperation", p.url()+"/securitydomain/download/pending")
		writeJSON(w, 202, map[string]string{"value": `{"EncData":{},"SharedKeys":{},"version":2}`})
	})
	p.handle("GET /securitydomain/download/pending", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, 200, map[string]string{"status": "Success", "status_details": "The resource is active."})
	})
	sd := p.client().SecurityDomain()
	certs := officerCerts(t, 3)

	file, err := sd.Download(context.Background(), certs, 2)
	if err != nil {
		t.Fatalf("Download: %v", err)
	}
	if string(file) != `{"EncData":{},"SharedKeys":{},"version":2}` {
		t.Errorf("Download returned %q", file)
	}
	st, err := sd.Status(context.Background())
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	if st != (Status{Status: StatusSuccess, Details: "The resource is active."}) {
		t.Errorf("Status = %+v", st)
	}

	log, scopes := p.requests()
	wantLog := []string{"POST /securitydomain/download Unauthorized", "POST /securitydomain/download Accepted", "GET /securitydomain/download/pending OK"}
	if !slices.Equal(log, wantLog) {
		t.Errorf("requests:\n%s\nwant:\n%s", strings.Join(log, "\n"), strings.Join(wantLog, "\n"))
	}
	if len(scopes) != 1 || !strings.HasPrefix(scopes[0], "https://managedhsm.localhost:"+p.port+"/.default") {
		t.Errorf("token requests for scopes %q; want one, for https://managedhsm.localhost:%s/.default", scopes, p.port)
	}
	if query.Get("api-version") != "7.5" {
		t.Errorf("api-version %q, want 7.5", query.Get("api-version"))
	}

	// The body, in the Azure CLI's field order.
	var req struct {
		Certificates []json.RawMessage `json:"certificates"`
		Required     int               `json:"required"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		t.Fatalf("body %s: %v", body, err)
	}
	if !strings.HasPrefix(string(body), `{"certificates":[{"kty":"RSA","key_ops":["verify","encrypt","wrapKey"],"n":"`) ||
		!strings.HasSuffix(string(body), `],"required":2}`) || len(req.Certificates) != 3 || req.Required != 2 {
		t.Errorf("body %s", body)
	}
	for i, raw := range req.Certificates {
		var jwk map[string]any
		_ = json.Unmarshal(raw, &jwk)
		cert, _ := x509.ParseCertificate(certs[i])
		s1, s256 := sha1.Sum(certs[i]), sha256.Sum256(certs[i])
		b64 := base64.RawURLEncoding.EncodeToString
		if jwk["n"] != b64(cert.PublicKey.(*rsa.PublicKey).N.Bytes()) {
			t.Errorf("certificate %d: n %v is not the base64url of the modulus", i, jwk["n"])
		}
		keys := []string{}
		for k := range jwk {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		if fmt.Sprint(keys) != "[alg e key_ops kty n x5c x5t x5t#S256]" {
			t.Errorf("certificate %d has fields %v", i, keys)
		}
		if jwk["x5c"].([]any)[0] != base64.StdEncoding.EncodeToString(certs[i]) {
			t.Errorf("certificate %d: x5c is not the standard base64 of the DER", i)
		}
		if jwk["x5t"] != b64(s1[:]) || jwk["x5t#S256"] != b64(s256[:]) {
			t.Errorf("certificate %d: x5t %v, x5t#S256 %v", i, jwk["x5t"], jwk["x5t#S256"])
		}
		if jwk["e"] != "AQAB" {
			t.Errorf("certificate %d: e %v, want AQAB", i, jwk["e"])
		}
	}
}

func TestDownloadRefusesBadInput(t *testing.T) {
	p := newFakePool(t)
	sd := p.client().SecurityDomain()
	certs := officerCerts(t, 4)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(9), Subject: pkix.Name{CommonName: "ec"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	ecDER, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &ecKey.PublicKey, ecKey)
	tests := []struct {
		name   string
		certs  [][]byte
		quorum int
		err    string
	}{
		{"two certificates", certs[:2], 2, "2 certificates; want 3 to 10"},
		{"eleven certificates", slices.Repeat(certs[:1], 11), 2, "11 certificates; want 3 to 10"},
		{"quorum 1", certs[:3], 1, "quorum 1; want 2 to 3"},
		{"quorum above N", certs[:3], 4, "quorum 4; want 2 to 3"},
		{"duplicate", [][]byte{certs[0], certs[1], certs[0]}, 2, "certificates 1 and 3 are the same"},
		{"not DER", [][]byte{certs[0], certs[1], []byte("nope")}, 2, "certificate 3: x509"},
		{"EC key", [][]byte{certs[0], ecDER, certs[2]}, 2, "certificate 2: its key is *ecdsa.PublicKey; officers' keys are RSA"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := sd.Download(context.Background(), tt.certs, tt.quorum)
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("Download: %v; want an error with %q", err, tt.err)
			}
		})
	}
	if log, _ := p.requests(); len(log) != 0 {
		t.Errorf("requests were sent: %q", log)
	}
}

// TestErrorShape checks that Azure error answers, from this package's client and from azkeys, and OAuth errors of
// the token endpoint, come back as an *Error that shows the code, the status and the message, and never a secret.
func TestErrorShape(t *testing.T) {
	p := newFakePool(t)
	p.handle("POST /securitydomain/download", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("x-ms-request-id", "req-1")
		writeJSON(w, 409, map[string]any{"error": map[string]any{"code": "Conflict", "message": "The pool is already active.",
			"innererror": map[string]string{"code": "AlreadyActivated"}}})
	})
	p.handle("GET /securitydomain/download/pending", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(502) // no body
	})
	p.handle("GET /keys/nope/", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, 404, map[string]any{"error": map[string]string{"code": "KeyNotFound", "message": "A key with (name/id) nope was not found in this key vault."}})
	})
	c := p.client()
	ctx := context.Background()

	_, err := c.SecurityDomain().Download(ctx, officerCerts(t, 3), 2)
	e, ok := AsError(err)
	if !ok || e.StatusCode != 409 || e.Code != "Conflict" || e.Message != "The pool is already active." || e.RequestID != "req-1" {
		t.Fatalf("Download: %v (%#v); want a 409 Conflict *Error", err, e)
	}
	if want := "security-domain download: Conflict (HTTP 409 Conflict): The pool is already active."; err.Error() != want {
		t.Errorf("Download error %q, want %q", err, want)
	}
	var re *azcore.ResponseError
	if !errors.As(err, &re) || re.ErrorCode != "Conflict" || re.StatusCode != 409 {
		t.Errorf("Download error: no *azcore.ResponseError in the chain: %#v", re)
	}
	mustContainNone(t, "Download error", err.Error())

	_, err = c.SecurityDomain().Status(ctx)
	if e, ok := AsError(err); !ok || e.StatusCode != 502 || e.Code != "" || err.Error() != "security-domain status: (HTTP 502 Bad Gateway)" {
		t.Errorf("Status: %v; want a bare 502", err)
	}

	_, err = c.Keys().GetKey(ctx, "nope", "", nil)
	e, ok = AsError(err)
	if !ok || e.Code != "KeyNotFound" || e.StatusCode != 404 || !strings.Contains(e.Message, "nope was not found") {
		t.Errorf("GetKey: %v; want a 404 KeyNotFound *Error", err)
	}
	if want := "KeyNotFound (HTTP 404 Not Found): A key with (name/id) nope was not found in this key vault."; e.Error() != want {
		t.Errorf("GetKey *Error %q, want %q", e, want)
	}

	// A wrong secret: the token endpoint's OAuth error.
	bad := p.file()
	bad.ClientSecret = NewSecret("wrong-" + testSecret)
	cb, err := New(bad, &Options{Retry: noRetry})
	if err != nil {
		t.Fatal(err)
	}
	_, err = cb.Keys().GetKey(ctx, "nope", "", nil)
	var ae *azidentity.AuthenticationFailedError
	if !errors.As(err, &ae) {
		t.Fatalf("GetKey with a wrong secret: %v; want an AuthenticationFailedError", err)
	}
	e, ok = AsError(err)
	if !ok || e.Code != "invalid_client" || e.StatusCode != 401 || e.Message != "AADSTS7000215: Invalid client secret provided." {
		t.Errorf("AsError(%v) = %#v", err, e)
	}
	mustContainNone(t, "token error", e.Error())
	mustContainNone(t, "token error", err.Error())

	// A network error is not an answer.
	if _, ok := AsError(fmt.Errorf("x: %w", &net.OpError{Op: "dial", Err: errors.New("connection refused")})); ok {
		t.Errorf("AsError of a network error: ok")
	}
}

// TestChallengeRefused checks that no token is asked for a challenge whose resource is not the pool's, and that a
// 401 to the request with a token ends the exchange rather than looping.
func TestChallengeRefused(t *testing.T) {
	p := newFakePool(t)
	p.challenge = `Bearer authorization="` + p.authority() + "/" + testTenant + `", resource="https://attacker.example"`
	_, err := p.client().SecurityDomain().Status(context.Background())
	if err == nil || !strings.Contains(err.Error(), `challenge resource "https://attacker.example" does not match the requested host`) {
		t.Errorf("Status with a foreign challenge: %v", err)
	}
	if _, scopes := p.requests(); len(scopes) != 0 {
		t.Errorf("tokens were asked for: %q", scopes)
	}

	// The same, with the check disabled: the token is asked for the challenge's resource.
	sd, err := NewSecurityDomainClient(p.url(), p.client().Credential(), &SecurityDomainClientOptions{
		ClientOptions: azcore.ClientOptions{Transport: p.client().HTTPClient(), Retry: noRetry}, DisableChallengeResourceVerification: true})
	if err != nil {
		t.Fatal(err)
	}
	p.handle("GET /securitydomain/download/pending", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, 200, map[string]string{"status": "InProgress", "status_details": ""})
	})
	if st, err := sd.Status(context.Background()); err != nil || st.Status != StatusInProgress {
		t.Errorf("Status without verification: %+v, %v", st, err)
	}
	if _, scopes := p.requests(); len(scopes) != 1 || !strings.HasPrefix(scopes[0], "https://attacker.example/.default") {
		t.Errorf("token requests for %q", scopes)
	}

	// A pool that refuses the token: one retry, then the 401 is the answer.
	q := newFakePool(t)
	q.handle("GET /securitydomain/download/pending", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("WWW-Authenticate", q.challenge)
		writeJSON(w, 401, map[string]any{"error": map[string]string{"code": "Unauthorized", "message": "The token has expired."}})
	})
	_, err = q.client().SecurityDomain().Status(context.Background())
	if e, ok := AsError(err); !ok || e.StatusCode != 401 || e.Message != "The token has expired." {
		t.Errorf("Status with a refused token: %v", err)
	}
	if log, _ := q.requests(); len(log) != 2 {
		t.Errorf("requests: %q; want 2", log)
	}

	if _, err := NewSecurityDomainClient("http://contoso.managedhsm.localhost", p.client().Credential(), nil); err == nil {
		t.Errorf("NewSecurityDomainClient with http: no error")
	}
}

// TestKeysClient checks that the azkeys client of New reaches the pool by its .localhost name through the same
// transport and credential.
func TestKeysClient(t *testing.T) {
	p := newFakePool(t)
	p.handle("POST /rng", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, 200, map[string]string{"value": "AQIDBA"})
	})
	c := p.client()
	if c.URL() != p.url() {
		t.Errorf("URL() = %q", c.URL())
	}
	n := int32(4)
	got, err := c.Keys().GetRandomBytes(context.Background(), azkeysRandom(n), nil)
	if err != nil {
		t.Fatalf("GetRandomBytes: %v", err)
	}
	if string(got.Value) != "\x01\x02\x03\x04" {
		t.Errorf("GetRandomBytes = %x", got.Value)
	}
}

func azkeysRandom(n int32) azkeys.GetRandomBytesParameters {
	return azkeys.GetRandomBytesParameters{Count: &n}
}
