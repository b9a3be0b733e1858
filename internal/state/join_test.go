package state

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"testing"

	"github.com/hsmpool/hsmpool/internal/fault"
	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

func TestJoinTokens(t *testing.T) {
	h1, h2 := sha256.Sum256([]byte("one")), sha256.Sum256([]byte("two"))
	type step struct {
		cmd  *pb.Command
		kind fault.Kind // zero: must succeed
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"use once", []step{
			{cmdAt(t0+10, &pb.PutJoinToken{Hash: h1[:], Expires: t0 + 100}), 0},
			{cmdAt(t0+20, &pb.UseJoinToken{Hash: h1[:], NodeId: "node-2"}), 0},
			{cmdAt(t0+30, &pb.UseJoinToken{Hash: h1[:], NodeId: "node-2"}), 0}, // the same join polls
			{cmdAt(t0+200, &pb.UseJoinToken{Hash: h1[:], NodeId: "node-2"}), 0},
			{cmdAt(t0+40, &pb.UseJoinToken{Hash: h1[:], NodeId: "node-3"}), fault.Forbidden},
		}},
		{"expired", []step{
			{cmdAt(t0+10, &pb.PutJoinToken{Hash: h1[:], Expires: t0 + 100}), 0},
			{cmdAt(t0+100, &pb.UseJoinToken{Hash: h1[:], NodeId: "node-2"}), fault.Forbidden},
		}},
		{"unknown", []step{
			{cmdAt(t0+10, &pb.PutJoinToken{Hash: h1[:], Expires: t0 + 100}), 0},
			{cmdAt(t0+20, &pb.UseJoinToken{Hash: h2[:], NodeId: "node-2"}), fault.Forbidden},
		}},
		{"bad hash", []step{{cmdAt(t0+10, &pb.PutJoinToken{Hash: []byte("x"), Expires: t0 + 100}), fault.BadParameter}}},
		{"already expired", []step{{cmdAt(t0+10, &pb.PutJoinToken{Hash: h1[:], Expires: t0 + 10}), fault.BadParameter}}},
		{"twice", []step{
			{cmdAt(t0+10, &pb.PutJoinToken{Hash: h1[:], Expires: t0 + 100}), 0},
			{cmdAt(t0+11, &pb.PutJoinToken{Hash: h1[:], Expires: t0 + 100}), fault.Conflict},
		}},
		{"no node", []step{
			{cmdAt(t0+10, &pb.PutJoinToken{Hash: h1[:], Expires: t0 + 100}), 0},
			{cmdAt(t0+20, &pb.UseJoinToken{Hash: h1[:]}), fault.BadParameter},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newActive(t)
			for i, st := range tc.steps {
				before := snap(t, s)
				err := s.Apply(s.Index()+1, st.cmd)
				switch {
				case st.kind == 0 && err != nil:
					t.Fatalf("step %d: %v", i, err)
				case st.kind != 0 && !errors.Is(err, st.kind):
					t.Fatalf("step %d: error %v, want %v", i, err, st.kind)
				case st.kind != 0 && !bytes.Equal(before, snap(t, s)):
					t.Fatalf("step %d: a refused command changed the state", i)
				}
			}
		})
	}
}

func TestJoinTokensExpiredDropped(t *testing.T) {
	s := newActive(t)
	h1, h2, h3 := sha256.Sum256([]byte("one")), sha256.Sum256([]byte("two")), sha256.Sum256([]byte("three"))
	mustApply(t, s,
		cmdAt(t0+10, &pb.PutJoinToken{Hash: h1[:], Expires: t0 + 100}),
		cmdAt(t0+11, &pb.PutJoinToken{Hash: h2[:], Expires: t0 + 100}),
		cmdAt(t0+12, &pb.UseJoinToken{Hash: h2[:], NodeId: "node-2"}),
		cmdAt(t0+200, &pb.PutJoinToken{Hash: h3[:], Expires: t0 + 300}))
	if _, _, ok := s.JoinTokenUsedBy(h1[:]); ok {
		t.Error("the expired unused token is still kept")
	}
	if by, _, ok := s.JoinTokenUsedBy(h2[:]); !ok || by != "node-2" {
		t.Errorf("used token: %q %v, want node-2 kept", by, ok)
	}
	// The tokens survive a snapshot.
	b, err := s.MarshalSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	r := New()
	if err := r.RestoreSnapshot(b); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := r.JoinTokenUsedBy(h3[:]); !ok {
		t.Error("the snapshot lost a join token")
	}
}
