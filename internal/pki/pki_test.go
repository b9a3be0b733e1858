package pki

import (
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newTestCA(t *testing.T) *CA {
	t.Helper()
	ca, err := NewCA("hsmpool test CA", 365*24*time.Hour, testNow)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func parseLeaf(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatal("no PEM certificate")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// pemBodyLines returns the base64 lines of a PEM block, the text an error must never quote.
func pemBodyLines(p []byte) []string {
	var lines []string
	for l := range strings.SplitSeq(string(p), "\n") {
		if l != "" && !strings.HasPrefix(l, "-----") {
			lines = append(lines, l)
		}
	}
	return lines
}

func assertNoKeyMaterial(t *testing.T, err error, keyPEM []byte) {
	t.Helper()
	for _, l := range pemBodyLines(keyPEM) {
		if len(l) >= 16 && strings.Contains(err.Error(), l[:16]) || strings.Contains(err.Error(), l) {
			t.Fatalf("error quotes key material: %v", err)
		}
	}
}

func TestNewCA(t *testing.T) {
	ca := newTestCA(t)
	c := ca.Cert
	if !c.IsCA || !c.BasicConstraintsValid || c.MaxPathLen != 0 || !c.MaxPathLenZero {
		t.Errorf("basic constraints: IsCA=%v valid=%v MaxPathLen=%d zero=%v", c.IsCA, c.BasicConstraintsValid, c.MaxPathLen, c.MaxPathLenZero)
	}
	if c.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign {
		t.Errorf("KeyUsage = %v", c.KeyUsage)
	}
	if !c.NotBefore.Equal(testNow.Add(-5*time.Minute)) || !c.NotAfter.Equal(testNow.Add(365*24*time.Hour)) {
		t.Errorf("validity %v .. %v", c.NotBefore, c.NotAfter)
	}
	if c.SerialNumber.Sign() <= 0 || c.SerialNumber.BitLen() > 129 {
		t.Errorf("serial %x", c.SerialNumber)
	}
	if pub, ok := c.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve.Params().Name != "P-256" {
		t.Errorf("public key %T is not P-256", c.PublicKey)
	}
	if err := c.CheckSignatureFrom(c); err != nil {
		t.Errorf("not self-signed: %v", err)
	}
	other := newTestCA(t)
	if c.SerialNumber.Cmp(other.Cert.SerialNumber) == 0 {
		t.Error("two CAs share a serial number")
	}

	for _, tc := range []struct {
		name     string
		cn       string
		validity time.Duration
	}{
		{"empty common name", "", time.Hour},
		{"zero validity", "x", 0},
		{"negative validity", "x", -time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewCA(tc.cn, tc.validity, testNow); err == nil {
				t.Error("NewCA succeeded")
			}
		})
	}
}

func TestCAFormatHidesKey(t *testing.T) {
	ca := newTestCA(t)
	b, err := ca.key.(*ecdsa.PrivateKey).Bytes()
	if err != nil {
		t.Fatal(err)
	}
	d := new(big.Int).SetBytes(b)
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%d"} {
		for _, v := range []any{ca, *ca, struct{ C *CA }{ca}} {
			out := fmt.Sprintf(verb, v)
			if strings.Contains(out, d.String()) || strings.Contains(out, d.Text(16)) {
				t.Errorf("%s of %T prints the private key: %s", verb, v, out)
			}
			if !strings.Contains(out, "hsmpool test CA") {
				t.Errorf("%s of %T = %s, want the subject", verb, v, out)
			}
		}
	}
}

func TestIssueVerify(t *testing.T) {
	ca := newTestCA(t)
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	names := []string{"localhost", "*.managedhsm.localhost", "127.0.0.1", "::1"}
	for _, tc := range []struct {
		name           string
		server, client bool
	}{
		{"server", true, false},
		{"client", false, true},
		{"server and client", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			certPEM, keyPEM, err := ca.Issue(LeafOptions{Names: names, Server: tc.server, Client: tc.client, Validity: 24 * time.Hour, Now: testNow})
			if err != nil {
				t.Fatal(err)
			}
			leaf := parseLeaf(t, certPEM)
			if leaf.IsCA || leaf.KeyUsage != x509.KeyUsageDigitalSignature || leaf.Subject.CommonName != "localhost" {
				t.Errorf("IsCA=%v KeyUsage=%v CN=%q", leaf.IsCA, leaf.KeyUsage, leaf.Subject.CommonName)
			}
			if !leaf.NotBefore.Equal(testNow.Add(-5*time.Minute)) || !leaf.NotAfter.Equal(testNow.Add(24*time.Hour)) {
				t.Errorf("validity %v .. %v", leaf.NotBefore, leaf.NotAfter)
			}
			block, _ := pem.Decode(keyPEM)
			if block == nil || block.Type != "PRIVATE KEY" {
				t.Fatal("key is not PKCS#8 PEM")
			}
			key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			if !key.(*ecdsa.PrivateKey).PublicKey.Equal(leaf.PublicKey) {
				t.Error("key does not match certificate")
			}
			for _, host := range []string{"localhost", "vault1.managedhsm.localhost", "127.0.0.1", "::1"} {
				for _, usage := range []struct {
					eku  x509.ExtKeyUsage
					want bool
				}{{x509.ExtKeyUsageServerAuth, tc.server}, {x509.ExtKeyUsageClientAuth, tc.client}} {
					_, err := leaf.Verify(x509.VerifyOptions{
						DNSName:     host,
						Roots:       roots,
						CurrentTime: testNow,
						KeyUsages:   []x509.ExtKeyUsage{usage.eku},
					})
					if (err == nil) != usage.want {
						t.Errorf("Verify(%s, eku %v) = %v, want success %v", host, usage.eku, err, usage.want)
					}
				}
			}
			for _, host := range []string{"managedhsm.localhost", "a.b.managedhsm.localhost", "127.0.0.2", "example.com"} {
				if _, err := leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: roots, CurrentTime: testNow, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err == nil {
					t.Errorf("Verify(%s) succeeded", host)
				}
			}
		})
	}
}

