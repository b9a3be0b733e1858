package main

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hsmpool/hsmpool/pkg/client"
)

// fakeNode is a TLS server that answers creates and signs with a kid and a value, and counts the requests that
// carried its token.
type fakeNode struct {
	srv   *httptest.Server
	token string
	good  atomic.Int64
	down  atomic.Bool // answer 503, as a node without a leader does
}

func newFakeNode(t *testing.T, token string) *fakeNode {
	n := &fakeNode{token: token}
	n.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		switch {
		case r.Header.Get("Authorization") != "Bearer "+n.token:
			http.Error(w, `{"error":{"code":"Unauthorized","message":"wrong token"}}`, http.StatusUnauthorized)
		case n.down.Load():
			w.Header().Set("Retry-After", "1")
			http.Error(w, `{"error":{"code":"ServiceUnavailable","message":"no leader"}}`, http.StatusServiceUnavailable)
		default:
			n.good.Add(1)
			_, _ = io.WriteString(w, `{"kid":"https://x/keys/k/v","value":"AAAA"}`)
		}
	}))
	n.srv.EnableHTTP2 = true
	n.srv.StartTLS()
	t.Cleanup(n.srv.Close)
	return n
}

// caFile writes the certificate of the httptest servers (the same for all of them) to a file.
func caFile(t *testing.T, n *fakeNode) string {
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: n.srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return ca
}

// TestRunOnceSpreadsOverNodes shows that the clients go round-robin over the nodes, each with that node's token.
func TestRunOnceSpreadsOverNodes(t *testing.T) {
	a, b := newFakeNode(t, "tok-a"), newFakeNode(t, "tok-b")
	f := &client.File{CAFile: caFile(t, a)}
	tgt := target{op: opCreateAES256, body: []byte(`{"kty":"oct-HSM","key_size":256}`), field: "kid",
		path: func(worker, seq int) string { return keyPath("load-ca-x-"+string(rune('0'+worker)), "create") }}
	for _, http1 := range []bool{false, true} {
		a.good.Store(0)
		b.good.Store(0)
		w := window{clients: 4, duration: 200 * time.Millisecond}
		r, shown, err := runOnce(context.Background(), f, []string{a.srv.URL, b.srv.URL}, []string{"tok-a", "tok-b"}, tgt, w, http1)
		if err != nil {
			t.Fatal(err)
		}
		if r.Errors != 0 || len(shown) != 0 || r.Nodes != 2 || r.Op != "create-aes256" {
			t.Errorf("http1=%v: result %+v, shown %v", http1, r, shown)
		}
		if a.good.Load() == 0 || b.good.Load() == 0 {
			t.Errorf("http1=%v: node a answered %d, node b %d; want both used", http1, a.good.Load(), b.good.Load())
		}
	}
	// One client and two nodes: only the first node is used, and the result says one node.
	a.good.Store(0)
	b.good.Store(0)
	r, _, err := runOnce(context.Background(), f, []string{a.srv.URL, b.srv.URL}, []string{"tok-a", "tok-b"}, tgt,
		window{clients: 1, duration: 100 * time.Millisecond}, false)
	if err != nil || r.Nodes != 1 || b.good.Load() != 0 || a.good.Load() == 0 {
		t.Errorf("one client: %+v, %v; a %d, b %d", r, err, a.good.Load(), b.good.Load())
	}
	if _, _, err := runOnce(context.Background(), f, []string{a.srv.URL}, nil, tgt, window{clients: 1, duration: time.Second}, false); err == nil {
		t.Error("runOnce accepted a node without a token")
	}
}

