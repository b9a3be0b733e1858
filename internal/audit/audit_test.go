package audit

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// testEntry is the i-th entry of the tests' logs.
func testEntry(i int) Entry {
	return Entry{
		Time:          time.Date(2026, 1, 2, 15, 4, 5, 123456789+i, time.FixedZone("CET", 3600)),
		RequestID:     fmt.Sprintf("req-%d", i),
		Principal:     "8f3c5a4e-2d1b-4c9a-9e7f-1a2b3c4d5e6f",
		PrincipalName: "app \"one\"\n",
		ClientIP:      "192.0.2.7",
		Operation:     "Sign",
		Action:        "Microsoft.KeyVault/managedHsm/keys/sign/action",
		Scope:         "/keys/k1",
		Key:           "k1",
		Version:       "0123456789abcdef",
		Outcome:       OutcomeSuccess,
		Status:        200,
		Duration:      1234,
	}
}

// writeLog writes n test entries to a new log in a temporary directory and returns its path.
func writeLog(t testing.TB, n int, opts ...Option) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(path, opts...)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := l.Record(testEntry(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// readLines returns the lines of the file at path, without their newlines.
func readLines(t *testing.T, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.SplitAfter(b, []byte("\n"))
	return lines[:len(lines)-1] // after the last newline
}

func verifyFile(t *testing.T, path string) (Summary, error) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return Verify(f)
}

func TestRoundTrip(t *testing.T) {
	path := writeLog(t, 3)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}

	b, _ := os.ReadFile(path)
	sc := bufio.NewScanner(bytes.NewReader(b))
	var buf []byte
	for i := 0; sc.Scan(); i++ {
		p, err := parseLine(sc.Bytes(), &buf)
		if err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		want := testEntry(i)
		want.Time = want.Time.UTC()
		if p.entry != want {
			t.Errorf("line %d: got %+v, want %+v", i+1, p.entry, want)
		}
		if p.seq != uint64(i+1) {
			t.Errorf("line %d: seq %d", i+1, p.seq)
		}
		// Any JSON parser reads the line, with the documented names.
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		if m["time"] != fmt.Sprintf("2026-01-02T14:04:05.%09dZ", 123456789+i) || m["durationUs"] != 1234.0 || m["outcome"] != "success" {
			t.Errorf("line %d: %s", i+1, sc.Bytes())
		}
	}
	if !strings.HasPrefix(string(b), `{"seq":1,"prev":"`+strings.Repeat("0", 64)+`","time":"2026-01-02T14:04:05.123456789Z","requestId":"req-0","principal":"8f3c5a4e-2d1b-4c9a-9e7f-1a2b3c4d5e6f","principalName":"app \"one\"\n","clientIp":"192.0.2.7","operation":"Sign","action":"Microsoft.KeyVault/managedHsm/keys/sign/action","scope":"/keys/k1","key":"k1","version":"0123456789abcdef","outcome":"success","status":200,"durationUs":1234}`+"\n") {
		t.Errorf("first line:\n%s", b)
	}

	s, err := verifyFile(t, path)
	if err != nil {
		t.Fatal(err)
	}
	if s.Lines != 3 || s.FirstSeq != 1 || s.LastSeq != 3 || s.FirstPrev != strings.Repeat("0", 64) || len(s.LastHash) != 64 ||
		!s.FirstTime.Equal(testEntry(0).Time) || !s.LastTime.Equal(testEntry(2).Time) {
		t.Errorf("summary %+v", s)
	}
}

func TestOptionalFieldsOmitted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(path, WithSync(0))
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	if err := l.Record(Entry{Operation: "GetRandomBytes", Scope: "/", Outcome: OutcomeDenied, Status: 401, ErrorCode: "Unauthorized"}); err != nil {
		t.Fatal(err)
	}
	if err := l.Record(Entry{Operation: "Sign"}); err == nil {
		t.Error("Record without an outcome: no error")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Record(Entry{Outcome: OutcomeSuccess}); !errors.Is(err, ErrClosed) {
		t.Errorf("Record after Close: %v, want ErrClosed", err)
	}
	if err := l.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close: %v, want ErrClosed", err)
	}
	lines := readLines(t, path)
	if len(lines) != 1 {
		t.Fatalf("%d lines, want 1", len(lines))
	}
	var m map[string]any
	if err := json.Unmarshal(lines[0], &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"principalName", "clientIp", "action", "key", "version"} {
		if _, ok := m[k]; ok {
			t.Errorf("empty %s written: %s", k, lines[0])
		}
	}
	if m["errorCode"] != "Unauthorized" || m["principal"] != "" {
		t.Errorf("line %s", lines[0])
	}
	s, err := verifyFile(t, path)
	if err != nil {
		t.Fatal(err)
	}
	if s.FirstTime.Before(before.Add(-time.Millisecond)) || time.Since(s.FirstTime) > time.Minute {
		t.Errorf("zero Time became %v, want now", s.FirstTime)
	}
}

