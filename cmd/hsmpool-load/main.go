// Command hsmpool-load drives a pool's REST API with concurrent clients and reports throughput and latency
// percentiles, to measure the server: the gateway, the core behind its gRPC socket and the HSM.
//
// It speaks the Azure Key Vault keys API with plain net/http, not an Azure SDK, so that what it measures is the
// pool's cost and not an SDK's. It gets one access token from the pool's token endpoint with azidentity before each
// run and sends it as a bearer token on every request; see docs/benchmarks.md for the figures and how they were made.
//
// # Concurrency
//
// Each of the --clients clients is one goroutine that sends its next request when the last one is answered (a closed
// loop). They share one http.Transport: over HTTP/2 (the default) all requests share one TLS connection; with --http1
// each client keeps its own keep-alive connection.
//
// # Security
//
// The client file holds a client secret; it is read with pkg/client, which refuses a file that others may read, and
// neither the secret nor the token is ever printed. The keys the tool makes are named "load-..." and stay in the pool.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=..." (see the Makefile).
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes the command line args and returns the process exit code. Data goes to stdout; diagnostics go to
// stderr with the "hsmpool-load:" prefix, an error's hints each on a line of its own after it.
func run(args []string, stdout, stderr io.Writer) int {
	cmd := newRootCmd(defaultLoadOptions(), stderr)
	cmd.SetArgs(args)
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := cmd.ExecuteContext(ctx); err != nil {
		printError(stderr, err)
		return 1
	}
	return 0
}

// printError writes err to w as "hsmpool-load: ERR", then each of its hints as "hsmpool-load: hint: HINT".
func printError(w io.Writer, err error) {
	fmt.Fprintf(w, "hsmpool-load: %v\n", err)
	var h *hintedError
	if errors.As(err, &h) {
		for _, hint := range h.hints {
			fmt.Fprintf(w, "hsmpool-load: hint: %s\n", hint)
		}
	}
}

// hintedError is an error with hints: short sentences that tell the user what to do about it.
type hintedError struct {
	err   error
	hints []string
}

func (e *hintedError) Error() string { return e.err.Error() }
func (e *hintedError) Unwrap() error { return e.err }

// withHints returns err with hints attached; errors.Is and errors.As still see err.
func withHints(err error, hints ...string) error {
	return &hintedError{err: err, hints: hints}
}
