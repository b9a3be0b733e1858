package cluster

import (
	"errors"
	"fmt"
	"strings"

	"github.com/hashicorp/raft"

	"github.com/hsmpool/hsmpool/internal/fault"
)

// errClosed is the error of every call on a closed Node.
var errClosed = fmt.Errorf("node is closed: %w", fault.Unavailable)

// ErrOutcomeUnknown marks an Apply whose command Raft had already taken when the call
// failed (the node closed, or leadership was lost): the command may have committed, or
// may commit later. Such errors are also fault.Unavailable. Retrying one is safe only
// for a command the FSM recognises as a repeat (each command carries its own ID).
var ErrOutcomeUnknown = errors.New("the command may or may not have committed")

// raftErrors is the one table from Raft's errors to fault kinds. NotLeader means the
// command was not proposed here and may be sent to the leader; Unavailable means retry
// later, and for an Apply whose command was already proposed (leadership lost) that the
// command may still commit.
var raftErrors = []struct {
	err     error
	kind    fault.Kind
	what    string
	unknown bool // the command may have committed
}{
	{raft.ErrNotLeader, fault.NotLeader, "", false},
	{raft.ErrLeadershipTransferInProgress, fault.NotLeader, "leadership is being transferred", false},
	{raft.ErrLeadershipLost, fault.Unavailable, "leadership was lost while the command was in flight", true},
	{raft.ErrAbortedByRestore, fault.Unavailable, "a snapshot restore aborted the command", false},
	// At shutdown Raft fails the commands it holds, some of which may be committed already.
	{raft.ErrRaftShutdown, fault.Unavailable, "node shut down while the command was in flight", true},
	{raft.ErrEnqueueTimeout, fault.Unavailable, "timed out queuing the command; it was not proposed", false},
}

// raftError gives err, from the Raft operation op, its fault kind. A NotLeader error
// names the leader when this node knows it.
func (n *Node) raftError(op string, err error) error {
	for _, e := range raftErrors {
		if !errors.Is(err, e.err) {
			continue
		}
		what := e.what
		if e.kind == fault.NotLeader {
			leader := "no leader is known"
			if addr, id := n.raft.LeaderWithID(); addr != "" {
				leader = fmt.Sprintf("the leader is %s at %s", id, addr)
			}
			what = strings.TrimPrefix(what+"; "+leader, "; ")
		}
		if e.unknown {
			return fmt.Errorf("%s: %w: %s: %w: %w", op, e.kind, what, ErrOutcomeUnknown, err)
		}
		return fmt.Errorf("%s: %w: %s: %w", op, e.kind, what, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}
