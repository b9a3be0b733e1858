package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azadmin/rbac"
	"github.com/rogpeppe/go-internal/testscript"
	"github.com/spf13/pflag"

	"github.com/hsmpool/hsmpool/pkg/client"
)

const (
	testRoleGUID = "21dbd100-6940-42c2-9190-5d6cb909625b"
	testAsgGUID  = "7a8f0b6e-1c2d-4e3f-8a9b-0c1d2e3f4a5b"
	testOID      = "3f2b8c1e-5a0d-4c5e-9d1a-6b7e8f9a0b1c"
)

// TestAccessScripts runs the scripts of testdata/access: the flags of "principal" and "role", checked before a
// client file is looked for.
func TestAccessScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata/access",
		Setup: func(env *testscript.Env) error {
			env.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
			return nil
		},
	})
}

// TestRoleFlags runs role commands with flag mistakes: each fails with an error that names the flag or argument,
// before it looks for a client file. Valid flags get as far as the missing client file.
func TestRoleFlags(t *testing.T) {
	t.Setenv(client.EnvFile, "")
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.json", `{"properties":{"roleName":"Signer","permissions":[{"dataActions":["keys/sign/action"]}]}}`)
	flat := write("flat.json", `{"roleName":"Signer","dataActions":["keys/sign/action"]}`)
	noName := write("noname.json", `{"properties":{"permissions":[{"dataActions":["keys/sign/action"]}]}}`)
	noPerms := write("noperms.json", `{"properties":{"roleName":"Signer"}}`)
	badAction := write("badaction.json", `{"properties":{"roleName":"Signer","permissions":[{"dataActions":["keys/sign action"]}]}}`)
	notJSON := write("not.json", `roleName: Signer`)
	tests := []struct {
		args []string
		err  string
	}{
		// definition list, show, delete
		{[]string{"role", "definition", "list", "--scope", "/keys/k1"}, `--scope "/keys/k1": want / or /keys`},
		{[]string{"role", "definition", "list", "--scope", "keys"}, `--scope "keys": want / or /keys`},
		{[]string{"role", "definition", "list", "--name", "it's"}, `--name "it's": want a value without quotes`},
		{[]string{"role", "definition", "list", "--scope", "/keys", "--name", "Managed HSM Crypto User"}, errNoClientFile},
		{[]string{"role", "definition", "list"}, errNoClientFile},
		{[]string{"role", "definition", "show"}, "want one role definition GUID: hsmpool role definition show GUID [flags]"},
		{[]string{"role", "definition", "show", "Managed HSM Crypto User"}, `role definition "Managed HSM Crypto User": want a GUID`},
		{[]string{"role", "definition", "show", testRoleGUID}, errNoClientFile},
		{[]string{"role", "definition", "delete", "x"}, `role definition "x": want a GUID`},
		{[]string{"role", "definition", "delete", testRoleGUID}, errNoClientFile},

		// definition create
		{[]string{"role", "definition", "create"}, "--name is required: the role's name (or give the whole role in --file)"},
		{[]string{"role", "definition", "create", "--name", "Signer"}, "--data-action is required: at least one, such as keys/sign/action"},
		{[]string{"role", "definition", "create", "--name", "Signer", "--data-action", ""}, "--data-action is required"},
		{[]string{"role", "definition", "create", "--name", "Signer", "--data-action", "keys/read/action,,rng/action"}, `--data-action "": want a data action`},
		{[]string{"role", "definition", "create", "--name", "Signer", "--data-action", "keys/sign/action", "--not-data-action", "a b"}, `--not-data-action "a b": want a data action`},
		{[]string{"role", "definition", "create", "--name", "Signer", "--data-action", "keys/sign/action", "--id", "1"}, `--id "1": want a GUID`},
		{[]string{"role", "definition", "create", "--name", "Signer", "--data-action", "keys/sign/action", "--scope", "/keys/k"}, `--scope "/keys/k": want / or /keys`},
		{[]string{"role", "definition", "create", "--file", good, "--name", "x"}, "--name: the role comes from --file; give one or the other"},
		{[]string{"role", "definition", "create", "--file", good, "--data-action", "keys/read/action"}, "--data-action: the role comes from --file"},
		{[]string{"role", "definition", "create", "--file", flat}, "--file " + flat + `: want a RoleDefinitionCreateParameters object, {"properties": {"roleName": ..., "permissions": [...]}}`},
		{[]string{"role", "definition", "create", "--file", noName}, `"properties.roleName" is missing`},
		{[]string{"role", "definition", "create", "--file", noPerms}, `"properties.permissions" is missing`},
		{[]string{"role", "definition", "create", "--file", badAction}, `--file ` + badAction + `: properties.permissions[0].dataActions[0] "keys/sign action": want a data action`},
		{[]string{"role", "definition", "create", "--file", notJSON}, "--file " + notJSON + ": not JSON"},
		{[]string{"role", "definition", "create", "--file", filepath.Join(dir, "nope.json")}, "--file: open "},
		{[]string{"role", "definition", "create", "--file", good, "--id", testRoleGUID}, errNoClientFile},
		{[]string{"role", "definition", "create", "--name", "Signer", "--data-action", "keys/sign/action,keys/read/action",
			"--not-data-action", "keys/*/delete", "--description", "signs", "--scope", "/keys"}, errNoClientFile},

		// assignment list
		{[]string{"role", "assignment", "list", "--scope", "/keys/bad_name"}, `--scope "/keys/bad_name": key name "bad_name": use 1 to 127 letters, digits and dashes`},
		{[]string{"role", "assignment", "list", "--scope", "/secrets"}, `--scope "/secrets": want /, /keys or /keys/NAME`},
		{[]string{"role", "assignment", "list", "--principal", "a'b"}, `--principal "a'b": want a value without quotes`},
		{[]string{"role", "assignment", "list", "--scope", "/keys/k1", "--principal", testOID, "--at-scope"}, errNoClientFile},

		// assignment create
		{[]string{"role", "assignment", "create"}, "--role is required: a role's name or GUID"},
		{[]string{"role", "assignment", "create", "--role", "Managed HSM Crypto User"}, "--principal is required: a principal's object ID or client ID"},
		{[]string{"role", "assignment", "create", "--role", "x", "--principal", "a/b"}, `--principal "a/b": want an object ID or a client ID`},
		{[]string{"role", "assignment", "create", "--role", "x'y", "--principal", testOID}, `--role "x'y": want a role's name or GUID, without quotes`},
		{[]string{"role", "assignment", "create", "--role", "x", "--principal", testOID, "--id", "nope"}, `--id "nope": want a GUID`},
		{[]string{"role", "assignment", "create", "--role", "x", "--principal", testOID, "--scope", "/keys/"}, `--scope "/keys/": key name ""`},
		{[]string{"role", "assignment", "create", "--role", "Managed HSM Crypto User", "--principal", testOID, "--scope", "/keys/k1"}, errNoClientFile},
		{[]string{"role", "assignment", "create", "--role", testRoleGUID, "--principal", testOID, "--id", testAsgGUID}, errNoClientFile},

		// assignment delete
		{[]string{"role", "assignment", "delete"}, "want one role assignment GUID: hsmpool role assignment delete GUID [--scope /|/keys|/keys/NAME] [flags]"},
		{[]string{"role", "assignment", "delete", testAsgGUID, "--scope", "/x"}, `--scope "/x": want /, /keys or /keys/NAME`},
		{[]string{"role", "assignment", "delete", testAsgGUID, "--scope", "/keys/k1"}, errNoClientFile},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, err := execute(t, tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("error %v\nwant one with %q", err, tt.err)
			}
		})
	}
}

