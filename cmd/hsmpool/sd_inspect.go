package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/hsmpool/hsmpool/internal/secret"
	"github.com/hsmpool/hsmpool/securitydomain"
)

// inspectOptions are the flags of "hsmpool sd inspect".
type inspectOptions struct {
	// SDFile is the security-domain file.
	SDFile string
	// Keys are officers' keys to check, each "KEY" or "KEY:CERT" (see parseKeyArg).
	Keys []string
	// PassphraseFiles hold the passphrases of Keys, by index.
	PassphraseFiles []string
	// Output is the output format: "table" or "json".
	Output string
}

// defaultInspectOptions returns the defaults of "hsmpool sd inspect".
func defaultInspectOptions() *inspectOptions {
	return &inspectOptions{Output: "table"}
}

// validate checks the options; errors name the flag at fault.
func (o *inspectOptions) validate() error {
	switch {
	case o.SDFile == "":
		return errors.New("--sd-file is required: the security-domain file")
	case o.Output != "table" && o.Output != "json":
		return fmt.Errorf("-o %q: want table or json", o.Output)
	case len(o.PassphraseFiles) > len(o.Keys):
		return fmt.Errorf("%d --passphrase-file for %d --key: the i-th file goes with the i-th key", len(o.PassphraseFiles), len(o.Keys))
	}
	for _, k := range o.Keys {
		if _, err := parseKeyArg(k); err != nil {
			return err
		}
	}
	return nil
}

