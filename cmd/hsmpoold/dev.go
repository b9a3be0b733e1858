package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/hsmpool/hsmpool/internal/daemon"
)

// devOptions are the flags of "hsmpoold dev".
type devOptions struct {
	// DataDir holds everything the embedded default creates: SoftHSM2 config and token, TLS files, Raft data.
	DataDir string
	// Listen is the host:port of the HTTPS listener.
	Listen string
	// Name is the pool name, the first label of https://<name>.managedhsm.<suffix>.
	Name string
	// Recovery creates the pool in recovery mode, to receive an existing security domain.
	Recovery bool
	// NodeAddr is the host:port of the node API, which joining nodes call; empty: none.
	NodeAddr string
	// Join is the node API of a member of the pool this node joins (with JoinTokenFile);
	// RaftAddr and NodeID go with it.
	Join, JoinTokenFile, RaftAddr, NodeID string
	JoinTimeout                           time.Duration
}

// defaultDevOptions returns the defaults of "hsmpoold dev".
func defaultDevOptions() *devOptions {
	return &devOptions{
		Listen: "127.0.0.1:8443",
		Name:   "contoso",
	}
}

// validate checks the options; errors name the flag at fault.
func (o *devOptions) validate() error {
	if o.DataDir == "" {
		return errors.New("--data-dir is required")
	}
	if _, port, err := net.SplitHostPort(o.Listen); err != nil || port == "" || port == "0" {
		return fmt.Errorf("--listen %q: want host:port with a fixed port", o.Listen)
	}
	if err := daemon.CheckName(o.Name); err != nil {
		return fmt.Errorf("--name %w", err)
	}
	for _, a := range []struct{ flag, v string }{{"--node-addr", o.NodeAddr}, {"--raft-addr", o.RaftAddr}, {"--join", o.Join}} {
		if a.v == "" {
			continue
		}
		if _, port, err := net.SplitHostPort(a.v); err != nil || port == "" || port == "0" {
			return fmt.Errorf("%s %q: want host:port with a fixed port", a.flag, a.v)
		}
	}
	if (o.Join == "") != (o.JoinTokenFile == "") {
		return errors.New("--join and --join-token-file go together")
	}
	if o.Join == "" && (o.RaftAddr != "" || o.NodeID != "") {
		return errors.New("--raft-addr and --node-id apply to a node that joins (--join)")
	}
	if o.Join != "" && o.Recovery {
		return errors.New("--recovery does not apply to a node that joins (--join): it receives the pool's KEK")
	}
	return nil
}

