package daemon

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/hsmpool/hsmpool/internal/cluster"
	"github.com/hsmpool/hsmpool/internal/fault"
	"github.com/hsmpool/hsmpool/internal/fsm"
	"github.com/hsmpool/hsmpool/internal/pki"
	"github.com/hsmpool/hsmpool/internal/rpcerr"
	"github.com/hsmpool/hsmpool/internal/state"
	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

// openNode opens a single Raft node on plain TCP: the leader of its own cluster when
// bootstrap, else a node that never leads (it has no configuration).
func openNode(t *testing.T, id string, bootstrap bool) (*cluster.Node, *state.State) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cc := cluster.Default()
	cc.NodeID, cc.DataDir, cc.BindAddr = id, filepath.Join(t.TempDir(), "raft"), addr
	cc.HeartbeatTimeout, cc.ElectionTimeout = 100*time.Millisecond, 100*time.Millisecond
	cc.Logger = slog.New(slog.DiscardHandler)
	st := state.New()
	n, err := cluster.Open(context.Background(), cc, fsm.New(st, slog.New(slog.DiscardHandler)), bootstrap)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	if bootstrap {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := n.WaitLeader(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return n, st
}

// nodeAPI serves a node API for node-1 (a member: node-2 by admission) on node n, and
// returns a function that calls it as the node a client TLS config names.
type nodeAPI struct {
	t   *testing.T
	ca  *pki.CA
	cas *x509.CertPool
	js  *joinServer
	adr string
}

func newNodeAPI(t *testing.T, n *cluster.Node, st *state.State) *nodeAPI {
	t.Helper()
	ca, err := pki.NewCA("pool", 24*time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cas := x509.NewCertPool()
	cas.AppendCertsFromPEM(ca.CertPEM())
	ntls := &nodeTLS{cas: cas, cert: nodeCert(t, ca, "node-1"), selfID: "node-1", pending: map[string]time.Time{"node-2": time.Now()}}
	log := slog.New(slog.DiscardHandler)
	cfg := Config{Name: "contoso", DNSSuffix: "localhost", Listen: "127.0.0.1:8443", DataDir: t.TempDir(), Raft: Raft{NodeID: "node-1"}}
	m := &members{me: self{cfg: cfg, node: n}, node: n, st: st, ntls: ntls, log: log}
	js := newJoinServer(cfg, n, st, nil, ntls, replicator{n: n, st: st}, m, log)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(ntls.server())))
	pb.RegisterNodeServer(srv, js)
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	return &nodeAPI{t: t, ca: ca, cas: cas, js: js, adr: l.Addr().String()}
}

// as is a client of the node API with a node certificate of the pool CA for id.
func (a *nodeAPI) as(id string) pb.NodeClient {
	a.t.Helper()
	n := &nodeTLS{cas: a.cas, cert: nodeCert(a.t, a.ca, id), selfID: id}
	return a.client(n.client("node-1"))
}

func (a *nodeAPI) client(c *tls.Config) pb.NodeClient {
	a.t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+a.adr, grpc.WithTransportCredentials(credentials.NewTLS(c)))
	if err != nil {
		a.t.Fatal(err)
	}
	a.t.Cleanup(func() { conn.Close() })
	return pb.NewNodeClient(conn)
}

