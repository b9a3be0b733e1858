package state

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/hsmpool/hsmpool/internal/authz"
	"github.com/hsmpool/hsmpool/internal/fault"
	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

// richCommands builds a state that uses every field the commands can set.
func richCommands() []*pb.Command {
	p2 := admin()
	p2.ObjectId, p2.ClientId = "obj-2", "client-2"
	setAdministrator(p2, false)
	tags := map[string]string{}
	for i := range 40 {
		tags[fmt.Sprintf("tag-%02d", i)] = fmt.Sprint(i)
	}
	rsa := &pb.KeyVersion{
		Version: vid("aa"), Kty: "RSA-HSM", Bits: 2048, KeyOps: []string{"encrypt", "decrypt"},
		Public:  &pb.PublicKey{N: bytes.Repeat([]byte{9}, 256), E: []byte{1, 0, 1}},
		Wrapped: bytes.Repeat([]byte{8}, 1232),
		Attributes: &pb.KeyAttributes{Enabled: proto.Bool(true), NotBefore: proto.Int64(t0), Expires: proto.Int64(t0 + 365*day),
			RecoverableDays: 90, RecoveryLevel: "CustomizedRecoverable", Exportable: proto.Bool(true)},
		Tags:          tags,
		ReleasePolicy: &pb.ReleasePolicy{ContentType: "application/json; charset=utf-8", Immutable: true, Data: []byte(`{}`)},
	}
	return []*pb.Command{
		cmdAt(t0, &pb.InitPool{Name: "contoso", TenantId: "tenant", RecoverableDays: 14, Principals: []*pb.PrincipalRecord{admin(), p2}}),
		activate(t0 + 1),
		cmdAt(t0+2, &pb.PutKeyVersion{Name: "rsa", Version: rsa}),
		put(t0+3, "rsa", "bb"),
		cmdAt(t0+4, &pb.UpdateKeyVersion{Name: "rsa", Version: vid("bb"), Tags: &pb.Tags{Tags: tags}, KeyOps: &pb.KeyOps{Ops: []string{"sign"}}}),
		cmdAt(t0+5, &pb.SetRotationPolicy{Name: "rsa", Policy: &pb.RotationPolicy{
			LifetimeActions: []*pb.LifetimeAction{{TimeAfterCreate: "P90D", Action: "Rotate"}, {TimeBeforeExpiry: "P30D", Action: "Notify"}},
			ExpiryTime:      "P2Y",
		}}),
		put(t0+6, "ec", "1"),
		put(t0+7, "gone", "1"),
		put(t0+7, "gone", "2"),
		del(t0+8, "gone"),
		put(t0+9, "back", "1"),
		del(t0+9, "back"),
		undelete(t0+10, "back"),
		put(t0+11, "purged", "1"),
		del(t0+11, "purged"),
		purge(t0+12, "purged"),
		cmdAt(t0+13, &pb.RestoreKey{Key: &pb.KeyRecord{Name: "restored", Versions: []*pb.KeyVersion{version("1"), version("2")}}}),
		put(t0+14, "A-upper", "1"),
		putRole(customRole(2, "/keys")),
		putRole(customRole(1)),
		putPrincipal(principal(1, secret("s1"), cert("c1"))),
		putPrincipal(principal(2, secret("s1"))),
		addSecret(objectID(1), secret("s2")),
		addCert(objectID(2), cert("c2")),
		removeCredential(objectID(1), "s1"),
		assign(3, "/keys/rsa", roleID(2), objectID(1)),
		assign(1, "/", authz.CryptoUserRoleID, objectID(1)),
		assign(2, "/", authz.AdministratorRoleID, objectID(2)),
		assign(4, "/keys", roleID(1), "11111111-2222-4333-8444-555555555555"),
		putPrincipal(principal(3)),
		assign(5, "/", authz.CryptoUserRoleID, objectID(3)),
		deletePrincipal(objectID(3)),
	}
}

