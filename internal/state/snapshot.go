package state

import (
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/hsmpool/hsmpool/internal/authz"
	"github.com/hsmpool/hsmpool/internal/fault"
	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

// MarshalSnapshot returns the state as a pb.State: the pool and every key, live and deleted,
// sorted by name, marshalled deterministically (map entries sorted), so that two nodes with
// the same state write the same bytes. The index is not part of it.
//
// It holds the read lock only while it collects the record pointers; the records are immutable,
// so marshalling them afterwards, while Apply goes on, still writes the state as it was.
func (s *State) MarshalSnapshot() ([]byte, error) {
	s.mu.RLock()
	st := &pb.State{Pool: s.pool, Keys: make([]*pb.KeyRecord, 0, len(s.keys)), AppliedIndex: s.index}
	// Merge the two sorted name lists into one sorted list.
	live, deleted := s.live, s.deleted
	for len(live) > 0 || len(deleted) > 0 {
		var name string
		if len(deleted) == 0 || (len(live) > 0 && live[0] < deleted[0]) {
			name, live = live[0], live[1:]
		} else {
			name, deleted = deleted[0], deleted[1:]
		}
		st.Keys = append(st.Keys, s.keys[name])
	}
	if len(s.unknown) > 0 {
		st.ProtoReflect().SetUnknown(s.unknown)
	}
	s.mu.RUnlock()

	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("marshal state snapshot: %w: %w", fault.Internal, err)
	}
	return b, nil
}

// RestoreSnapshot replaces the whole state with the one b holds (as MarshalSnapshot writes
// it), including the index of its last command. It refuses, with a fault.Internal error and the state unchanged,
// bytes that do not decode or a state that breaks an invariant Apply keeps: two keys with one
// name, a key without a name or versions, a version without an ID or twice, principals that
// share an ID, role definitions or assignments without a name or sharing one, an assignment
// without a principal or of an unknown role. A snapshot of a pool made before RBAC gets its
// Administrator assignments (see checkAccess). Fields this node does not know (at any depth) are kept and written back by
// MarshalSnapshot.
func (s *State) RestoreSnapshot(b []byte) error {
	var st pb.State
	if err := proto.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("restore state snapshot: %w: %w", fault.Internal, err)
	}
	byClient, byObject, ok := indexPrincipals(st.Pool.GetPrincipals())
	if !ok {
		return fmt.Errorf("restore state snapshot: %w: principals without IDs or sharing one", fault.Internal)
	}
	if err := checkAccess(st.Pool); err != nil {
		return fmt.Errorf("restore state snapshot: %w: %w", fault.Internal, err)
	}
	if err := checkNodes(st.Pool); err != nil {
		return fmt.Errorf("restore state snapshot: %w: %w", fault.Internal, err)
	}
	byPrincipal := indexAssignments(st.Pool.GetRoleAssignments())
	keys := make(map[string]*pb.KeyRecord, len(st.Keys))
	var live, deleted []string
	for _, rec := range st.Keys {
		if err := checkRecord(rec); err != nil {
			return fmt.Errorf("restore state snapshot: %w: %w", fault.Internal, err)
		}
		if keys[rec.Name] != nil {
			return fmt.Errorf("restore state snapshot: %w: key %q appears twice", fault.Internal, rec.Name)
		}
		keys[rec.Name] = rec
		if rec.Deletion == nil {
			live = append(live, rec.Name)
		} else {
			deleted = append(deleted, rec.Name)
		}
	}
	// MarshalSnapshot writes the keys sorted; sorting again costs little and does not trust it.
	slices.Sort(live)
	slices.Sort(deleted)

	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setIndex(st.AppliedIndex)
	s.pool, s.keys = st.Pool, keys
	s.live, s.deleted = live, deleted
	s.byClient, s.byObject, s.byPrincipal = byClient, byObject, byPrincipal
	s.unknown = st.ProtoReflect().GetUnknown()
	return nil
}

// checkAccess checks, and where needed repairs, what the access readers rely on in pool (which
// it may modify: it is the decoded snapshot, not yet stored). Custom roles and assignments are
// sorted by name (sorting again does not trust the writer), their names are unique, no custom
// role takes a built-in role's GUID, and every assignment has a principal and a role that
// exists and is assignable at its scope. A pool of a snapshot written before RBAC — principals marked administrator, no
// assignments — gets the Administrator assignments that InitPool would make today.
func checkAccess(pool *pb.PoolRecord) error {
	if pool == nil {
		return nil
	}
	defs := pool.RoleDefinitions
	slices.SortStableFunc(defs, func(a, b *pb.RoleDefinition) int { return strings.Compare(a.GetName(), b.GetName()) })
	for i, d := range defs {
		if d.GetName() == "" || (i > 0 && defs[i-1].GetName() == d.Name) {
			return fmt.Errorf("a role definition has no name or appears twice: %q", d.GetName())
		}
		if _, ok := authz.BuiltInRole(d.Name); ok {
			return fmt.Errorf("custom role definition %q has a built-in role's name", d.Name)
		}
	}
	as := pool.RoleAssignments
	if len(as) == 0 {
		pool.RoleAssignments = adminAssignments(pool.Principals)
		return nil
	}
	slices.SortStableFunc(as, func(a, b *pb.RoleAssignment) int { return strings.Compare(a.GetName(), b.GetName()) })
	for i, a := range as {
		if a.GetName() == "" || (i > 0 && as[i-1].GetName() == a.Name) {
			return fmt.Errorf("a role assignment has no name or appears twice: %q", a.GetName())
		}
		if a.PrincipalId == "" {
			return fmt.Errorf("role assignment %q has no principal", a.Name)
		}
		role, ok := authz.BuiltInRole(a.RoleDefinitionId)
		if j, found := searchDefinition(defs, a.RoleDefinitionId); !ok && found {
			role, ok = defs[j], true
		}
		if !ok {
			return fmt.Errorf("role assignment %q has an unknown role definition %q", a.Name, a.RoleDefinitionId)
		}
		if !covers(role.AssignableScopes, a.Scope) {
			return fmt.Errorf("role assignment %q is at scope %q, where its role cannot be assigned", a.Name, a.Scope)
		}
	}
	return nil
}

// checkRecord checks what the state's lookups rely on: a name, at least one version, unique
// non-empty version IDs.
func checkRecord(rec *pb.KeyRecord) error {
	if rec.GetName() == "" {
		return fmt.Errorf("a key has no name")
	}
	if len(rec.GetVersions()) == 0 {
		return fmt.Errorf("key %q has no versions", rec.Name)
	}
	seen := make(map[string]bool, len(rec.Versions))
	for _, v := range rec.Versions {
		if v.GetVersion() == "" || seen[v.Version] {
			return fmt.Errorf("key %q has a version without an ID or twice: %q", rec.Name, v.GetVersion())
		}
		seen[v.Version] = true
	}
	return nil
}
