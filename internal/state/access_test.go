package state

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/hsmpool/hsmpool/internal/authz"
	"github.com/hsmpool/hsmpool/internal/fault"
	"github.com/hsmpool/hsmpool/internal/rpcerr"
	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

// adminAssignmentID is the migrated Administrator assignment of admin(): the derivation is an
// on-disk format (a node that restores a snapshot must name it as one that replays InitPool did),
// so the test pins its output.
const adminAssignmentID = "d1b72d7f-ac9c-83cd-a7ed-c717ce9b1fec"

// rootAdmin is the Administrator assignment that InitPool makes for admin().
func rootAdmin() *pb.RoleAssignment {
	return &pb.RoleAssignment{Name: adminAssignmentID, Scope: "/", RoleDefinitionId: authz.AdministratorRoleID, PrincipalId: admin().ObjectId}
}

// guid returns a lowercase GUID made from n; prefix tells role, assignment and principal GUIDs
// apart in failure messages.
func guid(prefix string, n int) string { return fmt.Sprintf("%08s-0000-4000-8000-%012d", prefix, n) }

func roleID(n int) string       { return guid("7e", n) }
func assignmentID(n int) string { return guid("a", n) }
func objectID(n int) string     { return guid("0b", n) }
func clientID(n int) string     { return guid("c1", n) }

func customRole(n int, scopes ...string) *pb.RoleDefinition {
	return &pb.RoleDefinition{
		Name: roleID(n), RoleName: fmt.Sprintf("Key reader %d", n), Description: "reads keys",
		Permissions:      []*pb.Permission{{DataActions: []string{authz.ActionPrefix + "keys/read/action"}}},
		AssignableScopes: scopes,
	}
}

func putRole(d *pb.RoleDefinition) *pb.Command {
	return cmdAt(t0+2, &pb.PutRoleDefinition{Definition: d})
}

func deleteRole(name string) *pb.Command {
	return cmdAt(t0+2, &pb.DeleteRoleDefinition{Name: name})
}

func assignment(n int, scope, role, principal string) *pb.RoleAssignment {
	return &pb.RoleAssignment{Name: assignmentID(n), Scope: scope, RoleDefinitionId: role, PrincipalId: principal}
}

func assign(n int, scope, role, principal string) *pb.Command {
	return cmdAt(t0+3, &pb.PutRoleAssignment{Assignment: assignment(n, scope, role, principal)})
}

func unassign(name string) *pb.Command {
	return cmdAt(t0+3, &pb.DeleteRoleAssignment{Name: name})
}

func secret(id string) *pb.SecretRecord {
	return &pb.SecretRecord{Id: id, Hash: bytes.Repeat([]byte{5}, 32), Expires: t0 + 365*day}
}

// testCert is a self-signed certificate, made once.
var testCert = sync.OnceValue(func() []byte {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "app"},
		NotBefore: time.Unix(t0, 0), NotAfter: time.Unix(t0+365*day, 0)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		panic(err)
	}
	return der
})

func cert(id string) *pb.CertificateRecord { return &pb.CertificateRecord{Id: id, Der: testCert()} }

func principal(n int, creds ...any) *pb.PrincipalRecord {
	p := &pb.PrincipalRecord{ObjectId: objectID(n), ClientId: clientID(n), DisplayName: fmt.Sprintf("app %d", n)}
	for _, c := range creds {
		switch c := c.(type) {
		case *pb.SecretRecord:
			p.Secrets = append(p.Secrets, c)
		case *pb.CertificateRecord:
			p.Certificates = append(p.Certificates, c)
		}
	}
	return p
}

func putPrincipal(p *pb.PrincipalRecord) *pb.Command {
	return cmdAt(t0+4, &pb.PutPrincipal{Principal: p})
}

func deletePrincipal(oid string) *pb.Command {
	return cmdAt(t0+4, &pb.DeletePrincipal{ObjectId: oid})
}

func addSecret(oid string, c *pb.SecretRecord) *pb.Command {
	return cmdAt(t0+5, &pb.AddCredential{ObjectId: oid, Credential: &pb.AddCredential_Secret{Secret: c}})
}

func addCert(oid string, c *pb.CertificateRecord) *pb.Command {
	return cmdAt(t0+5, &pb.AddCredential{ObjectId: oid, Credential: &pb.AddCredential_Certificate{Certificate: c}})
}

func removeCredential(oid, id string) *pb.Command {
	return cmdAt(t0+5, &pb.RemoveCredential{ObjectId: oid, CredentialId: id})
}

func roleNotFound(name string) *rpcerr.Error {
	return &rpcerr.Error{Kind: fault.NotFound, Code: "RoleDefinitionNotFound", Msg: "the role definition " + name + " does not exist"}
}

func assignmentNotFound(name string) *rpcerr.Error {
	return &rpcerr.Error{Kind: fault.NotFound, Code: "RoleAssignmentNotFound", Msg: "the role assignment " + name + " does not exist"}
}

func assignmentExists(msg string) *rpcerr.Error {
	return &rpcerr.Error{Kind: fault.Conflict, Code: "Conflict", Inner: "RoleAssignmentExists", Msg: msg}
}

func principalNotFound(oid string) *rpcerr.Error {
	return &rpcerr.Error{Kind: fault.NotFound, Code: "NotFound", Msg: "the principal " + oid + " does not exist"}
}

func limit(inner, msg string) *rpcerr.Error {
	return &rpcerr.Error{Kind: fault.BadParameter, Code: "BadParameter", Inner: inner, Msg: msg}
}

func newState(testing.TB) *State { return New() }

// many returns n commands made by f from 1..n.
func many(n int, f func(i int) *pb.Command) []*pb.Command {
	var cmds []*pb.Command
	for i := 1; i <= n; i++ {
		cmds = append(cmds, f(i))
	}
	return cmds
}

