package daemon

import (
	"crypto/ecdsa"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hsmpool/hsmpool/internal/pki"
)

// TestRenewNodeCert: a node certificate that expires within 30 days is renewed from the CA
// key for the same node ID and names, with a new key; the running node's certificate source
// presents the new one at the next handshake; a certificate with time left is not renewed;
// files that do not hold a usable pair of this node keep the previous certificate in use.
func TestRenewNodeCert(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	ca, err := pki.NewCA("pool", 10*365*24*time.Hour, now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{TLS: TLS{CAFile: filepath.Join(dir, "ca.pem"), CAKey: filepath.Join(dir, "ca.key")},
		Raft: Raft{NodeID: "node-1", BindAddr: "127.0.0.1:1", CertFile: filepath.Join(dir, "node.pem"), KeyFile: filepath.Join(dir, "node.key")}}
	if err := ca.Write(cfg.TLS.CAFile, cfg.TLS.CAKey); err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.IssueNode(pki.NodeOptions{NodeID: "node-1", Names: []string{"127.0.0.1", "n1.example"}, Validity: 10 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	write := func(path string, b []byte) {
		t.Helper()
		if err := replaceFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(cfg.Raft.CertFile, certPEM)
	write(cfg.Raft.KeyFile, keyPEM)

	ntls, err := loadNodeTLS(cfg)
	if err != nil {
		t.Fatal(err)
	}
	old, err := ntls.certificate()
	if err != nil {
		t.Fatal(err)
	}

	renewed, notAfter, err := renewNodeCert(cfg, now)
	if err != nil || !renewed {
		t.Fatalf("renewNodeCert = %v, %v; want a renewal", renewed, err)
	}
	if notAfter.Sub(now) < 300*24*time.Hour {
		t.Errorf("renewed certificate expires at %v, want about a year from now", notAfter)
	}
	cur, err := ntls.certificate()
	if err != nil {
		t.Fatal(err)
	}
	if cur.Leaf.SerialNumber.Cmp(old.Leaf.SerialNumber) == 0 {
		t.Fatal("the certificate source still presents the old certificate")
	}
	if !cur.Leaf.NotAfter.Equal(notAfter) {
		t.Errorf("presented certificate expires at %v, want %v", cur.Leaf.NotAfter, notAfter)
	}
	if id, err := pki.NodeID(cur.Leaf); err != nil || id != "node-1" {
		t.Errorf("renewed certificate names node %q (%v), want node-1", id, err)
	}
	if len(cur.Leaf.DNSNames) != 1 || cur.Leaf.DNSNames[0] != "n1.example" || len(cur.Leaf.IPAddresses) != 1 || cur.Leaf.IPAddresses[0].String() != "127.0.0.1" {
		t.Errorf("renewed names %v %v, want the old ones", cur.Leaf.DNSNames, cur.Leaf.IPAddresses)
	}
	if cur.Leaf.PublicKey.(*ecdsa.PublicKey).Equal(old.Leaf.PublicKey) {
		t.Error("the renewed certificate has the old key")
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.CertPEM())
	chain, err := parseChain(cur.Certificate)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pki.VerifyNode(roots, chain, x509.ExtKeyUsageClientAuth, now); err != nil {
		t.Errorf("the presented chain does not verify: %v", err)
	}
	if fi, err := os.Stat(cfg.Raft.KeyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v (%v), want 0600", fi.Mode().Perm(), err)
	}

	// A year left: nothing to do.
	if renewed, _, err := renewNodeCert(cfg, now); err != nil || renewed {
		t.Errorf("second renewNodeCert = %v, %v; want no renewal", renewed, err)
	}

	// A key that does not match the certificate, then a certificate of another node: the
	// source keeps presenting the renewed certificate.
	otherCert, otherKey, err := ca.IssueNode(pki.NodeOptions{NodeID: "node-2", Names: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	write(cfg.Raft.KeyFile, otherKey)
	if c, err := ntls.certificate(); err != nil || c != cur {
		t.Errorf("after a mismatched key: %v, %v; want the previous certificate", c, err)
	}
	write(cfg.Raft.CertFile, otherCert)
	if c, err := ntls.certificate(); err != nil || c != cur {
		t.Errorf("after another node's certificate: %v, %v; want the previous certificate", c, err)
	}
}

// TestDropStaleOffers: the offer of a join abandoned for a day is removed; a recent one stays.
func TestDropStaleOffers(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, JoinsDir), 0o700); err != nil {
		t.Fatal(err)
	}
	old, fresh := filepath.Join(dir, JoinsDir, "6e6f64652d31.pem"), filepath.Join(dir, JoinsDir, "6e6f64652d32.pem")
	for _, f := range []string{old, fresh} {
		if err := os.WriteFile(f, []byte("offer"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	past := time.Now().Add(-25 * time.Hour)
	if err := os.Chtimes(old, past, past); err != nil {
		t.Fatal(err)
	}
	if n := dropStaleOffers(dir, time.Now()); n != 1 {
		t.Errorf("dropped %d, want 1", n)
	}
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Errorf("the stale offer is still there: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("the recent offer is gone: %v", err)
	}
}
