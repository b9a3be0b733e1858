package test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"github.com/hsmpool/hsmpool/internal/nodejoin"
	"github.com/hsmpool/hsmpool/pkg/client"
)

// The cluster harness runs a pool of n real hsmpoold processes on loopback, each with its own
// data directory and SoftHSM2 token: node 1 is "hsmpoold dev --node-addr", activated; every
// other node joins with "hsmpoold dev --join" through a node the test chooses (some through a
// follower), and the security officer of that node trusts its join key with
// "hsmpoold trust-join-key", as an operator would. Nodes can be stopped, killed with SIGKILL,
// paused with SIGSTOP and restarted on their data directories.

// testCluster is a running pool of several nodes.
type testCluster struct {
	t     *testing.T
	nodes []*clusterNode // nodes[0] is node 1
	// token is one access token, from node 1's issuer, sent to every node by the raw clients.
	token string
}

// clusterNode is one hsmpoold process of a testCluster and what it takes to run it again.
type clusterNode struct {
	c      *testCluster
	n      int    // 1-based position in the cluster
	id     string // Raft node ID
	dir    string
	listen string // HTTPS host:port
	raft   string // Raft host:port
	node   string // node API host:port
	env    []string
	soPIN  string   // file holding the SO PIN of its token
	args   []string // the command line that (re)starts it on its data directory
	// The running process, nil when stopped or killed.
	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan error
	stderr *lockedBuffer
	paused bool
	// pool holds the SDK clients and the raw request helper pointed at this node.
	pool *testPool
	// rest sends raw requests with the cluster's one token, without retries.
	rest *restClient
}

// lockedBuffer is a bytes.Buffer a child process writes to while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// clusterPorts hands out loopback ports for nodes: three consecutive ones (HTTPS, Raft, node
// API, the defaults of "dev --join"), chosen below the kernel's ephemeral range (32768 and up on
// Linux). A port picked by binding port 0 comes from that range, where any process's outgoing
// connection may take it before the daemon binds it; below it only listeners compete.
var clusterPorts struct {
	mu   sync.Mutex
	used map[int]bool
}

func freeTriple(t *testing.T) (listen, raft, node string) {
	t.Helper()
	clusterPorts.mu.Lock()
	defer clusterPorts.mu.Unlock()
	if clusterPorts.used == nil {
		clusterPorts.used = map[int]bool{}
	}
	for range 200 {
		base := 20000 + 3*rand.IntN(4000)
		if clusterPorts.used[base] {
			continue
		}
		free := true
		for p := base; p < base+3 && free; p++ {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
			if err != nil {
				free = false
				continue
			}
			l.Close()
		}
		if free {
			clusterPorts.used[base] = true
			a := func(p int) string { return "127.0.0.1:" + strconv.Itoa(p) }
			return a(base), a(base + 1), a(base + 2)
		}
	}
	t.Fatal("no three consecutive free ports below 32000")
	return "", "", ""
}

// startCluster starts an n-node pool. Node k (k ≥ 2) joins through node joinVia(k) (1-based);
// nil joins every node through node 1.
func startCluster(t *testing.T, n int, joinVia func(k int) int) *testCluster {
	t.Helper()
	requireSoftHSM(t)
	c := &testCluster{t: t}
	t.Cleanup(c.stopAll)
	start := time.Now()
	c.startFirst()
	for k := 2; k <= n; k++ {
		via := 1
		if joinVia != nil {
			via = joinVia(k)
		}
		c.join(k, c.nodes[via-1])
	}
	t.Logf("%d nodes started and joined in %v", n, time.Since(start).Round(time.Millisecond))
	c.waitConverged(30 * time.Second)
	return c
}

// startFirst starts node 1: a dev pool with a node API, activated.
func (c *testCluster) startFirst() {
	t := c.t
	for attempt := 1; ; attempt++ {
		listen, raft, node := freeTriple(t)
		nd := &clusterNode{c: c, n: 1, dir: filepath.Join(t.TempDir(), "node1"), listen: listen, raft: raft, node: node}
		nd.soPIN = filepath.Join(nd.dir, "softhsm", "so.pin")
		// dev takes the Raft port next to --listen.
		nd.args = []string{"dev", "--data-dir", nd.dir, "--listen", listen, "--node-addr", node}
		err := nd.launch(60 * time.Second)
		if err != nil && attempt < 3 && strings.Contains(err.Error(), "address already in use") {
			t.Logf("node 1: %v; again on other ports", err)
			continue
		}
		if err != nil {
			t.Fatalf("node 1: %v", err)
		}
		c.nodes = append(c.nodes, nd)
		break
	}
	nd := c.nodes[0]
	nd.connect(filepath.Join(nd.dir, "client.json"))
	nd.pool.activate()
	c.token = nd.pool.token()
	nd.rest = &restClient{url: nd.pool.client.URL, hc: nd.pool.http, token: c.token}
	nd.id = nd.readyz().NodeID
	if nd.id == "" {
		t.Fatal("node 1's /readyz names no node ID")
	}
}