func TestApplyPutRoleDefinition(t *testing.T) {
	withType := customRole(1, "/keys")
	withType.RoleType = authz.CustomType
	builtInType := customRole(1)
	builtInType.RoleType = authz.BuiltInType
	named := func(name string) *pb.RoleDefinition {
		d := customRole(1)
		d.RoleName = name
		return d
	}
	scoped := func(scopes ...string) *pb.RoleDefinition { return customRole(1, scopes...) }
	noPerms := customRole(1)
	noPerms.Permissions = nil
	renamed := customRole(1)
	renamed.RoleName = "KEY READER 1"
	renamed.Description = "new"
	taken := customRole(2)
	taken.RoleName = "key reader 1"
	upper := customRole(1)
	upper.Name = strings.ToUpper(upper.Name)
	builtIn := customRole(1)
	builtIn.Name = authz.CryptoUserRoleID

	runApplyCases(t, []applyCase{
		{
			name: "ok", cmd: putRole(customRole(1)),
			check: func(t *testing.T, s *State) {
				want := customRole(1, "/")
				want.RoleType = authz.CustomType
				got, ok := s.RoleDefinition(roleID(1))
				if !ok || !proto.Equal(got, want) {
					t.Errorf("RoleDefinition = %v, %t; want %v", got, ok, want)
				}
				all := s.RoleDefinitions()
				builtIns := authz.BuiltInRoles()
				if len(all) != len(builtIns)+1 || all[len(all)-1] != got || all[0] != builtIns[0] {
					t.Errorf("RoleDefinitions() = %v", all)
				}
			},
		},
		{name: "ok, without an activated pool", from: withPool, cmd: putRole(customRole(1))},
		{name: "ok, CustomRole type, at /keys", cmd: putRole(withType)},
		{name: "ok, both scopes", cmd: putRole(scoped("/keys", "/"))},
		{name: "ok, 512 characters", cmd: putRole(named(strings.Repeat("é", 512)))},
		{
			name: "ok, replaced with its assignments", setup: []*pb.Command{putRole(customRole(1)), assign(1, "/keys/k", roleID(1), objectID(1))},
			cmd: putRole(renamed),
			check: func(t *testing.T, s *State) {
				if d, _ := s.RoleDefinition(roleID(1)); d.Description != "new" || d.RoleName != "KEY READER 1" {
					t.Errorf("RoleDefinition = %v", d)
				}
				if _, ok := s.RoleAssignment(assignmentID(1)); !ok {
					t.Error("the replaced role lost its assignment")
				}
			},
		},
		{name: "ok, the 50th", setup: many(49, func(i int) *pb.Command { return putRole(customRole(i)) }), cmd: putRole(customRole(50))},
		{name: "ok, replaced at the limit", setup: many(50, func(i int) *pb.Command { return putRole(customRole(i)) }), cmd: putRole(renamed)},
		{name: "before InitPool", from: newState, cmd: putRole(customRole(1)), want: notInitialized},
		{name: "nil operation", cmd: &pb.Command{Op: &pb.Command_PutRoleDefinition{}}, want: badParameter(`the role definition name "" is not a lowercase GUID`)},
		{name: "upper-case name", cmd: putRole(upper), want: badParameter(`the role definition name "` + upper.Name + `" is not a lowercase GUID`)},
		{name: "built-in ID", cmd: putRole(builtIn), want: badParameter("Cannot re-use the name/GUID matching that of a built-in role. Please use a unique role ID.")},
		{name: "no role name", cmd: putRole(named("")), want: badParameter("the role definition " + roleID(1) + " has no role name")},
		{name: "blank role name", cmd: putRole(named(" \t")), want: badParameter("the role definition " + roleID(1) + " has no role name")},
		{name: "513 characters", cmd: putRole(named(strings.Repeat("x", 513))), want: badParameter("the role name of role definition " + roleID(1) + " has 513 characters; the most is 512")},
		{name: "a built-in role's name", cmd: putRole(named("managed HSM crypto USER")), want: badParameter(`the role name "Managed HSM Crypto User" is a built-in role's`)},
		{name: "another role's name", setup: []*pb.Command{putRole(customRole(1))}, cmd: putRole(taken), want: conflict(`the role name "Key reader 1" is taken by role definition ` + roleID(1))},
		{name: "built-in type", cmd: putRole(builtInType), want: badParameter("the role type of role definition " + roleID(1) + ` must be CustomRole, not "AKVBuiltInRole"`)},
		{name: "scope /keys/k", cmd: putRole(scoped("/keys/k")), want: badParameter(`the assignable scope "/keys/k" of role definition ` + roleID(1) + ` is not "/" or "/keys"`)},
		{name: "empty scope", cmd: putRole(scoped("")), want: badParameter(`the assignable scope "" of role definition ` + roleID(1) + ` is not "/" or "/keys"`)},
		{name: "scope twice", cmd: putRole(scoped("/keys", "/keys")), want: badParameter(`the assignable scope "/keys" of role definition ` + roleID(1) + " appears twice")},
		{name: "no permissions", cmd: putRole(noPerms), want: badParameter("the role definition " + roleID(1) + " has no permissions")},
		{
			name: "the 51st", setup: many(50, func(i int) *pb.Command { return putRole(customRole(i)) }), cmd: putRole(customRole(51)),
			want: limit("RoleDefinitionLimitExceeded", "the pool has the maximum of 50 custom role definitions"),
		},
		{
			name: "replaced with scopes that leave out an assignment", setup: []*pb.Command{putRole(customRole(1)), assign(1, "/", roleID(1), objectID(1))},
			cmd:  putRole(customRole(1, "/keys")),
			want: conflict("role definition " + roleID(1) + " is assigned at scope / (role assignment " + assignmentID(1) + "), which its new assignable scopes do not cover"),
		},
	})
}

