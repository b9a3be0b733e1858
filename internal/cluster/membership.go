package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/hsmpool/hsmpool/internal/fault"
)

// Suffrage is whether a server votes. The zero value is not a valid suffrage.
type Suffrage uint8

const (
	_ Suffrage = iota
	// Voter: the server votes in elections and counts towards the commit quorum.
	Voter
	// Nonvoter: the server receives the log but does not vote.
	Nonvoter
	// Staging: a server being promoted to voter (Raft does not use it yet).
	Staging
)

var suffrageNames = [...]string{Voter: "voter", Nonvoter: "nonvoter", Staging: "staging"}

func (s Suffrage) String() string {
	if int(s) < len(suffrageNames) && suffrageNames[s] != "" {
		return suffrageNames[s]
	}
	return "invalid suffrage"
}

func suffrageOf(s raft.ServerSuffrage) Suffrage {
	switch s {
	case raft.Voter:
		return Voter
	case raft.Nonvoter:
		return Nonvoter
	default:
		return Staging
	}
}

// Server is one member of the cluster configuration.
type Server struct {
	ID       string
	Address  string
	Suffrage Suffrage
}

// Configuration returns the servers of the latest cluster configuration this node knows,
// sorted by ID. On the leader that configuration may not be committed yet (a membership
// change in flight); on a follower it may be behind the leader's. It fails with
// fault.Unavailable once the node is closed.
func (n *Node) Configuration() ([]Server, error) {
	if n.closed.Load() {
		return nil, fmt.Errorf("configuration: %w", errClosed)
	}
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, n.raftError("configuration", err)
	}
	var out []Server
	for _, s := range f.Configuration().Servers {
		out = append(out, Server{ID: string(s.ID), Address: string(s.Address), Suffrage: suffrageOf(s.Suffrage)})
	}
	slices.SortFunc(out, func(a, b Server) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// serverAt returns the ID of the server the latest configuration places at addr. It does
// not wait for Raft's main loop (the configuration is read from an atomic copy), so the
// transport may call it while dialling.
func (n *Node) serverAt(addr raft.ServerAddress) (string, bool) {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return "", false
	}
	for _, s := range f.Configuration().Servers {
		if s.Address == addr {
			return string(s.ID), true
		}
	}
	return "", false
}

// Leader returns the ID and address of the leader this node knows, both empty when it
// knows none (or is closed). Read together, so that they name the same node.
func (n *Node) Leader() (id, addr string) {
	if n.closed.Load() {
		return "", ""
	}
	a, i := n.raft.LeaderWithID()
	return string(i), string(a)
}

// AddVoter adds the node id, reached at addr, to the cluster as a voter, or changes the
// address of a server already there; on the leader only. It returns when the new
// configuration is committed, which with the new node counted needs a quorum of the new
// configuration; the new node then catches up from the log or a snapshot in the background
// (watch its Status, or the leader's Followers). The new node must run with Open(bootstrap
// false), and both sides' TLS.Allowed must accept each other's IDs.
//
// A configuration change cannot be withdrawn: when ctx ends first AddVoter returns
// ctx.Err() unchanged and the change may still commit. Raft makes one change at a time; a
// second one waits until the first is committed.
//
// Errors: fault.BadParameter for a malformed id or addr; fault.Unsupported on the plain TCP
// transport (it serves one node only); fault.NotLeader, fault.Unavailable (with
// ErrOutcomeUnknown when leadership was lost while the change was in flight) from the
// table in errors.go.
func (n *Node) AddVoter(ctx context.Context, id, addr string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := errors.Join(checkNodeID(id), checkAddr(addr)); err != nil {
		return fmt.Errorf("add voter: %w: %w", fault.BadParameter, err)
	}
	if n.plainTCP {
		return fmt.Errorf("add voter %q: %w: the plain TCP transport serves a single node; configure tls", id, fault.Unsupported)
	}
	if n.closed.Load() {
		return fmt.Errorf("add voter: %w", errClosed)
	}
	return n.wait(ctx, "add voter", func() error {
		f := n.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, enqueueTimeout(ctx))
		if err := f.Error(); err != nil {
			return n.raftError(fmt.Sprintf("add voter %q", id), err)
		}
		return nil
	})
}

