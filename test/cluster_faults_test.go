package test

import (
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// TestCluster5Faults runs a pool of five real processes under a stream of concurrent key
// creates, deletes, purges, recoveries and PATCHes sent with raw HTTP to all nodes, one attempt
// each, and records every operation's call and return time and result. During the stream the
// leader is killed with SIGKILL (and later started again on its data directory), then a minority
// of two nodes, the new leader among them, is stopped with SIGSTOP for a few seconds while the
// writes go on through the majority. Afterwards: a new leader was elected each time; all nodes
// hold the same keys; every key listed on any node works there (get and a signature that
// verifies), so nothing unacknowledged is half-made; every acknowledged create of a key never
// deleted is on every node at the version it answered, and could be read at once through the
// node that created it; and the history of writes is linearizable (porcupine) against a model of
// each key name: absent, active or deleted, and its current version, which the answers of
// creates and PATCHes name.
//
// Only writes are checked for linearizability: a node serves reads from its own replicated state,
// which may lag behind the leader (like etcd's serializable reads), so a read through a follower
// is not linearizable and is not part of the checked history. The final state of each key, read
// once every node has applied the same index, is.
func TestCluster5Faults(t *testing.T) {
	requireTool(t, "softhsm2-util", "softhsm2")
	// Node 3 joins through node 2 and node 5 through node 3, followers both.
	via := map[int]int{2: 1, 3: 2, 4: 1, 5: 3}
	c := startCluster(t, 5, func(k int) int { return via[k] })
	first := c.waitLeader(20 * time.Second)
	t.Logf("node %d (%s) leads", first.n, first.id)

	h := newHistory()
	const workers = 6
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() { h.work(c, w, stop) })
	}
	stopWorkers := sync.OnceFunc(func() {
		close(stop)
		wg.Wait()
	})
	defer stopWorkers() // when a check below ends the test early

	time.Sleep(3 * time.Second)
	killed := c.waitLeader(20 * time.Second)
	killAt := h.now()
	killed.kill()
	t.Logf("killed node %d (%s), the leader, at %v", killed.n, killed.id, killAt)
	next := c.waitLeader(30 * time.Second)
	if next == killed {
		t.Fatal("the killed node leads")
	}
	t.Logf("node %d (%s) leads %v after the kill", next.n, next.id, h.now()-killAt)

	time.Sleep(3 * time.Second)
	killed.restart()
	t.Logf("node %d started again on its data directory", killed.n)
	time.Sleep(2 * time.Second)

	// A minority: the leader and one follower.
	leader := c.waitLeader(30 * time.Second)
	minority := []*clusterNode{leader}
	for _, nd := range c.nodes {
		if nd != leader && len(minority) < 2 {
			minority = append(minority, nd)
		}
	}
	pauseAt := h.now()
	for _, nd := range minority {
		nd.pause()
	}
	t.Logf("SIGSTOP nodes %d (leader) and %d at %v", minority[0].n, minority[1].n, pauseAt)
	majorityLeader := c.waitLeader(30 * time.Second)
	t.Logf("node %d leads the majority %v after the SIGSTOP", majorityLeader.n, h.now()-pauseAt)
	time.Sleep(5 * time.Second)
	resumeAt := h.now()
	for _, nd := range minority {
		nd.resume()
	}
	t.Logf("SIGCONT at %v", resumeAt)
	time.Sleep(3 * time.Second)
	stopWorkers()
	end := h.now()

	c.waitLeader(30 * time.Second)
	c.waitConverged(60 * time.Second)

	ops := h.snapshot()
	counts := map[string]int{}
	for _, o := range ops {
		counts[fmt.Sprintf("%s %s", o.in.op, kvOut{status: o.out.status})]++
	}
	t.Logf("%d operations in %v: %v", len(ops), end, counts)
	t.Logf("unknown outcomes: %v", h.unknowns)
	if h.answerLost > 0 {
		// Not linearizable answers, though the state is: core.DeleteKey and RecoverDeletedKey
		// read their answer from the state after the write, not the record the write made.
		t.Logf("%d deletes or recoveries took effect but answered 404: a write on the same key applied before their answer was read", h.answerLost)
	}
	if h.unexpected.Load() > 0 {
		t.Errorf("%d operations got an answer the model does not allow for any state, or a node did not read its own write (logged above)", h.unexpected.Load())
	}

	// The next acknowledged write after the kill, and writes during the SIGSTOP.
	var failover time.Duration = -1
	duringPause := 0
	for _, o := range ops {
		if !o.out.acked() {
			continue
		}
		if o.call >= killAt && (failover < 0 || o.ret-killAt < failover) {
			failover = o.ret - killAt
		}
		if o.call >= pauseAt && o.ret <= resumeAt {
			duringPause++
		}
	}
	if failover < 0 {
		t.Error("no write was acknowledged after the leader was killed")
	}
	line := fmt.Sprintf("MEASURE failover %v from kill -9 of the leader (node %d) to the next acknowledged write (5 nodes, %d writers)", failover.Round(time.Millisecond), killed.n, workers)
	t.Log(line)
	t.Logf("%d writes were acknowledged while nodes %d and %d were stopped", duringPause, minority[0].n, minority[1].n)
	if duringPause == 0 {
		t.Error("no write was acknowledged through the majority while the minority was stopped")
	}

	final := checkConverged(t, c)
	// Every acknowledged create of a key that is never deleted is there.
	for _, o := range ops {
		if strings.HasPrefix(o.in.key, "u-") && o.out.acked() && final[o.in.key] != (kstate{stateActive, o.out.ver}) {
			t.Errorf("the acknowledged create of %s (through node %d) is not on the nodes", o.in.key, o.node)
		}
	}
	checkLinearizable(t, ops, final, end)
}

