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
	scope, err := scopeFor(f.URL)
	if err != nil {
		return err
	}
	base := strings.TrimSuffix(f.URL, "/")
	setupTr, err := newTransport(f.CAFile, 1, false)
	if err != nil {
		return err
	}
	defer setupTr.CloseIdleConnections()
	setupHC := &http.Client{Transport: setupTr, Timeout: requestTimeout}
	cred, err := newCredential(f, setupHC)
	if err != nil {
		return err
	}
	tokens := tokenSource{cred: cred, scope: scope, pool: f.URL}
	runTime := opts.Warmup + opts.Duration + time.Minute
	var serverCPU func() (time.Duration, error)
	if pid := opts.ServerPID; pid != 0 {
		serverCPU = func() (time.Duration, error) { return processCPUOf(pid) }
		if _, err := serverCPU(); err != nil {
			return err
		}
	}

	out := &printer{w: stdout, json: opts.Output == outputJSON}
	runs, failed := 0, 0
	for _, op := range p.ops {
		var t target
		for i, n := range p.clients {
			for j := range opts.Count {
				tok, err := tokens.get(ctx, runTime)
				if err != nil {
					return err
				}
				// Keys and checks once per operation; for create, fresh names for every run, so that no run
				// makes a new version of another's key.
				if (i == 0 && j == 0) || op == opCreate {
					s := &session{base: base, hc: setupHC, token: tok}
					if t, err = s.prepare(ctx, op, newRunID()); err != nil {
						return err
					}
				}
				fmt.Fprintf(stderr, "hsmpool-load: %s, clients %d: warm-up %v, measuring %v\n", op, n, opts.Warmup, opts.Duration)
				r, shown, err := runOnce(ctx, f, base, tok, t, window{clients: n, warmup: opts.Warmup, duration: opts.Duration, serverCPU: serverCPU}, opts.HTTP1)
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

// runOnce runs t with w.clients clients on a transport of its own, so that every run starts without connections.
// It returns the run's figures and the first failed requests' errors.
//
// The tool shares the machine with the server it measures, so the CPU it spends per request is taken from the
// server: each client reuses one request, body reader and answer buffer (net/http lets a request be sent again once
// its answer's body is closed), sends it with the transport's RoundTrip (no redirects to follow, no cookies), and
// checks the answer without decoding it.
func runOnce(ctx context.Context, f *client.File, base, token string, t target, w window, http1 bool) (result, []error, error) {
	tr, err := newTransport(f.CAFile, w.clients, http1)
	if err != nil {
		return result{}, nil, err
	}
	defer tr.CloseIdleConnections()
	tr.ResponseHeaderTimeout = requestTimeout // in place of http.Client's Timeout, which copies every request
	auth := []string{"Bearer " + token}
	contentType := []string{"application/json"}
	type client struct {
		path string
		req  *http.Request
		body bytes.Reader
		buf  bytes.Buffer
	}
	clients := make([]client, w.clients)
	var proto string // written by client 0 only, read after measure returns

	do := func(ctx context.Context, worker, seq int) error {
		c := &clients[worker]
		c.body.Reset(t.body)
		if path := t.path(worker, seq); c.req == nil || path != c.path {
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+path, &c.body)
			if err != nil {
				return err
			}
			req.Header["Authorization"] = auth
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
	r.Op, r.Clients, r.Protocol = t.op.String(), w.clients, proto
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
