package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// EnvFile is the environment variable that names the client file when no path is given.
const EnvFile = "HSMPOOL_CLIENT_FILE"

// ErrNoFile is returned by [Load] when it is given no path and $HSMPOOL_CLIENT_FILE is not set.
var ErrNoFile = errors.New("no client file: give its path, or set $" + EnvFile)

// maxFileSize bounds what ReadFile reads: a client file is a few hundred bytes.
const maxFileSize = 64 << 10

// File is the content of a client file: where a pool is, and how one principal signs in to it. It is meant to be
// read, not written: its JSON form shows the secret as "[REDACTED]".
type File struct {
	// URL is the pool's data-plane URL, https://NAME.managedhsm.SUFFIX[:PORT].
	URL string `json:"url"`
	// Name is the pool's name.
	Name string `json:"name"`
	// TenantID is the pool's tenant: the path segment of its authority.
	TenantID string `json:"tenant_id"`
	// AuthorityHost is the https URL of the pool's identity provider, without the tenant.
	AuthorityHost string `json:"authority_host"`
	// ClientID and ClientSecret are the principal's credentials.
	ClientID     string `json:"client_id"`
	ClientSecret Secret `json:"client_secret"`
	// CAFile is the PEM file of the CA that signs the pool's TLS certificate. A relative path is relative to the
	// client file's directory. Empty means the system's roots.
	CAFile string `json:"ca_file"`
}

// Load reads the client file at path, or at $HSMPOOL_CLIENT_FILE when path is empty; see [ReadFile].
func Load(path string) (*File, error) {
	if path == "" {
		path = os.Getenv(EnvFile)
	}
	if path == "" {
		return nil, ErrNoFile
	}
	return ReadFile(path)
}

// ReadFile reads and checks the client file at path. It refuses a file that is not a regular file, or that its
// group or others may access (it holds a secret), and a file whose fields are missing or malformed. Errors name the
// file and, for a bad field, the field.
func ReadFile(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("client file: %w", err) // os errors name the path
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("client file: %w", err)
	}
	if err := checkMode(path, fi.Mode(), runtime.GOOS); err != nil {
		return nil, err
	}
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("client file %s: %w", path, err)
	}
	defer clear(b)
	if len(b) > maxFileSize {
		return nil, fmt.Errorf("client file %s: larger than %d bytes: not a client file", path, maxFileSize)
	}
	var file File
	if err := json.Unmarshal(b, &file); err != nil {
		return nil, fmt.Errorf("client file %s: not JSON of a client file: %w", path, err)
	}
	if file.CAFile != "" && !filepath.IsAbs(file.CAFile) {
		file.CAFile = filepath.Join(filepath.Dir(path), file.CAFile)
	}
	if err := file.Validate(); err != nil {
		return nil, fmt.Errorf("client file %s: %w", path, err)
	}
	return &file, nil
}

// checkMode refuses a client file that is not a regular file, or that its group or others may read or write. goos
// is runtime.GOOS; on Windows the permission bits mean nothing and only the file type is checked.
func checkMode(path string, mode os.FileMode, goos string) error {
	if !mode.IsRegular() {
		return fmt.Errorf("client file %s: not a regular file", path)
	}
	if goos != "windows" && mode.Perm()&0o077 != 0 {
		return fmt.Errorf("client file %s: its group or others may access it (mode %#o), and it holds a client secret; "+
			"make it private with: chmod 600 %s", path, mode.Perm(), path)
	}
	return nil
}

// Validate checks that every field the client needs is there and well formed; errors name the field.
func (f *File) Validate() error {
	if err := checkHTTPS("url", f.URL); err != nil {
		return err
	}
	if err := checkHTTPS("authority_host", f.AuthorityHost); err != nil {
		return err
	}
	switch {
	case f.TenantID == "":
		return errors.New(`"tenant_id" is missing`)
	case strings.ContainsAny(f.TenantID, "/?#"):
		return fmt.Errorf(`"tenant_id" %q: want a tenant ID, not a path`, f.TenantID)
	case f.ClientID == "":
		return errors.New(`"client_id" is missing`)
	case f.ClientSecret.Len() == 0:
		return errors.New(`"client_secret" is missing`)
	}
	return nil
}

// checkHTTPS checks that the field is an absolute https URL with a host and nothing after the path.
func checkHTTPS(field, s string) error {
	if s == "" {
		return fmt.Errorf("%q is missing", field)
	}
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return fmt.Errorf("%q: %w", field, err)
	case u.Scheme != "https":
		return fmt.Errorf("%q %q: want an https URL", field, s)
	case u.Host == "":
		return fmt.Errorf("%q %q: no host", field, s)
	case u.RawQuery != "" || u.Fragment != "" || u.User != nil:
		return fmt.Errorf("%q %q: want scheme, host and port only", field, s)
	}
	return nil
}

// redacted is how a Secret prints.
const redacted = "[REDACTED]"

// Secret is a client secret. It prints, logs and marshals as "[REDACTED]"; [Secret.Reveal] returns it. It
// unmarshals from a JSON string.
type Secret struct {
	s string
}

// NewSecret returns s as a Secret.
func NewSecret(s string) Secret { return Secret{s: s} }

// Reveal returns the secret itself. Every call site is a place where the secret leaves its wrapper.
func (s Secret) Reveal() string { return s.s }

// Len is the length of the secret; it is not itself secret.
func (s Secret) Len() int { return len(s.s) }

func (Secret) String() string               { return redacted }
func (Secret) GoString() string             { return redacted }
func (Secret) Format(f fmt.State, _ rune)   { _, _ = io.WriteString(f, redacted) }
func (Secret) LogValue() slog.Value         { return slog.StringValue(redacted) }
func (Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }
func (Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// UnmarshalJSON reads the secret from a JSON string.
func (s *Secret) UnmarshalJSON(b []byte) error {
	var v string
	if err := json.Unmarshal(b, &v); err != nil {
		return errors.New(`"client_secret": want a string`) // never b: it may be the secret
	}
	s.s = v
	return nil
}
