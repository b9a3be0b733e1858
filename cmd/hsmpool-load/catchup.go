package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/hsmpool/hsmpool/pkg/client"
)

// catchupOptions are the flags of "hsmpool-load catchup".
type catchupOptions struct {
	// ClientFile is the client file; empty means $HSMPOOL_CLIENT_FILE.
	ClientFile string
	// URL is the node asked for the cluster's status; empty means the client file's URL.
	URL string
	// NodeURL, if set, is the URL of the node that catches up: its progress is then read from its own answers.
	NodeURL string
	// Node is the ID of the node that catches up.
	Node string
	// Since is when that node was started, Unix nanoseconds; 0 means when catchup starts.
	Since int64
	// Interval is how often the status is asked.
	Interval time.Duration
	// Timeout bounds the wait.
	Timeout time.Duration
	// Output is outputTable or outputJSON.
	Output string
}

func defaultCatchupOptions() *catchupOptions {
	return &catchupOptions{Interval: 50 * time.Millisecond, Timeout: 10 * time.Minute, Output: outputTable}
}

// validate checks the options; errors name the flag at fault.
func (o *catchupOptions) validate() error {
	switch {
	case o.Node == "":
		return fmt.Errorf("--node is required: the ID of the node that catches up")
	case o.Since < 0:
		return fmt.Errorf("--since %d: want Unix nanoseconds", o.Since)
	case o.Interval < time.Millisecond:
		return fmt.Errorf("--interval %v: want at least 1ms", o.Interval)
	case o.Timeout <= 0:
		return fmt.Errorf("--timeout %v: want more than 0", o.Timeout)
	case o.Output != outputTable && o.Output != outputJSON:
		return fmt.Errorf("-o %q: want table or json", o.Output)
	}
	for _, u := range []string{o.URL, o.NodeURL} {
		if u != "" {
			if err := checkURLs([]string{u}); err != nil {
				return err
			}
		}
	}
	return nil
}

// newCatchupCmd builds "hsmpool-load catchup".
func newCatchupCmd(opts *catchupOptions, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "catchup --node ID [--url URL] [--node-url URL] [--since UNIX_NS] [--interval 50ms] [--timeout 10m] [-o table|json]",
		Short: "Measure how long a (re)started node takes to catch up with the leader",
		Long: `catchup measures how long a node that was started (again) takes to catch up with the
leader: until it has applied the log up to the leader's commit index, as the first status
(GET /cluster/status) of the node --url (default the client file's) that names a leader
gives it. Give a node that stays up there, not the one that catches up, and stop writing
to the pool while it runs: the target is fixed when it starts.

The node's progress is then asked every --interval: with --node-url, from the node that
catches up itself (it answers for itself, locally, once it serves: the figure the node's
clients see); without it, from --url, which asks the node over the node API (a node that
was down may be reported unreachable for a while after it is back, while the asking
node's connection to it waits to be retried).

It prints the time from --since (Unix nanoseconds, date +%s%N, taken right before the node
was started; default: when catchup starts) until the node first answered (REACHABLE) and
until it had caught up (CAUGHT-UP), the index it had to reach, and the status calls made.`,
		Example: `  since=$(date +%s%N); hsmpoold dev --data-dir .cluster/node3 &
  hsmpool-load catchup --client-file .cluster/node1/client.json --node node-8563 --since "$since" \
      --node-url https://contoso.managedhsm.localhost:8563`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := opts.validate(); err != nil {
				return err
			}
			f, err := loadClientFile(opts.ClientFile)
			if err != nil {
				return err
			}
			return runCatchup(cmd.Context(), f, opts, cmd.OutOrStdout(), stderr)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.ClientFile, "client-file", opts.ClientFile, "client file of the pool (default $"+client.EnvFile+")")
	fl.StringVar(&opts.URL, "url", opts.URL, "URL of the node to ask for the status (default: the client file's)")
	fl.StringVar(&opts.NodeURL, "node-url", opts.NodeURL, "URL of the node that catches up, to read its progress from its own answers (default: ask --url)")
	fl.StringVar(&opts.Node, "node", opts.Node, "ID of the node that catches up (required)")
	fl.Int64Var(&opts.Since, "since", opts.Since, "when the node was started, Unix nanoseconds (default: now)")
	fl.DurationVar(&opts.Interval, "interval", opts.Interval, "how often to ask for the status")
	fl.DurationVar(&opts.Timeout, "timeout", opts.Timeout, "how long to wait")
	fl.StringVarP(&opts.Output, "output", "o", opts.Output, "output format: table or json")
	return cmd
}

