package state

import (
	"cmp"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	"github.com/hsmpool/hsmpool/internal/authz"
	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

// This file is the pool's access model: custom role definitions, role assignments and the
// principals of the pool's own directory, their commands and their readers. Built-in roles are
// not stored: they live in package authz, and the readers merge them in.

// The pool's limits. The role limits are Managed HSM's; the others keep a pool record small.
const (
	maxCustomRoles      = 50   // custom role definitions
	maxRoleNameLen      = 512  // characters of a role's roleName
	maxPoolAssignments  = 50   // assignments at "/" and "/keys" together
	maxKeyAssignments   = 10   // assignments at one "/keys/<name>"
	maxPrincipals       = 1000 // principals of the pool's directory
	maxDisplayNameLen   = 256  // characters of a principal's display name
	maxCredentials      = 20   // secrets and certificates of one principal
	maxKeyNameLen       = 127  // as the keys API
	secretHashLen       = 32   // SHA-256
	adminAssignmentSalt = "hsmpool administrator assignment "
)

// RoleDefinition returns the role definition whose name (a GUID) is name: a built-in role or a
// custom one. The record is shared: do not modify it. A replaced custom role comes back as a new
// pointer, an unchanged one as the same pointer (package authz caches by pointer).
func (s *State) RoleDefinition(name string) (*pb.RoleDefinition, bool) {
	name = strings.ToLower(name)
	if d, ok := authz.BuiltInRole(name); ok {
		return d, true
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	defs := s.pool.GetRoleDefinitions()
	if i, ok := searchDefinition(defs, name); ok {
		return defs[i], true
	}
	return nil, false
}

// RoleDefinitions returns every role definition: the built-in ones in authz's order, then the
// custom ones sorted by name. The slice is the caller's; the records are shared: do not modify
// them.
func (s *State) RoleDefinitions() []*pb.RoleDefinition {
	defs := authz.BuiltInRoles()
	s.mu.RLock()
	defer s.mu.RUnlock()
	return append(defs, s.pool.GetRoleDefinitions()...)
}

// RoleAssignment returns the role assignment whose name (a GUID, unique across scopes) is name.
// The record is shared: do not modify it.
func (s *State) RoleAssignment(name string) (*pb.RoleAssignment, bool) {
	name = strings.ToLower(name)
	s.mu.RLock()
	defer s.mu.RUnlock()
	as := s.pool.GetRoleAssignments()
	if i, ok := searchAssignment(as, name); ok {
		return as[i], true
	}
	return nil, false
}

// RoleAssignments returns every role assignment, sorted by name. The slice is the caller's; the
// records are shared: do not modify them.
func (s *State) RoleAssignments() []*pb.RoleAssignment {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return slices.Clone(s.pool.GetRoleAssignments())
}

// AssignmentsOf returns the role assignments of the principal whose object ID is principalID
// (compared case-insensitively), at every scope, sorted by name; nil when it has none. It runs
// on every request's authorization: it costs a map lookup and does not allocate (unless
// principalID has upper-case letters). The slice and the records are shared: do not modify
// them (a later change makes a new slice; this one stays as it is).
func (s *State) AssignmentsOf(principalID string) []*pb.RoleAssignment {
	pid := strings.ToLower(principalID)
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.byPrincipal[pid]
}

// Principals returns the principals of the pool's directory sorted by display name, then object
// ID. The slice is the caller's; the records are shared: do not modify them.
func (s *State) Principals() []*pb.PrincipalRecord {
	s.mu.RLock()
	ps := slices.Clone(s.pool.GetPrincipals())
	s.mu.RUnlock()
	slices.SortFunc(ps, func(a, b *pb.PrincipalRecord) int {
		return cmp.Or(strings.Compare(a.DisplayName, b.DisplayName), strings.Compare(a.ObjectId, b.ObjectId))
	})
	return ps
}

// requirePool refuses access commands before InitPool.
func (s *State) requirePool() error {
	if s.pool == nil {
		return errNotInitialized()
	}
	return nil
}

func (s *State) putRoleDefinition(op *pb.PutRoleDefinition) (change, error) {
	if err := s.requirePool(); err != nil {
		return change{}, err
	}
	// Clone first: what is checked is what is stored, and a nil permission becomes an empty one.
	d := cloneOrNew(op.GetDefinition())
	if !isLowerGUID(d.Name) {
		return change{}, errBadParameter("the role definition name %q is not a lowercase GUID", trunc(d.Name))
	}
	if _, ok := authz.BuiltInRole(d.Name); ok {
		return change{}, errBadParameter(builtInNameText)
	}
	switch n := utf8.RuneCountInString(d.RoleName); {
	case strings.TrimSpace(d.RoleName) == "":
		return change{}, errBadParameter("the role definition %s has no role name", d.Name)
	case n > maxRoleNameLen:
		return change{}, errBadParameter("the role name of role definition %s has %d characters; the most is %d", d.Name, n, maxRoleNameLen)
	}
	for _, b := range authz.BuiltInRoles() {
		if strings.EqualFold(b.RoleName, d.RoleName) {
			return change{}, errBadParameter("the role name %q is a built-in role's", b.RoleName)
		}
	}
	switch d.RoleType {
	case "", authz.CustomType:
		d.RoleType = authz.CustomType
	default:
		return change{}, errBadParameter("the role type of role definition %s must be %s, not %q", d.Name, authz.CustomType, trunc(d.RoleType))
	}
	if len(d.AssignableScopes) == 0 {
		d.AssignableScopes = []string{"/"}
	}
	for i, sc := range d.AssignableScopes {
		if sc != "/" && sc != "/keys" {
			return change{}, errBadParameter("the assignable scope %q of role definition %s is not \"/\" or \"/keys\"", trunc(sc), d.Name)
		}
		if slices.Contains(d.AssignableScopes[:i], sc) {
			return change{}, errBadParameter("the assignable scope %q of role definition %s appears twice", sc, d.Name)
		}
	}
	if len(d.Permissions) == 0 {
		return change{}, errBadParameter("the role definition %s has no permissions", d.Name)
	}

	defs := s.pool.RoleDefinitions
	i, exists := searchDefinition(defs, d.Name)
	for _, o := range defs {
		if o.Name != d.Name && strings.EqualFold(o.RoleName, d.RoleName) {
			return change{}, errConflict("the role name %q is taken by role definition %s", o.RoleName, o.Name)
		}
	}
	if exists {
		// A replaced role keeps its assignments, so it must still be assignable where they are.
		for _, a := range s.pool.RoleAssignments {
			if a.RoleDefinitionId == d.Name && !covers(d.AssignableScopes, a.Scope) {
				return change{}, errConflict("role definition %s is assigned at scope %s (role assignment %s), which its new assignable scopes do not cover",
					d.Name, a.Scope, a.Name)
			}
		}
	} else if len(defs) >= maxCustomRoles {
		return change{}, errLimit("RoleDefinitionLimitExceeded", "the pool has the maximum of %d custom role definitions", maxCustomRoles)
	}

	pool := shallowCopy(s.pool)
	if exists {
		pool.RoleDefinitions = slices.Clone(defs)
		pool.RoleDefinitions[i] = d
	} else {
		pool.RoleDefinitions = slices.Insert(slices.Clip(defs), i, d)
	}
	return s.poolChange(pool), nil
}

func (s *State) deleteRoleDefinition(op *pb.DeleteRoleDefinition) (change, error) {
	if err := s.requirePool(); err != nil {
		return change{}, err
	}
	name := op.GetName()
	if _, ok := authz.BuiltInRole(name); ok {
		return change{}, errBadParameter("role definition %s is a built-in role, which cannot be deleted", name)
	}
	defs := s.pool.RoleDefinitions
	i, ok := searchDefinition(defs, name)
	if !ok {
		return change{}, errRoleDefinitionNotFound(name)
	}
	n := 0
	for _, a := range s.pool.RoleAssignments {
		if a.RoleDefinitionId == name {
			n++
		}
	}
	if n > 0 {
		return change{}, errConflict("role definition %s is used by %d role assignments; delete them first", name, n)
	}
	pool := shallowCopy(s.pool)
	pool.RoleDefinitions = slices.Delete(slices.Clone(defs), i, i+1)
	return s.poolChange(pool), nil
}

func (s *State) putRoleAssignment(op *pb.PutRoleAssignment) (change, error) {
	if err := s.requirePool(); err != nil {
		return change{}, err
	}
	a := cloneOrNew(op.GetAssignment())
	as := s.pool.RoleAssignments
	if err := checkAssignment(as, s.pool.RoleDefinitions, a); err != nil {
		return change{}, err
	}
	i, _ := searchAssignment(as, a.Name)
	pool := shallowCopy(s.pool)
	pool.RoleAssignments = slices.Insert(slices.Clip(as), i, a)
	c := s.poolChange(pool)
	c.byPrincipal = s.reindex(nil, []*pb.RoleAssignment{a})
	return c, nil
}

// checkAssignment checks a, a new assignment, against the assignments as (sorted by name) and
// the custom roles defs of the pool it would join.
func checkAssignment(as []*pb.RoleAssignment, defs []*pb.RoleDefinition, a *pb.RoleAssignment) error {
	if !isLowerGUID(a.Name) {
		return errBadParameter("the role assignment name %q is not a lowercase GUID", trunc(a.Name))
	}
	if _, ok := searchAssignment(as, a.Name); ok {
		return errRoleAssignmentExists("the role assignment %s already exists", a.Name)
	}
	if err := checkScope(a.Scope); err != nil {
		return err
	}
	if !isGUID(a.PrincipalId) {
		return errBadParameter("the principal ID %q of role assignment %s is not a GUID", trunc(a.PrincipalId), a.Name)
	}
	var role *pb.RoleDefinition
	if d, ok := authz.BuiltInRole(a.RoleDefinitionId); ok {
		role = d
	} else if i, ok := searchDefinition(defs, a.RoleDefinitionId); ok {
		role = defs[i]
	} else {
		return errRoleDefinitionNotFound(trunc(a.RoleDefinitionId))
	}
	if !covers(role.AssignableScopes, a.Scope) {
		return errBadParameter("role definition %s cannot be assigned at scope %s: its assignable scopes are %s",
			role.Name, a.Scope, strings.Join(role.AssignableScopes, ", "))
	}
	atKey := strings.HasPrefix(a.Scope, "/keys/")
	n := 0
	for _, o := range as {
		if strings.EqualFold(o.PrincipalId, a.PrincipalId) && o.RoleDefinitionId == a.RoleDefinitionId && o.Scope == a.Scope {
			return errRoleAssignmentExists("role assignment %s already grants role %s to principal %s at scope %s",
				o.Name, a.RoleDefinitionId, o.PrincipalId, a.Scope)
		}
		if (atKey && o.Scope == a.Scope) || (!atKey && !strings.HasPrefix(o.Scope, "/keys/")) {
			n++
		}
	}
	switch {
	case atKey && n >= maxKeyAssignments:
		return errLimit("RoleAssignmentLimitExceeded", "scope %s has the maximum of %d role assignments", a.Scope, maxKeyAssignments)
	case !atKey && n >= maxPoolAssignments:
		return errLimit("RoleAssignmentLimitExceeded", "scopes / and /keys have the maximum of %d role assignments together", maxPoolAssignments)
	}
	return nil
}

func (s *State) deleteRoleAssignment(op *pb.DeleteRoleAssignment) (change, error) {
	if err := s.requirePool(); err != nil {
		return change{}, err
	}
	name := op.GetName()
	as := s.pool.RoleAssignments
	i, ok := searchAssignment(as, name)
	if !ok {
		return change{}, errRoleAssignmentNotFound(name)
	}
	a := as[i]
	if isRootAdmin(a) && countRootAdmins(as, "") == 1 {
		return change{}, errConflict("the pool would have no administrator: role assignment %s is the last Managed HSM Administrator assignment at scope /", name)
	}
	pool := shallowCopy(s.pool)
	pool.RoleAssignments = slices.Delete(slices.Clone(as), i, i+1)
	c := s.poolChange(pool)
	c.byPrincipal = s.reindex([]*pb.RoleAssignment{a}, nil)
	return c, nil
}

func (s *State) putPrincipal(t int64, op *pb.PutPrincipal) (change, error) {
	if err := s.requirePool(); err != nil {
		return change{}, err
	}
	p := cloneOrNew(op.GetPrincipal())
	switch {
	case !isGUID(p.ObjectId):
		return change{}, errBadParameter("the principal's object ID %q is not a GUID", trunc(p.ObjectId))
	case !isGUID(p.ClientId):
		return change{}, errBadParameter("the client ID %q of principal %s is not a GUID", trunc(p.ClientId), p.ObjectId)
	case p.DisplayName == "" || utf8.RuneCountInString(p.DisplayName) > maxDisplayNameLen:
		return change{}, errBadParameter("the display name of principal %s must have 1 to %d characters", p.ObjectId, maxDisplayNameLen)
	}
	//lint:ignore SA1019 migration from the pre-RBAC mark
	if p.Administrator {
		// Only InitPool's principals may carry it (so a restored snapshot can tell an old pool).
		return change{}, errBadParameter("principal %s is marked administrator, the pre-RBAC mark; assign it a role instead", p.ObjectId)
	}
	for _, id := range []string{strings.ToLower(p.ObjectId), strings.ToLower(p.ClientId)} {
		if s.byObject[id] != nil || s.byClient[id] != nil {
			return change{}, errConflict("the ID %s is taken by another principal", id)
		}
	}
	if len(s.pool.Principals) >= maxPrincipals {
		return change{}, errLimit("PrincipalLimitExceeded", "the pool has the maximum of %d principals", maxPrincipals)
	}
	if n := len(p.Secrets) + len(p.Certificates); n > maxCredentials {
		return change{}, errLimit("CredentialLimitExceeded", "principal %s has %d credentials; the most is %d", p.ObjectId, n, maxCredentials)
	}
	var ids []string
	for _, c := range p.Secrets {
		if err := checkSecret(p.ObjectId, c); err != nil {
			return change{}, err
		}
		ids = append(ids, c.Id)
		c.Created = cmp.Or(c.Created, t)
	}
	for _, c := range p.Certificates {
		if err := checkCertificate(p.ObjectId, c); err != nil {
			return change{}, err
		}
		ids = append(ids, c.Id)
		c.Created = cmp.Or(c.Created, t)
	}
	slices.Sort(ids)
	for j := 1; j < len(ids); j++ {
		if ids[j] == ids[j-1] {
			return change{}, errBadParameter("principal %s has credential %s twice", p.ObjectId, ids[j])
		}
	}
	p.Created = cmp.Or(p.Created, t)

	pool := shallowCopy(s.pool)
	pool.Principals = append(slices.Clip(s.pool.Principals), p)
	return s.principalChange(pool)
}

func (s *State) deletePrincipal(op *pb.DeletePrincipal) (change, error) {
	if err := s.requirePool(); err != nil {
		return change{}, err
	}
	oid := op.GetObjectId()
	p := s.byObject[strings.ToLower(oid)]
	if p == nil {
		return change{}, errPrincipalNotFound(oid)
	}
	pid := strings.ToLower(p.ObjectId)
	mine := s.byPrincipal[pid]
	as := s.pool.RoleAssignments
	if slices.ContainsFunc(mine, isRootAdmin) && countRootAdmins(as, pid) == 0 {
		return change{}, errConflict("the pool would have no administrator: principal %s holds the last Managed HSM Administrator assignment at scope /", p.ObjectId)
	}
	pool := shallowCopy(s.pool)
	pool.Principals = slices.DeleteFunc(slices.Clone(s.pool.Principals), func(o *pb.PrincipalRecord) bool { return o == p })
	if len(mine) > 0 {
		pool.RoleAssignments = slices.DeleteFunc(slices.Clone(as), func(a *pb.RoleAssignment) bool {
			return strings.ToLower(a.PrincipalId) == pid
		})
	}
	c, err := s.principalChange(pool)
	if err != nil {
		return change{}, err
	}
	if len(mine) > 0 {
		c.byPrincipal = map[string][]*pb.RoleAssignment{pid: nil}
	}
	return c, nil
}

func (s *State) addCredential(t int64, op *pb.AddCredential) (change, error) {
	if err := s.requirePool(); err != nil {
		return change{}, err
	}
	oid := op.GetObjectId()
	p := s.byObject[strings.ToLower(oid)]
	if p == nil {
		return change{}, errPrincipalNotFound(oid)
	}
	var id string
	n := shallowCopy(p)
	switch {
	case op.GetSecret() != nil:
		c := proto.Clone(op.GetSecret()).(*pb.SecretRecord)
		if err := checkSecret(p.ObjectId, c); err != nil {
			return change{}, err
		}
		c.Created = cmp.Or(c.Created, t)
		id, n.Secrets = c.Id, append(slices.Clip(p.Secrets), c)
	case op.GetCertificate() != nil:
		c := proto.Clone(op.GetCertificate()).(*pb.CertificateRecord)
		if err := checkCertificate(p.ObjectId, c); err != nil {
			return change{}, err
		}
		c.Created = cmp.Or(c.Created, t)
		id, n.Certificates = c.Id, append(slices.Clip(p.Certificates), c)
	default:
		return change{}, errBadParameter("the credential for principal %s is empty", p.ObjectId)
	}
	if hasCredential(p, id) {
		return change{}, errConflict("principal %s already has a credential %s", p.ObjectId, id)
	}
	if len(p.Secrets)+len(p.Certificates) >= maxCredentials {
		return change{}, errLimit("CredentialLimitExceeded", "principal %s has the maximum of %d credentials", p.ObjectId, maxCredentials)
	}
	return s.replacePrincipal(p, n)
}

func (s *State) removeCredential(op *pb.RemoveCredential) (change, error) {
	if err := s.requirePool(); err != nil {
		return change{}, err
	}
	oid, id := op.GetObjectId(), op.GetCredentialId()
	p := s.byObject[strings.ToLower(oid)]
	if p == nil {
		return change{}, errPrincipalNotFound(oid)
	}
	if !hasCredential(p, id) {
		return change{}, errCredentialNotFound(p.ObjectId, id)
	}
	n := shallowCopy(p)
	n.Secrets = slices.DeleteFunc(slices.Clone(p.Secrets), func(c *pb.SecretRecord) bool { return c.Id == id })
	n.Certificates = slices.DeleteFunc(slices.Clone(p.Certificates), func(c *pb.CertificateRecord) bool { return c.Id == id })
	return s.replacePrincipal(p, n)
}

// replacePrincipal is the change that puts n in old's place.
func (s *State) replacePrincipal(old, n *pb.PrincipalRecord) (change, error) {
	pool := shallowCopy(s.pool)
	pool.Principals = slices.Clone(s.pool.Principals)
	pool.Principals[slices.Index(pool.Principals, old)] = n
	return s.principalChange(pool)
}

// principalChange is the change that stores pool, with principal indexes rebuilt for it.
func (s *State) principalChange(pool *pb.PoolRecord) (change, error) {
	byClient, byObject, ok := indexPrincipals(pool.Principals)
	if !ok {
		// The commands check their IDs before; this is the backstop of the indexes' invariant.
		return change{}, errBadParameter("every principal needs an object ID and a client ID, and no two may share one")
	}
	return change{pool: pool, byClient: byClient, byObject: byObject}, nil
}

// poolChange is the change that stores pool, whose principals are the current ones.
func (s *State) poolChange(pool *pb.PoolRecord) change {
	return change{pool: pool, byClient: s.byClient, byObject: s.byObject}
}

func checkSecret(oid string, c *pb.SecretRecord) error {
	switch {
	case c.Id == "":
		return errBadParameter("a secret of principal %s has no ID", oid)
	case len(c.Hash) != secretHashLen:
		return errBadParameter("the hash of secret %s of principal %s has %d bytes, not %d", c.Id, oid, len(c.Hash), secretHashLen)
	}
	return nil
}

func checkCertificate(oid string, c *pb.CertificateRecord) error {
	if c.Id == "" {
		return errBadParameter("a certificate of principal %s has no ID", oid)
	}
	// x509 parsing is deterministic: every node running the same Go reaches the same answer.
	if _, err := x509.ParseCertificate(c.Der); err != nil {
		return errBadParameter("certificate %s of principal %s is not a DER X.509 certificate", c.Id, oid)
	}
	return nil
}

func hasCredential(p *pb.PrincipalRecord, id string) bool {
	return slices.ContainsFunc(p.Secrets, func(c *pb.SecretRecord) bool { return c.Id == id }) ||
		slices.ContainsFunc(p.Certificates, func(c *pb.CertificateRecord) bool { return c.Id == id })
}

// reindex returns the assignments by principal after removed are removed and added added: new
// slices, sorted by name, for the principals they touch only (an empty one: the principal has
// none left). The stored slices are not modified: readers may hold them.
func (s *State) reindex(removed, added []*pb.RoleAssignment) map[string][]*pb.RoleAssignment {
	d := map[string][]*pb.RoleAssignment{}
	get := func(pid string) []*pb.RoleAssignment {
		if l, ok := d[pid]; ok {
			return l
		}
		return slices.Clone(s.byPrincipal[pid])
	}
	for _, a := range removed {
		pid := strings.ToLower(a.PrincipalId)
		l := get(pid)
		if i, ok := searchAssignment(l, a.Name); ok {
			l = slices.Delete(l, i, i+1)
		}
		d[pid] = l
	}
	for _, a := range added {
		pid := strings.ToLower(a.PrincipalId)
		l := get(pid)
		i, _ := searchAssignment(l, a.Name)
		d[pid] = slices.Insert(l, i, a)
	}
	return d
}

// indexAssignments returns the assignments by lowercased principal ID, each list sorted by name
// as as is.
func indexAssignments(as []*pb.RoleAssignment) map[string][]*pb.RoleAssignment {
	m := map[string][]*pb.RoleAssignment{}
	for _, a := range as {
		pid := strings.ToLower(a.PrincipalId)
		m[pid] = append(m[pid], a)
	}
	for pid, l := range m {
		m[pid] = slices.Clip(l)
	}
	return m
}

func isRootAdmin(a *pb.RoleAssignment) bool {
	return a.RoleDefinitionId == authz.AdministratorRoleID && a.Scope == "/"
}

// countRootAdmins counts the Administrator assignments at "/" in as, leaving out those of the
// principal whose lowercased object ID is except ("": none left out).
func countRootAdmins(as []*pb.RoleAssignment, except string) int {
	n := 0
	for _, a := range as {
		if isRootAdmin(a) && (except == "" || strings.ToLower(a.PrincipalId) != except) {
			n++
		}
	}
	return n
}

// covers tells whether a role assignable at the scopes assignable may be assigned at scope:
// "/" covers every scope, "/keys" covers "/keys" and every key.
func covers(assignable []string, scope string) bool {
	for _, a := range assignable {
		if a == "/" || a == scope || (a == "/keys" && strings.HasPrefix(scope, "/keys/")) {
			return true
		}
	}
	return false
}

// checkScope accepts the scopes of role assignments: "/", "/keys" and "/keys/<name>" with a
// key name as the keys API accepts it (1 to 127 of 0-9, a-z, A-Z and '-').
func checkScope(scope string) error {
	if scope == "/" || scope == "/keys" {
		return nil
	}
	if name, ok := strings.CutPrefix(scope, "/keys/"); ok && isKeyName(name) {
		return nil
	}
	return errBadParameter("the scope %q is not /, /keys or /keys/<key name>", trunc(scope))
}

func isKeyName(name string) bool {
	if name == "" || len(name) > maxKeyNameLen {
		return false
	}
	for _, c := range []byte(name) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '-') {
			return false
		}
	}
	return true
}

