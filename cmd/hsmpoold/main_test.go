package main

import (
	"bytes"
	"strings"
	"testing"
)

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

func TestDevFlags(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		args    []string
		wantErr string // substring
	}{
		{name: "port zero", args: []string{"--data-dir", dir, "--listen", "127.0.0.1:0"}, wantErr: "--listen"},
		{name: "no data dir", args: nil, wantErr: "--data-dir is required"},
		{name: "listen without port", args: []string{"--data-dir", dir, "--listen", "127.0.0.1"}, wantErr: "--listen"},
		{name: "name too short", args: []string{"--data-dir", dir, "--name", "ab"}, wantErr: "--name"},
		{name: "name with double hyphen", args: []string{"--data-dir", dir, "--name", "a--b"}, wantErr: "--name"},
		{name: "name ending in hyphen", args: []string{"--data-dir", dir, "--name", "abc-"}, wantErr: "--name"},
		{name: "name starting with digit", args: []string{"--data-dir", dir, "--name", "1abc"}, wantErr: "--name"},
		{name: "unknown flag", args: []string{"--data-dir", dir, "--pin", "1234"}, wantErr: "unknown flag"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := execute(t, append([]string{"dev"}, tt.args...)...)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("dev %v returned %v, want an error containing %q", tt.args, err, tt.wantErr)
			}
		})
	}
}

func TestRunExitCodeAndPrefix(t *testing.T) {
	var out, errOut bytes.Buffer
	code := run([]string{"dev"}, &out, &errOut)
	if code == 0 {
		t.Errorf("run dev: exit code 0, want non-zero")
	}
	want := "hsmpoold: --data-dir is required\n"
	if errOut.String() != want {
		t.Errorf("run dev: stderr %q, want %q", errOut.String(), want)
	}
	if out.Len() != 0 {
		t.Errorf("run dev: stdout %q, want nothing", out.String())
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
