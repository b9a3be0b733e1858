// Package fsm is the hashicorp/raft state machine of a node: it decodes each committed log
// entry as a protobuf [pb.Command], applies it to a [state.State] at the entry's index, and
// hands Raft the result; it snapshots the state as a marshalled pb.State and restores from
// one. The state's own rules (what each command does, its errors, determinism) live in package
// state; this package only translates between Raft and the state.
//
// A command the state refuses is a replicated outcome, not a failure of the node: Apply returns
// the *rpcerr.Error as the log entry's response value, and cluster.Node.Apply gives it to the
// proposer. Bytes that do not decode as a Command cannot have come from [Encode]; they are
// logged and answered with a fault.Internal error, the same on every node, so the node goes on
// and stays consistent with its peers.
//
// # Concurrency
//
// Raft calls Apply, ApplyBatch, Snapshot and Restore from one goroutine, one at a time; Persist
// of a taken snapshot runs concurrently with later Apply calls, which is safe because Snapshot
// has already marshalled the bytes. The state may be read concurrently by any number of
// goroutines throughout.
//
// # Security
//
// Log entries and snapshots hold what the state holds — wrapped key blobs, public keys, hashes
// of client secrets — and never plaintext keys or secrets. Logs name the entry's index, its
// command ID and operation, never its contents. Restore reads at most [MaxSnapshotSize] bytes.
package fsm

import (
	"fmt"
	"io"
	"log/slog"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/hsmpool/hsmpool/internal/fault"
	"github.com/hsmpool/hsmpool/internal/rpcerr"
	"github.com/hsmpool/hsmpool/internal/state"
	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

// MaxSnapshotSize bounds the snapshot Restore reads into memory, so that a corrupt or hostile
// snapshot cannot exhaust it. A state this large would be millions of key versions.
const MaxSnapshotSize = 1 << 30

// snapshotLimit is MaxSnapshotSize; tests lower it.
var snapshotLimit int64 = MaxSnapshotSize

// FSM is the raft.FSM (and raft.BatchingFSM) over a state.State.
type FSM struct {
	state *state.State
	log   *slog.Logger
}

var (
	_ raft.FSM         = (*FSM)(nil)
	_ raft.BatchingFSM = (*FSM)(nil)
)

// New returns the FSM that applies Raft's log to s, logging to logger (nil: no log). From now
// on only the FSM should write to s; anyone may read it.
func New(s *state.State, logger *slog.Logger) *FSM {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &FSM{state: s, log: logger}
}

// Encode marshals cmd for raft.Apply. It is deterministic (map entries sorted), so a command
// encodes to the same bytes wherever it is made.
func Encode(cmd *pb.Command) ([]byte, error) {
	if cmd == nil {
		return nil, fmt.Errorf("encode command: %w: the command is nil", fault.BadParameter)
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(cmd)
	if err != nil {
		return nil, fmt.Errorf("encode command %s: %w: %w", cmd.Id, fault.Internal, err)
	}
	return b, nil
}

// Apply applies one committed log entry and returns its response: nil when the command
// succeeded, the *rpcerr.Error that refused it otherwise. Entries other than commands are
// skipped (nil).
func (f *FSM) Apply(l *raft.Log) any {
	if l == nil || l.Type != raft.LogCommand {
		return nil
	}
	cmd := new(pb.Command)
	if err := proto.Unmarshal(l.Data, cmd); err != nil {
		f.log.Error("raft log entry is not a command", "index", l.Index, "bytes", len(l.Data), "error", err)
		// The state still counts the entry as applied, so that its index moves on.
		_ = f.state.Apply(l.Index, nil)
		return &rpcerr.Error{Kind: fault.Internal, Msg: "the replicated command could not be decoded"}
	}
	if len(cmd.ProtoReflect().GetUnknown()) > 0 {
		// A newer node proposed fields or an operation this node does not know: applying what
		// it knows may diverge from the nodes that know more. docs/state.md: upgrade every
		// node before proposing new commands.
		f.log.Error("raft command has fields this node does not know; upgrade it",
			"index", l.Index, "id", cmd.Id, "op", opName(cmd))
	}
	if err := f.state.Apply(l.Index, cmd); err != nil {
		f.log.Debug("raft command refused", "index", l.Index, "id", cmd.Id, "op", opName(cmd), "error", err)
		// err is always a non-nil interface here; returning it as any keeps it so.
		return err
	}
	return nil
}

// ApplyBatch applies the entries in order, one Apply each, and returns their responses in the
// same order. Raft also passes configuration entries here; they are skipped (nil).
func (f *FSM) ApplyBatch(logs []*raft.Log) []any {
	out := make([]any, len(logs))
	for i, l := range logs {
		out[i] = f.Apply(l)
	}
	return out
}

// Snapshot marshals the state now (Raft does not call Apply meanwhile) and returns a snapshot
// that only writes those bytes, so that Persist can run while Apply goes on.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	b, err := f.state.MarshalSnapshot()
	if err != nil {
		return nil, fmt.Errorf("fsm snapshot: %w", err)
	}
	return &snapshot{data: b}, nil
}

// Restore replaces the state with the snapshot rc holds, reading at most MaxSnapshotSize bytes,
// and closes rc.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, snapshotLimit+1))
	if err != nil {
		return fmt.Errorf("fsm restore: read snapshot: %w", err)
	}
	if int64(len(b)) > snapshotLimit {
		return fmt.Errorf("fsm restore: %w: the snapshot is larger than %d bytes", fault.Internal, snapshotLimit)
	}
	if err := f.state.RestoreSnapshot(b); err != nil {
		return fmt.Errorf("fsm restore: %w", err)
	}
	live, deleted := f.state.KeyCount()
	f.log.Info("state restored from snapshot", "bytes", len(b), "live_keys", live, "deleted_keys", deleted)
	return nil
}

// snapshot is a marshalled state waiting to be persisted. data is never modified.
type snapshot struct {
	data []byte
}

// Persist writes the snapshot to sink and closes it, or cancels it on error so that Raft
// discards the partial snapshot.
func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s.data); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("persist snapshot: %w", err)
	}
	return nil
}

// Release does nothing: the bytes are garbage once Raft drops the snapshot.
func (*snapshot) Release() {}

// opName names cmd's operation for logs: the oneof field's name, or "none".
func opName(cmd *pb.Command) string {
	m := cmd.ProtoReflect()
	if fd := m.WhichOneof(m.Descriptor().Oneofs().ByName("op")); fd != nil {
		return string(fd.Name())
	}
	return "none"
}
