package state

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/hsmpool/hsmpool/internal/authz"
	"github.com/hsmpool/hsmpool/internal/fault"
	"github.com/hsmpool/hsmpool/internal/rpcerr"
	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

// fataler is what the helpers need of a test: *testing.T, B and F, and *rapid.T.
type fataler interface {
	Helper()
	Fatalf(format string, args ...any)
}

// t0 is the proposer's clock in the tests: 2026-01-01T00:00:00Z.
const t0 = 1767225600

// Command builders. Each takes the command time; the tests use t0 + small offsets.

func cmdAt(t int64, op any) *pb.Command {
	c := &pb.Command{Id: fmt.Sprintf("cmd-%d", t), Time: t}
	switch o := op.(type) {
	case *pb.InitPool:
		c.Op = &pb.Command_InitPool{InitPool: o}
	case *pb.Activate:
		c.Op = &pb.Command_Activate{Activate: o}
	case *pb.PutKeyVersion:
		c.Op = &pb.Command_PutKeyVersion{PutKeyVersion: o}
	case *pb.UpdateKeyVersion:
		c.Op = &pb.Command_UpdateKeyVersion{UpdateKeyVersion: o}
	case *pb.DeleteKey:
		c.Op = &pb.Command_DeleteKey{DeleteKey: o}
	case *pb.RecoverKey:
		c.Op = &pb.Command_RecoverKey{RecoverKey: o}
	case *pb.PurgeKey:
		c.Op = &pb.Command_PurgeKey{PurgeKey: o}
	case *pb.RestoreKey:
		c.Op = &pb.Command_RestoreKey{RestoreKey: o}
	case *pb.SetRotationPolicy:
		c.Op = &pb.Command_SetRotationPolicy{SetRotationPolicy: o}
	case *pb.PutRoleDefinition:
		c.Op = &pb.Command_PutRoleDefinition{PutRoleDefinition: o}
	case *pb.DeleteRoleDefinition:
		c.Op = &pb.Command_DeleteRoleDefinition{DeleteRoleDefinition: o}
	case *pb.PutRoleAssignment:
		c.Op = &pb.Command_PutRoleAssignment{PutRoleAssignment: o}
	case *pb.DeleteRoleAssignment:
		c.Op = &pb.Command_DeleteRoleAssignment{DeleteRoleAssignment: o}
	case *pb.PutPrincipal:
		c.Op = &pb.Command_PutPrincipal{PutPrincipal: o}
	case *pb.DeletePrincipal:
		c.Op = &pb.Command_DeletePrincipal{DeletePrincipal: o}
	case *pb.AddCredential:
		c.Op = &pb.Command_AddCredential{AddCredential: o}
	case *pb.RemoveCredential:
		c.Op = &pb.Command_RemoveCredential{RemoveCredential: o}
	case *pb.PutJoinToken:
		c.Op = &pb.Command_PutJoinToken{PutJoinToken: o}
	case *pb.UseJoinToken:
		c.Op = &pb.Command_UseJoinToken{UseJoinToken: o}
	case *pb.PutNode:
		c.Op = &pb.Command_PutNode{PutNode: o}
	case *pb.DeleteNode:
		c.Op = &pb.Command_DeleteNode{DeleteNode: o}
	case nil:
	default:
		panic(fmt.Sprintf("cmdAt: %T is not an operation", op))
	}
	return c
}

// admin is the first administrator of the tests' pool, marked the pre-RBAC way: InitPool turns
// the mark into its Administrator assignment (rootAdmin).
func admin() *pb.PrincipalRecord {
	return setAdministrator(&pb.PrincipalRecord{
		ObjectId:    "0a1b2c3d-0000-4000-8000-00000000000a",
		ClientId:    "5e6f7a8b-0000-4000-8000-00000000000c",
		DisplayName: "admin",
		Secrets:     []*pb.SecretRecord{{Id: "s1", Hash: bytes.Repeat([]byte{7}, 32)}},
	}, true)
}

// setAdministrator sets p's deprecated pre-RBAC mark and returns p.
func setAdministrator(p *pb.PrincipalRecord, v bool) *pb.PrincipalRecord {
	//lint:ignore SA1019 the tests make pools as they were made before RBAC
	p.Administrator = v
	return p
}

// isAdministrator reads p's deprecated pre-RBAC mark.
func isAdministrator(p *pb.PrincipalRecord) bool {
	//lint:ignore SA1019 the tests check that the migration keeps the mark
	return p.Administrator
}

func initPool(t int64) *pb.Command {
	return cmdAt(t, &pb.InitPool{Name: "contoso", TenantId: "tenant-1", RecoverableDays: 30, Principals: []*pb.PrincipalRecord{admin()}})
}

func activate(t int64) *pb.Command {
	return cmdAt(t, &pb.Activate{
		SecurityDomain: []byte("sd-file"),
		OfficerCerts:   [][]byte{[]byte("c1"), []byte("c2"), []byte("c3")},
		Quorum:         2,
		KekCheck:       &pb.KEKCheck{Blob: []byte("b"), Iv: []byte("iv"), Ciphertext: []byte("ct"), Tag: []byte("tag")},
		BackupKey:      []byte("wrapped backup key"),
	})
}

