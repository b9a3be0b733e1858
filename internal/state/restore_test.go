package state

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/hsmpool/hsmpool/internal/authz"
	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

func restoreCmd(t int64, st *pb.State) *pb.Command {
	return &pb.Command{Id: "restore", Time: t, Op: &pb.Command_RestoreState{RestoreState: &pb.RestoreState{State: st}}}
}

// backupOf is the pb.State a full backup of s holds.
func backupOf(t *testing.T, s *State) *pb.State {
	t.Helper()
	b, err := s.MarshalSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	st := &pb.State{}
	if err := proto.Unmarshal(b, st); err != nil {
		t.Fatal(err)
	}
	return st
}

// target is a pool of its own name with a key, a principal and an assignment that a restore
// replaces or merges.
func target(t *testing.T) *State {
	t.Helper()
	s := New()
	mustApply(t, s,
		cmdAt(t0, &pb.InitPool{Name: "fabrikam", TenantId: "tenant-2", RecoverableDays: 7, Principals: []*pb.PrincipalRecord{admin()}}),
		activate(t0+1),
		put(t0+2, "stale", "1"),
		put(t0+2, "ec", "9"),
		putPrincipal(principal(7)),
		assign(7, "/", authz.CryptoUserRoleID, objectID(7)),
	)
	return s
}

func TestRestoreStateReplacesAndMerges(t *testing.T) {
	src := New()
	mustApply(t, src, richCommands()...)
	backup := backupOf(t, src)

	s := target(t)
	before := s.Pool()
	mustApply(t, s, restoreCmd(t0+100, backup))
	checkInvariants(t, s)
	checkAccessInvariants(t, s)

	// Keys: exactly the backup's, live and deleted, with their rotation policies.
	for _, deleted := range []bool{false, true} {
		got, _ := s.List(deleted, "", 1000)
		want, _ := src.List(deleted, "", 1000)
		if len(got) != len(want) {
			t.Fatalf("deleted=%v: %d keys, want %d", deleted, len(got), len(want))
		}
		for i := range got {
			if !proto.Equal(got[i], want[i]) {
				t.Errorf("key %s differs from the backup's", want[i].Name)
			}
		}
	}
	if _, err := s.Key("stale"); err == nil {
		t.Error("the key the backup does not hold survived the restore")
	}
	if rec, err := s.Key("rsa"); err != nil || rec.RotationPolicy == nil {
		t.Errorf("rsa: %v, rotation policy %v", err, rec.GetRotationPolicy())
	}

	// Identity: kept.
	p := s.Pool()
	if p.Name != "fabrikam" || p.TenantId != "tenant-2" || p.RecoverableDays != before.RecoverableDays ||
		!bytes.Equal(p.BackupKey, before.BackupKey) || !proto.Equal(p.KekCheck, before.KekCheck) || !p.Activated {
		t.Errorf("the pool's identity changed: %v", p)
	}
	// Roles and assignments: the backup's, plus those of the pool's own principal that the backup
	// does not have (principal 7), so that the operators running the restore keep their access.
	if !slices.EqualFunc(s.RoleDefinitions(), src.RoleDefinitions(), func(a, b *pb.RoleDefinition) bool { return proto.Equal(a, b) }) {
		t.Error("role definitions are not the backup's")
	}
	own, _ := before7(t)
	want := slices.Clone(src.RoleAssignments())
	want = append(want, own)
	slices.SortFunc(want, func(a, b *pb.RoleAssignment) int { return strings.Compare(a.Name, b.Name) })
	if !slices.EqualFunc(s.RoleAssignments(), want, func(a, b *pb.RoleAssignment) bool { return proto.Equal(a, b) }) {
		t.Errorf("role assignments are not the backup's and principal 7's:\n%v\nwant\n%v", s.RoleAssignments(), want)
	}
	// Principals: the union; the pool's admin (in both) keeps the pool's record.
	if _, ok := s.Principal(objectID(7)); !ok {
		t.Error("the pool's own principal was dropped")
	}
	for _, bp := range src.Principals() {
		got, ok := s.Principal(bp.ObjectId)
		if !ok {
			t.Errorf("principal %s of the backup is missing", bp.ObjectId)
			continue
		}
		if bp.ObjectId == admin().ObjectId && got != before.Principals[0] {
			t.Error("the principal in both does not keep the pool's record")
		}
	}
	if got := s.AssignmentsOf(objectID(1)); len(got) == 0 {
		t.Error("AssignmentsOf misses the restored assignments")
	}
	if got := s.AssignmentsOf(objectID(7)); len(got) != 1 || got[0].Name != assignmentID(7) {
		t.Errorf("AssignmentsOf(7) after the restore: %v, want its own assignment", got)
	}
}