// The model's states of a key name.
const (
	stateAbsent = iota
	stateActive
	stateDeleted
)

var stateNames = [...]string{"absent", "active", "deleted"}

// kstate is the state of a key name in the model: absent, active or deleted, and the version
// that is current ("?" after a create whose answer was lost: any version).
type kstate struct {
	st  int
	ver string
}

func (k kstate) String() string {
	if k.st == stateAbsent {
		return "absent"
	}
	return stateNames[k.st] + "@" + short(k.ver)
}

// short is a version ID shortened for the log.
func short(v string) string {
	if len(v) > 6 {
		return v[:6]
	}
	return v
}

// kvIn is an operation on one key name: create, delete, purge, recover, update (PATCH without a
// version: the current version), or the final read.
type kvIn struct {
	op  string
	key string
}

// kvOut is its result: the HTTP status, 0 when unknown (no answer, a timeout, a 5xx), and the
// version the answer names (create and update); the state for a read.
type kvOut struct {
	status int
	ver    string
	state  kstate
}

func (o kvOut) unknown() bool { return o.status == 0 }
func (o kvOut) acked() bool   { return o.status >= 200 && o.status < 300 }
func (o kvOut) String() string {
	switch {
	case o.unknown():
		return "unknown"
	case o.ver != "":
		return fmt.Sprintf("%d @%s", o.status, short(o.ver))
	}
	return fmt.Sprint(o.status)
}

// histOp is one recorded operation; times are since the history began, ret is open
// (math.MaxInt64) when the outcome is unknown.
type histOp struct {
	client    int
	node      int
	in        kvIn
	out       kvOut
	call, ret time.Duration
	detail    string
}

type history struct {
	t0         time.Time
	mu         sync.Mutex
	ops        []histOp
	unknowns   map[string]int
	answerLost int // writes that took effect but answered 404
	unexpected atomic.Int64
	logged     atomic.Int64
}

// countUnknown counts the unknown outcomes by operation, status and error code (or the transport
// error's kind), for the log.
func (h *history) countUnknown(op string, st int, err error, body []byte) {
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	json.Unmarshal(body, &e)
	why := e.Error.Code
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		why = "timeout"
	case err != nil:
		why = "no answer"
	}
	h.mu.Lock()
	if h.unknowns == nil {
		h.unknowns = map[string]int{}
	}
	h.unknowns[fmt.Sprintf("%s %d %s", op, st, why)]++
	h.mu.Unlock()
}

func newHistory() *history { return &history{t0: time.Now()} }

func (h *history) now() time.Duration { return time.Since(h.t0) }

func (h *history) add(o histOp) {
	h.mu.Lock()
	h.ops = append(h.ops, o)
	h.mu.Unlock()
}

func (h *history) snapshot() []histOp {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.ops)
}

// contended are the key names every writer creates, deletes and purges.
var contended = []string{"c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7"}

