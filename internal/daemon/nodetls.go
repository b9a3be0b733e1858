package daemon

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/credentials"

	"github.com/hsmpool/hsmpool/internal/cluster"
	"github.com/hsmpool/hsmpool/internal/pki"
)

// Paths of the node certificate inside the data directory.
const (
	nodeCertFile = "tls/node.pem"
	nodeKeyFile  = "tls/node.key"
)

// nodeTLS is what a node with a node certificate needs for Raft and the node API: the pool
// CA, its certificate (with the CA appended to the chain, so that a joining node that pins the
// CA's fingerprint finds it in the handshake), and who may talk to it.
type nodeTLS struct {
	cas    *x509.CertPool
	caDER  []byte
	cert   tls.Certificate // used when src is nil (tests)
	src    *pki.KeyPair    // the certificate files, read again when they change
	selfID string

	// verified caches the node ID of client certificates already verified, by the leaf as the
	// connection parsed it: a connection is verified once, not on every Forward (an ECDSA
	// verification each). Membership (allowed) is still asked on every call.
	verified      sync.Map // *x509.Certificate -> string
	verifiedCount atomic.Int64

	mu      sync.Mutex
	node    *cluster.Node        // set once Raft is open
	pending map[string]time.Time // nodes admitted by Join or AddVoter, not yet seen in the configuration, by when
}

// admitFor is how long a node admitted by Join stays admitted without appearing in the Raft
// configuration: as long as the leader tries to add it.
var admitFor = addVoterTimeout + time.Minute

func loadNodeTLS(cfg Config) (*nodeTLS, error) {
	cas, err := pki.CertPool(cfg.TLS.CAFile)
	if err != nil {
		return nil, fmt.Errorf("tls.ca_file: %w", err)
	}
	fp, err := caFingerprint(cfg.TLS.CAFile)
	if err != nil {
		return nil, err
	}
	caDER, err := caCertDER(cfg.TLS.CAFile)
	if err != nil {
		return nil, err
	}
	if sha256.Sum256(caDER) != *fp {
		return nil, errors.New("tls.ca_file: unreadable")
	}
	src, err := nodeKeyPair(cfg.Raft.CertFile, cfg.Raft.KeyFile, caDER, cas, cfg.Raft.NodeID)
	if err != nil {
		return nil, fmt.Errorf("raft.cert_file, raft.key_file: %w", err)
	}
	return &nodeTLS{cas: cas, caDER: caDER, src: src, selfID: cfg.Raft.NodeID, pending: map[string]time.Time{}}, nil
}

// certificate is this node's certificate as presented now.
func (n *nodeTLS) certificate() (*tls.Certificate, error) {
	if n.src != nil {
		return n.src.Certificate(), nil
	}
	return &n.cert, nil
}

// cluster is the Raft transport's TLS settings.
func (n *nodeTLS) cluster() *cluster.TLS {
	return &cluster.TLS{CAs: n.cas, GetCertificate: n.certificate, Allowed: n.allowed}
}

// allowed admits this node, the servers of the latest Raft configuration and the nodes that
// Join or AddVoter admitted on this process, until they appear in the configuration (then the
// configuration decides: once removed, a node is refused) or for admitFor at most. A node
// whose configuration is still empty (it has joined but not yet heard from the leader) admits
// any node with a certificate of the pool CA: it has no other way to know the leader, and the
// CA issues node certificates only to nodes that used a join token.
func (n *nodeTLS) allowed(id string) bool {
	if id == n.selfID {
		return true
	}
	n.mu.Lock()
	node := n.node
	since, pending := n.pending[id]
	if pending && time.Since(since) > admitFor {
		delete(n.pending, id)
		pending = false
	}
	n.mu.Unlock()
	if node == nil {
		return pending
	}
	servers, err := node.Configuration()
	if err != nil {
		return pending
	}
	if len(servers) == 0 {
		return true
	}
	for _, s := range servers {
		if s.ID == id {
			if pending {
				n.forget(id)
			}
			return true
		}
	}
	return pending
}

func (n *nodeTLS) setNode(node *cluster.Node) {
	n.mu.Lock()
	n.node = node
	n.mu.Unlock()
}

// admit lets node id in before it is in the configuration: the node a Join admitted, which
// the leader is about to add.
func (n *nodeTLS) admit(id string) {
	n.mu.Lock()
	n.pending[id] = time.Now()
	n.mu.Unlock()
}

// forget drops an admission: the node is in the configuration now, or was removed.
func (n *nodeTLS) forget(id string) {
	n.mu.Lock()
	delete(n.pending, id)
	n.mu.Unlock()
}

// server is the node API's TLS: a client certificate is optional, since a joining node has
// none yet; one that is given must chain to the pool CA with clientAuth usage. Methods other
// than Join check it further (peerNode).
func (n *nodeTLS) server() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS13,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return n.certificate() },
		ClientAuth:     tls.VerifyClientCertIfGiven, ClientCAs: n.cas}
}

// pinnedClient is the TLS of a joining node's call: it has only the fingerprint of the pool
// CA (from the join token), so it finds the CA in the chain the server sends, by that
// fingerprint, and verifies the server's node certificate against it. sender receives the
// node ID the certificate names.
func pinnedClient(caFP [32]byte, sender *string) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // replaced by VerifyPeerCertificate: no CA is known before the pin
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			roots := x509.NewCertPool()
			var chain []*x509.Certificate
			for _, der := range raw {
				c, err := x509.ParseCertificate(der)
				if err != nil {
					return fmt.Errorf("the node's certificate chain: %w", err)
				}
				chain = append(chain, c)
				if sha256.Sum256(der) == caFP {
					roots.AddCert(c)
				}
			}
			if len(chain) < 2 || roots.Equal(x509.NewCertPool()) {
				return errors.New("the node does not present the pool CA the join token pins: wrong address, or a token of another pool")
			}
			id, err := pki.VerifyNode(roots, chain, x509.ExtKeyUsageServerAuth, time.Now())
			if err != nil {
				return fmt.Errorf("the node's certificate: %w", err)
			}
			*sender = id
			return nil
		},
	}
}

func credentialsFrom(c *tls.Config) credentials.TransportCredentials { return credentials.NewTLS(c) }