// checkSameAccess fails unless the access readers of got and want agree.
func checkSameAccess(t *testing.T, got, want *State) {
	t.Helper()
	eq := func(what string, g, w []proto.Message) {
		t.Helper()
		if len(g) != len(w) {
			t.Fatalf("%s: %d, want %d", what, len(g), len(w))
		}
		for i := range g {
			if !proto.Equal(g[i], w[i]) {
				t.Errorf("%s[%d] = %v, want %v", what, i, g[i], w[i])
			}
		}
	}
	msgs := func(l any) []proto.Message {
		var out []proto.Message
		switch l := l.(type) {
		case []*pb.RoleDefinition:
			for _, m := range l {
				out = append(out, m)
			}
		case []*pb.RoleAssignment:
			for _, m := range l {
				out = append(out, m)
			}
		case []*pb.PrincipalRecord:
			for _, m := range l {
				out = append(out, m)
			}
		}
		return out
	}
	eq("RoleDefinitions", msgs(got.RoleDefinitions()), msgs(want.RoleDefinitions()))
	eq("RoleAssignments", msgs(got.RoleAssignments()), msgs(want.RoleAssignments()))
	eq("Principals", msgs(got.Principals()), msgs(want.Principals()))
	for _, p := range want.Principals() {
		eq("AssignmentsOf "+p.ObjectId, msgs(got.AssignmentsOf(p.ObjectId)), msgs(want.AssignmentsOf(p.ObjectId)))
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	s := New()
	mustApply(t, s, richCommands()...)
	b := snap(t, s)

	r := newActive(t)
	mustApply(t, r, put(t0, "stale", "1")) // RestoreSnapshot must replace everything
	raw, err := s.MarshalSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	if err := r.RestoreSnapshot(raw); err != nil {
		t.Fatal(err)
	}
	if got := snap(t, r); !bytes.Equal(got, b) {
		t.Fatal("MarshalSnapshot after RestoreSnapshot differs")
	}
	checkInvariants(t, r)
	if r.Index() != s.Index() || s.Index() == 0 {
		t.Errorf("Index() after restore = %d, want %d", r.Index(), s.Index())
	}
	if !proto.Equal(r.Pool(), s.Pool()) {
		t.Errorf("pool %v, want %v", r.Pool(), s.Pool())
	}
	for _, deleted := range []bool{false, true} {
		got, _ := r.List(deleted, "", 100)
		want, _ := s.List(deleted, "", 100)
		if len(got) != len(want) {
			t.Fatalf("List(%t): %d keys, want %d", deleted, len(got), len(want))
		}
		for i := range got {
			if !proto.Equal(got[i], want[i]) {
				t.Errorf("List(%t)[%d] = %v, want %v", deleted, i, got[i], want[i])
			}
		}
	}
	if p, ok := r.PrincipalByClientID("CLIENT-2"); !ok || p.ObjectId != "obj-2" {
		t.Errorf("PrincipalByClientID after restore = %v, %t", p, ok)
	}
	if p, ok := r.Principal(admin().ObjectId); !ok || p.ClientId != admin().ClientId {
		t.Errorf("Principal after restore = %v, %t", p, ok)
	}
	if got := r.RoleAssignments(); len(got) != 5 {
		t.Errorf("RoleAssignments() after restore = %v", got)
	}
	checkSameAccess(t, r, s)

	// Both go on alike: the same tail gives the same state.
	tail := []*pb.Command{put(t0+20, "ec", "2"), del(t0+21, "rsa"), undelete(t0+22, "gone"), purge(t0+23, "rsa"), put(t0+24, "gone", "3"),
		unassign(assignmentID(1)), assign(6, "/keys/ec", roleID(1), objectID(2)), deletePrincipal(objectID(2)), deleteRole(roleID(2)),
		deletePrincipal(objectID(1)), deleteRole(roleID(2)), unassign(adminAssignmentID)}
	for _, c := range tail {
		e1, e2 := s.Apply(s.Index()+1, c), r.Apply(r.Index()+1, c)
		if fmt.Sprint(e1) != fmt.Sprint(e2) {
			t.Fatalf("%v: %v on the original, %v on the restored state", c, e1, e2)
		}
	}
	if !bytes.Equal(snap(t, s), snap(t, r)) {
		t.Error("the original and the restored state differ after the same tail")
	}
	checkSameAccess(t, r, s)
}

// TestSnapshotMigration restores a snapshot written before RBAC: principals marked administrator,
// no assignments. The node must make the assignments that a node replaying the pool's InitPool
// makes, so that both hold the same state.
func TestSnapshotMigration(t *testing.T) {
	second := setAdministrator(principal(2), true)
	replayed := New()
	mustApply(t, replayed, cmdAt(t0, &pb.InitPool{Name: "contoso", RecoverableDays: 7, Principals: []*pb.PrincipalRecord{admin(), principal(1), second}}),
		activate(t0+1), put(t0+2, "k", "1"))
	want := snap(t, replayed)

	var st pb.State
	if err := proto.Unmarshal(want, &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Pool.RoleAssignments) != 2 {
		t.Fatalf("InitPool made %d assignments, want 2", len(st.Pool.RoleAssignments))
	}
	st.Pool.RoleAssignments = nil // as a node before RBAC wrote it
	old, err := proto.MarshalOptions{Deterministic: true}.Marshal(&st)
	if err != nil {
		t.Fatal(err)
	}

	r := New()
	if err := r.RestoreSnapshot(old); err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, r)
	if !bytes.Equal(snap(t, r), want) {
		t.Fatal("the restored pre-RBAC snapshot differs from the pool made by replaying its InitPool")
	}
	checkSameAccess(t, r, replayed)
	if got := r.AssignmentsOf(objectID(2)); len(got) != 1 || got[0].Name != adminAssignmentName(objectID(2)) {
		t.Errorf("AssignmentsOf(second administrator) = %v", got)
	}
	// Both go on alike.
	for _, c := range []*pb.Command{unassign(adminAssignmentID), deletePrincipal(objectID(2)), putPrincipal(principal(3))} {
		e1, e2 := replayed.Apply(replayed.Index()+1, c), r.Apply(r.Index()+1, c)
		if fmt.Sprint(e1) != fmt.Sprint(e2) {
			t.Fatalf("%v: %v after replay, %v after restore", c, e1, e2)
		}
	}
	if !bytes.Equal(snap(t, r), snap(t, replayed)) {
		t.Error("the replayed and the restored state differ after the same tail")
	}

	// A pool that has assignments is not migrated again, nor one without marked principals.
	for _, cmds := range [][]*pb.Command{
		{initPool(t0), putPrincipal(principal(1)), assign(1, "/", authz.AdministratorRoleID, objectID(1)), unassign(adminAssignmentID)},
		{cmdAt(t0, &pb.InitPool{Name: "p", RecoverableDays: 7, Principals: []*pb.PrincipalRecord{principal(1)}})},
	} {
		s := New()
		mustApply(t, s, cmds...)
		b := snap(t, s)
		r := New()
		if err := r.RestoreSnapshot(b); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(snap(t, r), b) {
			t.Errorf("restoring changed the state of %v", cmds)
		}
	}
}

