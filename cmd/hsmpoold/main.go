// Command hsmpoold is the hsmpool daemon: one node of a managed HSM pool that serves the Azure Managed HSM data plane
// from PKCS#11 slots, kept consistent with its peers by Raft.
//
// Only the command-line skeleton exists so far; see the README status table for what works.
package main

import (
	"fmt"
	"io"
	"os"
	"runtime/debug"

	"github.com/hsmpool/hsmpool/internal/daemon"
)

// version is set at build time with -ldflags "-X main.version=..." (see the Makefile).
var version = "dev"

func main() {
	// The state is many small long-lived records; collecting at the default 100 % growth spent
	// up to 18 % of the CPU under load with 160,000 keys (docs/benchmarks.md). GOGC overrides.
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(300)
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes the command line args and returns the process exit code. Data goes to stdout; diagnostics go to stderr
// with the "hsmpoold:" prefix.
func run(args []string, stdout, stderr io.Writer) int {
	daemon.Version = version
	cmd := newRootCmd(&rootOptions{version: version})
	cmd.SetArgs(args)
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	if err := cmd.Execute(); err != nil {
		fmt.Fprintf(stderr, "hsmpoold: %v\n", err)
		return 1
	}
	return 0
}
