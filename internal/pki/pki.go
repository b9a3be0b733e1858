// Package pki makes and loads the daemon's TLS material: a self-signed certificate authority,
// the leaf certificates it issues (the server certificate of `hsmpoold dev` and `init`, and
// the node certificates used for mutual TLS between nodes), and the [tls.Config] a listener
// serves them with.
//
// All keys are ECDSA P-256 and are stored as PKCS#8 PEM. Certificates carry random 128-bit
// serial numbers and are backdated by five minutes to tolerate clock skew between nodes.
//
// # Security
//
// Key files are created exclusively (never overwriting an existing file) with mode 0600, and
// [LoadCA] refuses a CA key file that group or others can read. Errors name files and
// say what is wrong with them but never quote PEM or DER bytes. Printing a [CA] shows its
// subject and serial only. The key PEM returned by [CA.Issue] is a secret: write it with
// [WriteFile] and clear the slice; clearing is best effort (see package secret).
//
// # Concurrency
//
// A [CA] is safe for concurrent use once made. The [tls.Config] from [ServerTLS] may be used
// by any number of listeners; its GetCertificate serialises reloads internally.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// backdate is how far before "now" certificates become valid, for clock skew between nodes.
const backdate = 5 * time.Minute

// CA is a certificate authority whose key the daemon keeps in a 0600 PEM file.
type CA struct {
	Cert *x509.Certificate
	key  crypto.Signer
}

// Format prints the CA's subject and serial, never its key. It has a value receiver so that
// both CA and *CA values are covered: fmt would otherwise print the unexported key field.
func (ca CA) Format(f fmt.State, _ rune) {
	_, _ = fmt.Fprintf(f, "CA(%q, serial %x)", ca.Cert.Subject.CommonName, ca.Cert.SerialNumber)
}

// NewCA makes a self-signed CA valid from now-5min to now+validity (now zero means the
// current time). The CA may sign leaf certificates only (path length 0).
func NewCA(commonName string, validity time.Duration, now time.Time) (*CA, error) {
	if commonName == "" {
		return nil, errors.New("new ca: empty common name")
	}
	if validity <= 0 {
		return nil, fmt.Errorf("new ca: validity %v is not positive", validity)
	}
	if now.IsZero() {
		now = time.Now()
	}
	key, der, err := newCert(&x509.Certificate{
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}, nil)
	if err != nil {
		return nil, fmt.Errorf("new ca: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("new ca: parse certificate: %w", err)
	}
	return &CA{Cert: cert, key: key}, nil
}

// CertPEM returns the CA certificate in PEM, for distribution to clients and other nodes.
func (ca *CA) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})
}

// Write stores the certificate (mode 0644) and the PKCS#8 key (mode 0600). It refuses to
// overwrite either file; if the certificate cannot be written, the new key file is removed.
func (ca *CA) Write(certFile, keyFile string) error {
	keyPEM, err := encodeKey(ca.key)
	if err != nil {
		return fmt.Errorf("write ca: %w", err)
	}
	defer clear(keyPEM)
	if err := WriteFile(keyFile, keyPEM, 0o600); err != nil {
		return fmt.Errorf("write ca key: %w", err)
	}
	if err := WriteFile(certFile, ca.CertPEM(), 0o644); err != nil {
		_ = os.Remove(keyFile)
		return fmt.Errorf("write ca certificate: %w", err)
	}
	return nil
}

// LoadCA reads a CA written by [CA.Write]. It checks that the certificate is a CA allowed to
// sign certificates, that the key matches it, and (except on Windows) that the key file is
// not readable by group or others.
func LoadCA(certFile, keyFile string) (*CA, error) {
	certs, err := readCerts(certFile)
	if err != nil {
		return nil, fmt.Errorf("load ca: %w", err)
	}
	cert := certs[0]
	if !cert.BasicConstraintsValid || !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("load ca: %s is not a ca certificate", certFile)
	}
	key, err := readKey(keyFile)
	if err != nil {
		return nil, fmt.Errorf("load ca: %w", err)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("load ca: key %s does not match certificate %s", keyFile, certFile)
	}
	return &CA{Cert: cert, key: key}, nil
}

// LeafOptions describes a certificate for [CA.Issue].
type LeafOptions struct {
	// CommonName is the subject CN; empty means the first of Names.
	CommonName string
	// Names are the subject alternative names: IP literals ("127.0.0.1", "::1") become IP
	// SANs, anything else must be a DNS name, optionally a wildcard ("*.managedhsm.localhost").
	Names []string
	// Server and Client select the extended key usages; at least one must be set. A server
	// certificate needs at least one name.
	Server, Client bool
	// Validity is how long the certificate is valid after Now, cut short at the CA's expiry.
	Validity time.Duration
	// Now is the issuing time; zero means the current time.
	Now time.Time
}

