package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// ErrClosed is returned by Record and Close on a Log that is closed.
var ErrClosed = errors.New("audit: log closed")

// Log appends audit lines to a file; see the package doc for the line format and the chain. Open one with Open, and
// Close it.
type Log struct {
	path     string
	interval time.Duration // fsync policy; 0: in every Record
	maxSize  int64         // rotate when the file reaches it; 0: never

	mu    sync.Mutex
	f     *os.File
	size  int64    // of f
	seq   uint64   // of the last line written, in the whole chain; 0 before the first
	prev  [32]byte // hash of the last line written
	buf   []byte   // the line being written, kept for its capacity
	dirty bool     // written since the last fsync
	err   error    // once set, every Record returns it

	stop chan struct{} // closed by Close to end syncLoop
	done chan struct{} // closed by syncLoop when it ends
}

// Option configures Open.
type Option func(*options) error

type options struct {
	interval time.Duration
	maxSize  int64
	verify   bool
}

// WithSync sets how often the file is synced to disk: at most every d while lines are written (the default is 100
// ms), or, with d = 0, in every Record before it returns. Lines reach the operating system in Record either way;
// the interval bounds what a power loss can take (see the package doc).
func WithSync(d time.Duration) Option {
	return func(o *options) error {
		if d < 0 {
			return fmt.Errorf("sync interval %v: want 0 or more", d)
		}
		o.interval = d
		return nil
	}
}

// WithMaxSize makes the Log rotate its file once it reaches n bytes: the file is renamed PATH.TIME, TIME being the
// UTC time of the rotation as 20060102T150405.000000000Z (so that rotated files sort by name in chain order), and a
// new PATH continues the chain: its first line has the next seq, and the hash of the old file's last line as prev.
// The default, 0, never rotates. A file can exceed n by one line.
func WithMaxSize(n int64) Option {
	return func(o *options) error {
		if n < 0 {
			return fmt.Errorf("max size %d: want 0 (never rotate) or more", n)
		}
		o.maxSize = n
		return nil
	}
}

// WithVerify makes Open verify the whole existing file, as Verify does, before it appends to it. Without it Open
// reads and checks only the last line, so that a large file opens fast.
func WithVerify() Option {
	return func(o *options) error {
		o.verify = true
		return nil
	}
}

// rotatedLayout is the time suffix of a rotated file's name.
const rotatedLayout = "20060102T150405.000000000Z"

// Open opens the audit file at path for appending, creating it with mode 0600 if it does not exist; its directory
// must exist. Lines already in the file are continued: the next line has the seq after the last line's and its hash
// as prev, so that a restart continues one chain. If the file is missing or empty and rotated files of it exist (see
// WithMaxSize), the chain continues from the newest of them.
//
// Open fails if the last line of the file is not an audit line, or is cut short, as a crash in the middle of a write
// leaves it; the file then needs an operator's look ("hsmpool audit verify") before the daemon appends to it.
func Open(path string, opts ...Option) (*Log, error) {
	o := options{interval: 100 * time.Millisecond}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, fmt.Errorf("audit: open %s: %w", path, err)
		}
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	l := &Log{path: path, interval: o.interval, maxSize: o.maxSize, f: f}
	if err := l.resume(o.verify); err != nil {
		f.Close()
		return nil, fmt.Errorf("audit: open %s: %w", path, err)
	}
	if l.interval > 0 {
		l.stop, l.done = make(chan struct{}), make(chan struct{})
		go l.syncLoop()
	}
	return l, nil
}

// resume sets size, seq and prev from the file, or from the newest rotated file if it is empty.
func (l *Log) resume(verify bool) error {
	fi, err := l.f.Stat()
	if err != nil {
		return err
	}
	l.size = fi.Size()
	if l.size > 0 {
		if verify {
			s, err := Verify(io.NewSectionReader(l.f, 0, l.size))
			if err != nil {
				return err
			}
			l.seq = s.LastSeq
			_, err = hex.Decode(l.prev[:], []byte(s.LastHash))
			return err
		}
		l.seq, l.prev, err = lastLine(l.f, l.size)
		return err
	}
	rotated, err := l.newestRotated()
	if err != nil || rotated == "" {
		return err
	}
	f, err := os.Open(rotated)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err = f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() == 0 {
		return nil
	}
	l.seq, l.prev, err = lastLine(f, fi.Size())
	if err != nil {
		return fmt.Errorf("continue from %s: %w", rotated, err)
	}
	return nil
}