// isGUID tells whether s is a GUID in its 36-character form, of either case.
func isGUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range []byte(s) {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}

func isLowerGUID(s string) bool { return isGUID(s) && strings.ToLower(s) == s }

// trunc keeps what a command says short in messages.
func trunc(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

func searchDefinition(defs []*pb.RoleDefinition, name string) (int, bool) {
	return slices.BinarySearchFunc(defs, name, func(d *pb.RoleDefinition, n string) int { return strings.Compare(d.GetName(), n) })
}

func searchAssignment(as []*pb.RoleAssignment, name string) (int, bool) {
	return slices.BinarySearchFunc(as, name, func(a *pb.RoleAssignment, n string) int { return strings.Compare(a.GetName(), n) })
}

// adminAssignments are the migration of a pool made before RBAC: one Managed HSM Administrator
// assignment at "/" for each principal of ps marked administrator, sorted by name. Each is named
// by a GUID derived from the principal's object ID, so every node, and a node that restores the
// pool from a snapshot instead of replaying its InitPool, makes the same ones.
func adminAssignments(ps []*pb.PrincipalRecord) []*pb.RoleAssignment {
	var as []*pb.RoleAssignment
	for _, p := range ps {
		//lint:ignore SA1019 migration from the pre-RBAC mark
		if p.Administrator {
			as = append(as, &pb.RoleAssignment{
				Name: adminAssignmentName(p.ObjectId), Scope: "/", RoleDefinitionId: authz.AdministratorRoleID, PrincipalId: p.ObjectId,
			})
		}
	}
	slices.SortFunc(as, func(a, b *pb.RoleAssignment) int { return strings.Compare(a.Name, b.Name) })
	return as
}

// adminAssignmentName is the name of the migrated Administrator assignment of the principal
// whose object ID is oid: the first 16 bytes of SHA-256(adminAssignmentSalt + lowercased oid)
// as a GUID of version 8 (RFC 9562: custom, here name-based with SHA-256) and RFC 4122's variant.
func adminAssignmentName(oid string) string {
	h := sha256.Sum256([]byte(adminAssignmentSalt + strings.ToLower(oid)))
	b := h[:16]
	b[6] = b[6]&0x0f | 0x80
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