// clusterStatus is the part of GET /cluster/status that catchup reads.
type clusterStatus struct {
	LeaderID string `json:"leaderId"`
	Nodes    []struct {
		NodeID       string `json:"nodeId"`
		CommitIndex  uint64 `json:"commitIndex"`
		AppliedIndex uint64 `json:"appliedIndex"`
		Reachable    bool   `json:"reachable"`
	} `json:"nodes"`
}

// catchup follows a node's progress over successive status answers.
type catchup struct {
	node      string
	since     time.Time
	target    uint64 // the leader's commit index in the first answer that had one; 0 before
	reachable time.Duration
	caughtUp  time.Duration
	polls     int
	lastIndex uint64
}

// setTarget sets the index to reach, if it is not set yet, to the leader's commit index in s (when s names a
// leader other than the node that catches up).
func (c *catchup) setTarget(s clusterStatus) {
	c.polls++
	if c.target != 0 {
		return
	}
	for _, n := range s.Nodes {
		if n.NodeID == s.LeaderID && s.LeaderID != "" && s.LeaderID != c.node {
			c.target = n.CommitIndex
		}
	}
}

// observe takes the status answered at now and reports whether the node has caught up.
func (c *catchup) observe(s clusterStatus, now time.Time) bool {
	c.setTarget(s)
	for _, n := range s.Nodes {
		if n.NodeID != c.node || !n.Reachable {
			continue
		}
		if c.reachable == 0 {
			c.reachable = max(now.Sub(c.since), time.Nanosecond)
		}
		c.lastIndex = n.AppliedIndex
		if c.target > 0 && n.AppliedIndex >= c.target {
			c.caughtUp = max(now.Sub(c.since), time.Nanosecond)
			return true
		}
	}
	return false
}

// catchupReport is what catchup prints.
type catchupReport struct {
	Node        string  `json:"node"`
	TargetIndex uint64  `json:"target_index"`
	ReachableS  float64 `json:"reachable_s"`
	CaughtUpS   float64 `json:"caught_up_s"`
	Polls       int     `json:"polls"`
}

func runCatchup(ctx context.Context, f *client.File, opts *catchupOptions, stdout, stderr io.Writer) error {
	bases := nodeURLs(f, nil)
	if opts.URL != "" {
		bases = nodeURLs(f, []string{opts.URL})
	}
	if opts.NodeURL != "" {
		bases = append(bases, nodeURLs(f, []string{opts.NodeURL})[0])
	}
	tr, err := newTransport(f.CAFile, 1, false)
	if err != nil {
		return err
	}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: requestTimeout}
	sources, err := newTokenSources(f, hc, bases)
	if err != nil {
		return err
	}
	toks, err := tokensFor(ctx, sources, opts.Timeout)
	if err != nil {
		return err
	}
	c := &catchup{node: opts.Node, since: time.Now()}
	if opts.Since > 0 {
		c.since = time.Unix(0, opts.Since)
	}
	ctx, cancel := context.WithDeadline(ctx, c.since.Add(opts.Timeout))
	defer cancel()
	leader := &session{base: bases[0], hc: hc, token: toks[0]}
	progress := leader
	if len(bases) > 1 {
		progress = &session{base: bases[1], hc: hc, token: toks[1]}
	}
	path := "/cluster/status?api-version=" + apiVersion
	var lastErr error
	for {
		s := progress
		if c.target == 0 {
			s = leader
		}
		var st clusterStatus
		err := s.call(ctx, http.MethodGet, path, nil, &st)
		now := time.Now()
		if err == nil {
			if s != progress {
				c.setTarget(st)
			} else if c.observe(st, now) {
				break
			}
		} else if ctx.Err() == nil && (lastErr == nil || lastErr.Error() != err.Error()) {
			fmt.Fprintf(stderr, "hsmpool-load: catchup: %s: %v\n", s.base, err)
		}
		lastErr = err
		sleepUntil(ctx, now.Add(opts.Interval))
		if ctx.Err() != nil {
			return fmt.Errorf("node %s had not caught up after %v: applied index %d, target %d (%d status calls)",
				opts.Node, time.Since(c.since).Round(time.Millisecond), c.lastIndex, c.target, c.polls)
		}
	}
	r := catchupReport{Node: c.node, TargetIndex: c.target, ReachableS: c.reachable.Seconds(), CaughtUpS: c.caughtUp.Seconds(), Polls: c.polls}
	if opts.Output == outputJSON {
		return json.NewEncoder(stdout).Encode(r)
	}
	_, err = fmt.Fprintf(stdout, "node %s: reachable after %s, caught up with index %s after %s (%d status calls)\n",
		r.Node, fmtMicros(float64(c.reachable.Microseconds())), strconv.FormatUint(r.TargetIndex, 10),
		fmtMicros(float64(c.caughtUp.Microseconds())), r.Polls)
	return err
}
