package core

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/hsmpool/hsmpool/internal/fault"
	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

// recorder applies commands and keeps them, as the leader's log would.
type recorder struct {
	*applyDirect
	made *[]*pb.Command
}

func (r recorder) Propose(ctx context.Context, cmd *pb.Command) error {
	*r.made = append(*r.made, proto.Clone(cmd).(*pb.Command))
	return r.applyDirect.Propose(ctx, cmd)
}

// lagging applies, before the next command proposed through it, a command another node had
// committed that this node's state had not applied yet when its core built the proposal.
type lagging struct {
	*applyDirect
	pending *pb.Command
}

func (l *lagging) Propose(ctx context.Context, cmd *pb.Command) error {
	if p := l.pending; p != nil {
		l.pending = nil
		if err := l.applyDirect.Propose(ctx, p); err != nil {
			return err
		}
	}
	return l.applyDirect.Propose(ctx, cmd)
}

// TestUpdateWithoutVersionTakesTheCurrentAtApply: a PATCH without a version, built on a node
// whose state lags behind a new version another node acknowledged, disables the version current
// when the write applies, not the one that was current on the node (which would leave the new
// version enabled).
func TestUpdateWithoutVersionTakesTheCurrentAtApply(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	c, ks := newTestCore(t, &now)
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer x"))
	if _, err := ks.CreateKey(ctx, &pb.CreateKeyRequest{Name: "k", Kty: "EC-HSM"}); err != nil {
		t.Fatal(err)
	}
	_, v1, err := c.st.Version("k", "")
	if err != nil {
		t.Fatal(err)
	}
	v2 := proto.Clone(v1).(*pb.KeyVersion)
	v2.Version = "00000000000000000000000000000002"
	l := &lagging{applyDirect: c.repl.(*applyDirect),
		pending: &pb.Command{Time: now.Unix(), Op: &pb.Command_PutKeyVersion{PutKeyVersion: &pb.PutKeyVersion{Name: "k", Version: v2}}}}
	c.repl = l

	got, err := ks.UpdateKey(ctx, &pb.UpdateKeyRequest{Name: "k", Attributes: &pb.KeyAttributes{Enabled: proto.Bool(false)}})
	if err != nil {
		t.Fatal(err)
	}
	_, cur, _ := c.st.Version("k", "")
	_, old, _ := c.st.Version("k", v1.Version)
	if cur.Version != v2.Version || cur.Attributes.GetEnabled() {
		t.Errorf("the current version %s is enabled=%v, want %s disabled", cur.Version, cur.Attributes.GetEnabled(), v2.Version)
	}
	if !old.Attributes.GetEnabled() {
		t.Error("the PATCH disabled the version that was current on the lagging node")
	}
	if got.GetVersion() != v2.Version {
		t.Errorf("the answer is version %s, want the updated %s", got.GetVersion(), v2.Version)
	}
}

// behind is a follower's replicator whose state has not applied a create yet: Sync applies it.
type behind struct {
	*applyDirect
	missing *pb.Command
	synced  int
}

func (b *behind) Sync(ctx context.Context) error {
	b.synced++
	if m := b.missing; m != nil {
		b.missing = nil
		return b.applyDirect.Propose(ctx, m)
	}
	return nil
}

// TestWriteOnLaggingFollowerSyncs: a PATCH and a rotation of a key this node's state does not
// have yet catch up with the leader once and succeed, instead of answering 404; a key that
// does not exist still gets 404 after one catch-up.
func TestWriteOnLaggingFollowerSyncs(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	c, ks := newTestCore(t, &now)
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer x"))
	direct := c.repl.(*applyDirect)

	// The commands another node would have made: capture them from a core that applies them.
	var made []*pb.Command
	c.repl = recorder{applyDirect: direct, made: &made}
	if _, err := ks.CreateKey(ctx, &pb.CreateKeyRequest{Name: "new", Kty: "EC-HSM"}); err != nil {
		t.Fatal(err)
	}
	// Another node's state, which lacks it.
	c2, ks2 := newTestCore(t, &now)
	b := &behind{applyDirect: c2.repl.(*applyDirect), missing: made[0]}
	c2.repl = b
	if _, err := ks2.UpdateKey(ctx, &pb.UpdateKeyRequest{Name: "new", Tags: &pb.Tags{Tags: map[string]string{"a": "b"}}}); err != nil {
		t.Fatalf("PATCH of a key the leader has: %v", err)
	}
	if b.synced != 1 {
		t.Errorf("synced %d times, want 1", b.synced)
	}
	if _, err := ks2.UpdateKey(ctx, &pb.UpdateKeyRequest{Name: "nowhere", Tags: &pb.Tags{Tags: map[string]string{"a": "b"}}}); !errors.Is(err, fault.NotFound) {
		t.Errorf("PATCH of a key no node has: %v, want NotFound", err)
	}
	if b.synced != 2 {
		t.Errorf("synced %d times, want 2", b.synced)
	}
}