// RemoveServer removes the node id from the cluster; on the leader only. It returns when
// the new configuration is committed. The removed node is not told: it stops receiving the
// log, and the caller must also make TLS.Allowed refuse its ID on every node, so that its
// certificate, still valid, is no longer accepted. The leader closes the connections the
// removed node had opened to it. A leader that removes itself steps down once the change
// is committed.
//
// Context and errors are as for AddVoter; an id not in the configuration is
// fault.NotFound.
func (n *Node) RemoveServer(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := checkNodeID(id); err != nil {
		return fmt.Errorf("remove server: %w: %w", fault.BadParameter, err)
	}
	servers, err := n.Configuration()
	if err != nil {
		return fmt.Errorf("remove server %q: %w", id, err)
	}
	if !slices.ContainsFunc(servers, func(s Server) bool { return s.ID == id }) {
		return fmt.Errorf("remove server: %w: node %q is not in the configuration", fault.NotFound, id)
	}
	err = n.wait(ctx, "remove server", func() error {
		f := n.raft.RemoveServer(raft.ServerID(id), 0, enqueueTimeout(ctx))
		if err := f.Error(); err != nil {
			return n.raftError(fmt.Sprintf("remove server %q", id), err)
		}
		return nil
	})
	if err == nil && n.tls != nil {
		n.tls.closePeer(id)
	}
	return err
}

// checkNodeID applies the node_id rules to the ID of another node.
func checkNodeID(id string) error {
	switch {
	case id == "":
		return errors.New("node id is empty")
	case len(id) > 128:
		return fmt.Errorf("node id of %d bytes is longer than 128", len(id))
	case !printable(id):
		return fmt.Errorf("node id %q has characters other than printable ASCII", id)
	}
	return nil
}

// checkAddr checks that addr is a host:port another node can be dialled at.
func checkAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("address %q is not host:port: %w", addr, err)
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return fmt.Errorf("address %q: port %q is not a number in 1..65535", addr, port)
	}
	if host == "" {
		return fmt.Errorf("address %q has no host", addr)
	}
	return nil
}

// peerHealth follows Raft's heartbeat observations on the leader: which followers its
// heartbeats currently fail to reach. The observer is blocking (no observation is dropped,
// so a resumption is never missed); its goroutine only updates a map and runs until Raft
// has shut down, so Raft never waits on it for long.
type peerHealth struct {
	obs  *raft.Observer
	ch   chan raft.Observation
	done chan struct{}

	mu      sync.Mutex
	failing map[string]time.Time // follower ID -> last contact Raft reported at the failure
}

func watchPeers(r *raft.Raft) *peerHealth {
	p := &peerHealth{ch: make(chan raft.Observation, 16), done: make(chan struct{}), failing: map[string]time.Time{}}
	p.obs = raft.NewObserver(p.ch, true, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.FailedHeartbeatObservation, raft.ResumedHeartbeatObservation, raft.RaftState:
			return true
		}
		return false
	})
	r.RegisterObserver(p.obs)
	go p.run()
	return p
}

func (p *peerHealth) run() {
	for {
		select {
		case <-p.done:
			return
		case o := <-p.ch:
			p.mu.Lock()
			switch d := o.Data.(type) {
			case raft.FailedHeartbeatObservation:
				p.failing[string(d.PeerID)] = d.LastContact
			case raft.ResumedHeartbeatObservation:
				delete(p.failing, string(d.PeerID))
			case raft.RaftState:
				// A new term of leadership starts replication afresh, without resumptions.
				clear(p.failing)
			}
			p.mu.Unlock()
		}
	}
}

// stop ends the goroutine; Raft must have shut down, so that nothing more is observed.
func (p *peerHealth) stop(r *raft.Raft) {
	r.DeregisterObserver(p.obs)
	close(p.done)
}

// followers is the leader's view of every other server of the latest configuration.
func (n *Node) followers() []FollowerStatus {
	servers, err := n.Configuration()
	if err != nil {
		return nil
	}
	n.peers.mu.Lock()
	defer n.peers.mu.Unlock()
	out := []FollowerStatus{}
	for _, s := range servers {
		if s.ID == n.id {
			continue
		}
		f := FollowerStatus{Server: s}
		if last, ok := n.peers.failing[s.ID]; ok {
			f.Unreachable, f.LastContact = true, last
		}
		out = append(out, f)
	}
	return out
}
