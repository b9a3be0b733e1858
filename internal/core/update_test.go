package core

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

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
