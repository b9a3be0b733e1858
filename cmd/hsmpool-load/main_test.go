package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/hsmpool/hsmpool/pkg/client"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(o *loadOptions)
		wantErr string // substring; "" for none
		wantOps []opKind
	}{
		{name: "one op", edit: func(o *loadOptions) { o.Ops = []string{"sign-p256"} }, wantOps: []opKind{opSignP256}},
		{name: "every op", edit: func(o *loadOptions) {
			o.Ops = []string{"sign-p256", "sign-rsa2048", "encrypt-aes256gcm", "create"}
			o.Clients = []int{1, 4, 16}
		}, wantOps: []opKind{opSignP256, opSignRSA2048, opEncryptAES256GCM, opCreate}},
		{name: "no op", edit: func(o *loadOptions) {}, wantErr: "--op is required"},
		{name: "unknown op", edit: func(o *loadOptions) { o.Ops = []string{"sign-p384"} }, wantErr: `--op: unknown operation "sign-p384"`},
		{name: "empty op", edit: func(o *loadOptions) { o.Ops = []string{""} }, wantErr: "--op: unknown operation"},
		{name: "no clients", edit: func(o *loadOptions) { o.Ops = []string{"create"}; o.Clients = nil }, wantErr: "--clients"},
		{name: "zero clients", edit: func(o *loadOptions) { o.Ops = []string{"create"}; o.Clients = []int{4, 0} }, wantErr: "--clients 0"},
		{name: "too many clients", edit: func(o *loadOptions) { o.Ops = []string{"create"}; o.Clients = []int{maxClients + 1} }, wantErr: "--clients 1025"},
		{name: "short duration", edit: func(o *loadOptions) { o.Ops = []string{"create"}; o.Duration = time.Millisecond }, wantErr: "--duration 1ms"},
		{name: "negative warmup", edit: func(o *loadOptions) { o.Ops = []string{"create"}; o.Warmup = -time.Second }, wantErr: "--warmup -1s"},
		{name: "no warmup", edit: func(o *loadOptions) { o.Ops = []string{"create"}; o.Warmup = 0 }, wantOps: []opKind{opCreate}},
		{name: "zero count", edit: func(o *loadOptions) { o.Ops = []string{"create"}; o.Count = 0 }, wantErr: "--count 0"},
		{name: "bad output", edit: func(o *loadOptions) { o.Ops = []string{"create"}; o.Output = "yaml" }, wantErr: `-o "yaml"`},
		{name: "bad server pid", edit: func(o *loadOptions) { o.Ops = []string{"create"}; o.ServerPIDs = []int{12, -1} }, wantErr: "--server-pid -1"},
		{name: "aes creates", edit: func(o *loadOptions) { o.Ops = []string{"create-aes256"} }, wantOps: []opKind{opCreateAES256}},
		{name: "three nodes", edit: func(o *loadOptions) {
			o.Ops = []string{"create-aes256"}
			o.URLs = []string{"https://contoso.managedhsm.localhost:8543", "https://contoso.managedhsm.localhost:8553/", "https://contoso.managedhsm.localhost:8563"}
		}, wantOps: []opKind{opCreateAES256}},
		{name: "a node twice", edit: func(o *loadOptions) {
			o.Ops = []string{"create"}
			o.URLs = []string{"https://contoso.managedhsm.localhost:8543", "https://contoso.managedhsm.localhost:8543/"}
		}, wantErr: "given twice"},
		{name: "a node by IP", edit: func(o *loadOptions) { o.Ops = []string{"create"}; o.URLs = []string{"https://127.0.0.1:8543"} }, wantErr: "--url: pool URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := defaultLoadOptions()
			tt.edit(o)
			p, err := o.validate()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("validate() = %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("validate() = %v", err)
			}
			if !slices.Equal(p.ops, tt.wantOps) || !slices.Equal(p.clients, o.Clients) {
				t.Errorf("plan = %+v, want ops %v, clients %v", p, tt.wantOps, o.Clients)
			}
		})
	}
}

