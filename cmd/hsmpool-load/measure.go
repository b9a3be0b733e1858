package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// maxShownErrors is how many request errors a run keeps to print; the rest are only counted.
const maxShownErrors = 5

// doFunc sends one request for client worker; seq counts that client's requests from 0. It returns nil only for an
// answer that is a success.
type doFunc func(ctx context.Context, worker, seq int) error

// window is the timing of a run.
type window struct {
	clients  int
	warmup   time.Duration
	duration time.Duration
	// requests, if not 0, ends the run early once that many requests started after the warm-up have succeeded.
	requests int64
	// serverCPU, if not nil, returns the CPU time each of the server's processes has used so far.
	serverCPU func() ([]time.Duration, error)
}

// sample is what a run recorded.
type sample struct {
	// latencies are those of the successful requests that started inside the measuring window, unsorted.
	latencies []time.Duration
	// elapsed is the measuring window's length.
	elapsed time.Duration
	// errors counts failed requests, in the warm-up too.
	errors int64
	// shown are the first maxShownErrors of them.
	shown []error
	// cpu is the user and system CPU time that this process used during the measuring window; 0 where unknown.
	cpu time.Duration
	// serverCPU is the same for the server, if window.serverCPU was given, and serverCPUEach for each of its
	// processes; serverErr says why they are unknown.
	serverCPU     time.Duration
	serverCPUEach []time.Duration
	serverErr     error
}

// measure runs w.clients closed-loop clients that call do until the window ends, or until w.requests requests have
// succeeded in it. A request counts if it starts after the warm-up and before the end; requests in flight at the end
// are waited for, and count. Percentiles are exact: every latency is kept (8 bytes a request, 16 MB at 200,000
// requests/s for 10 s) and sorted afterwards, so that no histogram's bucketing is in the figures.
func measure(ctx context.Context, w window, do doFunc) sample {
	start := time.Now()
	from := start.Add(w.warmup)
	end := from.Add(w.duration)

	var (
		errCount atomic.Int64
		claimed  atomic.Int64 // with w.requests: measured requests started and not failed
		mu       sync.Mutex
		shown    []error
		wg       sync.WaitGroup
	)
	lats := make([][]time.Duration, w.clients)
	for i := range w.clients {
		wg.Go(func() {
			var mine []time.Duration
			for seq := 0; ; seq++ {
				t0 := time.Now()
				if !t0.Before(end) || ctx.Err() != nil {
					break
				}
				limited := w.requests > 0 && !t0.Before(from)
				if limited && claimed.Add(1) > w.requests {
					claimed.Add(-1)
					break
				}
				if err := do(ctx, i, seq); err != nil {
					if limited {
						claimed.Add(-1) // a failed request does not count towards w.requests
					}
					if errCount.Add(1) <= maxShownErrors {
						mu.Lock()
						shown = append(shown, err)
						mu.Unlock()
					}
					continue
				}
				if !t0.Before(from) {
					mine = append(mine, time.Since(t0))
				}
			}
			lats[i] = mine
		})
	}
	allDone := make(chan struct{})
	go func() {
		wg.Wait()
		close(allDone)
	}()

	// CPU times are read at the window's edges, so that the warm-up's TLS handshakes are not in them.
	var s sample
	var srv0, srv1 []time.Duration
	readServer := func(d *[]time.Duration) {
		if w.serverCPU != nil && s.serverErr == nil {
			*d, s.serverErr = w.serverCPU()
		}
	}
	sleepUntil(ctx, from)
	cpu0 := processCPU()
	readServer(&srv0)
	elapsed := w.duration
	timer := time.NewTimer(time.Until(end))
	select {
	case <-timer.C:
	case <-ctx.Done():
	case <-allDone: // only with w.requests (or a done context) do the clients stop before the end
		if now := time.Now(); now.Before(end) {
			elapsed = max(now.Sub(from), time.Nanosecond)
		}
	}
	timer.Stop()
	cpu1 := processCPU()
	readServer(&srv1)
	<-allDone

	s.elapsed, s.errors, s.shown, s.cpu = elapsed, errCount.Load(), shown, max(cpu1-cpu0, 0)
	if w.serverCPU != nil && s.serverErr == nil && len(srv0) == len(srv1) {
		for i := range srv1 {
			d := max(srv1[i]-srv0[i], 0)
			s.serverCPUEach = append(s.serverCPUEach, d)
			s.serverCPU += d
		}
	}
	n := 0
	for _, l := range lats {
		n += len(l)
	}
	s.latencies = make([]time.Duration, 0, n)
	for _, l := range lats {
		s.latencies = append(s.latencies, l...)
	}
	return s
}

// sleepUntil sleeps until t or until ctx is done.
func sleepUntil(ctx context.Context, t time.Time) {
	d := time.Until(t)
	if d <= 0 {
		return
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-ctx.Done():
	}
}

