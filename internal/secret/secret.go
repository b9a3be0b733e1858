// Package secret holds secret bytes — key material, PINs, tokens, shares — in a type that
// cannot be printed, logged or marshalled by accident.
//
// The only way to read the bytes is [Bytes.Reveal], so every place that touches a secret is
// greppable. Formatting with fmt, log/slog or encoding/json prints "[REDACTED]".
//
// # Security
//
// [Bytes.Wipe] overwrites the buffer with zeros. This is best effort: the Go runtime may
// have copied the bytes (a slice that grew, a string conversion, a cgo copy), and the
// garbage collector does not clear freed memory. Callers keep secrets in one buffer, avoid
// conversions to string, and wipe as soon as the secret is no longer needed.
//
// # Concurrency
//
// A Bytes is not safe for concurrent Wipe and Reveal; share it only read-only.
package secret

import (
	"crypto/subtle"
	"fmt"
	"log/slog"
	"os"
	"strings"
)

const redacted = "[REDACTED]"

// Bytes is a secret byte string. The zero value is empty.
type Bytes struct {
	b []byte
}

// New takes ownership of b: the caller must not use b afterwards except through the
// returned value, which may wipe it.
func New(b []byte) Bytes { return Bytes{b: b} }

// Copy returns a Bytes holding a copy of b; the caller remains responsible for b.
func Copy(b []byte) Bytes { return Bytes{b: append([]byte(nil), b...)} }

// Reveal returns the secret bytes themselves, not a copy. Every call site is a place where
// a secret leaves its wrapper; keep them few.
func (s Bytes) Reveal() []byte { return s.b }

// Len is the length of the secret; it is not itself secret.
func (s Bytes) Len() int { return len(s.b) }

// Equal compares two secrets in constant time (for equal lengths).
func (s Bytes) Equal(t Bytes) bool { return subtle.ConstantTimeCompare(s.b, t.b) == 1 }

// Wipe overwrites the secret with zeros (best effort, see the package doc).
func (s Bytes) Wipe() { clear(s.b) }

func (Bytes) String() string               { return redacted }
func (Bytes) GoString() string             { return redacted }
func (Bytes) Format(f fmt.State, _ rune)   { _, _ = f.Write([]byte(redacted)) }
func (Bytes) LogValue() slog.Value         { return slog.StringValue(redacted) }
func (Bytes) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }
func (Bytes) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// ReadFile reads a secret from a file such as a PIN file. One trailing newline (LF or CRLF)
// is removed, because editors and `echo` add one; other white space is kept.
func ReadFile(path string) (Bytes, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Bytes{}, fmt.Errorf("read secret file %q: %w", path, err)
	}
	n := len(b)
	if n > 0 && b[n-1] == '\n' {
		n--
		if n > 0 && b[n-1] == '\r' {
			n--
		}
	}
	clear(b[n:])
	return Bytes{b: b[:n]}, nil
}

// FromEnv reads a secret from an environment variable. Go strings are immutable, so the
// variable's own copy cannot be wiped. FromEnv leaves the variable set (a CLI may read it
// once per key); a daemon that reads its PIN this way should os.Unsetenv it afterwards so
// that child processes do not inherit it.
func FromEnv(name string) (Bytes, bool) {
	v, ok := os.LookupEnv(name)
	if !ok {
		return Bytes{}, false
	}
	return Bytes{b: []byte(strings.TrimRight(v, "\r\n"))}, true
}
