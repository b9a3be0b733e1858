package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/hsmpool/hsmpool/internal/authz"
	"github.com/hsmpool/hsmpool/internal/daemon"
	"github.com/hsmpool/hsmpool/internal/hsm"
)

func newServeCmd() *cobra.Command {
	var config string
	cmd := &cobra.Command{
		Use:   "serve --config FILE",
		Short: "Serve a pool node from its configuration file",
		Long: `serve runs the node that "hsmpoold init" created, from DIR/hsmpoold.json. SIGINT or SIGTERM
stops it gracefully: in-flight requests finish, then Raft and the HSM are closed.`,
		Example: `  hsmpoold serve --config /var/lib/hsmpool/hsmpoold.json`,
		Args:    cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if config == "" {
				return errors.New("--config is required")
			}
			cfg, err := daemon.LoadConfig(config)
			if err != nil {
				return err
			}
			ctx, stop := serveCtx(c.Context())
			defer stop()
			return daemon.Run(ctx, cfg, newLogger(c.ErrOrStderr(), cfg.LogLevel), func(r daemon.Ready) {
				fmt.Fprintf(c.OutOrStdout(), "pool %q serving on %s: %s\n", cfg.Name, r.Addr, r.URL)
			})
		},
	}
	cmd.Flags().StringVar(&config, "config", "", "the node's configuration file (DIR/hsmpoold.json)")
	return cmd
}

type initOptions struct {
	cfg        daemon.Config
	admin      string
	roles      []string
	clientFile string
	slotID     int
	tlsCert    string
	tlsKey     string
	caFile     string
	recovery   bool
	join       string
	joinToken  string
	joinWait   time.Duration
}

