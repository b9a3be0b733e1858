package daemon

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hsmpool/hsmpool/internal/audit"
	"github.com/hsmpool/hsmpool/internal/auth"
	"github.com/hsmpool/hsmpool/internal/cluster"
	"github.com/hsmpool/hsmpool/internal/core"
	"github.com/hsmpool/hsmpool/internal/fsm"
	"github.com/hsmpool/hsmpool/internal/gateway"
	"github.com/hsmpool/hsmpool/internal/hsm"
	"github.com/hsmpool/hsmpool/internal/pki"
	"github.com/hsmpool/hsmpool/internal/state"
	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

// Paths inside the data directory.
const (
	raftDir    = "raft"
	signerFile = "identity/token-signing.pem"
	cacheSize  = 4096 // unwrapped key handles kept per node
)

// The audit log: DATA_DIR/audit/audit.log (docs/audit.md).
const (
	AuditDir  = "audit"
	AuditFile = "audit.log"
	// auditMaxSize is where the log rotates to audit.log.<time>; the chain carries on.
	auditMaxSize = 100 << 20
)

// shutdownGrace bounds how long in-flight requests may take once shutdown starts.
var shutdownGrace = 30 * time.Second

// Ready describes a node that serves.
type Ready struct {
	URL      string // the pool's URL
	Addr     string // the listener's actual address
	Resource string
	// AwaitsUpload tells that the pool is in recovery mode and not yet activated: it waits for
	// the upload of a restore blob.
	AwaitsUpload bool
}

