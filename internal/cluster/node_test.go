package cluster_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/hsmpool/hsmpool/internal/cluster"
	"github.com/hsmpool/hsmpool/internal/fault"
)

// TestApplyConcurrent applies 1000 commands from 16 goroutines and checks every
// response and the FSM's state.
func TestApplyConcurrent(t *testing.T) {
	const goroutines, commands = 16, 1000
	fsm := newKV()
	n := openLeader(t, testConfig(t), fsm)
	ctx := testContext(t)

	want := map[string]string{}
	for i := range commands {
		want[fmt.Sprintf("k%04d", i)] = fmt.Sprintf("v%04d", i)
	}
	var wg sync.WaitGroup
	errs := make(chan error, commands)
	for g := range goroutines {
		wg.Go(func() {
			for i := g; i < commands; i += goroutines {
				key, value := fmt.Sprintf("k%04d", i), fmt.Sprintf("v%04d", i)
				resp, err := n.Apply(ctx, setCmd(key, value))
				if err != nil {
					errs <- fmt.Errorf("apply %s: %w", key, err)
				} else if resp != value {
					errs <- fmt.Errorf("apply %s: response %#v, want %q", key, resp, value)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	got, applied, _ := fsm.state()
	if !maps.Equal(got, want) {
		t.Errorf("FSM holds %d keys, want %d (or the values differ)", len(got), len(want))
	}
	if applied != commands {
		t.Errorf("FSM applied %d commands, want %d", applied, commands)
	}
	st := n.Status()
	if st.State != cluster.Leader || st.LeaderID != "node-1" || st.LeaderAddr != st.Address || st.NodeID != "node-1" {
		t.Errorf("Status = %+v, want this node leading", st)
	}
	if st.Term < 1 || st.LastIndex < commands || st.CommitIndex < commands || st.AppliedIndex < commands {
		t.Errorf("Status = %+v, want term >= 1 and indexes >= %d", st, commands)
	}
}

// TestApplyFSMError checks that an error the FSM returns as its response comes back
// from Apply as that error, with its fault kind.
func TestApplyFSMError(t *testing.T) {
	fsm := newKV()
	n := openLeader(t, testConfig(t), fsm)
	ctx := testContext(t)

	resp, err := n.Apply(ctx, kvCmd{Op: "fail", Key: "k"}.bytes())
	if !errors.Is(err, errRefused) {
		t.Fatalf("Apply(fail) = %v, %v; want an error wrapping %v", resp, err, errRefused)
	}
	if resp != nil {
		t.Errorf("Apply(fail) response = %#v, want nil", resp)
	}
	if k := fault.Of(err); k != fault.Conflict {
		t.Errorf("fault.Of(%v) = %v, want %v", err, k, fault.Conflict)
	}
	if !strings.Contains(err.Error(), `set "k"`) {
		t.Errorf("error %q lost the FSM's message", err)
	}
	// The failed command is a replicated outcome, not a broken node.
	if resp, err := n.Apply(ctx, setCmd("k", "v")); err != nil || resp != "v" {
		t.Errorf("Apply after a failed command = %#v, %v; want \"v\", nil", resp, err)
	}
}

// TestRestart closes a node and opens it again on the same data directory, with
// bootstrap set again, and checks that the FSM's state comes back from the log alone
// and from a snapshot plus the log after it.
func TestRestart(t *testing.T) {
	for _, snapshot := range []bool{false, true} {
		t.Run(fmt.Sprintf("snapshot=%v", snapshot), func(t *testing.T) {
			ctx := testContext(t)
			cfg := testConfig(t)
			want := map[string]string{}
			set := func(n *cluster.Node, kv map[string]string) {
				t.Helper()
				setAll(t, ctx, n, kv)
				maps.Copy(want, kv)
			}
			round := func(count int, value string) map[string]string {
				kv := map[string]string{}
				for i := range count {
					kv[fmt.Sprintf("k%03d", i)] = value
				}
				return kv
			}

			fsm1 := newKV()
			n1, err := cluster.Open(ctx, cfg, fsm1, true)
			check(t, "Open", err)
			t.Cleanup(func() { _ = n1.Close() })
			check(t, "WaitLeader", n1.WaitLeader(ctx))
			set(n1, round(200, "first"))
			if snapshot {
				check(t, "Snapshot", n1.Snapshot(ctx))
				if st := n1.Status(); st.LastSnapshotIndex < 200 {
					t.Errorf("after Snapshot, LastSnapshotIndex = %d, want >= 200", st.LastSnapshotIndex)
				}
			}
			set(n1, round(50, "second")) // in the log only
			before := n1.Status()
			check(t, "Close", n1.Close())

			fsm2 := newKV()
			n2 := openLeader(t, cfg, fsm2)
			check(t, "Barrier", n2.Barrier(ctx))
			got, _, restores := fsm2.state()
			if !maps.Equal(got, want) {
				t.Errorf("after restart the FSM holds %d keys, want %d (or the values differ)", len(got), len(want))
			}
			if wantRestores := map[bool]int{false: 0, true: 1}[snapshot]; restores != wantRestores {
				t.Errorf("FSM was restored %d times, want %d", restores, wantRestores)
			}
			after := n2.Status()
			if after.Term <= before.Term || after.LastIndex <= before.LastIndex {
				t.Errorf("after restart Status = %+v; before %+v; want a later term and index", after, before)
			}
			if snapshot && after.LastSnapshotIndex != before.LastSnapshotIndex {
				t.Errorf("after restart LastSnapshotIndex = %d, want %d", after.LastSnapshotIndex, before.LastSnapshotIndex)
			}
			set(n2, map[string]string{"k-new": "third"})
			if got, _, _ := fsm2.state(); got["k-new"] != "third" {
				t.Errorf("Apply after restart did not reach the FSM")
			}
		})
	}
}

// TestLogCompaction checks that snapshots, automatic and forced, keep raft.db from
// growing with the number of commands.
func TestLogCompaction(t *testing.T) {
	const rounds, perRound, valueSize, trailing = 8, 300, 2048, 64
	ctx := testContext(t)
	cfg := testConfig(t)
	cfg.SnapshotInterval = 10 * time.Millisecond
	cfg.SnapshotThreshold = 128
	cfg.TrailingLogs = trailing
	n, err := cluster.Open(ctx, cfg, newKV(), true)
	check(t, "Open", err)
	t.Cleanup(func() { _ = n.Close() })
	check(t, "WaitLeader", n.WaitLeader(ctx))

	value := strings.Repeat("x", valueSize)
	dbPath := filepath.Join(cfg.DataDir, "raft.db")
	var sizes []int64
	for r := range rounds {
		kv := map[string]string{}
		for i := range perRound {
			kv[fmt.Sprintf("k%03d", i)] = fmt.Sprintf("%d%s", r, value)
		}
		setAll(t, ctx, n, kv)
		if r == 0 {
			// No forced snapshot yet: SnapshotInterval and SnapshotThreshold must do it.
			for n.Status().LastSnapshotIndex == 0 {
				select {
				case <-ctx.Done():
					t.Fatalf("no automatic snapshot after %d commands", perRound)
				case <-time.After(5 * time.Millisecond):
				}
			}
		}
		check(t, "Snapshot", n.Snapshot(ctx))
		fi, err := os.Stat(dbPath)
		check(t, "stat raft.db", err)
		sizes = append(sizes, fi.Size())
	}
	last := n.Status().LastIndex
	check(t, "Close", n.Close())
	t.Logf("raft.db sizes after each round of %d commands of %d bytes: %v", perRound, valueSize, sizes)

	// Uncompacted, the log would hold rounds*perRound*valueSize bytes; compacted it holds
	// about perRound+trailing entries at most, so its size levels off after the first
	// rounds (bbolt grows the file in powers of two and reuses freed pages).
	if final, early := sizes[len(sizes)-1], sizes[1]; final > 2*early || final > rounds*perRound*valueSize/2 {
		t.Errorf("raft.db grew from %d to %d bytes over %d rounds; want it bounded", early, final, rounds)
	}
	store, err := raftboltdb.New(raftboltdb.Options{Path: dbPath})
	check(t, "open raft.db", err)
	defer store.Close()
	first, err := store.FirstIndex()
	check(t, "FirstIndex", err)
	lastInStore, err := store.LastIndex()
	check(t, "LastIndex", err)
	if lastInStore != last || lastInStore-first+1 > trailing {
		t.Errorf("raft.db holds log entries %d..%d, want only the last %d of %d", first, lastInStore, trailing, last)
	}
}

// TestApplyContext checks that Apply returns ctx.Err() unchanged when its context has
// ended before it is called or before the command is applied, and that in the second
// case the command still commits.
func TestApplyContext(t *testing.T) {
	fsm := newKV()
	n := openLeader(t, testConfig(t), fsm)
	ctx := testContext(t)

	t.Run("cancelled", func(t *testing.T) {
		cancelled, cancel := context.WithCancel(ctx)
		cancel()
		before := n.Status().LastIndex
		if _, err := n.Apply(cancelled, setCmd("k", "v")); err != context.Canceled {
			t.Errorf("Apply with a cancelled context = %v, want context.Canceled itself", err)
		}
		if err := n.Barrier(cancelled); err != context.Canceled {
			t.Errorf("Barrier with a cancelled context = %v, want context.Canceled itself", err)
		}
		if err := n.Snapshot(cancelled); err != context.Canceled {
			t.Errorf("Snapshot with a cancelled context = %v, want context.Canceled itself", err)
		}
		if err := n.WaitLeader(cancelled); err != nil {
			t.Errorf("WaitLeader with a leader known = %v, want nil", err)
		}
		if after := n.Status().LastIndex; after != before {
			t.Errorf("a command was proposed with a cancelled context: last index %d -> %d", before, after)
		}
	})

	t.Run("deadline", func(t *testing.T) {
		var once sync.Once
		unblock := func() { once.Do(func() { close(fsm.unblock) }) }
		defer unblock() // else Close would wait for the FSM forever
		short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := n.Apply(short, kvCmd{Op: "block"}.bytes())
		if err != context.DeadlineExceeded {
			t.Errorf("Apply past its deadline = %v, want context.DeadlineExceeded itself", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("Apply returned %s after its 50ms deadline", d)
		}
		// The command was proposed: it commits and is applied once the FSM goes on.
		_, appliedBefore, _ := fsm.state()
		unblock()
		check(t, "Barrier", n.Barrier(ctx))
		if _, applied, _ := fsm.state(); applied != appliedBefore+1 {
			t.Errorf("FSM applied %d commands after the timed-out Apply, want %d", applied, appliedBefore+1)
		}
	})
}

// TestClosed checks every method of a closed node, and that Close is idempotent.
func TestClosed(t *testing.T) {
	n := openLeader(t, testConfig(t), newKV())
	ctx := testContext(t)
	check(t, "Close", n.Close())
	check(t, "second Close", n.Close())

	_, err := n.Apply(ctx, setCmd("k", "v"))
	for name, err := range map[string]error{
		"Apply":      err,
		"Barrier":    n.Barrier(ctx),
		"Snapshot":   n.Snapshot(ctx),
		"WaitLeader": n.WaitLeader(ctx),
	} {
		if fault.Of(err) != fault.Unavailable {
			t.Errorf("%s after Close = %v, want fault.Unavailable", name, err)
		}
	}
	if st := n.Status(); st.State != cluster.Shutdown {
		t.Errorf("Status after Close = %+v, want state shutdown", st)
	}
}

// TestCloseWhileApplying closes a node under load: every Apply either succeeds or
// fails with fault.Unavailable.
func TestCloseWhileApplying(t *testing.T) {
	cfg := testConfig(t)
	n := openLeader(t, cfg, newKV())
	ctx := testContext(t)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var acked []string
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				key := fmt.Sprintf("g%d-%d", g, i)
				_, err := n.Apply(ctx, setCmd(key, "v"))
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				acked = append(acked, key)
				mu.Unlock()
			}
		})
	}
	time.Sleep(30 * time.Millisecond)
	check(t, "Close", n.Close())
	wg.Wait()
	close(errs)
	for err := range errs {
		if fault.Of(err) != fault.Unavailable {
			t.Errorf("Apply during Close = %v, want fault.Unavailable", err)
		}
		// A command Raft held may have committed; the error must say so.
		if !errors.Is(err, cluster.ErrOutcomeUnknown) && !strings.Contains(err.Error(), "node is closed") {
			t.Errorf("Apply during Close = %v: neither 'not proposed' nor ErrOutcomeUnknown", err)
		}
	}
	// Every acknowledged command survives the restart.
	kv := newKV()
	n2 := openLeader(t, cfg, kv)
	check(t, "Barrier", n2.Barrier(ctx))
	m, _, _ := kv.state()
	for _, k := range acked {
		if m[k] != "v" {
			t.Fatalf("acknowledged command %s is lost after a restart", k)
		}
	}
	if len(acked) == 0 {
		t.Fatal("no command was acknowledged before Close: the test proves nothing")
	}
}

// TestNodeIDBoundToDataDir: reopening a data directory under another node ID is refused;
// the node would never find itself in the configuration and never lead.
func TestNodeIDBoundToDataDir(t *testing.T) {
	cfg := testConfig(t)
	n := openLeader(t, cfg, newKV())
	check(t, "Close", n.Close())
	cfg.NodeID = "another-node"
	_, err := cluster.Open(testContext(t), cfg, newKV(), true)
	if fault.Of(err) != fault.BadParameter || !strings.Contains(err.Error(), "node_id") {
		t.Fatalf("Open with another node_id = %v, want BadParameter naming node_id", err)
	}
}

// TestNotBootstrapped opens a fresh node without bootstrap: it has no leader, and Apply
// fails with fault.NotLeader.
func TestNotBootstrapped(t *testing.T) {
	ctx := testContext(t)
	n, err := cluster.Open(ctx, testConfig(t), newKV(), false)
	check(t, "Open", err)
	defer n.Close()

	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if err := n.WaitLeader(short); err != context.DeadlineExceeded {
		t.Errorf("WaitLeader without a cluster = %v, want context.DeadlineExceeded", err)
	}
	_, err = n.Apply(ctx, setCmd("k", "v"))
	if fault.Of(err) != fault.NotLeader || !strings.Contains(err.Error(), "no leader is known") {
		t.Errorf("Apply without a cluster = %v, want fault.NotLeader saying no leader is known", err)
	}
	if err := n.Barrier(ctx); fault.Of(err) != fault.NotLeader {
		t.Errorf("Barrier without a cluster = %v, want fault.NotLeader", err)
	}
	if st := n.Status(); st.State != cluster.Follower || st.LeaderID != "" {
		t.Errorf("Status = %+v, want a follower without leader", st)
	}
}

// TestOpenLocked checks that a second node cannot open a data directory in use.
func TestOpenLocked(t *testing.T) {
	cfg := testConfig(t)
	openLeader(t, cfg, newKV())
	start := time.Now()
	n, err := cluster.Open(testContext(t), cfg, newKV(), true)
	if err == nil {
		n.Close()
		t.Fatal("a second Open of the same data_dir succeeded")
	}
	if fault.Of(err) != fault.Unavailable || !strings.Contains(err.Error(), "data_dir") {
		t.Errorf("second Open = %v, want fault.Unavailable naming data_dir", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("second Open took %s to fail", d)
	}
}

// TestInjectedTransport runs a node on a transport it did not make.
func TestInjectedTransport(t *testing.T) {
	cfg := testConfig(t)
	cfg.BindAddr = ""
	addr, trans := raft.NewInmemTransport("inmem-1")
	cfg.Transport = trans
	n := openLeader(t, cfg, newKV())
	if st := n.Status(); st.Address != string(addr) || st.LeaderAddr != string(addr) {
		t.Errorf("Status = %+v, want address and leader %s", st, addr)
	}
	if _, err := n.Apply(testContext(t), setCmd("k", "v")); err != nil {
		t.Errorf("Apply: %v", err)
	}
}

// TestPermissions checks that the data directory and everything in it is private, and
// that a data directory others can reach is refused.
func TestPermissions(t *testing.T) {
	// A permissive umask, so that the check sees the store's own narrowing, not the umask's.
	old := syscall.Umask(0o022)
	t.Cleanup(func() { syscall.Umask(old) })
	cfg := testConfig(t)
	cfg.DataDir = filepath.Join(t.TempDir(), "a", "raft") // two levels to create
	n := openLeader(t, cfg, newKV())
	ctx := testContext(t)
	for i := range 3 { // three snapshots: one is reaped, two are kept
		if _, err := n.Apply(ctx, setCmd("k", fmt.Sprint(i))); err != nil {
			t.Fatalf("Apply: %v", err)
		}
		check(t, "Snapshot", n.Snapshot(ctx))
	}
	check(t, "Close", n.Close())

	var files, snapshots int
	err := filepath.WalkDir(filepath.Dir(cfg.DataDir), func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		want := fs.FileMode(0o600)
		if d.IsDir() {
			want = 0o700
			if filepath.Dir(path) == filepath.Join(cfg.DataDir, "snapshots") {
				snapshots++
			}
		} else {
			files++
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s has mode %04o, want %04o", path, fi.Mode().Perm(), want)
		}
		return nil
	})
	check(t, "walk", err)
	if files < 5 || snapshots != 2 { // raft.db, and meta.json and state.bin per snapshot
		t.Errorf("found %d files and %d snapshots, want raft.db and two snapshots", files, snapshots)
	}

	open := t.TempDir()
	check(t, "chmod", os.Chmod(open, 0o750))
	cfg = testConfig(t)
	cfg.DataDir = open
	if n, err := cluster.Open(ctx, cfg, newKV(), true); fault.Of(err) != fault.BadParameter || !strings.Contains(err.Error(), "data_dir") {
		if err == nil {
			n.Close()
		}
		t.Errorf("Open on a 0750 data_dir = %v, want fault.BadParameter naming data_dir", err)
	}
}

// TestLogger checks that Raft's log reaches the configured slog.Logger, named.
func TestLogger(t *testing.T) {
	var buf syncBuffer
	cfg := testConfig(t)
	cfg.Logger = slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	n := openLeader(t, cfg, newKV())
	check(t, "Close", n.Close())
	out := buf.String()
	if !strings.Contains(out, `msg="entering leader state" logger=raft `) {
		t.Errorf("Raft's log lacks the leader election:\n%s", out)
	}
	if !strings.Contains(out, `msg="initial configuration" logger=raft index=1 servers="[{Suffrage:Voter ID:node-1`) {
		t.Errorf("Raft's log lacks the bootstrap configuration, formatted:\n%s", out)
	}
	if strings.Contains(out, "level=DEBUG") {
		t.Errorf("Raft's log has debug records the handler's level excludes:\n%s", out)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
