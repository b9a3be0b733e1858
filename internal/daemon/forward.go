package daemon

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/proto"

	"github.com/hsmpool/hsmpool/internal/cluster"
	"github.com/hsmpool/hsmpool/internal/fault"
	"github.com/hsmpool/hsmpool/internal/fsm"
	"github.com/hsmpool/hsmpool/internal/pki"
	"github.com/hsmpool/hsmpool/internal/rpcerr"
	"github.com/hsmpool/hsmpool/internal/state"
	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

// replicator is the core's Replicator: it applies a command through this node's Raft when
// it leads, and otherwise forwards it to the leader's node API (docs/cluster.md, "Forwarding
// writes") and waits until this node's state has applied it, so that the caller reads its
// own write here at once.
type replicator struct {
	n   *cluster.Node
	st  *state.State
	fwd *forwarder // nil: a node without a node certificate (a single node) never forwards
}

func (r replicator) Propose(ctx context.Context, cmd *pb.Command) error {
	b, err := fsm.Encode(cmd)
	if err != nil {
		return err
	}
	for retried := false; ; retried = true {
		_, err = r.n.Apply(ctx, b)
		// NotLeader: the command was not proposed here, so sending it to the leader cannot
		// apply it twice.
		if r.fwd == nil || !errors.Is(err, fault.NotLeader) {
			return err
		}
		leader, idx, err := r.fwd.forward(ctx, b)
		if err == nil {
			return r.st.WaitIndex(ctx, idx)
		}
		// The node this one took for the leader no longer leads, and did not propose the
		// command: once, wait until another leader is known and send it there (or apply it
		// here, if this node leads now).
		if retried || !noLongerLeads(err) {
			return err
		}
		r.fwd.awaitOtherLeader(ctx, leader)
	}
}

// Sync returns once this node's state holds every write acknowledged before the call: at
// once on the leader; on a follower, after it applied the leader's read index. The core calls
// it when a write finds nothing in the local state, which may lag (docs/cluster.md, "Stale
// state on a follower").
func (r replicator) Sync(ctx context.Context) error {
	if r.fwd == nil || r.n.Status().State == cluster.Leader {
		return nil
	}
	_, c, err := r.fwd.leader()
	if err != nil {
		return err
	}
	resp, err := c.ReadIndex(ctx, &pb.ReadIndexRequest{})
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return rpcerr.FromStatus(err)
	}
	return r.st.WaitIndex(ctx, resp.Index)
}

// noLeader is the error of a write that no known leader can take: 503 with Retry-After.
func noLeader(format string, args ...any) error {
	return &rpcerr.Error{Kind: fault.Unavailable, Code: "ServiceUnavailable", Msg: fmt.Sprintf(format, args...), RetryAfter: 1}
}

// innerNotLeader marks the answer of a node that was asked as the leader and does not lead
// (it proposed nothing): the caller may send the same request to the new leader.
const innerNotLeader = "NotLeader"

// notLeading is that answer: a 503 with Retry-After should it reach a client.
func notLeading(self string) error {
	return &rpcerr.Error{Kind: fault.Unavailable, Code: "ServiceUnavailable", Inner: innerNotLeader,
		Msg: fmt.Sprintf("node %q is no longer the leader; retry", self), RetryAfter: 1}
}

// noLongerLeads tells whether err is notLeading's, passed back by rpcerr.FromStatus.
func noLongerLeads(err error) bool {
	var e *rpcerr.Error
	return errors.As(err, &e) && e.Inner == innerNotLeader
}

// forwarder sends commands to the leader's node API over mutual TLS with this node's
// certificate, and keeps one gRPC connection per leader.
type forwarder struct {
	n     *cluster.Node
	ntls  *nodeTLS
	st    *state.State      // the node map: node API address by node ID
	addrs map[string]string // the same from raft.peer_node_addrs, asked when the map has none

	mu    sync.Mutex
	conns map[string]*grpc.ClientConn // by node ID and address

	leaderOf func() string // the leader's ID; nil: the Raft node's (tests replace it)
}

func (f *forwarder) leaderID() string {
	if f.leaderOf != nil {
		return f.leaderOf()
	}
	id, _ := f.n.Leader()
	return id
}

func newForwarder(n *cluster.Node, ntls *nodeTLS, st *state.State, addrs map[string]string) *forwarder {
	return &forwarder{n: n, ntls: ntls, st: st, addrs: addrs, conns: map[string]*grpc.ClientConn{}}
}

// addrOf is the node API address of node id: from the node map, else from
// raft.peer_node_addrs; "" when neither knows it.
func (f *forwarder) addrOf(id string) string {
	if f.st != nil {
		if a := f.st.NodeAddr(id); a != "" {
			return a
		}
	}
	return f.addrs[id]
}

// leader returns the ID of the leader this node knows and a client of its node API.
func (f *forwarder) leader() (string, pb.NodeClient, error) {
	id := f.leaderID()
	if id == "" {
		return "", nil, noLeader("no Raft leader is known to take the write; retry")
	}
	c, err := f.client(id)
	return id, c, err
}

// client is a client of node id's node API.
func (f *forwarder) client(id string) (pb.NodeClient, error) {
	addr := f.addrOf(id)
	if addr == "" {
		return nil, noLeader("node %q serves no node API this node knows (node map, raft.peer_node_addrs); retry", id)
	}
	conn, err := f.conn(id, addr)
	if err != nil {
		return nil, err
	}
	return pb.NewNodeClient(conn), nil
}