// newInspectCmd builds "hsmpool sd inspect".
func newInspectCmd(opts *inspectOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "inspect --sd-file FILE [--key KEY[:CERT]...] [-o table|json]",
		Short: "Show a security-domain file, and check officers' shares in it",
		Long: `inspect shows what a security-domain file holds without opening it: its version,
its quorum (how many officers' keys open it), the thumbprint of the certificate each
share is encrypted to (numbered from 1 in file order), and the tags of the secrets
it carries.

With --key, inspect also checks each key given: that its certificate matches a share,
that the key belongs to the certificate, and that the share decrypts with the key and
is well formed. An officer runs it right after a download to check their own share
without the other officers. The exit status is 1 if any key fails; each failure is
explained on stderr.

Keys, their certificates and their passphrases are found as for "restore-blob": the
certificate of KEY.key is KEY.cer unless given as --key KEY:CERT, and the passphrase
of the i-th key comes from the i-th --passphrase-file ("" stands for none), else from
$HSMPOOL_SD_PASSPHRASE if it is not empty, else from the terminal.

Output is a table, or JSON with -o json.`,
		Example: `  # What does this file hold?
  hsmpool sd inspect --sd-file sd.json

  # Check my share right after the download ceremony.
  hsmpool sd inspect --sd-file sd.json --key officer1.key

  # The same for a script: JSON, passphrase in a file.
  hsmpool sd inspect --sd-file sd.json --key officer1.key --passphrase-file officer1.pass -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := opts.validate(); err != nil {
				return err
			}
			return inspect(cmd, opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.SDFile, "sd-file", opts.SDFile, "security-domain file (required)")
	f.StringArrayVar(&opts.Keys, "key", opts.Keys, "an officer's private key to check, KEY or KEY:CERT; repeatable")
	f.StringArrayVar(&opts.PassphraseFiles, "passphrase-file", opts.PassphraseFiles, "file holding the passphrase of the key at the same position (\"\" for none); repeatable")
	f.StringVarP(&opts.Output, "output", "o", opts.Output, "output format: table or json")
	return cmd
}

// inspectReport is what inspect prints; its JSON form is the output of -o json.
type inspectReport struct {
	File     string         `json:"file"`
	Version  int            `json:"version"`
	Required int            `json:"required"`
	Shares   []inspectShare `json:"shares"`
	Data     []string       `json:"data"`
	Keys     []inspectKey   `json:"keys,omitempty"`
}

// inspectShare is one share of the file.
type inspectShare struct {
	// Share is the share's position in the file, from 1.
	Share int `json:"share"`
	// Thumbprint is the x5t#S256 of the certificate it is encrypted to.
	Thumbprint string `json:"thumbprint"`
}

// inspectKey is the result of checking one --key.
type inspectKey struct {
	Key         string `json:"key"`
	Certificate string `json:"certificate"`
	// Thumbprint is the certificate's, when it could be read.
	Thumbprint string `json:"thumbprint,omitempty"`
	// Share is the position of the share encrypted to the certificate, from 1; 0 when none is.
	Share int  `json:"share,omitempty"`
	OK    bool `json:"ok"`
	// Error says why the check failed.
	Error string `json:"error,omitempty"`
}

// inspect does the work of "hsmpool sd inspect" once the options are valid.
func inspect(cmd *cobra.Command, opts *inspectOptions) error {
	sdText, err := os.ReadFile(opts.SDFile)
	if err != nil {
		return err
	}
	scope := sdScope{sdFile: opts.SDFile, given: len(opts.Keys)}
	file, err := securitydomain.ParseFile(sdText)
	if err != nil {
		return scope.explain(err)
	}
	scope.file = file

	report := inspectReport{File: opts.SDFile, Version: file.Version, Required: file.Required, Data: []string{}}
	for i, s := range file.Shares {
		report.Shares = append(report.Shares, inspectShare{Share: i + 1, Thumbprint: s.Thumbprint})
	}
	for _, d := range file.Data {
		report.Data = append(report.Data, d.Tag)
	}

	pp := &passphrases{files: opts.PassphraseFiles}
	defer pp.close()
	var failures []error
	for i, a := range opts.Keys {
		arg, _ := parseKeyArg(a) // checked by validate
		result := inspectKey{Key: arg.keyPath, Certificate: arg.certPath}
		if err := checkKey(scope, file, arg, &result, func() (secret.Bytes, error) { return pp.forKey(i, arg.keyPath) }); err != nil {
			result.Error = err.Error()
			failures = append(failures, err)
		} else {
			result.OK = true
		}
		report.Keys = append(report.Keys, result)
	}

	out := cmd.OutOrStdout()
	if opts.Output == "json" {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		err = enc.Encode(report)
	} else {
		err = printInspectTable(out, report)
	}
	if err != nil {
		return err
	}

	if len(failures) == 0 {
		return nil
	}
	for _, f := range failures {
		printError(cmd.ErrOrStderr(), f)
	}
	return fmt.Errorf("%d of %d officer keys failed the check", len(failures), len(opts.Keys))
}

// checkKey checks one officer key against file and fills in result; the error says why it fails.
func checkKey(scope sdScope, file *securitydomain.File, arg keyArg, result *inspectKey, passphrase func() (secret.Bytes, error)) error {
	k, err := readOfficerCert(arg)
	if err != nil {
		return err
	}
	scope = scope.withKey(k)
	result.Thumbprint = securitydomain.Thumbprint(k.cert)
	i := file.ShareFor(k.cert)
	if i < 0 {
		return scope.explain(securitydomain.ErrNoShare)
	}
	result.Share = i + 1
	if err := k.readKey(passphrase); err != nil {
		return err
	}
	if _, err := file.CheckShare(k.sd()); err != nil {
		return scope.explain(err)
	}
	return nil
}

// printInspectTable writes the report as aligned text.
func printInspectTable(w io.Writer, r inspectReport) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "file:\t%s\n", r.File)
	fmt.Fprintf(tw, "version:\t%d\n", r.Version)
	fmt.Fprintf(tw, "quorum:\t%d of %d shares\n", r.Required, len(r.Shares))
	fmt.Fprintf(tw, "data:\t%s\n", strings.Join(r.Data, " "))
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SHARE\tTHUMBPRINT")
	for _, s := range r.Shares {
		fmt.Fprintf(tw, "%d\t%s\n", s.Share, s.Thumbprint)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(r.Keys) == 0 {
		return nil
	}

	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tCERTIFICATE\tSHARE\tCHECK")
	for _, k := range r.Keys {
		share, check := "-", "FAILED"
		if k.Share > 0 {
			share = fmt.Sprint(k.Share)
		}
		if k.OK {
			check = "ok"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", k.Key, k.Certificate, share, check)
	}
	return tw.Flush()
}