// validUTF8 is s with each byte that is not UTF-8 replaced by U+FFFD, as encoding/json does.
func validUTF8(s string) string {
	var b strings.Builder
	for _, r := range s {
		b.WriteRune(r) // an invalid byte ranges as one RuneError
	}
	return b.String()
}

// TestHostileStrings checks that no value can break out of its field or its line.
func TestHostileStrings(t *testing.T) {
	hostile := []string{
		"a\nb", "\r\n{\"seq\":2}", `","outcome":"success`, "\\", "\x00\x1f\x7f", "\xff\xfe", "\u2028\u2029", "日本語", "<>&",
	}
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hostile {
		if err := l.Record(Entry{PrincipalName: h, Key: h, Operation: h, Outcome: OutcomeFailed}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	lines := readLines(t, path)
	if len(lines) != len(hostile) {
		t.Fatalf("%d lines for %d entries", len(lines), len(hostile))
	}
	for i, line := range lines {
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		want := validUTF8(hostile[i])
		if m["key"] != want || m["outcome"] != "failed" {
			t.Errorf("line %d: key %q, outcome %v; want %q, failed", i+1, m["key"], m["outcome"], want)
		}
	}
	if _, err := verifyFile(t, path); err != nil {
		t.Fatal(err)
	}
}

func TestConcurrentRecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(path, WithSync(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	const workers, each = 8, 200
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				if err := l.Record(testEntry(w*each + i)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Go(func() {
		for range 10 {
			if err := l.Sync(); err != nil {
				t.Error(err)
			}
		}
	})
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := verifyFile(t, path)
	if err != nil {
		t.Fatal(err)
	}
	if s.Lines != workers*each {
		t.Errorf("%d lines, want %d", s.Lines, workers*each)
	}
}

func TestReopenContinuesChain(t *testing.T) {
	for _, verify := range []bool{false, true} {
		t.Run(fmt.Sprint("verify=", verify), func(t *testing.T) {
			path := writeLog(t, 2)
			var opts []Option
			if verify {
				opts = append(opts, WithVerify())
			}
			for round := range 2 {
				l, err := Open(path, opts...)
				if err != nil {
					t.Fatalf("reopen %d: %v", round, err)
				}
				if err := l.Record(testEntry(10 + round)); err != nil {
					t.Fatal(err)
				}
				if err := l.Close(); err != nil {
					t.Fatal(err)
				}
			}
			s, err := verifyFile(t, path)
			if err != nil {
				t.Fatal(err)
			}
			if s.Lines != 4 || s.LastSeq != 4 {
				t.Errorf("summary %+v, want 4 lines", s)
			}
		})
	}
}

func TestOpenRefusesBrokenTail(t *testing.T) {
	tests := []struct {
		name   string
		damage func([]byte) []byte
		want   string
	}{
		{"cut short", func(b []byte) []byte { return b[:len(b)-10] }, "cut short"},
		{"no newline", func(b []byte) []byte { return b[:len(b)-1] }, "cut short"},
		{"garbage", func(b []byte) []byte { return append(b, "hello\n"...) }, "not an audit line"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeLog(t, 2)
			b, _ := os.ReadFile(path)
			if err := os.WriteFile(path, tt.damage(b), 0o600); err != nil {
				t.Fatal(err)
			}
			l, err := Open(path)
			if err == nil {
				l.Close()
				t.Fatal("Open: no error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Open: %v, want %q in it", err, tt.want)
			}
		})
	}
	path := writeLog(t, 3)
	lines := readLines(t, path)
	lines[0] = bytes.Replace(lines[0], []byte("req-0"), []byte("req-X"), 1)
	os.WriteFile(path, bytes.Join(lines, nil), 0o600)
	if l, err := Open(path); err != nil {
		t.Errorf("Open without WithVerify checks the last line only; got %v", err)
	} else {
		l.Close()
	}
	if _, err := Open(path, WithVerify()); err == nil || !strings.Contains(err.Error(), "line 2: prev") {
		t.Errorf("Open WithVerify of an edited file: %v", err)
	}
}

// TestTamper checks that every kind of damage is reported at the right line.
func TestTamper(t *testing.T) {
	tests := []struct {
		name   string
		damage func(lines [][]byte) [][]byte
		line   int64
		reason string
	}{
		{"edited line", func(l [][]byte) [][]byte {
			l[2] = bytes.Replace(l[2], []byte(`"status":200`), []byte(`"status":403`), 1)
			return l
		}, 4, "prev is not the hash of line 3"},
		{"edited first line", func(l [][]byte) [][]byte {
			l[0] = bytes.Replace(l[0], []byte(`"k1"`), []byte(`"k2"`), 1)
			return l
		}, 2, "prev is not the hash of line 1"},
		{"removed line", func(l [][]byte) [][]byte { return append(l[:2], l[3:]...) }, 3, "seq 4 follows seq 2: 1 lines were removed"},
		{"swapped lines", func(l [][]byte) [][]byte { l[1], l[2] = l[2], l[1]; return l }, 2, "seq 3 follows seq 1"},
		{"repeated line", func(l [][]byte) [][]byte { return append(l[:3], l[2:]...) }, 4, "seq 3 follows seq 3"},
		{"renumbered line", func(l [][]byte) [][]byte {
			l[2] = bytes.Replace(l[2], []byte(`"seq":3`), []byte(`"seq":7`), 1)
			return l
		}, 3, "seq 7 follows seq 2"},
		{"edited prev", func(l [][]byte) [][]byte {
			l[1] = bytes.Replace(l[1], []byte(`"prev":"`), []byte(`"prev":"0`), 1)
			l[1] = bytes.Replace(l[1], []byte(`","time"`), []byte(`"time"`), 1)
			return l
		}, 2, "not an audit line"},
		{"truncated last line", func(l [][]byte) [][]byte { l[4] = l[4][:40]; return l }, 5, "incomplete"},
		{"no final newline", func(l [][]byte) [][]byte { l[4] = bytes.TrimSuffix(l[4], []byte("\n")); return l }, 5, "incomplete"},
		{"spaces added", func(l [][]byte) [][]byte {
			l[4] = bytes.Replace(l[4], []byte(`,"status"`), []byte(`, "status"`), 1)
			return l
		}, 5, "the line was edited"},
		{"field added", func(l [][]byte) [][]byte {
			l[4] = bytes.Replace(l[4], []byte(`,"status"`), []byte(`,"note":"x","status"`), 1)
			return l
		}, 5, `unknown field "note"`},
		{"time zone changed", func(l [][]byte) [][]byte {
			l[4] = bytes.Replace(l[4], []byte(`14:04:05.123456793Z`), []byte(`15:04:05.123456793+01:00`), 1)
			return l
		}, 5, "the line was edited"},
		{"bad outcome", func(l [][]byte) [][]byte {
			l[4] = bytes.Replace(l[4], []byte(`"success"`), []byte(`"fine"`), 1)
			return l
		}, 5, `outcome "fine"`},
		{"blank line", func(l [][]byte) [][]byte { return append(l[:2], append([][]byte{[]byte("\n")}, l[2:]...)...) }, 3, "not an audit line"},
		{"CRLF", func(l [][]byte) [][]byte { l[0] = append(bytes.TrimSuffix(l[0], []byte("\n")), "\r\n"...); return l }, 1, "edited"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeLog(t, 5)
			lines := tt.damage(readLines(t, path))
			s, err := Verify(bytes.NewReader(bytes.Join(lines, nil)))
			var ve *VerifyError
			if !errors.As(err, &ve) {
				t.Fatalf("Verify: %v, want a *VerifyError", err)
			}
			if ve.Line != tt.line || !strings.Contains(ve.Reason, tt.reason) {
				t.Errorf("Verify: %v; want line %d: ...%s...", err, tt.line, tt.reason)
			}
			if s.Lines != tt.line-1 {
				t.Errorf("summary of %d lines, want the %d before the error", s.Lines, tt.line-1)
			}
		})
	}
}

// TestChainLimits documents the limits of the chain: an edit of the last line verifies, and only the LastHash kept
// from before detects it; lines removed from the start leave a file that looks like the continuation of another.
func TestChainLimits(t *testing.T) {
	path := writeLog(t, 3)
	before, err := verifyFile(t, path)
	if err != nil {
		t.Fatal(err)
	}
	lines := readLines(t, path)
	lines[2] = bytes.Replace(lines[2], []byte(`"status":200`), []byte(`"status":500`), 1)
	after, err := Verify(bytes.NewReader(bytes.Join(lines, nil)))
	if err != nil {
		t.Fatalf("a chain cannot detect an edit of its last line, yet Verify says %v", err)
	}
	if after.LastHash == before.LastHash {
		t.Error("LastHash did not change with the last line")
	}
	truncated, err := Verify(bytes.NewReader(bytes.Join(lines[:2], nil)))
	if err != nil || truncated.LastHash == before.LastHash {
		t.Errorf("removing the last line: %v, LastHash %s", err, truncated.LastHash)
	}
	headless, err := Verify(bytes.NewReader(bytes.Join(lines[1:], nil)))
	if err != nil || headless.FirstSeq != 2 || headless.FirstPrev == strings.Repeat("0", 64) {
		t.Errorf("removing the first line: %+v, %v; want a file that starts at seq 2", headless, err)
	}
}

func TestEmpty(t *testing.T) {
	s, err := Verify(strings.NewReader(""))
	if err != nil || s != (Summary{}) {
		t.Errorf("Verify of nothing: %+v, %v", s, err)
	}
}

func TestRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	l, err := Open(path, WithMaxSize(1000))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if err := l.Record(testEntry(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// A crash between the rename and the creation of the new file: the restart continues from the newest rotated one.
	if err := os.Rename(path, path+"."+time.Now().UTC().Add(time.Second).Format(rotatedLayout)); err != nil {
		t.Fatal(err)
	}
	l, err = Open(path, WithMaxSize(1000))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Record(testEntry(10)); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	files, err := filepath.Glob(path + ".*")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 2 {
		t.Fatalf("rotated files %v, want several", files)
	}
	files = append(files, path) // Glob sorts, and the names sort in chain order
	var prev Summary
	var total int64
	for i, f := range files {
		s, err := verifyFile(t, f)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if fi, _ := os.Stat(f); fi.Size() > 1000+600 || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: size %d, mode %v", f, fi.Size(), fi.Mode().Perm())
		}
		if i > 0 {
			if err := s.Follows(prev); err != nil {
				t.Errorf("%s: %v", f, err)
			}
		}
		total += s.Lines
		prev = s
	}
	if total != 11 || prev.LastSeq != 11 {
		t.Errorf("%d lines, last seq %d; want 11", total, prev.LastSeq)
	}

	// A missing file breaks the link.
	s0, _ := verifyFile(t, files[0])
	s2, _ := verifyFile(t, files[2])
	if err := s2.Follows(s0); err == nil {
		t.Error("Follows across a missing file: no error")
	}
}

func TestOptionErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(filepath.Join(dir, "a.log"), WithSync(-1)); err == nil {
		t.Error("WithSync(-1): no error")
	}
	if _, err := Open(filepath.Join(dir, "a.log"), WithMaxSize(-1)); err == nil {
		t.Error("WithMaxSize(-1): no error")
	}
	if _, err := Open(filepath.Join(dir, "nosuch", "a.log")); err == nil {
		t.Error("Open in a missing directory: no error")
	}
}

// FuzzVerify feeds Verify untrusted bytes: it must not panic, and what it accepts must be lines Record could have
// written, each ending in a newline.
func FuzzVerify(f *testing.F) {
	path := writeLog(f, 3)
	good, _ := os.ReadFile(path)
	f.Add(good)
	f.Add(good[:len(good)-5])
	f.Add([]byte("{}\n"))
	f.Add([]byte(`{"seq":1,"prev":"` + strings.Repeat("0", 64) + `","time":"2026-01-02T15:04:05Z","outcome":"success"}` + "\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := Verify(bytes.NewReader(b))
		if err != nil {
			return
		}
		if s.Lines != int64(bytes.Count(b, []byte("\n"))) {
			t.Fatalf("%d lines verified in %d newlines", s.Lines, bytes.Count(b, []byte("\n")))
		}
		if s.Lines > 0 && s.LastSeq-s.FirstSeq+1 != uint64(s.Lines) {
			t.Fatalf("seq %d to %d in %d lines", s.FirstSeq, s.LastSeq, s.Lines)
		}
	})
}

// FuzzRecord checks that any strings make a line that verifies and gives them back.
func FuzzRecord(f *testing.F) {
	f.Add("app\n", "k\"1", "\xff", int64(-5), 200)
	f.Fuzz(func(t *testing.T, name, key, op string, us int64, status int) {
		e := Entry{Time: time.Unix(0, us).UTC(), PrincipalName: name, Key: key, Operation: op, Outcome: OutcomeDenied, Status: status, Duration: us}
		line := appendLine(nil, 1, &zeroHash, &e)
		var buf []byte
		p, err := parseLine(line, &buf)
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		want := e
		want.PrincipalName, want.Key, want.Operation = validUTF8(name), validUTF8(key), validUTF8(op)
		if p.entry != want {
			t.Fatalf("got %+v, want %+v", p.entry, want)
		}
	})
}

func BenchmarkRecord(b *testing.B) {
	path := filepath.Join(b.TempDir(), "audit.log")
	l, err := Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	e := testEntry(0)
	e.Time = time.Time{}
	b.ReportAllocs()
	for b.Loop() {
		if err := l.Record(e); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRecordParallel(b *testing.B) {
	path := filepath.Join(b.TempDir(), "audit.log")
	l, err := Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	e := testEntry(0)
	e.Time = time.Time{}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := l.Record(e); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkEncode is the part of Record that is not the write: the line and its hash.
func BenchmarkEncode(b *testing.B) {
	e := testEntry(0)
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = appendLine(buf[:0], 1, &zeroHash, &e)
		zeroHash = sha256.Sum256(buf)
	}
}
