package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/hsmpool/hsmpool/internal/audit"
)

// TestAudit runs the scripts in testdata/audit: "hsmpool audit ..." on logs that these in-process helpers make and
// damage:
//
//	mkaudit [-max-size N] FILE COUNT   append COUNT requests to the audit log FILE, as hsmpoold does
//	auditedit FILE LINE OLD NEW        replace OLD by NEW in line LINE (from 1) of FILE
//	auditdrop FILE LINE                remove line LINE of FILE
func TestAudit(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata/audit",
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"mkaudit":   mkauditCmd,
			"auditedit": auditeditCmd,
			"auditdrop": auditdropCmd,
		},
		Setup: func(env *testscript.Env) error {
			env.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
			return nil
		},
	})
}

func mkauditCmd(ts *testscript.TestScript, neg bool, args []string) {
	var opts []audit.Option
	if len(args) > 1 && args[0] == "-max-size" {
		n, err := strconv.ParseInt(args[1], 10, 64)
		ts.Check(err)
		opts = append(opts, audit.WithMaxSize(n))
		args = args[2:]
	}
	if neg || len(args) != 2 {
		ts.Fatalf("usage: mkaudit [-max-size N] FILE COUNT")
	}
	count, err := strconv.Atoi(args[1])
	ts.Check(err)
	l, err := audit.Open(ts.MkAbs(args[0]), opts...)
	ts.Check(err)
	start := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	for i := range count {
		e := audit.Entry{
			Time: start.Add(time.Duration(i) * time.Second), RequestID: fmt.Sprintf("req-%d", i),
			Principal: "8f3c5a4e-2d1b-4c9a-9e7f-1a2b3c4d5e6f", PrincipalName: "signer", ClientIP: "192.0.2.7",
			Operation: "Sign", Action: "Microsoft.KeyVault/managedHsm/keys/sign/action", Scope: "/keys/k1", Key: "k1",
			Outcome: audit.OutcomeSuccess, Status: 200, Duration: 850,
		}
		if i%3 == 2 {
			e.Outcome, e.Status, e.ErrorCode = audit.OutcomeDenied, 403, "Forbidden"
		}
		ts.Check(l.Record(e))
	}
	ts.Check(l.Close())
}

// auditLines reads FILE and returns its lines with their newlines, and the index of line LINE.
func auditLines(ts *testscript.TestScript, file, line string) ([][]byte, int) {
	b, err := os.ReadFile(ts.MkAbs(file))
	ts.Check(err)
	lines := bytes.SplitAfter(b, []byte("\n"))
	n, err := strconv.Atoi(line)
	ts.Check(err)
	if n < 1 || n > len(lines) {
		ts.Fatalf("%s has no line %d", file, n)
	}
	return lines, n - 1
}

func auditeditCmd(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 4 {
		ts.Fatalf("usage: auditedit FILE LINE OLD NEW")
	}
	lines, i := auditLines(ts, args[0], args[1])
	if !bytes.Contains(lines[i], []byte(args[2])) {
		ts.Fatalf("line %s of %s has no %q", args[1], args[0], args[2])
	}
	lines[i] = bytes.Replace(lines[i], []byte(args[2]), []byte(args[3]), 1)
	ts.Check(os.WriteFile(ts.MkAbs(args[0]), bytes.Join(lines, nil), 0o600))
}

func auditdropCmd(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: auditdrop FILE LINE")
	}
	lines, i := auditLines(ts, args[0], args[1])
	lines = append(lines[:i], lines[i+1:]...)
	ts.Check(os.WriteFile(ts.MkAbs(args[0]), bytes.Join(lines, nil), 0o600))
}
