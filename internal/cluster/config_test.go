package cluster_test

import (
	"crypto/tls"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/hsmpool/hsmpool/internal/cluster"
	"github.com/hsmpool/hsmpool/internal/fault"
)

// validTLS has every part of the TLS settings; Validate does not call them.
func validTLS() *cluster.TLS {
	return &cluster.TLS{
		CAs:            x509.NewCertPool(),
		GetCertificate: func() (*tls.Certificate, error) { return nil, nil },
		Allowed:        func(string) bool { return false },
	}
}

func TestConfigValidate(t *testing.T) {
	valid := func() cluster.Config {
		c := cluster.Default()
		c.NodeID = "node-1"
		c.DataDir = "/var/lib/hsmpool/raft"
		c.BindAddr = "10.0.0.1:7000"
		return c
	}
	_, inmem := raft.NewInmemTransport("")
	tests := []struct {
		name   string
		modify func(*cluster.Config)
		want   string // the setting the error must name; "" for a valid Config
	}{
		{"valid", func(*cluster.Config) {}, ""},
		{"loopback, port 0", func(c *cluster.Config) { c.BindAddr = "127.0.0.1:0" }, ""},
		{"IPv6", func(c *cluster.Config) { c.BindAddr = "[::1]:7000" }, ""},
		{"host name", func(c *cluster.Config) { c.BindAddr = "node1.example:7000" }, ""},
		{"transport instead of bind_addr", func(c *cluster.Config) { c.BindAddr = ""; c.Transport = inmem }, ""},
		{"no node_id", func(c *cluster.Config) { c.NodeID = "" }, "node_id"},
		{"node_id with a space", func(c *cluster.Config) { c.NodeID = "node 1" }, "node_id"},
		{"long node_id", func(c *cluster.Config) { c.NodeID = strings.Repeat("n", 129) }, "node_id"},
		{"no data_dir", func(c *cluster.Config) { c.DataDir = "" }, "data_dir"},
		{"no bind_addr", func(c *cluster.Config) { c.BindAddr = "" }, "bind_addr"},
		{"bind_addr without port", func(c *cluster.Config) { c.BindAddr = "10.0.0.1" }, "bind_addr"},
		{"bind_addr bad port", func(c *cluster.Config) { c.BindAddr = "10.0.0.1:70000" }, "bind_addr"},
		{"bind_addr without host", func(c *cluster.Config) { c.BindAddr = ":7000" }, "bind_addr"},
		{"bind_addr unspecified", func(c *cluster.Config) { c.BindAddr = "0.0.0.0:7000" }, "bind_addr"},
		{"bind_addr unspecified IPv6", func(c *cluster.Config) { c.BindAddr = "[::]:7000" }, "bind_addr"},
		{"heartbeat too short", func(c *cluster.Config) { c.HeartbeatTimeout = time.Millisecond }, "heartbeat_timeout"},
		{"heartbeat too long", func(c *cluster.Config) { c.HeartbeatTimeout = time.Hour; c.ElectionTimeout = time.Hour }, "heartbeat_timeout"},
		{"election below heartbeat", func(c *cluster.Config) { c.ElectionTimeout = c.HeartbeatTimeout / 2 }, "election_timeout"},
		{"snapshot_interval zero", func(c *cluster.Config) { c.SnapshotInterval = 0 }, "snapshot_interval"},
		{"snapshot_threshold zero", func(c *cluster.Config) { c.SnapshotThreshold = 0 }, "snapshot_threshold"},
		{"tls", func(c *cluster.Config) { c.TLS = validTLS() }, ""},
		{"tls without bind_addr", func(c *cluster.Config) { c.TLS = validTLS(); c.BindAddr = "" }, "bind_addr"},
		{"tls and transport", func(c *cluster.Config) { c.TLS = validTLS(); c.Transport = inmem }, "tls"},
		{"tls without cas", func(c *cluster.Config) { c.TLS = validTLS(); c.TLS.CAs = nil }, "tls.cas"},
		{"tls without certificate", func(c *cluster.Config) { c.TLS = validTLS(); c.TLS.GetCertificate = nil }, "tls.get_certificate"},
		{"tls without allowed", func(c *cluster.Config) { c.TLS = validTLS(); c.TLS.Allowed = nil }, "tls.allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid()
			tt.modify(&c)
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want an error naming %s", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want+":") {
				t.Errorf("Validate() = %q, want it to name %s", err, tt.want)
			}
			if fault.Of(err) != fault.BadParameter {
				t.Errorf("fault.Of(%v) = %v, want %v", err, fault.Of(err), fault.BadParameter)
			}
		})
	}
}

// TestConfigValidateAll checks that every broken setting is reported at once.
func TestConfigValidateAll(t *testing.T) {
	err := cluster.Config{}.Validate()
	if err == nil {
		t.Fatal("Validate() of a zero Config = nil")
	}
	for _, key := range []string{"node_id", "data_dir", "bind_addr", "heartbeat_timeout", "election_timeout", "snapshot_interval", "snapshot_threshold"} {
		if !strings.Contains(err.Error(), key+":") {
			t.Errorf("Validate() of a zero Config = %q, does not name %s", err, key)
		}
	}
}

// TestOpenInvalid checks that Open validates the Config first.
func TestOpenInvalid(t *testing.T) {
	cfg := testConfig(t)
	cfg.NodeID = ""
	if _, err := cluster.Open(testContext(t), cfg, newKV(), true); fault.Of(err) != fault.BadParameter || !strings.Contains(err.Error(), "node_id") {
		t.Errorf("Open with no node_id = %v, want fault.BadParameter naming node_id", err)
	}
}