func TestRoleDefinitionReplacedIsANewPointer(t *testing.T) {
	s := newActive(t)
	mustApply(t, s, putRole(customRole(1)), putRole(customRole(2)))
	d1, _ := s.RoleDefinition(roleID(1))
	d2, _ := s.RoleDefinition(roleID(2))
	r := customRole(1)
	r.Description = "changed"
	mustApply(t, s, putRole(r))
	n1, _ := s.RoleDefinition(roleID(1))
	n2, _ := s.RoleDefinition(roleID(2))
	if n1 == d1 || d1.Description != "reads keys" {
		t.Error("a replaced role kept its pointer, or the old record changed")
	}
	if n2 != d2 {
		t.Error("an unchanged role got a new pointer (authz caches by pointer)")
	}
	if d, ok := s.RoleDefinition(strings.ToUpper(authz.AdministratorRoleID)); !ok || d.RoleType != authz.BuiltInType {
		t.Errorf("RoleDefinition(built-in, upper case) = %v, %t", d, ok)
	}
	if _, ok := s.RoleDefinition(roleID(3)); ok {
		t.Error("RoleDefinition found a role that does not exist")
	}
}

func TestApplyDeleteRoleDefinition(t *testing.T) {
	runApplyCases(t, []applyCase{
		{
			name: "ok", setup: []*pb.Command{putRole(customRole(1)), putRole(customRole(2))}, cmd: deleteRole(roleID(1)),
			check: func(t *testing.T, s *State) {
				if _, ok := s.RoleDefinition(roleID(1)); ok {
					t.Error("the role is still there")
				}
				if _, ok := s.RoleDefinition(roleID(2)); !ok {
					t.Error("the other role went too")
				}
			},
		},
		{name: "ok, after its assignment", setup: []*pb.Command{putRole(customRole(1)), assign(1, "/", roleID(1), objectID(1)), unassign(assignmentID(1))}, cmd: deleteRole(roleID(1))},
		{name: "before InitPool", from: newState, cmd: deleteRole(roleID(1)), want: notInitialized},
		{name: "unknown", setup: []*pb.Command{putRole(customRole(1))}, cmd: deleteRole(roleID(2)), want: roleNotFound(roleID(2))},
		{name: "nil operation", cmd: &pb.Command{Op: &pb.Command_DeleteRoleDefinition{}}, want: roleNotFound("")},
		{name: "built-in", cmd: deleteRole(authz.CryptoUserRoleID), want: badParameter("role definition " + authz.CryptoUserRoleID + " is a built-in role, which cannot be deleted")},
		{
			name: "in use", setup: []*pb.Command{putRole(customRole(1)), assign(1, "/", roleID(1), objectID(1)), assign(2, "/keys/k", roleID(1), objectID(2))},
			cmd: deleteRole(roleID(1)), want: conflict("role definition " + roleID(1) + " is used by 2 role assignments; delete them first"),
		},
	})
}

