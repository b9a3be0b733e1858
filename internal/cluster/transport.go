package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/hsmpool/hsmpool/internal/fault"
	"github.com/hsmpool/hsmpool/internal/pki"
)

// TLS is a node's identity and trust for the mutual-TLS Raft transport. Every connection
// between nodes is TLS 1.3, and both ends present a node certificate from the pool CA
// (pki.CA.IssueNode) naming their node ID in a hsmpool://node/<id> URI SAN.
type TLS struct {
	// CAs holds the pool CA certificate(s) that every peer's node certificate must chain to.
	CAs *x509.CertPool
	// GetCertificate returns this node's certificate and key: a node certificate from the
	// pool CA naming Config.NodeID. It is called at every handshake, on both the listening
	// and the dialling side, so a renewed certificate is used from the next connection on
	// (Raft keeps up to three connections per peer open; those keep the old one). It must
	// be safe for concurrent use.
	GetCertificate func() (*tls.Certificate, error)
	// Allowed reports whether the node with this ID may talk to this one. It is asked at
	// every handshake, on both sides, after the peer's chain has been verified: a node that
	// is not (or no longer) a member must get false, so that a removed node's certificate,
	// still valid, stops being accepted. It must be fast and safe for concurrent use.
	Allowed func(nodeID string) bool
}

// validate reports the missing parts of t, naming the settings.
func (t *TLS) validate() []error {
	var errs []error
	if t.CAs == nil {
		errs = append(errs, errors.New("tls.cas: the pool CA certificates are required"))
	}
	if t.GetCertificate == nil {
		errs = append(errs, errors.New("tls.get_certificate: a source of the node certificate is required"))
	}
	if t.Allowed == nil {
		errs = append(errs, errors.New("tls.allowed: a membership check is required"))
	}
	return errs
}

const (
	// raftALPN is the ALPN protocol of the Raft transport, so that a connection meant for
	// another node-to-node service (gRPC, with the same certificates) cannot be taken for
	// a Raft connection, or the other way round.
	raftALPN = "hsmpool-raft/1"
	// handshakeTimeout bounds the TLS handshake of an accepted connection.
	handshakeTimeout = 10 * time.Second
)

// tlsLayer is the raft.StreamLayer over mutual TLS 1.3.
type tlsLayer struct {
	settings  *TLS
	ln        net.Listener
	advertise net.Addr
	server    *tls.Config
	client    *tls.Config // cloned for each dial, with the peer's expected ID

	// peerID, once Raft runs, returns the ID the cluster configuration gives the server
	// at an address, so that a dial checks it reached that node.
	peerID atomic.Pointer[func(raft.ServerAddress) (string, bool)]

	mu       sync.Mutex
	accepted map[*tls.Conn]string // open accepted connections, by verified peer ID ("" before the handshake)
	closed   bool
}

var _ raft.StreamLayer = (*tlsLayer)(nil)

// newTLSLayer checks that t gives a node certificate for selfID from the pool CA and listens
// on bindAddr.
func newTLSLayer(bindAddr, selfID string, t *TLS) (*tlsLayer, error) {
	if err := checkOwnCertificate(selfID, t); err != nil {
		return nil, fmt.Errorf("tls.get_certificate: %w: %w", fault.BadParameter, err)
	}
	l := &tlsLayer{settings: t, accepted: map[*tls.Conn]string{}}
	l.server = &tls.Config{
		MinVersion:     tls.VersionTLS13,
		NextProtos:     []string{raftALPN},
		ClientAuth:     tls.RequireAndVerifyClientCert,
		ClientCAs:      t.CAs,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return t.GetCertificate() },
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := verifyPeer(t, cs, x509.ExtKeyUsageClientAuth, "", false)
			return err
		},
	}
	l.client = &tls.Config{
		MinVersion: tls.VersionTLS13,
		NextProtos: []string{raftALPN},
		RootCAs:    t.CAs,
		// Go's own check would match the dialled host against the certificate's names; the
		// identity of a node is its ID instead, and VerifyConnection (set per dial) verifies
		// the chain against the pool CA, the server usage, the ID and Allowed.
		InsecureSkipVerify:   true,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return t.GetCertificate() },
	}
	ln, err := net.Listen("tcp", bindAddr)
	if err != nil {
		return nil, fmt.Errorf("bind_addr: listen on %s: %w: %w", bindAddr, fault.Unavailable, err)
	}
	l.ln = ln
	// Advertise the configured host with the port actually bound (port 0 picks one).
	host, _, _ := net.SplitHostPort(bindAddr)
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	l.advertise = advertiseAddr(net.JoinHostPort(host, port))
	return l, nil
}

// advertiseAddr is a net.Addr whose String is the address other nodes dial.
type advertiseAddr string

func (a advertiseAddr) Network() string { return "tcp" }
func (a advertiseAddr) String() string  { return string(a) }