// Run serves the node described by cfg until ctx ends, then shuts down gracefully: the listener
// stops accepting, in-flight requests finish (for up to 30 s), and Raft and the
// HSM are closed in that order. ready, if not nil, is called once the node serves.
func Run(ctx context.Context, cfg Config, log *slog.Logger, ready func(Ready)) (err error) {
	if err := cfg.Validate(); err != nil {
		return err
	}
	if err := checkNotLeft(cfg.DataDir); err != nil {
		return err
	}
	if cfg.SoftHSMConf != "" {
		os.Setenv("SOFTHSM2_CONF", cfg.SoftHSMConf)
	}
	var closers []func() error
	defer func() {
		for i := len(closers) - 1; i >= 0; i-- {
			err = errors.Join(err, closers[i]())
		}
	}()

	pool, err := hsm.Open(ctx, cfg.HSM)
	if err != nil {
		return fmt.Errorf("open the HSM: %w", err)
	}
	closers = append(closers, pool.Close)

	// The node certificate: renewed from the CA key when it expires within 30 days, now and
	// daily; the transport and the node API read the files again when they change.
	renewAndLog(cfg, log.With("component", "node-cert"))
	renewCtx, stopRenew := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRenew()
	go keepNodeCertFresh(renewCtx, cfg, log.With("component", "node-cert"))

	st := state.New()
	node, ntls, err := openCluster(ctx, cfg, st, log, false)
	if err != nil {
		return err
	}
	closers = append(closers, node.Close)
	if err := node.WaitLeader(ctx); err != nil {
		return fmt.Errorf("wait for a Raft leader: %w", err)
	}
	if err := catchUp(ctx, node, st); err != nil {
		return fmt.Errorf("catch up with the Raft log: %w", err)
	}
	if st.Pool() == nil {
		return fmt.Errorf("the Raft log of %s holds no pool: was it created with hsmpoold init?", cfg.DataDir)
	}

	signer, err := loadSigner(filepath.Join(cfg.DataDir, signerFile))
	if err != nil {
		return err
	}
	issuer, err := auth.NewIssuer(auth.IssuerConfig{AuthorityHost: cfg.AuthorityHost, TenantID: cfg.TenantID, Signer: signer,
		Logger: log.With("component", "identity"), External: cfg.externalIssuers()}, core.NewDirectory(st))
	if err != nil {
		return err
	}
	tokens := &poolTokens{own: issuer, st: st, self: strings.TrimSuffix(cfg.AuthorityHost, "/"),
		newFor: func(authority string) (*auth.Issuer, error) {
			return auth.NewIssuer(auth.IssuerConfig{AuthorityHost: authority, TenantID: cfg.TenantID, Signer: signer,
				Logger: log.With("component", "identity", "issuer_of", authority)}, core.NewDirectory(st))
		}}
	if err := os.MkdirAll(filepath.Join(cfg.DataDir, AuditDir), 0o700); err != nil {
		return err
	}
	auditLog, err := audit.Open(filepath.Join(cfg.DataDir, AuditDir, AuditFile), audit.WithMaxSize(auditMaxSize))
	if err != nil {
		return fmt.Errorf("open the audit log: %w", err)
	}
	closers = append(closers, auditLog.Close)
	caFP, err := caFingerprint(cfg.TLS.CAFile)
	if err != nil {
		return err
	}
	repl := replicator{n: node, st: st}
	if ntls != nil {
		repl.fwd = newForwarder(node, ntls, st, cfg.Raft.PeerNodeAddrs)
		closers = append(closers, repl.fwd.Close)
	}
	members := &members{me: self{cfg: cfg, node: node, hsm: pool}, node: node, st: st, ntls: ntls, fwd: repl.fwd,
		log: log.With("component", "members")}
	c, err := core.New(core.Config{HSM: pool, CAFingerprint: caFP, Cache: hsm.NewCache(cacheSize), Replicator: repl, State: st,
		Tokens: tokens, Cluster: clusterInfo{node}, Membership: members, Audiences: []string{cfg.Resource()}, Audit: auditLog,
		Logger: log.With("component", "core")})
	if err != nil {
		return err
	}
	if err := c.Resume(ctx); err != nil {
		return err
	}
	hk, stopHK := context.WithCancel(context.WithoutCancel(ctx))
	defer stopHK()
	var left <-chan struct{} // closed when this node has left the pool (hsmpoold leave)
	if cfg.Raft.NodeAddr != "" {
		js := newJoinServer(cfg, node, st, pool, ntls, repl, members, log.With("component", "node-api"))
		stopNodeAPI, err := serveNodeAPI(cfg, js)
		if err != nil {
			return err
		}
		closers = append(closers, func() error { stopNodeAPI(); return nil })
		left = js.left
		go registerSelf(hk, cfg, st, repl, log.With("component", "node-map"))
		go keepJoinsClean(hk, cfg.DataDir, log.With("component", "node-api"))
	}

	// The gateway reaches the core only through its gRPC API, in process: the generated clients
	// over a connection that runs the core's interceptor and handlers (inproc.go).
	conn := newInProcess(c.Interceptor)
	c.Register(conn)

	gw, err := gateway.New(gateway.Config{
		Keys: pb.NewKeysClient(conn), SecurityDomain: pb.NewSecurityDomainClient(conn), Pool: pb.NewPoolClient(conn),
		Access: pb.NewAccessClient(conn), Principals: pb.NewPrincipalsClient(conn),
		Backup: pb.NewBackupClient(conn), Cluster: pb.NewClusterClient(conn),
		Identity: issuer.Handler(), OwnsIdentity: issuer.Owns, Challenge: issuer.Challenge, Resource: cfg.Resource(),
		MaxBodyBytes: cfg.MaxBodyBytes, Logger: log.With("component", "gateway"), Audit: auditLog,
	})
	if err != nil {
		return err
	}
	tlsCfg, err := pki.ServerTLS(cfg.TLS.CertFile, cfg.TLS.KeyFile)
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	hl, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{Handler: gw, TLSConfig: tlsCfg, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		MaxHeaderBytes: 64 << 10, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	served := make(chan error, 1)
	go func() { served <- srv.ServeTLS(hl, "", "") }()

	go c.RunHousekeeping(hk, time.Minute)

	log.Info("serving", "url", cfg.URL(), "listen", hl.Addr().String(), "node", cfg.Raft.NodeID)
	if ready != nil {
		p := st.Pool()
		ready(Ready{URL: cfg.URL(), Addr: hl.Addr().String(), Resource: cfg.Resource(), AwaitsUpload: p.Recovery && !p.Activated})
	}
	select {
	case <-ctx.Done():
	case <-left:
		log.Warn("this node left the pool: stopping")
	case err := <-served:
		return fmt.Errorf("the HTTPS server stopped: %w", err)
	}
	log.Info("shutting down: finishing in-flight requests")
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer cancel()
	stopHK()
	return srv.Shutdown(sctx)
}

// openCluster opens the node's Raft: over mutual TLS when the config names a node
// certificate (then ntls is its TLS material and membership), else plain TCP (ntls nil).
func openCluster(ctx context.Context, cfg Config, st *state.State, log *slog.Logger, bootstrap bool) (n *cluster.Node, ntls *nodeTLS, err error) {
	cc := cluster.Default()
	cc.NodeID = cfg.Raft.NodeID
	cc.DataDir = filepath.Join(cfg.DataDir, raftDir)
	cc.BindAddr = cfg.Raft.BindAddr
	cc.Logger = log.With("component", "raft")
	if cfg.Raft.mTLS() {
		if ntls, err = loadNodeTLS(cfg); err != nil {
			return nil, nil, err
		}
		cc.TLS = ntls.cluster()
	}
	n, err = cluster.Open(ctx, cc, fsm.New(st, log.With("component", "fsm")), bootstrap)
	if err != nil {
		return nil, nil, fmt.Errorf("open the Raft node: %w", err)
	}
	if ntls != nil {
		ntls.setNode(n)
	}
	return n, ntls, nil
}

// catchUp returns once the node has applied what the cluster committed when it was called: a
// barrier on the leader; on a follower, the commit index the leader last sent, and at least
// the pool's first command.
func catchUp(ctx context.Context, node *cluster.Node, st *state.State) error {
	if node.Status().State == cluster.Leader {
		return node.Barrier(ctx)
	}
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		s := node.Status()
		if st.Pool() != nil && s.CommitIndex > 0 && s.AppliedIndex >= s.CommitIndex {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

type clusterInfo struct{ n *cluster.Node }

func (c clusterInfo) NodeID() string    { return c.n.Status().NodeID }
func (c clusterInfo) RaftState() string { return c.n.Status().State.String() }
func (c clusterInfo) IsLeader() bool    { return c.n.Status().State == cluster.Leader }

func loadSigner(path string) (crypto.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("the token-signing key: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%s: no PEM block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	ec, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: want an ECDSA P-256 key", path)
	}
	return ec, nil
}

// caCertDER is the DER of the first certificate in the CA file.
func caCertDER(file string) ([]byte, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("tls.ca_file: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("tls.ca_file: %s holds no PEM certificate", file)
	}
	return blk.Bytes, nil
}

// caFingerprint is the SHA-256 of the pool CA's certificate (the first in file), which join
// tokens carry; nil when the node has no CA file.
func caFingerprint(file string) (*[32]byte, error) {
	if file == "" {
		return nil, nil
	}
	der, err := caCertDER(file)
	if err != nil {
		return nil, err
	}
	fp := sha256.Sum256(der)
	return &fp, nil
}