// version returns a version of an EC key with a 32-hex ID made from id.
func version(id string) *pb.KeyVersion {
	return &pb.KeyVersion{
		Version: fmt.Sprintf("%032s", id),
		Kty:     "EC-HSM",
		Crv:     "P-256",
		KeyOps:  []string{"sign", "verify"},
		Public:  &pb.PublicKey{Crv: "P-256", X: bytes.Repeat([]byte{1}, 32), Y: bytes.Repeat([]byte{2}, 32)},
		Wrapped: bytes.Repeat([]byte{3}, 184),
		Attributes: &pb.KeyAttributes{
			Enabled: proto.Bool(true), RecoverableDays: 7, RecoveryLevel: "CustomizedRecoverable+Purgeable",
		},
		Tags: map[string]string{"env": "test"},
	}
}

func vid(id string) string { return fmt.Sprintf("%032s", id) }

func put(t int64, name, id string) *pb.Command {
	return cmdAt(t, &pb.PutKeyVersion{Name: name, Version: version(id)})
}

func del(t int64, name string) *pb.Command      { return cmdAt(t, &pb.DeleteKey{Name: name}) }
func undelete(t int64, name string) *pb.Command { return cmdAt(t, &pb.RecoverKey{Name: name}) }
func purge(t int64, name string) *pb.Command    { return cmdAt(t, &pb.PurgeKey{Name: name}) }

// mustApply applies cmds in order at indexes after the state's, failing on any error.
func mustApply(tb fataler, s *State, cmds ...*pb.Command) {
	tb.Helper()
	for _, c := range cmds {
		if err := s.Apply(s.Index()+1, c); err != nil {
			tb.Fatalf("apply %v: %v", c, err)
		}
	}
}

// newActive returns a state with an initialised, activated pool.
func newActive(tb testing.TB) *State {
	tb.Helper()
	s := New()
	mustApply(tb, s, initPool(t0), activate(t0+1))
	return s
}

// snap is the snapshot of s without its Raft index, which every command advances, refused or
// not: the bytes of the model alone.
func snap(tb fataler, s *State) []byte {
	tb.Helper()
	b, err := s.MarshalSnapshot()
	if err != nil {
		tb.Fatalf("MarshalSnapshot: %v", err)
	}
	var st pb.State
	if err := proto.Unmarshal(b, &st); err != nil {
		tb.Fatalf("unmarshal snapshot: %v", err)
	}
	st.AppliedIndex = 0
	if b, err = (proto.MarshalOptions{Deterministic: true}).Marshal(&st); err != nil {
		tb.Fatalf("marshal snapshot: %v", err)
	}
	return b
}

// checkErr fails unless err is an *rpcerr.Error equal to want (nil: err must be nil).
func checkErr(tb fataler, err error, want *rpcerr.Error) {
	tb.Helper()
	if want == nil {
		if err != nil {
			tb.Fatalf("error %v, want none", err)
		}
		return
	}
	var got *rpcerr.Error
	if !errors.As(err, &got) {
		tb.Fatalf("error %v (%T), want *rpcerr.Error %+v", err, err, want)
	}
	if got.Kind != want.Kind || got.Code != want.Code || got.Inner != want.Inner || got.Msg != want.Msg {
		tb.Fatalf("error\n got %v %q %q %q\nwant %v %q %q %q", got.Kind, got.Code, got.Inner, got.Msg, want.Kind, want.Code, want.Inner, want.Msg)
	}
	if !errors.Is(err, want.Kind) {
		tb.Fatalf("errors.Is(%v, %v) is false", err, want.Kind)
	}
}

// checkInvariants checks what the lookups rely on, from the inside: the name lists are sorted,
// disjoint, and exactly the live and deleted keys of the map; every key has versions with
// unique non-empty IDs; the principal indexes match the pool.
func checkInvariants(tb fataler, s *State) {
	tb.Helper()
	s.mu.RLock()
	defer s.mu.RUnlock()
	if !slices.IsSorted(s.live) || !slices.IsSorted(s.deleted) {
		tb.Fatalf("name lists not sorted: %q %q", s.live, s.deleted)
	}
	if len(s.live)+len(s.deleted) != len(s.keys) {
		tb.Fatalf("%d live + %d deleted names for %d keys", len(s.live), len(s.deleted), len(s.keys))
	}
	for _, n := range s.live {
		if r := s.keys[n]; r == nil || r.Deletion != nil || r.Name != n {
			tb.Fatalf("live name %q: record %v", n, r)
		}
	}
	for _, n := range s.deleted {
		if r := s.keys[n]; r == nil || r.Deletion == nil || r.Name != n {
			tb.Fatalf("deleted name %q: record %v", n, r)
		}
	}
	for n, r := range s.keys {
		if err := checkRecord(r); err != nil {
			tb.Fatalf("key %q: %v", n, err)
		}
	}
	if len(s.byClient) != len(s.pool.GetPrincipals()) || len(s.byObject) != len(s.pool.GetPrincipals()) {
		tb.Fatalf("principal indexes %d/%d for %d principals", len(s.byClient), len(s.byObject), len(s.pool.GetPrincipals()))
	}
	for _, p := range s.pool.GetPrincipals() {
		if s.byClient[strings.ToLower(p.ClientId)] != p || s.byObject[strings.ToLower(p.ObjectId)] != p {
			tb.Fatalf("principal %s is not indexed as itself", p.ObjectId)
		}
	}
	checkAccessInvariants(tb, s)
}