// TestFlags checks that the command line reaches the options, lists included, and that bad flags fail before any
// client file is read.
func TestFlags(t *testing.T) {
	var out, errOut bytes.Buffer
	code := run([]string{"--op", "sign-p256,create", "--clients", "1,4", "--client-file", "/nonexistent", "--count", "0"}, &out, &errOut)
	if code != 1 || !strings.Contains(errOut.String(), "hsmpool-load: --count 0") {
		t.Errorf("run = %d, stderr %q; want 1 and the --count error", code, errOut.String())
	}

	o := defaultLoadOptions()
	cmd := newRootCmd(o, io.Discard)
	cmd.SetArgs([]string{"--op", "sign-p256,create", "--op", "sign-rsa2048", "--clients", "1,4", "--clients", "16",
		"--duration", "3s", "--warmup", "0s", "--http1", "-o", "json", "--url", "https://a.managedhsm.localhost:1",
		"--url", "https://a.managedhsm.localhost:2", "--server-pid", "10", "--server-pid", "11,12"})
	cmd.RunE = func(*cobra.Command, []string) error { return nil }
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	want := loadOptions{Ops: []string{"sign-p256", "create", "sign-rsa2048"}, Clients: []int{1, 4, 16}, Duration: 3 * time.Second,
		Count: 1, HTTP1: true, Output: "json"}
	if !slices.Equal(o.Ops, want.Ops) || !slices.Equal(o.Clients, want.Clients) || o.Duration != want.Duration ||
		o.Warmup != 0 || o.Count != 1 || !o.HTTP1 || o.Output != "json" ||
		!slices.Equal(o.URLs, []string{"https://a.managedhsm.localhost:1", "https://a.managedhsm.localhost:2"}) ||
		!slices.Equal(o.ServerPIDs, []int{10, 11, 12}) {
		t.Errorf("options = %+v, want %+v", *o, want)
	}
}

func TestNoClientFile(t *testing.T) {
	t.Setenv(client.EnvFile, "")
	var out, errOut bytes.Buffer
	if code := run([]string{"--op", "sign-p256"}, &out, &errOut); code != 1 {
		t.Fatalf("run = %d, want 1", code)
	}
	if !strings.Contains(errOut.String(), "hsmpool-load: no client file") || !strings.Contains(errOut.String(), "hsmpool-load: hint:") {
		t.Errorf("stderr = %q", errOut.String())
	}
}

func TestOpNames(t *testing.T) {
	for op := opSignP256; op <= opCreateAES256; op++ {
		got, err := parseOp(op.String())
		if err != nil || got != op {
			t.Errorf("parseOp(%q) = %v, %v; want %v", op.String(), got, err, op)
		}
		if specs[op].key == "" || !strings.HasPrefix(specs[op].key, "load-") {
			t.Errorf("%v: key %q does not start with load-", op, specs[op].key)
		}
	}
	if _, err := parseOp("op(0)"); err == nil {
		t.Error("parseOp accepted an invalid op's name")
	}
	if s := opInvalid.String(); s != "op(0)" {
		t.Errorf("opInvalid.String() = %q", s)
	}
}

func TestScopeFor(t *testing.T) {
	tests := []struct {
		url, want, wantErr string
	}{
		{url: "https://contoso.managedhsm.localhost:9543", want: "https://managedhsm.localhost:9543/.default"},
		{url: "https://contoso.managedhsm.localhost:9543/", want: "https://managedhsm.localhost:9543/.default"},
		{url: "https://contoso.managedhsm.azure.net", want: "https://managedhsm.azure.net/.default"},
		{url: "http://contoso.managedhsm.localhost", wantErr: "want https"},
		{url: "https://localhost:9543", wantErr: "want a host NAME.managedhsm.SUFFIX"},
		{url: "https://127.0.0.1:9543", wantErr: "want a host NAME.managedhsm.SUFFIX"},
		{url: "::", wantErr: "want https"},
	}
	for _, tt := range tests {
		got, err := scopeFor(tt.url)
		switch {
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("scopeFor(%q) = %q, %v; want an error containing %q", tt.url, got, err, tt.wantErr)
		case tt.wantErr == "" && (err != nil || got != tt.want):
			t.Errorf("scopeFor(%q) = %q, %v; want %q", tt.url, got, err, tt.want)
		}
	}
}

