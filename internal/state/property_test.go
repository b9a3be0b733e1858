package state

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"
	"pgregory.net/rapid"

	"github.com/hsmpool/hsmpool/internal/rpcerr"
	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

// The property test drives random command sequences over a few names and versions, so that
// names collide, keys are deleted, recovered, purged and reused, and versions repeat; and over
// a few principals, roles and assignments (access_property_test.go). A small
// model predicts which commands succeed; the state must agree with it, keep its invariants,
// behave the same on a second copy, and give the same state when rebuilt from a snapshot
// taken anywhere plus the commands that followed.

var (
	propNames    = []string{"a", "b", "c", "d", ""}
	propVersions = []string{"1", "2", "3", "4", "5", ""}
)

// genCommand draws one command at time t.
func genCommand(t *rapid.T, at int64) *pb.Command {
	name := rapid.SampledFrom(propNames).Draw(t, "name")
	ver := func(label string) string {
		if v := rapid.SampledFrom(propVersions).Draw(t, label); v != "" {
			return vid(v)
		}
		return ""
	}
	switch rapid.IntRange(0, 15).Draw(t, "op") {
	case 0, 1, 2:
		v := version("0")
		v.Version = ver("version")
		v.Attributes.RecoverableDays = int32(rapid.IntRange(0, 90).Draw(t, "days"))
		return cmdAt(at, &pb.PutKeyVersion{Name: name, Version: v, MaxVersions: int32(rapid.IntRange(0, 4).Draw(t, "max"))})
	case 3:
		u := &pb.UpdateKeyVersion{Name: name, Version: ver("version")}
		if rapid.Bool().Draw(t, "enabled?") {
			u.Enabled = proto.Bool(rapid.Bool().Draw(t, "enabled"))
		}
		if rapid.Bool().Draw(t, "expires?") {
			u.Expires = proto.Int64(int64(rapid.IntRange(0, 3).Draw(t, "expires")))
		}
		if rapid.Bool().Draw(t, "tags?") {
			u.Tags = &pb.Tags{Tags: map[string]string{"n": fmt.Sprint(at), "m": "x"}}
		}
		if rapid.Bool().Draw(t, "ops?") {
			u.KeyOps = &pb.KeyOps{Ops: []string{"sign"}}
		}
		if rapid.Bool().Draw(t, "policy?") {
			u.ReleasePolicy = &pb.ReleasePolicy{Data: []byte(fmt.Sprint(at))}
		}
		return cmdAt(at, u)
	case 4, 5:
		return del(at, name)
	case 6:
		return undelete(at, name)
	case 7:
		return purge(at, name)
	case 8:
		rec := &pb.KeyRecord{Name: name}
		for i := range rapid.IntRange(0, 3).Draw(t, "versions") {
			v := version("0")
			v.Version = ver(fmt.Sprintf("version %d", i))
			rec.Versions = append(rec.Versions, v)
		}
		if rapid.Bool().Draw(t, "deleted") {
			rec.Deletion = &pb.Deletion{DeletedDate: 1, ScheduledPurgeDate: 2}
		}
		return cmdAt(at, &pb.RestoreKey{Key: rec})
	case 9:
		var p *pb.RotationPolicy
		if rapid.Bool().Draw(t, "set policy") {
			p = &pb.RotationPolicy{ExpiryTime: "P1Y", LifetimeActions: []*pb.LifetimeAction{{TimeAfterCreate: "P30D", Action: "Rotate"}}}
		}
		return cmdAt(at, &pb.SetRotationPolicy{Name: name, Policy: p})
	case 10:
		return rapid.SampledFrom([]*pb.Command{initPool(at), activate(at), nil, cmdAt(at, nil)}).Draw(t, "pool or junk")
	case 11:
		return put(-1, name, "1") // refused: time before 1970
	default:
		return genAccessCommand(t, at)
	}
}

// modelKey is what the model knows of a key.
type modelKey struct {
	deleted  bool
	versions []string
}

// model predicts the outcome of commands.
type model struct {
	initialized, activated bool
	keys                   map[string]*modelKey
	access                 accessModel
}

