package daemon

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/google/uuid"

	"github.com/hsmpool/hsmpool/internal/pki"
)

// nodeKeyPair is the node certificate as its files hold it now (pki.KeyPair, looked at on
// every handshake), so that a renewed certificate is presented from the next connection on.
// Each pair read is completed with its leaf and the pool CA (appended to the chain, for
// joiners that pin the CA) and, after the first, must be this node's certificate from the pool
// CA; a pair that is not (a renewal replaces the key and then the certificate, so a handshake
// may see a new key with the old certificate) is not taken and the previous one stays in use.
// The first pair is checked by cluster.Open, which says why it refuses one.
func nodeKeyPair(certFile, keyFile string, caDER []byte, cas *x509.CertPool, selfID string) (*pki.KeyPair, error) {
	first := true
	return pki.NewKeyPair(certFile, keyFile, 0, func(cert *tls.Certificate) error {
		chain, err := parseChain(cert.Certificate)
		if err != nil {
			return err
		}
		if !first {
			id, err := pki.VerifyNode(cas, chain, x509.ExtKeyUsageServerAuth, time.Now())
			if err != nil {
				return fmt.Errorf("raft.cert_file: %w", err)
			}
			if id != selfID {
				return fmt.Errorf("raft.cert_file names node %q, not this node %q", id, selfID)
			}
		}
		first = false
		cert.Leaf = chain[0]
		cert.Certificate = append(cert.Certificate, caDER)
		return nil
	})
}

// renewBefore is how long before its expiry a node renews its own certificate.
const renewBefore = 30 * 24 * time.Hour

// renewNodeCert renews this node's certificate from the pool CA key when it expires within
// renewBefore of now: a new key and certificate for the same node ID and names, written over
// the files (key first, each by an atomic rename); the running node picks them up at its next
// handshake (nodeKeyPair). It does nothing on a node without a node certificate or CA key. It
// refuses a renewal that would not expire later than the current certificate (the CA itself
// expires first: renew the CA).
func renewNodeCert(cfg Config, now time.Time) (renewed bool, notAfter time.Time, err error) {
	if !cfg.Raft.mTLS() || cfg.TLS.CAKey == "" {
		return false, time.Time{}, nil
	}
	pair, err := tls.LoadX509KeyPair(cfg.Raft.CertFile, cfg.Raft.KeyFile)
	if err != nil {
		return false, time.Time{}, fmt.Errorf("raft.cert_file, raft.key_file: %w", err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return false, time.Time{}, fmt.Errorf("raft.cert_file: %w", err)
	}
	if leaf.NotAfter.Sub(now) > renewBefore {
		return false, leaf.NotAfter, nil
	}
	ca, err := pki.LoadCA(cfg.TLS.CAFile, cfg.TLS.CAKey)
	if err != nil {
		return false, leaf.NotAfter, fmt.Errorf("load the pool CA: %w", err)
	}
	names := append([]string(nil), leaf.DNSNames...)
	for _, ip := range leaf.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 {
		host, _, err := net.SplitHostPort(cfg.Raft.BindAddr)
		if err != nil || host == "" {
			return false, leaf.NotAfter, fmt.Errorf("raft.bind_addr %q: want host:port", cfg.Raft.BindAddr)
		}
		names = []string{host}
	}
	certPEM, keyPEM, err := ca.IssueNode(pki.NodeOptions{NodeID: cfg.Raft.NodeID, Names: names, Now: now})
	if err != nil {
		return false, leaf.NotAfter, err
	}
	fresh, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return false, leaf.NotAfter, err
	}
	newLeaf, err := x509.ParseCertificate(fresh.Certificate[0])
	if err != nil {
		return false, leaf.NotAfter, err
	}
	if !newLeaf.NotAfter.After(leaf.NotAfter) {
		return false, leaf.NotAfter, fmt.Errorf("the pool CA expires at %s, before a renewed node certificate would: renew the CA", newLeaf.NotAfter.UTC())
	}
	if err := replaceFile(cfg.Raft.KeyFile, keyPEM, 0o600); err != nil {
		return false, leaf.NotAfter, err
	}
	if err := replaceFile(cfg.Raft.CertFile, certPEM, 0o644); err != nil {
		return false, leaf.NotAfter, err
	}
	return true, newLeaf.NotAfter, nil
}

// replaceFile writes data to path through a new file in the same directory and a rename, so
// that a reader sees the old content or the new one.
func replaceFile(path string, data []byte, perm os.FileMode) error {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+"."+uuid.NewString())
	if err := pki.WriteFile(tmp, data, perm); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return errors.Join(err, os.Remove(tmp))
	}
	return nil
}

// renewEvery is how often a running node looks whether its certificate needs renewing.
var renewEvery = 24 * time.Hour

// keepNodeCertFresh renews the node certificate now and then every renewEvery until ctx ends.
func keepNodeCertFresh(ctx context.Context, cfg Config, log *slog.Logger) {
	t := time.NewTicker(renewEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		renewAndLog(cfg, log)
	}
}

func renewAndLog(cfg Config, log *slog.Logger) {
	renewed, notAfter, err := renewNodeCert(cfg, time.Now())
	switch {
	case err != nil:
		log.Error("renew the node certificate", "err", err, "not_after", notAfter.UTC())
	case renewed:
		log.Info("node certificate renewed", "not_after", notAfter.UTC())
	}
}