func TestSnapshotEmpty(t *testing.T) {
	b := snap(t, New())
	r := newActive(t)
	mustApply(t, r, put(t0, "k", "1"))
	if err := r.RestoreSnapshot(b); err != nil {
		t.Fatal(err)
	}
	if r.Pool() != nil {
		t.Error("the pool survived restoring an empty state")
	}
	if live, deleted := r.KeyCount(); live+deleted != 0 {
		t.Errorf("KeyCount() = %d, %d", live, deleted)
	}
	if _, ok := r.PrincipalByClientID(admin().ClientId); ok {
		t.Error("a principal survived restoring an empty state")
	}
	checkInvariants(t, r)
}

func TestSnapshotDeterministic(t *testing.T) {
	a, b := New(), New()
	mustApply(t, a, richCommands()...)
	mustApply(t, b, richCommands()...)
	first := snap(t, a)
	// Map order is random per iteration: marshal a few times.
	for range 20 {
		if !bytes.Equal(snap(t, a), first) || !bytes.Equal(snap(t, b), first) {
			t.Fatal("the same state marshals to different bytes")
		}
	}
	// The keys are sorted by name in the snapshot, live and deleted together.
	var st pb.State
	if err := proto.Unmarshal(first, &st); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, k := range st.Keys {
		got = append(got, k.Name)
	}
	want := []string{"A-upper", "back", "ec", "gone", "restored", "rsa"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("snapshot keys %q, want %q", got, want)
	}
}

