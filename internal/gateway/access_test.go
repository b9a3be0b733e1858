package gateway

import (
	"strings"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/hsmpool/hsmpool/internal/audit"
	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

const (
	roleGUID   = "a290e904-7015-4bba-90c8-60543313cdb4"
	asgGUID    = "7f2c1a2e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"
	principal1 = "11111111-2222-4333-8444-555555555555"
)

// TestRBACRoutesAndScopes checks that every RBAC path reaches its core method with the scope its
// path names, whatever the slashes the SDKs send (the Go client joins "/" + "/providers/...").
func TestRBACRoutesAndScopes(t *testing.T) {
	e := newEnv(t)
	asg := func(m proto.Message) (proto.Message, error) {
		var scope, name string
		switch r := m.(type) {
		case *pb.RoleAssignmentRef:
			scope, name = r.Scope, r.Name
		case *pb.CreateRoleAssignmentRequest:
			scope, name = r.Assignment.Scope, r.Assignment.Name
		}
		return &pb.RoleAssignment{Name: name, Scope: scope, RoleDefinitionId: roleGUID, PrincipalId: principal1}, nil
	}
	def := func(proto.Message) (proto.Message, error) {
		return &pb.RoleDefinition{Name: roleGUID, RoleName: "r", RoleType: "CustomRole",
			Permissions: []*pb.Permission{{DataActions: []string{"Microsoft.KeyVault/managedHsm/keys/read/action"}}}}, nil
	}
	for _, m := range []string{"GetRoleAssignment", "CreateRoleAssignment", "DeleteRoleAssignment"} {
		e.core.on("Access/"+m, asg)
	}
	for _, m := range []string{"GetRoleDefinition", "PutRoleDefinition", "DeleteRoleDefinition"} {
		e.core.on("Access/"+m, def)
	}
	e.core.on("Access/ListRoleAssignments", func(proto.Message) (proto.Message, error) { return &pb.RoleAssignmentList{}, nil })
	e.core.on("Access/ListRoleDefinitions", func(proto.Message) (proto.Message, error) { return &pb.RoleDefinitionList{}, nil })

	const asgBody = `{"properties":{"roleDefinitionId":"Microsoft.KeyVault/providers/Microsoft.Authorization/roleDefinitions/` + roleGUID + `","principalId":"` + principal1 + `"}}`
	const defBody = `{"properties":{"roleName":"r","type":"CustomRole","permissions":[{"dataActions":["Microsoft.KeyVault/managedHsm/keys/read/action"]}],"assignableScopes":["/"]}}`
	for _, tc := range []struct {
		method, path, body string
		status             int
		core               string
		scope              string
		id                 string // the assignment's id in the answer
	}{
		{"GET", "//providers/Microsoft.Authorization/roleAssignments/" + asgGUID, "", 200, "Access/GetRoleAssignment", "/", "/providers/Microsoft.Authorization/roleAssignments/" + asgGUID},
		{"PUT", "//providers/Microsoft.Authorization/roleAssignments/" + asgGUID, asgBody, 201, "Access/CreateRoleAssignment", "/", "/providers/Microsoft.Authorization/roleAssignments/" + asgGUID},
		{"DELETE", "/providers/Microsoft.Authorization/roleAssignments/" + asgGUID, "", 200, "Access/DeleteRoleAssignment", "/", "/providers/Microsoft.Authorization/roleAssignments/" + asgGUID},
		{"PUT", "/keys/providers/Microsoft.Authorization/roleAssignments/" + asgGUID, asgBody, 201, "Access/CreateRoleAssignment", "/keys", "/keys/providers/Microsoft.Authorization/roleAssignments/" + asgGUID},
		{"PUT", "/keys/k1/providers/Microsoft.Authorization/roleAssignments/" + asgGUID, asgBody, 201, "Access/CreateRoleAssignment", "/keys/k1", "/keys/k1/providers/Microsoft.Authorization/roleAssignments/" + asgGUID},
		{"GET", "/keys/k1/providers/microsoft.authorization/roleassignments/", "", 200, "Access/ListRoleAssignments", "/keys/k1", ""},
		{"GET", "//providers/Microsoft.Authorization/roleDefinitions", "", 200, "Access/ListRoleDefinitions", "/", ""},
		{"GET", "/keys/providers/Microsoft.Authorization/roleDefinitions", "", 200, "Access/ListRoleDefinitions", "/keys", ""},
		{"PUT", "//providers/Microsoft.Authorization/roleDefinitions/" + roleGUID, defBody, 201, "Access/PutRoleDefinition", "/", ""},
		{"GET", "//providers/Microsoft.Authorization/roleDefinitions/" + roleGUID, "", 200, "Access/GetRoleDefinition", "", ""},
		{"DELETE", "//providers/Microsoft.Authorization/roleDefinitions/" + roleGUID, "", 200, "Access/DeleteRoleDefinition", "", ""},
	} {
		t.Run(tc.method+tc.path, func(t *testing.T) {
			e.core.reset()
			res := e.send(request{method: tc.method, target: tc.path + v, body: tc.body})
			if res.status != tc.status {
				t.Fatalf("status %d, want %d: %s", res.status, tc.status, res.body)
			}
			calls := e.core.reset()
			if len(calls) != 1 || calls[0].method != tc.core {
				t.Fatalf("core calls %v, want one %s", calls, tc.core)
			}
			if tc.scope != "" {
				var got string
				switch r := calls[0].req.(type) {
				case *pb.RoleAssignmentRef:
					got = r.Scope
				case *pb.CreateRoleAssignmentRequest:
					got = r.Assignment.Scope
					if r.Assignment.RoleDefinitionId != roleGUID || r.Assignment.PrincipalId != principal1 || r.Assignment.Name != asgGUID {
						t.Errorf("assignment %v", r.Assignment)
					}
				case *pb.ListRoleAssignmentsRequest:
					got = r.Scope
				case *pb.ListRoleDefinitionsRequest:
					got = r.Scope
				case *pb.PutRoleDefinitionRequest:
					got = r.Scope
					d := r.Definition
					if d.Name != roleGUID || d.RoleName != "r" || len(d.Permissions) != 1 || d.Permissions[0].DataActions[0] != "Microsoft.KeyVault/managedHsm/keys/read/action" {
						t.Errorf("definition %v", d)
					}
				}
				if got != tc.scope {
					t.Errorf("scope %q, want %q", got, tc.scope)
				}
			}
			if tc.id != "" {
				j := res.json(t)
				props, _ := j["properties"].(map[string]any)
				if j["id"] != tc.id || j["name"] != asgGUID || j["type"] != "Microsoft.Authorization/roleAssignments" ||
					props["roleDefinitionId"] != "Microsoft.KeyVault/providers/Microsoft.Authorization/roleDefinitions/"+roleGUID ||
					props["principalId"] != principal1 || props["scope"] != tc.scope {
					t.Errorf("answer %s", res.body)
				}
			}
		})
	}
}

// TestRoleDefinitionJSON checks the shape both SDKs parse: the id without a leading slash, and
// every permission list an array even when empty (the JS client maps over them).
func TestRoleDefinitionJSON(t *testing.T) {
	e := newEnv(t)
	e.core.on("Access/ListRoleDefinitions", func(m proto.Message) (proto.Message, error) {
		if r := m.(*pb.ListRoleDefinitionsRequest); r.RoleName != "Managed HSM Crypto User" {
			t.Errorf("roleName filter %q", r.RoleName)
		}
		return &pb.RoleDefinitionList{Definitions: []*pb.RoleDefinition{{Name: roleGUID, RoleName: "Managed HSM Crypto User",
			RoleType: "AKVBuiltInRole", AssignableScopes: []string{"/"},
			Permissions: []*pb.Permission{{DataActions: []string{"Microsoft.KeyVault/managedHsm/rng/action"}}}}}}, nil
	})
	res := e.send(request{method: "GET", target: "/providers/Microsoft.Authorization/roleDefinitions" + v + "&%24filter=" +
		strings.ReplaceAll("roleName eq 'Managed HSM Crypto User'", " ", "%20")})
	want := `{"value":[{"id":"Microsoft.KeyVault/providers/Microsoft.Authorization/roleDefinitions/` + roleGUID + `",` +
		`"name":"` + roleGUID + `","type":"Microsoft.Authorization/roleDefinitions","properties":{"roleName":"Managed HSM Crypto User",` +
		`"description":"","type":"AKVBuiltInRole","permissions":[{"actions":[],"notActions":[],` +
		`"dataActions":["Microsoft.KeyVault/managedHsm/rng/action"],"notDataActions":[]}],"assignableScopes":["/"]}}],"nextLink":null}` + "\n"
	if res.status != 200 || string(res.body) != want {
		t.Fatalf("got %d\n%s\nwant\n%s", res.status, res.body, want)
	}
}

func TestRoleAssignmentFilters(t *testing.T) {
	e := newEnv(t)
	var got *pb.ListRoleAssignmentsRequest
	e.core.on("Access/ListRoleAssignments", func(m proto.Message) (proto.Message, error) {
		got = m.(*pb.ListRoleAssignmentsRequest)
		return &pb.RoleAssignmentList{NextPageToken: "tok"}, nil
	})
	for _, tc := range []struct {
		filter      string
		atScope     bool
		principalID string
		status      int
	}{
		{"atScope()", true, "", 200},
		{"principalId eq '" + principal1 + "'", false, principal1, 200},
		{"atScope() and principalId eq '" + principal1 + "'", true, principal1, 200},
		{"roleName eq 'x'", false, "", 400},
		{"principalId eq " + principal1, false, "", 400},
	} {
		got = nil
		res := e.send(request{method: "GET", target: "/providers/Microsoft.Authorization/roleAssignments" + v + "&$filter=" +
			strings.ReplaceAll(strings.ReplaceAll(tc.filter, " ", "%20"), "'", "%27")})
		if res.status != tc.status {
			t.Errorf("%q: status %d, want %d: %s", tc.filter, res.status, tc.status, res.body)
			continue
		}
		if tc.status != 200 {
			if code, _, _ := res.errorOf(t); code != "BadParameter" || got != nil {
				t.Errorf("%q: code %s, core called %v", tc.filter, code, got != nil)
			}
			continue
		}
		if got.AtScope != tc.atScope || got.PrincipalId != tc.principalID || got.Scope != "/" {
			t.Errorf("%q: request %v", tc.filter, got)
		}
		next, _ := res.json(t)["nextLink"].(string)
		if !strings.HasPrefix(next, "https://"+testHost+"/providers/Microsoft.Authorization/roleAssignments?api-version=2025-07-01&$skiptoken=tok") ||
			!strings.Contains(next, "&$filter=") {
			t.Errorf("%q: nextLink %q", tc.filter, next)
		}
	}
}

// TestPrincipalJSON checks the principal API's shape and that the secret appears only in the
// answer that made it.
func TestPrincipalJSON(t *testing.T) {
	e := newEnv(t)
	view := &pb.Principal{ObjectId: principal1, ClientId: asgGUID, DisplayName: "app", Created: 1700000000,
		Credentials: []*pb.Credential{{Id: "c1", Type: "secret", Created: 1700000000}}}
	e.core.on("Principals/CreatePrincipal", func(m proto.Message) (proto.Message, error) {
		if r := m.(*pb.CreatePrincipalRequest); r.DisplayName != "app" || r.SecretExpires != 1800000000 {
			t.Errorf("request %v", r)
		}
		return &pb.PrincipalWithSecret{Principal: view, SecretId: "c1", Secret: "s3cr3t"}, nil
	})
	e.core.on("Principals/GetPrincipal", func(proto.Message) (proto.Message, error) { return view, nil })
	e.core.on("Principals/AddCertificate", func(m proto.Message) (proto.Message, error) {
		if r := m.(*pb.AddCertificateRequest); string(r.Certificate) != "der" || r.ObjectId != principal1 {
			t.Errorf("request %v", r)
		}
		return view, nil
	})
	res := e.send(request{method: "POST", target: "/principals" + v, body: `{"displayName":"app","secretExpires":1800000000}`})
	want := `{"objectId":"` + principal1 + `","clientId":"` + asgGUID + `","displayName":"app","created":1700000000,` +
		`"credentials":[{"id":"c1","type":"secret","created":1700000000}],"secretId":"c1","secret":"s3cr3t"}` + "\n"
	if res.status != 201 || string(res.body) != want {
		t.Fatalf("got %d\n%s\nwant\n%s", res.status, res.body, want)
	}
	res = e.send(request{method: "GET", target: "/principals/" + principal1 + v})
	if res.status != 200 || strings.Contains(string(res.body), `"secret":`) {
		t.Errorf("get: %d %s", res.status, res.body)
	}
	res = e.send(request{method: "POST", target: "/principals/" + principal1 + "/certificates" + v, body: `{"certificate":"ZGVy"}`})
	if res.status != 201 {
		t.Errorf("add certificate: %d %s", res.status, res.body)
	}
	res = e.send(request{method: "POST", target: "/principals/" + principal1 + "/certificates" + v, body: `{"certificate":"%%%"}`})
	if code, _, _ := res.errorOf(t); res.status != 400 || code != "BadParameter" {
		t.Errorf("bad certificate: %d %s", res.status, res.body)
	}
}

// fakeAuditor keeps what the gateway records.
type fakeAuditor struct {
	mu      sync.Mutex
	entries []audit.Entry
}

func (f *fakeAuditor) Record(e audit.Entry) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.entries = append(f.entries, e)
	return nil
}

