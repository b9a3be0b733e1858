package state

import (
	"fmt"
	"slices"
	"strings"

	"pgregory.net/rapid"

	"github.com/hsmpool/hsmpool/internal/authz"
	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

// The access part of the property test: commands over a few principals, roles and assignment
// names, so that IDs collide, roles are in use, and the last administrator is at stake. The
// limits are far away; the table tests cover them.

var (
	propObjects     = []string{admin().ObjectId, objectID(1), objectID(2), strings.ToUpper(objectID(1)), "obj-x"}
	propClients     = []string{clientID(1), clientID(2), admin().ClientId}
	propRoles       = []string{roleID(1), roleID(2), roleID(3), authz.AdministratorRoleID, authz.CryptoUserRoleID}
	propRoleNames   = []string{"R1", "r1", "R2", "Managed HSM Crypto User"}
	propScopes      = [][]string{nil, {"/"}, {"/keys"}, {"/x"}}
	propAssignments = []string{assignmentID(1), assignmentID(2), assignmentID(3), adminAssignmentID}
	propAtScopes    = []string{"/", "/keys", "/keys/k", "/keys/a_b"}
	propCredentials = []string{"s1", "s2", "c1"}
)

// genAccessCommand draws one access command at time at.
func genAccessCommand(t *rapid.T, at int64) *pb.Command {
	oid := rapid.SampledFrom(propObjects).Draw(t, "object ID")
	credential := rapid.SampledFrom(propCredentials).Draw(t, "credential")
	switch rapid.IntRange(0, 7).Draw(t, "access op") {
	case 0:
		p := &pb.PrincipalRecord{ObjectId: oid, ClientId: rapid.SampledFrom(propClients).Draw(t, "client ID"),
			DisplayName: rapid.SampledFrom([]string{"app", "", "admin"}).Draw(t, "display name")}
		for i := range rapid.IntRange(0, 2).Draw(t, "secrets") {
			p.Secrets = append(p.Secrets, secret(rapid.SampledFrom(propCredentials).Draw(t, fmt.Sprint("secret ", i))))
		}
		return cmdAt(at, &pb.PutPrincipal{Principal: p})
	case 1:
		return cmdAt(at, &pb.DeletePrincipal{ObjectId: oid})
	case 2:
		c := &pb.AddCredential{ObjectId: oid}
		if rapid.Bool().Draw(t, "certificate") {
			crt := cert(credential)
			if rapid.IntRange(0, 3).Draw(t, "bad DER") == 0 {
				crt.Der = crt.Der[:10]
			}
			c.Credential = &pb.AddCredential_Certificate{Certificate: crt}
		} else {
			s := secret(credential)
			if rapid.IntRange(0, 3).Draw(t, "bad hash") == 0 {
				s.Hash = s.Hash[:31]
			}
			c.Credential = &pb.AddCredential_Secret{Secret: s}
		}
		return cmdAt(at, c)
	case 3:
		return cmdAt(at, &pb.RemoveCredential{ObjectId: oid, CredentialId: credential})
	case 4:
		d := &pb.RoleDefinition{
			Name:             rapid.SampledFrom(propRoles).Draw(t, "role"),
			RoleName:         rapid.SampledFrom(propRoleNames).Draw(t, "role name"),
			AssignableScopes: rapid.SampledFrom(propScopes).Draw(t, "assignable scopes"),
		}
		if rapid.IntRange(0, 5).Draw(t, "no permissions") > 0 {
			d.Permissions = []*pb.Permission{{DataActions: []string{authz.ActionPrefix + "keys/read/action"}}}
		}
		return cmdAt(at, &pb.PutRoleDefinition{Definition: d})
	case 5:
		return cmdAt(at, &pb.DeleteRoleDefinition{Name: rapid.SampledFrom(propRoles).Draw(t, "role")})
	case 6:
		return cmdAt(at, &pb.PutRoleAssignment{Assignment: &pb.RoleAssignment{
			Name:             rapid.SampledFrom(propAssignments).Draw(t, "assignment"),
			Scope:            rapid.SampledFrom(propAtScopes).Draw(t, "scope"),
			RoleDefinitionId: rapid.SampledFrom(propRoles).Draw(t, "role"),
			PrincipalId:      oid,
		}})
	default:
		return cmdAt(at, &pb.DeleteRoleAssignment{Name: rapid.SampledFrom(propAssignments).Draw(t, "assignment")})
	}
}

// accessModel is what the model knows of the access commands: custom roles by name, assignments
// by name, principals by lowercased object ID.
type accessModel struct {
	roles       map[string]*pb.RoleDefinition
	assignments map[string]*pb.RoleAssignment
	principals  map[string]*modelPrincipal
}

type modelPrincipal struct {
	objectID, clientID string
	credentials        []string
}

// init is what InitPool of the property test (initPool) makes: admin() and its assignment.
func (m *accessModel) init() {
	m.roles = map[string]*pb.RoleDefinition{}
	m.assignments = map[string]*pb.RoleAssignment{adminAssignmentID: rootAdmin()}
	a := admin()
	m.principals = map[string]*modelPrincipal{strings.ToLower(a.ObjectId): {objectID: a.ObjectId, clientID: a.ClientId, credentials: []string{"s1"}}}
}

// role returns the role named id, built-in or custom.
func (m *accessModel) role(id string) *pb.RoleDefinition {
	if d, ok := authz.BuiltInRole(id); ok {
		return d
	}
	return m.roles[id]
}

// rootAdmins counts the Administrator assignments at "/" not of principal except (lowercased).
func (m *accessModel) rootAdmins(except string) int {
	n := 0
	for _, a := range m.assignments {
		if a.RoleDefinitionId == authz.AdministratorRoleID && a.Scope == "/" && strings.ToLower(a.PrincipalId) != except {
			n++
		}
	}
	return n
}

// apply reports whether the access command c should succeed on an initialised pool, and if so
// applies it.
func (m *accessModel) apply(c *pb.Command) bool {
	switch op := c.Op.(type) {
	case *pb.Command_PutPrincipal:
		p := op.PutPrincipal.Principal
		if !isGUID(p.ObjectId) || p.DisplayName == "" {
			return false
		}
		for _, o := range m.principals {
			for _, id := range []string{p.ObjectId, p.ClientId} {
				if strings.EqualFold(id, o.objectID) || strings.EqualFold(id, o.clientID) {
					return false
				}
			}
		}
		var creds []string
		for _, s := range p.Secrets {
			if slices.Contains(creds, s.Id) {
				return false
			}
			creds = append(creds, s.Id)
		}
		m.principals[strings.ToLower(p.ObjectId)] = &modelPrincipal{objectID: p.ObjectId, clientID: p.ClientId, credentials: creds}
	case *pb.Command_DeletePrincipal:
		pid := strings.ToLower(op.DeletePrincipal.ObjectId)
		if m.principals[pid] == nil {
			return false
		}
		if m.rootAdmins("") > 0 && m.rootAdmins(pid) == 0 {
			return false
		}
		delete(m.principals, pid)
		for name, a := range m.assignments {
			if strings.ToLower(a.PrincipalId) == pid {
				delete(m.assignments, name)
			}
		}
	case *pb.Command_AddCredential:
		p := m.principals[strings.ToLower(op.AddCredential.ObjectId)]
		if p == nil {
			return false
		}
		var id string
		switch {
		case op.AddCredential.GetSecret() != nil:
			id = op.AddCredential.GetSecret().Id
			if len(op.AddCredential.GetSecret().Hash) != 32 {
				return false
			}
		default:
			id = op.AddCredential.GetCertificate().Id
			if len(op.AddCredential.GetCertificate().Der) < 100 {
				return false
			}
		}
		if slices.Contains(p.credentials, id) {
			return false
		}
		p.credentials = append(p.credentials, id)
	case *pb.Command_RemoveCredential:
		p := m.principals[strings.ToLower(op.RemoveCredential.ObjectId)]
		if p == nil || !slices.Contains(p.credentials, op.RemoveCredential.CredentialId) {
			return false
		}
		p.credentials = slices.DeleteFunc(p.credentials, func(id string) bool { return id == op.RemoveCredential.CredentialId })
	case *pb.Command_PutRoleDefinition:
		d := op.PutRoleDefinition.Definition
		if _, ok := authz.BuiltInRole(d.Name); ok || d.RoleName == "Managed HSM Crypto User" || slices.Contains(d.AssignableScopes, "/x") || len(d.Permissions) == 0 {
			return false
		}
		for _, o := range m.roles {
			if o.Name != d.Name && strings.EqualFold(o.RoleName, d.RoleName) {
				return false
			}
		}
		scopes := d.AssignableScopes
		if len(scopes) == 0 {
			scopes = []string{"/"}
		}
		for _, a := range m.assignments {
			if a.RoleDefinitionId == d.Name && !covers(scopes, a.Scope) {
				return false
			}
		}
		m.roles[d.Name] = &pb.RoleDefinition{Name: d.Name, RoleName: d.RoleName, AssignableScopes: scopes}
	case *pb.Command_DeleteRoleDefinition:
		name := op.DeleteRoleDefinition.Name
		if m.roles[name] == nil {
			return false
		}
		for _, a := range m.assignments {
			if a.RoleDefinitionId == name {
				return false
			}
		}
		delete(m.roles, name)
	case *pb.Command_PutRoleAssignment:
		a := op.PutRoleAssignment.Assignment
		role := m.role(a.RoleDefinitionId)
		if m.assignments[a.Name] != nil || a.Scope == "/keys/a_b" || !isGUID(a.PrincipalId) || role == nil || !covers(role.AssignableScopes, a.Scope) {
			return false
		}
		for _, o := range m.assignments {
			if strings.EqualFold(o.PrincipalId, a.PrincipalId) && o.RoleDefinitionId == a.RoleDefinitionId && o.Scope == a.Scope {
				return false
			}
		}
		m.assignments[a.Name] = a
	case *pb.Command_DeleteRoleAssignment:
		a := m.assignments[op.DeleteRoleAssignment.Name]
		if a == nil || (a.RoleDefinitionId == authz.AdministratorRoleID && a.Scope == "/" && m.rootAdmins("") == 1) {
			return false
		}
		delete(m.assignments, a.Name)
	default:
		return false
	}
	return true
}

// check compares the state's access readers with the model.
func (m *accessModel) check(t *rapid.T, s *State) {
	t.Helper()
	var customs []string
	for _, d := range s.RoleDefinitions() {
		if d.RoleType == authz.CustomType {
			customs = append(customs, d.Name+" "+d.RoleName+" "+strings.Join(d.AssignableScopes, ","))
		}
	}
	var want []string
	for _, d := range m.roles {
		want = append(want, d.Name+" "+d.RoleName+" "+strings.Join(d.AssignableScopes, ","))
	}
	slices.Sort(want)
	if !slices.Equal(customs, want) {
		t.Fatalf("custom roles %q, model %q", customs, want)
	}

	str := func(a *pb.RoleAssignment) string {
		return a.Name + " " + a.Scope + " " + a.RoleDefinitionId + " " + a.PrincipalId
	}
	var got []string
	for _, a := range s.RoleAssignments() {
		got = append(got, str(a))
	}
	want = want[:0]
	for _, a := range m.assignments {
		want = append(want, str(a))
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("role assignments %q, model %q", got, want)
	}
	for _, oid := range propObjects {
		var got, want []string
		for _, a := range s.AssignmentsOf(oid) {
			got = append(got, str(a))
		}
		for _, a := range m.assignments {
			if strings.EqualFold(a.PrincipalId, oid) {
				want = append(want, str(a))
			}
		}
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("AssignmentsOf(%s) = %q, model %q", oid, got, want)
		}
	}

	if ps := s.Principals(); len(ps) != len(m.principals) {
		t.Fatalf("%d principals, model %d", len(ps), len(m.principals))
	}
	for pid, mp := range m.principals {
		p, ok := s.Principal(pid)
		if !ok || p.ClientId != mp.clientID {
			t.Fatalf("Principal(%s) = %v, %t; model %+v", pid, p, ok, mp)
		}
		var creds []string
		for _, c := range p.Secrets {
			creds = append(creds, c.Id)
		}
		for _, c := range p.Certificates {
			creds = append(creds, c.Id)
		}
		slices.Sort(creds)
		want := slices.Sorted(slices.Values(mp.credentials))
		if !slices.Equal(creds, want) {
			t.Fatalf("principal %s: credentials %q, model %q", pid, creds, want)
		}
	}
}
