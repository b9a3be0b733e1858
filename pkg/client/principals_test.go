package client

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azadmin/rbac"
)

// Values of the fake pool's principals.
const (
	testObjectID    = "0b1c6a1e-0000-4000-8000-000000000001"
	testNewClientID = "0b1c6a1e-0000-4000-8000-000000000002"
	testNewSecret   = "new-principal-secret-shown-once"
)

// testPrincipal is a principal as the fake pool returns it; withSecret adds a new secret.
func testPrincipal(withSecret bool) map[string]any {
	p := map[string]any{"objectId": testObjectID, "clientId": testNewClientID, "displayName": "app1", "created": 1767225600,
		"credentials": []map[string]any{{"id": "sec1", "type": "secret", "expires": 1798761600, "created": 1767225600}}}
	if withSecret {
		p["secretId"], p["secret"] = "sec1", testNewSecret
	}
	return p
}

// request is what a handler of the fake pool saw.
type request struct {
	method, path, apiVersion string
	body                     map[string]any
}

// recordInto returns a handler that records the request into *got and answers status with v.
func recordInto(t *testing.T, got *request, status int, v any) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		*got = request{method: r.Method, path: r.URL.Path, apiVersion: r.URL.Query().Get("api-version")}
		b, _ := io.ReadAll(r.Body)
		if len(b) > 0 {
			if err := json.Unmarshal(b, &got.body); err != nil {
				t.Errorf("%s %s: the body is not a JSON object: %q", r.Method, r.URL.Path, b)
			}
		}
		writeJSON(w, status, v)
	}
}

func TestPrincipalsClient(t *testing.T) {
	p := newFakePool(t)
	pc := p.client().Principals()
	ctx := context.Background()
	expires := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	der := []byte{0x30, 0x82, 0x01, 0x02, 0x03}

	tests := []struct {
		name     string
		route    string
		status   int
		answer   any
		call     func() (*Principal, error)
		wantBody map[string]any
		secret   string
	}{
		{name: "create", route: "POST /principals", status: 201, answer: testPrincipal(true),
			call: func() (*Principal, error) {
				return pc.Create(ctx, "app1", &CreatePrincipalOptions{SecretExpires: expires})
			},
			wantBody: map[string]any{"displayName": "app1", "secretExpires": float64(expires.Unix())}, secret: testNewSecret},
		{name: "create without a secret", route: "POST /principals", status: 201, answer: testPrincipal(false),
			call:     func() (*Principal, error) { return pc.Create(ctx, "app1", &CreatePrincipalOptions{NoSecret: true}) },
			wantBody: map[string]any{"displayName": "app1", "noSecret": true}},
		{name: "create, no options", route: "POST /principals", status: 201, answer: testPrincipal(true),
			call:     func() (*Principal, error) { return pc.Create(ctx, "app1", nil) },
			wantBody: map[string]any{"displayName": "app1"}, secret: testNewSecret},
		{name: "get", route: "GET /principals/" + testNewClientID, status: 200, answer: testPrincipal(false),
			call: func() (*Principal, error) { return pc.Get(ctx, testNewClientID) }},
		{name: "delete", route: "DELETE /principals/" + testObjectID, status: 200, answer: testPrincipal(false),
			call: func() (*Principal, error) { return pc.Delete(ctx, testObjectID) }},
		{name: "add secret", route: "POST /principals/" + testObjectID + "/secrets", status: 201, answer: testPrincipal(true),
			call: func() (*Principal, error) {
				return pc.AddSecret(ctx, testObjectID, &AddSecretOptions{Expires: expires})
			},
			wantBody: map[string]any{"expires": float64(expires.Unix())}, secret: testNewSecret},
		{name: "add secret, no expiry", route: "POST /principals/" + testObjectID + "/secrets", status: 201, answer: testPrincipal(true),
			call:     func() (*Principal, error) { return pc.AddSecret(ctx, testObjectID, nil) },
			wantBody: map[string]any{}, secret: testNewSecret},
		{name: "add certificate", route: "POST /principals/" + testObjectID + "/certificates", status: 201, answer: testPrincipal(false),
			call:     func() (*Principal, error) { return pc.AddCertificate(ctx, testObjectID, der) },
			wantBody: map[string]any{"certificate": base64.StdEncoding.EncodeToString(der)}},
		{name: "remove credential", route: "DELETE /principals/" + testObjectID + "/credentials/sec1", status: 200, answer: testPrincipal(false),
			call: func() (*Principal, error) { return pc.RemoveCredential(ctx, testObjectID, "sec1") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got request
			p.handle(tt.route, recordInto(t, &got, tt.status, tt.answer))
			pr, err := tt.call()
			if err != nil {
				t.Fatal(err)
			}
			if got.method+" "+got.path != tt.route || got.apiVersion != PrincipalsAPIVersion {
				t.Errorf("request %s %s api-version %q, want %s api-version %s", got.method, got.path, got.apiVersion, tt.route, PrincipalsAPIVersion)
			}
			if tt.wantBody == nil && got.body != nil {
				t.Errorf("body %v, want none", got.body)
			}
			if tt.wantBody != nil && fmt.Sprint(got.body) != fmt.Sprint(tt.wantBody) {
				t.Errorf("body %v, want %v", got.body, tt.wantBody)
			}
			want := Principal{ObjectID: testObjectID, ClientID: testNewClientID, DisplayName: "app1", Created: 1767225600,
				Credentials: []Credential{{ID: "sec1", Type: CredentialSecret, Expires: 1798761600, Created: 1767225600}}}
			if tt.secret != "" {
				want.SecretID = "sec1"
			}
			if pr.Secret.Reveal() != tt.secret {
				t.Errorf("secret %q, want %q", pr.Secret.Reveal(), tt.secret)
			}
			pr.Secret = Secret{}
			if !principalsEqual(*pr, want) {
				t.Errorf("principal %+v, want %+v", *pr, want)
			}
		})
	}

	t.Run("list", func(t *testing.T) {
		var got request
		p.handle("GET /principals", recordInto(t, &got, 200, map[string]any{"value": []any{testPrincipal(false), testPrincipal(false)}}))
		l, err := pc.List(ctx)
		if err != nil || len(l) != 2 || l[1].ObjectID != testObjectID || got.apiVersion != PrincipalsAPIVersion {
			t.Errorf("List: %+v, %v (api-version %q)", l, err, got.apiVersion)
		}
	})
}