// checkAccessInvariants checks the access model: custom roles and assignments sorted by name
// and unique, every assignment of an existing role that covers its scope, and the index by
// principal exactly the assignments. The caller holds mu.
func checkAccessInvariants(tb fataler, s *State) {
	tb.Helper()
	defs, as := s.pool.GetRoleDefinitions(), s.pool.GetRoleAssignments()
	for i := 1; i < len(defs); i++ {
		if defs[i-1].Name >= defs[i].Name {
			tb.Fatalf("role definitions not sorted or not unique: %q, %q", defs[i-1].Name, defs[i].Name)
		}
	}
	for i, a := range as {
		if i > 0 && as[i-1].Name >= a.Name {
			tb.Fatalf("role assignments not sorted or not unique: %q, %q", as[i-1].Name, a.Name)
		}
		var role *pb.RoleDefinition
		if d, ok := authz.BuiltInRole(a.RoleDefinitionId); ok {
			role = d
		} else if j, ok := searchDefinition(defs, a.RoleDefinitionId); ok {
			role = defs[j]
		} else {
			tb.Fatalf("role assignment %s: unknown role %s", a.Name, a.RoleDefinitionId)
		}
		if !covers(role.AssignableScopes, a.Scope) {
			tb.Fatalf("role assignment %s at %s: role %s is assignable at %q only", a.Name, a.Scope, role.Name, role.AssignableScopes)
		}
	}
	want := indexAssignments(as)
	if len(want) != len(s.byPrincipal) {
		tb.Fatalf("assignments of %d principals indexed, want %d", len(s.byPrincipal), len(want))
	}
	for pid, l := range want {
		if !slices.Equal(s.byPrincipal[pid], l) {
			tb.Fatalf("assignments of %s: index %v, want %v", pid, s.byPrincipal[pid], l)
		}
	}
}

// Expected errors.

func notFound(id string) *rpcerr.Error {
	return &rpcerr.Error{Kind: fault.NotFound, Code: "KeyNotFound", Msg: "A key with (name/id) " + id +
		" was not found in this key vault. If you recently deleted this key you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182"}
}

func deletedNotFound(name string) *rpcerr.Error {
	return &rpcerr.Error{Kind: fault.NotFound, Code: "KeyNotFound", Msg: "Deleted Key not found: " + name}
}

func deletedButRecoverable(name string) *rpcerr.Error {
	return &rpcerr.Error{Kind: fault.Conflict, Code: "Conflict", Inner: "ObjectIsDeletedButRecoverable",
		Msg: "Key " + name + " is currently in a deleted but recoverable state, and its name cannot be reused; in this state, the key can only be recovered or purged."}
}

func conflict(msg string) *rpcerr.Error {
	return &rpcerr.Error{Kind: fault.Conflict, Code: "Conflict", Msg: msg}
}

func badParameter(msg string) *rpcerr.Error {
	return &rpcerr.Error{Kind: fault.BadParameter, Code: "BadParameter", Msg: msg}
}

var (
	notActivated   = &rpcerr.Error{Kind: fault.Conflict, Code: "Conflict", Inner: "PoolNotActivated", Msg: "the pool is not activated"}
	notInitialized = &rpcerr.Error{Kind: fault.Conflict, Code: "Conflict", Inner: "PoolNotInitialized", Msg: "the pool is not initialized"}
)

// scramble changes m in place, deeply: every byte slice, list element and map value is
// overwritten where it lies and every field then cleared, so that a state that kept a pointer
// into a command (instead of a copy) shows the change.
func scramble(m protoreflect.Message) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				switch fd.Kind() {
				case protoreflect.MessageKind, protoreflect.GroupKind:
					scramble(l.Get(i).Message())
				case protoreflect.BytesKind:
					scrambleBytes(l.Get(i).Bytes())
				case protoreflect.StringKind:
					l.Set(i, protoreflect.ValueOfString("scrambled"))
				}
			}
		case fd.IsMap():
			mp := v.Map()
			mp.Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				if fd.MapValue().Kind() == protoreflect.MessageKind {
					scramble(mv.Message())
				} else if fd.MapValue().Kind() == protoreflect.StringKind {
					mp.Set(k, protoreflect.ValueOfString("scrambled"))
				}
				return true
			})
		case fd.Kind() == protoreflect.MessageKind:
			scramble(v.Message())
		case fd.Kind() == protoreflect.BytesKind:
			scrambleBytes(v.Bytes())
		}
		m.Clear(fd)
		return true
	})
}

func scrambleBytes(b []byte) {
	for i := range b {
		b[i] ^= 0xa5
	}
}
