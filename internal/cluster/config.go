package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/hashicorp/raft"

	"github.com/hsmpool/hsmpool/internal/fault"
)

// Config says how to run one node. Field names in errors are the configuration keys
// (node_id, data_dir, ...) so that the daemon's config errors name the setting.
type Config struct {
	// NodeID is the node's stable Raft server ID. It never changes for a data directory:
	// the cluster configuration in the log names the node by it.
	NodeID string `json:"node_id"`
	// DataDir holds raft.db (the Raft log and stable store, raft-boltdb) and snapshots/
	// (the file snapshot store). Open creates it 0700 and refuses one that group or
	// others can reach.
	DataDir string `json:"data_dir"`
	// BindAddr is the host:port the transport (TLS or plain TCP) listens on and
	// advertises, so its host must be an address other nodes can dial (not 0.0.0.0). Port
	// 0 picks a free port, which suits tests only: a node's address is recorded in the
	// cluster configuration. Not used when Transport is set.
	BindAddr string `json:"bind_addr"`
	// TLS, if set, runs the transport over mutual TLS 1.3 on BindAddr, with node
	// certificates from the pool CA: what a cluster of more than one node needs. Without it
	// (and without Transport) the transport is plain TCP, which neither authenticates nor
	// encrypts and serves a single node bound to loopback; AddVoter refuses to run on it.
	TLS *TLS `json:"-"`
	// Transport, if set, replaces the transport Open would make (tests inject an
	// in-memory one). The node owns it from Open on: Close closes it, and so does a failed
	// Open. Not together with TLS.
	Transport raft.Transport `json:"-"`

	// HeartbeatTimeout is how long a follower waits without hearing from the leader
	// before it starts an election; the leader's lease is half of it. Nothing here bounds
	// how stale a follower's view is: readers that need a bound check Status.LastContact.
	HeartbeatTimeout time.Duration `json:"heartbeat_timeout"`
	// ElectionTimeout is how long a candidate waits for votes. At least HeartbeatTimeout.
	ElectionTimeout time.Duration `json:"election_timeout"`
	// SnapshotInterval is how often Raft checks whether to take a snapshot (each check
	// waits a random time between one and two intervals).
	SnapshotInterval time.Duration `json:"snapshot_interval"`
	// SnapshotThreshold is how many log entries since the last snapshot make a check
	// take a new one.
	SnapshotThreshold uint64 `json:"snapshot_threshold"`
	// TrailingLogs is how many log entries a snapshot leaves in the log, so that a
	// follower slightly behind catches up from the log instead of a whole snapshot.
	TrailingLogs uint64 `json:"trailing_logs"`

	// Logger receives Raft's own log; nil discards it.
	Logger *slog.Logger `json:"-"`
}

// Limits of the timing settings. Raft's own lower bound is 5ms; heartbeat_timeout is
// held to 10ms so that the leader lease, half of it, meets that bound too.
const (
	minTimeout     = 10 * time.Millisecond
	maxTimeout     = time.Minute
	minSnapshotInt = 5 * time.Millisecond
	// retainSnapshots is how many snapshots the file snapshot store keeps.
	retainSnapshots = 2
)

// Default returns a Config with Raft's usual timings (one-second heartbeat, a snapshot
// check every two minutes, a snapshot every 8192 entries keeping 10240); the caller sets
// NodeID, DataDir and BindAddr or Transport.
func Default() Config {
	return Config{
		HeartbeatTimeout:  time.Second,
		ElectionTimeout:   time.Second,
		SnapshotInterval:  2 * time.Minute,
		SnapshotThreshold: 8192,
		TrailingLogs:      10240,
	}
}

