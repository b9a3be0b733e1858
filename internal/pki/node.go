package pki

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"time"
)

// Node certificates identify pool nodes to each other for mutual TLS (the Raft transport,
// and later the node-to-node gRPC API). The node ID is carried as a URI subject alternative
// name, hsmpool://node/<id> with the ID path-escaped, because a URI SAN is typed, cannot be
// mistaken for a host name by a TLS client checking host names, and is what SPIFFE-style
// workload identities use; the subject CN repeats the ID for people reading the certificate
// but is never trusted. The host and IP SANs name the addresses the node is reached at.
const (
	// NodeURIScheme and NodeURIHost are the scheme and host of the URI SAN naming a node.
	NodeURIScheme = "hsmpool"
	NodeURIHost   = "node"
	// NodeCertValidity is how long a node certificate is valid when NodeOptions.Validity is
	// zero: one year, cut short at the CA's expiry. Long enough that a pool does not stop
	// on a forgotten renewal between releases, short enough that a stolen node key does not
	// outlive the operator's attention; removal (the Allowed callback of package cluster),
	// not expiry, is what revokes a node.
	NodeCertValidity = 365 * 24 * time.Hour
	// maxNodeID is the longest node ID, as in package cluster.
	maxNodeID = 128
)

// NodeURI returns the URI SAN naming nodeID: hsmpool://node/<nodeID>, path-escaped. A node ID
// is 1..128 bytes of printable ASCII without spaces.
func NodeURI(nodeID string) (*url.URL, error) {
	if err := checkNodeID(nodeID); err != nil {
		return nil, err
	}
	return &url.URL{Scheme: NodeURIScheme, Host: NodeURIHost, Path: "/" + nodeID}, nil
}

func checkNodeID(id string) error {
	if id == "" {
		return errors.New("node id is empty")
	}
	if len(id) > maxNodeID {
		return fmt.Errorf("node id of %d bytes is longer than %d", len(id), maxNodeID)
	}
	for i := range len(id) {
		if id[i] <= ' ' || id[i] > '~' {
			return fmt.Errorf("node id %q has characters other than printable ascii", id)
		}
	}
	return nil
}

// NodeOptions describes a node certificate for [CA.IssueNode].
type NodeOptions struct {
	// NodeID is the node's Raft server ID, carried in the URI SAN hsmpool://node/<id>.
	NodeID string
	// Names are the host names and IP literals the node is reached at; at least one.
	Names []string
	// Validity is how long the certificate is valid after Now, cut short at the CA's
	// expiry; zero means NodeCertValidity.
	Validity time.Duration
	// Now is the issuing time; zero means the current time.
	Now time.Time
}

// IssueNode makes a node certificate for opt.NodeID with a fresh ECDSA P-256 key, usable for
// both server and client authentication, and returns both in PEM (the key PKCS#8; it is a
// secret, see the package doc).
func (ca *CA) IssueNode(opt NodeOptions) (certPEM, keyPEM []byte, err error) {
	u, err := NodeURI(opt.NodeID)
	if err != nil {
		return nil, nil, fmt.Errorf("issue node certificate: %w", err)
	}
	if opt.Validity == 0 {
		opt.Validity = NodeCertValidity
	}
	tmpl, err := leafTemplate(LeafOptions{
		CommonName: opt.NodeID,
		Names:      opt.Names,
		Server:     true,
		Client:     true,
		Validity:   opt.Validity,
		Now:        opt.Now,
	}, ca.Cert.NotAfter)
	if err != nil {
		return nil, nil, fmt.Errorf("issue node certificate for %q: %w", opt.NodeID, err)
	}
	tmpl.URIs = []*url.URL{u}
	key, der, err := newCert(tmpl, ca)
	if err == nil {
		keyPEM, err = encodeKey(key)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("issue node certificate for %q: %w", opt.NodeID, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

// NodeID returns the node ID that cert names in its one hsmpool://node/ URI SAN. It does not
// verify the certificate: see [VerifyNode].
func NodeID(cert *x509.Certificate) (string, error) {
	var ids []string
	for _, u := range cert.URIs {
		if u.Scheme != NodeURIScheme || u.Host != NodeURIHost {
			continue
		}
		id, ok := "", false
		if len(u.Path) > 1 && u.Path[0] == '/' && u.User == nil && u.RawQuery == "" && u.Fragment == "" && !u.ForceQuery {
			id, ok = u.Path[1:], true
		}
		if !ok || checkNodeID(id) != nil {
			return "", fmt.Errorf("certificate %q has a malformed node uri %q", cert.Subject.CommonName, u.Redacted())
		}
		ids = append(ids, id)
	}
	switch len(ids) {
	case 0:
		return "", fmt.Errorf("certificate %q names no node (no %s://%s/ uri)", cert.Subject.CommonName, NodeURIScheme, NodeURIHost)
	case 1:
		return ids[0], nil
	default:
		return "", fmt.Errorf("certificate %q names %d nodes; a node certificate names one", cert.Subject.CommonName, len(ids))
	}
}

// VerifyNode verifies a peer's certificate chain as a TLS handshake presents it (the leaf
// first, then any intermediates) against the pool CA certificates in roots, at time now
// (zero: the current time), for usage (x509.ExtKeyUsageServerAuth for the peer a node
// dialled, x509.ExtKeyUsageClientAuth for one that dialled it), and returns the node ID the
// leaf names. Host names are not checked: the node ID is the identity.
func VerifyNode(roots *x509.CertPool, chain []*x509.Certificate, usage x509.ExtKeyUsage, now time.Time) (string, error) {
	if roots == nil {
		return "", errors.New("verify node certificate: no pool ca certificates")
	}
	if len(chain) == 0 {
		return "", errors.New("verify node certificate: the peer presented no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	leaf := chain[0]
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{usage},
	}); err != nil {
		return "", fmt.Errorf("verify node certificate %q: %w", leaf.Subject.CommonName, err)
	}
	id, err := NodeID(leaf)
	if err != nil {
		return "", fmt.Errorf("verify node certificate: %w", err)
	}
	return id, nil
}
