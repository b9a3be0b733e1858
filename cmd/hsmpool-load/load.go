package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/hsmpool/hsmpool/pkg/client"
)

// requestTimeout bounds one request, answer included.
const requestTimeout = 30 * time.Second

// scopeFor returns the token scope of the pool at poolURL: its URL without the pool-name label, with "/.default",
// e.g. https://managedhsm.localhost:8443/.default for https://contoso.managedhsm.localhost:8443.
func scopeFor(poolURL string) (string, error) {
	u, err := url.Parse(poolURL)
	if err != nil || u.Scheme != "https" || u.Hostname() == "" {
		return "", fmt.Errorf("pool URL %q: want https://NAME.managedhsm.SUFFIX[:PORT]", poolURL)
	}
	_, rest, ok := strings.Cut(u.Hostname(), ".")
	if !ok || rest == "" || net.ParseIP(u.Hostname()) != nil {
		return "", fmt.Errorf("pool URL %q: want a host NAME.managedhsm.SUFFIX, not %q", poolURL, u.Hostname())
	}
	if p := u.Port(); p != "" {
		rest += ":" + p
	}
	return "https://" + rest + "/.default", nil
}

// newTransport returns pkg/client's transport for the pool, tuned for the load: up to clients idle connections
// and, with http1, only HTTP/1.1 with at most clients connections; otherwise HTTP/2 too.
func newTransport(caFile string, clients int, http1 bool) (*http.Transport, error) {
	tr, err := client.NewTransport(caFile)
	if err != nil {
		return nil, err
	}
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetHTTP2(!http1)
	tr.Protocols = &protos
	tr.ForceAttemptHTTP2 = !http1
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost = clients, clients
	tr.DisableCompression = true // the answers are small JSON; gzip would only measure the client's CPU
	if http1 {
		tr.MaxConnsPerHost = clients
	}
	return tr, nil
}

// newCredential returns the credential of the client file's principal, which asks the pool's own token endpoint.
func newCredential(f *client.File, hc *http.Client) (*azidentity.ClientSecretCredential, error) {
	opts := &azidentity.ClientSecretCredentialOptions{
		ClientOptions: azcore.ClientOptions{
			Transport: hc,
			Cloud:     cloud.Configuration{ActiveDirectoryAuthorityHost: strings.TrimSuffix(f.AuthorityHost, "/") + "/"},
		},
		DisableInstanceDiscovery: true,
	}
	cred, err := azidentity.NewClientSecretCredential(f.TenantID, f.ClientID, f.ClientSecret.Reveal(), opts)
	if err != nil {
		return nil, fmt.Errorf("make the credential: %w", err)
	}
	return cred, nil
}

// tokenSource gets access tokens for one scope; azidentity caches them, so a call returns the cached token
// until it is close to expiring.
type tokenSource struct {
	cred  *azidentity.ClientSecretCredential
	scope string
	pool  string // the pool's URL, for errors
}

// get returns a token that stays valid for at least need.
func (t tokenSource) get(ctx context.Context, need time.Duration) (string, error) {
	tok, err := t.cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{t.scope}})
	if err != nil {
		if e, ok := client.AsError(err); ok {
			return "", withHints(fmt.Errorf("get a token for %s: %w", t.scope, e),
				"the pool did not accept the client file's credentials: is it this pool's current client file?")
		}
		if isNetError(err) {
			return "", withHints(fmt.Errorf("get a token from %s: %w", t.pool, err), "is hsmpoold running, and listening there?")
		}
		return "", fmt.Errorf("get a token for %s: %w", t.scope, err)
	}
	if left := time.Until(tok.ExpiresOn); left < need {
		return "", fmt.Errorf("the pool's token is valid for %v, and the next run takes %v: shorten --warmup and --duration",
			left.Round(time.Second), need.Round(time.Second))
	}
	return tok.Token, nil
}

func isNetError(err error) bool {
	var dnsErr *net.DNSError
	var opErr *net.OpError
	return errors.As(err, &dnsErr) || errors.As(err, &opErr)
}

