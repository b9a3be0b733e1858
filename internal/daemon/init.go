package daemon

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/hsmpool/hsmpool/internal/auth"
	"github.com/hsmpool/hsmpool/internal/authz"
	"github.com/hsmpool/hsmpool/internal/core"
	"github.com/hsmpool/hsmpool/internal/hsm"
	"github.com/hsmpool/hsmpool/internal/pki"
	"github.com/hsmpool/hsmpool/internal/secret"
	"github.com/hsmpool/hsmpool/internal/softhsm"
	"github.com/hsmpool/hsmpool/internal/state"
	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

// Client is what an administrator needs to reach the pool: the content of client.json.
type Client struct {
	URL           string `json:"url"`
	Name          string `json:"name"`
	TenantID      string `json:"tenant_id"`
	AuthorityHost string `json:"authority_host"`
	ClientID      string `json:"client_id"`
	ClientSecret  string `json:"client_secret"`
	CAFile        string `json:"ca_file"`
}

// WriteClient writes c to path, 0600, refusing to overwrite: it holds a secret shown only once.
func WriteClient(path string, c Client) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return pki.WriteFile(path, append(b, '\n'), 0o600)
}

// Init creates a pool in cfg.DataDir: TLS material from a new CA when cfg.TLS names no
// certificate, the token-signing key, one principal per name in admins holding each role of
// roles (built-in role GUIDs) at "/", and a single-node Raft cluster whose first command records
// the pool. roles must include the Managed HSM Administrator role, so that the pool can be
// administered at all. It writes the configuration file and returns the principals'
// credentials; the caller stores them (WriteClient). The HSM binding must already work: Init
// opens it to prove so.
func Init(ctx context.Context, cfg Config, admins, roles []string, log *slog.Logger) (Config, []Client, error) {
	return initPool(ctx, cfg, admins, roles, false, log)
}

// InitRecovery is Init for a pool in recovery mode: it also generates the exchange key in the
// node's token and self-signs its certificate. The pool is then activated by uploading a
// restore blob made for that key from an existing security domain, never by a download.
func InitRecovery(ctx context.Context, cfg Config, admins, roles []string, log *slog.Logger) (Config, []Client, error) {
	return initPool(ctx, cfg, admins, roles, true, log)
}

func initPool(ctx context.Context, cfg Config, admins, roles []string, recovery bool, log *slog.Logger) (_ Config, clients []Client, err error) {
	if len(admins) == 0 {
		return cfg, nil, errors.New("at least one administrator is required")
	}
	if !slices.Contains(roles, authz.AdministratorRoleID) {
		return cfg, nil, errors.New("the first principals must hold the Managed HSM Administrator role")
	}
	confPath := filepath.Join(cfg.DataDir, ConfigFile)
	if _, err := os.Stat(confPath); err == nil {
		return cfg, nil, fmt.Errorf("%s exists: %s already holds a pool", confPath, cfg.DataDir)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return cfg, nil, err
	}
	if cfg.TLS.CertFile == "" {
		if err := makeTLS(&cfg); err != nil {
			return cfg, nil, fmt.Errorf("make TLS material: %w", err)
		}
	}
	if cfg.Raft.NodeAddr != "" && cfg.Raft.CertFile == "" {
		if err := makeNodeCert(&cfg); err != nil {
			return cfg, nil, fmt.Errorf("make the node certificate: %w", err)
		}
	}
	if err := cfg.Validate(); err != nil {
		return cfg, nil, err
	}
	if err := writeSigner(filepath.Join(cfg.DataDir, signerFile)); err != nil {
		return cfg, nil, err
	}
	if cfg.SoftHSMConf != "" {
		os.Setenv("SOFTHSM2_CONF", cfg.SoftHSMConf)
	}
	pool, err := hsm.Open(ctx, cfg.HSM)
	if err != nil {
		return cfg, nil, fmt.Errorf("open the HSM: %w", err)
	}
	init := &pb.InitPool{Name: cfg.Name, TenantId: cfg.TenantID, RecoverableDays: int32(cfg.RecoverableDays)}
	if recovery {
		label := "hsmpool-exchange-" + strings.ReplaceAll(uuid.NewString(), "-", "")[:16]
		der, xerr := newExchangeKey(ctx, pool, label, cfg.Name, time.Now())
		if xerr != nil {
			return cfg, nil, errors.Join(fmt.Errorf("make the exchange key: %w", xerr), pool.Close())
		}
		defer func() {
			if err != nil { // the pool was not recorded: leave no key behind
				_ = reopenAndDestroyExchangeKey(context.WithoutCancel(ctx), cfg, label)
			}
		}()
		init.Recovery, init.ExchangeCert, init.ExchangeKeyLabel = true, der, label
	}
	if err := pool.Close(); err != nil {
		return cfg, nil, err
	}

	for _, name := range admins {
		sec, hash, err := auth.NewSecret()
		if err != nil {
			return cfg, nil, err
		}
		clientID, objectID := uuid.NewString(), uuid.NewString()
		init.Principals = append(init.Principals, core.PrincipalRecord(objectID, clientID, name, hash, time.Now()))
		for _, role := range roles {
			init.Assignments = append(init.Assignments, &pb.RoleAssignment{Name: uuid.NewString(), Scope: "/", RoleDefinitionId: role, PrincipalId: objectID})
		}
		clients = append(clients, Client{URL: cfg.URL(), Name: cfg.Name, TenantID: cfg.TenantID, AuthorityHost: cfg.AuthorityHost,
			ClientID: clientID, ClientSecret: string(sec.Reveal()), CAFile: cfg.TLS.CAFile})
		sec.Wipe()
	}

	node, _, err := openCluster(ctx, cfg, state.New(), log, true)
	if err != nil {
		return cfg, nil, err
	}
	defer func() { err = errors.Join(err, node.Close()) }()
	if err := node.WaitLeader(ctx); err != nil {
		return cfg, nil, err
	}
	cmd := &pb.Command{Id: uuid.NewString(), Time: time.Now().Unix(), Op: &pb.Command_InitPool{InitPool: init}}
	if err := (replicator{n: node}).Propose(ctx, cmd); err != nil {
		return cfg, nil, fmt.Errorf("record the pool: %w", err)
	}
	if err := cfg.write(confPath); err != nil {
		return cfg, nil, err
	}
	return cfg, clients, nil
}