func TestApplyPutRoleAssignment(t *testing.T) {
	key127 := "/keys/" + strings.Repeat("k", 127)
	upperName := assignment(1, "/", authz.CryptoUserRoleID, objectID(1))
	upperName.Name = strings.ToUpper(upperName.Name)
	scopeErr := func(scope string) *rpcerr.Error {
		return badParameter(fmt.Sprintf("the scope %q is not /, /keys or /keys/<key name>", scope))
	}
	atRoot := func(i int) *pb.Command {
		scope := "/"
		if i%2 == 0 {
			scope = "/keys"
		}
		return assign(100+i, scope, authz.CryptoUserRoleID, objectID(i))
	}
	atKey := func(i int) *pb.Command { return assign(200+i, "/keys/k", authz.CryptoUserRoleID, objectID(i)) }

	runApplyCases(t, []applyCase{
		{
			name: "ok", cmd: assign(1, "/", authz.CryptoUserRoleID, objectID(1)),
			check: func(t *testing.T, s *State) {
				want := assignment(1, "/", authz.CryptoUserRoleID, objectID(1))
				if got, ok := s.RoleAssignment(assignmentID(1)); !ok || !proto.Equal(got, want) {
					t.Errorf("RoleAssignment = %v, %t", got, ok)
				}
				if got := s.AssignmentsOf(strings.ToUpper(objectID(1))); len(got) != 1 || !proto.Equal(got[0], want) {
					t.Errorf("AssignmentsOf = %v", got)
				}
				if got := s.RoleAssignments(); len(got) != 2 || got[0].Name != assignmentID(1) || got[1].Name != adminAssignmentID {
					t.Errorf("RoleAssignments() = %v", got)
				}
			},
		},
		{name: "ok, without an activated pool", from: withPool, cmd: assign(1, "/", authz.CryptoUserRoleID, objectID(1))},
		{name: "ok, /keys", cmd: assign(1, "/keys", authz.CryptoUserRoleID, objectID(1))},
		{name: "ok, a key", cmd: assign(1, "/keys/my-Key-1", authz.CryptoUserRoleID, objectID(1))},
		{name: "ok, a key of 127 characters", cmd: assign(1, key127, authz.CryptoUserRoleID, objectID(1))},
		{name: "ok, upper-case principal", cmd: assign(1, "/", authz.CryptoUserRoleID, strings.ToUpper(objectID(1)))},
		{name: "ok, a principal the pool does not know", cmd: assign(1, "/", authz.AdministratorRoleID, "11111111-2222-4333-8444-555555555555")},
		{name: "ok, a custom role", setup: []*pb.Command{putRole(customRole(1))}, cmd: assign(1, "/keys/k", roleID(1), objectID(1))},
		{name: "ok, a /keys role at a key", setup: []*pb.Command{putRole(customRole(1, "/keys"))}, cmd: assign(1, "/keys/k", roleID(1), objectID(1))},
		{name: "ok, a /keys role at /keys", setup: []*pb.Command{putRole(customRole(1, "/keys"))}, cmd: assign(1, "/keys", roleID(1), objectID(1))},
		{name: "ok, same principal and role, other scope", setup: []*pb.Command{assign(1, "/", authz.CryptoUserRoleID, objectID(1))}, cmd: assign(2, "/keys", authz.CryptoUserRoleID, objectID(1))},
		{name: "ok, same principal and scope, other role", setup: []*pb.Command{assign(1, "/", authz.CryptoUserRoleID, objectID(1))}, cmd: assign(2, "/", authz.CryptoOfficerRoleID, objectID(1))},
		{name: "ok, the 50th at / and /keys", setup: many(48, atRoot), cmd: atRoot(49)},
		{name: "ok, a key when / and /keys are full", setup: many(49, atRoot), cmd: atKey(1)},
		{name: "ok, the 10th at a key", setup: many(9, atKey), cmd: atKey(10)},
		{name: "ok, another key when one is full", setup: many(10, atKey), cmd: assign(1, "/keys/other", authz.CryptoUserRoleID, objectID(1))},
		{name: "before InitPool", from: newState, cmd: assign(1, "/", authz.CryptoUserRoleID, objectID(1)), want: notInitialized},
		{name: "nil operation", cmd: &pb.Command{Op: &pb.Command_PutRoleAssignment{}}, want: badParameter(`the role assignment name "" is not a lowercase GUID`)},
		{name: "upper-case name", cmd: cmdAt(t0, &pb.PutRoleAssignment{Assignment: upperName}), want: badParameter(`the role assignment name "` + upperName.Name + `" is not a lowercase GUID`)},
		{
			name: "name taken", setup: []*pb.Command{assign(1, "/keys/k", authz.CryptoUserRoleID, objectID(1))}, cmd: assign(1, "/", authz.CryptoUserRoleID, objectID(2)),
			want: assignmentExists("the role assignment " + assignmentID(1) + " already exists"),
		},
		{name: "no scope", cmd: assign(1, "", authz.CryptoUserRoleID, objectID(1)), want: scopeErr("")},
		{name: "scope /keys/", cmd: assign(1, "/keys/", authz.CryptoUserRoleID, objectID(1)), want: scopeErr("/keys/")},
		{name: "scope /keys/a_b", cmd: assign(1, "/keys/a_b", authz.CryptoUserRoleID, objectID(1)), want: scopeErr("/keys/a_b")},
		{name: "scope /keys/a/b", cmd: assign(1, "/keys/a/b", authz.CryptoUserRoleID, objectID(1)), want: scopeErr("/keys/a/b")},
		{name: "scope /secrets", cmd: assign(1, "/secrets", authz.CryptoUserRoleID, objectID(1)), want: scopeErr("/secrets")},
		{name: "scope /keys/k/", cmd: assign(1, "/keys/k/", authz.CryptoUserRoleID, objectID(1)), want: scopeErr("/keys/k/")},
		{name: "a key of 128 characters", cmd: assign(1, key127+"k", authz.CryptoUserRoleID, objectID(1)), want: scopeErr(trunc(key127 + "k"))},
		{name: "principal not a GUID", cmd: assign(1, "/", authz.CryptoUserRoleID, "obj-1"), want: badParameter(`the principal ID "obj-1" of role assignment ` + assignmentID(1) + " is not a GUID")},
		{name: "no principal", cmd: assign(1, "/", authz.CryptoUserRoleID, ""), want: badParameter(`the principal ID "" of role assignment ` + assignmentID(1) + " is not a GUID")},
		{name: "unknown role", cmd: assign(1, "/", roleID(9), objectID(1)), want: roleNotFound(roleID(9))},
		{name: "no role", cmd: assign(1, "/", "", objectID(1)), want: roleNotFound("")},
		{
			name: "a /keys role at /", setup: []*pb.Command{putRole(customRole(1, "/keys"))}, cmd: assign(1, "/", roleID(1), objectID(1)),
			want: badParameter("role definition " + roleID(1) + " cannot be assigned at scope /: its assignable scopes are /keys"),
		},
		{
			name: "twice", setup: []*pb.Command{assign(1, "/keys/k", authz.CryptoUserRoleID, objectID(1))}, cmd: assign(2, "/keys/k", authz.CryptoUserRoleID, strings.ToUpper(objectID(1))),
			want: assignmentExists("role assignment " + assignmentID(1) + " already grants role " + authz.CryptoUserRoleID + " to principal " + objectID(1) + " at scope /keys/k"),
		},
		{
			name: "the 51st at / and /keys", setup: many(49, atRoot), cmd: atRoot(50),
			want: limit("RoleAssignmentLimitExceeded", "scopes / and /keys have the maximum of 50 role assignments together"),
		},
		{
			name: "the 11th at a key", setup: many(10, atKey), cmd: atKey(11),
			want: limit("RoleAssignmentLimitExceeded", "scope /keys/k has the maximum of 10 role assignments"),
		},
	})
}

func TestApplyDeleteRoleAssignment(t *testing.T) {
	secondAdmin := assign(1, "/", authz.AdministratorRoleID, objectID(1))
	lastAdmin := conflict("the pool would have no administrator: role assignment " + adminAssignmentID + " is the last Managed HSM Administrator assignment at scope /")
	runApplyCases(t, []applyCase{
		{
			name: "ok", setup: []*pb.Command{assign(1, "/", authz.CryptoUserRoleID, objectID(1)), assign(2, "/keys", authz.CryptoUserRoleID, objectID(1))},
			cmd: unassign(assignmentID(1)),
			check: func(t *testing.T, s *State) {
				if _, ok := s.RoleAssignment(assignmentID(1)); ok {
					t.Error("the assignment is still there")
				}
				if got := s.AssignmentsOf(objectID(1)); len(got) != 1 || got[0].Name != assignmentID(2) {
					t.Errorf("AssignmentsOf = %v", got)
				}
			},
		},
		{
			name: "ok, the principal's last", setup: []*pb.Command{assign(1, "/", authz.CryptoUserRoleID, objectID(1))}, cmd: unassign(assignmentID(1)),
			check: func(t *testing.T, s *State) {
				if got := s.AssignmentsOf(objectID(1)); got != nil {
					t.Errorf("AssignmentsOf = %v, want nil", got)
				}
			},
		},
		{name: "ok, an administrator when another is left", setup: []*pb.Command{secondAdmin}, cmd: unassign(adminAssignmentID)},
		{name: "ok, the other administrator", setup: []*pb.Command{secondAdmin}, cmd: unassign(assignmentID(1))},
		{name: "ok, Administrator at /keys", setup: []*pb.Command{assign(1, "/keys", authz.AdministratorRoleID, objectID(1))}, cmd: unassign(assignmentID(1))},
		{name: "ok, a pool without administrators", from: func(tb testing.TB) *State {
			s := New()
			mustApply(tb, s, cmdAt(t0, &pb.InitPool{Name: "p", RecoverableDays: 7}), assign(1, "/", authz.CryptoUserRoleID, objectID(1)))
			return s
		}, cmd: unassign(assignmentID(1))},
		{name: "before InitPool", from: newState, cmd: unassign(assignmentID(1)), want: notInitialized},
		{name: "unknown", cmd: unassign(assignmentID(1)), want: assignmentNotFound(assignmentID(1))},
		{name: "nil operation", cmd: &pb.Command{Op: &pb.Command_DeleteRoleAssignment{}}, want: assignmentNotFound("")},
		{name: "the last administrator", cmd: unassign(adminAssignmentID), want: lastAdmin},
		{
			name: "the last administrator at /, with one at /keys", setup: []*pb.Command{assign(1, "/keys", authz.AdministratorRoleID, objectID(1))},
			cmd: unassign(adminAssignmentID), want: lastAdmin,
		},
	})
}

