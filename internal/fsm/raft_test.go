package fsm

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/hsmpool/hsmpool/internal/rpcerr"
	"github.com/hsmpool/hsmpool/internal/state"
	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

// raftNode is a single-voter Raft in memory around an FSM.
type raftNode struct {
	raft  *raft.Raft
	state *state.State
}

// startRaft starts a node on the given stores (bootstrapping them if they are new) with a
// fresh state, and waits until it leads.
func startRaft(t *testing.T, store *raft.InmemStore, snaps raft.SnapshotStore, addr raft.ServerAddress, bootstrap bool) *raftNode {
	t.Helper()
	conf := raft.DefaultConfig()
	conf.LocalID = "node-1"
	conf.HeartbeatTimeout = 50 * time.Millisecond
	conf.ElectionTimeout = 50 * time.Millisecond
	conf.LeaderLeaseTimeout = 50 * time.Millisecond
	conf.CommitTimeout = 5 * time.Millisecond
	conf.SnapshotThreshold = 1 << 20 // snapshots only when the test asks
	conf.BatchApplyCh = true         // so that ApplyBatch is used
	conf.Logger = hclog.NewNullLogger()
	_, trans := raft.NewInmemTransport(addr)
	if bootstrap {
		cfg := raft.Configuration{Servers: []raft.Server{{ID: conf.LocalID, Address: addr}}}
		if err := raft.BootstrapCluster(conf, store, store, snaps, trans, cfg); err != nil {
			t.Fatal(err)
		}
	}
	s := state.New()
	r, err := raft.NewRaft(conf, New(s, nil), store, store, snaps, trans)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for r.State() != raft.Leader {
		if time.Now().After(deadline) {
			t.Fatal("no leader after 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return &raftNode{raft: r, state: s}
}

// apply proposes c and returns the FSM's response.
func (n *raftNode) apply(t *testing.T, c *pb.Command) any {
	t.Helper()
	f := n.raft.Apply(encode(t, c), 5*time.Second)
	if err := f.Error(); err != nil {
		t.Fatalf("raft apply: %v", err)
	}
	return f.Response()
}

func TestRaftSingleNode(t *testing.T) {
	store, snaps := raft.NewInmemStore(), raft.NewInmemSnapshotStore()
	addr := raft.NewInmemAddr()
	n := startRaft(t, store, snaps, addr, true)

	for _, c := range []*pb.Command{initPool(), activate(), put("k", "1")} {
		if resp := n.apply(t, c); resp != nil {
			t.Fatalf("%s: %v", c.Id, resp)
		}
	}
	resp := n.apply(t, put("k", "1"))
	if e, ok := resp.(*rpcerr.Error); !ok || e.Code != "Conflict" {
		t.Fatalf("duplicate version: response %T %v, want a Conflict *rpcerr.Error", resp, resp)
	}

	// Concurrent proposals are batched by Raft and reach ApplyBatch.
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			f := n.raft.Apply(encode(t, put(fmt.Sprintf("c%02d", i), "1")), 5*time.Second)
			if err := f.Error(); err != nil {
				t.Errorf("raft apply: %v", err)
			} else if f.Response() != nil {
				t.Errorf("c%02d: %v", i, f.Response())
			}
		})
	}
	wg.Wait()
	if live, _ := n.state.KeyCount(); live != 51 {
		t.Fatalf("%d live keys, want 51", live)
	}
	if n.state.Index() != n.raft.AppliedIndex() {
		t.Errorf("state index %d, raft applied index %d", n.state.Index(), n.raft.AppliedIndex())
	}

	// Take a snapshot, then apply a tail after it.
	sf := n.raft.Snapshot()
	if err := sf.Error(); err != nil {
		t.Fatal(err)
	}
	atSnapshot := snap(t, n.state)
	meta, rc, err := sf.Open()
	if err != nil {
		t.Fatal(err)
	}
	restored := state.New()
	if err := New(restored, nil).Restore(rc); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(snap(t, restored), atSnapshot) {
		t.Fatal("the snapshot Raft stored does not restore to the state it was taken from")
	}
	if meta.Index < 54 {
		t.Errorf("snapshot index %d", meta.Index)
	}
	for _, c := range []*pb.Command{put("k", "2"), del("c00"), del("c01")} {
		if resp := n.apply(t, c); resp != nil {
			t.Fatalf("%s: %v", c.Id, resp)
		}
	}
	final := snap(t, n.state)
	if err := n.raft.Shutdown().Error(); err != nil {
		t.Fatal(err)
	}

	// A restarted node restores the snapshot and replays the tail from the log.
	n2 := startRaft(t, store, snaps, addr, false)
	defer func() { _ = n2.raft.Shutdown().Error() }()
	if err := n2.raft.Barrier(5 * time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(snap(t, n2.state), final) {
		t.Fatal("the restarted node's state differs")
	}
	if _, err := n2.state.DeletedKey("c01"); err != nil {
		t.Errorf("the tail after the snapshot was not replayed: %v", err)
	}
}
