package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/hsmpool/hsmpool/pkg/client"
)

// retryPause is how long a failover writer waits after a failed write before it sends the next: short against
// the figures it measures (an election takes hundreds of milliseconds), long enough that writers aimed at a dead
// node do not spin.
const retryPause = 10 * time.Millisecond

// failoverOptions are the flags of "hsmpool-load failover".
type failoverOptions struct {
	// ClientFile is the client file; empty means $HSMPOOL_CLIENT_FILE.
	ClientFile string
	// URLs are the nodes written through; empty means the client file's URL.
	URLs []string
	// Writers is how many writers send through each URL.
	Writers int
	// Duration is how long the writers write.
	Duration time.Duration
	// Timeout bounds one write.
	Timeout time.Duration
	// MarksFile, if set, is read when the writers stop: the times of the events to measure from.
	MarksFile string
	// Output is outputTable or outputJSON.
	Output string
}

func defaultFailoverOptions() *failoverOptions {
	return &failoverOptions{Writers: 1, Duration: time.Minute, Timeout: 5 * time.Second, Output: outputTable}
}

// validate checks the options; errors name the flag at fault.
func (o *failoverOptions) validate() error {
	switch {
	case o.Writers < 1 || o.Writers > maxClients:
		return fmt.Errorf("--writers %d: want 1 to %d", o.Writers, maxClients)
	case o.Duration < 100*time.Millisecond:
		return fmt.Errorf("--duration %v: want at least 100ms", o.Duration)
	case o.Timeout < 10*time.Millisecond:
		return fmt.Errorf("--timeout %v: want at least 10ms", o.Timeout)
	case o.Output != outputTable && o.Output != outputJSON:
		return fmt.Errorf("-o %q: want table or json", o.Output)
	}
	return checkURLs(o.URLs)
}

// newFailoverCmd builds "hsmpool-load failover".
func newFailoverCmd(opts *failoverOptions, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "failover [--url URL...] [--writers 1] [--duration 1m] [--marks-file FILE] [-o table|json]",
		Short: "Write through a pool's nodes while they fail, and measure how long writes stop",
		Long: `failover keeps writing to the pool and measures how long writes stop after an event,
such as killing the leader, that another program causes and writes down.

--writers writers send through each node of --url (default: the client file's URL),
each one write at a time: the creation of an oct-HSM AES-256 key with a new name
("load-ca-f..."). A failed write is counted, and the writer sends its next one 10 ms later.
Every acknowledged write's start and end are kept.

Meanwhile the other program appends a line to --marks-file for each event, right after
causing it: the time as Unix nanoseconds (date +%s%N), optionally a space and a label.
When --duration is over (or on Ctrl-C) failover reads the file and prints, per mark:

  RECOVERY    time from the mark to the acknowledgement of the first write that started
              after it: how long the pool took to accept new writes again
  FIRST-ACK   time from the mark to the next acknowledgement of any write
  FAILED      writes that failed between the mark and that recovery
  NODE        the URL that acknowledged the recovering write

and a summary: writes acknowledged and failed, and the longest time without an
acknowledgement. With -o json, each mark and the summary are one JSON object a line. It
exits with status 1 if a mark has no recovery.`,
		Example: `  # Three nodes; kill the leader 20 s in and note the time.
  hsmpool-load failover --client-file .cluster/node1/client.json --duration 40s --marks-file marks \
      --url https://contoso.managedhsm.localhost:8543 --url https://contoso.managedhsm.localhost:8553 \
      --url https://contoso.managedhsm.localhost:8563 &
  sleep 20; kill -9 "$LEADER_PID"; echo "$(date +%s%N) leader" >> marks; wait`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := opts.validate(); err != nil {
				return err
			}
			f, err := loadClientFile(opts.ClientFile)
			if err != nil {
				return err
			}
			return runFailover(cmd.Context(), f, opts, cmd.OutOrStdout(), stderr)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.ClientFile, "client-file", opts.ClientFile, "client file of the pool (default $"+client.EnvFile+")")
	fl.StringArrayVar(&opts.URLs, "url", opts.URLs, "URL of a node to write through; repeat it for several (default: the client file's)")
	fl.IntVar(&opts.Writers, "writers", opts.Writers, "writers per node URL")
	fl.DurationVar(&opts.Duration, "duration", opts.Duration, "how long to write")
	fl.DurationVar(&opts.Timeout, "timeout", opts.Timeout, "how long one write may take before it counts as failed")
	fl.StringVar(&opts.MarksFile, "marks-file", opts.MarksFile, "file of event times (Unix nanoseconds [label], a line each), read at the end")
	fl.StringVarP(&opts.Output, "output", "o", opts.Output, "output format: table or json (one object per line)")
	return cmd
}

// ack is an acknowledged write: when it was sent and answered (Unix nanoseconds), and through which node.
type ack struct {
	start, end int64
	node       int
}

// mark is an event to measure from.
type mark struct {
	at    int64 // Unix nanoseconds
	label string
}

