package cluster

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/hashicorp/go-hclog"
)

func TestHCLogAdapter(t *testing.T) {
	var buf bytes.Buffer
	h := slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug, AddSource: true})
	l := newHCLog(slog.New(h)).Named("raft").Named("net").With("node", "n1")

	l.Trace("hidden")
	l.Info("entering leader state", "leader", "n1", "term", 3, "servers", hclog.Fmt("%d+%d", 1, 2), "empty", hclog.Format{})
	l.Log(hclog.Error, "failed to append", "error", "disk full")

	var recs []map[string]any
	for line := range bytes.Lines(buf.Bytes()) {
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("decode %q: %v", line, err)
		}
		recs = append(recs, m)
	}
	if len(recs) != 2 {
		t.Fatalf("got %d records, want 2 (trace is below the handler's level):\n%s", len(recs), buf.Bytes())
	}
	want := []map[string]any{
		{"level": "INFO", "msg": "entering leader state", "logger": "raft.net", "node": "n1", "leader": "n1", "term": 3.0, "servers": "1+2", "empty": ""},
		{"level": "ERROR", "msg": "failed to append", "logger": "raft.net", "node": "n1", "error": "disk full"},
	}
	for i, w := range want {
		for k, v := range w {
			if recs[i][k] != v {
				t.Errorf("record %d: %s = %#v, want %#v", i, k, recs[i][k], v)
			}
		}
		src, _ := recs[i]["source"].(map[string]any)
		if file, _ := src["file"].(string); !bytes.HasSuffix([]byte(file), []byte("log_test.go")) {
			t.Errorf("record %d: source %v, want the caller in log_test.go", i, src)
		}
	}

	if l.IsTrace() || !l.IsDebug() || !l.IsError() {
		t.Errorf("IsTrace, IsDebug, IsError = %v, %v, %v; want false, true, true", l.IsTrace(), l.IsDebug(), l.IsError())
	}
	if got := l.GetLevel(); got != hclog.Debug {
		t.Errorf("GetLevel() = %v, want %v", got, hclog.Debug)
	}
	if got := l.Name(); got != "raft.net" {
		t.Errorf("Name() = %q, want raft.net", got)
	}
	if got := l.ImpliedArgs(); len(got) != 2 || got[0] != "node" {
		t.Errorf("ImpliedArgs() = %v, want [node n1]", got)
	}

	buf.Reset()
	l.StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Warn}).Print("from the log package")
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil || m["level"] != "WARN" || m["msg"] != "from the log package" || m["logger"] != "raft.net" {
		t.Errorf("StandardLogger wrote %s (%v)", buf.Bytes(), err)
	}
}

func TestHCLogAdapterNil(t *testing.T) {
	l := newHCLog(nil)
	l.Error("nowhere")
	if l.IsError() || l.GetLevel() != hclog.Off {
		t.Errorf("a nil slog.Logger is not discarded: IsError=%v level=%v", l.IsError(), l.GetLevel())
	}
}
