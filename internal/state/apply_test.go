package state

import (
	"bytes"
	"maps"
	"reflect"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/hsmpool/hsmpool/internal/rpcerr"
	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

// applyCase is one command applied to a prepared state.
type applyCase struct {
	name  string
	from  func(testing.TB) *State // the starting state; nil: newActive
	setup []*pb.Command           // applied to it first, each must succeed
	cmd   *pb.Command
	want  *rpcerr.Error // nil: success
	check func(t *testing.T, s *State)
}

// runApplyCases applies each case's command and checks the result. For every case it also
// checks that the command is left as it was, that the index moves on, that the invariants
// hold, that a refused command changes nothing, and that a successful one keeps no pointer
// into the command.
func runApplyCases(t *testing.T, cases []applyCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			from := tc.from
			if from == nil {
				from = newActive
			}
			s := from(t)
			mustApply(t, s, tc.setup...)
			before := snap(t, s)
			// The cases share messages, and the command is scrambled below: apply a copy.
			var cmd *pb.Command
			if tc.cmd != nil {
				cmd = proto.Clone(tc.cmd).(*pb.Command)
			}
			idx := s.Index() + 10

			err := s.Apply(idx, cmd)
			checkErr(t, err, tc.want)

			if !proto.Equal(cmd, tc.cmd) {
				t.Errorf("Apply modified its command:\n got %v\nwant %v", cmd, tc.cmd)
			}
			if got := s.Index(); got != idx {
				t.Errorf("Index() = %d, want %d", got, idx)
			}
			checkInvariants(t, s)
			after := snap(t, s)
			if tc.want != nil && !bytes.Equal(before, after) {
				t.Errorf("the refused command changed the state")
			}
			if cmd != nil {
				scramble(cmd.ProtoReflect())
				if !bytes.Equal(after, snap(t, s)) {
					t.Errorf("changing the command after Apply changed the state: it keeps a pointer into it")
				}
			}
			if tc.check != nil {
				tc.check(t, s)
			}
		})
	}
}

func withPool(tb testing.TB) *State {
	s := New()
	mustApply(tb, s, initPool(t0))
	return s
}

func TestApplyGeneric(t *testing.T) {
	runApplyCases(t, []applyCase{
		{name: "nil command", cmd: nil, want: badParameter("the command is empty")},
		{name: "no operation", cmd: cmdAt(t0, nil), want: badParameter("the command has no operation this node knows")},
		{name: "negative time", cmd: put(-1, "k", "1"), want: badParameter("the command time -1 is before 1970")},
		{name: "zero time is allowed", cmd: put(0, "k", "1")},
	})
}

