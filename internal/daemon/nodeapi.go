package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hsmpool/hsmpool/internal/cluster"
	"github.com/hsmpool/hsmpool/internal/fault"
	"github.com/hsmpool/hsmpool/internal/hsm"
	"github.com/hsmpool/hsmpool/internal/pki"
	"github.com/hsmpool/hsmpool/internal/rpcerr"
	"github.com/hsmpool/hsmpool/internal/state"
	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

// Version is the hsmpoold version a node reports in its status; cmd/hsmpoold sets it.
var Version = "dev"

// LeftFile is the marker "hsmpoold leave" writes in the data directory of a node that left
// the pool: serve and dev refuse to run such a node again.
const LeftFile = "LEFT"

// hsmProbeTimeout bounds the HSM probe of a node's status.
var hsmProbeTimeout = 2 * time.Second

// self is what a node reports of itself (Node.Status), with or without a node API.
type self struct {
	cfg  Config
	node *cluster.Node
	hsm  *hsm.Pool
}

// status is this node's own view: its Raft status, an HSM probe (one random byte from the
// token), its version and where it serves.
func (s self) status(ctx context.Context) *pb.NodeStatus {
	st := s.node.Status()
	ns := &pb.NodeStatus{NodeId: s.cfg.Raft.NodeID, RaftAddr: st.Address, NodeAddr: s.cfg.Raft.NodeAddr, Url: s.cfg.URL(),
		Role: capitalize(st.State.String()), Term: st.Term, LastIndex: st.LastIndex, CommitIndex: st.CommitIndex,
		AppliedIndex: st.AppliedIndex, LastContactMs: -1, Reachable: true, Version: Version}
	switch {
	case st.State == cluster.Leader:
		ns.LastContactMs = 0
	case !st.LastContact.IsZero():
		ns.LastContactMs = time.Since(st.LastContact).Milliseconds()
	}
	if s.hsm == nil {
		ns.HsmError = "no HSM"
		return ns
	}
	pctx, cancel := context.WithTimeout(ctx, hsmProbeTimeout)
	defer cancel()
	if _, err := s.hsm.Random(pctx, 1); err != nil {
		ns.HsmError = err.Error()
	} else {
		ns.HsmOk = true
	}
	return ns
}

// Status is the node API's Status: this node's own view, for any member (cluster status
// gathers it from every node).
func (s *joinServer) Status(ctx context.Context, _ *pb.NodeStatusRequest) (*pb.NodeStatus, error) {
	if _, err := s.ntls.peerNode(ctx); err != nil {
		return nil, grpcErr(fault.Forbidden, "%v", err)
	}
	return s.self().status(ctx), nil
}

// ReadIndex answers this node's commit index once a quorum confirmed that it still leads:
// a follower that waits until it has applied that index has every write acknowledged before
// the call.
func (s *joinServer) ReadIndex(ctx context.Context, _ *pb.ReadIndexRequest) (*pb.ReadIndexResponse, error) {
	if _, err := s.ntls.peerNode(ctx); err != nil {
		return nil, grpcErr(fault.Forbidden, "%v", err)
	}
	st := s.node.Status()
	if st.State != cluster.Leader {
		return nil, rpcerr.Status(notLeading(s.cfg.Raft.NodeID))
	}
	if err := s.node.VerifyLeader(ctx); err != nil {
		return nil, rpcerr.Status(notLeading(s.cfg.Raft.NodeID))
	}
	return &pb.ReadIndexResponse{Index: st.CommitIndex}, nil
}

func (s *joinServer) self() self { return self{cfg: s.cfg, node: s.node, hsm: s.hsm} }

// AddVoter adds a node that a member admitted with Join, on the leader: the member's Join
// asks the leader for it. The leader admits the node to its transport first.
func (s *joinServer) AddVoter(ctx context.Context, r *pb.AddVoterRequest) (*pb.AddVoterResponse, error) {
	from, err := s.ntls.peerNode(ctx)
	if err != nil {
		return nil, grpcErr(fault.Forbidden, "%v", err)
	}
	if s.node.Status().State != cluster.Leader {
		return nil, rpcerr.Status(notLeading(s.cfg.Raft.NodeID))
	}
	if _, err := pki.NodeURI(r.NodeId); err != nil {
		return nil, grpcErr(fault.BadParameter, "node_id %q: %v", r.NodeId, err)
	}
	s.ntls.admit(r.NodeId)
	if err := s.node.AddVoter(ctx, r.NodeId, r.RaftAddr); err != nil {
		if errors.Is(err, fault.NotLeader) {
			return nil, rpcerr.Status(notLeading(s.cfg.Raft.NodeID))
		}
		return nil, rpcerr.Status(err)
	}
	s.log.Info("node added as a voter", "node", r.NodeId, "raft_addr", r.RaftAddr, "asked_by", from)
	return &pb.AddVoterResponse{}, nil
}

// RemoveNode removes a node from the configuration and the node map, on the leader.
func (s *joinServer) RemoveNode(ctx context.Context, r *pb.RemoveNodeRequest) (*pb.RemoveNodeResponse, error) {
	from, err := s.ntls.peerNode(ctx)
	if err != nil {
		return nil, grpcErr(fault.Forbidden, "%v", err)
	}
	if s.node.Status().State != cluster.Leader {
		return nil, rpcerr.Status(notLeading(s.cfg.Raft.NodeID))
	}
	if err := s.members.removeHere(ctx, r.NodeId); err != nil {
		return nil, rpcerr.Status(err)
	}
	s.log.Info("node removed", "node", r.NodeId, "asked_by", from)
	return &pb.RemoveNodeResponse{}, nil
}

