package main

import (
	"errors"
	"fmt"
	"net"
	"regexp"

	"github.com/spf13/cobra"
)

// errDevNotImplemented is returned by "hsmpoold dev" until the embedded default lands.
var errDevNotImplemented = errors.New("the embedded default (hsmpoold dev) is not implemented yet; see the README status table")

// devOptions are the flags of "hsmpoold dev".
type devOptions struct {
	// DataDir holds everything the embedded default creates: SoftHSM2 config and token, TLS files, Raft data.
	DataDir string
	// Listen is the host:port of the HTTPS listener.
	Listen string
	// Name is the pool name, the first label of https://<name>.managedhsm.<suffix>.
	Name string
}

// defaultDevOptions returns the defaults of "hsmpoold dev".
func defaultDevOptions() *devOptions {
	return &devOptions{
		Listen: "127.0.0.1:8443",
		Name:   "contoso",
	}
}

// poolNameRE is the Azure Managed HSM naming rule, with the length (3-24) checked apart: letters, digits and single
// hyphens, starting with a letter and ending with a letter or digit.
var poolNameRE = regexp.MustCompile(`^[a-zA-Z](?:[a-zA-Z0-9]|-[a-zA-Z0-9])*$`)

// validate checks the options; errors name the flag at fault.
func (o *devOptions) validate() error {
	if o.DataDir == "" {
		return errors.New("--data-dir is required")
	}
	if _, _, err := net.SplitHostPort(o.Listen); err != nil {
		return fmt.Errorf("--listen %q: want host:port: %w", o.Listen, err)
	}
	if len(o.Name) < 3 || len(o.Name) > 24 || !poolNameRE.MatchString(o.Name) {
		return fmt.Errorf("--name %q: want 3-24 letters, digits and single hyphens, starting with a letter and ending with a letter or digit", o.Name)
	}
	return nil
}

// newDevCmd builds "hsmpoold dev".
func newDevCmd(opts *devOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dev --data-dir DIR [--listen HOST:PORT] [--name NAME]",
		Short: "Run the embedded default: a single-node development pool on SoftHSM2",
		Long: `dev runs the embedded default, a single-node pool that needs nothing but SoftHSM2.
In --data-dir it creates a SoftHSM2 configuration and token, a self-signed CA and server
certificate, a single-node Raft cluster and an administrator principal, then prints the
URL, the CA path and how to authenticate.

The dev principal holds Managed HSM Administrator, Crypto Officer and Crypto User at "/",
so that a first Azure SDK call works; production pools are created with "hsmpoold init".

Not implemented yet: dev checks its flags and then fails.`,
		Example: `  # Start a pool named contoso on https://127.0.0.1:8443 with its data in ./.data.
  hsmpoold dev --data-dir .data

  # Another name and port.
  hsmpoold dev --data-dir /tmp/fabrikam --name fabrikam --listen 127.0.0.1:9443`,
		Args: cobra.NoArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			if err := opts.validate(); err != nil {
				return err
			}
			return errDevNotImplemented
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.DataDir, "data-dir", opts.DataDir, "directory for the pool's data, created 0700 if missing (required)")
	f.StringVar(&opts.Listen, "listen", opts.Listen, "host:port of the HTTPS listener")
	f.StringVar(&opts.Name, "name", opts.Name, "pool name, served as https://NAME.managedhsm.localhost")
	return cmd
}
