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
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/hsmpool/hsmpool/internal/pki"
)

// certSource is the node certificate as its files hold it now: it reads them again at the
// first handshake after either file changed (size or modification time), so that a renewed
// certificate is presented from the next connection on. A pair that does not load, or whose
// certificate is not this node's from the pool CA, is not taken (a renewal replaces the key
// and then the certificate, so one handshake may see a new key with the old certificate):
// the previous one stays in use until the files are consistent again.
type certSource struct {
	certFile, keyFile string
	caDER             []byte
	cas               *x509.CertPool
	selfID            string
	log               *slog.Logger

	mu     sync.Mutex
	stamp  string
	cert   *tls.Certificate
	warned string // the stamp last warned about
}

func fileStamp(paths ...string) string {
	var s string
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			s += "?|"
			continue
		}
		s += fmt.Sprintf("%d/%d|", fi.Size(), fi.ModTime().UnixNano())
	}
	return s
}

func (c *certSource) get() (*tls.Certificate, error) {
	stamp := fileStamp(c.certFile, c.keyFile)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cert != nil && stamp == c.stamp {
		return c.cert, nil
	}
	cert, err := c.load()
	if err != nil {
		if c.cert == nil {
			return nil, err
		}
		if c.warned != stamp && c.log != nil {
			c.log.Warn("the node certificate files changed but do not hold a usable pair; keeping the previous one", "err", err)
			c.warned = stamp
		}
		return c.cert, nil
	}
	if c.cert != nil && c.log != nil {
		c.log.Info("node certificate reloaded", "not_after", cert.Leaf.NotAfter.UTC())
	}
	c.cert, c.stamp = cert, stamp
	return c.cert, nil
}

func (c *certSource) load() (*tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return nil, fmt.Errorf("raft.cert_file, raft.key_file: %w", err)
	}
	chain, err := parseChain(cert.Certificate)
	if err != nil {
		return nil, err
	}
	if c.cas != nil {
		id, err := pki.VerifyNode(c.cas, chain, x509.ExtKeyUsageServerAuth, time.Now())
		if err != nil {
			return nil, fmt.Errorf("raft.cert_file: %w", err)
		}
		if id != c.selfID {
			return nil, fmt.Errorf("raft.cert_file names node %q, not this node %q", id, c.selfID)
		}
	}
	cert.Leaf = chain[0]
	cert.Certificate = append(cert.Certificate, c.caDER)
	return &cert, nil
}

// renewBefore is how long before its expiry a node renews its own certificate.
const renewBefore = 30 * 24 * time.Hour

// renewNodeCert renews this node's certificate from the pool CA key when it expires within
// renewBefore of now: a new key and certificate for the same node ID and names, written over
// the files (key first, each by an atomic rename); the running node picks them up at its next
// handshake (certSource). It does nothing on a node without a node certificate or CA key. It
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
