package daemon

import (
	"context"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hsmpool/hsmpool/internal/cluster"
	"github.com/hsmpool/hsmpool/internal/fault"
	"github.com/hsmpool/hsmpool/internal/fsm"
	"github.com/hsmpool/hsmpool/internal/hsm"
	"github.com/hsmpool/hsmpool/internal/nodejoin"
	"github.com/hsmpool/hsmpool/internal/pki"
	"github.com/hsmpool/hsmpool/internal/state"
	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

// JoinsDir is where a source node keeps the offers of the joins that wait for its security
// officer, one DIR/joins/<node>.pem each; "hsmpoold trust-join-key" reads them.
const JoinsDir = "joins"

// offerPEMType is the PEM type of a stored offer.
const offerPEMType = "HSMPOOL JOIN OFFER"

// addVoterTimeout bounds how long the leader waits for a joined node to come up and take the
// configuration that makes it a voter.
var addVoterTimeout = 10 * time.Minute

// joinServer is the node API (docs/cluster.md): Join on any node that holds the CA key,
// Forward, AddVoter and RemoveNode on the leader, Status on any member, Leave for the node
// itself.
type joinServer struct {
	pb.UnsafeNodeServer
	cfg     Config
	node    *cluster.Node
	st      *state.State
	hsm     *hsm.Pool
	ntls    *nodeTLS
	repl    replicator
	members *members
	log     *slog.Logger

	mu   sync.Mutex                  // one join step at a time
	done map[string]*pb.JoinResponse // answers already given, by node ID and offer fingerprint

	left     chan struct{} // closed by a Leave: Run stops
	leftOnce sync.Once
}

func newJoinServer(cfg Config, node *cluster.Node, st *state.State, pool *hsm.Pool, ntls *nodeTLS, repl replicator, m *members, log *slog.Logger) *joinServer {
	return &joinServer{cfg: cfg, node: node, st: st, hsm: pool, ntls: ntls, repl: repl, members: m, log: log,
		done: map[string]*pb.JoinResponse{}, left: make(chan struct{})}
}

// serveNodeAPI serves the node API on cfg.Raft.NodeAddr until the returned stop is called.
func serveNodeAPI(cfg Config, js *joinServer) (stop func(), err error) {
	l, err := net.Listen("tcp", cfg.Raft.NodeAddr)
	if err != nil {
		return nil, fmt.Errorf("raft.node_addr: %w", err)
	}
	// A forwarded command may be as large as a request body (a restore carries the state).
	srv := grpc.NewServer(grpc.Creds(credentialsFrom(js.ntls.server())), grpc.MaxRecvMsgSize(int(cfg.MaxBodyBytes)+64<<10))
	pb.RegisterNodeServer(srv, js)
	go srv.Serve(l)
	// Calls in flight (a Leave answering) finish, for a few seconds at most.
	return func() {
		done := make(chan struct{})
		go func() { srv.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			srv.Stop()
		}
	}, nil
}

func grpcErr(kind fault.Kind, format string, args ...any) error {
	code := codes.Internal
	switch kind {
	case fault.BadParameter:
		code = codes.InvalidArgument
	case fault.Forbidden:
		code = codes.PermissionDenied
	case fault.NotLeader:
		code = codes.FailedPrecondition
	case fault.Conflict:
		code = codes.FailedPrecondition
	case fault.Unavailable:
		code = codes.Unavailable
	}
	return status.Errorf(code, format, args...)
}

// Join admits a node: docs/cluster.md, "Joining". Any member with the CA key runs it: the
// token is spent through Raft (forwarded to the leader), the KEK comes from this node's HSM,
// the certificates from its copy of the CA, and the leader adds the node (AddVoter).
func (s *joinServer) Join(ctx context.Context, r *pb.JoinRequest) (*pb.JoinResponse, error) {
	if s.cfg.TLS.CAKey == "" {
		return nil, grpcErr(fault.Conflict, "node %q holds no CA key and admits no node; join through another node", s.cfg.Raft.NodeID)
	}
	tok, err := nodejoin.ParseToken(r.Token)
	if err != nil {
		return nil, grpcErr(fault.BadParameter, "%v", err)
	}
	if !tok.CAMatches(s.ntls.caDER) {
		return nil, grpcErr(fault.Forbidden, "the join token pins another CA than this pool's")
	}
	if _, err := pki.NodeURI(r.NodeId); err != nil || r.NodeId == s.cfg.Raft.NodeID {
		return nil, grpcErr(fault.BadParameter, "node_id %q: want 1..128 printable ASCII bytes, not this node's", r.NodeId)
	}
	host, _, err := net.SplitHostPort(r.RaftAddr)
	if err != nil || host == "" {
		return nil, grpcErr(fault.BadParameter, "raft_addr %q: want host:port", r.RaftAddr)
	}
	if r.NodeAddr != "" {
		if h, p, err := net.SplitHostPort(r.NodeAddr); err != nil || h == "" || p == "" {
			return nil, grpcErr(fault.BadParameter, "node_addr %q: want host:port", r.NodeAddr)
		}
	}
	offer, err := nodejoin.ParseOffer(r.Offer)
	if err != nil {
		return nil, grpcErr(fault.BadParameter, "%v", err)
	}
	p := s.st.Pool()
	if p == nil || !p.Activated {
		return nil, grpcErr(fault.Conflict, "the pool is not activated: download its security domain before nodes join")
	}
	fp := offer.Fingerprint()
	fpHex := hex.EncodeToString(fp[:])

	s.mu.Lock()
	defer s.mu.Unlock()
	if resp, ok := s.done[r.NodeId+"/"+fpHex]; ok {
		return resp, nil
	}
	// The token: spent by this node now, or by this node before (a join that polls).
	if usedBy, _, ok := s.st.JoinTokenUsedBy(tok.Hash()); !ok || usedBy != r.NodeId {
		cmd := stamp(&pb.Command{Op: &pb.Command_UseJoinToken{UseJoinToken: &pb.UseJoinToken{Hash: tok.Hash(), NodeId: r.NodeId}}})
		if err := s.repl.Propose(ctx, cmd); err != nil {
			if k := fault.Of(err); k == fault.Unavailable || k == fault.NotLeader {
				return nil, grpcErr(fault.Unavailable, "spend the join token: %v", err)
			}
			s.log.Warn("join refused", "node", r.NodeId, "err", err)
			return nil, grpcErr(fault.Forbidden, "the join token is refused: %v", err)
		}
	}
	if err := s.storeOffer(r.NodeId, r.Offer); err != nil {
		return nil, grpcErr(fault.Unavailable, "store the offer: %v", err)
	}
	kek, err := s.hsm.FindKEK(ctx, p.KekLabel)
	if err != nil {
		return nil, grpcErr(fault.Unavailable, "find the domain KEK: %v", err)
	}
	wrapped, err := s.hsm.SendKEK(ctx, kek, offer.Transport)
	if errors.Is(err, fault.Forbidden) {
		s.log.Info("join waits for the security officer", "node", r.NodeId, "fingerprint", fpHex)
		return &pb.JoinResponse{Pending: true, Fingerprint: fpHex, Sender: s.cfg.Raft.NodeID}, nil
	}
	if err != nil {
		return nil, grpcErr(fault.Unavailable, "wrap the KEK to the join key: %v", err)
	}
	resp, err := s.answer(r, p, offer, wrapped, host)
	if err != nil {
		return nil, grpcErr(fault.Unavailable, "%v", err)
	}
	resp.Fingerprint = fpHex
	s.done[r.NodeId+"/"+fpHex] = resp
	_ = os.Remove(filepath.Join(s.cfg.DataDir, JoinsDir, pathSafe(r.NodeId)+".pem"))
	s.ntls.admit(r.NodeId)
	s.log.Info("KEK sent to a joining node; the leader adds it as a voter", "node", r.NodeId, "raft_addr", r.RaftAddr)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), addVoterTimeout)
		defer cancel()
		if err := s.members.addVoter(ctx, r.NodeId, r.RaftAddr); err != nil {
			s.log.Error("add the joined node as a voter", "node", r.NodeId, "err", err)
			return
		}
		s.log.Info("node joined", "node", r.NodeId)
	}()
	return resp, nil
}

