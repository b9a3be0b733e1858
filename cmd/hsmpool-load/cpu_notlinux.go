//go:build !linux

package main

import (
	"errors"
	"time"
)

// processCPUOf is not available here: --server-pid reads /proc.
func processCPUOf(int) (time.Duration, error) {
	return 0, errors.New("--server-pid works only on Linux, where it reads /proc/PID/stat")
}
