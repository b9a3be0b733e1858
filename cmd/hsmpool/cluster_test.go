package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
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

	"github.com/hsmpool/hsmpool/pkg/client"
)

// TestClusterFlags runs cluster commands with argument and flag mistakes: each fails before it looks for a client
// file; valid ones get as far as the missing client file.
func TestClusterFlags(t *testing.T) {
	t.Setenv(client.EnvFile, "")
	t.Setenv(envURL, "")
	tests := []struct {
		args []string
		err  string
	}{
		{[]string{"cluster", "status", "extra"}, `unknown command "extra" for "hsmpool cluster status"`},
		{[]string{"cluster", "status", "-o", "yaml"}, `-o "yaml": want table or json`},
		{[]string{"cluster", "status"}, errNoClientFile},
		{[]string{"cluster", "status", "-o", "json"}, errNoClientFile},
		{[]string{"cluster", "status", "--url", "http://contoso.managedhsm.localhost:8443"}, `--url "http://contoso.managedhsm.localhost:8443": want https://HOST[:PORT]`},
		{[]string{"cluster", "status", "--url", "https://contoso.managedhsm.localhost:8443/keys"}, `--url "https://contoso.managedhsm.localhost:8443/keys": want https://HOST[:PORT]`},
		{[]string{"cluster", "status", "--url", "https://"}, `want https://HOST[:PORT]`},
		{[]string{"cluster", "status", "--url", "https://contoso.managedhsm.localhost:8453/"}, errNoClientFile},
		{[]string{"cluster", "remove"}, "want one node ID: hsmpool cluster remove NODE_ID [flags]"},
		{[]string{"cluster", "remove", "a", "b"}, "want one node ID"},
		{[]string{"cluster", "remove", "a/b"}, `node ID "a/b": want a node ID, such as node-8453`},
		{[]string{"cluster", "remove", ".."}, `node ID "..": want a node ID`},
		{[]string{"cluster", "remove", "node-2", "-o", "json"}, "unknown shorthand flag: 'o' in -o"},
		{[]string{"cluster", "remove", "node-2"}, errNoClientFile},
		{[]string{"cluster", "join-token", "x"}, `unknown command "x" for "hsmpool cluster join-token"`},
		{[]string{"cluster", "join-token", "--url", "ftp://x"}, `--url "ftp://x"`},
		{[]string{"cluster", "join-token"}, errNoClientFile},
		// Every pool command takes --url.
		{[]string{"key", "list", "--url", "https://contoso.managedhsm.localhost:8453"}, errNoClientFile},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, err := execute(t, tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("error %v\nwant one with %q", err, tt.err)
			}
		})
	}
	t.Setenv(envURL, "contoso.managedhsm.localhost")
	if _, err := execute(t, "cluster", "status"); err == nil || !strings.Contains(err.Error(), `--url "contoso.managedhsm.localhost": want https://`) {
		t.Errorf("bad $%s: %v", envURL, err)
	}
}

func testClusterStatus() *client.ClusterStatus {
	return &client.ClusterStatus{LeaderID: "node-8443", AnsweredBy: "node-8453", Nodes: []client.NodeStatus{
		{NodeID: "node-8443", RaftAddr: "127.0.0.1:8444", NodeAddr: "127.0.0.1:8445", URL: "https://contoso.managedhsm.localhost:8443",
			Suffrage: "Voter", Role: "Leader", Term: 3, LastIndex: 42, CommitIndex: 42, AppliedIndex: 42, HSMOk: true, Reachable: true, Version: "v1"},
		{NodeID: "node-8453", RaftAddr: "127.0.0.1:8454", NodeAddr: "127.0.0.1:8455", Suffrage: "Voter", Role: "Follower", Term: 3,
			LastIndex: 42, CommitIndex: 42, AppliedIndex: 40, Lag: 2, LastContactMs: 15, HSMError: "CKR_DEVICE_ERROR", Reachable: true},
		{NodeID: "node-8463", RaftAddr: "127.0.0.1:8464", Suffrage: "Nonvoter", LastContactMs: -1, Error: "dial tcp 127.0.0.1:8465: connection refused"},
	}}
}

func TestPrintClusterStatus(t *testing.T) {
	var b bytes.Buffer
	if err := printClusterStatus(&b, testClusterStatus()); err != nil {
		t.Fatal(err)
	}
	want := `leader: node-8443 (answered by node-8453)
NODE       ROLE      SUFFRAGE  RAFT ADDR       NODE API        TERM  APPLIED  LAG  HSM
node-8443  Leader    Voter     127.0.0.1:8444  127.0.0.1:8445  3     42       0    ok
node-8453  Follower  Voter     127.0.0.1:8454  127.0.0.1:8455  3     40       2    error
node-8463  -         Nonvoter  127.0.0.1:8464  -               -     -        -    -
node-8453: HSM: CKR_DEVICE_ERROR
node-8463: unreachable: dial tcp 127.0.0.1:8465: connection refused
`
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}

	b.Reset()
	if err := printClusterStatus(&b, &client.ClusterStatus{AnsweredBy: "node-1", Nodes: []client.NodeStatus{}}); err != nil {
		t.Fatal(err)
	}
	if want := "leader: none known (answered by node-1)\nNODE  ROLE  SUFFRAGE  RAFT ADDR  NODE API  TERM  APPLIED  LAG  HSM\n"; b.String() != want {
		t.Errorf("no leader: got\n%q\nwant\n%q", b.String(), want)
	}
}