// TestProbeNodeWaitsForReplication shows that a node that does not have the key yet is asked again, and that other
// errors end the probe at once.
func TestProbeNodeWaitsForReplication(t *testing.T) {
	var calls, missing atomic.Int64
	var status atomic.Int64
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if missing.Add(-1) >= 0 {
			http.Error(w, `{"error":{"code":"KeyNotFound","message":"no such key"}}`, http.StatusNotFound)
			return
		}
		if s := status.Load(); s != 0 {
			http.Error(w, `{"error":{"code":"Forbidden","message":"no"}}`, int(s))
			return
		}
		_, _ = io.WriteString(w, `{}`)
	}))
	defer srv.Close()
	s := &session{base: srv.URL, hc: srv.Client(), token: "tok"}
	tgt := target{probe: func(ctx context.Context, s *session) error {
		return s.call(ctx, http.MethodGet, keyPath("k"), nil, nil)
	}}

	missing.Store(3)
	if err := probeNode(context.Background(), tgt, s, 10*time.Second); err != nil || calls.Load() != 4 {
		t.Errorf("after 3 answers 404: %v, %d calls; want success at the 4th", err, calls.Load())
	}

	calls.Store(0)
	missing.Store(1 << 30)
	var ae *answerError
	if err := probeNode(context.Background(), tgt, s, 200*time.Millisecond); !errors.As(err, &ae) || ae.Status != http.StatusNotFound || calls.Load() < 2 {
		t.Errorf("always 404: %v after %d calls; want the 404 after several", err, calls.Load())
	}

	calls.Store(0)
	missing.Store(0)
	status.Store(http.StatusForbidden)
	if err := probeNode(context.Background(), tgt, s, 10*time.Second); !errors.As(err, &ae) || ae.Status != http.StatusForbidden || calls.Load() != 1 {
		t.Errorf("403: %v after %d calls; want it at once", err, calls.Load())
	}
}