// Issue makes a leaf certificate with a fresh ECDSA P-256 key and returns both in PEM, the
// key as PKCS#8. The key PEM is secret; see the package doc.
func (ca *CA) Issue(opt LeafOptions) (certPEM, keyPEM []byte, err error) {
	tmpl, err := leafTemplate(opt, ca.Cert.NotAfter)
	if err != nil {
		return nil, nil, fmt.Errorf("issue certificate: %w", err)
	}
	key, der, err := newCert(tmpl, ca)
	if err == nil {
		keyPEM, err = encodeKey(key)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("issue certificate: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

// leafTemplate validates opt and turns it into a certificate template expiring no later
// than caNotAfter.
func leafTemplate(opt LeafOptions, caNotAfter time.Time) (*x509.Certificate, error) {
	if !opt.Server && !opt.Client {
		return nil, errors.New("neither server nor client usage requested")
	}
	if opt.Server && len(opt.Names) == 0 {
		return nil, errors.New("server certificate without names")
	}
	if opt.Validity <= 0 {
		return nil, fmt.Errorf("validity %v is not positive", opt.Validity)
	}
	now := opt.Now
	if now.IsZero() {
		now = time.Now()
	}
	if !now.Before(caNotAfter) {
		return nil, fmt.Errorf("ca expired at %s", caNotAfter.UTC().Format(time.RFC3339))
	}
	t := &x509.Certificate{
		Subject:               pkix.Name{CommonName: opt.CommonName},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(opt.Validity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	if t.NotAfter.After(caNotAfter) {
		t.NotAfter = caNotAfter
	}
	if opt.Server {
		t.ExtKeyUsage = append(t.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	if opt.Client {
		t.ExtKeyUsage = append(t.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	for _, n := range opt.Names {
		if ip := net.ParseIP(n); ip != nil {
			t.IPAddresses = append(t.IPAddresses, ip)
		} else if validDNSName(n) {
			t.DNSNames = append(t.DNSNames, strings.ToLower(n))
		} else {
			return nil, fmt.Errorf("name %q is neither an ip address nor a dns name", n)
		}
	}
	if t.Subject.CommonName == "" && len(opt.Names) > 0 {
		t.Subject.CommonName = opt.Names[0]
	}
	return t, nil
}

// validDNSName reports whether n is a host name of letters, digits, '-' and '_', with an
// optional "*." wildcard as its whole leftmost label.
func validDNSName(n string) bool {
	for l := range strings.SplitSeq(strings.TrimPrefix(strings.ToLower(n), "*."), ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' ||
			strings.Trim(l, "abcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
			return false
		}
	}
	return len(n) <= 253
}

// newCert generates a P-256 key and returns it with the DER certificate made from tmpl,
// which gets a uniformly random serial number in [1, 2^128]. The certificate is signed by
// issuer, or is self-signed when issuer is nil.
func newCert(tmpl *x509.Certificate, issuer *CA) (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	if tmpl.SerialNumber, err = rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128)); err != nil {
		return nil, nil, fmt.Errorf("generate serial number: %w", err)
	}
	tmpl.SerialNumber.Add(tmpl.SerialNumber, big.NewInt(1))
	parent, signer := tmpl, crypto.Signer(key)
	if issuer != nil {
		parent, signer = issuer.Cert, issuer.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), signer)
	if err != nil {
		return nil, nil, fmt.Errorf("create certificate: %w", err)
	}
	return key, der, nil
}

// encodeKey returns key as PKCS#8 PEM.
func encodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, errors.New("encode private key as pkcs#8") // the cause may describe the key
	}
	defer clear(der)
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// readKey reads a PKCS#8 PEM private key from a file that only its owner can read.
func readKey(path string) (crypto.Signer, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 && runtime.GOOS != "windows" {
		return nil, fmt.Errorf("key file %s has mode %#o; it must not be readable by group or others (chmod 600)", path, perm)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	defer clear(data)
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("key file %s holds no PKCS#8 PEM private key", path)
	}
	defer clear(block.Bytes)
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	signer, ok := k.(crypto.Signer)
	if err != nil || !ok {
		return nil, fmt.Errorf("key file %s holds an invalid or unsupported private key", path)
	}
	return signer, nil
}

// readCerts reads a PEM file in which every block is a certificate; there must be at least
// one. Text outside PEM blocks is ignored.
func readCerts(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var certs []*x509.Certificate
	for block, rest := pem.Decode(data); block != nil; block, rest = pem.Decode(rest) {
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("%s: pem block %d is %q, not a certificate", path, len(certs)+1, block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: pem block %d: %w", path, len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%s holds no pem certificate", path)
	}
	return certs, nil
}

// CertPool reads PEM CA certificates, all of which must parse.
func CertPool(caFile string) (*x509.CertPool, error) {
	certs, err := readCerts(caFile)
	if err != nil {
		return nil, fmt.Errorf("read ca certificates: %w", err)
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}

// WriteFile creates path exclusively with mode perm (not subject to the umask), writes data
// and syncs the file and its directory. It never overwrites: an existing path fails with an
// error matching [os.ErrExist]. On any other failure the new file is removed.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err = errors.Join(err, f.Chmod(perm), f.Sync(), f.Close()); err == nil && runtime.GOOS != "windows" {
		var dir *os.File // sync the new directory entry too; Windows cannot sync directories
		if dir, err = os.Open(filepath.Dir(path)); err == nil {
			err = errors.Join(dir.Sync(), dir.Close())
		}
	}
	if err != nil {
		_ = os.Remove(path)
	}
	return err
}
