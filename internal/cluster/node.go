package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"

	"github.com/hsmpool/hsmpool/internal/fault"
)

const (
	// dbFile is the bbolt file below DataDir that holds the Raft log and stable store.
	dbFile = "raft.db"
	// lockTimeout bounds the wait for raft.db's file lock, held by any other process (or
	// Node) that has the same DataDir open.
	lockTimeout = 500 * time.Millisecond
	// leaderPoll is how often WaitLeader looks for a leader.
	leaderPoll = 5 * time.Millisecond
)

// Node is one Raft node: the log and stable store in raft.db, the snapshot store, the
// transport, and the raft.Raft that drives the FSM. Its methods are safe for
// concurrent use.
type Node struct {
	id    string
	raft  *raft.Raft
	store *raftboltdb.BoltStore
	snaps *privateSnapshotStore
	trans raft.Transport
	// tls is the mutual-TLS stream layer under trans, or nil; plainTCP is set when trans is
	// the plain TCP transport, which serves a single node only.
	tls      *tlsLayer
	plainTCP bool
	peers    *peerHealth

	closed    atomic.Bool
	done      chan struct{} // closed when Close has stopped Raft
	closeOnce sync.Once
	closeErr  error
}

// Open starts the node with fsm, which from now on belongs to Raft: it is called from
// Raft's goroutines only, one call at a time.
//
// On a fresh DataDir with bootstrap set, Open bootstraps a cluster whose one voter is
// this node; on a DataDir that already has Raft state, bootstrap is ignored and the
// node resumes: fsm is restored from the newest snapshot before Open returns, and the
// log entries after it are applied once the node learns they are committed (a single
// node after electing itself; call WaitLeader and Barrier to wait for it). Without
// bootstrap, a fresh node waits to be added to a cluster.
//
// Raft's start cannot be interrupted; ctx is checked before and after it. Open fails
// with fault.BadParameter for a bad Config or DataDir and fault.Unavailable when
// another process has the DataDir open. The node owns cfg.Transport from now on.
func Open(ctx context.Context, cfg Config, fsm raft.FSM, bootstrap bool) (_ *Node, err error) {
	n := &Node{id: cfg.NodeID, trans: cfg.Transport, done: make(chan struct{})}
	// Until Open succeeds, whatever was opened (and cfg.Transport) is closed again.
	defer func() {
		if err != nil {
			_ = n.release()
		}
	}()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if fsm == nil {
		return nil, fmt.Errorf("open node: %w: the FSM is nil", fault.BadParameter)
	}

	if err := makePrivateDir(cfg.DataDir); err != nil {
		return nil, err
	}
	logger := newHCLog(cfg.Logger)

	bolt := *bbolt.DefaultOptions
	bolt.Timeout = lockTimeout
	n.store, err = raftboltdb.New(raftboltdb.Options{Path: filepath.Join(cfg.DataDir, dbFile), BoltOptions: &bolt})
	if errors.Is(err, bbolt.ErrTimeout) {
		return nil, fmt.Errorf("open %s: %w: it is locked by another node using data_dir %q", dbFile, fault.Unavailable, cfg.DataDir)
	} else if err != nil {
		return nil, fmt.Errorf("open %s: %w", dbFile, err)
	}
	if err := bindNodeID(n.store, cfg.NodeID); err != nil {
		return nil, err
	}
	if n.snaps, err = newSnapshotStore(cfg.DataDir, retainSnapshots, logger.Named("snapshot")); err != nil {
		return nil, err
	}
	if cfg.TLS != nil {
		if n.tls, err = newTLSLayer(cfg.BindAddr, cfg.NodeID, cfg.TLS); err != nil {
			return nil, err
		}
		n.trans = noPipeline{raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
			Stream:  n.tls,
			MaxPool: 3,
			Timeout: 10 * time.Second,
			Logger:  logger.Named("raft-net"),
		})}
	}
	if n.trans == nil {
		n.plainTCP = true
		n.trans, err = raft.NewTCPTransportWithConfig(cfg.BindAddr, nil, &raft.NetworkTransportConfig{
			MaxPool: 3,
			Timeout: 10 * time.Second,
			Logger:  logger.Named("raft-net"),
		})
		if err != nil {
			return nil, fmt.Errorf("bind_addr: listen on %s: %w: %w", cfg.BindAddr, fault.Unavailable, err)
		}
	}

	rc := cfg.raftConfig()
	rc.Logger = logger.Named("raft")
	if bootstrap {
		existing, err := raft.HasExistingState(n.store, n.store, n.snaps)
		if err != nil {
			return nil, fmt.Errorf("read raft state: %w", err)
		}
		if !existing {
			self := raft.Server{Suffrage: raft.Voter, ID: rc.LocalID, Address: n.trans.LocalAddr()}
			err := raft.BootstrapCluster(rc, n.store, n.store, n.snaps, n.trans, raft.Configuration{Servers: []raft.Server{self}})
			if err != nil {
				return nil, fmt.Errorf("bootstrap cluster: %w", err)
			}
		}
	}
	if n.raft, err = raft.NewRaft(rc, fsm, n.store, n.store, n.snaps, n.trans); err != nil {
		return nil, fmt.Errorf("start raft: %w", err)
	}
	n.peers = watchPeers(n.raft)
	if n.tls != nil {
		lookup := n.serverAt
		n.tls.peerID.Store(&lookup)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return n, nil
}