func TestApplyInitPool(t *testing.T) {
	p2 := admin()
	p2.ObjectId, p2.ClientId = "obj-2", "client-2"
	init := func(days int32, ps ...*pb.PrincipalRecord) *pb.Command {
		return cmdAt(t0, &pb.InitPool{Name: "contoso", TenantId: "t", RecoverableDays: days, Principals: ps})
	}
	upperClient := admin()
	upperClient.ObjectId = "other"
	upperClient.ClientId = "5E6F7A8B-0000-4000-8000-00000000000C"
	noClient := admin()
	noClient.ClientId = ""
	noObject := admin()
	noObject.ObjectId = ""
	sameObject := proto.Clone(p2).(*pb.PrincipalRecord)
	sameObject.ObjectId = admin().ObjectId
	badPrincipals := badParameter("every principal needs an object ID and a client ID, and no two may share one")

	runApplyCases(t, []applyCase{
		{
			name: "ok", from: func(testing.TB) *State { return New() }, cmd: initPool(t0 + 5),
			check: func(t *testing.T, s *State) {
				p := s.Pool()
				want := &pb.PoolRecord{Name: "contoso", TenantId: "tenant-1", Created: t0 + 5, RecoverableDays: 30, Principals: []*pb.PrincipalRecord{admin()},
					RoleAssignments: []*pb.RoleAssignment{rootAdmin()}}
				if !proto.Equal(p, want) {
					t.Errorf("Pool() = %v, want %v", p, want)
				}
				for _, id := range []string{admin().ClientId, "5E6F7A8B-0000-4000-8000-00000000000C"} {
					if got, ok := s.PrincipalByClientID(id); !ok || got.DisplayName != "admin" {
						t.Errorf("PrincipalByClientID(%q) = %v, %t", id, got, ok)
					}
				}
				if got, ok := s.Principal("0A1B2C3D-0000-4000-8000-00000000000A"); !ok || got.DisplayName != "admin" {
					t.Errorf("Principal(upper case) = %v, %t", got, ok)
				}
				if _, ok := s.PrincipalByClientID(admin().ObjectId); ok {
					t.Error("an object ID was found as a client ID")
				}
			},
		},
		{name: "7 days", from: func(testing.TB) *State { return New() }, cmd: init(7, admin(), p2)},
		{name: "90 days, no principals", from: func(testing.TB) *State { return New() }, cmd: init(90)},
		{name: "twice", from: withPool, cmd: initPool(t0), want: conflict("the pool is already initialized")},
		{name: "after activation", cmd: initPool(t0), want: conflict("the pool is already initialized")},
		{name: "no name", from: func(testing.TB) *State { return New() }, cmd: cmdAt(t0, &pb.InitPool{RecoverableDays: 7}), want: badParameter("the pool name is empty")},
		{name: "nil operation", from: func(testing.TB) *State { return New() }, cmd: &pb.Command{Op: &pb.Command_InitPool{}}, want: badParameter("the pool name is empty")},
		{name: "6 days", from: func(testing.TB) *State { return New() }, cmd: init(6), want: badParameter("recoverable days must be between 7 and 90, not 6")},
		{name: "91 days", from: func(testing.TB) *State { return New() }, cmd: init(91), want: badParameter("recoverable days must be between 7 and 90, not 91")},
		{name: "0 days", from: func(testing.TB) *State { return New() }, cmd: init(0), want: badParameter("recoverable days must be between 7 and 90, not 0")},
		{name: "client ID twice, other case", from: func(testing.TB) *State { return New() }, cmd: init(7, admin(), upperClient), want: badPrincipals},
		{name: "object ID twice", from: func(testing.TB) *State { return New() }, cmd: init(7, admin(), sameObject), want: badPrincipals},
		{name: "no client ID", from: func(testing.TB) *State { return New() }, cmd: init(7, noClient), want: badPrincipals},
		{name: "no object ID", from: func(testing.TB) *State { return New() }, cmd: init(7, noObject), want: badPrincipals},
		{name: "nil principal", from: func(testing.TB) *State { return New() }, cmd: init(7, admin(), nil), want: badPrincipals},
	})
}

func TestApplyActivate(t *testing.T) {
	runApplyCases(t, []applyCase{
		{
			name: "ok", from: withPool, cmd: activate(t0 + 9),
			check: func(t *testing.T, s *State) {
				p := s.Pool()
				a := activate(0).GetActivate()
				if !p.Activated || p.ActivatedAt != t0+9 || p.Quorum != 2 || !bytes.Equal(p.SecurityDomain, a.SecurityDomain) ||
					!bytes.Equal(p.BackupKey, a.BackupKey) || !proto.Equal(p.KekCheck, a.KekCheck) || len(p.OfficerCerts) != 3 {
					t.Errorf("Pool() = %v", p)
				}
				if p.Name != "contoso" || p.Created != t0 || len(p.Principals) != 1 {
					t.Errorf("activation lost the pool's fields: %v", p)
				}
				if _, ok := s.PrincipalByClientID(admin().ClientId); !ok {
					t.Error("activation lost the principal index")
				}
			},
		},
		{name: "nil operation", from: withPool, cmd: &pb.Command{Op: &pb.Command_Activate{}}},
		{name: "before InitPool", from: func(testing.TB) *State { return New() }, cmd: activate(t0), want: notInitialized},
		{name: "twice", cmd: activate(t0), want: conflict("the pool is already activated")},
	})
}

