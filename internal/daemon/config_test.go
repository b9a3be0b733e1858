package daemon

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// validConfig is a Config that passes Validate.
func validConfig() Config {
	c := Default()
	c.Name = "contoso"
	c.DataDir = "/var/lib/hsmpool"
	c.AuthorityHost = "https://127.0.0.1:8443"
	c.TenantID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	c.TLS = TLS{CertFile: "server.pem", KeyFile: "server.key"}
	c.HSM.TokenLabel = "hsmpool"
	c.HSM.PINFile = "pin"
	c.Raft.NodeID = "node-1"
	return c
}

func TestConfigExternalIssuers(t *testing.T) {
	const iss = "https://login.microsoftonline.com/11111111-2222-3333-4444-555555555555/v2.0"
	entra := ExternalIssuer{Issuer: iss, Audiences: []string{"api://hsmpool"},
		JWKSURL: "https://login.microsoftonline.com/11111111-2222-3333-4444-555555555555/discovery/v2.0/keys"}
	tests := []struct {
		name string
		ext  []ExternalIssuer
		want string // the setting the error must name; "" for valid
	}{
		{"none", nil, ""},
		{"jwks_url", []ExternalIssuer{entra}, ""},
		{"jwks_file", []ExternalIssuer{{Issuer: "https://idp.example.test", Audiences: []string{"a", "b"}, JWKSFile: "jwks.json"}}, ""},
		{"two issuers", []ExternalIssuer{entra, {Issuer: "https://idp.example.test", Audiences: []string{"a"}, JWKSFile: "jwks.json"}}, ""},
		{"http issuer", []ExternalIssuer{{Issuer: "http://idp.example.test", Audiences: []string{"a"}, JWKSFile: "j"}}, "external_issuers[0].issuer"},
		{"no issuer", []ExternalIssuer{{Audiences: []string{"a"}, JWKSFile: "j"}}, "external_issuers[0].issuer"},
		{"the pool's issuer", []ExternalIssuer{{Issuer: "https://127.0.0.1:8443/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0",
			Audiences: []string{"a"}, JWKSFile: "j"}}, "external_issuers[0].issuer"},
		{"listed twice", []ExternalIssuer{entra, entra}, "external_issuers[1].issuer"},
		{"no audiences", []ExternalIssuer{{Issuer: iss, JWKSFile: "j"}}, "external_issuers[0].audiences"},
		{"empty audience", []ExternalIssuer{{Issuer: iss, Audiences: []string{"a", ""}, JWKSFile: "j"}}, "external_issuers[0].audiences[1]"},
		{"no jwks", []ExternalIssuer{{Issuer: iss, Audiences: []string{"a"}}}, "external_issuers[0]"},
		{"both jwks", []ExternalIssuer{{Issuer: iss, Audiences: []string{"a"}, JWKSFile: "j", JWKSURL: "https://x.test/k"}}, "external_issuers[0]"},
		{"http jwks_url", []ExternalIssuer{{Issuer: iss, Audiences: []string{"a"}, JWKSURL: "http://x.test/k"}}, "external_issuers[0].jwks_url"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			c.ExternalIssuers = tt.ext
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				if got := c.externalIssuers(); len(got) != len(tt.ext) {
					t.Errorf("externalIssuers() has %d entries, want %d", len(got), len(tt.ext))
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want an error naming %s", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want+":") {
				t.Errorf("Validate() = %q, want it to name %s", err, tt.want)
			}
		})
	}
}

// TestLoadConfigExternalIssuers reads external_issuers from a file and resolves jwks_file
// against the file's directory.
func TestLoadConfigExternalIssuers(t *testing.T) {
	dir := t.TempDir()
	c := validConfig()
	c.ExternalIssuers = []ExternalIssuer{{Issuer: "https://idp.example.test", Audiences: []string{"api://hsmpool"}, JWKSFile: "idp/jwks.json"}}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"external_issuers":[{"issuer":"https://idp.example.test","audiences":["api://hsmpool"],"jwks_file":"idp/jwks.json"}]`) {
		t.Errorf("JSON form: %s", b)
	}
	path := filepath.Join(dir, ConfigFile)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "idp/jwks.json"); len(got.ExternalIssuers) != 1 || got.ExternalIssuers[0].JWKSFile != want {
		t.Errorf("ExternalIssuers = %+v, want jwks_file %s", got.ExternalIssuers, want)
	}
	// Without the setting the file is as before: omitempty.
	c.ExternalIssuers = nil
	if b, _ := json.Marshal(c); strings.Contains(string(b), "external_issuers") {
		t.Errorf("an empty external_issuers is written: %s", b)
	}
}

func TestConfigNodeTLS(t *testing.T) {
	tests := []struct {
		name string
		set  func(c *Config)
		want string // the setting the error must name; "" for valid
	}{
		{"plain TCP", func(*Config) {}, ""},
		{"mTLS", func(c *Config) { c.Raft.CertFile, c.Raft.KeyFile, c.TLS.CAFile = "n.pem", "n.key", "ca.pem" }, ""},
		{"node API", func(c *Config) {
			c.Raft.CertFile, c.Raft.KeyFile, c.TLS.CAFile, c.TLS.CAKey, c.Raft.NodeAddr = "n.pem", "n.key", "ca.pem", "ca.key", "127.0.0.1:8445"
		}, ""},
		{"cert without key", func(c *Config) { c.Raft.CertFile, c.TLS.CAFile = "n.pem", "ca.pem" }, "raft.cert_file, raft.key_file"},
		{"no CA", func(c *Config) { c.Raft.CertFile, c.Raft.KeyFile = "n.pem", "n.key" }, "tls.ca_file"},
		{"node API without cert", func(c *Config) { c.TLS.CAFile, c.TLS.CAKey, c.Raft.NodeAddr = "ca.pem", "ca.key", "127.0.0.1:8445" }, "raft.node_addr"},
		{"node API without CA key", func(c *Config) {
			c.Raft.CertFile, c.Raft.KeyFile, c.TLS.CAFile, c.Raft.NodeAddr = "n.pem", "n.key", "ca.pem", "127.0.0.1:8445"
		}, "raft.node_addr"},
		{"node API address", func(c *Config) {
			c.Raft.CertFile, c.Raft.KeyFile, c.TLS.CAFile, c.TLS.CAKey, c.Raft.NodeAddr = "n.pem", "n.key", "ca.pem", "ca.key", "8445"
		}, "raft.node_addr"},
		{"peer node API", func(c *Config) {
			c.Raft.CertFile, c.Raft.KeyFile, c.TLS.CAFile = "n.pem", "n.key", "ca.pem"
			c.Raft.PeerNodeAddrs = map[string]string{"node-1": "127.0.0.1:8445"}
		}, ""},
		{"peer node API address", func(c *Config) {
			c.Raft.CertFile, c.Raft.KeyFile, c.TLS.CAFile = "n.pem", "n.key", "ca.pem"
			c.Raft.PeerNodeAddrs = map[string]string{"node-1": "8445"}
		}, "raft.peer_node_addrs"},
		{"peer node API without cert", func(c *Config) { c.Raft.PeerNodeAddrs = map[string]string{"node-1": "127.0.0.1:8445"} }, "raft.peer_node_addrs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.set(&c)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want+":")):
				t.Fatalf("Validate() = %v, want an error naming %s", err, tt.want)
			}
		})
	}
}