// answer builds what the joiner needs besides its KEK: its node and server certificates from
// the pool CA, the CA, the token-signing key and the pool's settings.
func (s *joinServer) answer(r *pb.JoinRequest, p *pb.PoolRecord, offer *nodejoin.Offer, wrapped []byte, host string) (*pb.JoinResponse, error) {
	sealed, err := nodejoin.Seal(offer, wrapped, nodejoin.Binding{Pool: p.Name, Sender: s.cfg.Raft.NodeID, Joiner: r.NodeId})
	if err != nil {
		return nil, err
	}
	ca, err := pki.LoadCA(s.cfg.TLS.CAFile, s.cfg.TLS.CAKey)
	if err != nil {
		return nil, fmt.Errorf("load the pool CA: %w", err)
	}
	nodeNames := []string{host}
	if h, _, err := net.SplitHostPort(r.NodeAddr); err == nil && h != host {
		nodeNames = append(nodeNames, h)
	}
	nodeCert, nodeKey, err := ca.IssueNode(pki.NodeOptions{NodeID: r.NodeId, Names: nodeNames})
	if err != nil {
		return nil, err
	}
	names := []string{s.cfg.Name + ".managedhsm." + s.cfg.DNSSuffix, "managedhsm." + s.cfg.DNSSuffix, "localhost", "127.0.0.1", "::1"}
	if !contains(names, host) {
		names = append(names, host)
	}
	srvCert, srvKey, err := ca.Issue(pki.LeafOptions{CommonName: names[0], Names: names, Server: true, Validity: 2 * 365 * 24 * time.Hour})
	if err != nil {
		return nil, err
	}
	signer, err := os.ReadFile(filepath.Join(s.cfg.DataDir, signerFile))
	if err != nil {
		return nil, fmt.Errorf("the token-signing key: %w", err)
	}
	caKey, err := os.ReadFile(s.cfg.TLS.CAKey)
	if err != nil {
		return nil, fmt.Errorf("the pool CA's key: %w", err)
	}
	return &pb.JoinResponse{Sender: s.cfg.Raft.NodeID, SealedKek: sealed, NodeCert: nodeCert, NodeKey: nodeKey,
		CaCert: ca.CertPEM(), CaKey: caKey, Name: p.Name, TenantId: p.TenantId, AuthorityHost: s.cfg.AuthorityHost,
		RecoverableDays: p.RecoverableDays, SignerKey: signer, ServerCert: srvCert, ServerKey: srvKey, KekLabel: p.KekLabel}, nil
}