func TestApplyPutKeyVersion(t *testing.T) {
	withCreated := version("1")
	withCreated.Attributes.Created, withCreated.Attributes.Updated = 1000, 1001
	noAttrs := version("1")
	noAttrs.Attributes = nil
	deleted := []*pb.Command{put(t0, "k", "1"), del(t0, "k")}

	runApplyCases(t, []applyCase{
		{
			name: "new key", cmd: put(t0+3, "k", "1"),
			check: func(t *testing.T, s *State) {
				rec, v, err := s.Version("k", "")
				if err != nil {
					t.Fatal(err)
				}
				want := version("1")
				want.Attributes.Created, want.Attributes.Updated = t0+3, t0+3
				if !proto.Equal(v, want) || rec.Name != "k" || len(rec.Versions) != 1 || rec.Deletion != nil || rec.RotationPolicy != nil {
					t.Errorf("Version = %v, %v", rec, v)
				}
				if live, del := s.KeyCount(); live != 1 || del != 0 {
					t.Errorf("KeyCount() = %d, %d", live, del)
				}
			},
		},
		{
			name: "times kept when set", cmd: cmdAt(t0, &pb.PutKeyVersion{Name: "k", Version: withCreated}),
			check: func(t *testing.T, s *State) {
				_, v, _ := s.Version("k", "")
				if a := v.Attributes; a.Created != 1000 || a.Updated != 1001 {
					t.Errorf("attributes %v", a)
				}
			},
		},
		{
			name: "no attributes", cmd: cmdAt(t0, &pb.PutKeyVersion{Name: "k", Version: noAttrs}),
			check: func(t *testing.T, s *State) {
				_, v, _ := s.Version("k", "")
				if a := v.Attributes; a.Created != t0 || a.Updated != t0 || a.Enabled != nil {
					t.Errorf("attributes %v", a)
				}
			},
		},
		{
			name: "second version", setup: []*pb.Command{put(t0, "k", "1")}, cmd: put(t0+1, "k", "2"),
			check: func(t *testing.T, s *State) {
				rec, v, _ := s.Version("k", "")
				if v.Version != vid("2") || len(rec.Versions) != 2 || rec.Versions[0].Version != vid("1") {
					t.Errorf("versions %v", rec.Versions)
				}
				if _, v1, err := s.Version("k", vid("1")); err != nil || v1.Attributes.Created != t0 {
					t.Errorf("version 1: %v, %v", v1, err)
				}
			},
		},
		{
			name: "below the maximum", setup: []*pb.Command{put(t0, "k", "1")},
			cmd: cmdAt(t0, &pb.PutKeyVersion{Name: "k", Version: version("2"), MaxVersions: 2}),
		},
		{
			name: "at the maximum", setup: []*pb.Command{put(t0, "k", "1"), put(t0, "k", "2")},
			cmd:  cmdAt(t0, &pb.PutKeyVersion{Name: "k", Version: version("3"), MaxVersions: 2}),
			want: badParameter("key k has reached the maximum of 2 versions"),
		},
		{
			name: "negative maximum is no maximum", setup: []*pb.Command{put(t0, "k", "1")},
			cmd: cmdAt(t0, &pb.PutKeyVersion{Name: "k", Version: version("2"), MaxVersions: -1}),
		},
		{
			name: "version exists", setup: []*pb.Command{put(t0, "k", "1"), put(t0, "k", "2")}, cmd: put(t0, "k", "1"),
			want: conflict("key k already has version " + vid("1")),
		},
		{
			name: "same version in another key", setup: []*pb.Command{put(t0, "k", "1")}, cmd: put(t0, "j", "1"),
		},
		{name: "deleted name", setup: deleted, cmd: put(t0, "k", "2"), want: deletedButRecoverable("k")},
		{name: "pool not initialized", from: func(testing.TB) *State { return New() }, cmd: put(t0, "k", "1"), want: notActivated},
		{name: "pool not activated", from: withPool, cmd: put(t0, "k", "1"), want: notActivated},
		{name: "no name", cmd: put(t0, "", "1"), want: badParameter("the key name is empty")},
		{name: "no version", cmd: cmdAt(t0, &pb.PutKeyVersion{Name: "k"}), want: badParameter("the new version of key k has no version ID")},
		{name: "empty version ID", cmd: cmdAt(t0, &pb.PutKeyVersion{Name: "k", Version: &pb.KeyVersion{}}), want: badParameter("the new version of key k has no version ID")},
		{name: "nil operation", cmd: &pb.Command{Op: &pb.Command_PutKeyVersion{}}, want: badParameter("the key name is empty")},
	})
}

