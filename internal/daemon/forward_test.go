package daemon

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/hsmpool/hsmpool/internal/pki"
	"github.com/hsmpool/hsmpool/internal/rpcerr"
	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

// nodeCert issues a node certificate of ca for id, with ca's certificate appended to its chain.
func nodeCert(t *testing.T, ca *pki.CA, id string) tls.Certificate {
	t.Helper()
	c, k, err := ca.IssueNode(pki.NodeOptions{NodeID: id, Names: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(c, k)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// TestForwardOnlyFromMembers: the node API's Forward takes a command only from a caller with
// a node certificate of the pool CA whose node Allowed accepts; a client without one, a node
// of another CA, and a node that is not a member are refused before the command is read.
func TestForwardOnlyFromMembers(t *testing.T) {
	ca, err := pki.NewCA("pool", 24*time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	other, err := pki.NewCA("other", 24*time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cas := x509.NewCertPool()
	cas.AppendCertsFromPEM(ca.CertPEM())
	leader := &nodeTLS{cas: cas, cert: nodeCert(t, ca, "node-1"), selfID: "node-1", pending: map[string]time.Time{"node-2": time.Now()}}
	js := &joinServer{cfg: Config{Raft: Raft{NodeID: "node-1"}}, ntls: leader, log: slog.New(slog.DiscardHandler)}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(leader.server())))
	pb.RegisterNodeServer(srv, js)
	go srv.Serve(l)
	t.Cleanup(srv.Stop)

	call := func(c *tls.Config) error {
		conn, err := grpc.NewClient("passthrough:///"+l.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(c)))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err = pb.NewNodeClient(conn).Forward(ctx, &pb.ForwardRequest{}) // an empty command: refused after authentication
		return err
	}
	member := func(ca *pki.CA, id string) *tls.Config {
		n := &nodeTLS{cas: cas, cert: nodeCert(t, ca, id), selfID: id}
		return n.client("node-1")
	}
	noCert := member(ca, "node-2")
	noCert.GetClientCertificate = nil

	tests := []struct {
		name string
		tls  *tls.Config
		want codes.Code
	}{
		{"member", member(ca, "node-2"), codes.InvalidArgument},
		{"no client certificate", noCert, codes.PermissionDenied},
		{"not a member", member(ca, "node-3"), codes.PermissionDenied},
		{"another CA", member(other, "node-2"), codes.Unavailable}, // the handshake fails
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := status.Code(call(tt.tls)); got != tt.want {
				t.Errorf("Forward: %v, want %v", call(tt.tls), tt.want)
			}
		})
	}

	// The caller checks that the node API is the leader's node.
	wrong := &nodeTLS{cas: cas, cert: nodeCert(t, ca, "node-2"), selfID: "node-2"}
	if got := status.Code(call(wrong.client("node-9"))); got != codes.Unavailable {
		t.Errorf("Forward to a node API that is not the leader's: %v, want a failed handshake", got)
	}
}

// TestNoLeaderIs503: a write that no known leader can take reaches the client as a 503 with
// Retry-After, which the Azure SDKs retry.
func TestNoLeaderIs503(t *testing.T) {
	h := rpcerr.ToHTTP(rpcerr.Status(noLeader("no Raft leader is known")))
	if h.Status != 503 || h.Code != "ServiceUnavailable" || h.RetryAfter != 1 {
		t.Errorf("%+v, want 503 ServiceUnavailable with Retry-After 1", h)
	}
}