func newInitCmd() *cobra.Command {
	o := &initOptions{cfg: daemon.Default(), admin: "admin", slotID: -1, roles: []string{"Managed HSM Administrator"}}
	cmd := &cobra.Command{
		Use:   "init --name NAME --data-dir DIR --pin-file F (--token-label L | --slot-id N) --client-file F",
		Short: "Create a pool: configuration, TLS, the first administrator and a single-node Raft cluster",
		Long: `init creates a pool in --data-dir and writes DIR/hsmpoold.json for "hsmpoold serve".
The node is bound to one PKCS#11 slot (module, token label or slot ID, PIN file); the token
must exist and the PIN file must hold the user PIN. Without --tls-cert, init makes a CA and a
server certificate for NAME.managedhsm.DNS_SUFFIX, localhost, 127.0.0.1 and ::1 in DIR/tls.
The first administrator's credentials (client ID and secret, shown once) go to --client-file,
0600. The administrator holds the roles --role names at scope "/" (by default only Managed HSM
Administrator, which grants no key operations: assign key roles to other principals, as
docs/authz.md shows). The pool then waits to be activated by a security-domain download.
With --recovery it is made in recovery mode instead: init generates an exchange key in the
token, and the pool waits for the upload of a restore blob of an existing security domain made
for that key (docs/security-domain.md, "Recovery").

With --join ADDR --join-token-file F --node-addr HOST:PORT the node joins an existing pool
instead, through the node API of any member (docs/cluster.md, "Joining"): it makes a join key
in its own token, shows the key's fingerprint and waits until the security officer of that
member's token has run "hsmpoold trust-join-key --fingerprint X" there, receives the domain
KEK into its token, its node certificate, the pool CA (with its key, so that it admits joins
too) and the pool's settings, writes DIR/hsmpoold.json, and serves, with its own node API on
--node-addr. --name, --tenant-id, --recoverable-days and the administrator flags do not apply.`,
		Example: `  hsmpoold init --name contoso --data-dir /var/lib/hsmpool --pin-file /etc/hsmpool/pin \
    --token-label hsmpool --client-file admin.json --node-addr 10.0.0.1:8445

  # A second node joins the pool (and then serves):
  hsmpoold init --join 10.0.0.1:8445 --join-token-file join.token --data-dir /var/lib/hsmpool \
    --pin-file /etc/hsmpool/pin --token-label hsmpool --listen 10.0.0.2:8443 --raft-addr 10.0.0.2:8444 \
    --node-addr 10.0.0.2:8445`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if o.join != "" || o.joinToken != "" {
				return runJoin(c, o)
			}
			cfg := o.cfg
			if o.clientFile == "" {
				return errors.New("--client-file is required: the administrator's secret is written there once")
			}
			if cfg.DataDir == "" {
				return errors.New("--data-dir is required")
			}
			dir, err := filepath.Abs(cfg.DataDir)
			if err != nil {
				return err
			}
			cfg.DataDir = dir
			if o.slotID >= 0 {
				s := uint(o.slotID)
				cfg.HSM.SlotID = &s
			}
			if cfg.TenantID == "" {
				cfg.TenantID = uuid.NewString()
			}
			if cfg.Raft.NodeID == "" {
				cfg.Raft.NodeID = "node-" + uuid.NewString()[:8]
			}
			if cfg.AuthorityHost == "" {
				cfg.AuthorityHost = "https://" + cfg.Listen
			}
			if o.tlsCert != "" || o.tlsKey != "" {
				if o.tlsCert == "" || o.tlsKey == "" {
					return errors.New("--tls-cert and --tls-key go together")
				}
				cfg.TLS = daemon.TLS{CertFile: o.tlsCert, KeyFile: o.tlsKey, CAFile: o.caFile}
			}
			roles, err := builtInRoles(o.roles)
			if err != nil {
				return err
			}
			ctx, stop := serveCtx(c.Context())
			defer stop()
			initFn := daemon.Init
			if o.recovery {
				initFn = daemon.InitRecovery
			}
			cfg, clients, err := initFn(ctx, cfg, []string{o.admin}, roles, newLogger(c.ErrOrStderr(), "warn"))
			if err != nil {
				return err
			}
			if err := daemon.WriteClient(o.clientFile, clients[0]); err != nil {
				return fmt.Errorf("write --client-file (the pool exists; its administrator secret is lost: remove %s and init again): %w", cfg.DataDir, err)
			}
			fmt.Fprintf(c.OutOrStdout(), "created pool %q in %s\nstart it with: hsmpoold serve --config %s\nadministrator credentials: %s\n",
				cfg.Name, cfg.DataDir, filepath.Join(cfg.DataDir, daemon.ConfigFile), o.clientFile)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.cfg.Name, "name", "", "pool name (3-24 letters, digits, hyphens)")
	f.StringVar(&o.cfg.DataDir, "data-dir", "", "the node's data directory, created 0700")
	f.StringVar(&o.cfg.Listen, "listen", o.cfg.Listen, "host:port of the HTTPS listener")
	f.StringVar(&o.cfg.DNSSuffix, "dns-suffix", o.cfg.DNSSuffix, "the pool is https://NAME.managedhsm.DNS_SUFFIX")
	f.StringVar(&o.cfg.AuthorityHost, "authority-host", "", "origin of the identity provider as clients use it (default https://LISTEN)")
	f.StringVar(&o.cfg.TenantID, "tenant-id", "", "the pool's tenant UUID (default: a new one)")
	f.StringVar(&o.cfg.HSM.Module, "pkcs11-module", hsm.DefaultModule, "PKCS#11 module")
	f.StringVar(&o.cfg.HSM.TokenLabel, "token-label", "", "label of the node's token")
	f.IntVar(&o.slotID, "slot-id", -1, "slot ID of the node's token (instead of --token-label)")
	f.StringVar(&o.cfg.HSM.PINFile, "pin-file", "", "file holding the token's user PIN")
	f.StringVar(&o.cfg.Raft.BindAddr, "raft-addr", o.cfg.Raft.BindAddr, "host:port of the Raft transport")
	f.StringVar(&o.cfg.Raft.NodeID, "node-id", "", "this node's ID in the pool (default: node- and 8 random hex digits)")
	f.IntVar(&o.cfg.RecoverableDays, "recoverable-days", o.cfg.RecoverableDays, "soft-delete retention of keys, 7-90 days")
	f.StringVar(&o.admin, "admin", o.admin, "display name of the first administrator")
	f.StringSliceVar(&o.roles, "role", o.roles, "built-in role (name or GUID) of the first administrator at \"/\"; repeat for more; must include Managed HSM Administrator")
	f.StringVar(&o.clientFile, "client-file", "", "where to write the administrator's client.json (0600, must not exist)")
	f.StringVar(&o.tlsCert, "tls-cert", "", "server certificate chain (PEM); default: make a CA and a certificate")
	f.StringVar(&o.tlsKey, "tls-key", "", "server private key (PEM)")
	f.BoolVar(&o.recovery, "recovery", false, "make the pool in recovery mode, activated by uploading a restore blob of an existing security domain")
	f.StringVar(&o.join, "join", "", "join an existing pool through the node API (raft.node_addr) of any member at host:port, instead of creating one")
	f.StringVar(&o.joinToken, "join-token-file", "", "file holding the join token (hsmpool cluster join-token), with --join")
	f.StringVar(&o.cfg.Raft.NodeAddr, "node-addr", "", "host:port of this node's node API (other nodes forward writes to it, joining nodes call it); with it Raft runs over mutual TLS; required with --join")
	f.DurationVar(&o.joinWait, "join-timeout", 15*time.Minute, "how long --join waits, including for the source node's security officer")
	f.StringVar(&o.caFile, "tls-ca", "", "CA certificate clients should trust (for client.json)")
	return cmd
}