// apply reports whether c should succeed, and if so applies it to the model.
func (m *model) apply(c *pb.Command) bool {
	if c == nil || c.Time < 0 {
		return false
	}
	switch op := c.Op.(type) {
	case *pb.Command_InitPool:
		if m.initialized {
			return false
		}
		m.initialized = true
		m.access.init()
	case *pb.Command_Activate:
		if !m.initialized || m.activated {
			return false
		}
		m.activated = true
	case *pb.Command_PutKeyVersion:
		o := op.PutKeyVersion
		k := m.keys[o.Name]
		switch {
		case !m.activated, o.Name == "", o.Version.Version == "":
			return false
		case k == nil:
			m.keys[o.Name] = &modelKey{versions: []string{o.Version.Version}}
			return true
		case k.deleted, slices.Contains(k.versions, o.Version.Version), o.MaxVersions > 0 && len(k.versions) >= int(o.MaxVersions):
			return false
		}
		k.versions = append(k.versions, o.Version.Version)
	case *pb.Command_UpdateKeyVersion:
		o := op.UpdateKeyVersion
		k := m.keys[o.Name]
		return k != nil && !k.deleted && (o.Version == "" || slices.Contains(k.versions, o.Version))
	case *pb.Command_DeleteKey:
		k := m.keys[op.DeleteKey.Name]
		if k == nil || k.deleted {
			return false
		}
		k.deleted = true
	case *pb.Command_RecoverKey:
		k := m.keys[op.RecoverKey.Name]
		if k == nil || !k.deleted {
			return false
		}
		k.deleted = false
	case *pb.Command_PurgeKey:
		k := m.keys[op.PurgeKey.Name]
		if k == nil || !k.deleted {
			return false
		}
		delete(m.keys, op.PurgeKey.Name)
	case *pb.Command_RestoreKey:
		rec := op.RestoreKey.Key
		if !m.activated || rec.Name == "" || m.keys[rec.Name] != nil || len(rec.Versions) == 0 {
			return false
		}
		var vs []string
		for _, v := range rec.Versions {
			if v.Version == "" || slices.Contains(vs, v.Version) {
				return false
			}
			vs = append(vs, v.Version)
		}
		m.keys[rec.Name] = &modelKey{versions: vs}
	case *pb.Command_SetRotationPolicy:
		k := m.keys[op.SetRotationPolicy.Name]
		return k != nil && !k.deleted
	default:
		return m.initialized && m.access.apply(c)
	}
	return true
}

// check compares the state's keys with the model's.
func (m *model) check(t *rapid.T, s *State) {
	t.Helper()
	var live, deleted int
	for name, k := range m.keys {
		rec, err := s.Key(name)
		if k.deleted {
			deleted++
			rec, err = s.DeletedKey(name)
		} else {
			live++
		}
		if err != nil {
			t.Fatalf("key %q (deleted %t): %v", name, k.deleted, err)
		}
		var vs []string
		for _, v := range rec.Versions {
			vs = append(vs, v.Version)
		}
		if !slices.Equal(vs, k.versions) {
			t.Fatalf("key %q: versions %q, model %q", name, vs, k.versions)
		}
	}
	if l, d := s.KeyCount(); l != live || d != deleted {
		t.Fatalf("KeyCount() = %d, %d; model %d, %d", l, d, live, deleted)
	}
	if m.initialized {
		m.access.check(t, s)
	}
}

func TestApplyProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		var cmds []*pb.Command
		if rapid.Bool().Draw(t, "init") {
			cmds = append(cmds, initPool(t0))
			if rapid.IntRange(0, 9).Draw(t, "activate") > 0 {
				cmds = append(cmds, activate(t0))
			}
		}
		n := rapid.IntRange(0, 80).Draw(t, "commands")
		for i := range n {
			cmds = append(cmds, genCommand(t, t0+int64(i)*day))
		}
		cut := rapid.IntRange(0, len(cmds)).Draw(t, "snapshot at")

		a, b := New(), New()
		m := &model{keys: map[string]*modelKey{}}
		var atCut []byte
		for i, c := range cmds {
			if i == cut {
				atCut = snap(t, a)
			}
			idx := uint64(i + 1)
			ea, eb := a.Apply(idx, c), b.Apply(idx, c)
			if fmt.Sprint(ea) != fmt.Sprint(eb) {
				t.Fatalf("command %d %v: %v on one state, %v on the other", i, c, ea, eb)
			}
			var re *rpcerr.Error
			if ea != nil && !errors.As(ea, &re) {
				t.Fatalf("command %d %v: error %T %v is not an *rpcerr.Error", i, c, ea, ea)
			}
			if want := m.apply(c); want != (ea == nil) {
				t.Fatalf("command %d %v: error %v; the model expects success %t", i, c, ea, want)
			}
			checkInvariants(t, a)
			m.check(t, a)
		}
		if cut == len(cmds) {
			atCut = snap(t, a)
		}
		final := snap(t, a)
		if !bytes.Equal(final, snap(t, b)) {
			t.Fatal("two states that applied the same commands differ")
		}

		r := New()
		if err := r.RestoreSnapshot(final); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(snap(t, r), final) {
			t.Fatal("the snapshot does not round-trip")
		}

		replay := New()
		if err := replay.RestoreSnapshot(atCut); err != nil {
			t.Fatal(err)
		}
		for i, c := range cmds[cut:] {
			_ = replay.Apply(uint64(cut+i+1), c)
		}
		if !bytes.Equal(snap(t, replay), final) {
			t.Fatalf("snapshot at %d plus the %d commands after it differs from applying all %d", cut, len(cmds)-cut, len(cmds))
		}
		if cut < len(cmds) && replay.Index() != a.Index() {
			t.Fatalf("replayed index %d, want %d", replay.Index(), a.Index())
		}
	})
}
