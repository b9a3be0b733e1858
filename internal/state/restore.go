package state

import (
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/hsmpool/hsmpool/internal/authz"
	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

// restored is the part of a change that RestoreState makes to the keys and the assignment index:
// all of it is replaced.
type restored struct {
	keys          map[string]*pb.KeyRecord
	live, deleted []string
	byPrincipal   map[string][]*pb.RoleAssignment
}

// restoreState plans a full restore. The backup's keys (live and deleted, with their rotation
// policies), custom role definitions and role assignments replace the pool's; its principals are
// added to the pool's, a principal whose object or client ID the pool already has keeping the
// pool's record; the pool record's identity (name, tenant, security domain, KEK, recovery
// fields) stays. The backup's state is checked as RestoreSnapshot checks a snapshot, but a
// failed check is a BadParameter: the command is refused, the node goes on. The pool's own
// principals that the backup does not have keep their role assignments (and the custom roles
// those use), so that the restore cannot lock out the administrators who run it; and if the
// backup has no Administrator at "/", the pool's own Administrator assignments at "/" stay too.
func (s *State) restoreState(op *pb.RestoreState) (change, error) {
	if err := s.requireActive(); err != nil {
		return change{}, err
	}
	if op.GetState() == nil {
		return change{}, errBadParameter("the restore holds no state")
	}
	st := proto.Clone(op.State).(*pb.State)

	r := &restored{keys: make(map[string]*pb.KeyRecord, len(st.Keys))}
	for _, rec := range st.Keys {
		if err := checkRecord(rec); err != nil {
			return change{}, errBadParameter("the backup is not valid: %v", err)
		}
		if r.keys[rec.Name] != nil {
			return change{}, errBadParameter("the backup is not valid: key %q appears twice", rec.Name)
		}
		r.keys[rec.Name] = rec
		if rec.Deletion == nil {
			r.live = append(r.live, rec.Name)
		} else {
			r.deleted = append(r.deleted, rec.Name)
		}
	}
	slices.Sort(r.live)
	slices.Sort(r.deleted)

	// The backup's access records, checked (and a pre-RBAC backup migrated) on a pool record
	// of their own.
	bp := &pb.PoolRecord{}
	if p := st.Pool; p != nil {
		bp.Principals, bp.RoleDefinitions, bp.RoleAssignments = p.Principals, p.RoleDefinitions, p.RoleAssignments
	}
	if _, _, ok := indexPrincipals(bp.Principals); !ok {
		return change{}, errBadParameter("the backup is not valid: principals without IDs or sharing one")
	}
	if err := checkAccess(bp); err != nil {
		return change{}, errBadParameter("the backup is not valid: %v", err)
	}

	pool := shallowCopy(s.pool)
	pool.Principals = slices.Clone(s.pool.Principals)
	for _, p := range bp.Principals {
		if s.byObject[strings.ToLower(p.ObjectId)] != nil || s.byClient[strings.ToLower(p.ClientId)] != nil ||
			s.byObject[strings.ToLower(p.ClientId)] != nil || s.byClient[strings.ToLower(p.ObjectId)] != nil {
			continue // the pool's record wins
		}
		pool.Principals = append(pool.Principals, p)
	}
	if len(pool.Principals) > maxPrincipals {
		return change{}, errLimit("PrincipalLimitExceeded", "the restore would leave the pool with %d principals; the most is %d", len(pool.Principals), maxPrincipals)
	}
	byClient, byObject, ok := indexPrincipals(pool.Principals)
	if !ok {
		return change{}, errBadParameter("the backup's principals clash with the pool's")
	}

	// The pool's own principals (those the backup does not have) keep their assignments, and the
	// custom roles those use: a restore must not lock out the operators who run it (they poll the
	// job as themselves), and their principals are merged, so their grants are too.
	inBackup := make(map[string]bool, len(bp.Principals))
	for _, p := range bp.Principals {
		inBackup[strings.ToLower(p.ObjectId)] = true
	}
	defs, as := slices.Clone(bp.RoleDefinitions), slices.Clone(bp.RoleAssignments)
	for _, a := range s.pool.RoleAssignments {
		if inBackup[strings.ToLower(a.PrincipalId)] || s.byObject[strings.ToLower(a.PrincipalId)] == nil {
			continue // the backup's principal, or one known only by its token (external): the backup decides
		}
		i, found := searchAssignment(as, a.Name)
		if found {
			continue
		}
		as = slices.Insert(as, i, a)
		if _, builtIn := authz.BuiltInRole(a.RoleDefinitionId); builtIn {
			continue
		}
		if j, found := searchDefinition(defs, a.RoleDefinitionId); !found {
			if k, ok := searchDefinition(s.pool.RoleDefinitions, a.RoleDefinitionId); ok {
				defs = slices.Insert(defs, j, s.pool.RoleDefinitions[k])
			}
		}
	}
	// A backup without an Administrator at "/" (a state cannot hold one, a backup may) keeps the
	// pool's own Administrator assignments at "/".
	if countRootAdmins(as, "") == 0 {
		for _, a := range s.pool.RoleAssignments {
			if !isRootAdmin(a) {
				continue
			}
			if i, found := searchAssignment(as, a.Name); found {
				as[i] = a
			} else {
				as = slices.Insert(as, i, a)
			}
		}
	}
	pool.RoleDefinitions = defs
	pool.RoleAssignments = as
	r.byPrincipal = indexAssignments(as)
	return change{pool: pool, byClient: byClient, byObject: byObject, restore: r}, nil
}
