package core

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/hsmpool/hsmpool/internal/blobstore"
	"github.com/hsmpool/hsmpool/internal/fault"
	"github.com/hsmpool/hsmpool/internal/hsm"
	"github.com/hsmpool/hsmpool/internal/rpcerr"
	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

// A full backup is a folder mhsm-<pool>-<UTC yyyymmddhhmmss> holding two objects:
//
//   - backup.blob: fullBackupMagic || iv(12) || tag(16) || AES-256-GCM(backup key, pb.State),
//     the state as MarshalSnapshot writes it, with the magic as additional data. The backup key
//     is a domain secret held in the HSM, so the blob opens only in a pool of the same security
//     domain (this pool, or one recovered from its security domain); the key versions inside are
//     still wrapped under the domain KEK.
//   - manifest.json: what the folder is (format, pool, time, key counts), unsealed, no secrets.
//     It is written last: a folder without it is an unfinished backup.
var fullBackupMagic = []byte("hsmpool-full-backup-v1\x00")

const (
	backupObject   = "backup.blob"
	manifestObject = "manifest.json"
	probeObject    = "prebackup-check"
	backupFormat   = 1
	// jobTimeout bounds a job; a job outlives the call that started it.
	jobTimeout = 30 * time.Minute
	// keptJobs is how many finished jobs a node remembers for their pollers.
	keptJobs = 64
)

// BackupStore is where full backups go: a blob container or a directory (internal/blobstore).
type BackupStore interface {
	// Put writes data as object name of folder.
	Put(ctx context.Context, folder, name string, data []byte) error
	// Get reads object name of folder; a missing one is a fault.NotFound error.
	Get(ctx context.Context, folder, name string) ([]byte, error)
	// Delete removes object name of folder; a missing one is not an error.
	Delete(ctx context.Context, folder, name string) error
	// FolderURI is the absolute URI of folder, without a token.
	FolderURI(folder string) string
}

// manifest is manifest.json.
type manifest struct {
	Format      int    `json:"format"`
	Pool        string `json:"pool"`
	Time        string `json:"time"`
	Keys        int    `json:"keys"`
	DeletedKeys int    `json:"deletedKeys"`
	Sealed      string `json:"sealed"`
}

// jobs is this node's registry of backup and restore jobs: in memory, one running at a time.
type jobs struct {
	mu      sync.Mutex
	running bool
	byID    map[string]*job
	order   []string // IDs, oldest first
}

type job struct {
	restore bool // a restore job (polled at /restore); otherwise a backup job
	st      *pb.BackupJob
}

func (j *jobs) start(restore bool, now time.Time) (*pb.BackupJob, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.running {
		return nil, rpcerr.New(fault.Conflict, "Conflict", "another backup or restore is running: a pool runs one at a time")
	}
	if j.byID == nil {
		j.byID = map[string]*job{}
	}
	for len(j.order) >= keptJobs {
		delete(j.byID, j.order[0])
		j.order = j.order[1:]
	}
	st := &pb.BackupJob{JobId: newID(), Status: "InProgress", StartTime: now.Unix()}
	j.byID[st.JobId] = &job{restore: restore, st: st}
	j.order = append(j.order, st.JobId)
	j.running = true
	return proto.Clone(st).(*pb.BackupJob), nil
}

func (j *jobs) finish(id string, fn func(st *pb.BackupJob)) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.running = false
	if jb := j.byID[id]; jb != nil {
		fn(jb.st)
	}
}

func (j *jobs) get(id string, restore bool) (*pb.BackupJob, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	jb := j.byID[id]
	if jb == nil || jb.restore != restore {
		return nil, rpcerr.New(fault.NotFound, "NotFound", "There is no job %s on this pool.", trunc(id))
	}
	return proto.Clone(jb.st).(*pb.BackupJob), nil
}

type backupServer struct {
	pb.UnsafeBackupServer
	c *Core
}

// openStore checks a location and opens it.
func (c *Core) openStore(loc *pb.StorageLocation) (BackupStore, error) {
	if loc.GetUseManagedIdentity() {
		return nil, bad("useManagedIdentity is not supported: a pool has no managed identity; give a SAS token.")
	}
	if loc.GetUri() == "" {
		return nil, bad("storageResourceUri is required.")
	}
	open := c.openBackupStore
	if open == nil {
		open = func(uri, token string) (BackupStore, error) { return blobstore.Open(uri, token) }
	}
	s, err := open(loc.GetUri(), loc.GetToken())
	if err != nil {
		var e *rpcerr.Error
		if errors.As(err, &e) {
			return nil, err
		}
		return nil, rpcerr.New(fault.Of(err), "", "%s", err.Error())
	}
	return s, nil
}

func (c *Core) requireActivated(ctx context.Context) error {
	ready, err := c.kekReady(ctx)
	if err != nil {
		return err
	}
	if !ready {
		return &rpcerr.Error{Kind: fault.Conflict, Code: "Conflict", Inner: "PoolNotActivated", Msg: "the pool is not activated: download its security domain first"}
	}
	return nil
}