func TestApplyPutPrincipal(t *testing.T) {
	p := principal(1, secret("s1"), cert("c1"))
	withCreated := principal(1, &pb.SecretRecord{Id: "s1", Hash: bytes.Repeat([]byte{5}, 32), Created: 7})
	withCreated.Created = 5
	with := func(f func(*pb.PrincipalRecord)) *pb.PrincipalRecord {
		p := principal(1)
		f(p)
		return p
	}
	bad := func(msg string) *rpcerr.Error { return badParameter(msg) }
	o1 := objectID(1)
	var twenty []any
	for i := range 10 {
		twenty = append(twenty, secret(fmt.Sprint("s", i)), cert(fmt.Sprint("c", i)))
	}

	runApplyCases(t, []applyCase{
		{
			name: "ok", cmd: putPrincipal(p),
			check: func(t *testing.T, s *State) {
				got, ok := s.Principal(strings.ToUpper(o1))
				if !ok || got.DisplayName != "app 1" || got.Created != t0+4 || len(got.Secrets) != 1 || got.Secrets[0].Created != t0+4 ||
					len(got.Certificates) != 1 || got.Certificates[0].Created != t0+4 || !bytes.Equal(got.Certificates[0].Der, testCert()) {
					t.Errorf("Principal = %v, %t", got, ok)
				}
				if c, ok := s.PrincipalByClientID(clientID(1)); !ok || c != got {
					t.Errorf("PrincipalByClientID = %v, %t", c, ok)
				}
				if ps := s.Principals(); len(ps) != 2 || ps[0].DisplayName != "admin" || ps[1] != got {
					t.Errorf("Principals() = %v", ps)
				}
			},
		},
		{
			name: "ok, times kept", cmd: putPrincipal(withCreated),
			check: func(t *testing.T, s *State) {
				if got, _ := s.Principal(o1); got.Created != 5 || got.Secrets[0].Created != 7 {
					t.Errorf("Principal = %v", got)
				}
			},
		},
		{name: "ok, no credentials", cmd: putPrincipal(principal(1))},
		{name: "ok, 20 credentials", cmd: putPrincipal(principal(1, twenty...))},
		{name: "ok, upper-case IDs", cmd: putPrincipal(with(func(p *pb.PrincipalRecord) {
			p.ObjectId, p.ClientId = strings.ToUpper(p.ObjectId), strings.ToUpper(p.ClientId)
		}))},
		{name: "ok, 256 characters", cmd: putPrincipal(with(func(p *pb.PrincipalRecord) { p.DisplayName = strings.Repeat("ü", 256) }))},
		{name: "ok, the 1000th", setup: many(998, func(i int) *pb.Command { return putPrincipal(principal(i + 1)) }), cmd: putPrincipal(principal(1000))},
		{name: "before InitPool", from: newState, cmd: putPrincipal(p), want: notInitialized},
		{name: "nil operation", cmd: &pb.Command{Op: &pb.Command_PutPrincipal{}}, want: bad(`the principal's object ID "" is not a GUID`)},
		{name: "object ID not a GUID", cmd: putPrincipal(with(func(p *pb.PrincipalRecord) { p.ObjectId = "obj-1" })), want: bad(`the principal's object ID "obj-1" is not a GUID`)},
		{name: "client ID not a GUID", cmd: putPrincipal(with(func(p *pb.PrincipalRecord) { p.ClientId = "{" + p.ClientId + "}" })), want: bad(`the client ID "{` + clientID(1) + `}" of principal ` + o1 + " is not a GUID")},
		{name: "no display name", cmd: putPrincipal(with(func(p *pb.PrincipalRecord) { p.DisplayName = "" })), want: bad("the display name of principal " + o1 + " must have 1 to 256 characters")},
		{name: "257 characters", cmd: putPrincipal(with(func(p *pb.PrincipalRecord) { p.DisplayName = strings.Repeat("x", 257) })), want: bad("the display name of principal " + o1 + " must have 1 to 256 characters")},
		{
			name: "marked administrator", cmd: putPrincipal(with(func(p *pb.PrincipalRecord) { setAdministrator(p, true) })),
			want: bad("principal " + o1 + " is marked administrator, the pre-RBAC mark; assign it a role instead"),
		},
		{
			name: "object ID taken", setup: []*pb.Command{putPrincipal(principal(1))}, cmd: putPrincipal(with(func(p *pb.PrincipalRecord) { p.ObjectId, p.ClientId = strings.ToUpper(p.ObjectId), clientID(2) })),
			want: conflict("the ID " + o1 + " is taken by another principal"),
		},
		{
			name: "client ID taken", setup: []*pb.Command{putPrincipal(principal(1))}, cmd: putPrincipal(with(func(p *pb.PrincipalRecord) { p.ObjectId = objectID(2) })),
			want: conflict("the ID " + clientID(1) + " is taken by another principal"),
		},
		{
			name: "object ID is another's client ID", cmd: putPrincipal(with(func(p *pb.PrincipalRecord) { p.ObjectId = admin().ClientId })),
			want: conflict("the ID " + admin().ClientId + " is taken by another principal"),
		},
		{
			name: "the 1001st", setup: many(999, func(i int) *pb.Command { return putPrincipal(principal(i + 1)) }), cmd: putPrincipal(principal(1001)),
			want: limit("PrincipalLimitExceeded", "the pool has the maximum of 1000 principals"),
		},
		{
			name: "21 credentials", cmd: putPrincipal(principal(1, append(twenty, secret("s-last"))...)),
			want: limit("CredentialLimitExceeded", "principal "+o1+" has 21 credentials; the most is 20"),
		},
		{name: "a credential twice", cmd: putPrincipal(principal(1, secret("x"), cert("x"))), want: bad("principal " + o1 + " has credential x twice")},
		{name: "a secret without ID", cmd: putPrincipal(principal(1, secret(""))), want: bad("a secret of principal " + o1 + " has no ID")},
		{name: "a short hash", cmd: putPrincipal(principal(1, &pb.SecretRecord{Id: "s", Hash: make([]byte, 31)})), want: bad("the hash of secret s of principal " + o1 + " has 31 bytes, not 32")},
		{name: "a nil secret", cmd: putPrincipal(principal(1, (*pb.SecretRecord)(nil))), want: bad("a secret of principal " + o1 + " has no ID")},
		{name: "a certificate without ID", cmd: putPrincipal(principal(1, cert(""))), want: bad("a certificate of principal " + o1 + " has no ID")},
		{
			name: "a certificate that does not parse", cmd: putPrincipal(principal(1, &pb.CertificateRecord{Id: "c", Der: []byte("not DER")})),
			want: bad("certificate c of principal " + o1 + " is not a DER X.509 certificate"),
		},
	})
}