// TestGatewayAudit checks that the gateway audits exactly the requests the core never sees.
func TestGatewayAudit(t *testing.T) {
	a := &fakeAuditor{}
	e := newEnv(t, func(c *Config) { c.Audit = a }).withDefaults()
	none := ""
	e.send(request{method: "GET", target: "/keys/k1" + v, auth: &none})                      // 401: no token
	e.send(request{method: "GET", target: "/nowhere" + v})                                   // 404
	e.send(request{method: "POST", target: "/keys/k1/create" + v, body: `{"kty":`})          // 400 in the handler
	e.send(request{method: "GET", target: "/keys/k1?api-version=1.0"})                       // 400: api-version
	e.send(request{method: "POST", target: "/keys/k1/create" + v, body: `{"kty":"EC-HSM"}`}) // reaches the core
	e.send(request{method: "GET", target: "/healthz", auth: &none})                          // open
	want := []struct {
		op      string
		status  int
		outcome audit.Outcome
	}{
		{"GetKey", 401, audit.OutcomeDenied},
		{"Unrouted", 404, audit.OutcomeFailed},
		{"CreateKey", 400, audit.OutcomeFailed},
		{"GetKey", 400, audit.OutcomeFailed},
	}
	if len(a.entries) != len(want) {
		t.Fatalf("%d entries, want %d: %+v", len(a.entries), len(want), a.entries)
	}
	for i, w := range want {
		got := a.entries[i]
		if got.Operation != w.op || got.Status != w.status || got.Outcome != w.outcome || got.RequestID == "" || got.ClientIP != "127.0.0.1" {
			t.Errorf("entry %d: %+v, want %s %d %s", i, got, w.op, w.status, w.outcome)
		}
	}
}
