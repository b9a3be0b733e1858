//go:build unix

package main

import "syscall"

// The scripts check the modes of the files hsmpool writes; a known umask makes those exact, whatever the
// developer's. The scripts' hsmpool runs as a child of this binary, so it runs this too.
func init() { syscall.Umask(0o022) }
