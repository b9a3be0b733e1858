package core

import (
	"context"
	"regexp"
	"strings"

	"github.com/hsmpool/hsmpool/internal/authz"
	"github.com/hsmpool/hsmpool/internal/fault"
	"github.com/hsmpool/hsmpool/internal/rpcerr"
	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

// accessServer is local RBAC: role definitions and role assignments (spec/azure-mhsm-api.md §5.2).
// The state enforces the rules that depend on other records (limits, the last administrator,
// roles in use); the handlers here check the request's shape and answer from the state.
type accessServer struct {
	pb.UnsafeAccessServer
	c *Core
}

// guidRE is the canonical form of role definition, role assignment and principal IDs.
var guidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// checkGUID lowercases id and checks it is a GUID; what names the field in the message.
func checkGUID(what, id string) (string, error) {
	id = strings.ToLower(id)
	if !guidRE.MatchString(id) {
		return "", bad("The %s %q is not a GUID.", what, trunc(id))
	}
	return id, nil
}

// checkScope checks a role scope: "/", "/keys" or "/keys/<name>"; definitions only "/" or "/keys".
func checkScope(scope string, keyScopes bool) error {
	switch {
	case scope == "/" || scope == "/keys":
		return nil
	case keyScopes && strings.HasPrefix(scope, "/keys/"):
		return checkName(strings.TrimPrefix(scope, "/keys/"))
	}
	if keyScopes {
		return bad("The scope %q is not valid: use \"/\", \"/keys\" or \"/keys/<key name>\".", trunc(scope))
	}
	return bad("The scope %q is not valid: use \"/\" or \"/keys\".", trunc(scope))
}

func errRoleDefinitionNotFound(name string) error {
	return rpcerr.New(fault.NotFound, "RoleDefinitionNotFound", "The role definition %s was not found.", name)
}

func errRoleAssignmentNotFound(name string) error {
	return rpcerr.New(fault.NotFound, "RoleAssignmentNotFound", "The role assignment %s was not found.", name)
}

func (s *accessServer) ListRoleDefinitions(_ context.Context, r *pb.ListRoleDefinitionsRequest) (*pb.RoleDefinitionList, error) {
	if err := checkScope(r.Scope, false); err != nil {
		return nil, err
	}
	out := &pb.RoleDefinitionList{}
	for _, d := range s.c.st.RoleDefinitions() {
		if r.RoleName == "" || strings.EqualFold(d.RoleName, r.RoleName) {
			out.Definitions = append(out.Definitions, d)
		}
	}
	return out, nil
}

func (s *accessServer) GetRoleDefinition(_ context.Context, r *pb.RoleDefinitionRef) (*pb.RoleDefinition, error) {
	name, err := checkGUID("role definition name", r.Name)
	if err != nil {
		return nil, err
	}
	d, ok := s.c.st.RoleDefinition(name)
	if !ok {
		return nil, errRoleDefinitionNotFound(name)
	}
	return d, nil
}

func (s *accessServer) PutRoleDefinition(ctx context.Context, r *pb.PutRoleDefinitionRequest) (*pb.RoleDefinition, error) {
	if r.Scope != "/" {
		return nil, bad("Role definitions can only be created at scope \"/\".")
	}
	d := r.Definition
	if d == nil {
		return nil, bad("The role definition's properties are required.")
	}
	name, err := checkGUID("role definition name", d.Name)
	if err != nil {
		return nil, err
	}
	if d.RoleType != "" && d.RoleType != authz.CustomType {
		return nil, bad("The role type %q cannot be created: only %s roles can.", trunc(d.RoleType), authz.CustomType)
	}
	if err := authz.ValidatePermissions(d.Permissions); err != nil {
		return nil, err
	}
	for _, sc := range d.AssignableScopes {
		if err := checkScope(sc, false); err != nil {
			return nil, err
		}
	}
	def := &pb.RoleDefinition{Name: name, RoleName: d.RoleName, Description: d.Description, RoleType: authz.CustomType,
		Permissions: d.Permissions, AssignableScopes: d.AssignableScopes}
	if len(def.AssignableScopes) == 0 {
		def.AssignableScopes = []string{"/"}
	}
	c := s.c
	if err := c.propose(ctx, c.now(), &pb.Command{Op: &pb.Command_PutRoleDefinition{PutRoleDefinition: &pb.PutRoleDefinition{Definition: def}}}); err != nil {
		return nil, err
	}
	return s.GetRoleDefinition(ctx, &pb.RoleDefinitionRef{Name: name})
}

func (s *accessServer) DeleteRoleDefinition(ctx context.Context, r *pb.RoleDefinitionRef) (*pb.RoleDefinition, error) {
	d, err := s.GetRoleDefinition(ctx, r)
	if err != nil {
		return nil, err
	}
	c := s.c
	if err := c.propose(ctx, c.now(), &pb.Command{Op: &pb.Command_DeleteRoleDefinition{DeleteRoleDefinition: &pb.DeleteRoleDefinition{Name: d.Name}}}); err != nil {
		return nil, err
	}
	return d, nil
}

// maxAssignmentPage bounds a page of role assignments; a pool has at most 50 at "/" and "/keys"
// but 10 per key.
const maxAssignmentPage = 100

func (s *accessServer) ListRoleAssignments(_ context.Context, r *pb.ListRoleAssignmentsRequest) (*pb.RoleAssignmentList, error) {
	if err := checkScope(r.Scope, true); err != nil {
		return nil, err
	}
	var pid string
	if r.PrincipalId != "" {
		var err error
		if pid, err = checkGUID("principalId", r.PrincipalId); err != nil {
			return nil, err
		}
	}
	after, err := decodeToken(r.PageToken)
	if err != nil {
		return nil, err
	}
	n := int(r.MaxResults)
	if n <= 0 || n > maxAssignmentPage {
		n = maxAssignmentPage
	}
	all := s.c.st.RoleAssignments()
	if pid != "" {
		all = s.c.st.AssignmentsOf(pid)
	}
	out := &pb.RoleAssignmentList{}
	for _, a := range all {
		if after != "" && a.Name <= after {
			continue
		}
		if !inScope(a.Scope, r.Scope, r.AtScope) {
			continue
		}
		if len(out.Assignments) == n {
			out.NextPageToken = encodeToken(out.Assignments[n-1].Name)
			break
		}
		out.Assignments = append(out.Assignments, a)
	}
	return out, nil
}

// inScope tells whether an assignment at scope a is listed for a request at scope: at that scope
// exactly with atScope(), otherwise at it or below it.
func inScope(a, scope string, atScope bool) bool {
	switch {
	case a == scope:
		return true
	case atScope:
		return false
	case scope == "/":
		return true
	}
	return strings.HasPrefix(a, scope+"/")
}

func (s *accessServer) GetRoleAssignment(_ context.Context, r *pb.RoleAssignmentRef) (*pb.RoleAssignment, error) {
	if err := checkScope(r.Scope, true); err != nil {
		return nil, err
	}
	name, err := checkGUID("role assignment name", r.Name)
	if err != nil {
		return nil, err
	}
	a, ok := s.c.st.RoleAssignment(name)
	if !ok || a.Scope != r.Scope {
		return nil, errRoleAssignmentNotFound(name)
	}
	return a, nil
}

func (s *accessServer) CreateRoleAssignment(ctx context.Context, r *pb.CreateRoleAssignmentRequest) (*pb.RoleAssignment, error) {
	a := r.Assignment
	if a == nil {
		return nil, bad("The role assignment's properties are required.")
	}
	if err := checkScope(a.Scope, true); err != nil {
		return nil, err
	}
	name, err := checkGUID("role assignment name", a.Name)
	if err != nil {
		return nil, err
	}
	role, err := checkGUID("roleDefinitionId", a.RoleDefinitionId)
	if err != nil {
		return nil, err
	}
	pid, err := checkGUID("principalId", a.PrincipalId)
	if err != nil {
		return nil, err
	}
	want := &pb.RoleAssignment{Name: name, Scope: a.Scope, RoleDefinitionId: role, PrincipalId: pid}
	c := s.c
	if err := c.propose(ctx, c.now(), &pb.Command{Op: &pb.Command_PutRoleAssignment{PutRoleAssignment: &pb.PutRoleAssignment{Assignment: want}}}); err != nil {
		return nil, err
	}
	return s.GetRoleAssignment(ctx, &pb.RoleAssignmentRef{Scope: a.Scope, Name: name})
}

func (s *accessServer) DeleteRoleAssignment(ctx context.Context, r *pb.RoleAssignmentRef) (*pb.RoleAssignment, error) {
	a, err := s.GetRoleAssignment(ctx, r)
	if err != nil {
		return nil, err
	}
	c := s.c
	if err := c.propose(ctx, c.now(), &pb.Command{Op: &pb.Command_DeleteRoleAssignment{DeleteRoleAssignment: &pb.DeleteRoleAssignment{Name: a.Name}}}); err != nil {
		return nil, err
	}
	return a, nil
}
