// Command hsmpool is the command-line client of an hsmpool managed HSM pool, for administrators and security
// officers.
//
// It talks to a pool through the Azure SDK for Go (keys) and package pkg/client (the client file, the security
// domain); the security officers' commands run offline. See the README status table for what works.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
)

// version is set at build time with -ldflags "-X main.version=..." (see the Makefile).
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes the command line args and returns the process exit code. Data goes to stdout; diagnostics go to stderr
// with the "hsmpool:" prefix, an error's hints (see withHints) each on a line of its own after it.
func run(args []string, stdout, stderr io.Writer) int {
	cmd := newRootCmd(&rootOptions{version: version})
	cmd.SetArgs(args)
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt) // Ctrl-C cancels a request to the pool
	defer stop()
	if err := cmd.ExecuteContext(ctx); err != nil {
		printError(stderr, err)
		return 1
	}
	return 0
}

// printError writes err to w as "hsmpool: ERR", then its hints, if it has any, as "hsmpool: hint: HINT".
func printError(w io.Writer, err error) {
	fmt.Fprintf(w, "hsmpool: %v\n", err)
	var h *hintedError
	if errors.As(err, &h) {
		for _, hint := range h.hints {
			fmt.Fprintf(w, "hsmpool: hint: %s\n", hint)
		}
	}
}

// hintedError is an error with hints: short sentences that tell the user what to do about it. run prints each on a
// line "hsmpool: hint: ..." after the error, as age does.
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