func TestApplyUpdateKeyVersion(t *testing.T) {
	two := []*pb.Command{put(t0, "k", "1"), put(t0+1, "k", "2")}
	update := func(u *pb.UpdateKeyVersion) *pb.Command {
		if u.Name == "" {
			u.Name = "k"
		}
		return cmdAt(t0+50, u)
	}
	policy := &pb.ReleasePolicy{ContentType: "application/json; charset=utf-8", Data: []byte(`{"version":"1.0.0"}`)}
	immutable := proto.Clone(policy).(*pb.ReleasePolicy)
	immutable.Immutable = true
	changed := proto.Clone(immutable).(*pb.ReleasePolicy)
	changed.Data = []byte(`{"version":"1.0.1"}`)
	withImmutable := func(u *pb.UpdateKeyVersion) []*pb.Command {
		return append(slices.Clone(two), update(u))
	}
	// version returns version id of k after the update, failing if the other one changed.
	unchanged := func(t *testing.T, s *State, id string) {
		t.Helper()
		_, v, _ := s.Version("k", vid(id))
		want := version(id)
		want.Attributes.Created, want.Attributes.Updated = v.Attributes.Created, v.Attributes.Created
		if !proto.Equal(v, want) {
			t.Errorf("version %s changed: %v", id, v)
		}
	}
	latest := func(t *testing.T, s *State) *pb.KeyVersion {
		t.Helper()
		_, v, err := s.Version("k", "")
		if err != nil {
			t.Fatal(err)
		}
		if v.Attributes.Updated != t0+50 {
			t.Errorf("updated = %d, want %d", v.Attributes.Updated, t0+50)
		}
		return v
	}

	runApplyCases(t, []applyCase{
		{
			name: "nothing set: only updated", setup: two, cmd: update(&pb.UpdateKeyVersion{}),
			check: func(t *testing.T, s *State) {
				v := latest(t, s)
				want := version("2")
				want.Attributes.Created, want.Attributes.Updated = t0+1, t0+50
				if !proto.Equal(v, want) {
					t.Errorf("latest = %v, want %v", v, want)
				}
				unchanged(t, s, "1")
			},
		},
		{
			name: "every field of the latest version", setup: two,
			cmd: update(&pb.UpdateKeyVersion{
				KeyOps: &pb.KeyOps{Ops: []string{"verify"}}, Enabled: proto.Bool(false), NotBefore: proto.Int64(t0 + 100),
				Expires: proto.Int64(t0 + 200), Tags: &pb.Tags{Tags: map[string]string{"a": "b"}}, ReleasePolicy: policy,
			}),
			check: func(t *testing.T, s *State) {
				v := latest(t, s)
				a := v.Attributes
				if !slices.Equal(v.KeyOps, []string{"verify"}) || a.GetEnabled() || a.GetNotBefore() != t0+100 || a.GetExpires() != t0+200 ||
					!maps.Equal(v.Tags, map[string]string{"a": "b"}) || !proto.Equal(v.ReleasePolicy, policy) {
					t.Errorf("latest = %v", v)
				}
				if a.Created != t0+1 || a.RecoverableDays != 7 || a.RecoveryLevel != "CustomizedRecoverable+Purgeable" || v.Version != vid("2") || len(v.Wrapped) == 0 {
					t.Errorf("the update lost fields: %v", v)
				}
				unchanged(t, s, "1")
			},
		},
		{
			name: "a named version", setup: two, cmd: update(&pb.UpdateKeyVersion{Version: vid("1"), Enabled: proto.Bool(false)}),
			check: func(t *testing.T, s *State) {
				_, v, _ := s.Version("k", vid("1"))
				if v.Attributes.GetEnabled() || v.Attributes.Updated != t0+50 {
					t.Errorf("version 1 = %v", v)
				}
				unchanged(t, s, "2")
			},
		},
		{
			name: "zero times and empty lists clear", setup: append(slices.Clone(two), update(&pb.UpdateKeyVersion{NotBefore: proto.Int64(5), Expires: proto.Int64(6)})),
			cmd: update(&pb.UpdateKeyVersion{NotBefore: proto.Int64(0), Expires: proto.Int64(0), Tags: &pb.Tags{}, KeyOps: &pb.KeyOps{}}),
			check: func(t *testing.T, s *State) {
				v := latest(t, s)
				if v.Attributes.NotBefore != nil || v.Attributes.Expires != nil || len(v.Tags) != 0 || len(v.KeyOps) != 0 {
					t.Errorf("latest = %v", v)
				}
			},
		},
		{
			name: "enabled again", setup: append(slices.Clone(two), update(&pb.UpdateKeyVersion{Enabled: proto.Bool(false)})),
			cmd: update(&pb.UpdateKeyVersion{Enabled: proto.Bool(true)}),
			check: func(t *testing.T, s *State) {
				if v := latest(t, s); !v.Attributes.GetEnabled() {
					t.Errorf("latest = %v", v)
				}
			},
		},
		{
			name: "mutable release policy replaced", setup: withImmutable(&pb.UpdateKeyVersion{ReleasePolicy: policy}),
			cmd: update(&pb.UpdateKeyVersion{ReleasePolicy: immutable}),
			check: func(t *testing.T, s *State) {
				if v := latest(t, s); !proto.Equal(v.ReleasePolicy, immutable) {
					t.Errorf("release policy %v", v.ReleasePolicy)
				}
			},
		},
		{
			name: "immutable release policy set again unchanged", setup: withImmutable(&pb.UpdateKeyVersion{ReleasePolicy: immutable}),
			cmd: update(&pb.UpdateKeyVersion{ReleasePolicy: immutable, Enabled: proto.Bool(false)}),
		},
		{
			name: "immutable release policy changed", setup: withImmutable(&pb.UpdateKeyVersion{ReleasePolicy: immutable}),
			cmd:  update(&pb.UpdateKeyVersion{ReleasePolicy: changed, Enabled: proto.Bool(false)}),
			want: badParameter("the release policy of key k is immutable and cannot be changed"),
		},
		{
			name: "immutable release policy made mutable", setup: withImmutable(&pb.UpdateKeyVersion{ReleasePolicy: immutable}),
			cmd:  update(&pb.UpdateKeyVersion{ReleasePolicy: policy}),
			want: badParameter("the release policy of key k is immutable and cannot be changed"),
		},
		{
			name: "immutable release policy kept when not named", setup: withImmutable(&pb.UpdateKeyVersion{ReleasePolicy: immutable}),
			cmd: update(&pb.UpdateKeyVersion{Tags: &pb.Tags{}}),
		},
		{name: "unknown key", cmd: update(&pb.UpdateKeyVersion{Name: "nope"}), want: notFound("nope")},
		{name: "unknown version", setup: two, cmd: update(&pb.UpdateKeyVersion{Version: vid("3")}), want: notFound("k/" + vid("3"))},
		{name: "deleted key", setup: append(slices.Clone(two), del(t0, "k")), cmd: update(&pb.UpdateKeyVersion{}), want: notFound("k")},
		{name: "nil operation", cmd: &pb.Command{Op: &pb.Command_UpdateKeyVersion{}}, want: notFound("")},
	})
}