// TestClusterCommands runs the cluster commands against a fake pool node that the client file does not name: --url
// (or $HSMPOOL_URL) picks it, with the client file's principal, CA and authority.
func TestClusterCommands(t *testing.T) {
	node := newFakeNode(t)
	dir := t.TempDir()
	cf := filepath.Join(dir, "client.json")
	// The client file names another node, where nothing listens: only --url reaches the fake one.
	f := map[string]string{"url": "https://contoso.managedhsm.localhost:1", "name": "contoso", "tenant_id": fakeTenant,
		"authority_host": node.authority(), "client_id": "cli-1", "client_secret": fakeSecret, "ca_file": node.caFile}
	b, _ := json.Marshal(f)
	if err := os.WriteFile(cf, b, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(client.EnvFile, cf)
	t.Setenv(envURL, "")
	c := &clusterCLI{t: t}
	url := "--url=" + node.url()

	st := testClusterStatus()
	node.handle("GET /cluster/status", func(w http.ResponseWriter, _ *http.Request) { writeTestJSON(w, 200, st) })
	out := c.ok("cluster", "status", url)
	var want bytes.Buffer
	_ = printClusterStatus(&want, st)
	if out != want.String() {
		t.Errorf("cluster status printed\n%s\nwant\n%s", out, want.String())
	}
	out = c.ok("cluster", "status", url, "-o", "json")
	var got client.ClusterStatus
	if err := json.Unmarshal([]byte(out), &got); err != nil || got.AnsweredBy != "node-8453" || len(got.Nodes) != 3 || got.Nodes[2].LastContactMs != -1 {
		t.Errorf("cluster status -o json: %v\n%s", err, out)
	}
	for _, k := range []string{`"leaderId"`, `"answeredBy"`, `"nodeId"`, `"raftAddr"`, `"nodeAddr"`, `"url"`, `"suffrage"`, `"role"`, `"term"`,
		`"lastIndex"`, `"commitIndex"`, `"appliedIndex"`, `"lag"`, `"lastContactMs"`, `"hsmOk"`, `"hsmError"`, `"reachable"`, `"error"`, `"version"`} {
		if !strings.Contains(out, k+":") {
			t.Errorf("cluster status -o json has no %s:\n%s", k, out)
		}
	}

	// $HSMPOOL_URL does what --url does; --url wins over it.
	t.Setenv(envURL, node.url())
	c.ok("cluster", "status")
	t.Setenv(envURL, "https://contoso.managedhsm.localhost:1")
	c.ok("cluster", "status", url)
	t.Setenv(envURL, "")
	// Without either, the client file's URL, where nothing listens.
	stderr := c.fails("cluster", "status")
	if !strings.Contains(stderr, "cannot reach the pool at https://contoso.managedhsm.localhost:1") {
		t.Errorf("the client file's dead URL: %s", stderr)
	}

	node.handle("DELETE /cluster/nodes/node-8463", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	if out := c.ok("cluster", "remove", "node-8463", url); out != "" {
		t.Errorf("remove printed %q on stdout", out)
	}
	if !strings.Contains(c.lastStderr, "hsmpool: removed node-8463 from the pool") {
		t.Errorf("remove: stderr %q", c.lastStderr)
	}
	node.handle("DELETE /cluster/nodes/node-9", func(w http.ResponseWriter, _ *http.Request) {
		writeTestJSON(w, 404, map[string]any{"error": map[string]string{"code": "NotFound", "message": `node "node-9" is not a member of the pool`}})
	})
	c.failsWith(`hsmpool: cluster remove: NotFound (HTTP 404 Not Found): node "node-9" is not a member of the pool`, "cluster", "remove", "node-9", url)
	node.handle("GET /cluster/status", func(w http.ResponseWriter, _ *http.Request) {
		writeTestJSON(w, 403, map[string]any{"error": map[string]string{"code": "Forbidden",
			"message": "Caller is not authorized to perform action on resource. Action: 'Microsoft.KeyVault/managedHsm/securitydomain/download/read'"}})
	})
	c.failsWith("hsmpool: hint: the principal may not do this", "cluster", "status", url)

	for _, l := range node.requests() {
		if !strings.HasSuffix(l, "?api-version="+client.PrincipalsAPIVersion) {
			t.Errorf("request %s, want the api-version", l)
		}
	}
}

// clusterCLI runs hsmpool commands as run does for the real binary (the cgo-only cli of pool_e2e_test.go does
// more).
type clusterCLI struct {
	t          *testing.T
	lastStderr string
}

func (c *clusterCLI) exec(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := run(args, &out, &errOut)
	c.lastStderr = errOut.String()
	return code, out.String(), errOut.String()
}

// ok runs hsmpool, fails the test unless it exits 0, and returns its stdout.
func (c *clusterCLI) ok(args ...string) string {
	c.t.Helper()
	code, out, errOut := c.exec(args...)
	if code != 0 {
		c.t.Fatalf("hsmpool %s: exit code %d\nstderr:\n%s", strings.Join(args, " "), code, errOut)
	}
	return out
}

// fails runs hsmpool, fails the test if it exits 0, and returns its stderr.
func (c *clusterCLI) fails(args ...string) string {
	c.t.Helper()
	code, out, errOut := c.exec(args...)
	if code == 0 {
		c.t.Fatalf("hsmpool %s: exit code 0, want an error\nstdout:\n%s", strings.Join(args, " "), out)
	}
	return errOut
}

// failsWith is fails, and checks that stderr contains want.
func (c *clusterCLI) failsWith(want string, args ...string) {
	c.t.Helper()
	if errOut := c.fails(args...); !strings.Contains(errOut, want) {
		c.t.Errorf("hsmpool %s: stderr\n%s\nwant it to contain %q", strings.Join(args, " "), errOut, want)
	}
}

// Names of the fake node.
const (
	fakeTenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	fakeSecret = "fake-secret-of-the-cli"
	fakeToken  = "fake-token-of-the-cli"
)

// fakeNode is an httptest TLS server that plays one node of a pool for the CLI: the identity provider's discovery
// and token endpoints, and a data plane that answers 401 with a challenge until it sees the token. Tests add
// handlers by "METHOD /path".
type fakeNode struct {
	t      *testing.T
	srv    *httptest.Server
	caFile string
	port   string

	mu     sync.Mutex
	routes map[string]http.HandlerFunc
	log    []string // "METHOD /path?query" of every data-plane request with the token
}

func newFakeNode(t *testing.T) *fakeNode {
	t.Helper()
	n := &fakeNode{t: t, routes: map[string]http.HandlerFunc{}}
	caPEM, cert := fakeTLS(t)
	n.caFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(n.caFile, caPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	n.srv = httptest.NewUnstartedServer(http.HandlerFunc(n.serve))
	n.srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	n.srv.StartTLS()
	t.Cleanup(n.srv.Close)
	_, n.port, _ = net.SplitHostPort(n.srv.Listener.Addr().String())
	return n
}

func (n *fakeNode) authority() string { return "https://127.0.0.1:" + n.port }
func (n *fakeNode) url() string       { return "https://contoso.managedhsm.localhost:" + n.port }

func (n *fakeNode) handle(route string, h http.HandlerFunc) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.routes[route] = h
}

func (n *fakeNode) requests() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.log...)
}