// ExchangeCertValidity is how long the exchange certificate of a recovery pool is valid.
const ExchangeCertValidity = 365 * 24 * time.Hour

// newExchangeKey generates the exchange key in the token and returns its self-signed
// certificate (DER), "<pool> exchange key", signed inside the token.
func newExchangeKey(ctx context.Context, pool *hsm.Pool, label, name string, now time.Time) ([]byte, error) {
	ex, err := pool.CreateExchangeKey(ctx, label)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name + " exchange key"},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(ExchangeCertValidity),
		KeyUsage:              x509.KeyUsageKeyEncipherment | x509.KeyUsageDataEncipherment,
		BasicConstraintsValid: true,
		SignatureAlgorithm:    x509.SHA256WithRSA,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, ex.Public(), ex.Signer(ctx))
	if err != nil {
		return nil, errors.Join(fmt.Errorf("self-sign the exchange certificate: %w", err), pool.DestroyExchangeKey(ctx, label))
	}
	return der, nil
}

func reopenAndDestroyExchangeKey(ctx context.Context, cfg Config, label string) error {
	pool, err := hsm.Open(ctx, cfg.HSM)
	if err != nil {
		return err
	}
	return errors.Join(pool.DestroyExchangeKey(ctx, label), pool.Close())
}

func makeTLS(cfg *Config) error {
	dir := filepath.Join(cfg.DataDir, "tls")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	now := time.Now()
	ca, err := pki.NewCA("hsmpool "+cfg.Name+" CA", 10*365*24*time.Hour, now)
	if err != nil {
		return err
	}
	cfg.TLS = TLS{CAFile: filepath.Join(dir, "ca.pem"), CAKey: filepath.Join(dir, "ca.key"),
		CertFile: filepath.Join(dir, "server.pem"), KeyFile: filepath.Join(dir, "server.key")}
	if err := ca.Write(cfg.TLS.CAFile, cfg.TLS.CAKey); err != nil {
		return err
	}
	names := []string{cfg.Name + ".managedhsm." + cfg.DNSSuffix, "managedhsm." + cfg.DNSSuffix, "localhost", "127.0.0.1", "::1"}
	if h, _, err := net.SplitHostPort(cfg.Listen); err == nil && h != "" && !isUnspecified(h) && !contains(names, h) {
		names = append(names, h)
	}
	certPEM, keyPEM, err := ca.Issue(pki.LeafOptions{CommonName: cfg.Name + ".managedhsm." + cfg.DNSSuffix, Names: names,
		Server: true, Validity: 2 * 365 * 24 * time.Hour, Now: now})
	if err != nil {
		return err
	}
	if err := pki.WriteFile(cfg.TLS.CertFile, certPEM, 0o644); err != nil {
		return err
	}
	return pki.WriteFile(cfg.TLS.KeyFile, keyPEM, 0o600)
}

