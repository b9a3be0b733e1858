package test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"github.com/hsmpool/hsmpool/internal/softhsm"
)

// The pool tests run the real daemon binary, "hsmpoold dev", as a child process on its own SoftHSM2
// token and talk to it over TLS with the unmodified Azure SDK for Go.

var daemonBin struct {
	once sync.Once
	path string
	err  error
}

// hsmpooldBinary builds cmd/hsmpoold once per test run.
func hsmpooldBinary(t *testing.T) string {
	t.Helper()
	daemonBin.once.Do(func() {
		dir, err := os.MkdirTemp("", "hsmpool-bin-")
		if err != nil {
			daemonBin.err = err
			return
		}
		daemonBin.path = filepath.Join(dir, "hsmpoold")
		out, err := exec.Command("go", "build", "-o", daemonBin.path, "github.com/hsmpool/hsmpool/cmd/hsmpoold").CombinedOutput()
		if err != nil {
			daemonBin.err = fmt.Errorf("go build hsmpoold: %v\n%s", err, out)
		}
	})
	if daemonBin.err != nil {
		t.Fatal(daemonBin.err)
	}
	return daemonBin.path
}

// requireSoftHSM fails in CI and skips elsewhere when SoftHSM2 is missing.
func requireSoftHSM(t *testing.T) {
	t.Helper()
	if _, err := softhsm.Module(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("SoftHSM2 is required in CI: %v", err)
		}
		t.Skipf("skipping: this test needs SoftHSM2 (make test installs it): %v", err)
	}
}

// clientFile is DIR/client.json as hsmpoold dev writes it.
type clientFile struct {
	URL           string `json:"url"`
	Name          string `json:"name"`
	TenantID      string `json:"tenant_id"`
	AuthorityHost string `json:"authority_host"`
	ClientID      string `json:"client_id"`
	ClientSecret  string `json:"client_secret"`
	CAFile        string `json:"ca_file"`
}

type testPool struct {
	t      *testing.T
	dir    string
	listen string
	// args, when set, replace "dev --data-dir DIR --listen LISTEN"; env is added to the daemon's
	// environment; clientPath is the client file (default DIR/client.json).
	args       []string
	env        []string
	clientPath string
	cmd        *exec.Cmd
	done       chan error
	stderr     *bytes.Buffer
	client     clientFile
	http       *http.Client
	cred       azcore.TokenCredential
	keys       *azkeys.Client
}

// freeListen returns 127.0.0.1:P where P and P+1 (the Raft port of dev) are free.
func freeListen(t *testing.T) string {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		l2, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port+1))
		if err != nil {
			continue
		}
		l2.Close()
		return fmt.Sprintf("127.0.0.1:%d", port)
	}
	t.Fatal("no two consecutive free ports")
	return ""
}

// startPool starts hsmpoold dev in a new data directory.
func startPool(t *testing.T) *testPool {
	t.Helper()
	requireSoftHSM(t)
	p := &testPool{t: t, dir: filepath.Join(t.TempDir(), "pool"), listen: freeListen(t)}
	p.start()
	t.Cleanup(func() { p.stop() })
	return p
}

func (p *testPool) start() {
	t := p.t
	t.Helper()
	args := p.args
	if args == nil {
		args = []string{"dev", "--data-dir", p.dir, "--listen", p.listen}
	}
	p.cmd = exec.Command(hsmpooldBinary(t), args...)
	p.cmd.Env = append(os.Environ(), p.env...)
	p.stderr = &bytes.Buffer{}
	p.cmd.Stderr = p.stderr
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		first := true
		for sc.Scan() {
			if first {
				ready <- sc.Text()
				first = false
			}
		}
		if first {
			close(ready)
		}
	}()
	p.done = make(chan error, 1)
	go func() { p.done <- p.cmd.Wait() }()
	select {
	case line, ok := <-ready:
		if !ok || !strings.Contains(line, "serving on") {
			p.cmd.Process.Kill()
			t.Fatalf("hsmpoold did not start: %q\n%s", line, p.stderr)
		}
	case <-time.After(60 * time.Second):
		p.cmd.Process.Kill()
		t.Fatalf("hsmpoold did not start within 60 s\n%s", p.stderr)
	}
	clientPath := p.clientPath
	if clientPath == "" {
		clientPath = filepath.Join(p.dir, "client.json")
	}
	b, err := os.ReadFile(clientPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &p.client); err != nil {
		t.Fatal(err)
	}
	p.http = newHTTPClient(t, p.client.CAFile)
	p.cred, err = azidentity.NewClientSecretCredential(p.client.TenantID, p.client.ClientID, p.client.ClientSecret,
		&azidentity.ClientSecretCredentialOptions{
			ClientOptions:            azcore.ClientOptions{Cloud: cloud.Configuration{ActiveDirectoryAuthorityHost: p.client.AuthorityHost + "/"}, Transport: p.http},
			DisableInstanceDiscovery: true,
		})
	if err != nil {
		t.Fatal(err)
	}
	p.keys, err = azkeys.NewClient(p.client.URL, p.cred, &azkeys.ClientOptions{ClientOptions: azcore.ClientOptions{Transport: p.http}})
	if err != nil {
		t.Fatal(err)
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (p *testPool) stop() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		if err != nil {
			p.t.Errorf("hsmpoold exited with %v after SIGTERM\n%s", err, p.stderr)
		}
	case <-time.After(40 * time.Second):
		p.cmd.Process.Kill()
		p.t.Errorf("hsmpoold did not stop within 40 s of SIGTERM\n%s", p.stderr)
	}
	p.cmd = nil
}

