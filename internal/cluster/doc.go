// Package cluster runs a node's Raft engine: hashicorp/raft with the log and stable
// store in DataDir/raft.db (raft-boltdb/v2, bbolt), a file snapshot store in
// DataDir/snapshots keeping the two newest snapshots, and a transport on Config.BindAddr:
// mutual TLS 1.3 with node certificates from the pool CA when Config.TLS is set (what a
// cluster of several nodes runs on), plain TCP for a single node otherwise, or one the
// caller injects.
//
// [Open] starts a [Node] around a raft.FSM (package fsm's, in the daemon): on a fresh data
// directory it can bootstrap a cluster of one voter, itself; on an existing one it resumes
// from the newest snapshot and the log. [Node.Apply] is the one function that calls
// raft.Apply: it proposes a command, waits until this node's FSM has applied it, and
// merges Raft's error with the FSM's response, so that an FSM that returns an error value
// (a business error, such as "key exists") gives the caller that error. Raft's own errors
// are mapped to fault kinds in one table (errors.go): not the leader is fault.NotLeader,
// a closed or shut-down node fault.Unavailable.
//
// Membership: on the leader, [Node.AddVoter] adds a node that was opened without bootstrap
// and [Node.RemoveServer] removes one; [Node.Configuration] and [Node.Leader] report the
// cluster as this node knows it, [Node.Status] its indexes and, on the leader, the
// followers' reachability. The join protocol (join token, node certificate, domain KEK
// transfer) and forwarding writes from followers to the leader are not here yet (issue 7;
// docs/cluster.md says what is left).
//
// # Determinism
//
// Every node applies the same commands in the same order and must reach the same state,
// also when it replays its log or restores a snapshot years later. So the FSM reads
// nothing but the command and its own state: no clock, no randomness, no HSM, no network,
// no map-iteration order in what it writes, not even raft.Log.AppendedAt. Timestamps,
// IDs and already-wrapped key blobs travel inside the command, made by the proposer
// before Apply. The FSM returns business failures as error values (they are replicated
// outcomes, the same on every node) and panics on an infrastructure failure it cannot
// apply past (a crashed node beats a diverged one).
//
// # Batching
//
// raft.Config.BatchApplyCh is on: commands proposed concurrently are taken from Raft's
// apply channel together, written to the log with one fsync and replicated in one
// message, up to 1,024 (MaxAppendEntries) at a time. If the FSM also implements
// raft.BatchingFSM, Raft hands it the committed commands as one ApplyBatch call instead
// of one Apply each; Node needs no change for that, and each Apply still gets its own
// response.
//
// # Concurrency
//
// A Node is safe for concurrent use. Apply may be called from any number of goroutines;
// the commands are applied one at a time in log order, which for concurrent calls is the
// order in which Raft took them from its apply channel, not an order the callers can
// rely on; calls made one after another by one goroutine (each waiting for the previous)
// are applied in that order. When Apply returns, its command is applied on this node,
// so a read of the local FSM state that follows sees it.
//
// Apply, Barrier, Snapshot, AddVoter and RemoveServer wait for a Raft future, which cannot be cancelled: when
// their context ends first they return ctx.Err() unchanged and the operation goes on —
// a command that Raft already holds may still commit. The FSM is called from Raft's
// goroutines, one call at a time (Apply, ApplyBatch and Snapshot on the FSM goroutine;
// Persist of a taken snapshot may run concurrently with later Apply calls, which is why
// Snapshot must capture an immutable view). Close shuts Raft down; a command in flight
// then either succeeds or fails with fault.Unavailable and ErrOutcomeUnknown (it may have
// committed), and every later call fails with fault.Unavailable.
//
// # Security
//
// DataDir is created 0700 and refused if group or others can reach it; raft.db is
// 0600, snapshot directories 0700 and their files 0600. The log and the snapshots hold
// the replicated state, which by design carries wrapped key blobs and public keys, never
// plaintext keys.
//
// The TLS transport speaks TLS 1.3 only, with ALPN "hsmpool-raft/1", and both ends
// present a node certificate (pki.CA.IssueNode). A node accepts a connection only from a
// certificate that chains to TLS.CAs, has client-auth usage and names a node ID that
// TLS.Allowed accepts; a node dialling another accepts only a certificate that chains to
// TLS.CAs, has server-auth usage, names the ID the cluster configuration has at the
// dialled address (host names are not checked: the ID is the identity) and that
// TLS.Allowed accepts. Allowed is asked at every handshake, so withdrawing a removed node
// from it refuses its certificate from the next connection on; RemoveServer also closes
// the connections the removed node had opened to the leader, but other nodes keep theirs
// until they close. Open refuses a TLS.GetCertificate whose certificate does not name
// Config.NodeID or does not chain to TLS.CAs. The plain TCP transport neither
// authenticates nor encrypts: it suits a single node bound to loopback, and AddVoter
// refuses to run on it.
package cluster
