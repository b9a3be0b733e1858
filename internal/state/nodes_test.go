package state

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hsmpool/hsmpool/internal/fault"
	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

func TestNodeMap(t *testing.T) {
	s := newActive(t)
	apply := func(c *pb.Command) error { return s.Apply(s.Index()+1, c) }
	for _, id := range []string{"node-3", "node-1", "node-2"} {
		if err := apply(cmdAt(t0+10, &pb.PutNode{Node: &pb.NodeRecord{NodeId: id, NodeAddr: "127.0.0.1:1" + id[5:], Url: "https://127.0.0.1:8443", AuthorityHost: "https://127.0.0.1:8443"}})); err != nil {
			t.Fatal(err)
		}
	}
	// Replacing a record keeps one per node and takes the command's time.
	if err := apply(cmdAt(t0+20, &pb.PutNode{Node: &pb.NodeRecord{NodeId: "node-2", NodeAddr: "10.0.0.2:9000", Updated: 99}})); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, n := range s.Nodes() {
		got = append(got, n.NodeId+"@"+n.NodeAddr)
	}
	if want := "[node-1@127.0.0.1:11 node-2@10.0.0.2:9000 node-3@127.0.0.1:13]"; fmt.Sprint(got) != want {
		t.Fatalf("nodes %v, want %s", got, want)
	}
	if a := s.NodeAddr("node-2"); a != "10.0.0.2:9000" {
		t.Errorf("NodeAddr(node-2) = %q", a)
	}
	if s.Nodes()[1].Updated != t0+20 {
		t.Errorf("updated %d, want the command's time", s.Nodes()[1].Updated)
	}

	// The map survives a snapshot.
	b, err := s.MarshalSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	s2 := New()
	if err := s2.RestoreSnapshot(b); err != nil {
		t.Fatal(err)
	}
	if len(s2.Nodes()) != 3 || s2.NodeAddr("node-3") != "127.0.0.1:13" || s2.Nodes()[2].AuthorityHost != "https://127.0.0.1:8443" {
		t.Errorf("after a snapshot: %v", s2.Nodes())
	}

	if err := apply(cmdAt(t0+30, &pb.DeleteNode{NodeId: "node-1"})); err != nil {
		t.Fatal(err)
	}
	if err := apply(cmdAt(t0+30, &pb.DeleteNode{NodeId: "node-1"})); err != nil {
		t.Errorf("deleting an unknown node: %v, want no error", err)
	}
	if s.NodeAddr("node-1") != "" || len(s.Nodes()) != 2 {
		t.Errorf("node-1 still mapped: %v", s.Nodes())
	}

	for _, bad := range []*pb.NodeRecord{
		nil, {NodeAddr: "h:1"}, {NodeId: "a b", NodeAddr: "h:1"}, {NodeId: "n", NodeAddr: "nohost"},
		{NodeId: "n", NodeAddr: ":1"}, {NodeId: "n", NodeAddr: "h:1", Url: "http://h:1"},
		{NodeId: "n", NodeAddr: "h:1", AuthorityHost: "http://h:1"}, {NodeId: "n", NodeAddr: "h:1", AuthorityHost: "https://h:1/x"},
	} {
		before := snap(t, s)
		if err := apply(cmdAt(t0+40, &pb.PutNode{Node: bad})); !errors.Is(err, fault.BadParameter) {
			t.Errorf("PutNode(%v): %v, want BadParameter", bad, err)
		}
		if !bytes.Equal(before, snap(t, s)) {
			t.Errorf("PutNode(%v) changed the state", bad)
		}
	}
	for i := len(s.Nodes()); i < maxNodes; i++ {
		if err := apply(cmdAt(t0+50, &pb.PutNode{Node: &pb.NodeRecord{NodeId: fmt.Sprintf("x-%02d", i), NodeAddr: "h:1"}})); err != nil {
			t.Fatal(err)
		}
	}
	if err := apply(cmdAt(t0+50, &pb.PutNode{Node: &pb.NodeRecord{NodeId: "one-more", NodeAddr: "h:1"}})); !errors.Is(err, fault.Conflict) {
		t.Errorf("node %d: %v, want Conflict", maxNodes+1, err)
	}
}

// TestWaitIndex: waiters wake on the apply that reaches their index (also a refused command's,
// which advances the index too), and a waiter whose context ends gets its error.
func TestWaitIndex(t *testing.T) {
	s := newActive(t)
	start := s.Index()
	done := make(chan error, 2)
	for _, want := range []uint64{start + 1, start + 2} {
		go func() { done <- s.WaitIndex(context.Background(), want) }()
	}
	if err := s.WaitIndex(context.Background(), start); err != nil {
		t.Fatalf("an index already applied: %v", err)
	}
	if err := s.Apply(start+1, cmdAt(t0+10, &pb.DeleteNode{NodeId: "none"})); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		t.Fatalf("the waiter for %d returned (%v) before it was applied", start+2, err)
	case <-time.After(50 * time.Millisecond):
	}
	if err := s.Apply(start+2, cmdAt(t0+10, &pb.PutNode{})); err == nil {
		t.Fatal("an empty PutNode was applied")
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.WaitIndex(ctx, start+100); !errors.Is(err, context.Canceled) {
		t.Errorf("with an ended context: %v", err)
	}
}
