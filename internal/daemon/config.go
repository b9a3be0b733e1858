// Package daemon runs a pool node: it creates a pool (Init), and serves one (Run) by wiring the
// HSM, the Raft node and its state, the core behind its gRPC server, the identity provider and
// the REST gateway, and shuts them down in order.
package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/hsmpool/hsmpool/internal/auth"
	"github.com/hsmpool/hsmpool/internal/hsm"
)

// ConfigFile is the name of a node's configuration inside its data directory.
const ConfigFile = "hsmpoold.json"

// Config is a node's configuration file, written by init and read by serve. Relative paths are
// relative to the file's directory. Errors from Validate name the setting.
type Config struct {
	// Name is the pool's name, the first label of https://<name>.managedhsm.<dns_suffix>.
	Name string `json:"name"`
	// DataDir holds raft/, identity/ and tls/ (and softhsm/ for dev); created 0700.
	DataDir string `json:"data_dir"`
	// Listen is the host:port of the HTTPS listener (data plane and identity).
	Listen string `json:"listen"`
	// DNSSuffix makes the pool's host name and the token resource: "localhost" gives
	// https://<name>.managedhsm.localhost:<port>.
	DNSSuffix string `json:"dns_suffix"`
	// AuthorityHost is the identity provider's origin exactly as clients are told it
	// (https://127.0.0.1:8443); the issuer of tokens is <authority_host>/<tenant_id>/v2.0.
	AuthorityHost string `json:"authority_host"`
	// TenantID is the pool's tenant, a UUID.
	TenantID string `json:"tenant_id"`
	TLS      TLS    `json:"tls"`
	// HSM binds the node to its PKCS#11 slot.
	HSM hsm.Config `json:"hsm"`
	// SoftHSMConf, if set, is exported as SOFTHSM2_CONF before the module loads (the embedded
	// default keeps its token in the data directory).
	SoftHSMConf string `json:"softhsm_conf,omitempty"`
	Raft        Raft   `json:"raft"`
	// RecoverableDays is the soft-delete retention of keys (7..90), fixed when the pool is created.
	RecoverableDays int `json:"recoverable_days"`
	// MaxBodyBytes limits request bodies.
	MaxBodyBytes int64 `json:"max_body_bytes"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `json:"log_level"`
	// ExternalIssuers are OpenID Connect issuers whose access tokens the data plane accepts
	// besides the pool's own (docs/identity.md).
	ExternalIssuers []ExternalIssuer `json:"external_issuers,omitempty"`
}

// TLS names the listener's certificate and the CA that clients trust.
type TLS struct {
	CertFile string `json:"cert_file"`
	KeyFile  string `json:"key_file"`
	CAFile   string `json:"ca_file"`
	CAKey    string `json:"ca_key_file,omitempty"` // kept for issuing node certificates later
}

// ExternalIssuer trusts the access tokens of an OpenID Connect issuer: those whose iss is
// exactly Issuer, signed with a key of its JWKS, for one of Audiences. Their oid is the caller.
type ExternalIssuer struct {
	// Issuer is the tokens' "iss", an https URL, compared exactly.
	Issuer string `json:"issuer"`
	// Audiences are the "aud" values accepted from this issuer (not the pool's resource).
	Audiences []string `json:"audiences"`
	// JWKSFile is a file holding the issuer's JWKS, read at start; or
	JWKSFile string `json:"jwks_file,omitempty"`
	// JWKSURL is the https URL of the issuer's JWKS (its discovery document's jwks_uri),
	// fetched when first needed, cached, and read again for an unknown key at most once a minute.
	JWKSURL string `json:"jwks_url,omitempty"`
}

// Raft is the node's Raft identity and transport address.
type Raft struct {
	NodeID   string `json:"node_id"`
	BindAddr string `json:"bind_addr"`
	// CertFile and KeyFile are the node certificate from the pool CA (naming node_id) and its
	// key. With them the Raft transport is mutual TLS 1.3 with tls.ca_file as the pool CA, as a
	// pool of several nodes needs; without them it is plain TCP, for a single node on loopback.
	CertFile string `json:"cert_file,omitempty"`
	KeyFile  string `json:"key_file,omitempty"`
	// NodeAddr is the host:port of the node API (Join), served over TLS with the node
	// certificate; empty: this node admits no other. Needs cert_file and tls.ca_key_file.
	NodeAddr string `json:"node_addr,omitempty"`
	// PeerNodeAddrs are the node API addresses (their node_addr) of other nodes, by node ID:
	// a follower forwards writes to the leader's. The Raft configuration knows only Raft
	// addresses. A node that joined gets the entry of the node it joined through.
	PeerNodeAddrs map[string]string `json:"peer_node_addrs,omitempty"`
}

// mTLS tells whether the node runs Raft over mutual TLS.
func (r Raft) mTLS() bool { return r.CertFile != "" }

// Default returns a Config with the embedded default's settings; the caller sets the name, the
// data directory, the tenant and the HSM binding.
func Default() Config {
	return Config{
		Listen:          "127.0.0.1:8443",
		DNSSuffix:       "localhost",
		HSM:             hsm.Default(),
		Raft:            Raft{BindAddr: "127.0.0.1:8444"},
		RecoverableDays: 90,
		MaxBodyBytes:    1 << 20,
		LogLevel:        "info",
	}
}

var (
	poolNameRE = regexp.MustCompile(`^[a-zA-Z](?:[a-zA-Z0-9]|-[a-zA-Z0-9])*$`)
	uuidRE     = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
)

// CheckName applies the Azure Managed HSM naming rule.
func CheckName(name string) error {
	if len(name) < 3 || len(name) > 24 || !poolNameRE.MatchString(name) {
		return fmt.Errorf("%q: want 3-24 letters, digits and single hyphens, starting with a letter and ending with a letter or digit", name)
	}
	return nil
}

// Validate checks the Config without touching the disk or the network.
func (c Config) Validate() error {
	var errs []error
	add := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if err := CheckName(c.Name); err != nil {
		add("name", "%v", err)
	}
	if c.DataDir == "" {
		add("data_dir", "required")
	}
	if _, port, err := net.SplitHostPort(c.Listen); err != nil || port == "" {
		add("listen", "want host:port, got %q", c.Listen)
	}
	if c.DNSSuffix == "" || strings.ContainsAny(c.DNSSuffix, "/: ") {
		add("dns_suffix", "want a DNS suffix such as localhost, got %q", c.DNSSuffix)
	}
	if !strings.HasPrefix(c.AuthorityHost, "https://") || strings.Count(c.AuthorityHost, "/") != 2 {
		add("authority_host", "want https://host[:port] with no path, got %q", c.AuthorityHost)
	}
	if !uuidRE.MatchString(c.TenantID) {
		add("tenant_id", "want a lowercase UUID, got %q", c.TenantID)
	}
	c.validateExternalIssuers(add)
	if c.TLS.CertFile == "" || c.TLS.KeyFile == "" {
		add("tls", "cert_file and key_file are required")
	}
	if err := c.HSM.Validate(); err != nil {
		add("hsm", "%v", err)
	}
	if c.Raft.NodeID == "" {
		add("raft.node_id", "required")
	}
	if _, _, err := net.SplitHostPort(c.Raft.BindAddr); err != nil {
		add("raft.bind_addr", "want host:port, got %q", c.Raft.BindAddr)
	}
	if (c.Raft.CertFile == "") != (c.Raft.KeyFile == "") {
		add("raft.cert_file, raft.key_file", "set both or neither")
	}
	if c.Raft.CertFile != "" && c.TLS.CAFile == "" {
		add("tls.ca_file", "required with raft.cert_file: it is the pool CA that node certificates chain to")
	}
	if c.Raft.NodeAddr != "" {
		if _, port, err := net.SplitHostPort(c.Raft.NodeAddr); err != nil || port == "" {
			add("raft.node_addr", "want host:port, got %q", c.Raft.NodeAddr)
		}
		if c.Raft.CertFile == "" {
			add("raft.node_addr", "needs raft.cert_file: the node API is served with the node certificate")
		}
		if c.TLS.CAKey == "" {
			add("raft.node_addr", "needs tls.ca_key_file: the node API issues certificates to joining nodes")
		}
	}
	for id, addr := range c.Raft.PeerNodeAddrs {
		if _, port, err := net.SplitHostPort(addr); err != nil || port == "" || id == "" {
			add("raft.peer_node_addrs", "want a node ID and host:port, got %q: %q", id, addr)
		}
	}
	if len(c.Raft.PeerNodeAddrs) > 0 && c.Raft.CertFile == "" {
		add("raft.peer_node_addrs", "needs raft.cert_file: forwarded writes are sent with the node certificate")
	}
	if c.RecoverableDays < 7 || c.RecoverableDays > 90 {
		add("recoverable_days", "want 7 to 90, got %d", c.RecoverableDays)
	}
	if c.MaxBodyBytes < 64<<10 || c.MaxBodyBytes > 64<<20 {
		add("max_body_bytes", "want 64 KiB to 64 MiB, got %d", c.MaxBodyBytes)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		add("log_level", "want debug, info, warn or error, got %q", c.LogLevel)
	}
	return errors.Join(errs...)
}

// validateExternalIssuers checks external_issuers; the keys name the entry by its index.
func (c Config) validateExternalIssuers(add func(key, format string, args ...any)) {
	isHTTPS := func(s string) bool {
		u, err := url.Parse(s)
		return err == nil && u.Scheme == "https" && u.Host != "" && u.User == nil && u.Fragment == ""
	}
	own := strings.TrimSuffix(c.AuthorityHost, "/") + "/" + c.TenantID + "/v2.0"
	seen := map[string]int{}
	for k, e := range c.ExternalIssuers {
		key := fmt.Sprintf("external_issuers[%d]", k)
		switch first, dup := seen[e.Issuer]; {
		case !isHTTPS(e.Issuer):
			add(key+".issuer", "want an https URL, got %q", e.Issuer)
		case e.Issuer == own:
			add(key+".issuer", "%q is the pool's own issuer", e.Issuer)
		case dup:
			add(key+".issuer", "%q is also external_issuers[%d]", e.Issuer, first)
		default:
			seen[e.Issuer] = k
		}
		if len(e.Audiences) == 0 {
			add(key+".audiences", "at least one audience is required")
		}
		for n, a := range e.Audiences {
			if a == "" {
				add(fmt.Sprintf("%s.audiences[%d]", key, n), "empty")
			}
		}
		switch {
		case (e.JWKSFile == "") == (e.JWKSURL == ""):
			add(key, "exactly one of jwks_file and jwks_url is required")
		case e.JWKSURL != "" && !isHTTPS(e.JWKSURL):
			add(key+".jwks_url", "want an https URL, got %q", e.JWKSURL)
		}
	}
}

// externalIssuers is the external_issuers setting as the identity provider takes it.
func (c Config) externalIssuers() []auth.ExternalIssuer {
	var out []auth.ExternalIssuer
	for _, e := range c.ExternalIssuers {
		out = append(out, auth.ExternalIssuer{Issuer: e.Issuer, Audiences: e.Audiences, JWKSFile: e.JWKSFile, JWKSURL: e.JWKSURL})
	}
	return out
}

// port is the listener's port as it appears in URLs: empty for 443.
func (c Config) port() string {
	_, p, _ := net.SplitHostPort(c.Listen)
	if p == "443" {
		return ""
	}
	return ":" + p
}

// Resource is the data plane's token audience and challenge resource.
func (c Config) Resource() string { return "https://managedhsm." + c.DNSSuffix + c.port() }

// URL is the pool's data-plane URL.
func (c Config) URL() string { return "https://" + c.Name + ".managedhsm." + c.DNSSuffix + c.port() }

// LoadConfig reads and validates a configuration file, resolving relative paths against its
// directory.
func LoadConfig(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, err
	}
	cfg := Default()
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	cfg.resolve(filepath.Dir(path))
	if err := cfg.Validate(); err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

func (c *Config) resolve(dir string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	for _, p := range []*string{&c.DataDir, &c.TLS.CertFile, &c.TLS.KeyFile, &c.TLS.CAFile, &c.TLS.CAKey, &c.HSM.PINFile, &c.SoftHSMConf, &c.Raft.CertFile, &c.Raft.KeyFile} {
		abs(p)
	}
	for k := range c.ExternalIssuers {
		abs(&c.ExternalIssuers[k].JWKSFile)
	}
}

// write saves the config 0600 (it names files, not secrets, but nothing else needs to read it).
func (c Config) write(path string) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o600)
}

func portOf(addr string) int {
	_, p, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(p)
	return n
}
