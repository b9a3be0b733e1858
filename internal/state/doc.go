// Package state is the replicated model of a pool: the pool record (name, tenant, settings,
// principals, custom role definitions, role assignments, the activated security domain) and its keys, live and soft-deleted, with every
// version's metadata, public key and wrapped blob. [State.Apply] is the deterministic function
// that every node runs on every command of the Raft log; package fsm feeds it, the core reads
// it. docs/state.md describes the commands, their errors and the snapshot format.
//
// # Determinism
//
// Apply reads nothing but its command and the state: no clock (times come from Command.time),
// no randomness (version IDs and wrapped blobs are made by the proposer), no map-iteration
// order in anything it stores or returns. So every node that applies the same log, or restores
// the same snapshot and applies the same tail, holds the same state, and [State.MarshalSnapshot]
// writes the same bytes. A command that fails is refused whole: Apply validates everything
// before it changes anything, and the failure (an *rpcerr.Error) is itself the replicated
// outcome, the same on every node.
//
// # Immutability
//
// Records are immutable once stored. Every reader — [State.Key], [State.Version], [State.List],
// [State.Pool], [State.Principal], [State.RoleDefinition], [State.AssignmentsOf] and the other
// access readers — gets the stored pointer itself, shared with other readers and
// with later snapshots, and must never modify it (or anything it points to, such as a version's
// tags map or key_ops slice); a caller that wants to change one clones it with proto.Clone.
// Apply never modifies a stored message either: it builds new messages, sharing the unchanged
// parts, and swaps the pointers. That is what makes reads cheap (no copy, a read lock held only
// to fetch pointers) and a snapshot a consistent view without stopping Apply.
//
// # Concurrency
//
// A State is safe for concurrent use. Apply and RestoreSnapshot are serialised against each
// other; readers take a read lock only to look up pointers, and wait only while Apply swaps
// them in (the work of building the new records happens before). A reader sees each command
// entirely or not at all.
//
// # Security
//
// The state holds wrapped key blobs, public keys, hashes of client secrets and client
// certificates, never plaintext key material or secrets: whatever a snapshot or a log entry leaks is what the design already
// puts on every node's disk. Error messages name keys and versions, never their contents.
package state
