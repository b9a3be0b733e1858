package main

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

// TestMain lets testscript run hsmpool, and the helpers of the sd scripts, as commands of the scripts (see TestSD).
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"hsmpool": func() {
			openTerminal = scriptedTerminal // never the developer's real terminal
			os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
		},
		"mksd":       mksdMain,
		"mkexchange": mkexchangeMain,
		"openblob":   openblobMain,
		"sdedit":     sdeditMain,
		"certinfo":   certinfoMain,
		"perm":       permMain,
	})
}

// execute runs the root command with args and returns its stdout and error.
func execute(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := newRootCmd(&rootOptions{version: "v1.2.3-test"})
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	err := cmd.Execute()
	return out.String(), err
}

func TestVersion(t *testing.T) {
	out, err := execute(t, "version")
	if err != nil {
		t.Fatalf("version: %v", err)
	}
	if out != "v1.2.3-test\n" {
		t.Errorf("version printed %q, want %q", out, "v1.2.3-test\n")
	}
}

func TestRunExitCodeAndPrefix(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"no-such-command"}, &out, &errOut); code == 0 {
		t.Errorf("run no-such-command: exit code 0, want non-zero")
	}
	if !strings.HasPrefix(errOut.String(), "hsmpool: ") {
		t.Errorf("run no-such-command: stderr %q, want the prefix %q", errOut.String(), "hsmpool: ")
	}

	out.Reset()
	errOut.Reset()
	if code := run([]string{"version"}, &out, &errOut); code != 0 {
		t.Errorf("run version: exit code %d, want 0; stderr %q", code, errOut.String())
	}
	if out.String() != version+"\n" {
		t.Errorf("run version: stdout %q, want %q", out.String(), version+"\n")
	}
}