func TestApplyDeleteKey(t *testing.T) {
	noDays := version("1")
	noDays.Attributes.RecoverableDays = 0
	runApplyCases(t, []applyCase{
		{
			name: "key's recoverable days", setup: []*pb.Command{put(t0, "k", "1")}, cmd: del(t0+100, "k"),
			check: func(t *testing.T, s *State) {
				if _, err := s.Key("k"); err == nil {
					t.Error("Key found a deleted key")
				}
				rec, err := s.DeletedKey("k")
				if err != nil {
					t.Fatal(err)
				}
				want := &pb.Deletion{DeletedDate: t0 + 100, ScheduledPurgeDate: t0 + 100 + 7*86400}
				if !proto.Equal(rec.Deletion, want) || len(rec.Versions) != 1 {
					t.Errorf("deleted record %v, want deletion %v", rec, want)
				}
				if live, deleted := s.KeyCount(); live != 0 || deleted != 1 {
					t.Errorf("KeyCount() = %d, %d", live, deleted)
				}
			},
		},
		{
			name: "the current version's days", setup: []*pb.Command{cmdAt(t0, &pb.PutKeyVersion{Name: "k", Version: noDays}), put(t0, "k", "2")},
			cmd: del(t0, "k"),
			check: func(t *testing.T, s *State) {
				if rec, _ := s.DeletedKey("k"); rec.Deletion.ScheduledPurgeDate != t0+7*86400 {
					t.Errorf("deletion %v", rec.Deletion)
				}
			},
		},
		{
			name: "pool's recoverable days", setup: []*pb.Command{cmdAt(t0, &pb.PutKeyVersion{Name: "k", Version: noDays})}, cmd: del(t0, "k"),
			check: func(t *testing.T, s *State) {
				if rec, _ := s.DeletedKey("k"); rec.Deletion.ScheduledPurgeDate != t0+30*86400 {
					t.Errorf("deletion %v", rec.Deletion)
				}
			},
		},
		{name: "unknown key", cmd: del(t0, "k"), want: notFound("k")},
		{name: "already deleted", setup: []*pb.Command{put(t0, "k", "1"), del(t0, "k")}, cmd: del(t0, "k"), want: notFound("k")},
		{name: "nil operation", cmd: &pb.Command{Op: &pb.Command_DeleteKey{}}, want: notFound("")},
	})
}