func TestRestoreStateDeterministic(t *testing.T) {
	src := New()
	mustApply(t, src, richCommands()...)
	backup := backupOf(t, src)
	a, b := target(t), target(t)
	mustApply(t, a, restoreCmd(t0+100, backup))
	mustApply(t, b, restoreCmd(t0+100, backup))
	if !bytes.Equal(snap(t, a), snap(t, b)) {
		t.Fatal("two nodes applying the same restore differ")
	}
	// The command does not keep the backup it was given.
	backup.Keys[0].Name = "changed"
	if _, err := a.Key("changed"); err == nil {
		t.Fatal("the state shares the command's records")
	}
}

func TestRestoreStateKeepsAnAdministrator(t *testing.T) {
	src := newActive(t)
	mustApply(t, src, put(t0+2, "k", "1"), putPrincipal(principal(1)), assign(1, "/", authz.CryptoUserRoleID, objectID(1)))
	backup := backupOf(t, src)
	// The backup's pool has no Administrator at "/" (as a state could not hold, but a backup may).
	backup.Pool.RoleAssignments = slices.DeleteFunc(backup.Pool.RoleAssignments, isRootAdmin)

	s := target(t)
	mustApply(t, s, restoreCmd(t0+100, backup))
	if n := countRootAdmins(s.RoleAssignments(), ""); n == 0 {
		t.Fatal("the restore left no Administrator at /")
	}
	if _, ok := s.RoleAssignment(adminAssignmentID); !ok {
		t.Error("the pool's own Administrator assignment was not kept")
	}
	if _, ok := s.RoleAssignment(assignmentID(1)); !ok {
		t.Error("the backup's assignment is missing")
	}
	checkAccessInvariants(t, s)
}

func TestRestoreStateRefused(t *testing.T) {
	good := func() *pb.State {
		src := newActive(t)
		mustApply(t, src, put(t0+2, "k", "1"))
		return backupOf(t, src)
	}
	tests := []struct {
		name  string
		state func() *pb.State
		want  string
	}{
		{"no state", func() *pb.State { return nil }, "the restore holds no state"},
		{"key without versions", func() *pb.State {
			st := good()
			st.Keys[0].Versions = nil
			return st
		}, `the backup is not valid: key "k" has no versions`},
		{"key twice", func() *pb.State {
			st := good()
			st.Keys = append(st.Keys, st.Keys[0])
			return st
		}, `the backup is not valid: key "k" appears twice`},
		{"key without name", func() *pb.State {
			st := good()
			st.Keys[0].Name = ""
			return st
		}, "the backup is not valid: a key has no name"},
		{"assignment of an unknown role", func() *pb.State {
			st := good()
			st.Pool.RoleAssignments = append(st.Pool.RoleAssignments, assignment(9, "/", roleID(9), objectID(1)))
			return st
		}, `the backup is not valid: role assignment "` + assignmentID(9) + `" has an unknown role definition "` + roleID(9) + `"`},
		{"principals sharing an ID", func() *pb.State {
			st := good()
			st.Pool.Principals = append(st.Pool.Principals, principal(1), principal(1))
			return st
		}, "the backup is not valid: principals without IDs or sharing one"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := target(t)
			before := snap(t, s)
			err := s.Apply(s.Index()+1, restoreCmd(t0+100, tt.state()))
			checkErr(t, err, badParameter(tt.want))
			if !bytes.Equal(snap(t, s), before) {
				t.Fatal("a refused restore changed the state")
			}
		})
	}

	t.Run("not activated", func(t *testing.T) {
		s := New()
		mustApply(t, s, initPool(t0))
		err := s.Apply(s.Index()+1, restoreCmd(t0+1, good()))
		checkErr(t, err, notActivated)
	})
}

// before7 is principal 7's assignment in target, as the restore must keep it.
func before7(t *testing.T) (*pb.RoleAssignment, bool) {
	t.Helper()
	return target(t).RoleAssignment(assignmentID(7))
}
