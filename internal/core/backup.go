package core

import (
	"bytes"
	"context"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/hsmpool/hsmpool/internal/fault"
	"github.com/hsmpool/hsmpool/internal/hsm"
	"github.com/hsmpool/hsmpool/internal/rpcerr"
	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

// A key backup is magic || iv(12) || tag(16) || AES-256-GCM(backup key, KeyRecord) with the magic
// as additional data. The backup key is a domain secret, so a backup restores only into a pool of
// the same security domain; the versions inside are still wrapped under the domain KEK.
var backupMagic = []byte("hsmpool-key-backup-v1\x00")

const maxBackup = 4 << 20

func (c *Core) withBackupKey(ctx context.Context, fn func(k *hsm.Key) error) error {
	p := c.st.Pool()
	return c.cache.Use(ctx, "pool/backup-key", func(ctx context.Context) (*hsm.Key, error) {
		return c.hsm.Unwrap(ctx, c.kek.Load(), p.BackupKey, hsm.Spec{Type: hsm.AES, Bits: 256}, hsm.UseEncrypt|hsm.UseDecrypt, nil)
	}, fn)
}

func (s *keysServer) BackupKey(ctx context.Context, r *pb.KeyRef) (*pb.Blob, error) {
	c := s.c
	rec, err := c.st.Key(r.Name)
	if err != nil {
		return nil, err
	}
	plain, err := proto.MarshalOptions{Deterministic: true}.Marshal(rec)
	if err != nil {
		return nil, err
	}
	var ct hsm.Ciphertext
	err = c.withBackupKey(ctx, func(k *hsm.Key) (err error) {
		ct, err = c.hsm.Encrypt(ctx, k, hsm.A256GCM, plain, nil, backupMagic)
		return err
	})
	if err != nil {
		return nil, err
	}
	blob := bytes.Join([][]byte{backupMagic, ct.IV, ct.Tag, ct.Value}, nil)
	return &pb.Blob{Value: blob}, nil
}

func (s *keysServer) RestoreKey(ctx context.Context, r *pb.Blob) (*pb.Key, error) {
	c := s.c
	invalid := rpcerr.New(fault.BadParameter, "BadParameter", "The backup blob is not valid for this pool: it is damaged, or it was made by a pool of another security domain.")
	b := r.Value
	if len(b) > maxBackup || len(b) < len(backupMagic)+12+16 || !bytes.HasPrefix(b, backupMagic) {
		return nil, invalid
	}
	b = b[len(backupMagic):]
	ct := hsm.Ciphertext{IV: b[:12], Tag: b[12:28], Value: b[28:]}
	var plain []byte
	err := c.withBackupKey(ctx, func(k *hsm.Key) (err error) {
		plain, err = c.hsm.Decrypt(ctx, k, hsm.A256GCM, ct, backupMagic)
		return err
	})
	if err != nil {
		if k := fault.Of(err); k == fault.BadParameter || k == fault.Forbidden || k == fault.HSMFailure {
			return nil, invalid
		}
		return nil, err
	}
	rec := &pb.KeyRecord{}
	if err := proto.Unmarshal(plain, rec); err != nil || checkName(rec.Name) != nil || len(rec.Versions) == 0 {
		return nil, invalid
	}
	rec.Deletion = nil
	if _, err := c.st.Key(rec.Name); err == nil {
		return nil, rpcerr.New(fault.Conflict, "Conflict", "Key %s already exists: a backup restores only under a free name (delete and purge the key first).", rec.Name)
	}
	if err := c.propose(ctx, c.now(), &pb.Command{Op: &pb.Command_RestoreKey{RestoreKey: &pb.RestoreKey{Key: rec}}}); err != nil {
		return nil, err
	}
	return s.latestKey(c.st.Key(rec.Name))
}

// RunHousekeeping carries out, while this node leads, the rotations that keys' policies make due
// and the purges of deleted keys whose retention has run out. It returns when ctx ends.
func (c *Core) RunHousekeeping(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c.housekeep(ctx)
	}
}

func (c *Core) housekeep(ctx context.Context) {
	if !c.clu.IsLeader() || c.kek.Load() == nil {
		return
	}
	now := c.now()
	for _, name := range c.st.DueRotations(now) {
		if k, err := c.rotate(ctx, name, false); err != nil {
			c.log.Warn("scheduled rotation failed", "key", name, "err", err)
		} else {
			c.log.Info("key rotated by its policy", "key", name, "version", k.Version)
		}
	}
	for _, name := range c.st.ExpiredDeletions(now) {
		rec, err := c.st.DeletedKey(name)
		if err != nil {
			continue
		}
		if err := c.propose(ctx, now, &pb.Command{Op: &pb.Command_PurgeKey{PurgeKey: &pb.PurgeKey{Name: name}}}); err != nil {
			c.log.Warn("purge of an expired deleted key failed", "key", name, "err", err)
			continue
		}
		c.forget(ctx, rec)
		c.log.Info("deleted key purged after its retention", "key", name)
	}
}