// newestRotated returns the path of the newest rotated file of l.path, or "" if there is none.
func (l *Log) newestRotated() (string, error) {
	dir, base := filepath.Split(l.path)
	if dir == "" {
		dir = "."
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	newest := ""
	for _, e := range ents {
		suffix, ok := strings.CutPrefix(e.Name(), base+".")
		if !ok || !e.Type().IsRegular() {
			continue
		}
		if _, err := time.Parse(rotatedLayout, suffix); err == nil && e.Name() > newest {
			newest = e.Name()
		}
	}
	if newest == "" {
		return "", nil
	}
	return filepath.Join(dir, newest), nil
}

// lastLine reads the last line of the size bytes of f, checks that it is a whole audit line, and returns its seq and
// hash.
func lastLine(f io.ReaderAt, size int64) (seq uint64, hash [32]byte, err error) {
	start := max(0, size-(maxLine+2))
	b := make([]byte, size-start)
	if _, err := f.ReadAt(b, start); err != nil {
		return 0, hash, err
	}
	if b[len(b)-1] != '\n' {
		return 0, hash, errors.New("the last line is cut short (no newline at its end); check the file with \"hsmpool audit verify\"")
	}
	b = b[:len(b)-1]
	i := bytes.LastIndexByte(b, '\n')
	if i < 0 && start > 0 {
		return 0, hash, errors.New("the last line is longer than 64 KiB: not an audit line")
	}
	b = b[i+1:]
	var buf []byte
	p, err := parseLine(b, &buf)
	if err != nil {
		return 0, hash, fmt.Errorf("the last line: %w; check the file with \"hsmpool audit verify\"", err)
	}
	return p.seq, sha256.Sum256(b), nil
}

// Record appends e to the log as one line. e.Outcome must be set; a zero e.Time is replaced by the current time. The
// line is in the operating system when Record returns, and on disk after the next sync (see WithSync).
//
// An error means the line was not recorded. After an error of the file itself (a failed write that could not be
// undone, a failed sync or rotation) the chain's state is uncertain, and every later Record returns that error: the
// caller decides whether requests go on unaudited or stop.
func (l *Log) Record(e Entry) error {
	if !e.Outcome.valid() {
		return fmt.Errorf("audit: record: outcome %q: want success, denied or failed", e.Outcome)
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return l.err
	}
	if l.maxSize > 0 && l.size >= l.maxSize {
		if err := l.rotate(); err != nil {
			l.err = fmt.Errorf("audit: rotate %s: %w", l.path, err)
			return l.err
		}
	}
	b := appendLine(l.buf[:0], l.seq+1, &l.prev, &e)
	if len(b) > maxLine {
		return fmt.Errorf("audit: record: the line would be %d bytes, more than 64 KiB", len(b))
	}
	b = append(b, '\n')
	l.buf = b
	n, err := l.f.Write(b)
	if err != nil {
		err = fmt.Errorf("audit: write %s: %w", l.path, err)
		if n > 0 {
			// Take back the part of the line that was written, or the chain is broken for good.
			if terr := l.f.Truncate(l.size); terr != nil {
				l.err = errors.Join(err, fmt.Errorf("audit: take back a partial line: %w", terr))
				return l.err
			}
		}
		return err
	}
	l.size += int64(n)
	l.seq++
	l.prev = sha256.Sum256(b[:len(b)-1])
	if l.interval == 0 {
		if err := l.f.Sync(); err != nil {
			l.err = fmt.Errorf("audit: sync %s: %w", l.path, err)
			return l.err
		}
		return nil
	}
	l.dirty = true
	return nil
}

// rotate renames the full file and starts a new one. It is called with l.mu held.
func (l *Log) rotate() error {
	if err := l.f.Sync(); err != nil {
		return err
	}
	if err := l.f.Close(); err != nil {
		return err
	}
	rotated := l.path + "." + time.Now().UTC().Format(rotatedLayout)
	if err := os.Rename(l.path, rotated); err != nil {
		return err
	}
	f, err := os.OpenFile(l.path, os.O_RDWR|os.O_APPEND|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	l.f, l.size, l.dirty = f, 0, false
	// Make the rename and the new file durable, so that a restart finds the chain where it left it.
	dir, err := os.Open(filepath.Dir(l.path))
	if err != nil {
		return err
	}
	defer dir.Close()
	return dir.Sync()
}

// syncLoop syncs the file every l.interval when lines were written, until Close.
func (l *Log) syncLoop() {
	defer close(l.done)
	t := time.NewTicker(l.interval)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		l.mu.Lock()
		f, dirty := l.f, l.dirty
		l.dirty = false
		l.mu.Unlock()
		if !dirty {
			continue
		}
		// Without the mutex: Record goes on while the disk flushes. A file closed meanwhile by rotate was synced.
		if err := f.Sync(); err != nil && !errors.Is(err, os.ErrClosed) {
			l.mu.Lock()
			if l.err == nil {
				l.err = fmt.Errorf("audit: sync %s: %w", l.path, err)
			}
			l.mu.Unlock()
		}
	}
}

// Sync writes the lines recorded so far to disk.
func (l *Log) Sync() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return l.err
	}
	l.dirty = false
	if err := l.f.Sync(); err != nil {
		l.err = fmt.Errorf("audit: sync %s: %w", l.path, err)
		return l.err
	}
	return nil
}

// Close syncs the file to disk and closes it. Record fails with ErrClosed after it. Close returns the error that made
// Record fail, if one did, so that it is not missed.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.f == nil {
		l.mu.Unlock()
		return ErrClosed
	}
	f, prevErr := l.f, l.err
	l.f, l.err, l.dirty = nil, ErrClosed, false
	l.mu.Unlock()
	if l.stop != nil {
		close(l.stop)
		<-l.done
	}
	errs := []error{prevErr}
	if err := f.Sync(); err != nil {
		errs = append(errs, fmt.Errorf("audit: sync %s: %w", l.path, err))
	}
	if err := f.Close(); err != nil {
		errs = append(errs, fmt.Errorf("audit: close %s: %w", l.path, err))
	}
	return errors.Join(errs...)
}