// checkOwnCertificate fails unless t.GetCertificate gives a certificate from the pool CA
// that names selfID and is usable for both ends of a connection.
func checkOwnCertificate(selfID string, t *TLS) error {
	cert, err := t.GetCertificate()
	if err != nil {
		return fmt.Errorf("get the node certificate: %w", err)
	}
	if cert == nil || len(cert.Certificate) == 0 {
		return errors.New("no node certificate")
	}
	chain := make([]*x509.Certificate, len(cert.Certificate))
	for i, der := range cert.Certificate {
		if chain[i], err = x509.ParseCertificate(der); err != nil {
			return fmt.Errorf("parse the node certificate: %w", err)
		}
	}
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		id, err := pki.VerifyNode(t.CAs, chain, usage, time.Time{})
		if err != nil {
			return err
		}
		if id != selfID {
			return fmt.Errorf("the node certificate names node %q, not node_id %q", id, selfID)
		}
	}
	return nil
}

// verifyPeer verifies the peer's certificate chain against the pool CA for usage, checks
// that it names want (when known) and that Allowed accepts it, and returns its node ID.
func verifyPeer(t *TLS, cs tls.ConnectionState, usage x509.ExtKeyUsage, want string, known bool) (string, error) {
	if cs.NegotiatedProtocol != raftALPN {
		return "", fmt.Errorf("peer did not negotiate protocol %s", raftALPN)
	}
	id, err := pki.VerifyNode(t.CAs, cs.PeerCertificates, usage, time.Time{})
	if err != nil {
		return "", err
	}
	if known && id != want {
		return "", fmt.Errorf("the server is node %q, but the configuration has node %q at this address", id, want)
	}
	if !t.Allowed(id) {
		return "", fmt.Errorf("node %q is not allowed: it is not a member of this cluster", id)
	}
	return id, nil
}

// Accept returns the next connection; its TLS handshake runs at its first read or write,
// in Raft's goroutine for the connection, bounded by handshakeTimeout.
func (l *tlsLayer) Accept() (net.Conn, error) {
	c, err := l.ln.Accept()
	if err != nil {
		return nil, err
	}
	tc := tls.Server(c, l.server)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		_ = c.Close()
		return nil, net.ErrClosed
	}
	l.accepted[tc] = ""
	return &serverConn{Conn: tc, layer: l}, nil
}

// Dial connects to the node at address, checking its certificate names the node the
// cluster configuration places there.
func (l *tlsLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	want, known := "", false
	if f := l.peerID.Load(); f != nil {
		want, known = (*f)(address)
	}
	cfg := l.client.Clone()
	t := l.settings
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		_, err := verifyPeer(t, cs, x509.ExtKeyUsageServerAuth, want, known)
		return err
	}
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: timeout}, "tcp", string(address), cfg)
	if err != nil {
		return nil, fmt.Errorf("dial node at %s: %w", address, err)
	}
	return c, nil
}

func (l *tlsLayer) Addr() net.Addr { return l.advertise }

// Close stops listening and closes every accepted connection.
func (l *tlsLayer) Close() error {
	l.mu.Lock()
	l.closed = true
	conns := l.accepted
	l.accepted = map[*tls.Conn]string{}
	l.mu.Unlock()
	for c := range conns {
		_ = c.Close()
	}
	return l.ln.Close()
}

// closePeer closes the accepted connections from node id: a node just removed keeps no
// connection made while it was a member.
func (l *tlsLayer) closePeer(id string) {
	l.mu.Lock()
	var conns []*tls.Conn
	for c, peer := range l.accepted {
		if peer == id {
			conns = append(conns, c)
			delete(l.accepted, c)
		}
	}
	l.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

// serverConn is an accepted connection: it completes the handshake, bounded in time, before
// the first read or write, and records the peer's node ID.
type serverConn struct {
	*tls.Conn
	layer *tlsLayer
	once  sync.Once
	err   error
}

func (c *serverConn) handshake() error {
	c.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
		defer cancel()
		if c.err = c.Conn.HandshakeContext(ctx); c.err != nil {
			return
		}
		// VerifyConnection has verified the chain, so the ID is there.
		id, _ := pki.NodeID(c.Conn.ConnectionState().PeerCertificates[0])
		c.layer.mu.Lock()
		if _, open := c.layer.accepted[c.Conn]; open {
			c.layer.accepted[c.Conn] = id
		}
		c.layer.mu.Unlock()
	})
	return c.err
}

func (c *serverConn) Read(b []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Read(b)
}

func (c *serverConn) Write(b []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Write(b)
}

func (c *serverConn) Close() error {
	c.layer.mu.Lock()
	delete(c.layer.accepted, c.Conn)
	c.layer.mu.Unlock()
	return c.Conn.Close()
}
