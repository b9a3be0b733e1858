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

// raftErrors is the one table from Raft's errors to fault kinds. NotLeader means the
// command was not proposed here and may be sent to the leader; Unavailable means retry
// later, and for an Apply whose command was already proposed (leadership lost) that the
// command may still commit.
var raftErrors = []struct {
	err  error
	kind fault.Kind
	what string
}{
	{raft.ErrNotLeader, fault.NotLeader, ""},
	{raft.ErrLeadershipTransferInProgress, fault.NotLeader, "leadership is being transferred"},
	{raft.ErrLeadershipLost, fault.Unavailable, "leadership was lost before the command was committed; it may still commit"},
	{raft.ErrAbortedByRestore, fault.Unavailable, "a snapshot restore aborted the command"},
	{raft.ErrRaftShutdown, fault.Unavailable, "node is shut down"},
	{raft.ErrEnqueueTimeout, fault.Unavailable, "timed out queuing the command"},
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
		return fmt.Errorf("%s: %w: %s: %w", op, e.kind, what, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}
