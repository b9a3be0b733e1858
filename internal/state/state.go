package state

import (
	"context"
	"slices"
	"strings"
	"sync"

	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

// State is the replicated model of one pool. The zero value is not usable; call [New].
//
// Records are immutable once stored: the pointers that the read methods return are shared and
// must not be modified (see the package documentation).
type State struct {
	// applyMu serialises the writers (Apply, RestoreSnapshot). A writer holding it is the only
	// goroutine that changes the fields below, so it may read them without mu while it
	// prepares a change, and takes mu only to swap the result in.
	applyMu sync.Mutex

	mu    sync.RWMutex
	index uint64
	// advanced, when not nil, is closed (and dropped) when index changes: WaitIndex's waiters
	// wake on the apply that reaches their index instead of polling.
	advanced chan struct{}
	pool     *pb.PoolRecord
	// keys holds every key, live or soft-deleted, by name: a name is one or the other.
	keys map[string]*pb.KeyRecord
	// live and deleted are the names in keys, sorted, split by state, so that a page of a
	// listing is a binary search and a slice, not a sort of every name.
	live, deleted []string
	// byClient and byObject index the pool's principals by lowercased client and object ID:
	// both are GUIDs, which compare case-insensitively.
	byClient, byObject map[string]*pb.PrincipalRecord
	// byPrincipal indexes the pool's role assignments by lowercased principal ID, each list
	// sorted by name. A list is never modified once stored (AssignmentsOf hands it out); a
	// change stores a new one.
	byPrincipal map[string][]*pb.RoleAssignment
	// unknown holds the fields of a restored pb.State that this node does not know (written by
	// a newer one), so that its own snapshots pass them on.
	unknown []byte
}

// New returns an empty State: no pool, no keys, index 0.
func New() *State {
	return &State{
		keys:     map[string]*pb.KeyRecord{},
		byClient: map[string]*pb.PrincipalRecord{},
		byObject: map[string]*pb.PrincipalRecord{},

		byPrincipal: map[string][]*pb.RoleAssignment{},
	}
}

// Index returns the Raft index of the last command applied, whether it succeeded or failed. It is
// 0 after New and after RestoreSnapshot until the next Apply: a snapshot does not carry the
// index (Raft's snapshot metadata does).
func (s *State) Index() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.index
}