// markReport is what failover prints for a mark; durations in milliseconds, -1 when there was none.
type markReport struct {
	Mark       int64   `json:"mark_unix_ns"`
	Label      string  `json:"label"`
	RecoveryMs float64 `json:"recovery_ms"`
	FirstAckMs float64 `json:"first_ack_ms"`
	Failed     int     `json:"failed"`
	Node       string  `json:"node"`
}

// failoverSummary is failover's last line.
type failoverSummary struct {
	Summary      bool    `json:"summary"`
	Seconds      float64 `json:"seconds"`
	Acked        int     `json:"acked"`
	Failed       int     `json:"failed"`
	LongestGapMs float64 `json:"longest_gap_ms"`
}

// readMarks reads a marks file: per line Unix nanoseconds, optionally a space and a label; blank lines are skipped.
func readMarks(r io.Reader) ([]mark, error) {
	var out []mark
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		ts, label, _ := strings.Cut(line, " ")
		at, err := strconv.ParseInt(ts, 10, 64)
		if err != nil || at <= 0 {
			return nil, fmt.Errorf("line %d: %q is not Unix nanoseconds (date +%%s%%N)", n, ts)
		}
		out = append(out, mark{at: at, label: strings.TrimSpace(label)})
	}
	return out, sc.Err()
}

// reportMarks measures each mark against the acknowledged writes acks and the end times of the failed writes
// (Unix nanoseconds, any order); nodes names the node indexes of acks.
func reportMarks(acks []ack, failures []int64, marks []mark, nodes []string) []markReport {
	byStart := slices.Clone(acks)
	slices.SortFunc(byStart, func(a, b ack) int { return cmpInt64(a.start, b.start) })
	ends := make([]int64, len(acks))
	for i, a := range acks {
		ends[i] = a.end
	}
	slices.Sort(ends)
	var out []markReport
	for _, m := range marks {
		r := markReport{Mark: m.at, Label: m.label, RecoveryMs: -1, FirstAckMs: -1}
		if i, _ := slices.BinarySearch(ends, m.at); i < len(ends) {
			r.FirstAckMs = nsToMs(ends[i] - m.at)
		}
		// The first write to start after the mark may not be the first to end: take the earliest end among
		// the writes that started after it.
		first := -1
		for i, _ := slices.BinarySearchFunc(byStart, m.at, func(a ack, t int64) int { return cmpInt64(a.start, t) }); i < len(byStart); i++ {
			if first < 0 || byStart[i].end < byStart[first].end {
				first = i
			}
		}
		if first >= 0 {
			a := byStart[first]
			r.RecoveryMs = nsToMs(a.end - m.at)
			if a.node >= 0 && a.node < len(nodes) {
				r.Node = nodes[a.node]
			}
			for _, f := range failures {
				if f >= m.at && f <= a.end {
					r.Failed++
				}
			}
		}
		out = append(out, r)
	}
	return out
}

