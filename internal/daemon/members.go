package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/status"

	"github.com/hsmpool/hsmpool/internal/cluster"
	"github.com/hsmpool/hsmpool/internal/fault"
	"github.com/hsmpool/hsmpool/internal/rpcerr"
	"github.com/hsmpool/hsmpool/internal/state"
	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

// statusTimeout bounds the Node.Status call to each other node when the cluster status is
// gathered.
var statusTimeout = 2 * time.Second

// members is the core's Membership (docs/cluster.md, "Status and removal"): the status of
// every node of the Raft configuration, asked over the node API, and the removal of a node
// through the leader. On a single node over plain TCP (fwd nil) the status is the node's own
// and there is nothing to remove.
type members struct {
	me   self
	node *cluster.Node
	st   *state.State
	ntls *nodeTLS   // nil on plain TCP
	fwd  *forwarder // nil on plain TCP
	log  *slog.Logger
}

// Status reports every server of this node's latest Raft configuration, each as it reports
// itself (this node locally, the others over Node.Status in parallel, statusTimeout each), with
// the lag of each behind the leader's commit index.
func (m *members) Status(ctx context.Context) (*pb.ClusterStatus, error) {
	servers, err := m.node.Configuration()
	if err != nil {
		return nil, err
	}
	selfID := m.me.cfg.Raft.NodeID
	if len(servers) == 0 {
		servers = []cluster.Server{{ID: selfID, Address: m.node.Status().Address, Suffrage: cluster.Voter}}
	}
	leader, _ := m.node.Leader()
	out := make([]*pb.NodeStatus, len(servers))
	var wg sync.WaitGroup
	for i, sv := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = m.nodeStatus(ctx, sv)
		}()
	}
	wg.Wait()
	for _, n := range out {
		if n.NodeId != leader || !n.Reachable {
			continue
		}
		for _, o := range out {
			if o.Reachable && n.CommitIndex > o.AppliedIndex {
				o.Lag = n.CommitIndex - o.AppliedIndex
			}
		}
	}
	return &pb.ClusterStatus{LeaderId: leader, AnsweredBy: selfID, Nodes: out}, nil
}

// nodeStatus is server sv as it reports itself, completed with what the configuration and
// the node map say of it.
func (m *members) nodeStatus(ctx context.Context, sv cluster.Server) *pb.NodeStatus {
	var ns *pb.NodeStatus
	if sv.ID == m.me.cfg.Raft.NodeID {
		ns = m.me.status(ctx)
	} else {
		ns = m.remoteStatus(ctx, sv.ID)
	}
	ns.NodeId, ns.RaftAddr, ns.Suffrage = sv.ID, sv.Address, capitalize(sv.Suffrage.String())
	ns.Role = capitalize(ns.Role)
	for _, r := range m.st.Nodes() {
		if r.NodeId == sv.ID {
			if ns.NodeAddr == "" {
				ns.NodeAddr = r.NodeAddr
			}
			if ns.Url == "" {
				ns.Url = r.Url
			}
		}
	}
	return ns
}

func (m *members) remoteStatus(ctx context.Context, id string) *pb.NodeStatus {
	unreachable := func(err error) *pb.NodeStatus {
		msg := err.Error()
		if st, ok := status.FromError(err); ok {
			msg = st.Message()
		}
		return &pb.NodeStatus{NodeId: id, LastContactMs: -1, Error: msg}
	}
	if m.fwd == nil {
		return unreachable(errors.New("this node has no node certificate to ask other nodes with"))
	}
	c, err := m.fwd.client(id)
	if err != nil {
		return unreachable(err)
	}
	cctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	ns, err := c.Status(cctx, &pb.NodeStatusRequest{})
	if err != nil {
		return unreachable(err)
	}
	ns.Reachable, ns.Error = true, ""
	return ns
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// RemoveNode removes node id through the leader: here when this node leads, else with the
// leader's Node.RemoveNode (once more with the next leader if that one no longer leads).
func (m *members) RemoveNode(ctx context.Context, id string) error {
	if m.fwd == nil {
		return rpcerr.New(fault.Unsupported, "", "this pool is a single node on plain TCP: it has no other node to remove, and its only node cannot be removed")
	}
	for retried := false; ; retried = true {
		if m.node.Status().State == cluster.Leader {
			err := m.removeHere(ctx, id)
			if !errors.Is(err, fault.NotLeader) || retried {
				return err
			}
			m.fwd.awaitOtherLeader(ctx, m.me.cfg.Raft.NodeID)
			continue
		}
		leader, c, err := m.fwd.leader()
		if err != nil {
			return err
		}
		_, err = c.RemoveNode(ctx, &pb.RemoveNodeRequest{NodeId: id})
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		err = rpcerr.FromStatus(err)
		if retried || !noLongerLeads(err) {
			return err
		}
		m.fwd.awaitOtherLeader(ctx, leader)
	}
}

// removeHere removes node id on the leader: its node-map record first (once the node is out
// of the configuration, it could not be written by the node itself, and a leader removing
// itself stops leading), then the Raft server. An unknown node is NotFound; the only node
// cannot be removed.
func (m *members) removeHere(ctx context.Context, id string) error {
	servers, err := m.node.Configuration()
	if err != nil {
		return err
	}
	found := false
	for _, s := range servers {
		found = found || s.ID == id
	}
	if !found {
		return &rpcerr.Error{Kind: fault.NotFound, Code: "NotFound", Msg: fmt.Sprintf("node %q is not a member of the pool", id)}
	}
	if len(servers) == 1 {
		return &rpcerr.Error{Kind: fault.Conflict, Code: "Conflict", Msg: fmt.Sprintf("node %q is the pool's only node: it cannot be removed", id)}
	}
	if err := propose(ctx, m.node, stamp(&pb.Command{Op: &pb.Command_DeleteNode{DeleteNode: &pb.DeleteNode{NodeId: id}}})); err != nil {
		return err
	}
	if err := m.node.RemoveServer(ctx, id); err != nil {
		return err
	}
	if m.ntls != nil {
		m.ntls.forget(id)
	}
	m.log.Info("node removed from the Raft configuration and the node map", "node", id)
	return nil
}

// addVoter has the leader add node id (admitted by a Join on this node) as a voter: here when
// this node leads, else with the leader's Node.AddVoter; retried every second across leader
// changes until it succeeds, fails for good, or ctx ends.
func (m *members) addVoter(ctx context.Context, id, addr string) error {
	for {
		var err error
		if m.node.Status().State == cluster.Leader {
			err = m.node.AddVoter(ctx, id, addr)
		} else {
			var c pb.NodeClient
			if _, c, err = m.fwd.leader(); err == nil {
				_, err = c.AddVoter(ctx, &pb.AddVoterRequest{NodeId: id, RaftAddr: addr})
				err = rpcerr.FromStatus(err)
			}
		}
		switch k := fault.Of(err); {
		case err == nil:
			return nil
		case ctx.Err() != nil, k == fault.BadParameter, k == fault.Forbidden, k == fault.Unsupported:
			return err
		default:
			m.log.Info("add the joined node as a voter: retrying", "node", id, "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}