// work sends one operation at a time to a random running node until stop is closed.
func (h *history) work(c *testCluster, w int, stop <-chan struct{}) {
	rng := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
	unique := 0
	for {
		select {
		case <-stop:
			return
		default:
		}
		var up []*clusterNode
		for _, nd := range c.nodes {
			if nd.up() {
				up = append(up, nd)
			}
		}
		if len(up) == 0 {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		nd := up[rng.IntN(len(up))]
		var in kvIn
		key := contended[rng.IntN(len(contended))]
		switch r := rng.Float64(); {
		case r < 0.15:
			in = kvIn{"create", fmt.Sprintf("u-%d-%d", w, unique)}
			unique++
		case r < 0.5:
			in = kvIn{"create", key}
		case r < 0.75:
			in = kvIn{"delete", key}
		case r < 0.85:
			in = kvIn{"purge", key}
		case r < 0.92:
			in = kvIn{"update", key}
		default:
			in = kvIn{"recover", key}
		}
		out := h.do(c.t, w, nd, in)
		if out.unknown() {
			time.Sleep(100 * time.Millisecond) // a 503 comes back at once while there is no leader
		}
		if strings.HasPrefix(in.key, "u-") && out.acked() {
			h.readOwnWrite(c.t, nd, in.key, out.ver)
		}
		time.Sleep(time.Duration(20+rng.IntN(30)) * time.Millisecond)
	}
}

// readOwnWrite reads a key right after its create was acknowledged, through the node that
// answered: that node must have it at once (read-your-writes on the node called). The key is
// never deleted, so any other answer is counted as an error, unless the node cannot answer at
// all (it may just have been stopped).
func (h *history) readOwnWrite(t *testing.T, nd *clusterNode, key, ver string) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	st, body, err := nd.rest.do(ctx, http.MethodGet, "/keys/"+key+"?api-version=7.4", nil)
	if err != nil {
		return
	}
	if st != http.StatusOK || kidVersion(body) != ver {
		h.unexpected.Add(1)
		if h.logged.Add(1) <= 10 {
			t.Logf("node %d acknowledged the create of %s @%s, then answered a read of it with %d %.200s", nd.n, key, ver, st, body)
		}
	}
}

// do sends one write, one attempt, and records it.
func (h *history) do(t *testing.T, w int, nd *clusterNode, in kvIn) kvOut {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	o := histOp{client: w, node: nd.n, in: in, call: h.now()}
	var st int
	var body []byte
	var err error
	switch in.op {
	case "create":
		st, body, err = nd.rest.doJSON(ctx, http.MethodPost, "/keys/"+in.key+"/create?api-version=7.4", map[string]string{"kty": "EC-HSM", "crv": "P-256"})
	case "delete":
		st, body, err = nd.rest.do(ctx, http.MethodDelete, "/keys/"+in.key+"?api-version=7.4", nil)
	case "purge":
		st, body, err = nd.rest.do(ctx, http.MethodDelete, "/deletedkeys/"+in.key+"?api-version=7.4", nil)
	case "recover":
		st, body, err = nd.rest.do(ctx, http.MethodPost, "/deletedkeys/"+in.key+"/recover?api-version=7.4", nil)
	case "update":
		st, body, err = nd.rest.doJSON(ctx, http.MethodPatch, "/keys/"+in.key+"?api-version=7.4",
			map[string]any{"tags": map[string]string{"by": fmt.Sprintf("client %d at %v", w, o.call)}})
	}
	o.ret = h.now()
	switch {
	case err != nil || st >= 500:
		o.ret = math.MaxInt64
		o.detail = fmt.Sprintf("%d %v %.300s", st, err, body)
		h.countUnknown(in.op, st, err, body)
	default:
		o.out.status = st
		o.detail = fmt.Sprintf("%.200s", body)
		if st == http.StatusOK && (in.op == "create" || in.op == "update") {
			o.out.ver = kidVersion(body)
		}
		// A delete or recovery answers from the state as it reads it after the write applied:
		// a purge, delete or create of the same key applied in between shows there. Such a 404
		// follows a write that took effect: the refusal's 404 has the other message (the state
		// refuses a delete of a key that is not live with KeyNotFound "A key with ... was not
		// found", a recovery of one that is not deleted with "Deleted Key not found"). The
		// version these answers name is not checked for the same reason.
		lost := (in.op == "delete" && st == http.StatusNotFound && strings.Contains(string(body), "Deleted Key not found")) ||
			(in.op == "recover" && st == http.StatusNotFound && strings.Contains(string(body), "A key with"))
		if lost {
			o.out.status = http.StatusOK
			o.detail = "took effect, answered " + o.detail
			h.mu.Lock()
			h.answerLost++
			h.mu.Unlock()
		}
		if !allowedStatus(in.op, st) {
			h.unexpected.Add(1)
			if h.logged.Add(1) <= 10 {
				t.Logf("%s %s through node %d: unexpected %d %s", in.op, in.key, nd.n, st, body)
			}
			// Not modelled: counted as an error above, and unknown to the checker.
			o.out.status, o.ret = 0, math.MaxInt64
		}
	}
	h.add(o)
	return o.out
}

