package state

import (
	"maps"
	"math"
	"slices"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

// secondsPerDay turns recoverable days into the scheduled purge date, as Azure does
// (scheduledPurgeDate = deletedDate + recoverableDays·86400).
const secondsPerDay = 86400

// change is what a valid command does to the state, computed before anything changes so
// that a command that fails changes nothing.
type change struct {
	// pool, when set, replaces the pool record (and the principal indexes, which are built
	// with it).
	pool               *pb.PoolRecord
	byClient, byObject map[string]*pb.PrincipalRecord
	// byPrincipal holds the new assignment lists of the principals whose assignments change
	// (lowercased object ID; an empty list: none left). Apply merges it into the index.
	byPrincipal map[string][]*pb.RoleAssignment
	// name, when set, is the key that changes: rec replaces it, or removes it when nil.
	name string
	rec  *pb.KeyRecord
	// restore, when set, replaces every key and the whole assignment index (RestoreState).
	restore *restored
}

// Apply applies cmd, the command at Raft index idx, and returns nil or the *rpcerr.Error that
// refused it. It uses nothing but cmd and the state (Command.time is the only clock), so every
// node returns the same result and reaches the same state. A refused command changes nothing
// except Index, which becomes idx either way. Apply never panics on a malformed command: a nil
// cmd, a missing operation or a missing field is refused (BadParameter, or not found when the
// missing field is a name).
//
// Apply does not keep cmd or anything it points to: what it stores is cloned, so the caller may
// reuse cmd.
func (s *State) Apply(idx uint64, cmd *pb.Command) error {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	// Holding applyMu, this goroutine is the only writer: plan reads the state without mu.
	c, err := s.plan(cmd)

	s.mu.Lock()
	defer s.mu.Unlock()
	s.setIndex(idx)
	if err != nil {
		return err
	}
	if c.pool != nil {
		s.pool, s.byClient, s.byObject = c.pool, c.byClient, c.byObject
	}
	for pid, as := range c.byPrincipal {
		if len(as) == 0 {
			delete(s.byPrincipal, pid)
		} else {
			s.byPrincipal[pid] = as
		}
	}
	if c.name != "" {
		s.setKey(c.name, c.rec)
	}
	if r := c.restore; r != nil {
		s.keys, s.live, s.deleted, s.byPrincipal = r.keys, r.live, r.deleted, r.byPrincipal
	}
	return nil
}

// plan validates cmd against the state and returns the change it makes. It must not modify
// the state or anything stored in it.
func (s *State) plan(cmd *pb.Command) (change, error) {
	if cmd == nil {
		return change{}, errBadParameter("the command is empty")
	}
	if cmd.Time < 0 {
		return change{}, errBadParameter("the command time %d is before 1970", cmd.Time)
	}
	t := cmd.Time
	// Each case checks op for nil: a Command built in Go (not decoded) may hold a typed nil.
	switch op := cmd.Op.(type) {
	case *pb.Command_InitPool:
		if op != nil {
			return s.initPool(t, op.InitPool)
		}
	case *pb.Command_Activate:
		if op != nil {
			return s.activate(t, op.Activate)
		}
	case *pb.Command_PutKeyVersion:
		if op != nil {
			return s.putKeyVersion(t, op.PutKeyVersion)
		}
	case *pb.Command_UpdateKeyVersion:
		if op != nil {
			return s.updateKeyVersion(t, op.UpdateKeyVersion)
		}
	case *pb.Command_DeleteKey:
		if op != nil {
			return s.deleteKey(t, op.DeleteKey)
		}
	case *pb.Command_RecoverKey:
		if op != nil {
			return s.recoverKey(op.RecoverKey)
		}
	case *pb.Command_PurgeKey:
		if op != nil {
			return s.purgeKey(op.PurgeKey)
		}
	case *pb.Command_RestoreKey:
		if op != nil {
			return s.restoreKey(op.RestoreKey)
		}
	case *pb.Command_SetRotationPolicy:
		if op != nil {
			return s.setRotationPolicy(t, op.SetRotationPolicy)
		}
	case *pb.Command_PutRoleDefinition:
		if op != nil {
			return s.putRoleDefinition(op.PutRoleDefinition)
		}
	case *pb.Command_DeleteRoleDefinition:
		if op != nil {
			return s.deleteRoleDefinition(op.DeleteRoleDefinition)
		}
	case *pb.Command_PutRoleAssignment:
		if op != nil {
			return s.putRoleAssignment(op.PutRoleAssignment)
		}
	case *pb.Command_DeleteRoleAssignment:
		if op != nil {
			return s.deleteRoleAssignment(op.DeleteRoleAssignment)
		}
	case *pb.Command_PutPrincipal:
		if op != nil {
			return s.putPrincipal(t, op.PutPrincipal)
		}
	case *pb.Command_DeletePrincipal:
		if op != nil {
			return s.deletePrincipal(op.DeletePrincipal)
		}
	case *pb.Command_AddCredential:
		if op != nil {
			return s.addCredential(t, op.AddCredential)
		}
	case *pb.Command_RemoveCredential:
		if op != nil {
			return s.removeCredential(op.RemoveCredential)
		}
	case *pb.Command_RestoreState:
		if op != nil {
			return s.restoreState(op.RestoreState)
		}
	case *pb.Command_PutJoinToken:
		if op != nil {
			return s.putJoinToken(t, op.PutJoinToken)
		}
	case *pb.Command_UseJoinToken:
		if op != nil {
			return s.useJoinToken(t, op.UseJoinToken)
		}
	case *pb.Command_PutNode:
		if op != nil {
			return s.putNode(t, op.PutNode)
		}
	case *pb.Command_DeleteNode:
		if op != nil {
			return s.deleteNode(op.DeleteNode)
		}
	}
	// An op this node does not know (nil here, with the bytes kept as unknown fields) comes
	// from a newer proposer; docs/state.md says why that must not happen.
	return change{}, errBadParameter("the command has no operation this node knows")
}

func (s *State) initPool(t int64, op *pb.InitPool) (change, error) {
	if s.pool != nil {
		return change{}, errConflict("the pool is already initialized")
	}
	if op.GetName() == "" {
		return change{}, errBadParameter("the pool name is empty")
	}
	if d := op.GetRecoverableDays(); d < 7 || d > 90 {
		return change{}, errBadParameter("recoverable days must be between 7 and 90, not %d", d)
	}
	if op.GetRecovery() && (len(op.GetExchangeCert()) == 0 || op.GetExchangeKeyLabel() == "") {
		return change{}, errBadParameter("a recovery pool needs its exchange certificate and the label of its exchange key")
	}
	// Clone first: a nil entry becomes an empty principal, which the index refuses.
	ps := make([]*pb.PrincipalRecord, len(op.GetPrincipals()))
	for i, p := range op.GetPrincipals() {
		ps[i] = proto.Clone(p).(*pb.PrincipalRecord)
	}
	byClient, byObject, ok := indexPrincipals(ps)
	if !ok {
		return change{}, errBadParameter("every principal needs an object ID and a client ID, and no two may share one")
	}
	var as []*pb.RoleAssignment
	if len(op.GetAssignments()) == 0 {
		// A pool made before RBAC, or by a proposer that still marks its administrators.
		as = adminAssignments(ps)
	} else {
		//lint:ignore SA1019 migration from the pre-RBAC mark
		if i := slices.IndexFunc(ps, func(p *pb.PrincipalRecord) bool { return p.Administrator }); i >= 0 {
			// Kept out so that a state holding the mark always holds the assignments made
			// from it: that is how RestoreSnapshot tells a snapshot written before RBAC.
			return change{}, errBadParameter("principal %s is marked administrator, the pre-RBAC mark, and the command has role assignments: use only the assignments", ps[i].ObjectId)
		}
		for _, a := range op.GetAssignments() {
			a = cloneOrNew(a)
			if err := checkAssignment(as, nil, a); err != nil {
				return change{}, err
			}
			i, _ := searchAssignment(as, a.Name)
			as = slices.Insert(as, i, a)
		}
	}
	pool := &pb.PoolRecord{
		Name:            op.GetName(),
		TenantId:        op.GetTenantId(),
		Created:         t,
		RecoverableDays: op.GetRecoverableDays(),
		Principals:      ps,
		RoleAssignments: as,
	}
	if op.GetRecovery() {
		pool.Recovery, pool.ExchangeCert, pool.ExchangeKeyLabel = true, append([]byte(nil), op.GetExchangeCert()...), op.GetExchangeKeyLabel()
	}
	return change{pool: pool, byClient: byClient, byObject: byObject, byPrincipal: indexAssignments(as)}, nil
}

func (s *State) activate(t int64, op *pb.Activate) (change, error) {
	switch {
	case s.pool == nil:
		return change{}, errNotInitialized()
	case s.pool.Activated:
		return change{}, errConflict("the pool is already activated")
	case op.GetRecovered() && !s.pool.Recovery:
		return change{}, errConflict("the pool is not in recovery mode: it is activated by downloading its security domain, not by an upload")
	case !op.GetRecovered() && s.pool.Recovery:
		return change{}, errConflict("the pool is in recovery mode: it is activated by uploading a restore blob, not by a download")
	}
	op = cloneOrNew(op)
	pool := shallowCopy(s.pool)
	pool.Recovered = op.Recovered
	pool.SecurityDomain = op.SecurityDomain
	pool.OfficerCerts = op.OfficerCerts
	pool.Quorum = op.Quorum
	pool.KekCheck = op.KekCheck
	pool.BackupKey = op.BackupKey
	pool.KekLabel = op.KekLabel
	pool.Activated = true
	pool.ActivatedAt = t
	return change{pool: pool, byClient: s.byClient, byObject: s.byObject}, nil
}

// requireActive refuses key commands on a pool that has no domain KEK yet.
func (s *State) requireActive() error {
	if !s.pool.GetActivated() {
		return errNotActivated()
	}
	return nil
}

// liveKey returns the live key named name, or KeyNotFound.
func (s *State) liveKey(name string) (*pb.KeyRecord, error) {
	rec := s.keys[name]
	if rec == nil || rec.Deletion != nil {
		return nil, errKeyNotFound(name)
	}
	return rec, nil
}

func (s *State) putKeyVersion(t int64, op *pb.PutKeyVersion) (change, error) {
	if err := s.requireActive(); err != nil {
		return change{}, err
	}
	name := op.GetName()
	if name == "" {
		return change{}, errBadParameter("the key name is empty")
	}
	if op.GetVersion().GetVersion() == "" {
		return change{}, errBadParameter("the new version of key %s has no version ID", name)
	}
	rec := s.keys[name]
	switch {
	case rec == nil:
	case rec.Deletion != nil:
		return change{}, errDeletedButRecoverable(name)
	case versionIndex(rec, op.Version.Version) >= 0:
		return change{}, errConflict("key %s already has version %s", name, op.Version.Version)
	case op.GetMaxVersions() > 0 && len(rec.Versions) >= int(op.GetMaxVersions()):
		return change{}, errBadParameter("key %s has reached the maximum of %d versions", name, op.GetMaxVersions())
	}
	v := proto.Clone(op.Version).(*pb.KeyVersion)
	if v.Attributes == nil {
		v.Attributes = &pb.KeyAttributes{}
	}
	if v.Attributes.Created == 0 {
		v.Attributes.Created = t
	}
	if v.Attributes.Updated == 0 {
		v.Attributes.Updated = t
	}
	if rec == nil {
		return change{name: name, rec: &pb.KeyRecord{Name: name, Versions: []*pb.KeyVersion{v}}}, nil
	}
	n := shallowCopy(rec)
	// Clip forces append to copy: the old slice's spare capacity may be shared with readers.
	n.Versions = append(slices.Clip(rec.Versions), v)
	return change{name: name, rec: n}, nil
}

func (s *State) updateKeyVersion(t int64, op *pb.UpdateKeyVersion) (change, error) {
	name := op.GetName()
	rec, err := s.liveKey(name)
	if err != nil {
		return change{}, err
	}
	i := versionIndex(rec, op.GetVersion())
	if i < 0 {
		return change{}, errKeyNotFound(name + "/" + op.GetVersion())
	}
	old := rec.Versions[i]
	if rp := op.GetReleasePolicy(); rp != nil && old.GetReleasePolicy().GetImmutable() && !proto.Equal(rp, old.ReleasePolicy) {
		return change{}, errBadParameter("the release policy of key %s is immutable and cannot be changed", name)
	}

	v := shallowCopy(old)
	attrs := cloneOrNew(old.Attributes)
	if op.KeyOps != nil {
		v.KeyOps = slices.Clone(op.KeyOps.Ops)
	}
	if op.Enabled != nil {
		attrs.Enabled = proto.Bool(*op.Enabled)
	}
	if op.NotBefore != nil {
		attrs.NotBefore = nonZero(*op.NotBefore)
	}
	if op.Expires != nil {
		attrs.Expires = nonZero(*op.Expires)
	}
	if op.Tags != nil {
		v.Tags = maps.Clone(op.Tags.Tags)
	}
	if op.ReleasePolicy != nil {
		v.ReleasePolicy = proto.Clone(op.ReleasePolicy).(*pb.ReleasePolicy)
	}
	attrs.Updated = t
	v.Attributes = attrs

	n := shallowCopy(rec)
	n.Versions = slices.Clone(rec.Versions)
	n.Versions[i] = v
	return change{name: name, rec: n}, nil
}

// current returns the current (latest) version of rec; nil only for a record without versions,
// which Apply and RestoreSnapshot never store.
func current(rec *pb.KeyRecord) *pb.KeyVersion {
	if n := len(rec.GetVersions()); n > 0 {
		return rec.Versions[n-1]
	}
	return nil
}

// nonZero is the optional form of a time in an update: 0 clears it.
func nonZero(v int64) *int64 {
	if v == 0 {
		return nil
	}
	return proto.Int64(v)
}

func (s *State) deleteKey(t int64, op *pb.DeleteKey) (change, error) {
	name := op.GetName()
	rec, err := s.liveKey(name)
	if err != nil {
		return change{}, err
	}
	// The retention is the key's own (set by the core at creation, kept by backup and
	// restore); the pool's setting covers keys that carry none.
	days := current(rec).GetAttributes().GetRecoverableDays()
	if days <= 0 {
		days = s.pool.GetRecoverableDays()
	}
	n := shallowCopy(rec)
	n.Deletion = &pb.Deletion{DeletedDate: t, ScheduledPurgeDate: addSeconds(t, int64(max(days, 0))*secondsPerDay)}
	return change{name: name, rec: n}, nil
}

// addSeconds is t+d saturated at the largest time, so that an absurd proposer clock cannot
// wrap a purge date into the past.
func addSeconds(t, d int64) int64 {
	if t > math.MaxInt64-d {
		return math.MaxInt64
	}
	return t + d
}

func (s *State) recoverKey(op *pb.RecoverKey) (change, error) {
	name := op.GetName()
	rec := s.keys[name]
	if rec == nil || rec.Deletion == nil {
		return change{}, errDeletedKeyNotFound(name)
	}
	n := shallowCopy(rec)
	n.Deletion = nil
	return change{name: name, rec: n}, nil
}

func (s *State) purgeKey(op *pb.PurgeKey) (change, error) {
	name := op.GetName()
	rec := s.keys[name]
	if rec == nil || rec.Deletion == nil {
		return change{}, errDeletedKeyNotFound(name)
	}
	return change{name: name}, nil
}

func (s *State) restoreKey(op *pb.RestoreKey) (change, error) {
	if err := s.requireActive(); err != nil {
		return change{}, err
	}
	name := op.GetKey().GetName()
	if name == "" {
		return change{}, errBadParameter("the key to restore has no name")
	}
	switch rec := s.keys[name]; {
	case rec == nil:
	case rec.Deletion != nil:
		return change{}, errDeletedButRecoverable(name)
	default:
		return change{}, errConflict("Key %s already exists", name)
	}
	// Clone first: a nil version becomes an empty one, which the checks below refuse.
	rec := proto.Clone(op.Key).(*pb.KeyRecord)
	if len(rec.Versions) == 0 {
		return change{}, errBadParameter("the backup of key %s holds no versions", name)
	}
	seen := make(map[string]bool, len(rec.Versions))
	for _, v := range rec.Versions {
		switch {
		case v.Version == "":
			return change{}, errBadParameter("the backup of key %s holds a version without an ID", name)
		case seen[v.Version]:
			return change{}, errBadParameter("the backup of key %s holds version %s twice", name, v.Version)
		}
		seen[v.Version] = true
	}
	rec.Deletion = nil
	return change{name: name, rec: rec}, nil
}

func (s *State) setRotationPolicy(t int64, op *pb.SetRotationPolicy) (change, error) {
	name := op.GetName()
	rec, err := s.liveKey(name)
	if err != nil {
		return change{}, err
	}
	n := shallowCopy(rec)
	p := op.GetPolicy()
	if len(p.GetLifetimeActions()) == 0 && p.GetExpiryTime() == "" {
		// Azure's empty policy removes the policy.
		n.RotationPolicy = nil
		return change{name: name, rec: n}, nil
	}
	np := proto.Clone(p).(*pb.RotationPolicy)
	np.Created = t
	if rec.RotationPolicy != nil {
		np.Created = rec.RotationPolicy.Created
	}
	np.Updated = t
	n.RotationPolicy = np
	return change{name: name, rec: n}, nil
}

// shallowCopy returns a new message with the same fields as m (including unknown fields, so that
// what a newer node wrote survives), sharing every message, list, map and byte slice with m. It
// is how Apply changes a stored record without modifying it: the caller then replaces the fields
// it changes with new values, and must never modify a shared one in place. It goes through
// protoreflect rather than naming the fields so that a field added to the proto later is not
// silently dropped.
func shallowCopy[M proto.Message](m M) M {
	src := m.ProtoReflect()
	dst := src.New()
	src.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		dst.Set(fd, v)
		return true
	})
	if u := src.GetUnknown(); len(u) > 0 {
		dst.SetUnknown(u)
	}
	return dst.Interface().(M)
}

// cloneOrNew returns a deep copy of m, or a new empty message when m is nil.
func cloneOrNew[M interface {
	proto.Message
	*T
}, T any](m M) M {
	if m == nil {
		return M(new(T))
	}
	return proto.Clone(m).(M)
}
