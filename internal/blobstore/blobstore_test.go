package blobstore

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hsmpool/hsmpool/internal/fault"
)

func TestOpen(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, uri, token string
		want             error // nil: opens
	}{
		{"file dir", "file://" + dir, "", nil},
		{"file missing dir", "file://" + dir + "/nope", "", fault.BadParameter},
		{"file relative", "file:relative/dir", "", fault.BadParameter},
		{"file remote host", "file://server" + dir, "", fault.BadParameter},
		{"https container", "https://acct.blob.core.windows.net/backups", "sv=1&sig=x", nil},
		{"https token with ?", "https://acct.blob.core.windows.net/backups", "?sv=1&sig=x", nil},
		{"https no token", "https://acct.blob.core.windows.net/backups", "", fault.BadParameter},
		{"https no container", "https://acct.blob.core.windows.net/", "sig=x", fault.BadParameter},
		{"https token in URI", "https://acct.blob.core.windows.net/c?sig=x", "sig=x", fault.BadParameter},
		{"http remote", "http://acct.blob.core.windows.net/c", "sig=x", fault.BadParameter},
		{"http loopback", "http://127.0.0.1:10000/devstoreaccount1/c", "sig=x", nil},
		{"ftp", "ftp://host/c", "sig=x", fault.BadParameter},
		{"garbage", "::", "", fault.BadParameter},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Open(tt.uri, tt.token)
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("Open(%q) = %v, want %v", tt.uri, err, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), "sig=") {
				t.Errorf("the error shows the token: %v", err)
			}
		})
	}
}

func TestDirStore(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open("file://"+dir, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "f1", "a.bin", []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "f1", "a.bin", []byte("again")); err != nil {
		t.Fatal(err)
	}
	b, err := s.Get(ctx, "f1", "a.bin")
	if err != nil || string(b) != "again" {
		t.Fatalf("Get = %q, %v", b, err)
	}
	for p, want := range map[string]os.FileMode{filepath.Join(dir, "f1"): 0o700, filepath.Join(dir, "f1", "a.bin"): 0o600} {
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, %v; want %v", p, fi.Mode().Perm(), err, want)
		}
	}
	ents, _ := os.ReadDir(filepath.Join(dir, "f1"))
	if len(ents) != 1 {
		t.Errorf("temporary files left: %v", ents)
	}
	if _, err := s.Get(ctx, "f1", "missing"); !errors.Is(err, fault.NotFound) {
		t.Errorf("Get(missing) = %v, want NotFound", err)
	}
	if err := s.Put(ctx, "..", "x", nil); !errors.Is(err, fault.BadParameter) {
		t.Errorf("Put(..) = %v, want BadParameter", err)
	}
	if err := s.Delete(ctx, "f1", "a.bin"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "f1", "a.bin"); err != nil {
		t.Errorf("second Delete: %v", err)
	}
	if got, want := s.FolderURI("f1"), "file://"+dir+"/f1"; got != want {
		t.Errorf("FolderURI = %q, want %q", got, want)
	}
}
