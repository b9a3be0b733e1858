package cluster_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hsmpool/hsmpool/internal/cluster"
	"github.com/hsmpool/hsmpool/internal/fault"
	"github.com/hsmpool/hsmpool/internal/pki"
)

// testPool is a pool CA and the membership list every node of a test cluster consults.
type testPool struct {
	ca    *pki.CA
	roots *x509.CertPool

	mu      sync.Mutex
	members map[string]bool
}

func newTestPool(t *testing.T) *testPool {
	t.Helper()
	ca, err := pki.NewCA("hsmpool test pool CA", 24*time.Hour, time.Time{})
	check(t, "NewCA", err)
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	return &testPool{ca: ca, roots: roots, members: map[string]bool{}}
}

func (p *testPool) allow(id string, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.members[id] = ok
}

func (p *testPool) allowed(id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.members[id]
}

// cert issues a node certificate for id on loopback.
func (p *testPool) cert(t *testing.T, id string) *tls.Certificate {
	t.Helper()
	certPEM, keyPEM, err := p.ca.IssueNode(pki.NodeOptions{NodeID: id, Names: []string{"127.0.0.1"}})
	check(t, "IssueNode", err)
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	check(t, "X509KeyPair", err)
	return &c
}

// testNode is one in-process node of a test cluster.
type testNode struct {
	*cluster.Node
	id   string
	fsm  *kvFSM
	cert atomic.Pointer[tls.Certificate]
}

// addr is the node's transport address.
func (n *testNode) addr() string { return n.Status().Address }

// openTLSNode opens node id with a certificate from p (or from certFrom, if not nil), trusting
// p's CA, in its own data directory, and closes it at the end of the test.
func openTLSNode(t *testing.T, p *testPool, id string, bootstrap bool, certFrom *testPool, opts ...func(*cluster.Config)) *testNode {
	t.Helper()
	if certFrom == nil {
		certFrom = p
	}
	n := &testNode{id: id, fsm: newKV()}
	n.cert.Store(certFrom.cert(t, id))
	cfg := testConfig(t)
	cfg.NodeID = id
	cfg.DataDir = filepath.Join(t.TempDir(), id)
	// Three nodes under -race on a busy machine: timings that keep elections quick but
	// do not flap. 100 ms lost the leadership (its lease) while other test processes held
	// both cores.
	cfg.HeartbeatTimeout = 300 * time.Millisecond
	cfg.ElectionTimeout = 300 * time.Millisecond
	roots := p.roots
	if certFrom != p {
		roots = certFrom.roots // a foreign node trusts its own CA, so that it can start
	}
	cfg.TLS = &cluster.TLS{
		CAs:            roots,
		GetCertificate: func() (*tls.Certificate, error) { return n.cert.Load(), nil },
		Allowed:        p.allowed,
	}
	for _, o := range opts {
		o(&cfg)
	}
	node, err := cluster.Open(testContext(t), cfg, n.fsm, bootstrap)
	check(t, "Open "+id, err)
	t.Cleanup(func() { _ = node.Close() })
	n.Node = node
	return n
}

// startTLSCluster starts size nodes over mTLS: node-1 bootstraps and leads, and adds the
// others as voters.
func startTLSCluster(t *testing.T, p *testPool, size int) []*testNode {
	t.Helper()
	ctx := testContext(t)
	var nodes []*testNode
	for i := range size {
		id := fmt.Sprintf("node-%d", i+1)
		p.allow(id, true)
		nodes = append(nodes, openTLSNode(t, p, id, i == 0, nil))
	}
	check(t, "WaitLeader", nodes[0].WaitLeader(ctx))
	for _, n := range nodes[1:] {
		check(t, "AddVoter "+n.id, nodes[0].AddVoter(ctx, n.id, n.addr()))
	}
	return nodes
}

// eventually polls cond until it holds or ctx ends.
func eventually(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not after %v", what, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// hasKey reports whether the node's FSM holds key=value.
func (n *testNode) hasKey(key, value string) bool {
	m, _, _ := n.fsm.state()
	return m[key] == value
}

// probe connects to addr as a node presenting cert and reports whether the node accepted the
// handshake: accepted, it waits for a Raft command and the read times out; refused, the read
// fails with the alert the node sent.
func probe(t *testing.T, addr string, cert *tls.Certificate) error {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", addr, &tls.Config{
		MinVersion:         tls.VersionTLS13,
		NextProtos:         []string{"hsmpool-raft/1"},
		InsecureSkipVerify: true, // the probe tests the server's verification of the client
		Certificates:       []tls.Certificate{*cert},
	})
	if err != nil {
		return err
	}
	defer conn.Close()
	check(t, "SetReadDeadline", conn.SetReadDeadline(time.Now().Add(300*time.Millisecond)))
	_, err = conn.Read(make([]byte, 1))
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		return nil
	}
	if err == nil {
		return errors.New("the node sent data to a client that sent no command")
	}
	return err
}

