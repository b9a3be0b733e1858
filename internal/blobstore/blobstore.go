// Package blobstore stores full backups of a pool: in an Azure Blob Storage container reached
// with a SAS token, or in a local directory (file:// URI). A backup is a folder of a few named
// objects; the package knows nothing of what they hold.
//
// # Security
//
// The SAS token is a secret: it is kept only in the container URL the SDK is given, and never
// appears in errors (the URI in messages is the container URI without
// its query). Real blob storage is https; plain http is accepted only for loopback hosts, which
// is how the Azurite emulator is reached in tests. Local files are written 0600 in directories
// 0700, each atomically (a temporary file renamed into place).
//
// # Concurrency
//
// A Store may be used by several goroutines.
package blobstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"github.com/hsmpool/hsmpool/internal/fault"
)

// MaxObject is the largest object Get reads.
const MaxObject = 256 << 20

// Store is a backup location: a blob container or a directory.
type Store interface {
	// Put writes data as object name in folder, creating the folder as needed.
	Put(ctx context.Context, folder, name string, data []byte) error
	// Get reads object name of folder; a missing one is a fault.NotFound error.
	Get(ctx context.Context, folder, name string) ([]byte, error)
	// Delete removes object name of folder; a missing one is not an error.
	Delete(ctx context.Context, folder, name string) error
	// FolderURI is the absolute URI of folder, without any token.
	FolderURI(folder string) string
}

// Open returns the store that uri names: an https URI of a blob container (http for a loopback
// host) with a non-empty SAS token, or a file:// URI of an existing absolute directory, with no
// token. Errors are fault.BadParameter, and name the URI without its query.
func Open(uri, token string) (Store, error) {
	u, err := url.Parse(uri)
	if err != nil || u.Host == "" && u.Scheme != "file" {
		return nil, fmt.Errorf("the storage URI %q is not an absolute URI: %w", redact(uri), fault.BadParameter)
	}
	switch u.Scheme {
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return nil, fmt.Errorf("the file URI %q names host %q: only local directories are supported: %w", uri, u.Host, fault.BadParameter)
		}
		dir := filepath.Clean(u.Path)
		if !filepath.IsAbs(u.Path) {
			return nil, fmt.Errorf("the file URI %q has no absolute path: %w", uri, fault.BadParameter)
		}
		fi, err := os.Stat(dir)
		if err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("the directory %s of the file URI does not exist: %w", dir, fault.BadParameter)
		}
		return &dirStore{dir: dir}, nil
	case "https", "http":
		if u.Scheme == "http" && !loopback(u.Hostname()) {
			return nil, fmt.Errorf("the storage URI %q is http: blob storage is reached over https (http only on a loopback host, for an emulator): %w", redact(uri), fault.BadParameter)
		}
		token = strings.TrimPrefix(token, "?")
		if token == "" {
			return nil, fmt.Errorf("the storage URI %q needs a SAS token: %w", redact(uri), fault.BadParameter)
		}
		p := strings.Trim(u.Path, "/")
		if p == "" || u.RawQuery != "" || u.Fragment != "" {
			return nil, fmt.Errorf("the storage URI %q is not the URI of a blob container (https://account/container, the token apart): %w", redact(uri), fault.BadParameter)
		}
		base := (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: "/" + p}).String()
		c, err := container.NewClientWithNoCredential(base+"?"+token, nil)
		if err != nil {
			return nil, fmt.Errorf("the storage URI %q: %w: %w", base, fault.BadParameter, err)
		}
		return &blobStore{c: c, base: base}, nil
	default:
		return nil, fmt.Errorf("the storage URI %q is neither https (blob storage) nor file: %w", redact(uri), fault.BadParameter)
	}
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// redact drops the query (a SAS token given inside the URI) from uri for messages.
func redact(uri string) string {
	if i := strings.IndexAny(uri, "?#"); i >= 0 {
		return uri[:i]
	}
	return uri
}

func checkName(folder, name string) error {
	for _, s := range []string{folder, name} {
		if s == "" || s == "." || s == ".." || strings.ContainsAny(s, "/\\?#%") {
			return fmt.Errorf("the object name %q/%q is not valid: %w", folder, name, fault.BadParameter)
		}
	}
	return nil
}

type blobStore struct {
	c    *container.Client
	base string
}

func (s *blobStore) FolderURI(folder string) string { return s.base + "/" + folder }

func (s *blobStore) Put(ctx context.Context, folder, name string, data []byte) error {
	if err := checkName(folder, name); err != nil {
		return err
	}
	_, err := s.c.NewBlockBlobClient(folder+"/"+name).UploadBuffer(ctx, data, &blockblob.UploadBufferOptions{})
	return s.fail("write", folder, name, err)
}