// storeOffer writes the offer to DIR/joins/<node>.pem for trust-join-key.
func (s *joinServer) storeOffer(nodeID string, offer []byte) error {
	dir := filepath.Join(s.cfg.DataDir, JoinsDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	b := pem.EncodeToMemory(&pem.Block{Type: offerPEMType, Headers: map[string]string{"Node": nodeID}, Bytes: offer})
	tmp := filepath.Join(dir, "."+uuid.NewString())
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, pathSafe(nodeID)+".pem"))
}

// pathSafe turns a node ID (printable ASCII) into a file name.
func pathSafe(id string) string { return hex.EncodeToString([]byte(id)) }

func propose(ctx context.Context, node *cluster.Node, cmd *pb.Command) error {
	b, err := fsm.Encode(cmd)
	if err != nil {
		return err
	}
	_, err = node.Apply(ctx, b)
	return err
}

// staleOfferAge is when a pending join's offer in DIR/joins counts as abandoned: far beyond
// the join token's hour and the joiner's default 15-minute wait.
const staleOfferAge = 24 * time.Hour

// dropStaleOffers removes the offers of joins abandoned for staleOfferAge, so that DIR/joins
// does not grow and trust-join-key lists only live joins. It returns how many it removed.
func dropStaleOffers(dataDir string, now time.Time) int {
	files, err := filepath.Glob(filepath.Join(dataDir, JoinsDir, "*.pem"))
	if err != nil {
		return 0
	}
	n := 0
	for _, f := range files {
		if fi, err := os.Stat(f); err == nil && now.Sub(fi.ModTime()) > staleOfferAge && os.Remove(f) == nil {
			n++
		}
	}
	return n
}

// keepJoinsClean drops stale offers now and hourly until ctx ends.
func keepJoinsClean(ctx context.Context, dataDir string, log *slog.Logger) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		if n := dropStaleOffers(dataDir, time.Now()); n > 0 {
			log.Info("dropped the offers of abandoned joins", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