// forward sends the encoded command b to the leader and returns the leader's ID and the Raft
// index at which it was applied there. The leader's refusal comes back as the *rpcerr.Error
// it answered.
func (f *forwarder) forward(ctx context.Context, b []byte) (string, uint64, error) {
	id, c, err := f.leader()
	if err != nil {
		return id, 0, err
	}
	resp, err := c.Forward(ctx, &pb.ForwardRequest{Command: b})
	if err != nil {
		if ctx.Err() != nil {
			return id, 0, ctx.Err()
		}
		return id, 0, rpcerr.FromStatus(err)
	}
	return id, resp.Index, nil
}

// otherLeaderWait bounds how long a node whose leader stepped down waits to learn the next.
var otherLeaderWait = 3 * time.Second

// awaitOtherLeader returns once this node knows a leader other than old, after
// otherLeaderWait, or when ctx ends.
func (f *forwarder) awaitOtherLeader(ctx context.Context, old string) {
	ctx, cancel := context.WithTimeout(ctx, otherLeaderWait)
	defer cancel()
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if id := f.leaderID(); id != "" && id != old {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (f *forwarder) conn(id, addr string) (*grpc.ClientConn, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	key := id + " " + addr
	if c, ok := f.conns[key]; ok {
		return c, nil
	}
	c, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(credentials.NewTLS(f.ntls.client(id))))
	if err != nil {
		return nil, fmt.Errorf("the node API of leader %q at %s: %w", id, addr, err)
	}
	f.conns[key] = c
	return c, nil
}

// Close closes the connections to the leaders.
func (f *forwarder) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	var err error
	for k, c := range f.conns {
		err = errors.Join(err, c.Close())
		delete(f.conns, k)
	}
	return err
}

// client is the TLS of a call to the node API of node id: this node's certificate, and a
// server certificate of the pool CA (serverAuth) that names id. Host names are not checked:
// the node ID is the identity, as on the Raft transport.
func (n *nodeTLS) client(id string) *tls.Config {
	return &tls.Config{
		MinVersion:           tls.VersionTLS13,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return n.certificate() },
		InsecureSkipVerify:   true, // replaced by VerifyPeerCertificate, which checks the chain and the node ID
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			chain, err := parseChain(raw)
			if err != nil {
				return err
			}
			got, err := pki.VerifyNode(n.cas, chain, x509.ExtKeyUsageServerAuth, time.Now())
			if err != nil {
				return fmt.Errorf("the node API's certificate: %w", err)
			}
			if got != id {
				return fmt.Errorf("the node API's certificate names node %q, not the leader %q", got, id)
			}
			return nil
		},
	}
}

func parseChain(raw [][]byte) ([]*x509.Certificate, error) {
	chain := make([]*x509.Certificate, 0, len(raw))
	for _, der := range raw {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("the peer's certificate chain: %w", err)
		}
		chain = append(chain, c)
	}
	return chain, nil
}

// peerNode returns the ID of the pool member that made the call: its TLS client certificate
// must be a node certificate of the pool CA (clientAuth) whose ID Allowed accepts.
func (n *nodeTLS) peerNode(ctx context.Context) (string, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "", errors.New("no peer")
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.PeerCertificates) == 0 {
		return "", errors.New("no node certificate: only pool nodes may call this")
	}
	id, err := n.verifiedNode(ti.State.PeerCertificates)
	if err != nil {
		return "", err
	}
	if !n.allowed(id) {
		return "", fmt.Errorf("node %q is not a member of the pool", id)
	}
	return id, nil
}

// maxVerified bounds the cache of verified certificates; it is emptied when full (connections
// come and go; a pool has a handful of nodes).
const maxVerified = 1024

// verifiedNode returns the node ID of a client certificate chain (leaf first) of the pool CA
// with clientAuth usage, verifying each connection's chain once.
func (n *nodeTLS) verifiedNode(chain []*x509.Certificate) (string, error) {
	leaf := chain[0]
	now := time.Now()
	if id, ok := n.verified.Load(leaf); ok && now.Before(leaf.NotAfter) {
		return id.(string), nil
	}
	id, err := pki.VerifyNode(n.cas, chain, x509.ExtKeyUsageClientAuth, now)
	if err != nil {
		return "", fmt.Errorf("the caller's node certificate: %w", err)
	}
	if n.verifiedCount.Add(1) > maxVerified {
		n.verified.Clear()
		n.verifiedCount.Store(1)
	}
	n.verified.Store(leaf, id)
	return id, nil
}

// Forward applies a command a follower built: docs/cluster.md, "Forwarding writes". Only a
// pool member may call it; the member is trusted as this node's own core is (it holds the
// KEK, and built the command after its own authentication and authorization).
func (s *joinServer) Forward(ctx context.Context, r *pb.ForwardRequest) (*pb.ForwardResponse, error) {
	from, err := s.ntls.peerNode(ctx)
	if err != nil {
		return nil, grpcErr(fault.Forbidden, "%v", err)
	}
	var cmd pb.Command
	if err := proto.Unmarshal(r.Command, &cmd); err != nil || cmd.Op == nil || len(cmd.ProtoReflect().GetUnknown()) > 0 {
		return nil, grpcErr(fault.BadParameter, "the forwarded command is malformed, empty, or has fields this node does not know")
	}
	if s.node.Status().State != cluster.Leader {
		return nil, rpcerr.Status(notLeading(s.cfg.Raft.NodeID))
	}
	idx, _, err := s.node.ApplyIndex(ctx, r.Command)
	if errors.Is(err, fault.NotLeader) { // not proposed: the follower may send it to the new leader
		return nil, rpcerr.Status(notLeading(s.cfg.Raft.NodeID))
	}
	if err != nil {
		s.log.Debug("forwarded command refused", "from", from, "id", cmd.Id, "error", err)
		return nil, rpcerr.Status(err)
	}
	return &pb.ForwardResponse{Index: idx}, nil
}