func (s *blobStore) Get(ctx context.Context, folder, name string) ([]byte, error) {
	if err := checkName(folder, name); err != nil {
		return nil, err
	}
	r, err := s.c.NewBlobClient(folder+"/"+name).DownloadStream(ctx, nil)
	if err != nil {
		return nil, s.fail("read", folder, name, err)
	}
	defer r.Body.Close()
	b, err := io.ReadAll(io.LimitReader(r.Body, MaxObject+1))
	if err != nil {
		return nil, s.fail("read", folder, name, err)
	}
	if len(b) > MaxObject {
		return nil, fmt.Errorf("read %s/%s: larger than %d bytes: %w", s.FolderURI(folder), name, MaxObject, fault.BadParameter)
	}
	return b, nil
}

func (s *blobStore) Delete(ctx context.Context, folder, name string) error {
	if err := checkName(folder, name); err != nil {
		return err
	}
	_, err := s.c.NewBlobClient(folder+"/"+name).Delete(ctx, nil)
	if bloberror.HasCode(err, bloberror.BlobNotFound) {
		return nil
	}
	return s.fail("delete", folder, name, err)
}

// fail maps a storage error to a fault kind, with a message that holds no token.
func (s *blobStore) fail(op, folder, name string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	where := s.FolderURI(folder) + "/" + name
	switch {
	case bloberror.HasCode(err, bloberror.BlobNotFound, bloberror.ContainerNotFound, bloberror.ResourceNotFound):
		return fmt.Errorf("%s %s: not found: %w", op, where, fault.NotFound)
	case bloberror.HasCode(err, bloberror.AuthenticationFailed, bloberror.AuthorizationFailure,
		bloberror.AuthorizationPermissionMismatch, bloberror.AuthorizationResourceTypeMismatch, bloberror.InsufficientAccountPermissions):
		return fmt.Errorf("%s %s: the SAS token does not allow it: %w", op, where, fault.Forbidden)
	}
	// The SDK's error text holds the request URL, token included: keep only its code.
	if i := strings.Index(err.Error(), "ERROR CODE: "); i >= 0 {
		code, _, _ := strings.Cut(err.Error()[i+len("ERROR CODE: "):], "\n")
		if code = strings.TrimSpace(code); code != "" {
			return fmt.Errorf("%s %s: storage error %s: %w", op, where, code, fault.Unavailable)
		}
	}
	return fmt.Errorf("%s %s: the storage could not be reached: %w", op, where, fault.Unavailable)
}

type dirStore struct{ dir string }

func (s *dirStore) FolderURI(folder string) string {
	return (&url.URL{Scheme: "file", Path: filepath.ToSlash(filepath.Join(s.dir, folder))}).String()
}

func (s *dirStore) Put(ctx context.Context, folder, name string, data []byte) error {
	if err := checkName(folder, name); err != nil {
		return err
	}
	d := filepath.Join(s.dir, folder)
	if err := os.Mkdir(d, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("create %s: %w: %w", d, fault.Forbidden, err)
	}
	f, err := os.CreateTemp(d, "."+name+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w: %w", filepath.Join(d, name), fault.Forbidden, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after a successful rename: nothing to remove
	// CreateTemp makes the file 0600.
	if _, err := io.Copy(f, bytes.NewReader(data)); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w: %w", tmp, fault.Unavailable, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w: %w", tmp, fault.Unavailable, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w: %w", tmp, fault.Unavailable, err)
	}
	if err := os.Rename(tmp, filepath.Join(d, name)); err != nil {
		return fmt.Errorf("rename %s: %w: %w", tmp, fault.Unavailable, err)
	}
	return nil
}

func (s *dirStore) Get(ctx context.Context, folder, name string) ([]byte, error) {
	if err := checkName(folder, name); err != nil {
		return nil, err
	}
	p := filepath.Join(s.dir, folder, name)
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read %s: not found: %w", p, fault.NotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w: %w", p, fault.Forbidden, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxObject+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w: %w", p, fault.Unavailable, err)
	}
	if len(b) > MaxObject {
		return nil, fmt.Errorf("read %s: larger than %d bytes: %w", p, MaxObject, fault.BadParameter)
	}
	return b, nil
}

func (s *dirStore) Delete(ctx context.Context, folder, name string) error {
	if err := checkName(folder, name); err != nil {
		return err
	}
	err := os.Remove(filepath.Join(s.dir, folder, name))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("delete %s: %w: %w", filepath.Join(s.dir, folder, name), fault.Forbidden, err)
	}
	// A folder left empty goes too, as a blob "folder" does (best effort: it may hold others).
	_ = os.Remove(filepath.Join(s.dir, folder))
	return nil
}