func TestIssueSANs(t *testing.T) {
	ca := newTestCA(t)
	certPEM, _, err := ca.Issue(LeafOptions{CommonName: "node-1", Names: []string{"Node1.Example", "10.0.0.1", "::1", "*.managedhsm.localhost"}, Client: true, Validity: time.Hour, Now: testNow})
	if err != nil {
		t.Fatal(err)
	}
	leaf := parseLeaf(t, certPEM)
	if got := fmt.Sprint(leaf.DNSNames); got != "[node1.example *.managedhsm.localhost]" {
		t.Errorf("DNSNames = %s", got)
	}
	if len(leaf.IPAddresses) != 2 || !leaf.IPAddresses[0].Equal(net.ParseIP("10.0.0.1")) || !leaf.IPAddresses[1].Equal(net.IPv6loopback) {
		t.Errorf("IPAddresses = %v", leaf.IPAddresses)
	}
	if leaf.Subject.CommonName != "node-1" {
		t.Errorf("CN = %q", leaf.Subject.CommonName)
	}
}

func TestIssueClampsToCA(t *testing.T) {
	ca := newTestCA(t)
	certPEM, _, err := ca.Issue(LeafOptions{Names: []string{"localhost"}, Server: true, Validity: 10 * 365 * 24 * time.Hour, Now: testNow})
	if err != nil {
		t.Fatal(err)
	}
	if got := parseLeaf(t, certPEM).NotAfter; !got.Equal(ca.Cert.NotAfter) {
		t.Errorf("NotAfter = %v, want the CA's %v", got, ca.Cert.NotAfter)
	}
}

