package auth

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func readAll(t *testing.T, resp *http.Response) []byte {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDiscovery checks the discovery document as MSAL Go and msal-node read it (client-compat §4).
func TestDiscovery(t *testing.T) {
	f := newFixture(t)
	resp, err := f.srv.Client().Get(f.srv.URL + "/" + testTenant + "/v2.0/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("GET discovery: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	if resp.ProtoMajor != 2 {
		t.Errorf("served over %s, want HTTP/2 as azcore's default transport negotiates", resp.Proto)
	}
	var doc map[string]any
	if err := json.Unmarshal(readAll(t, resp), &doc); err != nil {
		t.Fatal(err)
	}
	srvURL, _ := url.Parse(f.srv.URL)
	base := f.srv.URL + "/" + testTenant
	want := map[string]string{
		"issuer":                 base + "/v2.0",
		"authorization_endpoint": base + "/oauth2/v2.0/authorize",
		"token_endpoint":         base + "/oauth2/v2.0/token",
		"jwks_uri":               base + "/discovery/v2.0/keys",
	}
	for k, v := range want {
		if doc[k] != v {
			t.Errorf("%s = %v, want %q", k, doc[k], v)
		}
	}
	// MSAL's ValidateIssuerMatchesAuthority: same scheme and host:port as the authority.
	iss, err := url.Parse(doc["issuer"].(string))
	if err != nil || iss.Scheme != srvURL.Scheme || iss.Host != srvURL.Host {
		t.Errorf("issuer %v does not have the authority's scheme and host %s", doc["issuer"], srvURL.Host)
	}
	if doc["issuer"] != f.iss.Issuer() {
		t.Errorf("issuer %v is not the tokens' issuer %s", doc["issuer"], f.iss.Issuer())
	}
	// Every endpoint it names is served.
	for _, k := range []string{"jwks_uri"} {
		r, err := f.srv.Client().Get(doc[k].(string))
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != 200 {
			t.Errorf("GET %s: %s", k, r.Status)
		}
	}
}

// tokenCase is one raw request to the handler.
type tokenCase struct {
	name        string
	method      string // default POST
	path        string // default the token endpoint
	contentType string // default form
	body        url.Values
	rawBody     string
	query       string
	basic       []string // user, password
	wantStatus  int
	wantError   string // OAuth2 "error"
	wantAADSTS  string
	header      map[string]string // response headers expected
}

func TestHandler(t *testing.T) {
	f := newFixture(t)
	tokenPath := "/" + testTenant + "/oauth2/v2.0/token"
	form := func(kv ...string) url.Values {
		v := url.Values{}
		for i := 0; i < len(kv); i += 2 {
			v.Add(kv[i], kv[i+1])
		}
		return v
	}
	goSDK := func(extra ...string) url.Values { // the form azidentity sends (client-compat §4)
		return form(append([]string{"client_id", appClientID, "client_secret", f.appSecret, "grant_type", "client_credentials",
			"scope", testScope + " openid offline_access profile", "claims", `{"access_token":{"xms_cc":{"values":["CP1"]}}}`}, extra...)...)
	}
	tests := []tokenCase{
		{name: "go sdk form", body: goSDK(), wantStatus: 200},
		{name: "js sdk form", query: "client-request-id=6f5e1c7e-0000-4000-8000-000000000000", body: form(
			"client_id", appClientID, "client_secret", f.appSecret, "grant_type", "client_credentials", "scope", testScope,
			"x-client-SKU", "msal.js.node", "x-ms-lib-capability", "retry-after, h429", "client_info", "1",
			"claims", `{"id_token":{"xms_cc":{"values":["cp1"]}},"access_token":{"xms_cc":{"values":["cp1"]}}}`),
			wantStatus: 200},
		{name: "tenant in upper case", path: "/" + strings.ToUpper(testTenant) + "/oauth2/v2.0/token", body: goSDK(), wantStatus: 200},
		{name: "http basic", basic: []string{appClientID, f.appSecret}, body: form("grant_type", "client_credentials", "scope", testScope), wantStatus: 200},
		{name: "http basic and form client_id", basic: []string{appClientID, f.appSecret},
			body: form("client_id", appClientID, "grant_type", "client_credentials", "scope", testScope), wantStatus: 200},
		{name: "content type with charset", contentType: "application/x-www-form-urlencoded; charset=utf-8", body: goSDK(), wantStatus: 200},

		{name: "wrong secret", body: form("client_id", appClientID, "client_secret", "wrong", "grant_type", "client_credentials", "scope", testScope),
			wantStatus: 401, wantError: "invalid_client", wantAADSTS: "7000215"},
		{name: "secret of another principal", body: form("client_id", appClientID, "client_secret", f.oldSecret, "grant_type", "client_credentials", "scope", testScope),
			wantStatus: 401, wantError: "invalid_client", wantAADSTS: "7000215"},
		{name: "expired secret", body: form("client_id", oldClientID, "client_secret", f.oldSecret, "grant_type", "client_credentials", "scope", testScope),
			wantStatus: 401, wantError: "invalid_client", wantAADSTS: "7000222"},
		{name: "empty secret", body: form("client_id", appClientID, "client_secret", "", "grant_type", "client_credentials", "scope", testScope),
			wantStatus: 401, wantError: "invalid_client", wantAADSTS: "7000215"},
		{name: "unknown client", body: form("client_id", "nobody", "client_secret", f.appSecret, "grant_type", "client_credentials", "scope", testScope),
			wantStatus: 401, wantError: "invalid_client", wantAADSTS: "700016"},
		{name: "no credential", body: form("client_id", appClientID, "grant_type", "client_credentials", "scope", testScope),
			wantStatus: 401, wantError: "invalid_client", wantAADSTS: "7000218"},
		{name: "secret in the query only", query: "client_secret=" + f.appSecret,
			body:       form("client_id", appClientID, "grant_type", "client_credentials", "scope", testScope),
			wantStatus: 401, wantError: "invalid_client", wantAADSTS: "7000218"},
		{name: "http basic wrong secret", basic: []string{appClientID, "wrong"}, body: form("grant_type", "client_credentials", "scope", testScope),
			wantStatus: 401, wantError: "invalid_client", header: map[string]string{"WWW-Authenticate": `Basic realm="` + testTenant + `"`}},
		{name: "http basic and form secret", basic: []string{appClientID, f.appSecret}, body: goSDK(),
			wantStatus: 400, wantError: "invalid_request"},
		{name: "http basic and another form client_id", basic: []string{appClientID, f.appSecret},
			body: form("client_id", oldClientID, "grant_type", "client_credentials", "scope", testScope), wantStatus: 400, wantError: "invalid_request"},
		{name: "client assertion", body: form("client_id", appClientID, "client_assertion_type", assertionTypeJWT,
			"client_assertion", "eyJhbGciOiJQUzI1NiJ9.e30.c2ln", "grant_type", "client_credentials", "scope", testScope),
			wantStatus: 401, wantError: "invalid_client", wantAADSTS: "700027"}, // the app has no certificate
		{name: "client assertion of another type", body: form("client_id", appClientID, "client_assertion_type", "saml",
			"client_assertion", "x", "grant_type", "client_credentials", "scope", testScope), wantStatus: 400, wantError: "invalid_request"},
		{name: "secret and assertion", body: goSDK("client_assertion_type", assertionTypeJWT, "client_assertion", "x"),
			wantStatus: 400, wantError: "invalid_request"},
		{name: "secret twice", body: goSDK("client_secret", f.appSecret), wantStatus: 400, wantError: "invalid_request", wantAADSTS: "90014"},
		{name: "scope twice", body: goSDK("scope", "https://other.test/.default"), wantStatus: 400, wantError: "invalid_request", wantAADSTS: "90014"},
		{name: "no client_id", body: form("client_secret", f.appSecret, "grant_type", "client_credentials", "scope", testScope),
			wantStatus: 400, wantError: "invalid_request", wantAADSTS: "900144"},
		{name: "client_id with spaces", body: form("client_id", "a b", "client_secret", f.appSecret, "grant_type", "client_credentials", "scope", testScope),
			wantStatus: 400, wantError: "invalid_request"},
		{name: "no grant_type", body: form("client_id", appClientID, "client_secret", f.appSecret, "scope", testScope),
			wantStatus: 400, wantError: "invalid_request", wantAADSTS: "900144"},
		{name: "password grant", body: form("client_id", appClientID, "client_secret", f.appSecret, "grant_type", "password", "scope", testScope),
			wantStatus: 400, wantError: "unsupported_grant_type", wantAADSTS: "70003"},
		{name: "no scope", body: form("client_id", appClientID, "client_secret", f.appSecret, "grant_type", "client_credentials"),
			wantStatus: 400, wantError: "invalid_scope", wantAADSTS: "70011"},
		{name: "scope without .default", body: form("client_id", appClientID, "client_secret", f.appSecret, "grant_type", "client_credentials",
			"scope", testResource+"/keys.read"), wantStatus: 400, wantError: "invalid_scope"},
		{name: "only openid scopes", body: form("client_id", appClientID, "client_secret", f.appSecret, "grant_type", "client_credentials",
			"scope", "openid profile offline_access"), wantStatus: 400, wantError: "invalid_scope"},
		{name: "two resources", body: form("client_id", appClientID, "client_secret", f.appSecret, "grant_type", "client_credentials",
			"scope", testScope+" https://other.test/.default"), wantStatus: 400, wantError: "invalid_scope"},
		{name: "http resource", body: form("client_id", appClientID, "client_secret", f.appSecret, "grant_type", "client_credentials",
			"scope", "http://managedhsm.localhost/.default"), wantStatus: 400, wantError: "invalid_scope"},
		{name: "unknown extra scope", body: form("client_id", appClientID, "client_secret", f.appSecret, "grant_type", "client_credentials",
			"scope", testScope+" email"), wantStatus: 400, wantError: "invalid_scope"},
		{name: "json body", contentType: "application/json", rawBody: `{"client_id":"x"}`, wantStatus: 400, wantError: "invalid_request"},
		{name: "no content type", contentType: "-", body: goSDK(), wantStatus: 400, wantError: "invalid_request"},
		{name: "bad form", rawBody: "client_id=%zz", wantStatus: 400, wantError: "invalid_request"},
		{name: "body too large", rawBody: "client_id=" + strings.Repeat("a", maxBodyLen), wantStatus: 413, wantError: "invalid_request"},
		{name: "another tenant", path: "/" + otherTenant + "/oauth2/v2.0/token", body: goSDK(),
			wantStatus: 400, wantError: "invalid_request", wantAADSTS: "90002"},
		// A credential with its arguments swapped sends its secret as the tenant: not echoed.
		{name: "secret as tenant", path: "/" + f.appSecret + "/oauth2/v2.0/token", body: goSDK(),
			wantStatus: 400, wantError: "invalid_request", wantAADSTS: "90002"},
		{name: "upper-case client ID", body: form("client_id", strings.ToUpper(appClientID), "client_secret", f.appSecret,
			"grant_type", "client_credentials", "scope", testScope), wantStatus: 200},
		{name: "GET token", method: "GET", wantStatus: 405, wantError: "invalid_request", header: map[string]string{"Allow": "POST"}},

		{name: "discovery", method: "GET", path: "/" + testTenant + "/v2.0/.well-known/openid-configuration", wantStatus: 200},
		{name: "discovery HEAD", method: "HEAD", path: "/" + testTenant + "/v2.0/.well-known/openid-configuration", wantStatus: 200},
		{name: "discovery of another tenant", method: "GET", path: "/" + otherTenant + "/v2.0/.well-known/openid-configuration",
			wantStatus: 400, wantError: "invalid_tenant", wantAADSTS: "90002"},
		{name: "discovery of common", method: "GET", path: "/common/v2.0/.well-known/openid-configuration",
			wantStatus: 400, wantError: "invalid_tenant", wantAADSTS: "90002"},
		{name: "POST discovery", path: "/" + testTenant + "/v2.0/.well-known/openid-configuration", body: goSDK(),
			wantStatus: 405, wantError: "invalid_request", header: map[string]string{"Allow": "GET, HEAD"}},
		{name: "keys", method: "GET", path: "/" + testTenant + "/discovery/v2.0/keys", wantStatus: 200},
		{name: "keys of another tenant", method: "GET", path: "/" + otherTenant + "/discovery/v2.0/keys", wantStatus: 400, wantError: "invalid_tenant"},
		{name: "authorize", method: "GET", path: "/" + testTenant + "/oauth2/v2.0/authorize?response_type=code", wantStatus: 400, wantError: "unsupported_response_type"},

		// No redirects anywhere (client-compat §0.5): ServeMux would 301/307 these.
		{name: "trailing slash", method: "GET", path: "/" + testTenant + "/v2.0/.well-known/openid-configuration/", wantStatus: 404, wantError: "invalid_request"},
		{name: "double slash", path: "/" + testTenant + "//oauth2/v2.0/token", body: goSDK(), wantStatus: 404, wantError: "invalid_request"},
		{name: "leading double slash", path: "//" + testTenant + "/oauth2/v2.0/token", body: goSDK(), wantStatus: 404, wantError: "invalid_request"},
		{name: "dot segment", path: "/" + testTenant + "/oauth2/../oauth2/v2.0/token", body: goSDK(), wantStatus: 404, wantError: "invalid_request"},
		{name: "v1 token endpoint", path: "/" + testTenant + "/oauth2/token", body: goSDK(), wantStatus: 404, wantError: "invalid_request"},
		{name: "data plane path", method: "GET", path: "/keys/k1/", wantStatus: 404, wantError: "invalid_request"},
	}
	client := f.srv.Client()
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			method, path, ct := tc.method, tc.path, tc.contentType
			if method == "" {
				method = "POST"
			}
			if path == "" {
				path = tokenPath
			}
			if tc.query != "" {
				path += "?" + tc.query
			}
			body := tc.rawBody
			if tc.body != nil {
				body = tc.body.Encode()
			}
			if ct == "" {
				ct = "application/x-www-form-urlencoded"
			}
			req, err := http.NewRequestWithContext(t.Context(), method, f.srv.URL+path, strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			if ct != "-" {
				req.Header.Set("Content-Type", ct)
			}
			if tc.basic != nil {
				req.SetBasicAuth(url.QueryEscape(tc.basic[0]), url.QueryEscape(tc.basic[1]))
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			got := readAll(t, resp)
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %s, want %d: %s", resp.Status, tc.wantStatus, got)
			}
			if strings.Contains(string(got), f.appSecret) || strings.Contains(string(got), f.oldSecret) {
				t.Fatal("the response contains a secret")
			}
			for k, v := range tc.header {
				if resp.Header.Get(k) != v {
					t.Errorf("header %s = %q, want %q", k, resp.Header.Get(k), v)
				}
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
				t.Errorf("Content-Type = %q", ct)
			}
			if method == "HEAD" {
				return
			}
			if tc.wantError != "" {
				checkOAuthError(t, got, tc.wantError, tc.wantAADSTS)
				return
			}
			if path == tokenPath || strings.HasSuffix(strings.SplitN(path, "?", 2)[0], "/oauth2/v2.0/token") {
				checkTokenResponse(t, f, resp, got)
			}
		})
	}
	f.checkNoLeak(t)
}