// run starts fn as the background job st; fn returns the folder URI (backups) or an error.
func (c *Core) run(st *pb.BackupJob, what string, fn func(ctx context.Context) (string, error)) {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), jobTimeout)
		defer cancel()
		uri, err := fn(ctx)
		now := c.now()
		c.jobs.finish(st.JobId, func(j *pb.BackupJob) {
			j.EndTime = max(now.Unix(), j.StartTime)
			if err != nil {
				e := rpcerr.From(err)
				j.Status, j.ErrorCode, j.ErrorMessage = "Failed", jobCode(e), e.Msg
				j.StatusDetails = e.Msg
				return
			}
			j.Status, j.FolderUri = "Succeeded", uri
			j.StatusDetails = what + " succeeded"
		})
		if err != nil {
			c.log.Warn("backup job failed", "job", st.JobId, "what", what, "err", err)
		} else {
			c.log.Info("backup job done", "job", st.JobId, "what", what, "folder", uri)
		}
	}()
}

func jobCode(e *rpcerr.Error) string {
	if e.Code != "" {
		return e.Code
	}
	switch e.Kind {
	case fault.NotFound:
		return "NotFound"
	case fault.BadParameter, fault.Unsupported:
		return "BadParameter"
	case fault.Forbidden:
		return "Forbidden"
	case fault.Conflict, fault.AlreadyExists:
		return "Conflict"
	case fault.Unavailable, fault.NotLeader:
		return "ServiceUnavailable"
	}
	return "InternalServerError"
}

func (s *backupServer) StartBackup(ctx context.Context, r *pb.BackupRequest) (*pb.BackupJob, error) {
	c := s.c
	if err := c.requireActivated(ctx); err != nil {
		return nil, err
	}
	store, err := c.openStore(r.GetLocation())
	if err != nil {
		return nil, err
	}
	st, err := c.jobs.start(false, c.now())
	if err != nil {
		return nil, err
	}
	pool := c.st.Pool().GetName()
	folder := fmt.Sprintf("mhsm-%s-%s", pool, time.Unix(st.StartTime, 0).UTC().Format("20060102150405"))
	if r.GetCheckOnly() {
		c.run(st, "prebackup", func(ctx context.Context) (string, error) {
			if err := store.Put(ctx, folder, probeObject, []byte("hsmpool prebackup check\n")); err != nil {
				return "", err
			}
			return "", store.Delete(ctx, folder, probeObject)
		})
		return st, nil
	}
	c.run(st, "backup", func(ctx context.Context) (string, error) { return c.fullBackup(ctx, store, folder) })
	return st, nil
}

func (c *Core) fullBackup(ctx context.Context, store BackupStore, folder string) (string, error) {
	if _, err := store.Get(ctx, folder, manifestObject); err == nil {
		return "", rpcerr.New(fault.Conflict, "Conflict", "The folder %s already holds a backup; start the backup again in a second.", store.FolderURI(folder))
	}
	plain, err := c.st.MarshalSnapshot()
	if err != nil {
		return "", err
	}
	var st pb.State
	if err := proto.Unmarshal(plain, &st); err != nil {
		return "", fmt.Errorf("read the state snapshot: %w: %w", fault.Internal, err)
	}
	var ct hsm.Ciphertext
	err = c.withBackupKey(ctx, func(k *hsm.Key) (err error) {
		ct, err = c.hsm.Encrypt(ctx, k, hsm.A256GCM, plain, nil, fullBackupMagic)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("seal the backup: %w", err)
	}
	blob := bytes.Join([][]byte{fullBackupMagic, ct.IV, ct.Tag, ct.Value}, nil)
	if err := store.Put(ctx, folder, backupObject, blob); err != nil {
		return "", err
	}
	m := manifest{Format: backupFormat, Pool: st.GetPool().GetName(), Time: c.now().UTC().Format(time.RFC3339), Sealed: backupObject}
	for _, k := range st.Keys {
		if k.Deletion == nil {
			m.Keys++
		} else {
			m.DeletedKeys++
		}
	}
	mb, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return "", err
	}
	if err := store.Put(ctx, folder, manifestObject, append(mb, '\n')); err != nil {
		return "", err
	}
	return store.FolderURI(folder), nil
}

// openBackup reads and unseals the backup in folder.
func (c *Core) openBackup(ctx context.Context, store BackupStore, folder string) (*pb.State, error) {
	b, err := store.Get(ctx, folder, backupObject)
	if err != nil {
		return nil, err
	}
	invalid := rpcerr.New(fault.BadParameter, "InvalidBackup", "The backup in %s cannot be restored into this pool: it was made by a pool of another security domain, or it is damaged.", store.FolderURI(folder))
	if len(b) < len(fullBackupMagic)+12+16 || !bytes.HasPrefix(b, fullBackupMagic) {
		return nil, invalid
	}
	b = b[len(fullBackupMagic):]
	ct := hsm.Ciphertext{IV: b[:12], Tag: b[12:28], Value: b[28:]}
	var plain []byte
	err = c.withBackupKey(ctx, func(k *hsm.Key) (err error) {
		plain, err = c.hsm.Decrypt(ctx, k, hsm.A256GCM, ct, fullBackupMagic)
		return err
	})
	if err != nil {
		if k := fault.Of(err); k == fault.BadParameter || k == fault.Forbidden || k == fault.HSMFailure {
			return nil, invalid
		}
		return nil, err
	}
	st := &pb.State{}
	if err := proto.Unmarshal(plain, st); err != nil {
		return nil, invalid
	}
	return st, nil
}

