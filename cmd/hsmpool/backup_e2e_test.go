//go:build cgo

package main

import (
	"os"
	"path"
	"path/filepath"
	"testing"

	"github.com/hsmpool/hsmpool/pkg/client"
)

// TestBackupEndToEnd runs "hsmpool backup" and "hsmpool restore" against a real pool, to a
// directory: a full backup, a full restore of a lost key, a selective restore, the job status.
func TestBackupEndToEnd(t *testing.T) {
	requireSoftHSM(t)
	dir := t.TempDir()
	t.Setenv(client.EnvFile, startDevPool(t, filepath.Join(dir, "pool")))
	t.Setenv("HSMPOOL_SAS_TOKEN", "")
	c := &cli{t: t, dir: dir}
	for _, o := range []string{"o1", "o2", "o3"} {
		c.ok("sd", "officer-keygen", "--out", c.path(o), "--bits", "2048", "--no-passphrase")
	}
	c.ok("sd", "download", "--cert", c.path("o1.cer"), "--cert", c.path("o2.cer"), "--cert", c.path("o3.cer"), "--quorum", "2", "-o", c.path("sd.json"))
	c.ok("key", "create", "k1", "--kty", "EC-HSM", "--curve", "P-256")
	version := c.keyJSON("k1").Key.KID

	// Flag mistakes never reach the pool.
	c.failsWith("--uri is required", "backup", "start")
	c.failsWith("needs a SAS token", "backup", "start", "--uri", "https://acct.blob.core.windows.net/c")
	c.failsWith("give one", "backup", "start", "--uri", "https://acct.blob.core.windows.net/c", "--token", "x", "--token-file", "f")
	c.failsWith("--folder is required", "restore", "start", "--uri", "file://"+dir)

	backups := c.path("backups")
	if err := os.Mkdir(backups, 0o700); err != nil {
		t.Fatal(err)
	}
	uri := "file://" + backups
	out := c.ok("backup", "start", "--uri", uri, "--wait")
	c.match(out, `(?m)^status: +Succeeded$`)
	folderURI := c.field(out, "folder")
	folder := path.Base(folderURI)
	status := c.ok("backup", "status", c.field(out, "job"))
	c.match(status, `(?m)^status: +Succeeded$`, `(?m)^folder: +`+folderURI+`$`)
	c.mode(filepath.Join("backups", folder, "backup.blob"), 0o600)

	c.ok("key", "delete", "k1")
	c.ok("key", "purge", "k1")
	out = c.ok("restore", "start", "--uri", uri, "--folder", folder, "--wait")
	c.match(out, `(?m)^status: +Succeeded$`)
	if got := c.keyJSON("k1").Key.KID; got != version {
		t.Errorf("k1 after the full restore is %s, want %s", got, version)
	}
	c.ok("restore", "status", c.field(out, "job"))

	c.ok("key", "delete", "k1")
	c.ok("key", "purge", "k1")
	c.ok("restore", "start", "--uri", uri, "--folder", folder, "--key", "k1", "--wait")
	if got := c.keyJSON("k1").Key.KID; got != version {
		t.Errorf("k1 after the selective restore is %s, want %s", got, version)
	}
	c.failsWith("Conflict", "restore", "start", "--uri", uri, "--folder", folder, "--key", "k1")
	c.failsWith("NotFound", "restore", "start", "--uri", uri, "--folder", "mhsm-none-20000101000000", "--wait")
}
