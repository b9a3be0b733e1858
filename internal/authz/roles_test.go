package authz

import (
	"flag"
	"os"
	"slices"
	"strings"
	"testing"

	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

var update = flag.Bool("update", false, "rewrite the generated tables of docs/authz.md")

// grants is the golden table of what each built-in role grants (spec/azure-mhsm-api.md §5.2: the
// live 2021 list, keys/rotate/action for Crypto User, Managed HSM Restore from the documentation).
// TestBuiltInGrants checks every role against every action, so a change to builtin.go must change
// this table too. Note what is absent: Administrator has no key action at all, Crypto Officer
// cannot read, create or use live keys, Crypto User cannot see, recover or purge deleted keys.
var grants = []struct {
	role    string
	actions []Action
}{
	{"Managed HSM Administrator", []Action{
		RoleAssignmentsDelete, RoleAssignmentsRead, RoleAssignmentsWrite,
		RoleDefinitionsRead, RoleDefinitionsWrite, RoleDefinitionsDelete,
		SecurityDomainDownload, SecurityDomainDownloadRead, SecurityDomainUpload, SecurityDomainUploadRead,
		SecurityDomainTransferKeyRead, BackupStart, RestoreStart, BackupStatus, RestoreStatus,
	}},
	{"Managed HSM Crypto Officer", []Action{
		RoleAssignmentsDelete, RoleAssignmentsRead, RoleAssignmentsWrite,
		RoleDefinitionsRead, RoleDefinitionsWrite, RoleDefinitionsDelete,
		DeletedKeysRead, DeletedKeysDelete, DeletedKeysRecover, KeysExport,
	}},
	{"Managed HSM Crypto User", []Action{
		RoleDefinitionsRead, RoleAssignmentsRead,
		KeysRead, KeysWrite, KeysDelete, KeysCreate, KeysImport, KeysRelease, KeysBackup, KeysRestore,
		KeysEncrypt, KeysDecrypt, KeysWrap, KeysUnwrap, KeysSign, KeysVerify, RNG, KeysRotate,
	}},
	{"Managed HSM Policy Administrator", []Action{
		RoleDefinitionsRead, RoleDefinitionsWrite, RoleDefinitionsDelete,
		RoleAssignmentsRead, RoleAssignmentsWrite, RoleAssignmentsDelete,
	}},
	{"Managed HSM Crypto Auditor", []Action{RoleAssignmentsRead, RoleDefinitionsRead, KeysRead, DeletedKeysRead}},
	{"Managed HSM Crypto Service Encryption User", []Action{KeysRead, KeysWrap, KeysUnwrap}},
	{"Managed HSM Crypto Service Release User", []Action{KeysRelease}},
	{"Managed HSM Backup User", []Action{BackupStart, BackupStatus, KeysBackup}},
	{"Managed HSM Restore", []Action{KeysRestore, RestoreStart, RestoreStatus}},
}

func TestBuiltInGrants(t *testing.T) {
	roles := BuiltInRoles()
	if len(roles) != len(grants) {
		t.Fatalf("%d built-in roles, %d in the golden table", len(roles), len(grants))
	}
	for i, r := range roles {
		g := grants[i]
		if r.RoleName != g.role {
			t.Fatalf("built-in role %d is %q, the golden table has %q", i, r.RoleName, g.role)
		}
		if byID, ok := BuiltInRole(r.Name); !ok || byID != r || r.RoleType != BuiltInType {
			t.Errorf("%s: BuiltInRole(%q) = %v, %v", g.role, r.Name, byID, ok)
		}
		// Every data action of the definition is known: nothing is silently dropped.
		for _, p := range r.Permissions {
			for _, s := range p.DataActions {
				if _, ok := ParseAction(s); !ok {
					t.Errorf("%s: unknown data action %q", g.role, s)
				}
			}
		}
		for _, a := range Actions() {
			for _, scope := range []string{"/", "/keys", "/keys/k1"} {
				err := Check(nil, []*pb.RoleAssignment{{Scope: "/", RoleDefinitionId: r.Name}}, a, scope)
				if want := slices.Contains(g.actions, a); (err == nil) != want {
					t.Errorf("%s at /: %s at %s: allowed %v, want %v", g.role, a, scope, err == nil, want)
				}
			}
		}
	}
}

// roleAbbrev are the column heads of the method matrix.
var roleAbbrev = map[string]string{
	"Managed HSM Administrator":                  "Admin",
	"Managed HSM Crypto Officer":                 "Officer",
	"Managed HSM Crypto User":                    "User",
	"Managed HSM Policy Administrator":           "Policy",
	"Managed HSM Crypto Auditor":                 "Auditor",
	"Managed HSM Crypto Service Encryption User": "Encryption",
	"Managed HSM Crypto Service Release User":    "Release",
	"Managed HSM Backup User":                    "Backup",
	"Managed HSM Restore":                        "Restore",
}

// methodMatrix is the table of docs/authz.md that says which built-in role, assigned at "/", may
// call which method: the expectation of the real-stack matrix test.
func methodMatrix() string {
	var b strings.Builder
	b.WriteString("| Method |")
	for _, r := range BuiltInRoles() {
		b.WriteString(" " + roleAbbrev[r.RoleName] + " |")
	}
	b.WriteString("\n|---|")
	for range BuiltInRoles() {
		b.WriteString(":-:|")
	}
	b.WriteString("\n")
	for _, rule := range Rules() {
		b.WriteString("| " + strings.TrimPrefix(rule.Method, "/hsmpool.v1.") + " |")
		for _, r := range BuiltInRoles() {
			cell := ""
			switch {
			case rule.Public():
				cell = "public"
			case Compile(r).Has(rule.Action):
				cell = "✓"
			}
			b.WriteString(" " + cell + " |")
		}
		b.WriteString("\n")
	}
	return b.String()
}

// actionTable is the table of docs/authz.md from method to data action and scope.
func actionTable() string {
	var b strings.Builder
	b.WriteString("| Method | Data action (after `" + ActionPrefix + "`) | Scope |\n|---|---|---|\n")
	for _, r := range Rules() {
		action, scope := "none: public", "—"
		if !r.Public() {
			action, scope = "`"+strings.TrimPrefix(r.Action.String(), ActionPrefix)+"`", "`"+r.ScopeKind()+"`"
		}
		b.WriteString("| " + strings.TrimPrefix(r.Method, "/hsmpool.v1.") + " | " + action + " | " + scope + " |\n")
	}
	return b.String()
}

// TestDocTables keeps the generated tables of docs/authz.md in step with the code; go test
// -run TestDocTables -update rewrites them.
func TestDocTables(t *testing.T) {
	const path = "../../docs/authz.md"
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	for _, gen := range []struct{ name, table string }{{"actions", actionTable()}, {"matrix", methodMatrix()}} {
		begin, end := "<!-- begin generated "+gen.name+" -->\n", "<!-- end generated "+gen.name+" -->"
		i, j := strings.Index(doc, begin), strings.Index(doc, end)
		if i < 0 || j < i {
			t.Fatalf("%s has no %q ... %q section", path, begin, end)
		}
		if got := doc[i+len(begin) : j]; got != gen.table {
			if *update {
				doc = doc[:i+len(begin)] + gen.table + doc[j:]
				continue
			}
			t.Errorf("the %s table of %s is out of date (go test ./internal/authz -run TestDocTables -update); want\n%s", gen.name, path, gen.table)
		}
	}
	if *update {
		if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