func TestIssueRejects(t *testing.T) {
	ca := newTestCA(t)
	ok := LeafOptions{Names: []string{"localhost"}, Server: true, Validity: time.Hour, Now: testNow}
	for _, tc := range []struct {
		name string
		edit func(*LeafOptions)
	}{
		{"no usage", func(o *LeafOptions) { o.Server = false }},
		{"server without names", func(o *LeafOptions) { o.Names = nil }},
		{"zero validity", func(o *LeafOptions) { o.Validity = 0 }},
		{"ca expired", func(o *LeafOptions) { o.Now = ca.Cert.NotAfter.Add(time.Second) }},
		{"empty name", func(o *LeafOptions) { o.Names = []string{""} }},
		{"url", func(o *LeafOptions) { o.Names = []string{"https://localhost"} }},
		{"wildcard inside", func(o *LeafOptions) { o.Names = []string{"a.*.localhost"} }},
		{"bare wildcard", func(o *LeafOptions) { o.Names = []string{"*"} }},
		{"zoned ipv6", func(o *LeafOptions) { o.Names = []string{"fe80::1%eth0"} }},
		{"bracketed ipv6", func(o *LeafOptions) { o.Names = []string{"[::1]"} }},
		{"empty label", func(o *LeafOptions) { o.Names = []string{"a..localhost"} }},
		{"hyphen edge", func(o *LeafOptions) { o.Names = []string{"-a.localhost"} }},
		{"space", func(o *LeafOptions) { o.Names = []string{"local host"} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opt := ok
			tc.edit(&opt)
			if _, _, err := ca.Issue(opt); err == nil {
				t.Error("Issue succeeded")
			}
		})
	}
	if _, _, err := ca.Issue(LeafOptions{Client: true, Validity: time.Hour, Now: testNow}); err != nil {
		t.Errorf("client certificate without names: %v", err)
	}
}

func TestWriteLoadCA(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")
	ca := newTestCA(t)
	if err := ca.Write(certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]os.FileMode{certFile: 0o644, keyFile: 0o600} {
		fi, err := os.Stat(file)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s has mode %#o, want %#o", file, fi.Mode().Perm(), want)
		}
	}
	loaded, err := LoadCA(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if !loaded.Cert.Equal(ca.Cert) {
		t.Error("loaded certificate differs")
	}
	certPEM, _, err := loaded.Issue(LeafOptions{Names: []string{"localhost"}, Server: true, Validity: time.Hour, Now: testNow})
	if err != nil {
		t.Fatal(err)
	}
	if err := parseLeaf(t, certPEM).CheckSignatureFrom(ca.Cert); err != nil {
		t.Errorf("leaf from loaded CA: %v", err)
	}
	pool, err := CertPool(certFile)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parseLeaf(t, certPEM).Verify(x509.VerifyOptions{DNSName: "localhost", Roots: pool, CurrentTime: testNow}); err != nil {
		t.Errorf("verify with CertPool: %v", err)
	}
}

func TestWriteRefusesOverwrite(t *testing.T) {
	ca := newTestCA(t)
	for _, existing := range []string{"ca.pem", "ca-key.pem"} {
		t.Run(existing, func(t *testing.T) {
			dir := t.TempDir()
			certFile, keyFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")
			if err := os.WriteFile(filepath.Join(dir, existing), []byte("precious"), 0o600); err != nil {
				t.Fatal(err)
			}
			err := ca.Write(certFile, keyFile)
			if !errors.Is(err, os.ErrExist) {
				t.Fatalf("Write = %v, want ErrExist", err)
			}
			if b, _ := os.ReadFile(filepath.Join(dir, existing)); string(b) != "precious" {
				t.Errorf("%s overwritten", existing)
			}
			entries, _ := os.ReadDir(dir)
			if len(entries) != 1 {
				t.Errorf("Write left %d files behind, want only the existing one", len(entries))
			}
		})
	}
}

func TestWriteFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	if err := WriteFile(path, []byte("one"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(path, []byte("two"), 0o640); !errors.Is(err, os.ErrExist) {
		t.Errorf("second WriteFile = %v, want ErrExist", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "one" {
		t.Errorf("content %q", b)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %#o", fi.Mode().Perm())
	}
	if err := WriteFile(filepath.Join(t.TempDir(), "missing", "f"), nil, 0o600); err == nil {
		t.Error("WriteFile into a missing directory succeeded")
	}
}

func TestLoadCARefuses(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte, perm os.FileMode) string {
		t.Helper()
		path := filepath.Join(dir, name)
		if err := WriteFile(path, data, perm); err != nil {
			t.Fatal(err)
		}
		return path
	}
	ca, other := newTestCA(t), newTestCA(t)
	caKey, err := encodeKey(ca.key)
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := encodeKey(other.key)
	if err != nil {
		t.Fatal(err)
	}
	leafPEM, leafKey, err := ca.Issue(LeafOptions{Names: []string{"localhost"}, Server: true, Validity: time.Hour, Now: testNow})
	if err != nil {
		t.Fatal(err)
	}
	caCert := write("ca.pem", ca.CertPEM(), 0o644)
	// A key whose PKCS#8 header is damaged: the base64 still decodes, the DER does not parse.
	lines := pemBodyLines(caKey)
	damaged := strings.Replace(string(caKey), lines[0], strings.Repeat("A", len(lines[0])), 1)

	for _, tc := range []struct {
		name, cert, key string
		keyPEM          []byte
		want            string
	}{
		{"mismatched key", caCert, write("other-key.pem", otherKey, 0o600), otherKey, "does not match"},
		{"non-CA certificate", write("leaf.pem", leafPEM, 0o644), write("leaf-key.pem", leafKey, 0o600), leafKey, "not a ca certificate"},
		{"key readable by others", caCert, write("open-key.pem", caKey, 0o644), caKey, "chmod 600"},
		{"key readable by group", caCert, write("group-key.pem", caKey, 0o640), caKey, "chmod 600"},
		{"damaged key", caCert, write("damaged-key.pem", []byte(damaged), 0o600), caKey, "invalid or unsupported"},
		{"certificate as key", caCert, write("cert-as-key.pem", ca.CertPEM(), 0o600), caKey, "no PKCS#8"},
		{"key as certificate", write("key-as-cert.pem", caKey, 0o600), write("key.pem", caKey, 0o600), caKey, `"PRIVATE KEY", not a certificate`},
		{"missing key", caCert, filepath.Join(dir, "nonexistent"), caKey, "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadCA(tc.cert, tc.key)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("LoadCA = %v, want error containing %q", err, tc.want)
			}
			assertNoKeyMaterial(t, err, tc.keyPEM)
		})
	}
}

func TestCertPool(t *testing.T) {
	dir := t.TempDir()
	a, b := newTestCA(t), newTestCA(t)
	both := filepath.Join(dir, "both.pem")
	if err := WriteFile(both, append(append([]byte("# hsmpool CAs\n"), a.CertPEM()...), b.CertPEM()...), 0o644); err != nil {
		t.Fatal(err)
	}
	pool, err := CertPool(both)
	if err != nil {
		t.Fatal(err)
	}
	for _, ca := range []*CA{a, b} {
		if _, err := ca.Cert.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: testNow}); err != nil {
			t.Errorf("%v not in pool: %v", ca, err)
		}
	}

	key, err := encodeKey(a.key)
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{
		"empty":        nil,
		"not pem":      []byte("hello"),
		"key":          key,
		"cert and key": append(a.CertPEM(), key...),
		"bad der":      pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("nope")}),
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "ca.pem")
			if err := WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := CertPool(path)
			if err == nil {
				t.Fatal("CertPool succeeded")
			}
			assertNoKeyMaterial(t, err, key)
		})
	}
}