// TestTLSJoinCatchesUpFromSnapshot: a node added after the leader compacted its log receives
// the leader's snapshot over the mutual-TLS transport (its FSM is restored from it, not
// replayed from index 1), then the entries after it, and applies later commands.
func TestTLSJoinCatchesUpFromSnapshot(t *testing.T) {
	ctx := testContext(t)
	p := newTestPool(t)
	small := func(c *cluster.Config) { c.TrailingLogs = 8 }
	p.allow("node-1", true)
	n1 := openTLSNode(t, p, "node-1", true, nil, small)
	check(t, "WaitLeader", n1.WaitLeader(ctx))
	kv := map[string]string{}
	for i := range 200 {
		kv[fmt.Sprintf("k%03d", i)] = fmt.Sprint(i)
	}
	setAll(t, ctx, n1.Node, kv)
	check(t, "Snapshot", n1.Snapshot(ctx))
	setAll(t, ctx, n1.Node, map[string]string{"after": "snapshot"})
	if s := n1.Status(); s.LastSnapshotIndex < 200 {
		t.Fatalf("the leader's snapshot does not cover the first 200 commands: %+v", s)
	}

	p.allow("node-2", true)
	n2 := openTLSNode(t, p, "node-2", false, nil, small)
	check(t, "AddVoter node-2", n1.AddVoter(ctx, "node-2", n2.addr()))
	eventually(t, ctx, "node-2 has every key", func() bool { return n2.hasKey("k199", "199") && n2.hasKey("after", "snapshot") })
	m, applied, restores := n2.fsm.state()
	if restores != 1 {
		t.Errorf("node-2's FSM was restored %d times, want once from the leader's snapshot", restores)
	}
	if applied >= 200 {
		t.Errorf("node-2 applied %d commands one by one; the snapshot should have carried the first 200", applied)
	}
	if len(m) != 201 {
		t.Errorf("node-2 holds %d keys, want 201", len(m))
	}
	setAll(t, ctx, n1.Node, map[string]string{"later": "1"})
	eventually(t, ctx, "node-2 applies later commands", func() bool { return n2.hasKey("later", "1") })
}

// TestTLSClusterReplicates runs three nodes over mutual TLS: one bootstraps, adds the other
// two as voters, and what the leader applies reaches every FSM.
func TestTLSClusterReplicates(t *testing.T) {
	ctx := testContext(t)
	p := newTestPool(t)
	nodes := startTLSCluster(t, p, 3)
	leader := nodes[0]

	setAll(t, ctx, leader.Node, map[string]string{"a": "1", "b": "2", "c": "3"})
	for _, n := range nodes {
		eventually(t, ctx, n.id+" has c=3", func() bool { return n.hasKey("c", "3") })
	}

	servers, err := leader.Configuration()
	check(t, "Configuration", err)
	if len(servers) != 3 {
		t.Fatalf("Configuration() = %+v, want 3 servers", servers)
	}
	for i, s := range servers {
		if s.ID != nodes[i].id || s.Address != nodes[i].addr() || s.Suffrage != cluster.Voter {
			t.Errorf("server %d = %+v, want voter %s at %s", i, s, nodes[i].id, nodes[i].addr())
		}
	}
	for _, n := range nodes {
		if id, addr := n.Leader(); id != "node-1" || addr != leader.addr() {
			t.Errorf("%s: Leader() = %q, %q; want node-1 at %s", n.id, id, addr, leader.addr())
		}
	}
	st := leader.Status()
	if st.State != cluster.Leader || st.Term < 1 || st.AppliedIndex < 3 || st.LastIndex < st.AppliedIndex {
		t.Errorf("leader Status = %+v", st)
	}
	if len(st.Followers) != 2 || st.Followers[0].ID != "node-2" || st.Followers[1].ID != "node-3" ||
		st.Followers[0].Unreachable || st.Followers[1].Unreachable {
		t.Errorf("leader Status.Followers = %+v, want node-2 and node-3 reachable", st.Followers)
	}
	fst := nodes[1].Status()
	if fst.State != cluster.Follower || fst.Followers != nil || fst.LastContact.IsZero() || fst.Term != st.Term {
		t.Errorf("follower Status = %+v, want a follower in term %d that heard from the leader", fst, st.Term)
	}

	// A follower cannot change the membership.
	if err := nodes[1].AddVoter(ctx, "node-9", "127.0.0.1:9"); fault.Of(err) != fault.NotLeader {
		t.Errorf("AddVoter on a follower = %v, want fault.NotLeader", err)
	}
	if err := nodes[1].RemoveServer(ctx, "node-3"); fault.Of(err) != fault.NotLeader {
		t.Errorf("RemoveServer on a follower = %v, want fault.NotLeader", err)
	}
	if err := leader.RemoveServer(ctx, "node-9"); fault.Of(err) != fault.NotFound {
		t.Errorf("RemoveServer of a stranger = %v, want fault.NotFound", err)
	}
}