// WaitIndex returns once the state has applied the Raft index idx, or ctx.Err() unchanged
// when ctx ends first.
func (s *State) WaitIndex(ctx context.Context, idx uint64) error {
	for {
		s.mu.Lock()
		if s.index >= idx {
			s.mu.Unlock()
			return nil
		}
		if s.advanced == nil {
			s.advanced = make(chan struct{})
		}
		ch := s.advanced
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// setIndex records the applied index and wakes WaitIndex's waiters; mu is held.
func (s *State) setIndex(idx uint64) {
	s.index = idx
	if s.advanced != nil {
		close(s.advanced)
		s.advanced = nil
	}
}

// Pool returns the pool record, or nil before InitPool. The record is shared: do not modify it.
func (s *State) Pool() *pb.PoolRecord {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.pool
}

// Key returns the live key named name. A missing or soft-deleted key is a fault.NotFound
// *rpcerr.Error with code KeyNotFound. The record is shared: do not modify it.
func (s *State) Key(name string) (*pb.KeyRecord, error) {
	s.mu.RLock()
	rec := s.keys[name]
	s.mu.RUnlock()
	if rec == nil || rec.Deletion != nil {
		return nil, errKeyNotFound(name)
	}
	return rec, nil
}

// DeletedKey returns the soft-deleted key named name. A missing or live key is a
// fault.NotFound *rpcerr.Error with code KeyNotFound and Azure's "Deleted Key not found" text.
// The record is shared: do not modify it.
func (s *State) DeletedKey(name string) (*pb.KeyRecord, error) {
	s.mu.RLock()
	rec := s.keys[name]
	s.mu.RUnlock()
	if rec == nil || rec.Deletion == nil {
		return nil, errDeletedKeyNotFound(name)
	}
	return rec, nil
}

// Version returns the live key named name and its version version; an empty version is the
// current (latest) one. A missing key or version is a fault.NotFound *rpcerr.Error with code
// KeyNotFound. The records are shared: do not modify them.
func (s *State) Version(name, version string) (*pb.KeyRecord, *pb.KeyVersion, error) {
	rec, err := s.Key(name)
	if err != nil {
		return nil, nil, err
	}
	i := versionIndex(rec, version)
	if i < 0 {
		return nil, nil, errKeyNotFound(name + "/" + version)
	}
	return rec, rec.Versions[i], nil
}

// versionIndex returns the position of version in rec.Versions (the last one for ""), or -1.
// It searches from the newest version, which is the one most callers name.
func versionIndex(rec *pb.KeyRecord, version string) int {
	n := len(rec.GetVersions())
	if version == "" {
		return n - 1
	}
	for i := n - 1; i >= 0; i-- {
		if rec.Versions[i].GetVersion() == version {
			return i
		}
	}
	return -1
}

// List returns up to n keys whose names sort after after (byte-wise), in name order: the live
// keys, or with deleted the soft-deleted ones. more reports whether further keys follow the
// last one returned; a caller pages by passing that key's name as after. With n < 1 List
// returns no keys, and more reports whether any follow after. The records are shared: do not
// modify them.
//
// A page costs a binary search and n map lookups, whatever the number of keys.
func (s *State) List(deleted bool, after string, n int) (recs []*pb.KeyRecord, more bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	names := s.live
	if deleted {
		names = s.deleted
	}
	i, found := slices.BinarySearch(names, after)
	if found {
		i++
	}
	end := i + max(n, 0)
	if end > len(names) || end < i {
		end = len(names)
	}
	if end > i {
		recs = make([]*pb.KeyRecord, 0, end-i)
		for _, name := range names[i:end] {
			recs = append(recs, s.keys[name])
		}
	}
	return recs, end < len(names)
}

// PrincipalByClientID returns the principal whose client ID is clientID, compared
// case-insensitively (client IDs are GUIDs). The record is shared: do not modify it.
func (s *State) PrincipalByClientID(clientID string) (*pb.PrincipalRecord, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	p, ok := s.byClient[strings.ToLower(clientID)]
	return p, ok
}

// Principal returns the principal whose object ID is objectID, compared case-insensitively
// (object IDs are GUIDs). The record is shared: do not modify it.
func (s *State) Principal(objectID string) (*pb.PrincipalRecord, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	p, ok := s.byObject[strings.ToLower(objectID)]
	return p, ok
}

// KeyCount returns the number of live and of soft-deleted keys.
func (s *State) KeyCount() (live, deleted int) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.live), len(s.deleted)
}

// indexPrincipals builds the lookup maps of ps. It reports false if two principals share a
// client or an object ID (case-insensitively), or one lacks either: the lookups would then be
// ambiguous.
func indexPrincipals(ps []*pb.PrincipalRecord) (byClient, byObject map[string]*pb.PrincipalRecord, ok bool) {
	byClient = make(map[string]*pb.PrincipalRecord, len(ps))
	byObject = make(map[string]*pb.PrincipalRecord, len(ps))
	for _, p := range ps {
		c, o := strings.ToLower(p.GetClientId()), strings.ToLower(p.GetObjectId())
		if c == "" || o == "" || byClient[c] != nil || byObject[o] != nil {
			return nil, nil, false
		}
		byClient[c], byObject[o] = p, p
	}
	return byClient, byObject, true
}

// setKey stores rec under name (rec nil: removes the name) and keeps the sorted name lists in
// step. The caller holds mu for writing.
func (s *State) setKey(name string, rec *pb.KeyRecord) {
	old := s.keys[name]
	if old != nil && rec != nil && (old.Deletion == nil) == (rec.Deletion == nil) {
		// Same name, same list: only the record changes (most commands).
		s.keys[name] = rec
		return
	}
	if old != nil {
		if old.Deletion == nil {
			s.live = removeName(s.live, name)
		} else {
			s.deleted = removeName(s.deleted, name)
		}
	}
	if rec == nil {
		delete(s.keys, name)
		return
	}
	s.keys[name] = rec
	if rec.Deletion == nil {
		s.live = insertName(s.live, name)
	} else {
		s.deleted = insertName(s.deleted, name)
	}
}

func insertName(names []string, name string) []string {
	i, found := slices.BinarySearch(names, name)
	if found {
		return names
	}
	return slices.Insert(names, i, name)
}

func removeName(names []string, name string) []string {
	i, found := slices.BinarySearch(names, name)
	if !found {
		return names
	}
	return slices.Delete(names, i, i+1)
}
