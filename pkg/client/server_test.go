package client

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Names of the fake pool.
const (
	testTenant   = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	testClientID = "11111111-2222-3333-4444-555555555555"
	testSecret   = "s3cret-never-printed"
	testToken    = "opaque-token-1"
	testPoolName = "contoso"
)

// fakePool is an httptest TLS server that plays a pool: the identity endpoints (discovery and client-credentials
// token) and a data plane that answers 401 with a challenge until it sees the token. Data-plane handlers are added
// by the tests in routes, by "METHOD /path".
type fakePool struct {
	t      *testing.T
	srv    *httptest.Server
	caFile string
	port   string

	// challenge is the WWW-Authenticate value of the 401; set by newFakePool, tests may change it.
	challenge string

	mu       sync.Mutex
	routes   map[string]http.HandlerFunc
	log      []string // "METHOD /path STATUS" of every data-plane request
	scopes   []string // scope of every token request
	tokenErr bool     // answer token requests with invalid_client
}

// newFakePool starts a fake pool with a certificate for localhost, *.managedhsm.localhost and 127.0.0.1 from a new
// CA, written to a file in a temporary directory.
func newFakePool(t *testing.T) *fakePool {
	t.Helper()
	p := &fakePool{t: t, routes: map[string]http.HandlerFunc{}}
	caPEM, cert := testTLS(t, []string{"localhost", "managedhsm.localhost", "*.managedhsm.localhost"})
	p.caFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(p.caFile, caPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	p.srv = httptest.NewUnstartedServer(http.HandlerFunc(p.serve))
	p.srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	p.srv.StartTLS()
	t.Cleanup(p.srv.Close)
	_, p.port, _ = net.SplitHostPort(p.srv.Listener.Addr().String())
	p.challenge = `Bearer authorization="` + p.authority() + "/" + testTenant + `", resource="https://managedhsm.localhost:` + p.port + `"`
	return p
}

// authority is the authority host: the server by IP address.
func (p *fakePool) authority() string { return "https://127.0.0.1:" + p.port }

// url is the pool's URL, by a name under .localhost.
func (p *fakePool) url() string { return "https://" + testPoolName + ".managedhsm.localhost:" + p.port }

// file returns a client file for the fake pool.
func (p *fakePool) file() *File {
	return &File{URL: p.url(), Name: testPoolName, TenantID: testTenant, AuthorityHost: p.authority(),
		ClientID: testClientID, ClientSecret: NewSecret(testSecret), CAFile: p.caFile}
}

// client returns a Client of the fake pool that does not retry.
func (p *fakePool) client() *Client {
	p.t.Helper()
	c, err := New(p.file(), &Options{Retry: noRetry})
	if err != nil {
		p.t.Fatal(err)
	}
	return c
}

// handle serves "METHOD /path" of the data plane with h, once the request carries the token.
func (p *fakePool) handle(route string, h http.HandlerFunc) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.routes[route] = h
}

// requests returns the log of data-plane requests and the scopes of token requests so far.
func (p *fakePool) requests() (log, scopes []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.log...), append([]string(nil), p.scopes...)
}

func (p *fakePool) serve(w http.ResponseWriter, r *http.Request) {
	base := "/" + testTenant
	switch r.URL.Path {
	case base + "/v2.0/.well-known/openid-configuration":
		iss := p.authority() + base
		writeJSON(w, 200, map[string]any{
			"issuer": iss + "/v2.0", "authorization_endpoint": iss + "/oauth2/v2.0/authorize",
			"token_endpoint": iss + "/oauth2/v2.0/token", "jwks_uri": iss + "/discovery/v2.0/keys",
		})
		return
	case base + "/oauth2/v2.0/token":
		p.token(w, r)
		return
	}
	p.mu.Lock()
	h := p.routes[r.Method+" "+r.URL.Path]
	p.mu.Unlock()
	rec := &statusRecorder{ResponseWriter: w, status: 200}
	switch {
	case r.Header.Get("Authorization") != "Bearer "+testToken:
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("WWW-Authenticate", p.challenge)
		writeJSON(rec, 401, map[string]any{"error": map[string]string{"code": "Unauthorized", "message": "AKV10000: Request is missing a Bearer or PoP token."}})
	case h == nil:
		writeJSON(rec, 404, map[string]any{"error": map[string]string{"code": "NotFound", "message": "no route " + r.URL.Path}})
	default:
		h(rec, r)
	}
	p.mu.Lock()
	p.log = append(p.log, r.Method+" "+r.URL.Path+" "+http.StatusText(rec.status))
	p.mu.Unlock()
}

func (p *fakePool) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeJSON(w, 400, map[string]string{"error": "invalid_request"})
		return
	}
	p.mu.Lock()
	p.scopes = append(p.scopes, r.PostForm.Get("scope"))
	fail := p.tokenErr
	p.mu.Unlock()
	if fail || r.PostForm.Get("client_id") != testClientID || r.PostForm.Get("client_secret") != testSecret {
		writeJSON(w, 401, map[string]any{"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided.",
			"error_codes": []int{7000215}})
		return
	}
	writeJSON(w, 200, map[string]any{"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": testToken})
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// testTLS makes a CA and a server certificate from it for names and 127.0.0.1; it returns the CA's PEM.
func testTLS(t *testing.T, names []string) ([]byte, tls.Certificate) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: key}
}

// officerCerts returns n (at most 4) self-signed RSA-2048 certificates, DER; made once, as RSA keys are slow.
func officerCerts(t *testing.T, n int) [][]byte {
	t.Helper()
	officers.once.Do(func() {
		for i := range 4 {
			key, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				officers.err = err
				return
			}
			tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(i + 1)), Subject: pkix.Name{CommonName: "officer"},
				NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
			der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
			if err != nil {
				officers.err = err
				return
			}
			officers.certs = append(officers.certs, der)
		}
	})
	if officers.err != nil {
		t.Fatal(officers.err)
	}
	return officers.certs[:n]
}

var officers struct {
	once  sync.Once
	certs [][]byte
	err   error
}

// mustContainNone fails if s contains any of the secrets of the fake pool.
func mustContainNone(t *testing.T, what, s string) {
	t.Helper()
	for _, secret := range []string{testSecret, testToken} {
		if strings.Contains(s, secret) {
			t.Errorf("%s shows a secret: %q", what, s)
		}
	}
}
