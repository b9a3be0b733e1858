package cluster

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// privateSnapshotStore is Raft's file snapshot store with owner-only permissions. The
// file store makes each snapshot directory 0755 and its files 0666 (less the umask);
// that is harmless below the 0700 snapshots/ directory, but the rule is 0700/0600
// everywhere, so when a snapshot is complete (its sink is closed and the directory has
// its final name) the directory and its files are narrowed to 0700 and 0600.
//
// It also remembers the index of the newest complete snapshot, for Status.
type privateSnapshotStore struct {
	*raft.FileSnapshotStore
	dir    string // DataDir/snapshots
	last   atomic.Uint64
	logger hclog.Logger
}

// newSnapshotStore opens the file snapshot store in dataDir, keeping retain snapshots.
func newSnapshotStore(dataDir string, retain int, logger hclog.Logger) (*privateSnapshotStore, error) {
	dir := filepath.Join(dataDir, "snapshots")
	// The file store would make it 0755.
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("snapshot store: %w", err)
	}
	fss, err := raft.NewFileSnapshotStoreWithLogger(dataDir, retain, logger)
	if err != nil {
		return nil, fmt.Errorf("snapshot store: %w", err)
	}
	s := &privateSnapshotStore{FileSnapshotStore: fss, dir: dir, logger: logger}
	// A crash between a snapshot's commit and its narrowing leaves it wider: narrow again.
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("snapshot store: %w", err)
	}
	for _, e := range entries {
		if e.IsDir() {
			if err := narrow(filepath.Join(dir, e.Name())); err != nil {
				return nil, err
			}
		}
	}
	metas, err := fss.List() // newest first
	if err != nil {
		return nil, fmt.Errorf("snapshot store: %w", err)
	}
	if len(metas) > 0 {
		s.last.Store(metas[0].Index)
	}
	return s, nil
}

func (s *privateSnapshotStore) Create(version raft.SnapshotVersion, index, term uint64, configuration raft.Configuration,
	configurationIndex uint64, trans raft.Transport) (raft.SnapshotSink, error) {
	sink, err := s.FileSnapshotStore.Create(version, index, term, configuration, configurationIndex, trans)
	if err != nil {
		return nil, err
	}
	return &privateSnapshotSink{SnapshotSink: sink, store: s, index: index}, nil
}

type privateSnapshotSink struct {
	raft.SnapshotSink
	store *privateSnapshotStore
	index uint64
}

func (s *privateSnapshotSink) Close() error {
	if err := s.SnapshotSink.Close(); err != nil {
		return err
	}
	// The snapshot is committed now: a failure to narrow it must not make Raft think
	// it failed (it would skip compaction); the next Open narrows it again.
	s.store.last.Store(s.index)
	if err := narrow(filepath.Join(s.store.dir, s.SnapshotSink.ID())); err != nil {
		s.store.logger.Warn("cannot narrow snapshot permissions", "error", err)
	}
	return nil
}

// narrow makes dir 0700 and the regular files in it 0600.
func narrow(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // already reaped by a newer snapshot
	} else if err != nil {
		return fmt.Errorf("snapshot permissions: %w", err)
	}
	var errs []error
	for _, e := range entries {
		if e.Type().IsRegular() {
			errs = append(errs, os.Chmod(filepath.Join(dir, e.Name()), 0o600))
		}
	}
	errs = append(errs, os.Chmod(dir, 0o700))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("snapshot permissions: %w", err)
	}
	return nil
}
