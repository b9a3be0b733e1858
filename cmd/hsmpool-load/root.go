package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/hsmpool/hsmpool/pkg/client"
)

// Output formats.
const (
	outputTable = "table"
	outputJSON  = "json"
)

// maxClients bounds --clients: far more than a closed loop needs to saturate one pool, few enough that a typo
// (--clients 16000) does not open thousands of connections.
const maxClients = 1024

// loadOptions are the flags of hsmpool-load.
type loadOptions struct {
	// ClientFile is the client file; empty means $HSMPOOL_CLIENT_FILE.
	ClientFile string
	// URLs are the data-plane URLs of the pool's nodes that the clients send to, client i to URLs[i mod len]; empty
	// means the client file's URL.
	URLs []string
	// Ops are the operations to measure, each a name of opNames.
	Ops []string
	// Clients are the numbers of concurrent clients to measure each operation with.
	Clients []int
	// Duration is how long each run measures, after Warmup.
	Duration time.Duration
	// Warmup is how long each run sends requests before it starts measuring: connections, caches and the Go
	// scheduler settle then.
	Warmup time.Duration
	// Requests, if not 0, ends each run once that many requests started after the warm-up have succeeded.
	Requests int64
	// Count is how many times each combination of operation and clients runs.
	Count int
	// HTTP1 forces HTTP/1.1, one keep-alive connection per client; the default is HTTP/2 on one connection.
	HTTP1 bool
	// Output is outputTable or outputJSON.
	Output string
	// ServerPIDs are the process IDs of the pool's hsmpoold processes on this machine, whose CPU time each run
	// reads and adds up; empty: none.
	ServerPIDs []int
}

// defaultLoadOptions returns the defaults of the flags.
func defaultLoadOptions() *loadOptions {
	return &loadOptions{
		Clients:  []int{1},
		Duration: 10 * time.Second,
		Warmup:   2 * time.Second,
		Count:    1,
		Output:   outputTable,
	}
}

// plan is what validated options ask for.
type plan struct {
	ops     []opKind
	clients []int
}

// validate checks the options and returns the runs they ask for; errors name the flag at fault.
func (o *loadOptions) validate() (plan, error) {
	var p plan
	if len(o.Ops) == 0 {
		return p, fmt.Errorf("--op is required: one or more of %s", strings.Join(opNames[1:], ", "))
	}
	for _, s := range o.Ops {
		op, err := parseOp(s)
		if err != nil {
			return p, fmt.Errorf("--op: %w", err)
		}
		p.ops = append(p.ops, op)
	}
	if len(o.Clients) == 0 {
		return p, errors.New("--clients: give at least one number of clients")
	}
	for _, n := range o.Clients {
		if n < 1 || n > maxClients {
			return p, fmt.Errorf("--clients %d: want 1 to %d", n, maxClients)
		}
	}
	p.clients = o.Clients
	switch {
	case o.Duration < 100*time.Millisecond:
		return p, fmt.Errorf("--duration %v: want at least 100ms", o.Duration)
	case o.Warmup < 0:
		return p, fmt.Errorf("--warmup %v: want 0 or more", o.Warmup)
	case o.Requests < 0:
		return p, fmt.Errorf("--requests %d: want 0 (no limit) or more", o.Requests)
	case o.Count < 1:
		return p, fmt.Errorf("--count %d: want 1 or more", o.Count)
	case o.Output != outputTable && o.Output != outputJSON:
		return p, fmt.Errorf("-o %q: want table or json", o.Output)
	}
	for _, pid := range o.ServerPIDs {
		if pid <= 0 {
			return p, fmt.Errorf("--server-pid %d: want a process ID", pid)
		}
	}
	if err := checkURLs(o.URLs); err != nil {
		return p, err
	}
	return p, nil
}

