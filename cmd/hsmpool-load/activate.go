package main

import (
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/hsmpool/hsmpool/pkg/client"
)

// activateOptions are the flags of "hsmpool-load activate".
type activateOptions struct {
	// ClientFile is the client file; empty means $HSMPOOL_CLIENT_FILE.
	ClientFile string
	// Certs are the officers' certificate files, PEM or DER.
	Certs []string
	// Quorum is how many officers it takes to recover the security domain.
	Quorum int
	// SDOut is where the security-domain file goes.
	SDOut string
}

// validate checks the options; errors name the flag at fault.
func (o *activateOptions) validate() error {
	n := len(o.Certs)
	switch {
	case n < client.MinOfficers || n > client.MaxOfficers:
		return fmt.Errorf("--cert: %d certificates; want %d to %d", n, client.MinOfficers, client.MaxOfficers)
	case o.Quorum < client.MinQuorum || o.Quorum > n:
		return fmt.Errorf("--quorum %d: want %d to %d, the number of certificates", o.Quorum, client.MinQuorum, n)
	case o.SDOut == "":
		return errors.New("--sd-out is required: the security-domain file to write")
	}
	return nil
}

// newActivateCmd builds "hsmpool-load activate".
func newActivateCmd(opts *activateOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "activate --cert FILE --cert FILE --cert FILE [--quorum 2] --sd-out FILE",
		Short: "Activate a fresh pool for a benchmark: download its security domain",
		Long: `activate downloads the pool's security domain, which activates a new pool, encrypted
to the officers' certificates (made with "hsmpool sd officer-keygen"), and writes it to
--sd-out (mode 0600; an existing file is never overwritten). It is here so that a
benchmark can activate the throwaway pool it starts; for a pool that matters, use
"hsmpool sd download" or "az keyvault security-domain download" and follow the
officers' procedure in the README.`,
		Example: `  hsmpool sd officer-keygen --out alice --no-passphrase   # and bob, carol
  hsmpool-load activate --client-file .data/client.json \
      --cert alice.cer --cert bob.cer --cert carol.cer --sd-out sd.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := opts.validate(); err != nil {
				return err
			}
			return activate(cmd, opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.ClientFile, "client-file", opts.ClientFile, "client file of the pool (default $"+client.EnvFile+")")
	fl.StringArrayVar(&opts.Certs, "cert", opts.Certs, "an officer's certificate, PEM or DER (3 to 10 of them)")
	fl.IntVar(&opts.Quorum, "quorum", opts.Quorum, "how many officers it takes to recover the security domain")
	fl.StringVar(&opts.SDOut, "sd-out", opts.SDOut, "write the security-domain file here (required)")
	return cmd
}

func activate(cmd *cobra.Command, opts *activateOptions) error {
	var ders [][]byte
	for _, path := range opts.Certs {
		der, err := readCert(path)
		if err != nil {
			return fmt.Errorf("--cert %s: %w", path, err)
		}
		ders = append(ders, der)
	}
	f, err := loadClientFile(opts.ClientFile)
	if err != nil {
		return err
	}
	// Claim the output first: a downloaded security domain must not be lost to a file that cannot be written.
	out, err := os.OpenFile(opts.SDOut, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("--sd-out: %w", err)
	}
	c, err := client.New(f, nil)
	if err == nil {
		var sd []byte
		if sd, err = c.SecurityDomain().Download(cmd.Context(), ders, opts.Quorum); err == nil {
			_, err = out.Write(sd)
		}
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(opts.SDOut)
		return err
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "hsmpool-load: the pool at %s is activated; its security domain is in %s\n", f.URL, opts.SDOut)
	return nil
}

// readCert returns the DER of the certificate in the file at path, which holds it as PEM or DER.
func readCert(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if blk, _ := pem.Decode(b); blk != nil {
		if blk.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("a PEM %q block, want CERTIFICATE", blk.Type)
		}
		return blk.Bytes, nil
	}
	return b, nil
}