func principalsEqual(a, b Principal) bool {
	return a.ObjectID == b.ObjectID && a.ClientID == b.ClientID && a.DisplayName == b.DisplayName && a.Created == b.Created &&
		a.SecretID == b.SecretID && a.Secret.Reveal() == b.Secret.Reveal() && slices.Equal(a.Credentials, b.Credentials)
}

// TestPrincipalsErrors checks the answers that are errors: the pool's envelope becomes an *Error; a success with
// the wrong status or no principal is an error too; and bad IDs never reach the pool.
func TestPrincipalsErrors(t *testing.T) {
	p := newFakePool(t)
	pc := p.client().Principals()
	ctx := context.Background()

	p.handle("GET /principals/nobody", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("x-ms-request-id", "req-1")
		writeJSON(w, 404, map[string]any{"error": map[string]string{"code": "PrincipalNotFound", "message": "No principal nobody."}})
	})
	_, err := pc.Get(ctx, "nobody")
	e, ok := AsError(err)
	if !ok || e.StatusCode != 404 || e.Code != "PrincipalNotFound" || e.Message != "No principal nobody." || e.RequestID != "req-1" {
		t.Errorf("Get nobody: %v (%+v)", err, e)
	}
	if want := "principal get: PrincipalNotFound (HTTP 404 Not Found): No principal nobody."; err == nil || err.Error() != want {
		t.Errorf("Get nobody: %v, want %q", err, want)
	}

	p.handle("POST /principals", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, 200, testPrincipal(true)) })
	if _, err := pc.Create(ctx, "app1", nil); err == nil || !strings.Contains(err.Error(), "HTTP 200") {
		t.Errorf("Create answered 200, not 201: %v", err)
	}
	p.handle("DELETE /principals/x", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, 200, map[string]any{}) })
	if _, err := pc.Delete(ctx, "x"); err == nil || !strings.Contains(err.Error(), `no "objectId"`) {
		t.Errorf("Delete answered {}: %v", err)
	}
	p.handle("GET /principals", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "not json") })
	if _, err := pc.List(ctx); err == nil || !strings.HasPrefix(err.Error(), "principal list: the answer: ") {
		t.Errorf("List answered not JSON: %v", err)
	}

	before, _ := p.requests()
	for name, call := range map[string]func() error{
		"get empty":             func() error { _, err := pc.Get(ctx, ""); return err },
		"get a/b":               func() error { _, err := pc.Get(ctx, "a/b"); return err },
		"delete ..":             func() error { _, err := pc.Delete(ctx, ".."); return err },
		"remove credential a/b": func() error { _, err := pc.RemoveCredential(ctx, "x", "a/b"); return err },
		"add secret ?":          func() error { _, err := pc.AddSecret(ctx, "x?y", nil); return err },
		"add empty certificate": func() error { _, err := pc.AddCertificate(ctx, "x", nil); return err },
		"create without a name": func() error { _, err := pc.Create(ctx, " ", nil); return err },
		"no secret, but expires": func() error {
			_, err := pc.Create(ctx, "a", &CreatePrincipalOptions{NoSecret: true, SecretExpires: time.Now()})
			return err
		},
	} {
		if err := call(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if after, _ := p.requests(); len(after) != len(before) {
		t.Errorf("bad arguments reached the pool: %v", after[len(before):])
	}
	if _, err := NewPrincipalsClient("http://pool", nil, nil); err == nil {
		t.Errorf("NewPrincipalsClient took an http URL")
	}
}

// TestPrincipalsRetries checks that a request that makes something is sent once, whatever the retry options, and
// that one that reads is retried.
func TestPrincipalsRetries(t *testing.T) {
	p := newFakePool(t)
	c, err := New(p.file(), &Options{Retry: policy.RetryOptions{MaxRetries: 2, RetryDelay: time.Millisecond, MaxRetryDelay: time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	unavailable := func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, 503, map[string]any{"error": map[string]string{"code": "ServiceUnavailable", "message": "later"}})
	}
	for _, route := range []string{"POST /principals", "POST /principals/x/secrets", "POST /principals/x/certificates", "GET /principals/x"} {
		p.handle(route, unavailable)
	}
	ctx := context.Background()
	calls := []struct {
		route string
		call  func() error
		sent  int
	}{
		{"POST /principals", func() error { _, err := c.Principals().Create(ctx, "a", nil); return err }, 1},
		{"POST /principals/x/secrets", func() error { _, err := c.Principals().AddSecret(ctx, "x", nil); return err }, 1},
		{"POST /principals/x/certificates", func() error { _, err := c.Principals().AddCertificate(ctx, "x", []byte{1}); return err }, 1},
		{"GET /principals/x", func() error { _, err := c.Principals().Get(ctx, "x"); return err }, 3},
	}
	for _, tt := range calls {
		if e, ok := AsError(tt.call()); !ok || e.StatusCode != 503 {
			t.Errorf("%s: %v, want a 503 *Error", tt.route, e)
		}
		log, _ := p.requests()
		n := 0
		for _, l := range log {
			if strings.HasPrefix(l, tt.route+" Service Unavailable") {
				n++
			}
		}
		if n != tt.sent {
			t.Errorf("%s: sent %d times, want %d", tt.route, n, tt.sent)
		}
	}
}

// TestPrincipalRedacted checks that a principal that holds a new secret never shows it when printed, logged or
// marshalled, and that it shows everything else.
func TestPrincipalRedacted(t *testing.T) {
	pr := &Principal{ObjectID: testObjectID, ClientID: testNewClientID, DisplayName: "app1", SecretID: "sec1", Secret: NewSecret(testNewSecret)}
	var shown []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
		shown = append(shown, fmt.Sprintf(verb, pr), fmt.Sprintf(verb, *pr), fmt.Sprintf(verb, []Principal{*pr}))
	}
	b, err := json.Marshal(pr)
	if err != nil {
		t.Fatal(err)
	}
	shown = append(shown, string(b))
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("made", "principal", pr, "secret", pr.Secret)
	slog.New(slog.NewTextHandler(&logged, nil)).Info("made", "principal", *pr)
	shown = append(shown, logged.String())
	for _, s := range shown {
		if strings.Contains(s, testNewSecret) || strings.Contains(s, fmt.Sprintf("%x", testNewSecret)) {
			t.Errorf("a principal shows its secret: %s", s)
		}
	}
	if !strings.Contains(string(b), `"secret":"[REDACTED]"`) || !strings.Contains(string(b), `"clientId":"`+testNewClientID+`"`) {
		t.Errorf("JSON of a principal: %s", b)
	}
	b, _ = json.Marshal(Principal{ObjectID: "x"})
	if strings.Contains(string(b), "secret") {
		t.Errorf("JSON of a principal without a secret: %s", b)
	}
}

// TestRBACClient checks that the RBAC client goes to the pool, with the token, at the scope given.
func TestRBACClient(t *testing.T) {
	p := newFakePool(t)
	c := p.client()
	ctx := context.Background()
	const guid = "7a8f0b6e-0000-4000-8000-0000000000aa"
	var got request
	p.handle("PUT /keys/k1/providers/Microsoft.Authorization/roleAssignments/"+guid, recordInto(t, &got, 201, map[string]any{
		"id": "/keys/k1/providers/Microsoft.Authorization/roleAssignments/" + guid, "name": guid,
		"type":       "Microsoft.Authorization/roleAssignments",
		"properties": map[string]any{"scope": "/keys/k1", "roleDefinitionId": "r", "principalId": testObjectID}}))
	a, err := c.RBAC().CreateRoleAssignment(ctx, "/keys/k1", guid, rbac.RoleAssignmentCreateParameters{
		Properties: &rbac.RoleAssignmentProperties{PrincipalID: to.Ptr(testObjectID), RoleDefinitionID: to.Ptr("r")}}, nil)
	if err != nil || *a.Properties.Scope != "/keys/k1" {
		t.Fatalf("CreateRoleAssignment: %v", err)
	}
	if got.apiVersion != "2025-07-01" || fmt.Sprint(got.body) != fmt.Sprint(map[string]any{"properties": map[string]any{"principalId": testObjectID, "roleDefinitionId": "r"}}) {
		t.Errorf("request: %+v", got)
	}
	var filter string
	p.handle("GET /providers/Microsoft.Authorization/roleDefinitions", func(w http.ResponseWriter, r *http.Request) {
		filter = r.URL.Query().Get("$filter")
		writeJSON(w, 200, map[string]any{"value": []any{}})
	})
	pager := c.RBAC().NewListRoleDefinitionsPager(rbac.RoleScopeGlobal, &rbac.ListRoleDefinitionsOptions{Filter: to.Ptr("roleName eq 'x'")})
	if _, err := pager.NextPage(ctx); err != nil || filter != "roleName eq 'x'" {
		t.Errorf("list role definitions: %v, $filter %q", err, filter)
	}
}

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := &File{URL: "https://contoso.managedhsm.localhost:8443", Name: "contoso", TenantID: testTenant,
		AuthorityHost: "https://127.0.0.1:8443", ClientID: testClientID, ClientSecret: NewSecret(testSecret), CAFile: caFile}
	g := f.ForPrincipal(testNewClientID, NewSecret(testNewSecret))
	if f.ClientID != testClientID || g.ClientID != testNewClientID || g.URL != f.URL || g.CAFile != f.CAFile {
		t.Fatalf("ForPrincipal: %+v from %+v", g, f)
	}
	path := filepath.Join(dir, "new.json")
	if err := WriteFile(path, g); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("written file: %v, %v", fi, err)
	}
	back, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if back.ClientSecret.Reveal() != testNewSecret || back.ClientID != testNewClientID || back.CAFile != caFile || back.TenantID != testTenant {
		t.Errorf("read back %+v", back)
	}
	err = WriteFile(path, f)
	if !errors.Is(err, os.ErrExist) {
		t.Errorf("WriteFile over an existing file: %v", err)
	}
	if back, _ := ReadFile(path); back == nil || back.ClientID != testNewClientID {
		t.Errorf("WriteFile changed an existing file")
	}
	bad := *g
	bad.URL = "http://x"
	if err := WriteFile(filepath.Join(dir, "bad.json"), &bad); err == nil || !strings.Contains(err.Error(), `"url"`) {
		t.Errorf("WriteFile of a bad file: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "bad.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("WriteFile left a bad file")
	}

	// A relative CA file is written as an absolute path.
	t.Chdir(dir)
	rel := *g
	rel.CAFile = "ca.pem"
	if err := WriteFile(filepath.Join(dir, "sub.json"), &rel); err != nil {
		t.Fatal(err)
	}
	if back, err := ReadFile(filepath.Join(dir, "sub.json")); err != nil || back.CAFile != caFile {
		t.Errorf("relative CA file: %+v, %v", back, err)
	}
}