// TestTLSForeignCA: a node whose certificate comes from another CA is refused on both sides
// of the connection and receives nothing, even once the leader counts it as a voter; and a
// node from the right CA that answers at an address the configuration gives to another ID is
// refused by the dialling leader.
func TestTLSForeignCA(t *testing.T) {
	ctx := testContext(t)
	p, other := newTestPool(t), newTestPool(t)
	nodes := startTLSCluster(t, p, 3)
	leader := nodes[0]

	p.allow("node-4", true) // allowed by ID: only the CA stands in its way
	rogue := openTLSNode(t, p, "node-4", false, other)
	if err := probe(t, leader.addr(), rogue.cert.Load()); err == nil {
		t.Error("the leader accepted a handshake from a certificate of another CA")
	} else if !strings.Contains(err.Error(), "certificate") {
		t.Errorf("refused handshake: %v, want a certificate alert", err)
	}
	if err := probe(t, leader.addr(), nodes[1].cert.Load()); err != nil {
		t.Errorf("the leader refused node-2's certificate: %v", err)
	}

	check(t, "AddVoter node-4", leader.AddVoter(ctx, "node-4", rogue.addr())) // 3 of 4 voters commit it
	setAll(t, ctx, leader.Node, map[string]string{"k": "v"})
	for _, n := range nodes {
		eventually(t, ctx, n.id+" has k", func() bool { return n.hasKey("k", "v") })
	}
	eventually(t, ctx, "node-4 reported unreachable", func() bool {
		for _, f := range leader.Status().Followers {
			if f.ID == "node-4" {
				return f.Unreachable
			}
		}
		return false
	})
	if m, applied, _ := rogue.fsm.state(); len(m) != 0 || applied != 0 || rogue.Status().LastIndex != 0 {
		t.Errorf("the foreign node received the log: %v, %d applied, last index %d", m, applied, rogue.Status().LastIndex)
	}
	check(t, "RemoveServer node-4", leader.RemoveServer(ctx, "node-4"))

	// An impostor: a pool certificate for node-6 answering where the configuration says
	// node-5 is. The leader's dial checks the ID and never replicates to it.
	p.allow("node-5", true)
	p.allow("node-6", true)
	impostor := openTLSNode(t, p, "node-6", false, nil)
	check(t, "AddVoter node-5", leader.AddVoter(ctx, "node-5", impostor.addr()))
	setAll(t, ctx, leader.Node, map[string]string{"k2": "v"})
	eventually(t, ctx, "node-5 reported unreachable", func() bool {
		for _, f := range leader.Status().Followers {
			if f.ID == "node-5" {
				return f.Unreachable
			}
		}
		return false
	})
	if m, _, _ := impostor.fsm.state(); len(m) != 0 {
		t.Errorf("the impostor received the log: %v", m)
	}
	check(t, "RemoveServer node-5", leader.RemoveServer(ctx, "node-5"))
}

// TestTLSRemovedNodeRefused removes a node and withdraws it from Allowed: its certificate,
// still valid, is refused, and it receives nothing more.
func TestTLSRemovedNodeRefused(t *testing.T) {
	ctx := testContext(t)
	p := newTestPool(t)
	nodes := startTLSCluster(t, p, 3)
	leader, removed := nodes[0], nodes[2]
	setAll(t, ctx, leader.Node, map[string]string{"before": "1"})
	eventually(t, ctx, "node-3 has before", func() bool { return removed.hasKey("before", "1") })

	check(t, "RemoveServer", leader.RemoveServer(ctx, "node-3"))
	p.allow("node-3", false)
	servers, err := leader.Configuration()
	check(t, "Configuration", err)
	if len(servers) != 2 || servers[0].ID != "node-1" || servers[1].ID != "node-2" {
		t.Errorf("Configuration() after removal = %+v, want node-1 and node-2", servers)
	}
	for _, n := range nodes[:2] {
		if err := probe(t, n.addr(), removed.cert.Load()); err == nil {
			t.Errorf("%s accepted the removed node's certificate", n.id)
		}
	}
	if err := probe(t, leader.addr(), nodes[1].cert.Load()); err != nil {
		t.Errorf("the leader refused node-2's certificate: %v", err)
	}
	setAll(t, ctx, leader.Node, map[string]string{"after": "2"})
	eventually(t, ctx, "node-2 has after", func() bool { return nodes[1].hasKey("after", "2") })
	time.Sleep(200 * time.Millisecond) // two heartbeats: time enough to get it, were it sent
	if removed.hasKey("after", "2") {
		t.Error("the removed node received a command applied after its removal")
	}
}