// nodeIDKey is where the stable store records the node ID the data directory belongs to.
var nodeIDKey = []byte("hsmpool/node_id")

// bindNodeID records the node ID in a new data directory and refuses another one later:
// with a changed ID the node would not find itself in the cluster configuration and would
// never lead.
func bindNodeID(store raft.StableStore, id string) error {
	got, err := store.Get(nodeIDKey)
	if errors.Is(err, raftboltdb.ErrKeyNotFound) || (err == nil && len(got) == 0) {
		if err := store.Set(nodeIDKey, []byte(id)); err != nil {
			return fmt.Errorf("record node_id: %w", err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("read node_id: %w", err)
	}
	if string(got) != id {
		return fmt.Errorf("node_id: %w: data_dir belongs to node %q, not %q", fault.BadParameter, got, id)
	}
	return nil
}

// enqueueTimeout is how long raft.Apply may wait to queue a command: until ctx's
// deadline, or for ever (0) without one.
func enqueueTimeout(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return max(time.Until(dl), time.Nanosecond)
	}
	return 0
}

// makePrivateDir creates dir 0700 if it does not exist, and refuses it if it is not a
// directory or group or others can reach it.
func makePrivateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("data_dir: %w: %w", fault.BadParameter, err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("data_dir: %w: %w", fault.BadParameter, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("data_dir: %w: %q is not a directory", fault.BadParameter, dir)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("data_dir: %w: %q has mode %04o; group and others must have no access (chmod 700)", fault.BadParameter, dir, perm)
	}
	return nil
}

// Apply proposes cmd and waits until it is committed and applied to this node's FSM,
// then returns what the FSM's Apply returned. If that is an error value, Apply returns
// it wrapped (errors.Is and errors.As see it, and so does fault.Of) and no response.
// It is the only caller of raft.Apply.
//
// Apply waits at most until ctx ends, and then returns ctx.Err() unchanged. A Raft
// proposal cannot be withdrawn: a command already handed to Raft may still commit and be
// applied after Apply has returned ctx.Err(). If ctx has already ended when Apply is
// called, the command is not proposed.
//
// Errors: fault.NotLeader when this node is not the leader (the message names the
// leader when known; the command was not proposed); fault.Unavailable when the node is
// closed, or could not queue the command before ctx's deadline (not proposed); and
// fault.Unavailable wrapping ErrOutcomeUnknown when the node shut down or lost its
// leadership while Raft held the command — it may have committed, so a caller retries
// only commands the FSM recognises as repeats.
func (n *Node) Apply(ctx context.Context, cmd []byte) (any, error) {
	_, resp, err := n.ApplyIndex(ctx, cmd)
	return resp, err
}

// ApplyIndex is Apply that also returns the Raft index at which the command was applied,
// also when the FSM answered an error (then resp is nil and err wraps that error). The
// index is 0 when the command was not applied (any error from Raft or ctx). A follower
// that forwarded a command waits until its own FSM has applied that index.
func (n *Node) ApplyIndex(ctx context.Context, cmd []byte) (uint64, any, error) {
	if err := ctx.Err(); err != nil {
		return 0, nil, err
	}
	if n.closed.Load() {
		return 0, nil, fmt.Errorf("apply: %w", errClosed)
	}
	// index and resp are read only once f has returned without error.
	var index uint64
	var resp any
	err := n.wait(ctx, "apply", func() error {
		// With a deadline, Raft gives up queuing at the deadline (ErrEnqueueTimeout: not
		// proposed) instead of proposing the command after Apply has returned.
		f := n.raft.Apply(cmd, enqueueTimeout(ctx))
		if err := f.Error(); err != nil {
			return n.raftError("apply", err)
		}
		index, resp = f.Index(), f.Response()
		return nil
	})
	if err != nil {
		return 0, nil, err
	}
	if err, ok := resp.(error); ok {
		return index, nil, fmt.Errorf("apply: %w", err)
	}
	return index, resp, nil
}

// VerifyLeader returns nil once a quorum has confirmed that this node still leads, so that an
// index read before the call is the commit index of the current leader (a read index). It
// fails with fault.NotLeader when the node does not lead (or lost leadership meanwhile).
func (n *Node) VerifyLeader(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if n.closed.Load() {
		return fmt.Errorf("verify leader: %w", errClosed)
	}
	return n.wait(ctx, "verify leader", func() error {
		if err := n.raft.VerifyLeader().Error(); err != nil {
			return n.raftError("verify leader", err)
		}
		return nil
	})
}

// Barrier waits until every command committed before it has been applied to this
// node's FSM; the leader uses it after an election to serve reads that include every
// earlier write. It waits at most until ctx ends, then returns ctx.Err() unchanged.
// Only the leader can place a barrier: elsewhere it fails with fault.NotLeader.
func (n *Node) Barrier(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if n.closed.Load() {
		return fmt.Errorf("barrier: %w", errClosed)
	}
	return n.wait(ctx, "barrier", func() error {
		if err := n.raft.Barrier(0).Error(); err != nil {
			return n.raftError("barrier", err)
		}
		return nil
	})
}

// WaitLeader waits until this node knows a leader (itself or another) or ctx ends, and
// then returns ctx.Err() unchanged. It fails with fault.Unavailable once the node is
// closed.
func (n *Node) WaitLeader(ctx context.Context) error {
	t := time.NewTicker(leaderPoll)
	defer t.Stop()
	for {
		if n.closed.Load() {
			return fmt.Errorf("wait for leader: %w", errClosed)
		}
		if addr, _ := n.raft.LeaderWithID(); addr != "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Snapshot takes a snapshot now and then compacts the log down to TrailingLogs
// entries. It is not an error if nothing was applied since the last snapshot. It waits
// at most until ctx ends, and then returns ctx.Err() unchanged; the snapshot goes on.
func (n *Node) Snapshot(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if n.closed.Load() {
		return fmt.Errorf("snapshot: %w", errClosed)
	}
	return n.wait(ctx, "snapshot", func() error {
		err := n.raft.Snapshot().Error()
		if errors.Is(err, raft.ErrNothingNewToSnapshot) {
			return nil
		} else if err != nil {
			return n.raftError("snapshot", err)
		}
		return nil
	})
}

// wait runs f, which waits for a Raft future, and returns its error; or ctx.Err() if
// ctx ends first, or fault.Unavailable if the node is closed first. Either way f runs
// on and its result is dropped. The second escape is needed because Raft never answers a
// future still queued in its apply channel when it shuts down (hashicorp/raft#498; the
// channel is buffered because of BatchApplyCh), so f may never return; Close closes
// n.done only after Raft has stopped, when every future that will be answered has been.
func (n *Node) wait(ctx context.Context, op string, f func() error) error {
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		select {
		case err := <-done: // both happened: the result wins
			return err
		default:
			return ctx.Err()
		}
	case <-n.done:
		select {
		case err := <-done:
			return err
		default:
			// Raft held the command when it shut down (hashicorp/raft#498: it may never
			// answer); it may have committed.
			return fmt.Errorf("%s: %w: %w", op, errClosed, ErrOutcomeUnknown)
		}
	}
}

// State is a node's Raft role. The zero value is not a valid state.
type State uint8

const (
	_ State = iota
	Follower
	Candidate
	Leader
	// Shutdown: the node is closed or closing.
	Shutdown
)

var stateNames = [...]string{Follower: "follower", Candidate: "candidate", Leader: "leader", Shutdown: "shutdown"}

func (s State) String() string {
	if int(s) < len(stateNames) && stateNames[s] != "" {
		return stateNames[s]
	}
	return "invalid state"
}

func stateOf(s raft.RaftState) State {
	switch s {
	case raft.Follower:
		return Follower
	case raft.Candidate:
		return Candidate
	case raft.Leader:
		return Leader
	default:
		return Shutdown
	}
}

// Status is a node's view of the cluster at one moment.
type Status struct {
	NodeID  string
	Address string // this node's transport address
	State   State
	// Term is the current Raft term.
	Term uint64
	// LastIndex is the index of the last log entry (or snapshot) this node has;
	// CommitIndex the last it knows to be committed; AppliedIndex the last Raft has handed
	// to its FSM (which may still be applying it); LastSnapshotIndex the last one in its
	// newest snapshot.
	LastIndex, CommitIndex, AppliedIndex, LastSnapshotIndex uint64
	// LeaderID and LeaderAddr name the leader this node knows, or are empty.
	LeaderID, LeaderAddr string
	// LastContact is when this node last heard from the leader: zero on the leader itself
	// and on a node that never heard from one. A follower's reads are at most
	// time.Since(LastContact) plus the apply lag behind the leader's.
	LastContact time.Time
	// Followers is, on the leader only, every other server of the latest configuration
	// with what the leader knows of its replication; nil elsewhere.
	Followers []FollowerStatus
}

// FollowerStatus is the leader's view of one other server. hashicorp/raft exposes no
// per-follower match index or last contact (raft.Stats reports this node only); what it
// does report is each failed heartbeat to a follower and its resumption, and that is what
// Unreachable and LastContact come from. A follower's lag in entries needs its own
// Status (over the node-to-node API, to come with issue 7).
type FollowerStatus struct {
	Server
	// Unreachable: the leader's latest heartbeat to it failed and none has succeeded since.
	Unreachable bool
	// LastContact is, while Unreachable, the last time the leader reached it (zero if
	// never since this node became leader); zero otherwise.
	LastContact time.Time
}

// Status reports the node's role, term, indexes, and on the leader its followers. It works
// on a closed node too.
func (n *Node) Status() Status {
	addr, id := n.raft.LeaderWithID()
	state := stateOf(n.raft.State())
	if n.closed.Load() {
		state, addr, id = Shutdown, "", ""
	}
	var lastContact time.Time
	var followers []FollowerStatus
	if state == Leader {
		followers = n.followers()
	} else if state != Shutdown {
		lastContact = n.raft.LastContact()
	}
	return Status{
		LastContact:       lastContact,
		Followers:         followers,
		NodeID:            n.id,
		Address:           string(n.trans.LocalAddr()),
		State:             state,
		Term:              n.raft.CurrentTerm(),
		LastIndex:         n.raft.LastIndex(),
		CommitIndex:       n.raft.CommitIndex(),
		AppliedIndex:      n.raft.AppliedIndex(),
		LastSnapshotIndex: n.snaps.last.Load(),
		LeaderID:          string(id),
		LeaderAddr:        string(addr),
	}
}

// Close shuts Raft down, closes the transport and the log store. Calls waiting in
// Apply, Barrier or Snapshot return fault.Unavailable with ErrOutcomeUnknown: Raft may
// have committed their command before it stopped. A goroutine per such call stays
// blocked on Raft's abandoned future for the life of the process (hashicorp/raft#498).
// Later calls do nothing and return the first call's error.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		n.closed.Store(true)
		n.closeErr = n.release()
		close(n.done)
	})
	return n.closeErr
}