// makeNodeCert issues this node's certificate from the pool CA, for a node that serves the
// node API (raft.node_addr) and so runs Raft over mutual TLS from the start.
func makeNodeCert(cfg *Config) error {
	if cfg.TLS.CAKey == "" {
		return errors.New("tls.ca_key_file: the pool CA's key is needed to issue the node certificate")
	}
	ca, err := pki.LoadCA(cfg.TLS.CAFile, cfg.TLS.CAKey)
	if err != nil {
		return err
	}
	host, _, err := net.SplitHostPort(cfg.Raft.BindAddr)
	if err != nil || host == "" {
		return fmt.Errorf("raft.bind_addr %q: want host:port", cfg.Raft.BindAddr)
	}
	certPEM, keyPEM, err := ca.IssueNode(pki.NodeOptions{NodeID: cfg.Raft.NodeID, Names: []string{host}})
	if err != nil {
		return err
	}
	cfg.Raft.CertFile, cfg.Raft.KeyFile = filepath.Join(cfg.DataDir, nodeCertFile), filepath.Join(cfg.DataDir, nodeKeyFile)
	if err := pki.WriteFile(cfg.Raft.CertFile, certPEM, 0o644); err != nil {
		return err
	}
	return pki.WriteFile(cfg.Raft.KeyFile, keyPEM, 0o600)
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func isUnspecified(h string) bool {
	ip := net.ParseIP(h)
	return ip != nil && ip.IsUnspecified()
}

func writeSigner(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return err
	}
	return pki.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

// DevOptions are the settings of the embedded default.
type DevOptions struct {
	DataDir string
	Listen  string
	Name    string
	// Recovery makes the pool in recovery mode (InitRecovery).
	Recovery bool
	// NodeAddr, if set, is the node API's host:port: the node gets a node certificate, runs
	// Raft over mutual TLS and admits joining nodes (raft.node_addr).
	NodeAddr string
}

// DevConfig returns the configuration of the embedded default in dir: the existing one if the
// pool was created before (resume), else a new pool on a SoftHSM2 token made inside dir, with one
// administrator whose credentials go to dir/client.json. created tells which.
func DevConfig(ctx context.Context, o DevOptions, log *slog.Logger) (cfg Config, created bool, err error) {
	confPath := filepath.Join(o.DataDir, ConfigFile)
	if _, err := os.Stat(confPath); err == nil {
		cfg, err := LoadConfig(confPath)
		return cfg, false, err
	} else if !errors.Is(err, fs.ErrNotExist) {
		return cfg, false, err
	}
	if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
		return cfg, false, err
	}
	dir, err := filepath.Abs(o.DataDir)
	if err != nil {
		return cfg, false, err
	}
	cfg = Default()
	cfg.Name, cfg.DataDir, cfg.Listen = o.Name, dir, o.Listen
	host, port, err := net.SplitHostPort(o.Listen)
	if err != nil {
		return cfg, false, fmt.Errorf("listen: %w", err)
	}
	if host == "" || isUnspecified(host) || host == "localhost" {
		host = "127.0.0.1"
	}
	cfg.AuthorityHost = "https://" + net.JoinHostPort(host, port)
	if port == "443" {
		cfg.AuthorityHost = "https://" + host
		if strings.Contains(host, ":") {
			cfg.AuthorityHost = "https://[" + host + "]"
		}
	}
	cfg.TenantID = uuid.NewString()
	cfg.Raft = Raft{NodeID: "node-" + uuid.NewString()[:8], BindAddr: net.JoinHostPort(host, fmt.Sprint(portOf(o.Listen)+1)), NodeAddr: o.NodeAddr}

	if err := devToken(ctx, &cfg, "hsmpool-"+cfg.Name); err != nil {
		return cfg, false, fmt.Errorf("make the SoftHSM2 token: %w", err)
	}
	initFn := Init
	if o.Recovery {
		initFn = InitRecovery
	}
	cfg, clients, err := initFn(ctx, cfg, []string{"dev-admin"}, DevRoles, log)
	if err != nil {
		return cfg, false, err
	}
	if err := WriteClient(filepath.Join(dir, "client.json"), clients[0]); err != nil {
		return cfg, false, err
	}
	return cfg, true, nil
}

// DevRoles are the roles of the dev pool's principal: Managed HSM Administrator grants no key
// operations, so that a newcomer's first SDK call works it also holds Crypto Officer and Crypto
// User (DESIGN.md §7).
var DevRoles = []string{authz.AdministratorRoleID, authz.CryptoOfficerRoleID, authz.CryptoUserRoleID}

// devToken makes a SoftHSM2 configuration and token labelled label inside the data
// directory, with random PINs kept 0600 beside it.
func devToken(ctx context.Context, cfg *Config, label string) error {
	dir := filepath.Join(cfg.DataDir, "softhsm")
	conf, err := softhsm.WriteConfig(dir)
	if err != nil {
		return err
	}
	cfg.SoftHSMConf = conf
	os.Setenv("SOFTHSM2_CONF", conf)
	module, err := softhsm.Module()
	if err != nil {
		return err
	}
	so, user := randomPIN(), randomPIN()
	defer so.Wipe()
	defer user.Wipe()
	if _, err := hsm.InitToken(ctx, module, label, so, user); err != nil {
		return err
	}
	if err := pki.WriteFile(filepath.Join(dir, "so.pin"), so.Reveal(), 0o600); err != nil {
		return err
	}
	pinFile := filepath.Join(dir, "user.pin")
	if err := pki.WriteFile(pinFile, user.Reveal(), 0o600); err != nil {
		return err
	}
	cfg.HSM.Module, cfg.HSM.TokenLabel, cfg.HSM.PINFile = module, label, pinFile
	return nil
}

func randomPIN() secret.Bytes {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return secret.New([]byte(hex.EncodeToString(b[:])))
}