func TestSnapshotKeepsUnknownFields(t *testing.T) {
	s := New()
	mustApply(t, s, richCommands()...)
	var st pb.State
	if err := proto.Unmarshal(snap(t, s), &st); err != nil {
		t.Fatal(err)
	}
	// Fields of a newer node: one on the state, one on a key record.
	top := protowire.AppendVarint(protowire.AppendTag(nil, 99, protowire.VarintType), 42)
	inner := protowire.AppendString(protowire.AppendTag(nil, 77, protowire.BytesType), "future")
	st.ProtoReflect().SetUnknown(top)
	st.Keys[0].ProtoReflect().SetUnknown(inner)
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(&st)
	if err != nil {
		t.Fatal(err)
	}

	r := New()
	if err := r.RestoreSnapshot(b); err != nil {
		t.Fatal(err)
	}
	got := snap(t, r)
	if !bytes.Equal(got, b) {
		t.Fatal("the snapshot lost or moved unknown fields")
	}
	// The key with an unknown field changes: the field stays with it.
	name := st.Keys[0].Name
	mustApply(t, r, put(t0, name, "new"))
	rec, _ := r.Key(name)
	if !bytes.Equal(rec.ProtoReflect().GetUnknown(), inner) {
		t.Error("Apply dropped a key's unknown field")
	}
}