// release stops whatever part of the node is running, in reverse order of Open.
func (n *Node) release() error {
	var errs []error
	if n.raft != nil {
		// Shutdown also closes the transport.
		errs = append(errs, n.raft.Shutdown().Error())
		if n.peers != nil {
			n.peers.stop(n.raft)
		}
	} else if c, ok := n.trans.(raft.WithClose); ok {
		errs = append(errs, c.Close())
	}
	if n.store != nil {
		errs = append(errs, n.store.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close node: %w", err)
	}
	return nil
}

// noPipeline is the network transport without pipelined replication, so that the leader sends
// each follower one AppendEntries at a time (each carrying up to MaxAppendEntries entries).
// hashicorp/raft's pipeline can deadlock when a follower fails a pipelined AppendEntries, as
// every follower does to a deposed leader: the replication goroutine parks handing the next
// request to the pipeline's decoder while the decoder parks handing back the previous answer,
// the pipeline is never closed, and Raft.Shutdown waits for them forever. TestCluster5Faults
// saw it: a leader stopped with SIGSTOP and continued stepped down, kept three such
// goroutines, and did not stop on SIGTERM (grafana/pyroscope#5518 describes the same deadlock
// and disables pipelining too).
type noPipeline struct{ *raft.NetworkTransport }

func (noPipeline) AppendEntriesPipeline(raft.ServerID, raft.ServerAddress) (raft.AppendPipeline, error) {
	return nil, raft.ErrPipelineReplicationNotSupported
}