// newRootCmd builds the hsmpool-load command tree; progress and request errors go to stderr.
func newRootCmd(opts *loadOptions, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "hsmpool-load --op OP[,OP...] [--clients N[,N...]] [--url URL...] [--duration 10s] [--warmup 2s] [--count 1] [--http1] [-o table|json]",
		Short: "Measure a pool's REST API under load: throughput and latency percentiles",
		Long: `hsmpool-load drives a pool's REST API with concurrent clients and reports, for each
operation and number of clients, the operations per second and the p50, p99 and p99.9
latencies of the requests that started in the measuring window.

Operations (--op, comma-separated for several):

  sign-p256           POST /keys/load-p256/VERSION/sign, ES256 over a 32-byte digest
  sign-rsa2048        POST /keys/load-rsa2048/VERSION/sign, RS256 over a 32-byte digest
  encrypt-aes256gcm   POST /keys/load-aes256/VERSION/encrypt, A256GCM of 4 KiB
  create              POST /keys/load-c-RUN-CLIENT-SEQ/create, an EC-HSM P-256 key with a new name each time
  create-aes256       POST /keys/load-ca-RUN-CLIENT-SEQ/create, an oct-HSM AES-256 key with a new name each time

Before measuring, it makes the keys it needs if the pool lacks them (names start with
"load-"), checks one answer of each operation (a signature against the key's public
key, an encryption by decrypting it) and gets an access token from the pool's token
endpoint; every request then carries that token. The pool must be activated: download
its security domain first.

Each client is a closed loop: it sends its next request when the last is answered.
Clients share one HTTP/2 connection unless --http1 gives each its own HTTP/1.1
keep-alive connection. With --requests N a run ends once N requests have succeeded after
the warm-up (e.g. to make exactly 10,000 keys), or when --duration is over if that comes
first; OPS/S then divides by the time it took.

With --url given several times, the clients are spread over those nodes of one pool in
turn (client i sends to the i-th URL, modulo their number), each with an access token for
that node's URL from the client file's token endpoint. The keys are made through the first
URL, and each operation is checked once on every node before it is measured. Without
--url, every client sends to the client file's URL.

Each run warms up for --warmup, then measures for --duration;
--count repeats each run. With -o json each run is one JSON object on a line of its own.

The load generator's own CPU use is reported (CLI-CPU, in cores): on a small machine it
competes with the pool. With --server-pid (once per hsmpoold process), the pool's CPU use
is read from /proc too, added up over the processes (SRV-CPU in cores, SRV-µs/OP per request): on a machine shared with other work, CPU
time per request is the figure that the other work disturbs least.

Failed requests are counted and the first few printed on stderr; if any run had one,
hsmpool-load exits with status 1 after printing every run.`,
		Example: `  # ES256 signing with 1, 4 and 16 clients, 10 s each, three times.
  hsmpool-load --client-file .data/client.json --op sign-p256 --clients 1,4,16 --count 3

  # A pool started here: report its CPU time per request too.
  hsmpool-load --op sign-p256 --clients 4 --server-pid "$(pgrep -n hsmpoold)"

  # Every operation, HTTP/1.1, as JSON lines.
  hsmpool-load --op sign-p256,sign-rsa2048,encrypt-aes256gcm,create --clients 4 --http1 -o json

  # Key creation through all three nodes of a local cluster (make cluster), 16 clients.
  hsmpool-load --client-file .cluster/node1/client.json --op create-aes256 --clients 16 \
      --url https://contoso.managedhsm.localhost:8443 --url https://contoso.managedhsm.localhost:8453 \
      --url https://contoso.managedhsm.localhost:8463

  # Activate a fresh dev pool first, with three officers' certificates.
  hsmpool-load activate --cert alice.cer --cert bob.cer --cert carol.cer --sd-out sd.json`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true, // run prints the error with the "hsmpool-load:" prefix
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := opts.validate()
			if err != nil {
				return err
			}
			f, err := loadClientFile(opts.ClientFile)
			if err != nil {
				return err
			}
			return runLoad(cmd.Context(), f, opts, p, cmd.OutOrStdout(), stderr)
		},
	}
	cmd.CompletionOptions.DisableDefaultCmd = true
	fl := cmd.Flags()
	fl.StringVar(&opts.ClientFile, "client-file", opts.ClientFile, "client file of the pool (default $"+client.EnvFile+")")
	fl.StringArrayVar(&opts.URLs, "url", opts.URLs, "URL of a node of the pool to send to; repeat it to spread the clients over several nodes (default: the client file's)")
	fl.StringSliceVar(&opts.Ops, "op", opts.Ops, "operations to measure: "+strings.Join(opNames[1:], ", "))
	fl.IntSliceVar(&opts.Clients, "clients", opts.Clients, "numbers of concurrent clients, each measured in turn")
	fl.DurationVar(&opts.Duration, "duration", opts.Duration, "how long each run measures")
	fl.DurationVar(&opts.Warmup, "warmup", opts.Warmup, "how long each run sends requests before it measures")
	fl.Int64Var(&opts.Requests, "requests", opts.Requests, "end each run once this many requests have succeeded after the warm-up (0: no limit; --duration still bounds it)")
	fl.IntVar(&opts.Count, "count", opts.Count, "how many times to repeat each run")
	fl.BoolVar(&opts.HTTP1, "http1", opts.HTTP1, "use HTTP/1.1, one keep-alive connection per client, instead of HTTP/2")
	fl.StringVarP(&opts.Output, "output", "o", opts.Output, "output format: table or json (one object per run and line)")
	fl.IntSliceVar(&opts.ServerPIDs, "server-pid", opts.ServerPIDs, "process ID of hsmpoold on this machine, to report its CPU time per request (Linux); repeat it for several nodes, each then also reported alone")
	cmd.AddCommand(
		newActivateCmd(&activateOptions{Quorum: 2}),
		newFailoverCmd(defaultFailoverOptions(), stderr),
		newCatchupCmd(defaultCatchupOptions(), stderr),
		&cobra.Command{
			Use:   "version",
			Short: "Print the version of hsmpool-load",
			Long: `version prints the version of this hsmpool-load binary on stdout: the output of
"git describe --always --dirty" when it was built with make, "dev" otherwise.`,
			Example: `  hsmpool-load version`,
			Args:    cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				_, err := fmt.Fprintln(cmd.OutOrStdout(), version)
				return err
			},
		},
	)
	return cmd
}