func TestApplyRecoverKey(t *testing.T) {
	runApplyCases(t, []applyCase{
		{
			name: "ok", setup: []*pb.Command{put(t0, "k", "1"), del(t0, "k")}, cmd: undelete(t0+1, "k"),
			check: func(t *testing.T, s *State) {
				rec, err := s.Key("k")
				if err != nil || rec.Deletion != nil || len(rec.Versions) != 1 {
					t.Errorf("Key = %v, %v", rec, err)
				}
				if _, err := s.DeletedKey("k"); err == nil {
					t.Error("DeletedKey found a recovered key")
				}
			},
		},
		{name: "live key", setup: []*pb.Command{put(t0, "k", "1")}, cmd: undelete(t0, "k"), want: deletedNotFound("k")},
		{name: "unknown key", cmd: undelete(t0, "k"), want: deletedNotFound("k")},
		{name: "nil operation", cmd: &pb.Command{Op: &pb.Command_RecoverKey{}}, want: deletedNotFound("")},
	})
}

func TestApplyPurgeKey(t *testing.T) {
	runApplyCases(t, []applyCase{
		{
			name: "ok", setup: []*pb.Command{put(t0, "k", "1"), del(t0, "k")}, cmd: purge(t0, "k"),
			check: func(t *testing.T, s *State) {
				_, err1 := s.Key("k")
				_, err2 := s.DeletedKey("k")
				if err1 == nil || err2 == nil {
					t.Error("the purged key is still there")
				}
				if live, deleted := s.KeyCount(); live != 0 || deleted != 0 {
					t.Errorf("KeyCount() = %d, %d", live, deleted)
				}
				// The name is free again.
				mustApply(t, s, put(t0, "k", "1"))
			},
		},
		{name: "live key", setup: []*pb.Command{put(t0, "k", "1")}, cmd: purge(t0, "k"), want: deletedNotFound("k")},
		{name: "unknown key", cmd: purge(t0, "k"), want: deletedNotFound("k")},
		{name: "nil operation", cmd: &pb.Command{Op: &pb.Command_PurgeKey{}}, want: deletedNotFound("")},
	})
}