// longestGap returns the longest time between consecutive acknowledgements, and from the start and to the end of
// the run (Unix nanoseconds).
func longestGap(acks []ack, from, to int64) time.Duration {
	ends := make([]int64, 0, len(acks)+2)
	ends = append(ends, from)
	for _, a := range acks {
		ends = append(ends, a.end)
	}
	ends = append(ends, to)
	slices.Sort(ends)
	var gap int64
	for i := 1; i < len(ends); i++ {
		gap = max(gap, ends[i]-ends[i-1])
	}
	return time.Duration(gap)
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func nsToMs(ns int64) float64 { return float64(ns/1000) / 1000 }

// runFailover writes through every node until opts.Duration is over or ctx is done, then reports the marks.
func runFailover(ctx context.Context, f *client.File, opts *failoverOptions, stdout, stderr io.Writer) error {
	bases := nodeURLs(f, opts.URLs)
	setupTr, err := newTransport(f.CAFile, 1, false)
	if err != nil {
		return err
	}
	defer setupTr.CloseIdleConnections()
	setupHC := &http.Client{Transport: setupTr, Timeout: requestTimeout}
	sources, err := newTokenSources(f, setupHC, bases)
	if err != nil {
		return err
	}
	toks, err := tokensFor(ctx, sources, opts.Duration+time.Minute)
	if err != nil {
		return err
	}
	runID := newRunID()
	var t target
	for i, b := range bases {
		s := &session{base: b, hc: setupHC, token: toks[i]}
		if i == 0 {
			if t, err = s.prepare(ctx, opCreateAES256, "f"+runID); err != nil {
				return err
			}
		} else if err := t.probe(ctx, s); err != nil {
			return fmt.Errorf("write through %s: %w", b, explainSetup(err))
		}
	}
	setupTr.CloseIdleConnections()

	tr, err := newTransport(f.CAFile, len(bases)*opts.Writers, false)
	if err != nil {
		return err
	}
	defer tr.CloseIdleConnections()
	fmt.Fprintf(stderr, "hsmpool-load: failover: %d writers through each of %d nodes for %v\n", opts.Writers, len(bases), opts.Duration)
	acks, failures, from, to := writeUntil(ctx, tr, bases, toks, t, opts.Writers, opts.Duration, opts.Timeout, stderr)

	var marks []mark
	if opts.MarksFile != "" {
		mf, err := os.Open(opts.MarksFile)
		if err != nil {
			return fmt.Errorf("--marks-file: %w", err)
		}
		marks, err = readMarks(mf)
		mf.Close()
		if err != nil {
			return fmt.Errorf("--marks-file %s: %w", opts.MarksFile, err)
		}
	}
	reports := reportMarks(acks, failures, marks, bases)
	sum := failoverSummary{Summary: true, Seconds: time.Duration(to - from).Seconds(), Acked: len(acks), Failed: len(failures),
		LongestGapMs: nsToMs(int64(longestGap(acks, from, to)))}
	if err := printFailover(stdout, opts.Output == outputJSON, reports, sum); err != nil {
		return err
	}
	for _, r := range reports {
		if r.RecoveryMs < 0 {
			return fmt.Errorf("no write started after the mark at %d (%s) was acknowledged", r.Mark, r.Label)
		}
	}
	return nil
}

// writeUntil runs writers writers per node for d (or until ctx is done) and returns the acknowledged writes, the
// end times of the failed ones, and the run's start and end (Unix nanoseconds). The first few failures are
// printed on stderr.
func writeUntil(ctx context.Context, tr *http.Transport, bases, toks []string, t target, writers int, d, timeout time.Duration, stderr io.Writer) (acks []ack, failures []int64, from, to int64) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var (
		mu    sync.Mutex
		wg    sync.WaitGroup
		shown int
	)
	from = time.Now().UnixNano()
	for node, base := range bases {
		for w := range writers {
			worker := node*writers + w
			wg.Go(func() {
				var mine []ack
				var failed []int64
				var buf bytes.Buffer
				for seq := 0; ctx.Err() == nil; seq++ {
					start := time.Now()
					err := writeOnce(ctx, tr, base+t.path(worker, seq), toks[node], t, timeout, &buf)
					end := time.Now()
					if err == nil {
						mine = append(mine, ack{start: start.UnixNano(), end: end.UnixNano(), node: node})
						continue
					}
					if ctx.Err() != nil {
						break // the run ended during the write: neither acknowledged nor failed
					}
					failed = append(failed, end.UnixNano())
					mu.Lock()
					if shown < maxShownErrors {
						shown++
						fmt.Fprintf(stderr, "hsmpool-load: failover: write through %s failed at %s: %v\n", base, end.UTC().Format("15:04:05.000"), err)
					}
					mu.Unlock()
					sleepUntil(ctx, time.Now().Add(retryPause))
				}
				mu.Lock()
				acks = append(acks, mine...)
				failures = append(failures, failed...)
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	to = time.Now().UnixNano()
	return acks, failures, from, to
}

// writeOnce sends one write of t to url and checks its answer.
func writeOnce(ctx context.Context, tr *http.Transport, url, token string, t target, timeout time.Duration, buf *bytes.Buffer) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(t.body))
	if err != nil {
		return err
	}
	req.Header["Authorization"] = []string{"Bearer " + token}
	req.Header["Content-Type"] = []string{"application/json"}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return err
	}
	buf.Reset()
	_, err = buf.ReadFrom(resp.Body)
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("read the answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return newAnswerError(resp.StatusCode, buf.Bytes())
	}
	if !hasString(buf.Bytes(), t.field) {
		return errors.New("the answer has no " + strconv.Quote(t.field))
	}
	return nil
}

// printFailover prints the marks' reports and the summary, as a table or JSON lines.
func printFailover(w io.Writer, asJSON bool, reports []markReport, sum failoverSummary) error {
	if asJSON {
		enc := json.NewEncoder(w)
		for _, r := range reports {
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
		return enc.Encode(sum)
	}
	ms := func(v float64) string {
		if v < 0 {
			return "none"
		}
		return fmtMicros(v * 1000)
	}
	const format = "%-30s %-12s %10s %10s %6s  %s\n"
	if len(reports) > 0 {
		if _, err := fmt.Fprintf(w, format, "MARK", "LABEL", "RECOVERY", "FIRST-ACK", "FAILED", "NODE"); err != nil {
			return err
		}
	}
	for _, r := range reports {
		at := time.Unix(0, r.Mark).UTC().Format("2006-01-02T15:04:05.000Z")
		if _, err := fmt.Fprintf(w, format, at, r.Label, ms(r.RecoveryMs), ms(r.FirstAckMs), fmt.Sprint(r.Failed), r.Node); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintf(w, "%d writes acknowledged and %d failed in %.1f s; longest time without an acknowledgement %s\n",
		sum.Acked, sum.Failed, sum.Seconds, ms(sum.LongestGapMs))
	return err
}