func TestApplyDeletePrincipal(t *testing.T) {
	o1, o2 := objectID(1), objectID(2)
	setup := []*pb.Command{
		putPrincipal(principal(1)), putPrincipal(principal(2)),
		assign(1, "/", authz.CryptoUserRoleID, o1), assign(2, "/keys/k", authz.CryptoUserRoleID, strings.ToUpper(o1)), assign(3, "/", authz.CryptoUserRoleID, o2),
	}
	adminSetup := append(slices.Clone(setup), assign(4, "/", authz.AdministratorRoleID, o1))
	runApplyCases(t, []applyCase{
		{
			name: "ok", setup: setup, cmd: deletePrincipal(strings.ToUpper(o1)),
			check: func(t *testing.T, s *State) {
				if _, ok := s.Principal(o1); ok {
					t.Error("the principal is still there")
				}
				if _, ok := s.PrincipalByClientID(clientID(1)); ok {
					t.Error("the principal is still there by client ID")
				}
				if got := s.AssignmentsOf(o1); got != nil {
					t.Errorf("AssignmentsOf = %v, want nil", got)
				}
				if got := s.RoleAssignments(); len(got) != 2 || got[0].Name != assignmentID(3) || got[1].Name != adminAssignmentID {
					t.Errorf("RoleAssignments() = %v", got)
				}
				if got := s.Principals(); len(got) != 2 {
					t.Errorf("Principals() = %v", got)
				}
			},
		},
		{name: "ok, without assignments", setup: []*pb.Command{putPrincipal(principal(1))}, cmd: deletePrincipal(o1)},
		{name: "ok, an administrator when another is left", setup: adminSetup, cmd: deletePrincipal(o1)},
		{name: "ok, the first administrator when another is left", setup: adminSetup, cmd: deletePrincipal(admin().ObjectId)},
		{name: "before InitPool", from: newState, cmd: deletePrincipal(o1), want: notInitialized},
		{name: "unknown", cmd: deletePrincipal(o1), want: principalNotFound(o1)},
		{name: "by client ID", setup: setup, cmd: deletePrincipal(clientID(1)), want: principalNotFound(clientID(1))},
		{name: "nil operation", cmd: &pb.Command{Op: &pb.Command_DeletePrincipal{}}, want: principalNotFound("")},
		{
			name: "the last administrator", cmd: deletePrincipal(admin().ObjectId),
			want: conflict("the pool would have no administrator: principal " + admin().ObjectId + " holds the last Managed HSM Administrator assignment at scope /"),
		},
		{
			name: "the last administrator, also at /keys", setup: []*pb.Command{assign(1, "/keys", authz.AdministratorRoleID, strings.ToUpper(admin().ObjectId))}, cmd: deletePrincipal(admin().ObjectId),
			want: conflict("the pool would have no administrator: principal " + admin().ObjectId + " holds the last Managed HSM Administrator assignment at scope /"),
		},
	})
}