func TestDataAction(t *testing.T) {
	for in, want := range map[string]string{
		"keys/sign/action":  "Microsoft.KeyVault/managedHsm/keys/sign/action",
		"/keys/sign/action": "Microsoft.KeyVault/managedHsm/keys/sign/action",
		"keys/*":            "Microsoft.KeyVault/managedHsm/keys/*",
		"*":                 "Microsoft.KeyVault/managedHsm/*",
		"Microsoft.KeyVault/managedHsm/rng/action":  "Microsoft.KeyVault/managedHsm/rng/action",
		"microsoft.keyvault/managedhsm/rng/action":  "microsoft.keyvault/managedhsm/rng/action",
		" roleAssignments/write/action ":            "Microsoft.KeyVault/managedHsm/roleAssignments/write/action",
		"Microsoft.KeyVault/managedHsm/keys/create": "Microsoft.KeyVault/managedHsm/keys/create",
	} {
		got, err := dataAction("--data-action", in)
		if err != nil || string(got) != want {
			t.Errorf("dataAction(%q) = %q, %v; want %q", in, got, err, want)
		}
		if short := shortAction(want); strings.Contains(short, "anagedHsm") {
			t.Errorf("shortAction(%q) = %q", want, short)
		}
	}
}

// TestRoleDefinitionCreateRequest checks the request that create makes from flags and from a file.
func TestRoleDefinitionCreateRequest(t *testing.T) {
	var f pflag.FlagSet
	o := &roleDefinitionCreateOptions{Name: "Signer", DataActions: []string{"keys/sign/action", "Microsoft.KeyVault/managedHsm/keys/read/action"},
		Description: "signs", Scope: "/keys"}
	if err := o.validate(&f); err != nil {
		t.Fatal(err)
	}
	if !isGUID(o.ID) || o.scope != rbac.RoleScopeKeys {
		t.Errorf("id %q, scope %q", o.ID, o.scope)
	}
	b, _ := json.Marshal(o.params)
	want := `{"properties":{"assignableScopes":["/keys"],"description":"signs","permissions":[{"actions":[],"dataActions":["Microsoft.KeyVault/managedHsm/keys/sign/action","Microsoft.KeyVault/managedHsm/keys/read/action"],"notActions":[],"notDataActions":[]}],"roleName":"Signer","type":"CustomRole"}}`
	if string(b) != want {
		t.Errorf("request\n%s\nwant\n%s", b, want)
	}

	path := filepath.Join(t.TempDir(), "role.json")
	if err := os.WriteFile(path, []byte(`{"properties":{"roleName":"Signer","permissions":[{"dataActions":["keys/sign/action"],"notDataActions":["keys/sign/action"]}]}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	o = &roleDefinitionCreateOptions{File: path, Scope: "/", ID: testRoleGUID}
	if err := o.validate(&f); err != nil {
		t.Fatal(err)
	}
	b, _ = json.Marshal(o.params)
	want = `{"properties":{"assignableScopes":["/"],"permissions":[{"dataActions":["Microsoft.KeyVault/managedHsm/keys/sign/action"],"notDataActions":["Microsoft.KeyVault/managedHsm/keys/sign/action"]}],"roleName":"Signer","type":"CustomRole"}}`
	if string(b) != want || o.ID != testRoleGUID {
		t.Errorf("request from a file\n%s\nwant\n%s", b, want)
	}
}

func TestRoleAssignmentFilter(t *testing.T) {
	for _, tt := range []struct {
		o    roleAssignmentListOptions
		want string
	}{
		{roleAssignmentListOptions{Scope: "/"}, ""},
		{roleAssignmentListOptions{Scope: "/keys", AtScope: true}, "atScope()"},
		{roleAssignmentListOptions{Scope: "/keys/k1", Principal: testOID}, "principalId eq '" + testOID + "'"},
		{roleAssignmentListOptions{Scope: "/", Principal: testOID, AtScope: true}, "atScope() and principalId eq '" + testOID + "'"},
	} {
		if err := tt.o.validate(); err != nil {
			t.Fatal(err)
		}
		if got := deref(tt.o.filter); got != tt.want || string(tt.o.scope) != tt.o.Scope {
			t.Errorf("%+v: $filter %q, want %q", tt.o, got, tt.want)
		}
	}
}

// testRoleDefinition is the built-in Crypto User role, shortened, as the pool returns it.
func testRoleDefinition() *rbac.RoleDefinition {
	actions := []*rbac.DataAction{to.Ptr(rbac.DataActionReadHsmKey), to.Ptr(rbac.DataActionSignHsmKey)}
	return &rbac.RoleDefinition{ID: to.Ptr("Microsoft.KeyVault/providers/Microsoft.Authorization/roleDefinitions/" + testRoleGUID),
		Name: to.Ptr(testRoleGUID), Type: to.Ptr(rbac.RoleDefinitionTypeMicrosoftAuthorizationRoleDefinitions),
		Properties: &rbac.RoleDefinitionProperties{RoleName: to.Ptr("Managed HSM Crypto User"), Description: to.Ptr(""),
			RoleType: to.Ptr(rbac.RoleTypeBuiltInRole), AssignableScopes: []*rbac.RoleScope{to.Ptr(rbac.RoleScopeGlobal)},
			Permissions: []*rbac.Permission{{DataActions: actions, NotDataActions: []*rbac.DataAction{to.Ptr(rbac.DataActionExportHsmKey)}}}}}
}

func TestPrintRoleDefinition(t *testing.T) {
	var b bytes.Buffer
	if err := printRoleDefinition(&b, testRoleDefinition()); err != nil {
		t.Fatal(err)
	}
	want := `guid:             21dbd100-6940-42c2-9190-5d6cb909625b
role name:        Managed HSM Crypto User
type:             AKVBuiltInRole
scopes:           /
data actions:     keys/read/action
                  keys/sign/action
not data actions: keys/export/action
id:               Microsoft.KeyVault/providers/Microsoft.Authorization/roleDefinitions/21dbd100-6940-42c2-9190-5d6cb909625b
`
	if b.String() != want {
		t.Errorf("printRoleDefinition:\n%s\nwant\n%s", b.String(), want)
	}

	b.Reset()
	custom := &rbac.RoleDefinition{Name: to.Ptr("0f3c8e2a-4b5d-4e6f-8a9b-1c2d3e4f5a6b"), Properties: &rbac.RoleDefinitionProperties{
		RoleName: to.Ptr("Key Signer"), RoleType: to.Ptr(rbac.RoleTypeCustomRole)}}
	if err := printRoleDefinitionRows(&b, []*rbac.RoleDefinition{testRoleDefinition(), custom, {}}); err != nil {
		t.Fatal(err)
	}
	want = `GUID                                  TYPE            DATA ACTIONS  ROLE NAME
21dbd100-6940-42c2-9190-5d6cb909625b  AKVBuiltInRole  2             Managed HSM Crypto User
0f3c8e2a-4b5d-4e6f-8a9b-1c2d3e4f5a6b  CustomRole      0             Key Signer
                                                      0             
`
	if b.String() != want {
		t.Errorf("printRoleDefinitionRows:\n%q\nwant\n%q", b.String(), want)
	}
}

func TestPrintRoleAssignment(t *testing.T) {
	a := &rbac.RoleAssignment{ID: to.Ptr("/keys/k1/providers/Microsoft.Authorization/roleAssignments/" + testAsgGUID), Name: to.Ptr(testAsgGUID),
		Properties: &rbac.RoleAssignmentPropertiesWithScope{Scope: to.Ptr(rbac.RoleScope("/keys/k1")), PrincipalID: to.Ptr(testOID),
			RoleDefinitionID: to.Ptr("Microsoft.KeyVault/providers/Microsoft.Authorization/roleDefinitions/" + strings.ToUpper(testRoleGUID))}}
	names := map[string]string{testRoleGUID: "Managed HSM Crypto User"}
	var b bytes.Buffer
	if err := printRoleAssignment(&b, a, names); err != nil {
		t.Fatal(err)
	}
	want := `guid:            7a8f0b6e-1c2d-4e3f-8a9b-0c1d2e3f4a5b
scope:           /keys/k1
principal:       3f2b8c1e-5a0d-4c5e-9d1a-6b7e8f9a0b1c
role:            Managed HSM Crypto User
role definition: Microsoft.KeyVault/providers/Microsoft.Authorization/roleDefinitions/21DBD100-6940-42C2-9190-5D6CB909625B
id:              /keys/k1/providers/Microsoft.Authorization/roleAssignments/7a8f0b6e-1c2d-4e3f-8a9b-0c1d2e3f4a5b
`
	if b.String() != want {
		t.Errorf("printRoleAssignment:\n%s\nwant\n%s", b.String(), want)
	}

	b.Reset()
	other := &rbac.RoleAssignment{Name: to.Ptr("a2"), Properties: &rbac.RoleAssignmentPropertiesWithScope{Scope: to.Ptr(rbac.RoleScopeGlobal),
		PrincipalID: to.Ptr("p2"), RoleDefinitionID: to.Ptr("/providers/Microsoft.Authorization/roleDefinitions/unknown-guid")}}
	if err := printRoleAssignmentRows(&b, []*rbac.RoleAssignment{a, other}, names); err != nil {
		t.Fatal(err)
	}
	want = `GUID                                  SCOPE     PRINCIPAL                             ROLE
7a8f0b6e-1c2d-4e3f-8a9b-0c1d2e3f4a5b  /keys/k1  3f2b8c1e-5a0d-4c5e-9d1a-6b7e8f9a0b1c  Managed HSM Crypto User
a2                                    /         p2                                    unknown-guid
`
	if b.String() != want {
		t.Errorf("printRoleAssignmentRows:\n%s\nwant\n%s", b.String(), want)
	}
}
