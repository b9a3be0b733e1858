package daemon

import (
	"context"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hsmpool/hsmpool/internal/hsm"
	"github.com/hsmpool/hsmpool/internal/nodejoin"
	"github.com/hsmpool/hsmpool/internal/pki"
	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

// JoinOptions say how a new node joins a pool (hsmpoold init --join).
type JoinOptions struct {
	// Config is the new node's own part of the configuration: data_dir, listen, dns_suffix,
	// hsm, softhsm_conf, raft.node_id, raft.bind_addr and raft.node_addr (its own node API,
	// required), and optionally authority_host (default https://LISTEN). The pool's settings
	// come from the node it joins through.
	Config Config
	// Addr is the node API (raft.node_addr) of the pool node to join through: any member.
	Addr string
	// TokenFile holds the join token.
	TokenFile string
	// Timeout bounds the whole join, including the wait for the security officer.
	Timeout time.Duration
	// Pending is called once if the join waits for the security officer of the source node,
	// with the offer's fingerprint and the source node's ID.
	Pending func(fingerprint, source string)
}

// poll is how often a join asks again while it waits for the security officer.
var poll = time.Second

// joinKeyLabel is the label of the join key in the joining node's token and of its trusted
// public half in the source node's token.
func joinKeyLabel(nodeID string) string { return "hsmpool-join-" + nodeID }

// JoinPool makes this node a member of an existing pool: it makes the join key in its own
// token, proves itself with the join token to the leader's node API (pinning the pool CA the
// token names), waits until the source node's security officer has trusted the join key,
// receives the domain KEK into its token, and writes its configuration with the node
// certificate it was issued. Serve it with Run: the leader adds it as a voter, and it catches
// up from the leader.
func JoinPool(ctx context.Context, o JoinOptions) (Config, error) {
	cfg := o.Config
	confPath := filepath.Join(cfg.DataDir, ConfigFile)
	if _, err := os.Stat(confPath); err == nil {
		return cfg, fmt.Errorf("%s exists: %s already holds a node", confPath, cfg.DataDir)
	}
	text, err := os.ReadFile(o.TokenFile)
	if err != nil {
		return cfg, fmt.Errorf("--join-token-file: %w", err)
	}
	tok, err := nodejoin.ParseToken(string(text))
	if err != nil {
		return cfg, fmt.Errorf("--join-token-file: %w", err)
	}
	if _, err := pki.NodeURI(cfg.Raft.NodeID); err != nil {
		return cfg, fmt.Errorf("raft.node_id: %w", err)
	}
	if _, port, err := net.SplitHostPort(cfg.Raft.NodeAddr); err != nil || port == "" || port == "0" {
		return cfg, fmt.Errorf("--node-addr %q: want the host:port (fixed port) of this node's node API", cfg.Raft.NodeAddr)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return cfg, err
	}
	if o.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.Timeout)
		defer cancel()
	}
	if cfg.SoftHSMConf != "" {
		os.Setenv("SOFTHSM2_CONF", cfg.SoftHSMConf)
	}
	pool, err := hsm.Open(ctx, cfg.HSM)
	if err != nil {
		return cfg, fmt.Errorf("open the HSM: %w", err)
	}
	defer pool.Close()
	label := joinKeyLabel(cfg.Raft.NodeID)
	jk, err := pool.FindJoinKey(ctx, label)
	if err != nil {
		if jk, err = pool.CreateJoinKey(ctx, label); err != nil {
			return cfg, fmt.Errorf("make the join key: %w", err)
		}
	}
	joiner, err := nodejoin.NewJoiner(jk.Public())
	if err != nil {
		return cfg, err
	}
	offer, err := joiner.Offer().MarshalBinary()
	if err != nil {
		return cfg, err
	}

	var sender string
	conn, err := grpc.NewClient("passthrough:///"+o.Addr, grpc.WithTransportCredentials(credentialsFrom(pinnedClient(tok.CAFingerprint, &sender))))
	if err != nil {
		return cfg, fmt.Errorf("--join %s: %w", o.Addr, err)
	}
	defer conn.Close()
	req := &pb.JoinRequest{Token: tok.Text(), NodeId: cfg.Raft.NodeID, RaftAddr: cfg.Raft.BindAddr, Offer: offer, NodeAddr: cfg.Raft.NodeAddr}
	told := false
	var resp *pb.JoinResponse
	for {
		resp, err = pb.NewNodeClient(conn).Join(ctx, req)
		switch {
		case err == nil && !resp.Pending:
		case err == nil:
			if !told && o.Pending != nil {
				o.Pending(resp.Fingerprint, resp.Sender)
			}
			told = true
		case status.Code(err) == codes.Unavailable && ctx.Err() == nil:
			// the node is not up yet, or restarts: ask again
		case ctx.Err() != nil:
			return cfg, joinTimeout(ctx, told)
		default:
			return cfg, fmt.Errorf("join through %s: %s", o.Addr, status.Convert(err).Message())
		}
		if err == nil && !resp.Pending {
			break
		}
		select {
		case <-ctx.Done():
			return cfg, joinTimeout(ctx, told)
		case <-time.After(poll):
		}
	}
	cfg.Raft.PeerNodeAddrs = map[string]string{sender: o.Addr} // where this node forwards writes
	return finishJoin(ctx, cfg, tok, joiner, jk, pool, sender, resp, confPath)
}

func joinTimeout(ctx context.Context, waited bool) error {
	if waited {
		return fmt.Errorf("the join gave up waiting for the security officer of the source node (hsmpoold trust-join-key): %w", ctx.Err())
	}
	return fmt.Errorf("the join gave up: %w", ctx.Err())
}