func TestReadMarks(t *testing.T) {
	got, err := readMarks(strings.NewReader("1700000000000000000 leader node-1\n\n  1700000001000000000\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []mark{{at: 1700000000000000000, label: "leader node-1"}, {at: 1700000001000000000}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("readMarks = %+v, want %+v", got, want)
	}
	for _, bad := range []string{"12.5\n", "x leader\n", "-3\n", "1\n0\n"} {
		if _, err := readMarks(strings.NewReader(bad)); err == nil || !strings.Contains(err.Error(), "Unix nanoseconds") {
			t.Errorf("readMarks(%q) = %v, want an error", bad, err)
		}
	}
}

func TestReportMarks(t *testing.T) {
	const ms = int64(time.Millisecond)
	acks := []ack{
		{start: 0, end: 5 * ms, node: 0},
		{start: 90 * ms, end: 400 * ms, node: 1},  // in flight across the mark at 100 ms, answered late
		{start: 150 * ms, end: 600 * ms, node: 0}, // the first to start after the mark, not the first to end
		{start: 300 * ms, end: 350 * ms, node: 2}, // started after the mark and ended first: the recovery
		{start: 900 * ms, end: 901 * ms, node: 1},
	}
	failures := []int64{50 * ms, 120 * ms, 200 * ms, 360 * ms}
	nodes := []string{"https://a", "https://b", "https://c"}
	got := reportMarks(acks, failures, []mark{{at: 100 * ms, label: "kill"}, {at: 2000 * ms, label: "late"}}, nodes)
	if len(got) != 2 {
		t.Fatalf("%d reports, want 2", len(got))
	}
	want := markReport{Mark: 100 * ms, Label: "kill", RecoveryMs: 250, FirstAckMs: 250, Failed: 2, Node: "https://c"}
	if got[0] != want {
		t.Errorf("report = %+v\nwant     %+v", got[0], want)
	}
	if got[1].RecoveryMs != -1 || got[1].FirstAckMs != -1 || got[1].Node != "" {
		t.Errorf("a mark after the last write: %+v", got[1])
	}
	// An acknowledgement that ends after the mark, of a write sent before it, is the first ack but not the recovery.
	got = reportMarks([]ack{{start: 0, end: 200 * ms}, {start: 150 * ms, end: 300 * ms}}, nil, []mark{{at: 100 * ms}}, nodes)
	if got[0].FirstAckMs != 100 || got[0].RecoveryMs != 200 {
		t.Errorf("in-flight write: %+v; want first ack 100 ms, recovery 200 ms", got[0])
	}
}

func TestLongestGap(t *testing.T) {
	acks := []ack{{end: 30}, {end: 10}, {end: 100}}
	if got := longestGap(acks, 0, 120); got != 70 {
		t.Errorf("longestGap = %v, want 70ns", got)
	}
	if got := longestGap(nil, 5, 65); got != 60 {
		t.Errorf("longestGap without acks = %v, want the whole run", got)
	}
}

// TestWriteUntil takes a node down for a while and shows that the writers keep writing through it and the other
// nodes, that writes through an unreachable node fail, and that the mark's recovery covers the time it was down.
func TestWriteUntil(t *testing.T) {
	a, b := newFakeNode(t, "tok"), newFakeNode(t, "tok")
	gone := httptest.NewTLSServer(http.NotFoundHandler())
	gone.Close() // a node killed: connections are refused
	tr, err := newTransport(caFile(t, a), 4, false)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.CloseIdleConnections()
	tgt := target{op: opCreateAES256, body: []byte(`{}`), field: "kid", path: func(w, s int) string { return keyPath("k", "create") }}

	var markAt atomic.Int64
	go func() {
		time.Sleep(150 * time.Millisecond)
		a.down.Store(true)
		b.down.Store(true)
		markAt.Store(time.Now().UnixNano())
		time.Sleep(250 * time.Millisecond)
		a.down.Store(false)
		b.down.Store(false)
	}()
	var stderr bytes.Buffer
	bases := []string{a.srv.URL, b.srv.URL, gone.URL}
	acks, failures, from, to := writeUntil(context.Background(), tr, bases, []string{"tok", "tok", "tok"}, tgt, 2, 800*time.Millisecond, time.Second, &stderr)
	if time.Duration(to-from) < 800*time.Millisecond {
		t.Errorf("the run took %v, want its duration", time.Duration(to-from))
	}
	for _, k := range acks {
		if k.node == 2 || k.end < k.start {
			t.Fatalf("ack %+v: through the unreachable node, or ends before it starts", k)
		}
	}
	if len(acks) == 0 || len(failures) == 0 || !strings.Contains(stderr.String(), "failed") {
		t.Fatalf("%d acks, %d failures, stderr %q", len(acks), len(failures), stderr.String())
	}
	r := reportMarks(acks, failures, []mark{{at: markAt.Load(), label: "down"}}, bases)[0]
	if r.RecoveryMs < 240 || r.RecoveryMs > 5000 || r.Failed == 0 || r.Node == gone.URL || r.Node == "" {
		t.Errorf("report %+v: want a recovery of about 250 ms through a or b, after failures", r)
	}
}

func TestFailoverValidate(t *testing.T) {
	for _, tc := range []struct {
		edit    func(o *failoverOptions)
		wantErr string
	}{
		{edit: func(o *failoverOptions) {}},
		{edit: func(o *failoverOptions) { o.Writers = 0 }, wantErr: "--writers 0"},
		{edit: func(o *failoverOptions) { o.Duration = time.Millisecond }, wantErr: "--duration"},
		{edit: func(o *failoverOptions) { o.Timeout = 0 }, wantErr: "--timeout"},
		{edit: func(o *failoverOptions) { o.Output = "xml" }, wantErr: "-o"},
		{edit: func(o *failoverOptions) { o.URLs = []string{"http://a.managedhsm.localhost"} }, wantErr: "--url"},
	} {
		o := defaultFailoverOptions()
		tc.edit(o)
		if err := o.validate(); (tc.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("validate() = %v, want %q", err, tc.wantErr)
		}
	}
}

func TestCatchupValidate(t *testing.T) {
	for _, tc := range []struct {
		edit    func(o *catchupOptions)
		wantErr string
	}{
		{edit: func(o *catchupOptions) { o.Node = "node-3" }},
		{edit: func(o *catchupOptions) {}, wantErr: "--node is required"},
		{edit: func(o *catchupOptions) { o.Node = "n"; o.Since = -1 }, wantErr: "--since"},
		{edit: func(o *catchupOptions) { o.Node = "n"; o.Interval = 0 }, wantErr: "--interval"},
		{edit: func(o *catchupOptions) { o.Node = "n"; o.Timeout = 0 }, wantErr: "--timeout"},
		{edit: func(o *catchupOptions) { o.Node = "n"; o.URL = "https://127.0.0.1:1" }, wantErr: "--url"},
	} {
		o := defaultCatchupOptions()
		tc.edit(o)
		if err := o.validate(); (tc.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("validate() = %v, want %q", err, tc.wantErr)
		}
	}
}

// TestCatchupObserve follows a node through status answers: unreachable, reachable and behind, caught up. The
// target is the leader's commit index in the first answer that names a leader, and does not move with it.
func TestCatchupObserve(t *testing.T) {
	since := time.Unix(1000, 0)
	c := &catchup{node: "node-3", since: since}
	status := func(leader string, leaderCommit, applied uint64, reachable bool) clusterStatus {
		var s clusterStatus
		s.LeaderID = leader
		s.Nodes = append(s.Nodes, struct {
			NodeID       string `json:"nodeId"`
			CommitIndex  uint64 `json:"commitIndex"`
			AppliedIndex uint64 `json:"appliedIndex"`
			Reachable    bool   `json:"reachable"`
		}{"node-1", leaderCommit, leaderCommit, true}, struct {
			NodeID       string `json:"nodeId"`
			CommitIndex  uint64 `json:"commitIndex"`
			AppliedIndex uint64 `json:"appliedIndex"`
			Reachable    bool   `json:"reachable"`
		}{"node-3", 0, applied, reachable})
		return s
	}
	steps := []struct {
		s    clusterStatus
		at   time.Duration
		done bool
	}{
		{status("", 0, 0, false), 100 * time.Millisecond, false},            // no leader yet: no target
		{status("node-1", 10_000, 0, false), 200 * time.Millisecond, false}, // target 10,000
		{status("node-1", 10_005, 4_000, true), 1500 * time.Millisecond, false},
		{status("node-1", 10_007, 10_000, true), 2500 * time.Millisecond, true},
	}
	for i, st := range steps {
		if done := c.observe(st.s, since.Add(st.at)); done != st.done {
			t.Fatalf("step %d: done = %v, want %v", i, done, st.done)
		}
	}
	if c.target != 10_000 || c.reachable != 1500*time.Millisecond || c.caughtUp != 2500*time.Millisecond || c.polls != 4 {
		t.Errorf("catchup = %+v", c)
	}
	// With --node-url: the target from another node's answer, the progress from the node's own answers, which may
	// name no leader yet (it has just started) or a newer commit index.
	c = &catchup{node: "node-3", since: since}
	c.setTarget(status("node-1", 500, 0, false))
	if c.observe(status("", 0, 400, true), since.Add(time.Second)) || c.target != 500 || c.reachable != time.Second {
		t.Fatalf("the node's first own answer: %+v", c)
	}
	if !c.observe(status("node-1", 600, 500, true), since.Add(2*time.Second)) || c.caughtUp != 2*time.Second || c.polls != 3 {
		t.Errorf("the node at the target: %+v", c)
	}
	// The node that catches up is never its own target's source.
	c = &catchup{node: "node-1", since: since}
	if c.observe(status("node-1", 50, 50, true), since.Add(time.Second)) || c.target != 0 {
		t.Errorf("a node that leads set its own target: %+v", c)
	}
}

// TestMeasureRequests shows that --requests ends a run after exactly that many successes, failures not counted, and
// that the run's time is then the time they took.
func TestMeasureRequests(t *testing.T) {
	var calls atomic.Int64
	do := func(ctx context.Context, worker, seq int) error {
		time.Sleep(time.Millisecond)
		if calls.Add(1)%5 == 0 {
			return errors.New("failed")
		}
		return nil
	}
	start := time.Now()
	s := measure(context.Background(), window{clients: 3, duration: time.Minute, requests: 50}, do)
	if took := time.Since(start); took > 30*time.Second {
		t.Fatalf("the run took %v, want it to end after 50 requests", took)
	}
	if len(s.latencies) != 50 || s.errors == 0 || s.elapsed <= 0 || s.elapsed >= time.Minute {
		t.Errorf("%d latencies, %d errors, elapsed %v; want 50, some, less than the duration", len(s.latencies), s.errors, s.elapsed)
	}
}