// join starts node k with its own token and data directory, joining through via.
func (c *testCluster) join(k int, via *clusterNode) *clusterNode {
	t := c.t
	t.Helper()
	listen, raft, node := freeTriple(t)
	nd := &clusterNode{c: c, n: k, id: fmt.Sprintf("node-%d", k), dir: filepath.Join(t.TempDir(), fmt.Sprintf("node%d", k)),
		listen: listen, raft: raft, node: node}
	nd.soPIN = filepath.Join(nd.dir, "softhsm", "so.pin")
	tokenFile := c.joinToken(via)
	nd.args = []string{"dev", "--join", via.node, "--join-token-file", tokenFile, "--data-dir", nd.dir,
		"--listen", listen, "--raft-addr", raft, "--node-addr", node, "--node-id", nd.id}
	start := time.Now()
	trusted := trustJoin(t, via, nd.id, 90*time.Second)
	if err := nd.launch(90 * time.Second); err != nil {
		t.Fatalf("node %d joining through node %d: %v", k, via.n, err)
	}
	if err := <-trusted; err != nil {
		t.Fatalf("node %d: %v", k, err)
	}
	c.nodes = append(c.nodes, nd)
	clientPath := filepath.Join(t.TempDir(), fmt.Sprintf("client%d.json", k))
	writeClientFor(t, filepath.Join(c.nodes[0].dir, "client.json"), clientPath, listen)
	nd.connect(clientPath)
	nd.rest = &restClient{url: nd.pool.client.URL, hc: nd.pool.http, token: c.token}
	// The administrator's one token (node 1's issuer) must work here too.
	if st, body, err := nd.rest.do(context.Background(), http.MethodGet, "/keys?api-version=7.4", nil); err != nil || st != http.StatusOK {
		t.Fatalf("node %d refuses node 1's access token: %d %s %v", k, st, body, err)
	}
	t.Logf("node %d (%s) joined through node %d in %v", k, nd.id, via.n, time.Since(start).Round(time.Millisecond))
	return nd
}

// joinToken makes a join token through via's REST API (a write: forwarded when via follows).
func (c *testCluster) joinToken(via *clusterNode) string {
	t := c.t
	t.Helper()
	var st int
	var body []byte
	var err error
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		st, body, err = via.rest.do(context.Background(), http.MethodPost, "/cluster/join-tokens?api-version=2025-07-01", strings.NewReader("{}"))
		if err == nil && st == http.StatusCreated {
			break
		}
	}
	if err != nil || st != http.StatusCreated {
		t.Fatalf("POST /cluster/join-tokens on node %d: %d %s %v", via.n, st, body, err)
	}
	var out struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "join.token")
	if err := os.WriteFile(f, []byte(out.Token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// trustJoin waits for the offer of node id in src's data directory and trusts its join key as
// src's security officer. Unlike trustWhenPending it waits for that node's offer, since offers of
// earlier joins stay in the directory.
func trustJoin(t *testing.T, src *clusterNode, id string, deadline time.Duration) <-chan error {
	bin := hsmpooldBinary(t)
	done := make(chan error, 1)
	go func() {
		f := filepath.Join(src.dir, "joins", hex.EncodeToString([]byte(id))+".pem")
		for end := time.Now().Add(deadline); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
			b, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			blk, _ := pem.Decode(b)
			if blk == nil {
				continue
			}
			offer, err := nodejoin.ParseOffer(blk.Bytes)
			if err != nil {
				done <- err
				return
			}
			fp := offer.Fingerprint()
			out, err := exec.Command(bin, "trust-join-key", "--config", filepath.Join(src.dir, "hsmpoold.json"),
				"--so-pin-file", src.soPIN, "--fingerprint", hex.EncodeToString(fp[:])).CombinedOutput()
			if err != nil {
				done <- fmt.Errorf("trust-join-key on node %d: %v\n%s", src.n, err, out)
			} else {
				done <- nil
			}
			return
		}
		done <- fmt.Errorf("no join offer of %s appeared on node %d", id, src.n)
	}()
	return done
}

// launch starts the node's process with its args and waits for its "serving on" line.
func (nd *clusterNode) launch(wait time.Duration) error {
	t := nd.c.t
	cmd := exec.Command(hsmpooldBinary(t), nd.args...)
	cmd.Env = append(os.Environ(), nd.env...)
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
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
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case line, ok := <-ready:
		if !ok || !strings.Contains(line, "serving on") {
			cmd.Process.Kill()
			<-done
			return fmt.Errorf("hsmpoold %s did not start: %q\n%s", strings.Join(nd.args, " "), line, stderr)
		}
	case <-time.After(wait):
		cmd.Process.Kill()
		<-done
		return fmt.Errorf("hsmpoold %s did not start within %v\n%s", strings.Join(nd.args, " "), wait, stderr)
	}
	nd.mu.Lock()
	nd.cmd, nd.done, nd.stderr, nd.paused = cmd, done, stderr, false
	nd.mu.Unlock()
	return nil
}

