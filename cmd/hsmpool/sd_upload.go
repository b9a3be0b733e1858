package main

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/hsmpool/hsmpool/pkg/client"
)

// exchangeKeyPEM is the certificate in the PEM form that "az keyvault security-domain init-recovery" writes:
// 65-character lines and no final newline (security-domain-format.md §2.3).
func exchangeKeyPEM(der []byte) []byte {
	b64 := base64.StdEncoding.EncodeToString(der)
	var lines []string
	for len(b64) > 65 {
		lines, b64 = append(lines, b64[:65]), b64[65:]
	}
	lines = append(lines, b64)
	return []byte("-----BEGIN CERTIFICATE-----\n" + strings.Join(lines, "\n") + "\n-----END CERTIFICATE-----")
}

// newSDExchangeKeyCmd builds "hsmpool sd exchange-key".
func newSDExchangeKeyCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "exchange-key -o FILE",
		Short: "Save the exchange key of a pool in recovery mode",
		Long: `exchange-key writes the exchange-key certificate of a pool in recovery mode (made with
"hsmpoold init --recovery") to a new file, as "az keyvault security-domain init-recovery"
does. The officers build the restore blob for it offline ("hsmpool sd restore-blob
--exchange-key FILE" or "az keyvault security-domain restore-blob --sd-exchange-key FILE");
its private key never leaves the pool's HSM.`,
		Example: `  hsmpool sd exchange-key -o ex.cer`,
		Args:    cobra.NoArgs,
	}
	cmd.Flags().StringVarP(&out, "out", "o", "", "write the certificate (PEM) to this new file (required)")
	validate := func([]string) error {
		if out == "" {
			return errors.New("-o is required: the exchange-key certificate to write")
		}
		return checkAbsent(out)
	}
	return defaultPoolOptions().command(cmd, false, validate, func(s *session, _ []string) error {
		der, err := s.client.SecurityDomain().TransferKey(s.ctx)
		if err != nil {
			return err
		}
		if err := writeNewFile(out, exchangeKeyPEM(der), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(s.errOut, "hsmpool: next: the officers build the restore blob offline:\n")
		fmt.Fprintf(s.errOut, "hsmpool:   hsmpool sd restore-blob --sd-file SD.json --exchange-key %s --key OFFICER.key... -o blob.json\n", out)
		return nil
	})
}

// sdUploadOptions are the flags of "hsmpool sd upload".
type sdUploadOptions struct {
	// Blob is a restore blob made before (restore-blob); else the blob is made here from restore.
	Blob    string
	restore restoreBlobOptions
}

func (o *sdUploadOptions) validate() error {
	r := &o.restore
	switch {
	case o.Blob != "" && (r.SDFile != "" || len(r.Keys) > 0):
		return errors.New("--blob and --sd-file/--key are exclusive: upload a blob made before, or make it here")
	case o.Blob != "":
		return nil
	case r.SDFile == "":
		return errors.New("--blob or --sd-file is required: the restore blob, or the security-domain file to make it from")
	case len(r.Keys) == 0:
		return errors.New("--key is required with --sd-file: give one for each officer taking part")
	case len(r.PassphraseFiles) > len(r.Keys):
		return fmt.Errorf("%d --passphrase-file for %d --key: the i-th file goes with the i-th key", len(r.PassphraseFiles), len(r.Keys))
	}
	return nil
}

// newSDUploadCmd builds "hsmpool sd upload".
func newSDUploadCmd(opts *sdUploadOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "upload (--blob FILE | --sd-file FILE --key KEY[:CERT]...)",
		Short: "Activate a pool in recovery mode with an existing security domain",
		Long: `upload activates a pool in recovery mode (made with "hsmpoold init --recovery") with the
security domain of another pool, as "az keyvault security-domain upload" does. The pool
then holds that domain's KEK: key backups of the other pool restore into it.

With --blob it uploads a restore blob made before ("hsmpool sd restore-blob", or
"az keyvault security-domain restore-blob"). With --sd-file and a quorum of --key it
fetches the pool's exchange key, makes the blob here, offline but for that request, as
restore-blob does (same --key and --passphrase-file rules), and uploads it. The
officers' keys never leave this machine. It then waits until the pool says Success.`,
		Example: `  hsmpool sd upload --blob blob.json
  hsmpool sd upload --sd-file sd.json --key alice.key --key bob.key`,
		Args: cobra.NoArgs,
	}
	f := cmd.Flags()
	f.StringVar(&opts.Blob, "blob", "", "restore blob to upload")
	f.StringVar(&opts.restore.SDFile, "sd-file", "", "security-domain file to make the restore blob from")
	f.StringArrayVar(&opts.restore.Keys, "key", nil, "an officer's private key, KEY or KEY:CERT; repeat for each officer")
	f.StringArrayVar(&opts.restore.PassphraseFiles, "passphrase-file", nil, "file holding the passphrase of the key at the same position (\"\" for none); repeatable")
	return defaultPoolOptions().command(cmd, false, func([]string) error { return opts.validate() }, func(s *session, _ []string) error {
		return sdUpload(s, opts)
	})
}

func sdUpload(s *session, opts *sdUploadOptions) error {
	sd := s.client.SecurityDomain()
	var blob []byte
	if opts.Blob != "" {
		b, err := os.ReadFile(opts.Blob)
		if err != nil {
			return err
		}
		blob = b
	} else {
		b, err := buildRestoreBlob(&opts.restore, func() (*x509.Certificate, error) {
			der, err := sd.TransferKey(s.ctx)
			if err != nil {
				return nil, err
			}
			cert, err := x509.ParseCertificate(der)
			if err != nil {
				return nil, err
			}
			return cert, checkExchangeCert("the pool's exchange key", cert)
		})
		if err != nil {
			return err
		}
		blob = b
	}
	st, err := sd.Upload(s.ctx, blob)
	if err != nil {
		return err
	}
	if st.Status == client.StatusInProgress {
		if st, err = waitUpload(s.ctx, sd, time.Second, 2*time.Minute); err != nil {
			return fmt.Errorf("the restore blob is uploaded, but the pool's status is unknown: %w", err)
		}
	}
	switch st.Status {
	case client.StatusSuccess:
		fmt.Fprintf(s.out, "the pool is activated with the uploaded security domain\n")
		return nil
	case client.StatusInProgress:
		return withHints(fmt.Errorf("the security-domain upload is still in progress: %s", st.Details), `"hsmpool sd status" says when the pool is activated`)
	default:
		return fmt.Errorf("the security-domain upload: %s: %s", st.Status, st.Details)
	}
}

// waitUpload asks for the upload's status every interval until it is no longer in progress, for at most max.
func waitUpload(ctx context.Context, sd *client.SecurityDomainClient, interval, max time.Duration) (client.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, max)
	defer cancel()
	for {
		st, err := sd.UploadStatus(ctx)
		if err != nil || st.Status != client.StatusInProgress {
			return st, err
		}
		select {
		case <-ctx.Done():
			return st, nil
		case <-time.After(interval):
		}
	}
}