func TestApplyAddCredential(t *testing.T) {
	o1 := objectID(1)
	full := many(19, func(i int) *pb.Command { return addSecret(o1, secret(fmt.Sprint("s", i))) })
	runApplyCases(t, []applyCase{
		{
			name: "ok, secret", setup: []*pb.Command{putPrincipal(principal(1, cert("c1")))}, cmd: addSecret(strings.ToUpper(o1), secret("s1")),
			check: func(t *testing.T, s *State) {
				p, _ := s.Principal(o1)
				if len(p.Secrets) != 1 || p.Secrets[0].Id != "s1" || p.Secrets[0].Created != t0+5 || len(p.Certificates) != 1 {
					t.Errorf("Principal = %v", p)
				}
				if c, _ := s.PrincipalByClientID(clientID(1)); c != p {
					t.Error("the client ID index holds the old record")
				}
				if ps := s.Principals(); !slices.Contains(ps, p) {
					t.Error("Principals() holds the old record")
				}
			},
		},
		{
			name: "ok, certificate", setup: []*pb.Command{putPrincipal(principal(1, secret("s1")))}, cmd: addCert(o1, cert("c1")),
			check: func(t *testing.T, s *State) {
				p, _ := s.Principal(o1)
				if len(p.Certificates) != 1 || p.Certificates[0].Id != "c1" || p.Certificates[0].Created != t0+5 || len(p.Secrets) != 1 {
					t.Errorf("Principal = %v", p)
				}
			},
		},
		{name: "ok, to the first administrator", cmd: addSecret(admin().ObjectId, secret("s2"))},
		{name: "ok, the 20th", setup: append([]*pb.Command{putPrincipal(principal(1))}, full...), cmd: addCert(o1, cert("c"))},
		{name: "before InitPool", from: newState, cmd: addSecret(o1, secret("s1")), want: notInitialized},
		{name: "unknown principal", cmd: addSecret(o1, secret("s1")), want: principalNotFound(o1)},
		{name: "nil operation", cmd: &pb.Command{Op: &pb.Command_AddCredential{}}, want: principalNotFound("")},
		{name: "no credential", setup: []*pb.Command{putPrincipal(principal(1))}, cmd: cmdAt(t0, &pb.AddCredential{ObjectId: o1}), want: badParameter("the credential for principal " + o1 + " is empty")},
		{
			name: "ID taken by a certificate", setup: []*pb.Command{putPrincipal(principal(1, cert("x")))}, cmd: addSecret(o1, secret("x")),
			want: conflict("principal " + o1 + " already has a credential x"),
		},
		{
			name: "ID taken by a secret", setup: []*pb.Command{putPrincipal(principal(1, secret("x")))}, cmd: addCert(o1, cert("x")),
			want: conflict("principal " + o1 + " already has a credential x"),
		},
		{name: "secret without ID", setup: []*pb.Command{putPrincipal(principal(1))}, cmd: addSecret(o1, secret("")), want: badParameter("a secret of principal " + o1 + " has no ID")},
		{
			name: "long hash", setup: []*pb.Command{putPrincipal(principal(1))}, cmd: addSecret(o1, &pb.SecretRecord{Id: "s", Hash: make([]byte, 64)}),
			want: badParameter("the hash of secret s of principal " + o1 + " has 64 bytes, not 32"),
		},
		{
			name: "certificate that does not parse", setup: []*pb.Command{putPrincipal(principal(1))}, cmd: addCert(o1, &pb.CertificateRecord{Id: "c", Der: testCert()[:100]}),
			want: badParameter("certificate c of principal " + o1 + " is not a DER X.509 certificate"),
		},
		{
			name: "the 21st", setup: append([]*pb.Command{putPrincipal(principal(1, cert("c")))}, full...), cmd: addSecret(o1, secret("s-last")),
			want: limit("CredentialLimitExceeded", "principal "+o1+" has the maximum of 20 credentials"),
		},
	})
}

func TestApplyRemoveCredential(t *testing.T) {
	o1 := objectID(1)
	both := []*pb.Command{putPrincipal(principal(1, secret("s1"), secret("s2"), cert("c1")))}
	credentialNotFound := func(id string) *rpcerr.Error {
		return &rpcerr.Error{Kind: fault.NotFound, Code: "NotFound", Msg: "principal " + o1 + " has no credential " + id}
	}
	runApplyCases(t, []applyCase{
		{
			name: "ok, secret", setup: both, cmd: removeCredential(o1, "s1"),
			check: func(t *testing.T, s *State) {
				if p, _ := s.Principal(o1); len(p.Secrets) != 1 || p.Secrets[0].Id != "s2" || len(p.Certificates) != 1 {
					t.Errorf("Principal = %v", p)
				}
			},
		},
		{
			name: "ok, certificate", setup: both, cmd: removeCredential(strings.ToUpper(o1), "c1"),
			check: func(t *testing.T, s *State) {
				if p, _ := s.Principal(o1); len(p.Secrets) != 2 || len(p.Certificates) != 0 {
					t.Errorf("Principal = %v", p)
				}
			},
		},
		{name: "ok, the last one", setup: []*pb.Command{putPrincipal(principal(1, secret("s1")))}, cmd: removeCredential(o1, "s1")},
		{name: "before InitPool", from: newState, cmd: removeCredential(o1, "s1"), want: notInitialized},
		{name: "unknown principal", cmd: removeCredential(o1, "s1"), want: principalNotFound(o1)},
		{name: "nil operation", cmd: &pb.Command{Op: &pb.Command_RemoveCredential{}}, want: principalNotFound("")},
		{name: "unknown credential", setup: both, cmd: removeCredential(o1, "s3"), want: credentialNotFound("s3")},
		{name: "no credential ID", setup: both, cmd: removeCredential(o1, ""), want: credentialNotFound("")},
	})
}

