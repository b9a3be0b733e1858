package main

import (
	"os"
	"strings"
	"testing"
	"time"
)

func TestParseProcStat(t *testing.T) {
	tests := []struct {
		name, stat string
		want       time.Duration
		wantErr    string
	}{
		{name: "plain", want: 1234*10*time.Millisecond + 56*10*time.Millisecond,
			stat: "25494 (hsmpoold) S 1 25494 1 0 -1 4194560 9090 0 0 0 1234 56 0 0 20 0 12 0 39874 1399980 43250 18446744073709551615\n"},
		{name: "name with spaces and parentheses", want: 3 * 10 * time.Millisecond,
			stat: "7 (a) b (c)) R 1 7 1 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 1 1 1\n"},
		{name: "no name", stat: "7 a R 1", wantErr: "no command name"},
		{name: "short", stat: "7 (a) R 1 2 3", wantErr: "fields"},
		{name: "not numbers", stat: "7 (a) R 1 7 1 0 -1 0 0 0 0 0 x y 0", wantErr: "not numbers"},
	}
	for _, tt := range tests {
		got, err := parseProcStat([]byte(tt.stat))
		switch {
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("%s: parseProcStat = %v, %v; want an error containing %q", tt.name, got, err, tt.wantErr)
		case tt.wantErr == "" && (err != nil || got != tt.want):
			t.Errorf("%s: parseProcStat = %v, %v; want %v", tt.name, got, err, tt.want)
		}
	}
	// This process, for real: it has used some CPU time by now.
	if d, err := processCPUOf(os.Getpid()); err != nil || d < 0 {
		t.Errorf("processCPUOf(self) = %v, %v", d, err)
	}
	if _, err := processCPUOf(1 << 30); err == nil || !strings.Contains(err.Error(), "--server-pid") {
		t.Errorf("processCPUOf(no such process) = %v", err)
	}
}