// Leave is "hsmpoold leave", called by the node itself with its own node certificate: it
// removes this node through the leader, writes DIR/LEFT, destroys the domain KEK in this
// node's token, and stops the daemon (Run returns nil).
func (s *joinServer) Leave(ctx context.Context, _ *pb.LeaveRequest) (*pb.LeaveResponse, error) {
	from, err := s.ntls.peerNode(ctx)
	if err != nil {
		return nil, grpcErr(fault.Forbidden, "%v", err)
	}
	if from != s.cfg.Raft.NodeID {
		return nil, grpcErr(fault.Forbidden, "only node %q itself may make it leave, not node %q: use hsmpool cluster remove", s.cfg.Raft.NodeID, from)
	}
	p := s.st.Pool()
	if p == nil {
		return nil, grpcErr(fault.Conflict, "this node holds no pool")
	}
	if err := s.members.RemoveNode(ctx, s.cfg.Raft.NodeID); err != nil {
		return nil, rpcerr.Status(err)
	}
	s.log.Warn("this node left the pool; destroying its domain KEK and stopping", "node", s.cfg.Raft.NodeID)
	defer s.stop()
	marker := filepath.Join(s.cfg.DataDir, LeftFile)
	if err := os.WriteFile(marker, []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o600); err != nil {
		s.log.Error("write the left marker", "file", marker, "err", err)
	}
	n, err := s.hsm.DestroyKEK(ctx, p.KekLabel)
	if err != nil {
		s.log.Error("destroy the domain KEK", "label", p.KekLabel, "err", err)
		return nil, grpcErr(fault.Unavailable, "node %s left the pool, but destroying the domain KEK %q in its token failed: %v; destroy that object with the token's own tools",
			s.cfg.Raft.NodeID, p.KekLabel, err)
	}
	return &pb.LeaveResponse{KekDestroyed: n > 0}, nil
}

// stop ends Run once, after a Leave.
func (s *joinServer) stop() {
	if s.left != nil {
		s.leftOnce.Do(func() { close(s.left) })
	}
}

// checkNotLeft refuses to run a node that left its pool.
func checkNotLeft(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, LeftFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return fmt.Errorf("the node in %s left its pool at %s (hsmpoold leave): it is no member and its token no longer holds the domain KEK; to run a node here, remove the directory and join the pool anew",
		dir, string(trimNL(b)))
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// nodeRecord is this node's entry of the node map.
func nodeRecord(cfg Config) *pb.NodeRecord {
	return &pb.NodeRecord{NodeId: cfg.Raft.NodeID, NodeAddr: cfg.Raft.NodeAddr, Url: cfg.URL(), AuthorityHost: strings.TrimSuffix(cfg.AuthorityHost, "/")}
}

// registerSelf writes this node's record to the node map through the replicator (forwarded
// when another node leads), retrying until it lands or ctx ends. A record that already says
// the same is left alone.
func registerSelf(ctx context.Context, cfg Config, st *state.State, repl replicator, log interface {
	Info(string, ...any)
	Debug(string, ...any)
}) {
	want := nodeRecord(cfg)
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		if sameRecord(st, want) {
			return
		}
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := repl.Propose(cctx, stamp(&pb.Command{Op: &pb.Command_PutNode{PutNode: &pb.PutNode{Node: want}}}))
		cancel()
		if err == nil {
			log.Info("node map: this node's record written", "node_addr", want.NodeAddr, "url", want.Url)
			return
		}
		log.Debug("node map: write this node's record; will retry", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

func sameRecord(st *state.State, want *pb.NodeRecord) bool {
	for _, n := range st.Nodes() {
		if n.NodeId == want.NodeId {
			return n.NodeAddr == want.NodeAddr && n.Url == want.Url && n.AuthorityHost == want.AuthorityHost
		}
	}
	return false
}

// stamp gives a command its ID and time.
func stamp(c *pb.Command) *pb.Command {
	c.Id, c.Time = uuid.NewString(), time.Now().Unix()
	return c
}

// Leave asks the running daemon of the node cfg describes to leave the pool (its node API,
// called with its own node certificate): it removes itself through the leader, destroys the
// domain KEK in its token, and stops. It returns whether a KEK was destroyed.
func Leave(ctx context.Context, cfg Config) (bool, error) {
	if cfg.Raft.NodeAddr == "" || !cfg.Raft.mTLS() {
		return false, errors.New("this node serves no node API (raft.node_addr): it is a single node, which has no pool to leave")
	}
	ntls, err := loadNodeTLS(cfg)
	if err != nil {
		return false, err
	}
	conn, err := grpc.NewClient("passthrough:///"+cfg.Raft.NodeAddr, grpc.WithTransportCredentials(credentialsFrom(ntls.client(cfg.Raft.NodeID))))
	if err != nil {
		return false, err
	}
	defer conn.Close()
	resp, err := pb.NewNodeClient(conn).Leave(ctx, &pb.LeaveRequest{})
	if err != nil {
		if st, ok := status.FromError(err); ok {
			if st.Code() == codes.Unavailable && strings.Contains(st.Message(), "connect") {
				return false, fmt.Errorf("the daemon of node %s does not answer on %s: is it running? (%s)", cfg.Raft.NodeID, cfg.Raft.NodeAddr, st.Message())
			}
			return false, errors.New(st.Message())
		}
		return false, err
	}
	return resp.KekDestroyed, nil
}
