// Package daemon runs a pool node: it creates a pool (Init), and serves one (Run) by wiring the
// HSM, the Raft node and its state, the core behind its gRPC server, the identity provider and
// the REST gateway, and shuts them down in order.
package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

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
}

// TLS names the listener's certificate and the CA that clients trust.
type TLS struct {
	CertFile string `json:"cert_file"`
	KeyFile  string `json:"key_file"`
	CAFile   string `json:"ca_file"`
	CAKey    string `json:"ca_key_file,omitempty"` // kept for issuing node certificates later
}

// Raft is the node's Raft identity and transport address.
type Raft struct {
	NodeID   string `json:"node_id"`
	BindAddr string `json:"bind_addr"`
}

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
	for _, p := range []*string{&c.DataDir, &c.TLS.CertFile, &c.TLS.KeyFile, &c.TLS.CAFile, &c.TLS.CAKey, &c.HSM.PINFile, &c.SoftHSMConf} {
		abs(p)
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
