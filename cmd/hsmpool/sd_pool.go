package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/hsmpool/hsmpool/pkg/client"
	"github.com/hsmpool/hsmpool/securitydomain"
)

// sdDownloadOptions are the flags of "hsmpool sd download".
type sdDownloadOptions struct {
	// Certs are the officers' certificate files, PEM or DER.
	Certs []string
	// Quorum is how many officers' keys open the security domain.
	Quorum int
	// Out is the security-domain file to write.
	Out string

	certs []*x509.Certificate // read by validate
}

// validate checks the flags and reads the certificates, before anything is asked of the pool; errors name the
// flag or the file.
func (o *sdDownloadOptions) validate() error {
	n := len(o.Certs)
	switch {
	case n < securitydomain.MinOfficers || n > securitydomain.MaxOfficers:
		return withHints(fmt.Errorf("--cert: %d given; want %d to %d officers' certificates", n, securitydomain.MinOfficers, securitydomain.MaxOfficers),
			`each officer makes one with "hsmpool sd officer-keygen --out NAME" and sends NAME.cer`)
	case o.Quorum == 0:
		return fmt.Errorf("--quorum is required: how many of the %d officers must take part in a recovery (2 to %d)", n, n)
	case o.Quorum < 2 || o.Quorum > n:
		return fmt.Errorf("--quorum %d: want 2 to %d, the number of certificates", o.Quorum, n)
	case o.Out == "":
		return errors.New("-o is required: the security-domain file to write")
	}
	if err := checkAbsent(o.Out); err != nil {
		return err
	}
	o.certs = nil
	for _, path := range o.Certs {
		c, err := readCertificate(path)
		if err != nil {
			return err
		}
		o.certs = append(o.certs, c)
	}
	if err := securitydomain.CheckOfficerCerts(o.certs); err != nil {
		return fmt.Errorf("--cert: %w", err)
	}
	return nil
}

// newSDDownloadCmd builds "hsmpool sd download".
func newSDDownloadCmd(opts *sdDownloadOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "download --cert CERT --cert CERT --cert CERT... --quorum M -o FILE",
		Short: "Activate a new pool: download its security domain for the officers",
		Long: `download activates a new pool. The pool makes its security domain, splits it among
the officers whose certificates are given (3 to 10, PEM or DER, RSA keys of 2048
bits or more) so that any --quorum M of them can recover it, and returns it as a
security-domain file; download writes it to a new file (mode 0600, never over an
existing one) and prints the thumbprint of each officer's certificate in it.

This is the same request as "az keyvault security-domain download". A pool has one
security domain: keep the file, and the officers their keys, for as long as the
pool's keys matter. Right after, each officer checks their own share, alone:

  hsmpool sd inspect --sd-file FILE --key OFFICER.key`,
		Example: `  hsmpool sd download --cert alice.cer --cert bob.cer --cert carol.cer --quorum 2 -o contoso-sd.json`,
		Args:    cobra.NoArgs,
	}
	f := cmd.Flags()
	f.StringArrayVar(&opts.Certs, "cert", opts.Certs, "an officer's certificate, PEM or DER; one per officer, 3 to 10")
	f.IntVar(&opts.Quorum, "quorum", opts.Quorum, "how many officers must take part in a recovery, 2 to the number of certificates")
	f.StringVarP(&opts.Out, "out", "o", opts.Out, "write the security-domain file to this new file (required)")
	return defaultPoolOptions().command(cmd, false, func([]string) error { return opts.validate() }, func(s *session, _ []string) error {
		return sdDownload(s, opts)
	})
}