// allowedStatus: the answers of a Managed HSM to each write in some state of the key.
func allowedStatus(op string, st int) bool {
	switch op {
	case "create":
		return st == http.StatusOK || st == http.StatusConflict
	case "delete":
		return st == http.StatusOK || st == http.StatusNotFound
	case "purge":
		return st == http.StatusNoContent || st == http.StatusNotFound || st == http.StatusConflict || st == http.StatusBadRequest
	case "update", "recover":
		return st == http.StatusOK || st == http.StatusNotFound
	}
	return false
}

// kidVersion is the version in the kid of a key bundle (https://host/keys/NAME/VERSION).
func kidVersion(body []byte) string {
	var b struct {
		Key struct {
			KID string `json:"kid"`
		} `json:"key"`
	}
	json.Unmarshal(body, &b)
	return b.Key.KID[strings.LastIndex(b.Key.KID, "/")+1:]
}

// sameVer reports whether the model's current version v admits the answered version got ("":
// not checked).
func sameVer(v, got string) bool { return v == "?" || got == "" || v == got }

// stepOne returns the states op with output out can lead to from state s: none when the output
// is impossible there. An unknown output leads to s (no effect) and to the state had it taken
// effect.
func stepOne(s kstate, in kvIn, out kvOut) []kstate {
	if out.unknown() {
		switch {
		case in.op == "create" && s.st != stateDeleted:
			return []kstate{s, {stateActive, "?"}}
		case in.op == "delete" && s.st == stateActive:
			return []kstate{s, {stateDeleted, s.ver}}
		case in.op == "purge" && s.st == stateDeleted:
			return []kstate{s, {stateAbsent, ""}}
		case in.op == "recover" && s.st == stateDeleted:
			return []kstate{s, {stateActive, s.ver}}
		}
		return []kstate{s}
	}
	ok := out.acked()
	possible := false
	after := s
	switch in.op {
	case "read":
		possible = out.state.st == s.st && (s.st == stateAbsent || sameVer(s.ver, out.state.ver))
		after = out.state
	case "create":
		if ok {
			possible, after = s.st != stateDeleted, kstate{stateActive, out.ver}
		} else {
			possible = s.st == stateDeleted // 409: the name is soft-deleted
		}
	case "delete":
		if ok {
			possible, after = s.st == stateActive && sameVer(s.ver, out.ver), kstate{stateDeleted, s.ver}
		} else {
			possible = s.st != stateActive // 404
		}
	case "purge":
		if ok {
			possible, after = s.st == stateDeleted, kstate{stateAbsent, ""}
		} else {
			possible = s.st != stateDeleted // 4xx
		}
	case "recover":
		if ok {
			possible, after = s.st == stateDeleted && sameVer(s.ver, out.ver), kstate{stateActive, s.ver}
		} else {
			possible = s.st != stateDeleted // 404
		}
	case "update":
		// A PATCH without a version updates the current one, and answers it.
		if ok {
			possible, after = s.st == stateActive && sameVer(s.ver, out.ver), kstate{stateActive, out.ver}
		} else {
			possible = s.st != stateActive // 404
		}
	}
	if !possible {
		return nil
	}
	return []kstate{after}
}