// connect makes the SDK clients for the node from a client file pointed at it.
func (nd *clusterNode) connect(clientPath string) {
	t := nd.c.t
	t.Helper()
	p := &testPool{t: t, dir: nd.dir, listen: nd.listen, clientPath: clientPath}
	var err error
	if p.client, err = client.ReadFile(clientPath); err != nil {
		t.Fatal(err)
	}
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
	nd.pool = p
}

// up reports whether the node runs and is not paused.
func (nd *clusterNode) up() bool {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	return nd.cmd != nil && !nd.paused
}

// stop sends SIGTERM and waits for a clean exit.
func (nd *clusterNode) stop() {
	t := nd.c.t
	nd.mu.Lock()
	cmd, done, paused := nd.cmd, nd.done, nd.paused
	nd.cmd = nil
	nd.mu.Unlock()
	if cmd == nil {
		return
	}
	if paused {
		cmd.Process.Signal(syscall.SIGCONT)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("node %d exited with %v after SIGTERM\n%s", nd.n, err, nd.stderr)
		}
	case <-time.After(40 * time.Second):
		// SIGQUIT makes the Go runtime print every goroutine's stack: what the daemon waits for.
		before := len(nd.stderr.String())
		cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		all := nd.stderr.String()
		saved := "(not saved)"
		if f, err := os.CreateTemp("", fmt.Sprintf("hsmpoold-node%d-stuck-*.log", nd.n)); err == nil {
			f.WriteString(all)
			f.Close()
			saved = f.Name()
		}
		dump := all[before:]
		if len(dump) > 12000 {
			dump = dump[:12000] + "\n..."
		}
		t.Errorf("node %d did not stop within 40 s of SIGTERM; its stderr is in %s; the goroutines after SIGQUIT:\n%s", nd.n, saved, dump)
	}
}

// kill ends the node's process with SIGKILL.
func (nd *clusterNode) kill() {
	nd.mu.Lock()
	cmd, done := nd.cmd, nd.done
	nd.cmd = nil
	nd.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Kill()
	<-done
}

// waitExit waits for the node's process to end by itself; it is an error when it does not within
// d (it is then killed) or exits other than 0.
func (nd *clusterNode) waitExit(d time.Duration) error {
	nd.mu.Lock()
	cmd, done := nd.cmd, nd.done
	nd.cmd = nil
	nd.mu.Unlock()
	if cmd == nil {
		return errors.New("not running")
	}
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("exited with %v\n%s", err, nd.stderr)
		}
		return nil
	case <-time.After(d):
		cmd.Process.Kill()
		<-done
		return fmt.Errorf("still ran %v later\n%s", d, nd.stderr)
	}
}

// pause stops the node's process with SIGSTOP; resume continues it.
func (nd *clusterNode) pause() {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.cmd != nil && !nd.paused {
		nd.cmd.Process.Signal(syscall.SIGSTOP)
		nd.paused = true
	}
}

func (nd *clusterNode) resume() {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.cmd != nil && nd.paused {
		nd.cmd.Process.Signal(syscall.SIGCONT)
		nd.paused = false
	}
}

// restart starts the node again on its data directory (after stop or kill).
func (nd *clusterNode) restart() {
	t := nd.c.t
	t.Helper()
	if err := nd.launch(60 * time.Second); err != nil {
		t.Fatalf("node %d again on its data directory: %v", nd.n, err)
	}
}

// stopAll stops every node still running, all at once. When the test failed it first logs the
// end of each node's stderr.
func (c *testCluster) stopAll() {
	if c.t.Failed() {
		for _, nd := range c.nodes {
			nd.mu.Lock()
			log := ""
			if nd.stderr != nil {
				log = nd.stderr.String()
			}
			nd.mu.Unlock()
			if len(log) > 6000 {
				log = "..." + log[len(log)-6000:]
			}
			c.t.Logf("node %d (%s) stderr:\n%s", nd.n, nd.id, log)
		}
	}
	var wg sync.WaitGroup
	for _, nd := range c.nodes {
		wg.Go(nd.stop)
	}
	wg.Wait()
}