// restart stops the daemon and starts it again on the same data directory.
func (p *testPool) restart() {
	p.stop()
	p.start()
}

// newHTTPClient trusts the pool's CA and dials *.localhost on loopback (such names do not resolve
// everywhere; client-compat.md §7).
func newHTTPClient(t *testing.T, caFile string) *http.Client {
	t.Helper()
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		t.Fatal("no CA in " + caFile)
	}
	d := &net.Dialer{Timeout: 10 * time.Second}
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, port, err := net.SplitHostPort(addr)
			if err == nil && (host == "localhost" || strings.HasSuffix(host, ".localhost")) {
				addr = net.JoinHostPort("127.0.0.1", port)
			}
			return d.DialContext(ctx, network, addr)
		},
	}
	return &http.Client{Transport: tr, Timeout: 60 * time.Second}
}

// token returns an access token for the pool's data plane.
func (p *testPool) token() string {
	p.t.Helper()
	u := strings.Replace(p.client.URL, "https://"+p.client.Name+".", "https://", 1)
	tok, err := p.cred.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{u + "/.default"}})
	if err != nil {
		p.t.Fatal(err)
	}
	return tok.Token
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// errorCode is the error.code of an Azure error body.
func (r response) errorCode() string {
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	json.Unmarshal(r.body, &e)
	return e.Error.Code
}

// do sends a raw request with a token (token "" sends none).
func (p *testPool) do(method, path, token string, body io.Reader) response {
	p.t.Helper()
	req, err := http.NewRequest(method, p.client.URL+path, body)
	if err != nil {
		p.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.http.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{resp.StatusCode, resp.Header, b}
}

// officerCert makes an officer's RSA key pair and self-signed certificate.
func officerCert(t *testing.T, cn string) (*rsa.PrivateKey, *x509.Certificate) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return key, cert
}

// downloadBody is the request of az keyvault security-domain download (security-domain-format.md §2.1).
func downloadBody(certs []*x509.Certificate, quorum int) []byte {
	type jwk struct {
		Kty    string   `json:"kty"`
		KeyOps []string `json:"key_ops"`
		N      string   `json:"n"`
		E      string   `json:"e"`
		X5c    []string `json:"x5c"`
		Alg    string   `json:"alg"`
	}
	var body struct {
		Certificates []jwk `json:"certificates"`
		Required     int   `json:"required"`
	}
	for _, c := range certs {
		pub := c.PublicKey.(*rsa.PublicKey)
		body.Certificates = append(body.Certificates, jwk{Kty: "RSA", KeyOps: []string{"verify", "encrypt", "wrapKey"},
			N: base64.RawURLEncoding.EncodeToString(pub.N.Bytes()), E: "AQAB",
			X5c: []string{base64.StdEncoding.EncodeToString(c.Raw)}, Alg: "RSA-OAEP-256"})
	}
	body.Required = quorum
	b, _ := json.Marshal(body)
	return b
}

// activate downloads the security domain with three fresh officers, quorum 2, and returns the file.
func (p *testPool) activate() []byte {
	p.t.Helper()
	var certs []*x509.Certificate
	for _, n := range []string{"alice", "bob", "carol"} {
		_, c := officerCert(p.t, n)
		certs = append(certs, c)
	}
	r := p.do("POST", "/securitydomain/download?api-version=7.5", p.token(), bytes.NewReader(downloadBody(certs, 2)))
	if r.status != http.StatusAccepted {
		p.t.Fatalf("download: %d %s", r.status, r.body)
	}
	var v struct {
		Value string `json:"value"`
	}
	if err := json.Unmarshal(r.body, &v); err != nil || v.Value == "" {
		p.t.Fatalf("download body: %v %s", err, r.body)
	}
	return []byte(v.Value)
}
