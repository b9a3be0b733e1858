// Command hsmpool is the command-line client of an hsmpool managed HSM pool, for administrators and security
// officers.
//
// Only the command-line skeleton exists so far; see the README status table for what works.
package main

import (
	"fmt"
	"io"
	"os"
)

// version is set at build time with -ldflags "-X main.version=..." (see the Makefile).
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes the command line args and returns the process exit code. Data goes to stdout; diagnostics go to stderr
// with the "hsmpool:" prefix.
func run(args []string, stdout, stderr io.Writer) int {
	cmd := newRootCmd(&rootOptions{version: version})
	cmd.SetArgs(args)
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	if err := cmd.Execute(); err != nil {
		fmt.Fprintf(stderr, "hsmpool: %v\n", err)
		return 1
	}
	return 0
}