// sdDownload does the work of "hsmpool sd download" once the options are valid.
func sdDownload(s *session, opts *sdDownloadOptions) error {
	var ders [][]byte
	for _, c := range opts.certs {
		ders = append(ders, c.Raw)
	}
	file, err := s.client.SecurityDomain().Download(s.ctx, ders, opts.Quorum)
	if err != nil {
		return err
	}
	if err := writeNewFile(opts.Out, file, 0o600); err != nil {
		// The pool has made this security domain; printing it beats losing it.
		_, _ = s.out.Write(append(file, '\n'))
		return withHints(fmt.Errorf("could not write %s (%w); the security-domain file is on stdout instead", opts.Out, err),
			"save it as it is, at once")
	}
	if err := reportSD(s.out, opts, file); err != nil {
		return err
	}
	fmt.Fprintf(s.errOut, "hsmpool: next: each officer checks their own share, alone, with their own key:\n")
	fmt.Fprintf(s.errOut, "hsmpool:   hsmpool sd inspect --sd-file %s --key OFFICER.key\n", opts.Out)
	st, err := waitSD(s.ctx, s.client.SecurityDomain(), time.Second, 2*time.Minute)
	if err != nil {
		return fmt.Errorf("%s is written, but the pool's status is unknown: %w", opts.Out, err)
	}
	return sdStatusError(st)
}

// reportSD prints what the security-domain file holds, and fails if it is not what was asked: not the quorum, or
// not one share for each certificate given.
func reportSD(w io.Writer, opts *sdDownloadOptions, text []byte) error {
	file, err := securitydomain.ParseFile(text)
	if err != nil {
		return fmt.Errorf("%s is written, but it is not a security-domain file: %w", opts.Out, err)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "file:\t%s\nquorum:\t%d of %d officers\n\nSHARE\tTHUMBPRINT\tCERTIFICATE\n", opts.Out, file.Required, len(file.Shares))
	var missing []string
	for i, c := range opts.certs {
		share := file.ShareFor(c)
		if share < 0 {
			missing = append(missing, opts.Certs[i])
			continue
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\n", share+1, securitydomain.Thumbprint(c), opts.Certs[i])
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	switch {
	case len(missing) > 0:
		return fmt.Errorf("%s is written, but it has no share for %v: it is not the security domain that was asked for", opts.Out, missing)
	case len(file.Shares) != len(opts.certs) || file.Required != opts.Quorum:
		return fmt.Errorf("%s is written, but it has %d shares with quorum %d; %d with quorum %d were asked for",
			opts.Out, len(file.Shares), file.Required, len(opts.certs), opts.Quorum)
	}
	return nil
}

// waitSD asks for the download's status every interval until it is no longer in progress, for at most max.
func waitSD(ctx context.Context, sd *client.SecurityDomainClient, interval, max time.Duration) (client.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, max)
	defer cancel()
	for {
		st, err := sd.Status(ctx)
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

// sdStatusError is the error of a status that is not a success: a failure, or still in progress.
func sdStatusError(st client.Status) error {
	switch st.Status {
	case client.StatusSuccess:
		return nil
	case client.StatusInProgress:
		return withHints(fmt.Errorf("the security-domain download is still in progress: %s", st.Details), `"hsmpool sd status" says when it is done`)
	default:
		return fmt.Errorf("the security-domain download: %s: %s", st.Status, st.Details)
	}
}

// newSDStatusCmd builds "hsmpool sd status".
func newSDStatusCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show whether the pool's security-domain download is done",
		Long: `status prints the state of the pool's security-domain download: Success (the pool
is active), InProgress or Failed, with details. It exits 1 unless the state is
Success.`,
		Example: `  hsmpool sd status
  hsmpool sd status -o json`,
		Args: cobra.NoArgs,
	}
	return defaultPoolOptions().command(cmd, true, nil, func(s *session, _ []string) error {
		st, err := s.client.SecurityDomain().Status(s.ctx)
		if err != nil {
			return err
		}
		err = s.print(st, func(w io.Writer) error {
			l := fieldList{{"status", st.Status}}
			l.add("details", st.Details)
			return l.write(w)
		})
		if err != nil {
			return err
		}
		return sdStatusError(st)
	})
}