// builtInRoles resolves --role values, built-in role names or GUIDs, to GUIDs.
func builtInRoles(names []string) ([]string, error) {
	var ids []string
	for _, n := range names {
		var found string
		for _, r := range authz.BuiltInRoles() {
			if strings.EqualFold(r.RoleName, n) || strings.EqualFold(r.Name, n) {
				found = r.Name
			}
		}
		if found == "" {
			return nil, fmt.Errorf("--role %q is not a built-in role (hsmpool role definition list shows them)", n)
		}
		if !slices.Contains(ids, found) {
			ids = append(ids, found)
		}
	}
	if !slices.Contains(ids, authz.AdministratorRoleID) {
		return nil, errors.New("--role must include \"Managed HSM Administrator\": the pool needs an administrator")
	}
	return ids, nil
}

// runJoin is "hsmpoold init --join": join, write the configuration, then serve.
func runJoin(c *cobra.Command, o *initOptions) error {
	cfg := o.cfg
	switch {
	case o.join == "" || o.joinToken == "":
		return errors.New("--join and --join-token-file go together")
	case cfg.DataDir == "":
		return errors.New("--data-dir is required")
	case cfg.Raft.NodeAddr == "":
		return errors.New("--node-addr is required with --join: every node serves the node API (writes are forwarded to it, joins admitted through it)")
	}
	dir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return err
	}
	cfg.DataDir = dir
	if o.slotID >= 0 {
		s := uint(o.slotID)
		cfg.HSM.SlotID = &s
	}
	if cfg.Raft.NodeID == "" {
		cfg.Raft.NodeID = "node-" + uuid.NewString()[:8]
	}
	ctx, stop := serveCtx(c.Context())
	defer stop()
	cfg, err = daemon.JoinPool(ctx, daemon.JoinOptions{Config: cfg, Addr: o.join, TokenFile: o.joinToken, Timeout: o.joinWait,
		Pending: pendingHint(c.ErrOrStderr(), "--so-pin-file F")})
	if err != nil {
		return err
	}
	fmt.Fprintf(c.ErrOrStderr(), "hsmpoold: node %s joined pool %q; configuration in %s\n", cfg.Raft.NodeID, cfg.Name, filepath.Join(cfg.DataDir, daemon.ConfigFile))
	return daemon.Run(ctx, cfg, newLogger(c.ErrOrStderr(), cfg.LogLevel), func(r daemon.Ready) {
		fmt.Fprintf(c.OutOrStdout(), "pool %q serving on %s: %s\n", cfg.Name, r.Addr, r.URL)
	})
}