// Validate checks the Config without touching the disk or the network.
func (c Config) Validate() error {
	var errs []error
	switch {
	case c.NodeID == "":
		errs = append(errs, errors.New("node_id: a stable node ID is required"))
	case len(c.NodeID) > 128:
		errs = append(errs, fmt.Errorf("node_id: %d bytes is longer than 128", len(c.NodeID)))
	case !printable(c.NodeID):
		errs = append(errs, fmt.Errorf("node_id: %q has characters other than printable ASCII", c.NodeID))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("data_dir: a data directory is required"))
	}
	if c.Transport == nil {
		if err := checkBindAddr(c.BindAddr); err != nil {
			errs = append(errs, fmt.Errorf("bind_addr: %w", err))
		}
	}
	if c.TLS != nil {
		if c.Transport != nil {
			errs = append(errs, errors.New("tls: set either tls or an injected transport, not both"))
		}
		errs = append(errs, c.TLS.validate()...)
	}
	if c.HeartbeatTimeout < minTimeout || c.HeartbeatTimeout > maxTimeout {
		errs = append(errs, fmt.Errorf("heartbeat_timeout: %s is outside %s..%s", c.HeartbeatTimeout, minTimeout, maxTimeout))
	}
	if low := max(c.HeartbeatTimeout, minTimeout); c.ElectionTimeout < low || c.ElectionTimeout > maxTimeout {
		errs = append(errs, fmt.Errorf("election_timeout: %s is outside %s (at least heartbeat_timeout)..%s", c.ElectionTimeout, low, maxTimeout))
	}
	if c.SnapshotInterval < minSnapshotInt {
		errs = append(errs, fmt.Errorf("snapshot_interval: %s is shorter than %s", c.SnapshotInterval, minSnapshotInt))
	}
	if c.SnapshotThreshold == 0 {
		errs = append(errs, errors.New("snapshot_threshold: must be at least 1"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("cluster config: %w: %w", fault.BadParameter, err)
	}
	// Backstop: whatever Raft itself would refuse is a bug in the checks above.
	if err := raft.ValidateConfig(c.raftConfig()); err != nil {
		return fmt.Errorf("cluster config: %w: raft: %w", fault.BadParameter, err)
	}
	return nil
}

// raftConfig is the Raft configuration the Config stands for, without a logger.
func (c Config) raftConfig() *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(c.NodeID)
	rc.HeartbeatTimeout = c.HeartbeatTimeout
	rc.ElectionTimeout = c.ElectionTimeout
	// The lease must not outlast a heartbeat; half of it is Raft's default ratio.
	rc.LeaderLeaseTimeout = max(c.HeartbeatTimeout/2, 5*time.Millisecond)
	rc.SnapshotInterval = c.SnapshotInterval
	rc.SnapshotThreshold = c.SnapshotThreshold
	rc.TrailingLogs = c.TrailingLogs
	// Commands waiting in the apply channel are written to the log and sent to followers
	// together, up to MaxAppendEntries at a time (one fsync per batch); an FSM that
	// implements raft.BatchingFSM is then also handed them together.
	rc.BatchApplyCh = true
	// 1,024 entries per AppendEntries (Raft's default is 64) and a 5 ms commit tick (default
	// 50 ms): a follower that catches up receives its backlog in 1,024-entry messages instead
	// of 64 per tick (10,000 keys: 0.2-0.3 s after its first answer instead of 5-7 s), and a
	// busy leader's batches fill better (docs/benchmarks.md, "Experiment: larger Raft batches").
	// The cost is an idle leader's AppendEntries to each follower every 5-10 ms.
	rc.MaxAppendEntries = 1024
	rc.CommitTimeout = 5 * time.Millisecond
	return rc
}

// checkBindAddr checks that addr is a host:port the TCP transport can listen on and
// advertise. Port 0 is allowed for tests: the cluster configuration keeps the address of
// the first start while the transport listens elsewhere on later ones, which only a
// single-node cluster tolerates.
func checkBindAddr(addr string) error {
	if addr == "" {
		return errors.New("a host:port is required when no transport is given")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port: %w", addr, err)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("%q: port %q is not a number in 0..65535", addr, port)
	}
	if host == "" {
		return fmt.Errorf("%q: the host is missing; bind to the node's own address", addr)
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.IsUnspecified() {
		return fmt.Errorf("%q: %s cannot be advertised to other nodes; bind to the node's own address", addr, host)
	}
	return nil
}

// printable reports whether s is printable ASCII without spaces.
func printable(s string) bool {
	for i := range len(s) {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}