func TestApplyRestoreKey(t *testing.T) {
	backup := func() *pb.KeyRecord {
		v1, v2 := version("1"), version("2")
		v1.Attributes.Created, v2.Attributes.Created = 100, 200
		return &pb.KeyRecord{
			Name:           "k",
			Versions:       []*pb.KeyVersion{v1, v2},
			RotationPolicy: &pb.RotationPolicy{ExpiryTime: "P1Y", Created: 5, Updated: 6},
		}
	}
	restore := func(rec *pb.KeyRecord) *pb.Command { return cmdAt(t0, &pb.RestoreKey{Key: rec}) }
	deleted := backup()
	deleted.Deletion = &pb.Deletion{DeletedDate: 1, ScheduledPurgeDate: 2}
	noVersions := backup()
	noVersions.Versions = nil
	noID := backup()
	noID.Versions[1].Version = ""
	twice := backup()
	twice.Versions[1].Version = twice.Versions[0].Version
	nilVersion := backup()
	nilVersion.Versions = append(nilVersion.Versions, nil)
	noName := backup()
	noName.Name = ""

	runApplyCases(t, []applyCase{
		{
			name: "ok", cmd: restore(backup()),
			check: func(t *testing.T, s *State) {
				rec, err := s.Key("k")
				if err != nil || !proto.Equal(rec, backup()) {
					t.Errorf("Key = %v, %v; want %v", rec, err, backup())
				}
			},
		},
		{
			name: "restored live", cmd: restore(deleted),
			check: func(t *testing.T, s *State) {
				if rec, err := s.Key("k"); err != nil || rec.Deletion != nil {
					t.Errorf("Key = %v, %v", rec, err)
				}
			},
		},
		{name: "live name", setup: []*pb.Command{put(t0, "k", "9")}, cmd: restore(backup()), want: conflict("Key k already exists")},
		{name: "deleted name", setup: []*pb.Command{put(t0, "k", "9"), del(t0, "k")}, cmd: restore(backup()), want: deletedButRecoverable("k")},
		{name: "no versions", cmd: restore(noVersions), want: badParameter("the backup of key k holds no versions")},
		{name: "version without ID", cmd: restore(noID), want: badParameter("the backup of key k holds a version without an ID")},
		{name: "nil version", cmd: restore(nilVersion), want: badParameter("the backup of key k holds a version without an ID")},
		{name: "version twice", cmd: restore(twice), want: badParameter("the backup of key k holds version " + vid("1") + " twice")},
		{name: "no name", cmd: restore(noName), want: badParameter("the key to restore has no name")},
		{name: "no key", cmd: restore(nil), want: badParameter("the key to restore has no name")},
		{name: "pool not activated", from: withPool, cmd: restore(backup()), want: notActivated},
	})
}