func checkFolder(folder string) error {
	if folder == "" {
		return bad("folderToRestore is required: the name of the backup's folder, as the backup job reported it.")
	}
	return nil
}

func (s *backupServer) StartRestore(ctx context.Context, r *pb.RestoreRequest) (*pb.BackupJob, error) {
	c := s.c
	if err := c.requireActivated(ctx); err != nil {
		return nil, err
	}
	if err := checkFolder(r.GetFolder()); err != nil {
		return nil, err
	}
	store, err := c.openStore(r.GetLocation())
	if err != nil {
		return nil, err
	}
	st, err := c.jobs.start(true, c.now())
	if err != nil {
		return nil, err
	}
	if r.GetCheckOnly() {
		c.run(st, "prerestore", func(ctx context.Context) (string, error) {
			_, err := c.openBackup(ctx, store, r.Folder)
			return "", err
		})
		return st, nil
	}
	c.run(st, "restore", func(ctx context.Context) (string, error) {
		backup, err := c.openBackup(ctx, store, r.Folder)
		if err != nil {
			return "", err
		}
		old := c.allKeys()
		err = c.propose(ctx, c.now(), &pb.Command{Op: &pb.Command_RestoreState{RestoreState: &pb.RestoreState{State: backup}}})
		// Whatever the outcome, no handle unwrapped before may stay: a restored key may reuse
		// a name and version with other material.
		for _, rec := range append(old, c.allKeys()...) {
			c.forget(context.WithoutCancel(ctx), rec)
		}
		return "", err
	})
	return st, nil
}

// allKeys returns every key of the state, live and deleted.
func (c *Core) allKeys() []*pb.KeyRecord {
	var out []*pb.KeyRecord
	for _, deleted := range []bool{false, true} {
		after := ""
		for {
			recs, more := c.st.List(deleted, after, 1000)
			out = append(out, recs...)
			if !more || len(recs) == 0 {
				break
			}
			after = recs[len(recs)-1].Name
		}
	}
	return out
}

func (s *backupServer) StartKeyRestore(ctx context.Context, r *pb.KeyRestoreRequest) (*pb.BackupJob, error) {
	c := s.c
	if err := c.requireActivated(ctx); err != nil {
		return nil, err
	}
	if err := checkName(r.GetName()); err != nil {
		return nil, err
	}
	if r.GetFolder() == "" {
		return nil, bad("folder is required: the name of the backup's folder, as the backup job reported it.")
	}
	if err := c.keyNameFree(r.Name); err != nil {
		return nil, err
	}
	store, err := c.openStore(r.GetLocation())
	if err != nil {
		return nil, err
	}
	st, err := c.jobs.start(true, c.now())
	if err != nil {
		return nil, err
	}
	c.run(st, "selective key restore", func(ctx context.Context) (string, error) {
		backup, err := c.openBackup(ctx, store, r.Folder)
		if err != nil {
			return "", err
		}
		i := slices.IndexFunc(backup.Keys, func(k *pb.KeyRecord) bool { return k.GetName() == r.Name })
		if i < 0 {
			return "", rpcerr.New(fault.NotFound, "KeyNotFound", "The backup in %s holds no key %s.", store.FolderURI(r.Folder), r.Name)
		}
		if err := c.keyNameFree(r.Name); err != nil {
			return "", err
		}
		rec := proto.Clone(backup.Keys[i]).(*pb.KeyRecord)
		rec.Deletion = nil
		err = c.propose(ctx, c.now(), &pb.Command{Op: &pb.Command_RestoreKey{RestoreKey: &pb.RestoreKey{Key: rec}}})
		c.forget(context.WithoutCancel(ctx), rec)
		return "", err
	})
	return st, nil
}

// keyNameFree refuses a name that a live or deleted key holds.
func (c *Core) keyNameFree(name string) error {
	if _, err := c.st.Key(name); err == nil {
		return rpcerr.New(fault.Conflict, "Conflict", "Key %s already exists: a selective restore restores only under a free name (delete and purge the key first).", name)
	}
	if _, err := c.st.DeletedKey(name); err == nil {
		return rpcerr.New(fault.Conflict, "Conflict", "Key %s is deleted but recoverable: purge it before restoring it from a backup.", name)
	}
	return nil
}

func (s *backupServer) GetBackupStatus(ctx context.Context, r *pb.JobRef) (*pb.BackupJob, error) {
	return s.c.jobs.get(r.GetJobId(), false)
}

func (s *backupServer) GetRestoreStatus(ctx context.Context, r *pb.JobRef) (*pb.BackupJob, error) {
	return s.c.jobs.get(r.GetJobId(), true)
}
