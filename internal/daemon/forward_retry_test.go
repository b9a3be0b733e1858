package daemon

import (
	"context"
	"crypto/x509"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/hsmpool/hsmpool/internal/pki"
	"github.com/hsmpool/hsmpool/internal/rpcerr"
	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

// fakeLeader is a node API whose Forward answers with answer.
type fakeLeader struct {
	pb.UnimplementedNodeServer
	calls  atomic.Int32
	answer func() (*pb.ForwardResponse, error)
}

func (f *fakeLeader) Forward(context.Context, *pb.ForwardRequest) (*pb.ForwardResponse, error) {
	f.calls.Add(1)
	return f.answer()
}

func serveFake(t *testing.T, ca *pki.CA, cas *x509.CertPool, id string, f *fakeLeader) string {
	t.Helper()
	n := &nodeTLS{cas: cas, cert: nodeCert(t, ca, id), selfID: id}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(n.server())))
	pb.RegisterNodeServer(srv, f)
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	return l.Addr().String()
}

// TestForwardRetriesNewLeader: a follower whose leader answers that it no longer leads (it
// proposed nothing) sends the command once more, to the next leader; a second such answer
// reaches the caller.
func TestForwardRetriesNewLeader(t *testing.T) {
	n, st := openNode(t, "node-2", false) // a follower: Apply answers NotLeader
	ca, err := pki.NewCA("pool", 24*time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cas := x509.NewCertPool()
	cas.AppendCertsFromPEM(ca.CertPEM())
	stale := &fakeLeader{answer: func() (*pb.ForwardResponse, error) { return nil, rpcerr.Status(notLeading("node-1")) }}
	fresh := &fakeLeader{answer: func() (*pb.ForwardResponse, error) { return &pb.ForwardResponse{Index: 0}, nil }}
	addrs := map[string]string{"node-1": serveFake(t, ca, cas, "node-1", stale), "node-3": serveFake(t, ca, cas, "node-3", fresh)}
	self := &nodeTLS{cas: cas, cert: nodeCert(t, ca, "node-2"), selfID: "node-2"}
	fwd := newForwarder(n, self, st, addrs)
	t.Cleanup(func() { fwd.Close() })
	// node-1 leads until it has answered once; then node-3 does.
	fwd.leaderOf = func() string {
		if stale.calls.Load() == 0 {
			return "node-1"
		}
		return "node-3"
	}
	r := replicator{n: n, st: st, fwd: fwd}
	cmd := stamp(&pb.Command{Op: &pb.Command_DeleteNode{DeleteNode: &pb.DeleteNode{NodeId: "x"}}})
	if err := r.Propose(ctx5(t), cmd); err != nil {
		t.Fatalf("Propose: %v", err)
	}
	if stale.calls.Load() != 1 || fresh.calls.Load() != 1 {
		t.Errorf("calls: old leader %d, new leader %d; want 1 and 1", stale.calls.Load(), fresh.calls.Load())
	}

	// Both say they do not lead: one retry only, and the caller gets the 503.
	fresh.answer = stale.answer
	stale.calls.Store(0)
	fresh.calls.Store(0)
	err = r.Propose(ctx5(t), cmd)
	if !noLongerLeads(err) || rpcerr.ToHTTP(rpcerr.Status(err)).Status != 503 {
		t.Errorf("Propose with two stale leaders: %v, want the 503 NotLeader answer", err)
	}
	if got := stale.calls.Load() + fresh.calls.Load(); got != 2 {
		t.Errorf("%d Forward calls, want 2", got)
	}
}