func TestApplySetRotationPolicy(t *testing.T) {
	policy := &pb.RotationPolicy{
		LifetimeActions: []*pb.LifetimeAction{{TimeAfterCreate: "P90D", Action: "Rotate"}},
		ExpiryTime:      "P2Y",
		Created:         1, Updated: 2, // the proposer's values are replaced
	}
	set := func(t int64, p *pb.RotationPolicy) *pb.Command {
		return cmdAt(t, &pb.SetRotationPolicy{Name: "k", Policy: p})
	}
	key := []*pb.Command{put(t0, "k", "1")}
	withPolicy := []*pb.Command{put(t0, "k", "1"), set(t0+1, policy)}
	removed := func(t *testing.T, s *State) {
		if rec, _ := s.Key("k"); rec.RotationPolicy != nil {
			t.Errorf("policy %v", rec.RotationPolicy)
		}
	}

	runApplyCases(t, []applyCase{
		{
			name: "new", setup: key, cmd: set(t0+5, policy),
			check: func(t *testing.T, s *State) {
				rec, _ := s.Key("k")
				want := proto.Clone(policy).(*pb.RotationPolicy)
				want.Created, want.Updated = t0+5, t0+5
				if !proto.Equal(rec.RotationPolicy, want) {
					t.Errorf("policy %v, want %v", rec.RotationPolicy, want)
				}
			},
		},
		{
			name: "replaced keeps created", setup: withPolicy, cmd: set(t0+9, &pb.RotationPolicy{ExpiryTime: "P1Y"}),
			check: func(t *testing.T, s *State) {
				rec, _ := s.Key("k")
				want := &pb.RotationPolicy{ExpiryTime: "P1Y", Created: t0 + 1, Updated: t0 + 9}
				if !proto.Equal(rec.RotationPolicy, want) {
					t.Errorf("policy %v, want %v", rec.RotationPolicy, want)
				}
			},
		},
		{name: "empty removes", setup: withPolicy, cmd: set(t0, &pb.RotationPolicy{}), check: removed},
		{name: "empty with times removes", setup: withPolicy, cmd: set(t0, &pb.RotationPolicy{Created: 4}), check: removed},
		{name: "nil removes", setup: withPolicy, cmd: set(t0, nil), check: removed},
		{name: "removing none", setup: key, cmd: set(t0, nil), check: removed},
		{name: "unknown key", cmd: set(t0, policy), want: notFound("k")},
		{name: "deleted key", setup: []*pb.Command{put(t0, "k", "1"), del(t0, "k")}, cmd: set(t0, policy), want: notFound("k")},
	})
}

// TestApplyKeepsRecords checks the immutability contract: a record a reader holds does not
// change when later commands change its key.
func TestApplyKeepsRecords(t *testing.T) {
	s := newActive(t)
	mustApply(t, s, put(t0, "k", "1"))
	held, _ := s.Key("k")
	want := proto.Clone(held)
	heldPool := s.Pool()
	wantPool := proto.Clone(heldPool)

	mustApply(t, s,
		put(t0+1, "k", "2"),
		cmdAt(t0+2, &pb.UpdateKeyVersion{Name: "k", Version: vid("1"), Enabled: proto.Bool(false), Tags: &pb.Tags{Tags: map[string]string{"x": "y"}}, KeyOps: &pb.KeyOps{Ops: []string{"x"}}}),
		cmdAt(t0+3, &pb.SetRotationPolicy{Name: "k", Policy: &pb.RotationPolicy{ExpiryTime: "P1Y"}}),
		del(t0+4, "k"),
		undelete(t0+5, "k"),
		del(t0+6, "k"),
		purge(t0+7, "k"),
	)
	if !proto.Equal(held, want) {
		t.Errorf("a held record changed:\n got %v\nwant %v", held, want)
	}
	if !proto.Equal(heldPool, wantPool) {
		t.Errorf("the held pool record changed")
	}
}

// TestApplyTypedNilOperation covers Commands built in Go whose oneof holds a typed nil: a
// decoded command never does, but Apply must not panic on one.
func TestApplyTypedNilOperation(t *testing.T) {
	ops := []any{
		(*pb.Command_InitPool)(nil), (*pb.Command_Activate)(nil), (*pb.Command_PutKeyVersion)(nil),
		(*pb.Command_UpdateKeyVersion)(nil), (*pb.Command_DeleteKey)(nil), (*pb.Command_RecoverKey)(nil),
		(*pb.Command_PurgeKey)(nil), (*pb.Command_RestoreKey)(nil), (*pb.Command_SetRotationPolicy)(nil),
	}
	for _, op := range ops {
		s := newActive(t)
		before := snap(t, s)
		c := &pb.Command{Time: t0}
		reflect.ValueOf(c).Elem().FieldByName("Op").Set(reflect.ValueOf(op))
		checkErr(t, s.Apply(9, c), badParameter("the command has no operation this node knows"))
		if !bytes.Equal(snap(t, s), before) {
			t.Errorf("%T changed the state", op)
		}
	}
}