// keyModel is the model of one key name for porcupine. Its state is the set of states the key
// may be in (a sorted []kstate without repeats): an operation with an unknown outcome may or may
// not have taken effect.
var keyModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, o := range history {
			k := o.Input.(kvIn).key
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], o)
		}
		var out [][]porcupine.Operation
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() any { return []kstate{{stateAbsent, ""}} },
	Step: func(state, input, output any) (bool, any) {
		var after []kstate
		for _, s := range state.([]kstate) {
			for _, n := range stepOne(s, input.(kvIn), output.(kvOut)) {
				if !slices.Contains(after, n) {
					after = append(after, n)
				}
			}
		}
		slices.SortFunc(after, func(a, b kstate) int { return cmp.Or(cmp.Compare(a.st, b.st), cmp.Compare(a.ver, b.ver)) })
		return len(after) > 0, after
	},
	Equal: func(a, b any) bool { return slices.Equal(a.([]kstate), b.([]kstate)) },
	DescribeOperation: func(input, output any) string {
		in, out := input.(kvIn), output.(kvOut)
		if in.op == "read" {
			return fmt.Sprintf("read(%s) -> %s", in.key, out.state)
		}
		return fmt.Sprintf("%s(%s) -> %s", in.op, in.key, out)
	},
	DescribeState: func(state any) string {
		var names []string
		for _, s := range state.([]kstate) {
			names = append(names, s.String())
		}
		return strings.Join(names, "|")
	},
}

// checkLinearizable checks the writes, followed by a read of each key's final state, against
// keyModel.
func checkLinearizable(t *testing.T, ops []histOp, final map[string]kstate, end time.Duration) {
	t.Helper()
	var hist []porcupine.Operation
	seen := map[string]bool{}
	for _, o := range ops {
		hist = append(hist, porcupine.Operation{ClientId: o.client, Input: o.in, Output: o.out,
			Call: int64(o.call), Return: int64(o.ret), Metadata: fmt.Sprintf("node %d: %s", o.node, o.detail)})
		seen[o.in.key] = true
	}
	// The final state, read once every node applied the same index, after every write returned
	// or was given up.
	for k := range seen {
		hist = append(hist, porcupine.Operation{ClientId: 1000, Input: kvIn{"read", k}, Output: kvOut{status: 200, state: final[k]},
			Call: int64(end) + 1, Return: int64(end) + 2})
	}
	for k := range final {
		if !seen[k] {
			t.Errorf("key %s is on the nodes but no client wrote it", k)
		}
	}
	res, info := porcupine.CheckOperationsVerbose(keyModel, hist, 60*time.Second)
	switch res {
	case porcupine.Ok:
		t.Logf("the history of %d writes on %d key names is linearizable", len(ops), len(seen))
		return
	case porcupine.Unknown:
		t.Error("porcupine did not finish checking within 60 s")
		return
	}
	// Name the key names whose histories are not linearizable, and keep the evidence: each
	// one's operations in call order in a text file, and porcupine's visualization.
	dir, err := os.MkdirTemp("", "hsmpool-linearizability-")
	if err != nil {
		t.Fatal(err)
	}
	porcupine.VisualizePath(keyModel, info, filepath.Join(dir, "history.html"))
	for _, part := range keyModel.Partition(hist) {
		if porcupine.CheckOperations(keyModel, part) {
			continue
		}
		key := part[0].Input.(kvIn).key
		slices.SortFunc(part, func(a, b porcupine.Operation) int { return cmp.Compare(a.Call, b.Call) })
		var b strings.Builder
		for _, o := range part {
			fmt.Fprintf(&b, "%v\t%s\tclient %d\t%s\t%s\n", time.Duration(o.Call), retString(o.Return), o.ClientId,
				keyModel.DescribeOperation(o.Input, o.Output), strings.ReplaceAll(fmt.Sprint(o.Metadata), "\n", " "))
		}
		f := filepath.Join(dir, key+".txt")
		os.WriteFile(f, []byte(b.String()), 0o644)
		// The shortest prefix, in call order, that is not linearizable ends with an operation
		// that no order explains: log it with the operations before it.
		n := sort.Search(len(part), func(i int) bool { return !porcupine.CheckOperations(keyModel, part[:i+1]) })
		var tail []string
		for _, o := range part[max(0, n-12) : n+1] {
			tail = append(tail, fmt.Sprintf("%v..%s %s (%.60s)", time.Duration(o.Call).Round(time.Microsecond), retString(o.Return),
				keyModel.DescribeOperation(o.Input, o.Output), o.Metadata))
		}
		t.Errorf("the writes on key %s are not linearizable (%d operations in %s); the first that no order explains is the last of:\n%s",
			key, len(part), f, strings.Join(tail, "\n"))
	}
	t.Logf("porcupine's visualization: %s", filepath.Join(dir, "history.html"))
}

