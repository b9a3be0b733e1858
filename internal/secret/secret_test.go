package secret

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestNeverPrinted(t *testing.T) {
	s := Copy([]byte("hunter2-pin"))
	var logBuf strings.Builder
	slog.New(slog.NewJSONHandler(&logBuf, nil)).Info("x", "pin", s)
	js, err := json.Marshal(struct{ PIN Bytes }{s})
	if err != nil {
		t.Fatal(err)
	}
	outputs := map[string]string{
		"%v":   fmt.Sprintf("%v", s),
		"%s":   fmt.Sprintf("%s", s),
		"%x":   fmt.Sprintf("%x", s),
		"%#v":  fmt.Sprintf("%#v", s),
		"%+v":  fmt.Sprintf("%+v", struct{ S Bytes }{s}),
		"slog": logBuf.String(),
		"json": string(js),
	}
	for name, out := range outputs {
		if strings.Contains(out, "hunter2") || strings.Contains(out, fmt.Sprintf("%x", "hunter2")) {
			t.Errorf("%s leaks the secret: %s", name, out)
		}
		if !strings.Contains(out, redacted) {
			t.Errorf("%s = %q, want %q in it", name, out, redacted)
		}
	}
}

func TestWipeAndEqual(t *testing.T) {
	b := []byte{1, 2, 3}
	s := New(b)
	if !s.Equal(Copy([]byte{1, 2, 3})) || s.Equal(Copy([]byte{1, 2, 4})) {
		t.Fatal("Equal is wrong")
	}
	s.Wipe()
	for _, c := range b {
		if c != 0 {
			t.Fatalf("Wipe left %v", b)
		}
	}
}

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	for name, tc := range map[string]struct{ content, want string }{
		"plain":        {"1234", "1234"},
		"newline":      {"1234\n", "1234"},
		"crlf":         {"1234\r\n", "1234"},
		"inner spaces": {" 12 34 \n", " 12 34 "},
		"two newlines": {"1234\n\n", "1234\n"},
	} {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "_"))
		if err := os.WriteFile(p, []byte(tc.content), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if string(got.Reveal()) != tc.want {
			t.Errorf("%s: got %q, want %q", name, got.Reveal(), tc.want)
		}
	}
	if _, err := ReadFile(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing file: err = %v, want one naming the file", err)
	}
}