func us(n ...int) []time.Duration {
	out := make([]time.Duration, len(n))
	for i, v := range n {
		out[i] = time.Duration(v) * time.Microsecond
	}
	return out
}

func TestPercentile(t *testing.T) {
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Microsecond
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{name: "empty", sorted: nil, p: 50, want: 0},
		{name: "one value", sorted: us(7), p: 99.9, want: 7 * time.Microsecond},
		{name: "p50 of 1..100", sorted: hundred, p: 50, want: 50 * time.Microsecond},
		{name: "p99 of 1..100", sorted: hundred, p: 99, want: 99 * time.Microsecond},
		{name: "p99.9 of 1..100 is the max", sorted: hundred, p: 99.9, want: 100 * time.Microsecond},
		{name: "p100", sorted: hundred, p: 100, want: 100 * time.Microsecond},
		{name: "tiny p is the min", sorted: hundred, p: 0.001, want: time.Microsecond},
		{name: "p50 of 4 is the 2nd", sorted: us(1, 2, 3, 4), p: 50, want: 2 * time.Microsecond},
		{name: "p51 of 4 is the 3rd", sorted: us(1, 2, 3, 4), p: 51, want: 3 * time.Microsecond},
	}
	for _, tt := range tests {
		if got := percentile(tt.sorted, tt.p); got != tt.want {
			t.Errorf("%s: percentile(p%v) = %v, want %v", tt.name, tt.p, got, tt.want)
		}
	}
}

func TestSummarize(t *testing.T) {
	r := summarize(sample{latencies: us(400, 100, 300, 200), elapsed: 2 * time.Second, errors: 3, cpu: time.Second})
	want := result{Ops: 4, Errors: 3, Seconds: 2, OpsPerS: 2, ClientCPU: 0.5,
		Latency: latency{Min: 100, Mean: 250, P50: 200, P90: 400, P99: 400, P999: 400, Max: 400}}
	if !reflect.DeepEqual(r, want) {
		t.Errorf("summarize = %+v\nwant        %+v", r, want)
	}
	r = summarize(sample{latencies: us(100, 100), elapsed: time.Second, cpu: 333 * time.Millisecond, serverCPU: 1500 * time.Millisecond})
	if r.ClientCPU != 0.33 || r.ServerCPU != 1.5 || r.ServerCPUPerOp != 750000 || r.ServerCPUPerOpEach != nil {
		t.Errorf("summarize with CPU times = %+v", r)
	}
	r = summarize(sample{latencies: us(100, 100), elapsed: time.Second, serverCPU: 1500 * time.Millisecond,
		serverCPUEach: []time.Duration{time.Second, 400 * time.Millisecond, 100 * time.Millisecond}})
	if r.ServerCPUPerOp != 750000 || !slices.Equal(r.ServerCPUPerOpEach, []float64{500000, 200000, 50000}) {
		t.Errorf("summarize with three processes' CPU times = %+v", r)
	}
	if r := summarize(sample{elapsed: time.Second, errors: 5}); r.Ops != 0 || r.OpsPerS != 0 || r.Latency != (latency{}) || r.Errors != 5 {
		t.Errorf("summarize of no successes = %+v", r)
	}
}

