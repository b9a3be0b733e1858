package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/spf13/cobra"

	"github.com/hsmpool/hsmpool/pkg/client"
)

// Output formats of the commands that talk to a pool.
const (
	outputTable = "table"
	outputJSON  = "json"
)

// poolOptions are the flags that every command talking to a pool shares.
type poolOptions struct {
	// ClientFile is the client file; empty means $HSMPOOL_CLIENT_FILE.
	ClientFile string
	// URL, when set, replaces the client file's "url": the node of the pool to talk to. Empty means $HSMPOOL_URL,
	// then the client file's.
	URL string
	// Output is outputTable or outputJSON.
	Output string
}

// defaultPoolOptions returns the defaults of the pool flags.
func defaultPoolOptions() *poolOptions {
	return &poolOptions{Output: outputTable}
}

// envURL is the environment variable that --url defaults to.
const envURL = "HSMPOOL_URL"

// poolRetry is how the CLI retries: a little, and quickly, since a person is waiting. The Azure SDK honours the
// pool's Retry-After on 429 and 503 whatever the delays here.
var poolRetry = policy.RetryOptions{MaxRetries: 2, RetryDelay: 500 * time.Millisecond, MaxRetryDelay: 4 * time.Second, TryTimeout: 2 * time.Minute}

// session is what a pool command runs with: the pool's clients and where its output goes.
type session struct {
	ctx    context.Context
	client *client.Client
	out    io.Writer
	errOut io.Writer
	json   bool
}

// print writes v as JSON with -o json (v is the Azure SDK's model, which marshals as the REST API's JSON), else
// runs table, which writes the human form.
func (s *session) print(v any, table func(w io.Writer) error) error {
	if s.json {
		return writeJSON(s.out, v)
	}
	return table(s.out)
}

// writeJSON writes v as indented JSON and a newline.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// command completes cmd, a command that talks to a pool: it adds the --client-file and --url flags, and -o/--output
// unless withOutput is false (for commands whose -o names a file). When the command runs, it checks the output
// flag and then validate (which may be nil) before it reads the client file, so that flag mistakes never need a
// pool; then it connects and calls run. Errors from the pool are explained.
func (o *poolOptions) command(cmd *cobra.Command, withOutput bool, validate func(args []string) error, run func(s *session, args []string) error) *cobra.Command {
	f := cmd.Flags()
	f.StringVar(&o.ClientFile, "client-file", o.ClientFile, "client file of the pool (default $"+client.EnvFile+")")
	f.StringVar(&o.URL, "url", o.URL, "talk to the pool node at this URL instead of the client file's \"url\" (default $"+envURL+")")
	if withOutput {
		f.StringVarP(&o.Output, "output", "o", o.Output, "output format: table or json")
	}
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if o.Output != outputTable && o.Output != outputJSON {
			return fmt.Errorf("-o %q: want table or json", o.Output)
		}
		if o.URL == "" {
			o.URL = os.Getenv(envURL)
		}
		if err := checkURL(o.URL); err != nil {
			return err
		}
		if validate != nil {
			if err := validate(args); err != nil {
				return err
			}
		}
		s, err := o.connect(cmd)
		if err != nil {
			return err
		}
		return explainPoolError(run(s, args), s.client.URL())
	}
	return cmd
}

// connect reads the client file and makes the pool's clients.
func (o *poolOptions) connect(cmd *cobra.Command) (*session, error) {
	f, err := client.Load(o.ClientFile)
	if errors.Is(err, client.ErrNoFile) {
		return nil, withHints(errors.New("no client file: give --client-file FILE, or set $"+client.EnvFile),
			`"hsmpoold dev" writes one as DATA_DIR/client.json; an administrator gets one per principal`)
	} else if err != nil {
		return nil, err
	}
	if o.URL != "" {
		// The same principal, the same CA and the same authority: every node of a pool takes tokens for any of its
		// nodes (docs/cluster.md), so one client file reaches them all.
		f.URL = strings.TrimSuffix(o.URL, "/")
	}
	c, err := client.New(f, &client.Options{Retry: poolRetry})
	if err != nil {
		return nil, err
	}
	return &session{ctx: cmd.Context(), client: c, out: cmd.OutOrStdout(), errOut: cmd.ErrOrStderr(), json: o.Output == outputJSON}, nil
}

// checkURL checks the value of --url (or $HSMPOOL_URL): empty, or an https URL of a node, without a path.
func checkURL(s string) error {
	if s == "" {
		return nil
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "https" || u.Host == "" || strings.Trim(u.Path, "/") != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("--url %q: want https://HOST[:PORT], the URL of one of the pool's nodes", s)
	}
	return nil
}

// explainPoolError is the one place that turns errors of a pool command into what the user reads: the pool's
// answers show their Azure code, HTTP status and message; network and TLS failures name the pool and say what to
// check. Other errors pass unchanged. No error shows the client secret or a token: the SDKs do not put them in
// errors, and an *client.Error holds only the answer's code and message.
func explainPoolError(err error, poolURL string) error {
	if err == nil {
		return nil
	}
	if e, ok := client.AsError(err); ok {
		if _, wrapped := errors.AsType[*client.Error](err); !wrapped {
			err = e // an SDK error: its own text is a multi-line dump of the response
		}
		switch {
		case e.StatusCode == 401 || e.Code == "invalid_client" || e.Code == "unauthorized_client":
			return withHints(err, "the pool did not accept the client file's credentials: is it the pool's current client file?")
		case e.StatusCode == 403:
			return withHints(err, "the principal may not do this, or the key is disabled or outside its validity dates")
		}
		return err
	}
	var verifyErr *tls.CertificateVerificationError
	var authErr x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	switch {
	case errors.As(err, &verifyErr) || errors.As(err, &authErr) || errors.As(err, &hostErr):
		return withHints(fmt.Errorf("the pool at %s: %w", poolURL, err),
			`the pool's TLS certificate does not check against the client file's "ca_file"`)
	case errors.Is(err, syscall.ECONNREFUSED):
		return withHints(fmt.Errorf("cannot reach the pool at %s: %w", poolURL, err), "is hsmpoold running, and listening there?")
	case isNetError(err):
		return withHints(fmt.Errorf("cannot reach the pool at %s: %w", poolURL, err), `check the client file's "url", or --url`)
	}
	return err
}

// isNetError reports whether err is a failure to reach a host, such as a name that does not resolve.
func isNetError(err error) bool {
	var dnsErr *net.DNSError
	var opErr *net.OpError
	return errors.As(err, &dnsErr) || errors.As(err, &opErr)
}