// retString is a return time, or "open" for an unknown outcome.
func retString(r int64) string {
	if r == math.MaxInt64 {
		return "open"
	}
	return time.Duration(r).Round(time.Microsecond).String()
}

// checkConverged checks that every node holds the same keys and deleted keys, that every key
// works on every node (get, and a signature that verifies with its public key) and every deleted
// key reads there, with the same current version on every node; it returns the state of each
// key name.
func checkConverged(t *testing.T, c *testCluster) map[string]kstate {
	t.Helper()
	var live, deleted []string
	for i, nd := range c.nodes {
		l, err := nd.rest.keyNames(ctx, "/keys")
		if err != nil {
			t.Fatalf("list keys on node %d: %v", nd.n, err)
		}
		d, err := nd.rest.keyNames(ctx, "/deletedkeys")
		if err != nil {
			t.Fatalf("list deleted keys on node %d: %v", nd.n, err)
		}
		slices.Sort(l)
		slices.Sort(d)
		if i == 0 {
			live, deleted = l, d
			continue
		}
		if !slices.Equal(l, live) || !slices.Equal(d, deleted) {
			t.Errorf("node %d lists keys %v and deleted keys %v; node 1 lists %v and %v", nd.n, l, d, live, deleted)
		}
	}
	t.Logf("converged: %d keys, %d deleted keys on every node", len(live), len(deleted))
	for _, k := range deleted {
		if slices.Contains(live, k) {
			t.Errorf("key %s is listed both live and deleted", k)
		}
	}

	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []string
	fail := func(format string, a ...any) {
		mu.Lock()
		errs = append(errs, fmt.Sprintf(format, a...))
		mu.Unlock()
	}
	// The current version of each key on each node.
	versions := make([]map[string]kstate, len(c.nodes))
	for i, nd := range c.nodes {
		versions[i] = map[string]kstate{}
		wg.Go(func() {
			for _, k := range live {
				ver, err := keyWorks(nd.rest, k)
				if err != nil {
					fail("node %d: key %s: %v", nd.n, k, err)
				}
				versions[i][k] = kstate{stateActive, ver}
			}
			for _, k := range deleted {
				st, body, err := nd.rest.do(ctx, http.MethodGet, "/deletedkeys/"+k+"?api-version=7.4", nil)
				if err != nil || st != http.StatusOK {
					fail("node %d: deleted key %s: %d %s %v", nd.n, k, st, body, err)
				}
				versions[i][k] = kstate{stateDeleted, kidVersion(body)}
			}
		})
	}
	wg.Wait()
	final := versions[0]
	for i, v := range versions[1:] {
		for k, ks := range v {
			if final[k] != ks {
				fail("node %d has %s %s, node 1 %s", c.nodes[i+1].n, k, ks, final[k])
			}
		}
	}
	for i, e := range errs {
		if i == 20 {
			t.Errorf("... and %d more", len(errs)-20)
			break
		}
		t.Error(e)
	}
	return final
}

// keyWorks gets an EC key and signs with it through r; the signature must verify with the
// public key the node returns.
func keyWorks(r *restClient, name string) (version string, err error) {
	st, body, err := r.do(ctx, http.MethodGet, "/keys/"+name+"?api-version=7.4", nil)
	if err != nil || st != http.StatusOK {
		return "", fmt.Errorf("get: %d %.200s %v", st, body, err)
	}
	version = kidVersion(body)
	var k struct {
		Key struct {
			X, Y string
		} `json:"key"`
	}
	if err := json.Unmarshal(body, &k); err != nil {
		return version, err
	}
	x, err1 := base64.RawURLEncoding.DecodeString(k.Key.X)
	y, err2 := base64.RawURLEncoding.DecodeString(k.Key.Y)
	if err := errors.Join(err1, err2); err != nil {
		return version, err
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
	if err != nil {
		return version, fmt.Errorf("the public key: %w", err)
	}
	d := sha256.Sum256([]byte(name))
	st, sig, err := signRaw(ctx, r, name, d[:])
	if err != nil || st != http.StatusOK {
		return version, fmt.Errorf("sign: %d %.200s %v", st, sig, err)
	}
	if len(sig) != 64 || !ecdsa.Verify(pub, d[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
		return version, errors.New("the signature does not verify with the key's public key")
	}
	return version, nil
}