func (n *fakeNode) serve(w http.ResponseWriter, r *http.Request) {
	base := "/" + fakeTenant
	switch r.URL.Path {
	case base + "/v2.0/.well-known/openid-configuration":
		iss := n.authority() + base
		writeTestJSON(w, 200, map[string]any{"issuer": iss + "/v2.0", "authorization_endpoint": iss + "/oauth2/v2.0/authorize",
			"token_endpoint": iss + "/oauth2/v2.0/token", "jwks_uri": iss + "/discovery/v2.0/keys"})
		return
	case base + "/oauth2/v2.0/token":
		if err := r.ParseForm(); err != nil || r.PostForm.Get("client_secret") != fakeSecret ||
			!strings.HasPrefix(r.PostForm.Get("scope"), "https://managedhsm.localhost:"+n.port+"/.default") {
			writeTestJSON(w, 401, map[string]any{"error": "invalid_client", "error_description": "wrong secret or scope"})
			return
		}
		writeTestJSON(w, 200, map[string]any{"token_type": "Bearer", "expires_in": 3599, "access_token": fakeToken})
		return
	}
	_, _ = io.Copy(io.Discard, r.Body)
	if r.Header.Get("Authorization") != "Bearer "+fakeToken {
		w.Header().Set("WWW-Authenticate", `Bearer authorization="`+n.authority()+base+`", resource="https://managedhsm.localhost:`+n.port+`"`)
		writeTestJSON(w, 401, map[string]any{"error": map[string]string{"code": "Unauthorized", "message": "AKV10000: Request is missing a Bearer or PoP token."}})
		return
	}
	n.mu.Lock()
	h := n.routes[r.Method+" "+r.URL.Path]
	n.log = append(n.log, r.Method+" "+r.URL.RequestURI())
	n.mu.Unlock()
	if h == nil {
		writeTestJSON(w, 404, map[string]any{"error": map[string]string{"code": "NotFound", "message": "no route " + r.URL.Path}})
		return
	}
	h(w, r)
}

func writeTestJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// fakeTLS makes a CA and, from it, a server certificate for *.managedhsm.localhost and 127.0.0.1; it returns the
// CA's PEM.
func fakeTLS(t *testing.T) ([]byte, tls.Certificate) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "fake pool CA"}, NotBefore: now.Add(-time.Hour),
		NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "managedhsm.localhost"},
		DNSNames: []string{"managedhsm.localhost", "*.managedhsm.localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: key}
}