// TestTLSLeaderFailover closes the leader: one of the two others is elected and applies.
func TestTLSLeaderFailover(t *testing.T) {
	ctx := testContext(t)
	p := newTestPool(t)
	nodes := startTLSCluster(t, p, 3)
	setAll(t, ctx, nodes[0].Node, map[string]string{"before": "1"})
	for _, n := range nodes {
		eventually(t, ctx, n.id+" has before", func() bool { return n.hasKey("before", "1") })
	}

	start := time.Now()
	check(t, "Close leader", nodes[0].Close())
	rest := nodes[1:]
	var leader, follower *testNode
	eventually(t, ctx, "a new leader", func() bool {
		for i, n := range rest {
			if n.Status().State == cluster.Leader {
				leader, follower = n, rest[1-i]
				return true
			}
		}
		return false
	})
	t.Logf("%s elected %s after the leader closed", leader.id, time.Since(start).Round(time.Millisecond))
	setAll(t, ctx, leader.Node, map[string]string{"after": "2"})
	eventually(t, ctx, follower.id+" has after", func() bool { return follower.hasKey("after", "2") })
	if id, _ := follower.Leader(); id != leader.id {
		t.Errorf("%s: Leader() = %q, want %s", follower.id, id, leader.id)
	}
	if st := leader.Status(); len(st.Followers) != 2 {
		t.Errorf("new leader's Followers = %+v, want node-1 (closed) and the other", st.Followers)
	}
}

// TestTLSCertificateRotation: the certificate GetCertificate returns is the one the next
// handshake presents.
func TestTLSCertificateRotation(t *testing.T) {
	p := newTestPool(t)
	p.allow("node-1", true)
	n := openTLSNode(t, p, "node-1", true, nil)
	check(t, "WaitLeader", n.WaitLeader(testContext(t)))
	served := func() string {
		conn, err := tls.Dial("tcp", n.addr(), &tls.Config{
			MinVersion: tls.VersionTLS13, NextProtos: []string{"hsmpool-raft/1"},
			InsecureSkipVerify: true, Certificates: []tls.Certificate{*n.cert.Load()},
		})
		check(t, "Dial", err)
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	first := served()
	renewed := p.cert(t, "node-1")
	n.cert.Store(renewed)
	if got, want := served(), renewed.Leaf.SerialNumber.String(); got == first || got != want {
		t.Errorf("after rotation the node serves serial %s, want %s (was %s)", got, want, first)
	}
}

// TestTLSOpenChecksOwnCertificate: a node refuses to start with a certificate that does not
// name its node_id or does not come from the pool CA.
func TestTLSOpenChecksOwnCertificate(t *testing.T) {
	p, other := newTestPool(t), newTestPool(t)
	for name, cert := range map[string]*tls.Certificate{
		"another node's": p.cert(t, "node-2"),
		"another CA's":   other.cert(t, "node-1"),
	} {
		t.Run(name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.TLS = &cluster.TLS{
				CAs:            p.roots,
				GetCertificate: func() (*tls.Certificate, error) { return cert, nil },
				Allowed:        p.allowed,
			}
			n, err := cluster.Open(testContext(t), cfg, newKV(), true)
			if err == nil {
				n.Close()
				t.Fatal("Open succeeded")
			}
			if fault.Of(err) != fault.BadParameter || !strings.Contains(err.Error(), "tls.get_certificate:") {
				t.Errorf("Open = %v, want fault.BadParameter naming tls.get_certificate", err)
			}
		})
	}
}

// TestAddVoterPlainTCP: the plain TCP transport serves one node; membership changes are
// refused on it.
func TestAddVoterPlainTCP(t *testing.T) {
	n := openLeader(t, testConfig(t), newKV())
	ctx := testContext(t)
	if err := n.AddVoter(ctx, "node-2", "127.0.0.1:7001"); fault.Of(err) != fault.Unsupported {
		t.Errorf("AddVoter on plain TCP = %v, want fault.Unsupported", err)
	}
	for _, tt := range []struct{ id, addr string }{{"", "127.0.0.1:7001"}, {"node 2", "127.0.0.1:7001"}, {"node-2", "127.0.0.1"}, {"node-2", ":7001"}, {"node-2", "127.0.0.1:0"}} {
		if err := n.AddVoter(ctx, tt.id, tt.addr); fault.Of(err) != fault.BadParameter {
			t.Errorf("AddVoter(%q, %q) = %v, want fault.BadParameter", tt.id, tt.addr, err)
		}
	}
}