// finishJoin receives the KEK and writes the node's files and configuration.
func finishJoin(ctx context.Context, cfg Config, tok nodejoin.Token, joiner *nodejoin.Joiner, jk *hsm.JoinKey, pool *hsm.Pool, sender string, resp *pb.JoinResponse, confPath string) (Config, error) {
	blk, _ := pem.Decode(resp.CaCert)
	if blk == nil || !tok.CAMatches(blk.Bytes) {
		return cfg, errors.New("the joined node sent a CA other than the one the join token pins")
	}
	if resp.Sender != sender {
		return cfg, fmt.Errorf("the KEK was sealed by %q, but the node API's certificate names %q", resp.Sender, sender)
	}
	wrapped, err := joiner.Open(resp.SealedKek, nodejoin.Binding{Pool: resp.Name, Sender: sender, Joiner: cfg.Raft.NodeID})
	if err != nil {
		return cfg, err
	}
	if _, err := pool.ReceiveKEK(ctx, jk, resp.KekLabel, wrapped); err != nil {
		return cfg, fmt.Errorf("receive the domain KEK: %w", err)
	}
	dir := filepath.Join(cfg.DataDir, "tls")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return cfg, err
	}
	cfg.Name, cfg.TenantID, cfg.RecoverableDays = resp.Name, resp.TenantId, int(resp.RecoverableDays)
	if len(resp.CaKey) == 0 {
		return cfg, fmt.Errorf("node %s sent no CA key: it runs an older hsmpoold that cannot admit joins from every node", sender)
	}
	cfg.TLS = TLS{CAFile: filepath.Join(dir, "ca.pem"), CertFile: filepath.Join(dir, "server.pem"), KeyFile: filepath.Join(dir, "server.key"),
		CAKey: filepath.Join(dir, "ca.key")}
	cfg.Raft.CertFile, cfg.Raft.KeyFile = filepath.Join(cfg.DataDir, nodeCertFile), filepath.Join(cfg.DataDir, nodeKeyFile)
	// Its own identity provider by default: every node accepts the tokens of every node's
	// issuer (docs/cluster.md, "Tokens across nodes").
	if cfg.AuthorityHost == "" {
		cfg.AuthorityHost = "https://" + cfg.Listen
	}
	for _, f := range []struct {
		path string
		data []byte
		perm os.FileMode
	}{
		{cfg.TLS.CAFile, resp.CaCert, 0o644}, {cfg.TLS.CertFile, resp.ServerCert, 0o644}, {cfg.TLS.KeyFile, resp.ServerKey, 0o600},
		{cfg.Raft.CertFile, resp.NodeCert, 0o644}, {cfg.Raft.KeyFile, resp.NodeKey, 0o600}, {cfg.TLS.CAKey, resp.CaKey, 0o600},
	} {
		if err := pki.WriteFile(f.path, f.data, f.perm); err != nil {
			return cfg, err
		}
	}
	if err := os.MkdirAll(filepath.Join(cfg.DataDir, filepath.Dir(signerFile)), 0o700); err != nil {
		return cfg, err
	}
	if err := pki.WriteFile(filepath.Join(cfg.DataDir, signerFile), resp.SignerKey, 0o600); err != nil {
		return cfg, err
	}
	if err := cfg.Validate(); err != nil {
		return cfg, err
	}
	return cfg, cfg.write(confPath)
}

// TrustPendingJoin is the security officer's step of a join on the source node: it finds the
// pending offer whose fingerprint is fingerprint (hex, colons and case ignored) in
// DIR/joins, and trusts its join key in this node's token (hsm.TrustJoinKey). It must run in
// a process of its own, beside the daemon. It returns the joining node's ID.
func TrustPendingJoin(ctx context.Context, cfg Config, soPINFile, fingerprint string) (string, error) {
	want := strings.ToLower(strings.ReplaceAll(strings.TrimSpace(fingerprint), ":", ""))
	files, err := filepath.Glob(filepath.Join(cfg.DataDir, JoinsDir, "*.pem"))
	if err != nil {
		return "", err
	}
	var seen []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		blk, _ := pem.Decode(b)
		if blk == nil || blk.Type != offerPEMType {
			continue
		}
		offer, err := nodejoin.ParseOffer(blk.Bytes)
		if err != nil {
			return "", fmt.Errorf("%s: %w", f, err)
		}
		fp := offer.Fingerprint()
		node := blk.Headers["Node"]
		if hex.EncodeToString(fp[:]) != want {
			seen = append(seen, fmt.Sprintf("%s (node %s)", hex.EncodeToString(fp[:]), node))
			continue
		}
		if cfg.SoftHSMConf != "" {
			os.Setenv("SOFTHSM2_CONF", cfg.SoftHSMConf)
		}
		so := hsm.SOConfig{Module: cfg.HSM.Module, TokenLabel: cfg.HSM.TokenLabel, SlotID: cfg.HSM.SlotID, SOPINFile: soPINFile}
		if err := hsm.TrustJoinKey(ctx, so, joinKeyLabel(node), offer.Transport); err != nil {
			return "", fmt.Errorf("trust the join key of node %s: %w", node, err)
		}
		return node, nil
	}
	if len(seen) == 0 {
		return "", fmt.Errorf("no join waits in %s", filepath.Join(cfg.DataDir, JoinsDir))
	}
	return "", fmt.Errorf("no pending join has the fingerprint %s; pending: %s", want, strings.Join(seen, ", "))
}