// readyzState is what /readyz says about a node.
type readyzState struct {
	Ready        bool   `json:"ready"`
	NodeID       string `json:"nodeId"`
	RaftState    string `json:"raftState"`
	AppliedIndex uint64 `json:"appliedIndex"`
	Keys         int    `json:"keys"`
}

// readyz asks the node's /readyz (no token); the zero value when it does not answer.
func (nd *clusterNode) readyz() readyzState {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, body, err := nd.rest.withToken("").do(ctx, http.MethodGet, "/readyz", nil)
	var r readyzState
	if err == nil {
		json.Unmarshal(body, &r)
	}
	return r
}

// leader returns the one node that runs unpaused and says it leads, or nil.
func (c *testCluster) leader() *clusterNode {
	var found *clusterNode
	for _, nd := range c.nodes {
		if !nd.up() {
			continue
		}
		if strings.EqualFold(nd.readyz().RaftState, "leader") {
			if found != nil {
				return nil
			}
			found = nd
		}
	}
	return found
}

// waitLeader waits until one running node leads and every other running node follows.
func (c *testCluster) waitLeader(within time.Duration) *clusterNode {
	t := c.t
	t.Helper()
	end := time.Now().Add(within)
	for {
		if l := c.leader(); l != nil {
			ok := true
			for _, nd := range c.nodes {
				if nd != l && nd.up() && !strings.EqualFold(nd.readyz().RaftState, "follower") {
					ok = false
				}
			}
			if ok {
				return l
			}
		}
		if time.Now().After(end) {
			t.Fatalf("no leader followed by every running node within %v", within)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitConverged waits until every running node has applied the same index and keeps it for a
// moment (no write is on the way).
func (c *testCluster) waitConverged(within time.Duration) {
	t := c.t
	t.Helper()
	end := time.Now().Add(within)
	var last []uint64
	stable := 0
	for {
		var idx []uint64
		same := true
		for _, nd := range c.nodes {
			if !nd.up() {
				continue
			}
			r := nd.readyz()
			if !r.Ready {
				same = false
			}
			idx = append(idx, r.AppliedIndex)
			if idx[0] != r.AppliedIndex {
				same = false
			}
		}
		if same && slicesEqual(idx, last) {
			stable++
		} else {
			stable = 0
		}
		if stable >= 3 {
			return
		}
		last = idx
		if time.Now().After(end) {
			t.Fatalf("the nodes did not converge within %v: applied indexes %v", within, idx)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func slicesEqual(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// restClient sends raw REST requests to one node: one attempt each, no SDK, a bearer token.
type restClient struct {
	url   string
	hc    *http.Client
	token string
}

func (r *restClient) withToken(tok string) *restClient {
	c := *r
	c.token = tok
	return &c
}

// do sends one request and returns the status and body; err is a transport error (no answer).
func (r *restClient) do(ctx context.Context, method, path string, body io.Reader) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, r.url+path, body)
	if err != nil {
		return 0, nil, err
	}
	if r.token != "" {
		req.Header.Set("Authorization", "Bearer "+r.token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := r.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, b, err
	}
	return resp.StatusCode, b, nil
}

// doJSON sends v as JSON.
func (r *restClient) doJSON(ctx context.Context, method, path string, v any) (int, []byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return 0, nil, err
	}
	return r.do(ctx, method, path, bytes.NewReader(b))
}

// keyNames lists the names under path ("/keys" or "/deletedkeys") on the node, following nextLink.
func (r *restClient) keyNames(ctx context.Context, path string) ([]string, error) {
	var names []string
	next := path + "?api-version=7.4&maxresults=25"
	for next != "" {
		st, body, err := r.do(ctx, http.MethodGet, next, nil)
		if err != nil {
			return nil, err
		}
		if st != http.StatusOK {
			return nil, fmt.Errorf("GET %s: %d %s", next, st, body)
		}
		var page struct {
			Value []struct {
				KID        string `json:"kid"`
				RecoveryID string `json:"recoveryId"`
			} `json:"value"`
			NextLink string `json:"nextLink"`
		}
		if err := json.Unmarshal(body, &page); err != nil {
			return nil, err
		}
		for _, v := range page.Value {
			names = append(names, keyNameOf(v.KID))
		}
		next = ""
		if page.NextLink != "" {
			u, err := url.Parse(page.NextLink)
			if err != nil {
				return nil, err
			}
			next = u.RequestURI()
		}
	}
	return names, nil
}

// keyNameOf is the name in a kid, https://host/keys/NAME[/VERSION].
func keyNameOf(kid string) string {
	u, err := url.Parse(kid)
	if err != nil {
		return kid
	}
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	if len(parts) >= 2 {
		return parts[1]
	}
	return kid
}