func checkOAuthError(t *testing.T, body []byte, wantError, wantAADSTS string) {
	t.Helper()
	var e struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
		Codes       []int  `json:"error_codes"`
	}
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("error body is not JSON: %v: %s", err, body)
	}
	if e.Error != wantError || e.Description == "" {
		t.Errorf("error = %q (%q), want %q", e.Error, e.Description, wantError)
	}
	if wantAADSTS != "" && !strings.HasPrefix(e.Description, "AADSTS"+wantAADSTS+": ") {
		t.Errorf("error_description = %q, want AADSTS%s", e.Description, wantAADSTS)
	}
}

func checkTokenResponse(t *testing.T, f *fixture, resp *http.Response, body []byte) {
	t.Helper()
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", cc)
	}
	var r map[string]any
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatal(err)
	}
	want := float64(DefaultLifetime / time.Second)
	if r["token_type"] != "Bearer" || r["expires_in"] != want || r["ext_expires_in"] != want || len(r) != 4 {
		tok := r["access_token"]
		delete(r, "access_token")
		t.Errorf("token response = %v, access_token of type %T", r, tok)
	}
	tok, _ := r["access_token"].(string)
	c, err := f.iss.Validate(t.Context(), tok, testResource)
	if err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if c.ObjectID != appObjectID || c.ClientID != appClientID || c.Audience != testResource {
		t.Errorf("claims = %+v", c)
	}
	if strings.Contains(f.log.String(), tok) {
		t.Error("the log contains the token")
	}
	// The payload states how the client authenticated.
	var claims map[string]any
	payload, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
	if err != nil || json.Unmarshal(payload, &claims) != nil {
		t.Fatalf("token payload: %v", err)
	}
	if claims["azpacr"] != "1" || claims["idtyp"] != "app" || claims["ver"] != "2.0" || claims["sub"] != appObjectID {
		t.Errorf("token claims = %v", claims)
	}
}

func TestOwns(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		path string
		want bool
	}{
		{"/" + testTenant + "/v2.0/.well-known/openid-configuration", true},
		{"/" + testTenant + "/discovery/v2.0/keys", true},
		{"/" + testTenant + "/oauth2/v2.0/token", true},
		{"/" + testTenant + "/oauth2/v2.0/authorize", true},
		{"/" + otherTenant + "/oauth2/v2.0/token", true}, // answered with the tenant error
		{"/keys/k1/sign", false},
		{"/keys/v2.0/.well-known", false},
		{"/", false},
		{"", false},
		{"//oauth2/v2.0/token", false},
		{"/" + testTenant + "/oauth2/v2.0/token/", false},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			if got := f.iss.Owns(tc.path); got != tc.want {
				t.Errorf("Owns(%q) = %v, want %v", tc.path, got, tc.want)
			}
		})
	}
}
