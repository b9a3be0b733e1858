package cluster_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/hsmpool/hsmpool/internal/cluster"
	"github.com/hsmpool/hsmpool/internal/fault"
)

// errRefused is what kvFSM returns, as a value, for a "fail" command.
var errRefused = fmt.Errorf("refused by the state machine: %w", fault.Conflict)

// kvCmd is a command of kvFSM.
type kvCmd struct {
	Op    string `json:"op"` // "set", "fail" or "block"
	Key   string `json:"key,omitempty"`
	Value string `json:"value,omitempty"`
}

func (c kvCmd) bytes() []byte {
	b, err := json.Marshal(c)
	if err != nil {
		panic(err)
	}
	return b
}

func setCmd(key, value string) []byte { return kvCmd{Op: "set", Key: key, Value: value}.bytes() }

// kvFSM is a deterministic key-value map: "set" stores a value and responds with it,
// "fail" responds with an error value, "block" waits until unblock is closed. Its
// snapshot is the map as JSON.
type kvFSM struct {
	unblock chan struct{}

	mu       sync.Mutex
	m        map[string]string
	applied  int // commands applied
	restores int
}

func newKV() *kvFSM { return &kvFSM{m: map[string]string{}, unblock: make(chan struct{})} }

func (f *kvFSM) Apply(l *raft.Log) any {
	var c kvCmd
	if err := json.Unmarshal(l.Data, &c); err != nil {
		panic(fmt.Sprintf("kvFSM: undecodable command at index %d: %v", l.Index, err))
	}
	if c.Op == "block" {
		<-f.unblock
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applied++
	switch c.Op {
	case "set":
		f.m[c.Key] = c.Value
		return c.Value
	case "fail":
		return fmt.Errorf("set %q: %w", c.Key, errRefused)
	case "block":
		return "unblocked"
	default:
		panic(fmt.Sprintf("kvFSM: unknown op %q", c.Op))
	}
}

func (f *kvFSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return kvSnapshot(maps.Clone(f.m)), nil
}

func (f *kvFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	m := map[string]string{}
	if err := json.NewDecoder(rc).Decode(&m); err != nil {
		return fmt.Errorf("kvFSM: restore: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.m = m
	f.restores++
	return nil
}

func (f *kvFSM) state() (m map[string]string, applied, restores int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.m), f.applied, f.restores
}

type kvSnapshot map[string]string

func (s kvSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := json.NewEncoder(sink).Encode(map[string]string(s)); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (kvSnapshot) Release() {}

// nopFSM applies nothing and responds nil.
type nopFSM struct{}

func (nopFSM) Apply(*raft.Log) any                    { return nil }
func (nopFSM) Snapshot() (raft.FSMSnapshot, error)    { return nopSnapshot{}, nil }
func (nopFSM) Restore(rc io.ReadCloser) error         { return rc.Close() }
func (nopSnapshot) Persist(s raft.SnapshotSink) error { return s.Close() }
func (nopSnapshot) Release()                          {}

type nopSnapshot struct{}

// testConfig is a Config for one node on loopback with short timeouts, in a data
// directory that does not exist yet.
func testConfig(tb testing.TB) cluster.Config {
	cfg := cluster.Default()
	cfg.NodeID = "node-1"
	cfg.DataDir = filepath.Join(tb.TempDir(), "raft")
	cfg.BindAddr = "127.0.0.1:0"
	cfg.HeartbeatTimeout = 50 * time.Millisecond
	cfg.ElectionTimeout = 50 * time.Millisecond
	if os.Getenv("CLUSTER_TEST_RAFT_LOG") != "" { // Raft's log, to debug a test
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return cfg
}

// testContext is bounded so that a hung test fails instead of timing out the suite.
func testContext(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(tb.Context(), 10*time.Second)
	tb.Cleanup(cancel)
	return ctx
}

// openLeader opens a node with bootstrap set, closes it at the end of the test, and
// waits until it leads.
func openLeader(tb testing.TB, cfg cluster.Config, fsm raft.FSM) *cluster.Node {
	tb.Helper()
	ctx := testContext(tb)
	n, err := cluster.Open(ctx, cfg, fsm, true)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() {
		if err := n.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	if err := n.WaitLeader(ctx); err != nil {
		tb.Fatalf("WaitLeader: %v", err)
	}
	return n
}

// setAll applies a set command for each key of kv from 16 goroutines, so that Raft
// batches them (one fsync per batch keeps the tests fast on a busy disk).
func setAll(tb testing.TB, ctx context.Context, n *cluster.Node, kv map[string]string) {
	tb.Helper()
	keys := make(chan string)
	var wg sync.WaitGroup
	var failed atomic.Bool
	for range 16 {
		wg.Go(func() {
			for k := range keys {
				if resp, err := n.Apply(ctx, setCmd(k, kv[k])); err != nil || resp != kv[k] {
					if failed.CompareAndSwap(false, true) {
						tb.Errorf("Apply(set %s) = %#v, %v", k, resp, err)
					}
				}
			}
		})
	}
	for k := range kv {
		keys <- k
	}
	close(keys)
	wg.Wait()
	if failed.Load() {
		tb.FailNow()
	}
}

// check fails the test if err is not nil.
func check(tb testing.TB, what string, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatalf("%s: %v", what, err)
	}
}
