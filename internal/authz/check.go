package authz

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/hsmpool/hsmpool/internal/fault"
	"github.com/hsmpool/hsmpool/internal/rpcerr"
	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

// RoleLookup finds role definitions; the replicated state implements it.
//
// RoleDefinition returns the custom role definition whose name (a lowercase GUID) is name, and
// false when there is none. It may also return built-in roles, but need not: [Check] knows them.
// The definition must be an immutable record: a role that is replaced must come back as a new
// pointer, because [Check] caches what a definition grants by its pointer. It must be safe for
// concurrent use.
type RoleLookup interface {
	RoleDefinition(name string) (*pb.RoleDefinition, bool)
}

// Check decides whether a caller whose role assignments are assignments may perform action at
// scope. It returns nil when an assignment applies at scope (see [Applies]) and its role grants
// action, and otherwise a fault.Forbidden *rpcerr.Error (code "Forbidden", inner code
// "ForbiddenByRbac") whose message names the action and the scope. Assignments of other
// principals must not be passed: Check does not look at principal_id.
//
// Built-in roles are found by their GUID without roles; custom roles through roles, which may be
// nil when there are none. An assignment whose role is not found grants nothing. An invalid action
// is refused with a fault.Internal error: it means the caller has no rule for its method.
//
// Check does not allocate when it allows; it is safe for concurrent use.
func Check(roles RoleLookup, assignments []*pb.RoleAssignment, action Action, scope string) error {
	if !action.Valid() {
		return &rpcerr.Error{Kind: fault.Internal, Msg: "the pool could not authorize the request: the operation has no data action"}
	}
	for _, a := range assignments {
		if !Applies(a.GetScope(), scope) {
			continue
		}
		if granted(roles, a.GetRoleDefinitionId()).Has(action) {
			return nil
		}
	}
	return denied(action, scope)
}

// Applies tells whether an assignment at assignmentScope applies to a request at scope: an
// assignment at "/" applies everywhere, one at "/keys" to "/keys" and every "/keys/<name>", one at
// "/keys/<name>" to that key only. Scopes compare exactly, as key names do in the pool.
func Applies(assignmentScope, scope string) bool {
	switch assignmentScope {
	case "/":
		return true
	case scope:
		return assignmentScope != ""
	case "/keys":
		return strings.HasPrefix(scope, "/keys/")
	}
	return false
}

// granted returns what the role with GUID id grants.
func granted(roles RoleLookup, id string) Set {
	if s, ok := builtInSets[id]; ok {
		return s
	}
	if roles == nil {
		return Set{}
	}
	def, ok := roles.RoleDefinition(id)
	if !ok || def == nil {
		return Set{}
	}
	return compiled.get(def)
}

func denied(action Action, scope string) error {
	return &rpcerr.Error{
		Kind:  fault.Forbidden,
		Code:  "Forbidden",
		Inner: "ForbiddenByRbac",
		Msg: fmt.Sprintf("Caller is not authorized to perform action on resource. "+
			"If role assignments or role definitions were changed recently, please observe propagation time. "+
			"Action: '%s' Resource: '%s' Assignment: (not found) DecisionReason: 'DeniedWithNoValidRBAC'",
			action, scope),
	}
}

// builtInSets are what the built-in roles grant, by GUID.
var builtInSets = func() map[string]Set {
	m := make(map[string]Set, len(builtIn))
	for _, r := range builtIn {
		m[r.Name] = Compile(r)
	}
	return m
}()

// maxCached bounds the cache of compiled custom roles. A pool has few custom roles (Azure allows
// 50 per Managed HSM); the bound only matters when definitions are replaced again and again.
const maxCached = 1024

// compiled caches Compile by definition pointer.
var compiled setCache

// setCache maps *pb.RoleDefinition to its Set. It holds about max entries at most: when it is
// full it starts again empty, which costs one Compile per role in use.
type setCache struct {
	m sync.Map // *pb.RoleDefinition → Set
	n atomic.Int64
}

func (c *setCache) get(def *pb.RoleDefinition) Set {
	if v, ok := c.m.Load(def); ok {
		return v.(Set)
	}
	s := Compile(def)
	if c.n.Add(1) > maxCached {
		c.m.Clear()
		c.n.Store(1)
	}
	if _, loaded := c.m.LoadOrStore(def, s); loaded {
		c.n.Add(-1)
	}
	return s
}
