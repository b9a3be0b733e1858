//go:build linux

package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"
)

// userHZ is the unit of the CPU times in /proc/PID/stat: USER_HZ, 100 on every Linux architecture Go supports.
const userHZ = 100

// processCPUOf returns the user and system CPU time that process pid has used so far, all its threads, from
// /proc/PID/stat; its resolution is 10 ms.
func processCPUOf(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("--server-pid: %w", err)
	}
	return parseProcStat(b)
}

// parseProcStat returns utime+stime from the content of /proc/PID/stat. The command name, field 2, is in
// parentheses and may hold spaces and parentheses itself, so fields are counted after its last ')'.
func parseProcStat(b []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("--server-pid: /proc/PID/stat has no command name")
	}
	f := bytes.Fields(b[i+1:]) // f[0] is field 3, the state; utime and stime are fields 14 and 15
	if len(f) < 13 {
		return 0, fmt.Errorf("--server-pid: /proc/PID/stat has %d fields after the command name", len(f))
	}
	utime, err1 := strconv.ParseUint(string(f[11]), 10, 64)
	stime, err2 := strconv.ParseUint(string(f[12]), 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("--server-pid: /proc/PID/stat: utime %q, stime %q are not numbers", f[11], f[12])
	}
	return time.Duration(utime+stime) * (time.Second / userHZ), nil
}