func TestApplyInitPoolAssignments(t *testing.T) {
	initWith := func(ps []*pb.PrincipalRecord, as ...*pb.RoleAssignment) *pb.Command {
		return cmdAt(t0, &pb.InitPool{Name: "contoso", RecoverableDays: 7, Principals: ps, Assignments: as})
	}
	notAdmin := setAdministrator(admin(), false)
	second := setAdministrator(principal(2), true)
	a1 := assignment(2, "/", authz.AdministratorRoleID, admin().ObjectId)
	a2 := assignment(1, "/keys", authz.CryptoUserRoleID, objectID(9))

	runApplyCases(t, []applyCase{
		{
			name: "ok, assignments", from: newState, cmd: initWith([]*pb.PrincipalRecord{notAdmin}, a1, a2),
			check: func(t *testing.T, s *State) {
				if got := s.RoleAssignments(); len(got) != 2 || !proto.Equal(got[0], a2) || !proto.Equal(got[1], a1) {
					t.Errorf("RoleAssignments() = %v, want sorted by name", got)
				}
				if got := s.AssignmentsOf(objectID(9)); len(got) != 1 || !proto.Equal(got[0], a2) {
					t.Errorf("AssignmentsOf = %v", got)
				}
			},
		},
		{
			name: "ok, migration of two administrators", from: newState, cmd: initWith([]*pb.PrincipalRecord{admin(), principal(1), second}),
			check: func(t *testing.T, s *State) {
				got := s.RoleAssignments()
				if len(got) != 2 {
					t.Fatalf("RoleAssignments() = %v", got)
				}
				want := map[string]string{admin().ObjectId: adminAssignmentID, objectID(2): adminAssignmentName(objectID(2))}
				for _, a := range got {
					if a.Name != want[a.PrincipalId] || a.Scope != "/" || a.RoleDefinitionId != authz.AdministratorRoleID {
						t.Errorf("migrated assignment %v", a)
					}
				}
				if len(s.AssignmentsOf(objectID(1))) != 0 {
					t.Error("a principal not marked administrator was made one")
				}
				p, _ := s.Principal(admin().ObjectId)
				if !isAdministrator(p) { // older nodes read it
					t.Error("the migration cleared the pre-RBAC mark")
				}
			},
		},
		{
			name: "ok, migration with no administrator", from: newState, cmd: initWith([]*pb.PrincipalRecord{notAdmin}),
			check: func(t *testing.T, s *State) {
				if got := s.RoleAssignments(); len(got) != 0 {
					t.Errorf("RoleAssignments() = %v", got)
				}
			},
		},
		{
			name: "marked administrator and assignments", from: newState, cmd: initWith([]*pb.PrincipalRecord{admin()}, a1),
			want: badParameter("principal " + admin().ObjectId + " is marked administrator, the pre-RBAC mark, and the command has role assignments: use only the assignments"),
		},
		{
			name: "an invalid assignment", from: newState, cmd: initWith(nil, a1, assignment(3, "/keys/a b", authz.CryptoUserRoleID, objectID(1))),
			want: badParameter(`the scope "/keys/a b" is not /, /keys or /keys/<key name>`),
		},
		{
			name: "a custom role", from: newState, cmd: initWith(nil, assignment(3, "/", roleID(1), objectID(1))),
			want: roleNotFound(roleID(1)),
		},
		{
			name: "an assignment twice", from: newState, cmd: initWith(nil, a1, a1),
			want: assignmentExists("the role assignment " + a1.Name + " already exists"),
		},
		{
			name: "the same grant twice", from: newState, cmd: initWith(nil, a1, assignment(3, "/", authz.AdministratorRoleID, admin().ObjectId)),
			want: assignmentExists("role assignment " + a1.Name + " already grants role " + authz.AdministratorRoleID + " to principal " + admin().ObjectId + " at scope /"),
		},
		{
			name: "a nil assignment", from: newState, cmd: initWith(nil, nil),
			want: badParameter(`the role assignment name "" is not a lowercase GUID`),
		},
	})
}

func TestAssignmentsOfShared(t *testing.T) {
	s := newActive(t)
	mustApply(t, s, assign(2, "/", authz.CryptoUserRoleID, objectID(1)), assign(1, "/keys/k", authz.CryptoUserRoleID, objectID(1)))
	before := s.AssignmentsOf(objectID(1))
	if len(before) != 2 || before[0].Name != assignmentID(1) {
		t.Fatalf("AssignmentsOf = %v, want sorted by name", before)
	}
	kept := slices.Clone(before)
	mustApply(t, s, assign(3, "/keys", authz.CryptoUserRoleID, objectID(1)), unassign(assignmentID(1)))
	if !slices.Equal(before, kept) {
		t.Error("a later change modified a slice AssignmentsOf returned")
	}
	if got := s.AssignmentsOf(objectID(1)); len(got) != 2 || got[0].Name != assignmentID(2) || got[1].Name != assignmentID(3) {
		t.Errorf("AssignmentsOf = %v", got)
	}
	oid := admin().ObjectId
	if n := testing.AllocsPerRun(100, func() { _ = s.AssignmentsOf(oid) }); n != 0 {
		t.Errorf("AssignmentsOf allocates %v times", n)
	}
	if got := s.AssignmentsOf(objectID(7)); got != nil {
		t.Errorf("AssignmentsOf(unknown) = %v", got)
	}
}

func TestPrincipalsSorted(t *testing.T) {
	s := newActive(t)
	p3 := principal(3)
	p3.DisplayName = "app 1" // same display name as principal 1: the object ID decides
	mustApply(t, s, putPrincipal(principal(2)), putPrincipal(p3), putPrincipal(principal(1)))
	var got []string
	for _, p := range s.Principals() {
		got = append(got, p.DisplayName+" "+p.ObjectId)
	}
	want := []string{"admin " + admin().ObjectId, "app 1 " + objectID(1), "app 1 " + objectID(3), "app 2 " + objectID(2)}
	if !slices.Equal(got, want) {
		t.Errorf("Principals() = %q, want %q", got, want)
	}
	// The slice is the caller's.
	ps := s.Principals()
	ps[0] = nil
	if s.Principals()[0] == nil {
		t.Error("Principals() returned the stored slice")
	}
	if len(New().Principals()) != 0 || len(New().RoleAssignments()) != 0 || len(New().RoleDefinitions()) != len(authz.BuiltInRoles()) {
		t.Error("the readers of a state without a pool")
	}
}

func TestAdminAssignmentName(t *testing.T) {
	if got := adminAssignmentName(admin().ObjectId); got != adminAssignmentID {
		t.Errorf("adminAssignmentName = %s, want %s", got, adminAssignmentID)
	}
	if adminAssignmentName(strings.ToUpper(admin().ObjectId)) != adminAssignmentID {
		t.Error("the name depends on the object ID's case")
	}
	for _, oid := range []string{"", "obj-1", objectID(1)} {
		if n := adminAssignmentName(oid); !isLowerGUID(n) || n[14] != '8' || !strings.ContainsRune("89ab", rune(n[19])) {
			t.Errorf("adminAssignmentName(%q) = %s: not a version 8, RFC 4122 variant lowercase GUID", oid, n)
		}
	}
}
