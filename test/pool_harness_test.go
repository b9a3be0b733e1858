package test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
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
	"github.com/hsmpool/hsmpool/pkg/client"
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
	client     *client.File
	http       *http.Client
	cred       azcore.TokenCredential
	keys       *azkeys.Client
	// officers are the certificates (DER) the pool was activated with, officerKeys their private keys.
	officers    [][]byte
	officerKeys []*rsa.PrivateKey
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
	if p.client, err = client.ReadFile(clientPath); err != nil { // also checks that it is 0600
		t.Fatal(err)
	}
	// The pool's CA, and *.localhost dialed on loopback: such names do not resolve everywhere
	// (client-compat.md §7), and the SDK's challenge verification stays on.
	if p.http, err = client.NewHTTPClient(p.client.CAFile); err != nil {
		t.Fatal(err)
	}
	p.cred, err = azidentity.NewClientSecretCredential(p.client.TenantID, p.client.ClientID, p.client.ClientSecret.Reveal(),
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

// token returns an access token for the pool's data plane.
func (p *testPool) token() string {
	p.t.Helper()
	return tokenOf(p, p.cred)
}

// tokenOf returns an access token of cred for the pool's data plane.
func tokenOf(p *testPool, cred azcore.TokenCredential) string {
	p.t.Helper()
	u := strings.Replace(p.client.URL, "https://"+p.client.Name+".", "https://", 1)
	tok, err := cred.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{u + "/.default"}})
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

// selfSigned makes an RSA-2048 key and a self-signed certificate for it, as officers' and exchange keys are.
func selfSigned(t *testing.T, cn string) (*rsa.PrivateKey, *x509.Certificate) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), KeyUsage: x509.KeyUsageKeyEncipherment}
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

// activate downloads the security domain with three fresh officers, quorum 2, through pkg/client
// (which sends what az keyvault security-domain download sends and requires the 202), and returns
// the file.
func (p *testPool) activate() []byte {
	p.t.Helper()
	var ders [][]byte
	var keys []*rsa.PrivateKey
	for _, n := range []string{"alice", "bob", "carol"} {
		k, c := selfSigned(p.t, n)
		ders, keys = append(ders, c.Raw), append(keys, k)
	}
	sd, err := client.NewSecurityDomainClient(p.client.URL, p.cred, &client.SecurityDomainClientOptions{ClientOptions: azcore.ClientOptions{Transport: p.http}})
	if err != nil {
		p.t.Fatal(err)
	}
	file, err := sd.Download(context.Background(), ders, 2)
	if err != nil {
		p.t.Fatalf("download: %v", err)
	}
	p.officers, p.officerKeys = ders, keys
	return file
}