func TestRestoreSnapshotRefuses(t *testing.T) {
	valid := func() *pb.State {
		return &pb.State{
			Pool: &pb.PoolRecord{Name: "p", Principals: []*pb.PrincipalRecord{admin()},
				RoleDefinitions: []*pb.RoleDefinition{customRole(1, "/")},
				RoleAssignments: []*pb.RoleAssignment{rootAdmin(), assignment(1, "/", roleID(1), objectID(1))}},
			Keys: []*pb.KeyRecord{{Name: "a", Versions: []*pb.KeyVersion{version("1")}}, {Name: "b", Versions: []*pb.KeyVersion{version("1")}}},
		}
	}
	marshal := func(f func(*pb.State)) []byte {
		st := valid()
		f(st)
		b, err := proto.Marshal(st)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := []struct {
		name string
		b    []byte
	}{
		{"not protobuf", []byte{0xff, 0xff, 0xff}},
		{"truncated", marshal(func(*pb.State) {})[:20]},
		{"key twice", marshal(func(st *pb.State) { st.Keys[1].Name = "a" })},
		{"key without name", marshal(func(st *pb.State) { st.Keys[1].Name = "" })},
		{"key without versions", marshal(func(st *pb.State) { st.Keys[1].Versions = nil })},
		{"version without ID", marshal(func(st *pb.State) { st.Keys[1].Versions[0].Version = "" })},
		{"version twice", marshal(func(st *pb.State) { st.Keys[1].Versions = append(st.Keys[1].Versions, version("1")) })},
		{"principal twice", marshal(func(st *pb.State) { st.Pool.Principals = append(st.Pool.Principals, admin()) })},
		{"principal without client ID", marshal(func(st *pb.State) { st.Pool.Principals[0].ClientId = "" })},
		{"role definition twice", marshal(func(st *pb.State) { st.Pool.RoleDefinitions = append(st.Pool.RoleDefinitions, customRole(1)) })},
		{"role definition without name", marshal(func(st *pb.State) { st.Pool.RoleDefinitions[0].Name = "" })},
		{"custom role with a built-in ID", marshal(func(st *pb.State) { st.Pool.RoleDefinitions[0].Name = authz.CryptoUserRoleID })},
		{"assignment twice", marshal(func(st *pb.State) { st.Pool.RoleAssignments = append(st.Pool.RoleAssignments, rootAdmin()) })},
		{"assignment without name", marshal(func(st *pb.State) { st.Pool.RoleAssignments[0].Name = "" })},
		{"assignment without principal", marshal(func(st *pb.State) { st.Pool.RoleAssignments[0].PrincipalId = "" })},
		{"assignment of an unknown role", marshal(func(st *pb.State) { st.Pool.RoleAssignments[1].RoleDefinitionId = roleID(9) })},
		{"assignment where its role is not assignable", marshal(func(st *pb.State) { st.Pool.RoleDefinitions[0].AssignableScopes = []string{"/keys"} })},
	}
	s := New()
	mustApply(t, s, richCommands()...)
	before, idx := snap(t, s), s.Index()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.RestoreSnapshot(tt.b)
			if !errors.Is(err, fault.Internal) {
				t.Fatalf("RestoreSnapshot = %v, want a fault.Internal error", err)
			}
			if !bytes.Equal(snap(t, s), before) || s.Index() != idx {
				t.Error("a refused snapshot changed the state")
			}
		})
	}
	// The valid one is accepted, keys, roles and assignments in any order.
	b := marshal(func(st *pb.State) {
		st.Keys[0], st.Keys[1] = st.Keys[1], st.Keys[0]
		st.Pool.RoleDefinitions = append(st.Pool.RoleDefinitions, customRole(0))
		as := st.Pool.RoleAssignments
		as[0], as[1] = as[1], as[0]
	})
	if err := s.RestoreSnapshot(b); err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, s)
	if got := s.RoleAssignments(); len(got) != 2 || got[0].Name != assignmentID(1) {
		t.Errorf("RoleAssignments after restore = %v", got)
	}
	if got := s.AssignmentsOf(objectID(1)); len(got) != 1 {
		t.Errorf("AssignmentsOf after restore = %v", got)
	}
	if recs, _ := s.List(false, "", 10); len(recs) != 2 || recs[0].Name != "a" {
		t.Errorf("List after restore = %v", recs)
	}
}

// FuzzRestoreSnapshot feeds RestoreSnapshot arbitrary bytes: it must not panic, and whatever it
// accepts must hold the invariants and round-trip.
func FuzzRestoreSnapshot(f *testing.F) {
	// A small seed: the fuzzer minimises every input it finds interesting, which is slow for big ones.
	s := newActive(f)
	mustApply(f, s, put(t0, "a", "1"), put(t0, "b", "1"), put(t0, "b", "2"), del(t0, "b"),
		cmdAt(t0, &pb.SetRotationPolicy{Name: "a", Policy: &pb.RotationPolicy{ExpiryTime: "P1Y"}}),
		putRole(customRole(1)), assign(1, "/keys/a", roleID(1), objectID(1)), putPrincipal(principal(1, secret("s"))))
	f.Add(snap(f, s))
	f.Add(snap(f, New()))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := New()
		if err := r.RestoreSnapshot(b); err != nil {
			return
		}
		checkInvariants(t, r)
		out := snap(t, r)
		r2 := New()
		if err := r2.RestoreSnapshot(out); err != nil {
			t.Fatalf("a snapshot this package wrote does not restore: %v", err)
		}
		if !bytes.Equal(snap(t, r2), out) {
			t.Fatal("the snapshot does not round-trip")
		}
	})
}