func ctx5(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestNodeAPIMembersOnly: Status, AddVoter, RemoveNode and Leave refuse a caller without a
// node certificate and a node that is not a member, before doing anything.
func TestNodeAPIMembersOnly(t *testing.T) {
	n, st := openNode(t, "node-1", false)
	api := newNodeAPI(t, n, st)
	noCertTLS := (&nodeTLS{cas: api.cas, cert: nodeCert(t, api.ca, "node-2"), selfID: "node-2"}).client("node-1")
	noCertTLS.GetClientCertificate = nil
	callers := map[string]pb.NodeClient{"not a member": api.as("node-3"), "no certificate": api.client(noCertTLS)}
	for name, c := range callers {
		ctx := ctx5(t)
		_, e1 := c.Status(ctx, &pb.NodeStatusRequest{})
		_, e2 := c.AddVoter(ctx, &pb.AddVoterRequest{NodeId: "node-9", RaftAddr: "127.0.0.1:1"})
		_, e3 := c.RemoveNode(ctx, &pb.RemoveNodeRequest{NodeId: "node-2"})
		_, e4 := c.Leave(ctx, &pb.LeaveRequest{})
		_, e5 := c.ReadIndex(ctx, &pb.ReadIndexRequest{})
		for i, err := range []error{e1, e2, e3, e4, e5} {
			if status.Code(err) != codes.PermissionDenied {
				t.Errorf("%s: call %d: %v, want PermissionDenied", name, i+1, err)
			}
		}
	}

	// A member reads the node's status.
	ns, err := api.as("node-2").Status(ctx5(t), &pb.NodeStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if ns.NodeId != "node-1" || ns.Role != "Follower" || !ns.Reachable || ns.HsmOk || ns.Url != "https://contoso.managedhsm.localhost:8443" || ns.Version != Version {
		t.Errorf("status %v", ns)
	}
}

// TestNodeAPILeaderOnly: AddVoter and RemoveNode on a node that does not lead answer
// Unavailable marked NotLeader, which the caller takes as "ask the new leader"; Leave is for
// the node itself only.
func TestNodeAPILeaderOnly(t *testing.T) {
	n, st := openNode(t, "node-1", false)
	api := newNodeAPI(t, n, st)
	c := api.as("node-2")
	_, e1 := c.AddVoter(ctx5(t), &pb.AddVoterRequest{NodeId: "node-9", RaftAddr: "127.0.0.1:1"})
	_, e2 := c.RemoveNode(ctx5(t), &pb.RemoveNodeRequest{NodeId: "node-2"})
	_, e3 := c.ReadIndex(ctx5(t), &pb.ReadIndexRequest{})
	for i, err := range []error{e1, e2, e3} {
		if status.Code(err) != codes.Unavailable || !noLongerLeads(rpcerr.FromStatus(err)) {
			t.Errorf("call %d on a follower: %v, want Unavailable marked NotLeader", i+1, err)
		}
	}
	if _, err := c.Leave(ctx5(t), &pb.LeaveRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("Leave by another member: %v, want PermissionDenied", err)
	}
	select {
	case <-api.js.left:
		t.Error("a refused Leave stopped the node")
	default:
	}
}

// TestRemoveNodeOnLeader: on the leader, an unknown node is NotFound (404 through the
// gateway) and the only node cannot be removed; a single node on plain TCP has no membership
// to change, and its status is its own.
func TestRemoveNodeOnLeader(t *testing.T) {
	n, st := openNode(t, "node-1", true)
	api := newNodeAPI(t, n, st)
	c := api.as("node-2")
	ri, err := c.ReadIndex(ctx5(t), &pb.ReadIndexRequest{})
	if err != nil || ri.Index == 0 || ri.Index < st.Index() {
		t.Errorf("ReadIndex on the leader: %v, %v; want the commit index, at least the applied %d", ri, err, st.Index())
	}
	_, err = c.RemoveNode(ctx5(t), &pb.RemoveNodeRequest{NodeId: "nosuch"})
	if h := rpcerr.ToHTTP(err); h.Status != 404 || h.Code != "NotFound" {
		t.Errorf("removing an unknown node: %+v, want 404 NotFound", h)
	}
	if _, err := c.RemoveNode(ctx5(t), &pb.RemoveNodeRequest{NodeId: "node-1"}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("removing the only node: %v, want FailedPrecondition (409)", err)
	}

	single := &members{me: self{cfg: Config{Raft: Raft{NodeID: "node-1"}}, node: n}, node: n, st: st, log: slog.New(slog.DiscardHandler)}
	if err := single.RemoveNode(ctx5(t), "node-2"); !errors.Is(err, fault.Unsupported) {
		t.Errorf("RemoveNode on plain TCP: %v, want Unsupported", err)
	}
	cs, err := single.Status(ctx5(t))
	if err != nil {
		t.Fatal(err)
	}
	if cs.LeaderId != "node-1" || cs.AnsweredBy != "node-1" || len(cs.Nodes) != 1 {
		t.Fatalf("status %v", cs)
	}
	if s := cs.Nodes[0]; s.Role != "Leader" || s.Suffrage != "Voter" || !s.Reachable || s.Lag != 0 || s.LastContactMs != 0 {
		t.Errorf("node status %v", s)
	}
}