// newTrustJoinKeyCmd builds "hsmpoold trust-join-key".
func newTrustJoinKeyCmd() *cobra.Command {
	var config, soPIN, fingerprint string
	cmd := &cobra.Command{
		Use:   "trust-join-key --config FILE --so-pin-file F --fingerprint X",
		Short: "The security officer's step of a join: trust the joining node's key on this node's token",
		Long: `trust-join-key runs on the node a new node joins through, beside its running daemon, as
the security officer of that node's token. It finds the pending join whose offer has the
fingerprint --fingerprint (which "hsmpoold init --join" shows on the new node: compare
them), and marks the joining node's key trusted in this node's token, so that the daemon
can wrap the domain KEK to it once (docs/hsm.md, "Moving the domain KEK to a joining node").
The SO PIN is read from --so-pin-file, used for one login and wiped.`,
		Example: `  hsmpoold trust-join-key --config /var/lib/hsmpool/hsmpoold.json --so-pin-file /etc/hsmpool/so.pin \
    --fingerprint 3f9a...`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			switch {
			case config == "":
				return errors.New("--config is required")
			case soPIN == "":
				return errors.New("--so-pin-file is required")
			case fingerprint == "":
				return errors.New("--fingerprint is required: the one the joining node shows")
			}
			cfg, err := daemon.LoadConfig(config)
			if err != nil {
				return err
			}
			node, err := daemon.TrustPendingJoin(c.Context(), cfg, soPIN, fingerprint)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "trusted the join key of node %s\n", node)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&config, "config", "", "this node's configuration file (DIR/hsmpoold.json)")
	f.StringVar(&soPIN, "so-pin-file", "", "file holding the security officer's PIN of this node's token")
	f.StringVar(&fingerprint, "fingerprint", "", "the fingerprint the joining node shows (hex)")
	return cmd
}

// pendingHint tells, on the joining node, what the security officer of the source node runs.
func pendingHint(w io.Writer, soPIN string) func(fp, source string) {
	return func(fp, source string) {
		fmt.Fprintf(w, "hsmpoold: the join waits for the security officer of node %s\nhint: on that node, run: hsmpoold trust-join-key --config DIR/hsmpoold.json %s --fingerprint %s\nhint: first check that this fingerprint is the one shown here: %s\n", source, soPIN, fp, fp)
	}
}

// newLeaveCmd builds "hsmpoold leave".
func newLeaveCmd() *cobra.Command {
	var config string
	cmd := &cobra.Command{
		Use:   "leave --config FILE",
		Short: "Make this node leave its pool: remove it, destroy its copy of the domain KEK, stop it",
		Long: `leave asks the running daemon of this node (its node API, called with its own node
certificate) to leave the pool: the daemon removes itself from the Raft configuration and the
node map through the leader, destroys the domain KEK in its own token, writes DIR/LEFT and
stops (it exits 0). The other nodes refuse its certificate from then on, and "hsmpoold serve"
refuses to run it again. A pool's last node cannot leave.

To remove a node that does not run any more, use "hsmpool cluster remove NODE_ID" from any
other node instead (its token then still holds the KEK: destroy that separately).`,
		Example: `  hsmpoold leave --config /var/lib/hsmpool/hsmpoold.json`,
		Args:    cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if config == "" {
				return errors.New("--config is required")
			}
			cfg, err := daemon.LoadConfig(config)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(c.Context(), 2*time.Minute)
			defer cancel()
			destroyed, err := daemon.Leave(ctx, cfg)
			if err != nil {
				return err
			}
			kek := "its token held no domain KEK"
			if destroyed {
				kek = "the domain KEK in its token is destroyed"
			}
			fmt.Fprintf(c.OutOrStdout(), "node %s left the pool; %s; its daemon stops\n", cfg.Raft.NodeID, kek)
			return nil
		},
	}
	cmd.Flags().StringVar(&config, "config", "", "this node's configuration file (DIR/hsmpoold.json)")
	return cmd
}