// newDevCmd builds "hsmpoold dev".
func newDevCmd(opts *devOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dev --data-dir DIR [--listen HOST:PORT] [--name NAME] [--node-addr HOST:PORT | --join NODE_ADDR --join-token-file F]",
		Short: "Run the embedded default: a single-node development pool on SoftHSM2",
		Long: `dev runs the embedded default, a single-node pool that needs nothing but SoftHSM2.
On first use it creates in --data-dir a SoftHSM2 configuration and token, a self-signed CA
and server certificate, a single-node Raft cluster and an administrator principal whose
credentials it writes to DIR/client.json (0600). It then serves, and prints the URL, the CA
path and how to use the pool. Started again with the same --data-dir it resumes the same
pool with its keys (--listen and --name are then taken from DIR/hsmpoold.json).

The dev principal holds Managed HSM Administrator, Crypto Officer and Crypto User at "/", so
that it can both administer the pool and use keys; a production pool separates these duties.
With --recovery the new pool is made in recovery mode: instead of downloading a new security
domain, the officers upload a restore blob of an existing one (hsmpool sd exchange-key, then
hsmpool sd upload), which gives it that domain's KEK.

With --node-addr the pool can grow: the node serves the node API there and runs Raft over
mutual TLS. Another dev node joins it with --join NODE_ADDR --join-token-file F (a token from
"hsmpool cluster join-token"): it makes its own SoftHSM2 token in its --data-dir (SO PIN in
DIR/softhsm/so.pin), prints the fingerprint and the trust-join-key command to run on the node
it contacted, waits for that, and serves. Its Raft transport defaults to the --listen port + 1,
its node API to port + 2, its ID to node-PORT. Started again with the same --data-dir it just
serves.

SIGINT or SIGTERM stops it gracefully.`,
		Example: `  # Start a pool named contoso on https://127.0.0.1:8443 with its data in ./.data.
  hsmpoold dev --data-dir .data

  # Another name and port.
  hsmpoold dev --data-dir /tmp/fabrikam --name fabrikam --listen 127.0.0.1:9443

  # A pool that takes over the security domain of another one.
  hsmpoold dev --data-dir /tmp/recovered --recovery --listen 127.0.0.1:9443

  # A pool of three: node 1 with a node API, two more join it.
  hsmpoold dev --data-dir /tmp/n1 --listen 127.0.0.1:8443 --node-addr 127.0.0.1:8445
  hsmpool cluster join-token > join.token    # after the security domain download
  hsmpoold dev --data-dir /tmp/n2 --listen 127.0.0.1:9443 --join 127.0.0.1:8445 --join-token-file join.token`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := opts.validate(); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(c.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			log := newLogger(c.ErrOrStderr(), "info")
			var cfg daemon.Config
			var created bool
			var err error
			if opts.Join != "" {
				cfg, created, err = daemon.DevJoin(ctx, daemon.DevJoinOptions{DataDir: opts.DataDir, Listen: opts.Listen,
					Join: opts.Join, TokenFile: opts.JoinTokenFile, RaftAddr: opts.RaftAddr, NodeAddr: opts.NodeAddr, NodeID: opts.NodeID,
					Timeout: opts.JoinTimeout, Pending: pendingHint(c.ErrOrStderr(), "--so-pin-file DIR/softhsm/so.pin")})
				if err == nil && created {
					fmt.Fprintf(c.ErrOrStderr(), "hsmpoold: node %s joined pool %q; configuration in %s\n", cfg.Raft.NodeID, cfg.Name, filepath.Join(cfg.DataDir, daemon.ConfigFile))
				}
			} else {
				cfg, created, err = daemon.DevConfig(ctx, daemon.DevOptions{DataDir: opts.DataDir, Listen: opts.Listen, Name: opts.Name, Recovery: opts.Recovery, NodeAddr: opts.NodeAddr}, log)
			}
			if err != nil {
				return err
			}
			return daemon.Run(ctx, cfg, newLogger(c.ErrOrStderr(), cfg.LogLevel), func(r daemon.Ready) {
				verb := map[bool]string{true: "created", false: "resumed"}[created]
				if created && opts.Join != "" {
					verb = "joined"
				}
				printDev(c.OutOrStdout(), cfg, r, verb)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.DataDir, "data-dir", opts.DataDir, "directory for the pool's data, created 0700 if missing (required)")
	f.StringVar(&opts.Listen, "listen", opts.Listen, "host:port of the HTTPS listener")
	f.StringVar(&opts.Name, "name", opts.Name, "pool name, served as https://NAME.managedhsm.localhost")
	f.StringVar(&opts.NodeAddr, "node-addr", "", "host:port of the node API that other nodes call; with it Raft runs over mutual TLS (only when the pool is created or joined; with --join default: --listen port + 2)")
	f.StringVar(&opts.Join, "join", "", "join the pool whose member serves the node API at host:port, instead of creating a pool (only when DIR holds no node yet)")
	f.StringVar(&opts.JoinTokenFile, "join-token-file", "", "file holding the join token (hsmpool cluster join-token), with --join")
	f.StringVar(&opts.RaftAddr, "raft-addr", "", "host:port of this node's Raft transport, with --join (default: --listen port + 1)")
	f.StringVar(&opts.NodeID, "node-id", "", "this node's ID, with --join (default: node-PORT, PORT of --listen)")
	f.DurationVar(&opts.JoinTimeout, "join-timeout", 15*time.Minute, "how long --join waits, including for the source node's security officer")
	f.BoolVar(&opts.Recovery, "recovery", false, "create the pool in recovery mode: it is activated by uploading a restore blob of an existing security domain (ignored when resuming)")
	return cmd
}

func printDev(w io.Writer, cfg daemon.Config, r daemon.Ready, verb string) {
	client := filepath.Join(cfg.DataDir, "client.json")
	if _, err := os.Stat(client); err != nil {
		// A node that joined a pool has no credentials of its own: the pool's client file
		// (node 1's) reaches it with --url.
		fmt.Fprintf(w, `hsmpool dev pool %q %s, serving on %s
  URL:          %s   (also https://%s with challenge-resource verification off)
  CA:           %s
  node:         %s   node API: %s
  tenant:       %s   authority host: %s

Next steps, with the client.json of the node that made the pool:
  hsmpool cluster status --url %s
Stop with Ctrl-C; run the same command again to resume this node.
`, cfg.Name, verb, r.Addr, r.URL, cfg.Listen, cfg.TLS.CAFile, cfg.Raft.NodeID, cfg.Raft.NodeAddr, cfg.TenantID, cfg.AuthorityHost, r.URL)
		return
	}
	fmt.Fprintf(w, `hsmpool dev pool %q %s, serving on %s
  URL:          %s   (also https://%s with challenge-resource verification off)
  CA:           %s
  credentials:  %s   (administrator; client secret inside, 0600)
  tenant:       %s   authority host: %s

Next steps:
  export HSMPOOL_CLIENT_FILE=%s
%sStop with Ctrl-C; run the same command again to resume this pool.
`, cfg.Name, verb, r.Addr, r.URL, cfg.Listen, cfg.TLS.CAFile, client, cfg.TenantID, cfg.AuthorityHost, client, nextSteps(r))
}

// nextSteps are the commands that bring the pool into use: activation by a new security domain,
// or, in recovery mode, the upload of an existing one.
func nextSteps(r daemon.Ready) string {
	if r.AwaitsUpload {
		return `  hsmpool sd exchange-key -o ex.cer       # the officers build a restore blob for it, offline
  hsmpool sd upload --sd-file sd.json --key alice.key --key bob.key   # or: hsmpool sd upload --blob blob.json
`
	}
	return `  hsmpool sd officer-keygen --out alice    # and bob, carol: the security officers
  hsmpool sd download --cert alice.cer --cert bob.cer --cert carol.cer --quorum 2 -o sd.json
  hsmpool key create k1 --kty EC-HSM --curve P-256
`
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
}

// serveCtx is the context of a serving command: cancelled by SIGINT or SIGTERM.
func serveCtx(parent context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
}