// loadClientFile reads the client file at path, or at $HSMPOOL_CLIENT_FILE when path is empty.
func loadClientFile(path string) (*client.File, error) {
	f, err := client.Load(path)
	if errors.Is(err, client.ErrNoFile) {
		return nil, withHints(errors.New("no client file: give --client-file FILE, or set $"+client.EnvFile),
			`"hsmpoold dev" writes one as DATA_DIR/client.json`)
	}
	return f, err
}

// checkURLs checks the nodes' URLs of --url: each the https URL of a pool, NAME.managedhsm.SUFFIX[:PORT], none twice.
func checkURLs(urls []string) error {
	seen := make(map[string]bool, len(urls))
	for _, u := range urls {
		if _, err := scopeFor(u); err != nil {
			return fmt.Errorf("--url: %w", err)
		}
		k := strings.TrimSuffix(u, "/")
		if seen[k] {
			return fmt.Errorf("--url %s: given twice", u)
		}
		seen[k] = true
	}
	return nil
}

// nodeURLs returns the URLs of urls without a trailing slash, or the client file's URL when urls is empty.
func nodeURLs(f *client.File, urls []string) []string {
	if len(urls) == 0 {
		return []string{strings.TrimSuffix(f.URL, "/")}
	}
	out := make([]string, len(urls))
	for i, u := range urls {
		out[i] = strings.TrimSuffix(u, "/")
	}
	return out
}
