package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/hsmpool/hsmpool/internal/softhsm"
)

// DevJoinOptions are the settings of "hsmpoold dev --join": a development node with its own
// SoftHSM2 token in its data directory that joins an existing pool.
type DevJoinOptions struct {
	DataDir string
	Listen  string
	// Join is the node API (raft.node_addr) of any member of the pool; TokenFile holds the
	// join token.
	Join, TokenFile string
	// RaftAddr, NodeAddr and NodeID default to the listener's port + 1, port + 2 and
	// "node-<port>".
	RaftAddr, NodeAddr, NodeID string
	// Timeout and Pending are those of JoinOptions.
	Timeout time.Duration
	Pending func(fingerprint, source string)
}

// DevJoin returns the configuration of a dev node that joined a pool: the existing one when
// the data directory holds a node already (a restart: it just serves), else it makes a
// SoftHSM2 token in DIR/softhsm, like dev (the SO PIN in DIR/softhsm/so.pin is what a later
// join through this node needs for trust-join-key), and joins through o.Join. created tells
// which.
func DevJoin(ctx context.Context, o DevJoinOptions) (cfg Config, created bool, err error) {
	confPath := filepath.Join(o.DataDir, ConfigFile)
	if _, err := os.Stat(confPath); err == nil {
		cfg, err := LoadConfig(confPath)
		return cfg, false, err
	} else if !errors.Is(err, fs.ErrNotExist) {
		return cfg, false, err
	}
	host, port, err := net.SplitHostPort(o.Listen)
	if err != nil || port == "" {
		return cfg, false, fmt.Errorf("--listen %q: want host:port", o.Listen)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p <= 0 || p > 65533 {
		return cfg, false, fmt.Errorf("--listen %q: want a fixed port up to 65533", o.Listen)
	}
	if host == "" || isUnspecified(host) || host == "localhost" {
		host = "127.0.0.1"
	}
	if o.RaftAddr == "" {
		o.RaftAddr = net.JoinHostPort(host, strconv.Itoa(p+1))
	}
	if o.NodeAddr == "" {
		o.NodeAddr = net.JoinHostPort(host, strconv.Itoa(p+2))
	}
	if o.NodeID == "" {
		o.NodeID = "node-" + port
	}
	if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
		return cfg, false, err
	}
	dir, err := filepath.Abs(o.DataDir)
	if err != nil {
		return cfg, false, err
	}
	cfg = Default()
	cfg.DataDir, cfg.Listen = dir, o.Listen
	cfg.AuthorityHost = "https://" + net.JoinHostPort(host, port)
	cfg.Raft = Raft{NodeID: o.NodeID, BindAddr: o.RaftAddr, NodeAddr: o.NodeAddr}
	label := "hsmpool-" + o.NodeID
	if len(label) > 32 {
		label = label[:32]
	}
	if err := devJoinToken(ctx, &cfg, label); err != nil {
		return cfg, false, fmt.Errorf("make the SoftHSM2 token: %w", err)
	}
	cfg, err = JoinPool(ctx, JoinOptions{Config: cfg, Addr: o.Join, TokenFile: o.TokenFile, Timeout: o.Timeout, Pending: o.Pending})
	if err != nil {
		return cfg, false, err
	}
	return cfg, true, nil
}

// devJoinToken makes the dev token, or takes the one an interrupted join made before.
func devJoinToken(ctx context.Context, cfg *Config, label string) error {
	dir := filepath.Join(cfg.DataDir, "softhsm")
	pinFile := filepath.Join(dir, "user.pin")
	if _, err := os.Stat(pinFile); err != nil {
		return devToken(ctx, cfg, label)
	}
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
	cfg.HSM.Module, cfg.HSM.TokenLabel, cfg.HSM.PINFile = module, label, pinFile
	return nil
}