func TestPrinter(t *testing.T) {
	r := result{Op: "sign-p256", Clients: 4, Protocol: "HTTP/2.0", Seconds: 10, Ops: 12345, OpsPerS: 1234.5,
		Latency: latency{P50: 812, P99: 1250, P999: 2_100_000, Max: 2_500_000}, ClientCPU: 0.25}
	var table bytes.Buffer
	p := &printer{w: &table}
	for range 2 {
		if err := p.print(r); err != nil {
			t.Fatal(err)
		}
	}
	lines := strings.Split(strings.TrimSpace(table.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "OP ") {
		t.Fatalf("table has %d lines, want a header and 2 rows:\n%s", len(lines), table.String())
	}
	for _, f := range []string{"sign-p256", "HTTP/2.0", "12345", "1234.5", "812µs", "1.25ms", "2.10s", "0.25", " - "} {
		if !strings.Contains(lines[1], f) {
			t.Errorf("row %q lacks %q", lines[1], f)
		}
	}
	r.ServerCPU, r.ServerCPUPerOp = 1.75, 1417.6
	table.Reset()
	if err := (&printer{w: &table, header: true}).print(r); err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(strings.TrimSpace(table.String()), "0.25    1.75      1418") {
		t.Errorf("row with server CPU = %q", table.String())
	}

	r.ServerCPUPerOpEach = []float64{900, 300.4, 217.2}
	table.Reset()
	p = &printer{w: &table}
	if err := p.print(r); err != nil {
		t.Fatal(err)
	}
	lines = strings.Split(strings.TrimSpace(table.String()), "\n")
	if len(lines) != 2 || !strings.HasSuffix(lines[0], "  PER-PROCESS") || !strings.HasSuffix(lines[1], "1418  900/300/217") {
		t.Errorf("table with CPU per process:\n%s", table.String())
	}

	var js bytes.Buffer
	if err := (&printer{w: &js, json: true}).print(r); err != nil {
		t.Fatal(err)
	}
	var back result
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || !reflect.DeepEqual(back, r) {
		t.Errorf("JSON %s reads back as %+v, %v", js.String(), back, err)
	}
}

func TestMeasure(t *testing.T) {
	var calls atomic.Int64
	do := func(ctx context.Context, worker, seq int) error {
		calls.Add(1)
		time.Sleep(time.Millisecond)
		if seq%10 == 9 {
			return fmt.Errorf("client %d request %d failed", worker, seq)
		}
		return nil
	}
	s := measure(context.Background(), window{clients: 3, warmup: 50 * time.Millisecond, duration: 200 * time.Millisecond}, do)
	if s.elapsed != 200*time.Millisecond {
		t.Errorf("elapsed = %v", s.elapsed)
	}
	total := int64(len(s.latencies)) + s.errors
	if s.errors == 0 || len(s.shown) != maxShownErrors || total >= calls.Load() || len(s.latencies) == 0 {
		// Warm-up successes are neither latencies nor errors, so fewer are recorded than were made.
		t.Errorf("%d calls: %d latencies, %d errors, %d shown", calls.Load(), len(s.latencies), s.errors, len(s.shown))
	}
	for _, l := range s.latencies {
		if l < time.Millisecond {
			t.Fatalf("latency %v is shorter than the request", l)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	measure(ctx, window{clients: 2, warmup: time.Minute, duration: time.Minute}, do)
	if time.Since(start) > 10*time.Second {
		t.Error("measure did not stop when its context was done")
	}
}

func TestAnswerError(t *testing.T) {
	e := newAnswerError(409, []byte(`{"error":{"code":"Conflict","message":"the pool is not activated: download it"}}`))
	if got, want := e.Error(), "HTTP 409 Conflict: Conflict: the pool is not activated: download it"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	var h *hintedError
	if err := explainSetup(fmt.Errorf("POST /keys/x/create: %w", e)); !errors.As(err, &h) || !strings.Contains(h.hints[0], "not activated") {
		t.Errorf("explainSetup gave no activation hint: %v", err)
	}
	if got := newAnswerError(502, []byte("<html>")).Error(); got != "HTTP 502 Bad Gateway" {
		t.Errorf("Error() of a non-JSON answer = %q", got)
	}
}

func TestActivateValidate(t *testing.T) {
	certs := []string{"a.cer", "b.cer", "c.cer"}
	tests := []struct {
		name    string
		opts    activateOptions
		wantErr string
	}{
		{name: "ok", opts: activateOptions{Certs: certs, Quorum: 2, SDOut: "sd.json"}},
		{name: "two certs", opts: activateOptions{Certs: certs[:2], Quorum: 2, SDOut: "sd.json"}, wantErr: "--cert: 2 certificates"},
		{name: "quorum above certs", opts: activateOptions{Certs: certs, Quorum: 4, SDOut: "sd.json"}, wantErr: "--quorum 4"},
		{name: "quorum 1", opts: activateOptions{Certs: certs, Quorum: 1, SDOut: "sd.json"}, wantErr: "--quorum 1"},
		{name: "no output", opts: activateOptions{Certs: certs, Quorum: 2}, wantErr: "--sd-out is required"},
	}
	for _, tt := range tests {
		err := tt.opts.validate()
		if (tt.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("%s: validate() = %v, want %q", tt.name, err, tt.wantErr)
		}
	}
}

// TestRunOnce runs the request loop against a fake pool over TLS, with HTTP/2 and HTTP/1.1: every request carries
// the token, the api-version and the body; a failed answer, or a 200 without a value, is counted and shown.
func TestRunOnce(t *testing.T) {
	var failNext, emptyNext atomic.Bool
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		switch {
		case r.Header.Get("Authorization") != "Bearer tok" || r.URL.Query().Get("api-version") != apiVersion ||
			r.Method != http.MethodPost || string(b) != `{"alg":"ES256"}` || r.URL.Path != "/keys/k/v/sign":
			http.Error(w, `{"error":{"code":"BadParameter","message":"unexpected request"}}`, http.StatusBadRequest)
		case failNext.CompareAndSwap(true, false):
			http.Error(w, `{"error":{"code":"Throttled","message":"try later"}}`, http.StatusTooManyRequests)
		case emptyNext.CompareAndSwap(true, false):
			_, _ = io.WriteString(w, `{"kid":"k","value":""}`)
		default:
			_, _ = io.WriteString(w, `{"kid":"k","value":"AAAA"}`)
		}
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	f := &client.File{CAFile: ca}
	tgt := target{op: opSignP256, body: []byte(`{"alg":"ES256"}`), field: "value", path: func(int, int) string { return keyPath("k", "v", "sign") }}

	for _, tc := range []struct {
		http1     bool
		wantProto string
	}{{false, "HTTP/2.0"}, {true, "HTTP/1.1"}} {
		failNext.Store(true)
		emptyNext.Store(true)
		w := window{clients: 2, warmup: 0, duration: 300 * time.Millisecond}
		r, shown, err := runOnce(context.Background(), f, []string{srv.URL}, []string{"tok"}, tgt, w, tc.http1)
		if err != nil {
			t.Fatal(err)
		}
		if r.Protocol != tc.wantProto || r.Ops == 0 || r.Errors != 2 || len(shown) != 2 || r.Op != "sign-p256" || r.Clients != 2 || r.Nodes != 1 {
			t.Errorf("http1=%v: result %+v, shown %v", tc.http1, r, shown)
		}
		var msgs []string
		for _, e := range shown {
			msgs = append(msgs, e.Error())
		}
		all := strings.Join(msgs, "\n")
		for _, want := range []string{"HTTP 429 Too Many Requests: Throttled: try later", `the answer has no "value"`} {
			if !strings.Contains(all, want) {
				t.Errorf("http1=%v: shown errors %q lack %q", tc.http1, all, want)
			}
		}
	}
}

func TestHasString(t *testing.T) {
	for _, tc := range []struct {
		body string
		want bool
	}{
		{`{"kid":"k","value":"AAAA"}`, true},
		{`{"kid":"k","value":""}`, false},
		{`{"kid":"k","value":`, false},
		{`{"kid":"k","value":"`, false},
		{`{"kid":"k"}`, false},
		{`{"error":{"code":"x","message":"value"}}`, false},
	} {
		if got := hasString([]byte(tc.body), "value"); got != tc.want {
			t.Errorf("hasString(%s) = %v, want %v", tc.body, got, tc.want)
		}
	}
}