// result is one run's figures, as -o json prints them.
type result struct {
	Op      string `json:"op"`
	Clients int    `json:"clients"`
	// Nodes is how many of the pool's nodes the clients sent to.
	Nodes    int     `json:"nodes"`
	Protocol string  `json:"protocol"`
	Seconds  float64 `json:"seconds"`
	Ops      int     `json:"ops"`
	Errors   int64   `json:"errors"`
	OpsPerS  float64 `json:"ops_per_s"`
	// Latency is in microseconds.
	Latency latency `json:"latency_us"`
	// ClientCPU is how many CPU cores hsmpool-load itself kept busy while it measured: on a small machine its
	// own TLS and HTTP work competes with the pool's.
	ClientCPU float64 `json:"client_cpu_cores"`
	// ServerCPU is how many cores the server kept busy while it measured, and ServerCPUPerOp the server's CPU
	// time per successful request in microseconds: on a machine shared with other work, the figure that other
	// work disturbs least. Both only with --server-pid.
	ServerCPU      float64 `json:"server_cpu_cores,omitempty"`
	ServerCPUPerOp float64 `json:"server_cpu_us_per_op,omitempty"`
	// ServerCPUPerOpEach splits ServerCPUPerOp over the server's processes, in the order of --server-pid, when
	// there are several (the nodes of a cluster).
	ServerCPUPerOpEach []float64 `json:"server_cpu_us_per_op_each,omitempty"`
}

// latency holds percentiles in microseconds.
type latency struct {
	Min  float64 `json:"min"`
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p99_9"`
	Max  float64 `json:"max"`
}

// summarize turns a sample into a result. It sorts s.latencies in place.
func summarize(s sample) result {
	lat := s.latencies
	slices.Sort(lat)
	r := result{Ops: len(lat), Errors: s.errors, Seconds: s.elapsed.Seconds()}
	if s.elapsed > 0 {
		r.OpsPerS = float64(len(lat)) / s.elapsed.Seconds()
		r.ClientCPU = round2(float64(s.cpu) / float64(s.elapsed))
		r.ServerCPU = round2(float64(s.serverCPU) / float64(s.elapsed))
	}
	if len(lat) > 0 {
		r.ServerCPUPerOp = micros(s.serverCPU / time.Duration(len(lat)))
		if len(s.serverCPUEach) > 1 {
			for _, d := range s.serverCPUEach {
				r.ServerCPUPerOpEach = append(r.ServerCPUPerOpEach, micros(d/time.Duration(len(lat))))
			}
		}
	}
	if len(lat) == 0 {
		return r
	}
	var sum time.Duration
	for _, d := range lat {
		sum += d
	}
	r.Latency = latency{
		Min:  micros(lat[0]),
		Mean: micros(sum / time.Duration(len(lat))),
		P50:  micros(percentile(lat, 50)),
		P90:  micros(percentile(lat, 90)),
		P99:  micros(percentile(lat, 99)),
		P999: micros(percentile(lat, 99.9)),
		Max:  micros(lat[len(lat)-1]),
	}
	return r
}

// percentile returns the p-th percentile (0 < p <= 100) of sorted by the nearest-rank method: the smallest value
// that at least p % of the values are less than or equal to. It returns 0 for an empty slice.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

func micros(d time.Duration) float64 { return math.Round(float64(d)/float64(time.Microsecond)*10) / 10 }

func round2(f float64) float64 { return math.Round(f*100) / 100 }

// printer writes results as they come: a table with one header, or JSON lines.
type printer struct {
	w      io.Writer
	json   bool
	header bool
	each   bool // the table has the per-process column
}

// tableFormat lays out a table row; fixed widths, so that rows can be printed as each run ends. The last column,
// the server's CPU per request of each process, is there only with several --server-pid.
const tableFormat = "%-18s %7s %-8s %8s %6s %10s %9s %9s %9s %9s %7s %7s %9s"

// format returns the row format: tableFormat, and the per-process column if the table has it.
func (p *printer) format() string {
	if p.each {
		return tableFormat + "  %s\n"
	}
	return tableFormat + "%.0s\n"
}

func (p *printer) print(r result) error {
	if p.json {
		return json.NewEncoder(p.w).Encode(r)
	}
	if !p.header {
		p.header = true
		p.each = len(r.ServerCPUPerOpEach) > 0
		if _, err := fmt.Fprintf(p.w, p.format(), "OP", "CLIENTS", "PROTO", "OPS", "ERRORS", "OPS/S", "P50", "P99", "P99.9", "MAX", "CLI-CPU", "SRV-CPU", "SRV-µs/OP", "PER-PROCESS"); err != nil {
			return err
		}
	}
	srvCPU, srvPerOp := "-", "-"
	if r.ServerCPUPerOp > 0 {
		srvCPU, srvPerOp = fmt.Sprintf("%.2f", r.ServerCPU), fmt.Sprintf("%.0f", r.ServerCPUPerOp)
	}
	each := make([]string, len(r.ServerCPUPerOpEach))
	for i, v := range r.ServerCPUPerOpEach {
		each[i] = fmt.Sprintf("%.0f", v)
	}
	_, err := fmt.Fprintf(p.w, p.format(), r.Op, fmt.Sprint(r.Clients), r.Protocol, fmt.Sprint(r.Ops), fmt.Sprint(r.Errors),
		fmt.Sprintf("%.1f", r.OpsPerS), fmtMicros(r.Latency.P50), fmtMicros(r.Latency.P99), fmtMicros(r.Latency.P999),
		fmtMicros(r.Latency.Max), fmt.Sprintf("%.2f", r.ClientCPU), srvCPU, srvPerOp, strings.Join(each, "/"))
	return err
}

// fmtMicros prints a latency in microseconds with a unit that keeps it short: 812µs, 1.25ms, 2.1s.
func fmtMicros(us float64) string {
	switch {
	case us < 1000:
		return fmt.Sprintf("%.0fµs", us)
	case us < 1e6:
		return fmt.Sprintf("%.2fms", us/1000)
	}
	return fmt.Sprintf("%.2fs", us/1e6)
}