// runLoad prepares each operation of p and runs it with each number of clients, opts.Count times, printing each
// run's figures on stdout as it ends. It returns an error if a run had failed requests.
func runLoad(ctx context.Context, f *client.File, opts *loadOptions, p plan, stdout, stderr io.Writer) error {
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
	runTime := opts.Warmup + opts.Duration + time.Minute
	serverCPU, err := serverCPUOf(opts.ServerPIDs)
	if err != nil {
		return err
	}

	out := &printer{w: stdout, json: opts.Output == outputJSON}
	runs, failed := 0, 0
	for _, op := range p.ops {
		var t target
		for i, n := range p.clients {
			for j := range opts.Count {
				toks, err := tokensFor(ctx, sources, runTime)
				if err != nil {
					return err
				}
				// Keys and checks once per operation; for creates, fresh names for every run, so that no run
				// makes a new version of another's key.
				if (i == 0 && j == 0) || op.isCreate() {
					s := &session{base: bases[0], hc: setupHC, token: toks[0]}
					if t, err = s.prepare(ctx, op, newRunID()); err != nil {
						return err
					}
					for k := 1; k < len(bases); k++ {
						if err := probeNode(ctx, t, &session{base: bases[k], hc: setupHC, token: toks[k]}, replicationWait); err != nil {
							return fmt.Errorf("%s through %s: %w", op, bases[k], err)
						}
					}
				}
				fmt.Fprintf(stderr, "hsmpool-load: %s, clients %d, nodes %d: warm-up %v, measuring %v\n", op, n, len(bases), opts.Warmup, opts.Duration)
				r, shown, err := runOnce(ctx, f, bases, toks, t, window{clients: n, warmup: opts.Warmup, duration: opts.Duration, requests: opts.Requests, serverCPU: serverCPU}, opts.HTTP1)
				if err != nil {
					return err
				}
				for _, e := range shown {
					fmt.Fprintf(stderr, "hsmpool-load: %s: request failed: %v\n", op, e)
				}
				if r.Errors > int64(len(shown)) {
					fmt.Fprintf(stderr, "hsmpool-load: %s: %d requests failed in all\n", op, r.Errors)
				}
				if err := out.print(r); err != nil {
					return err
				}
				runs++
				if r.Errors > 0 {
					failed++
				}
			}
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d runs had failed requests", failed, runs)
	}
	return nil
}

// replicationWait bounds how long a node other than the first may answer 404 for a key made through the first:
// it has not applied the write yet.
const replicationWait = 10 * time.Second

// probeNode checks t once through s, the session of another node than the one the keys were made through. While
// that node does not have the key yet (404), it asks again every 50 ms, for up to wait.
func probeNode(ctx context.Context, t target, s *session, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		err := t.probe(ctx, s)
		var ae *answerError
		if err == nil || !errors.As(err, &ae) || ae.Status != http.StatusNotFound || time.Now().After(deadline) {
			return explainSetup(err)
		}
		sleepUntil(ctx, time.Now().Add(50*time.Millisecond))
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// newTokenSources returns a token source for each node URL in bases: the scope of each node's URL, all from the
// client file's token endpoint.
func newTokenSources(f *client.File, hc *http.Client, bases []string) ([]tokenSource, error) {
	cred, err := newCredential(f, hc)
	if err != nil {
		return nil, err
	}
	out := make([]tokenSource, len(bases))
	for i, b := range bases {
		scope, err := scopeFor(b)
		if err != nil {
			return nil, err
		}
		out[i] = tokenSource{cred: cred, scope: scope, pool: b}
	}
	return out, nil
}

// tokensFor returns a token of each source that stays valid for at least need.
func tokensFor(ctx context.Context, sources []tokenSource, need time.Duration) ([]string, error) {
	out := make([]string, len(sources))
	for i, src := range sources {
		tok, err := src.get(ctx, need)
		if err != nil {
			return nil, err
		}
		out[i] = tok
	}
	return out, nil
}

// serverCPUOf returns a function that reads the CPU time each of the processes pids has used so far, after
// checking that it can read them; nil when pids is empty.
func serverCPUOf(pids []int) (func() ([]time.Duration, error), error) {
	if len(pids) == 0 {
		return nil, nil
	}
	f := func() ([]time.Duration, error) {
		out := make([]time.Duration, len(pids))
		for i, pid := range pids {
			d, err := processCPUOf(pid)
			if err != nil {
				return nil, err
			}
			out[i] = d
		}
		return out, nil
	}
	if _, err := f(); err != nil {
		return nil, err
	}
	return f, nil
}

// runOnce runs t with w.clients clients on a transport of its own, so that every run starts without connections.
// Client i sends to bases[i mod len(bases)] with tokens[i mod len(bases)]. It returns the run's figures and the
// first failed requests' errors.
//
// The tool shares the machine with the server it measures, so the CPU it spends per request is taken from the
// server: each client reuses one request, body reader and answer buffer (net/http lets a request be sent again once
// its answer's body is closed), sends it with the transport's RoundTrip (no redirects to follow, no cookies), and
// checks the answer without decoding it.
func runOnce(ctx context.Context, f *client.File, bases, tokens []string, t target, w window, http1 bool) (result, []error, error) {
	if len(bases) == 0 || len(tokens) != len(bases) {
		return result{}, nil, fmt.Errorf("%d node URLs and %d tokens", len(bases), len(tokens))
	}
	tr, err := newTransport(f.CAFile, w.clients, http1)
	if err != nil {
		return result{}, nil, err
	}
	defer tr.CloseIdleConnections()
	tr.ResponseHeaderTimeout = requestTimeout // in place of http.Client's Timeout, which copies every request
	auths := make([][]string, len(tokens))
	for i, tok := range tokens {
		auths[i] = []string{"Bearer " + tok}
	}
	contentType := []string{"application/json"}
	type client struct {
		base string
		auth []string
		path string
		req  *http.Request
		body bytes.Reader
		buf  bytes.Buffer
	}
	clients := make([]client, w.clients)
	for i := range clients {
		clients[i].base, clients[i].auth = bases[i%len(bases)], auths[i%len(bases)]
	}
	var proto string // written by client 0 only, read after measure returns

	do := func(ctx context.Context, worker, seq int) error {
		c := &clients[worker]
		c.body.Reset(t.body)
		if path := t.path(worker, seq); c.req == nil || path != c.path {
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, &c.body)
			if err != nil {
				return err
			}
			req.Header["Authorization"] = c.auth
			req.Header["Content-Type"] = contentType
			c.path, c.req = path, req
		}
		resp, err := tr.RoundTrip(c.req)
		if err != nil {
			return err
		}
		c.buf.Reset()
		_, err = c.buf.ReadFrom(resp.Body) // read to the end, so that the connection is reused
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("read the answer: %w", err)
		}
		if resp.StatusCode != http.StatusOK {
			return newAnswerError(resp.StatusCode, c.buf.Bytes())
		}
		if !hasString(c.buf.Bytes(), t.field) {
			return fmt.Errorf("the answer has no %q: %.300s", t.field, c.buf.Bytes())
		}
		if worker == 0 && proto == "" {
			proto = resp.Proto
		}
		return nil
	}
	s := measure(ctx, w, do)
	if err := ctx.Err(); err != nil {
		return result{}, nil, fmt.Errorf("interrupted: %w", err)
	}
	if s.serverErr != nil {
		return result{}, nil, s.serverErr
	}
	r := summarize(s)
	r.Op, r.Clients, r.Nodes, r.Protocol = t.op.String(), w.clients, min(len(bases), w.clients), proto
	return r, s.shown, nil
}

// hasString reports whether the JSON object in b has a member name whose value is a non-empty string. It looks
// for the bytes "name":" as the pool writes them, which is enough to tell an answer from a wrong one.
func hasString(b []byte, name string) bool {
	var key [32]byte
	k := append(append(append(key[:0], '"'), name...), `":"`...)
	i := bytes.Index(b, k)
	return i >= 0 && i+len(k) < len(b) && b[i+len(k)] != '"'
}
