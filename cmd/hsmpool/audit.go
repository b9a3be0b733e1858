package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/hsmpool/hsmpool/internal/audit"
)

// newAuditCmd builds "hsmpool audit", the commands for the pool's audit log.
func newAuditCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Check the pool's audit log",
		Long: `audit holds the commands for the pool's audit log: the file DATA_DIR/audit/audit.log,
where hsmpoold writes one JSON line per request (who, what, on which key, how it ended),
each line carrying the hash of the one before, so that an edited or removed line shows.
See docs/audit.md for the format and what the chain proves.

These commands read files and never talk to a pool.`,
		Example: `  # Check a node's audit log and note its last hash somewhere safe.
  hsmpool audit verify /var/lib/hsmpool/audit/audit.log`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cmd.Help()
		},
	}
	cmd.AddCommand(newAuditVerifyCmd(&auditVerifyOptions{Output: outputTable}))
	return cmd
}

// auditVerifyOptions are the flags of "hsmpool audit verify".
type auditVerifyOptions struct {
	// Output is outputTable or outputJSON.
	Output string
}

// validate checks the options; errors name the flag at fault.
func (o *auditVerifyOptions) validate() error {
	if o.Output != outputTable && o.Output != outputJSON {
		return fmt.Errorf("-o %q: want table or json", o.Output)
	}
	return nil
}

// newAuditVerifyCmd builds "hsmpool audit verify".
func newAuditVerifyCmd(opts *auditVerifyOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "verify FILE... [-o table|json]",
		Short: "Check the hash chain of audit log files",
		Long: `verify checks that each line of the audit files is a line hsmpoold wrote, that the
lines are numbered without a gap (seq), and that each carries the hash of the line
before it (prev). It prints how many lines there are, their first and last times,
and the hash of the last line; the output is a table, or JSON with -o json.

Give rotated files together, oldest first, then the current file (their names sort
in that order: audit.log.TIME..., audit.log); verify also checks that each continues
the one before it. A first file that does not start at seq 1 continues a file not
given; verify says so on stderr.

If a file fails, verify prints nothing on stdout, names the file and the line at
fault on stderr, and exits with status 1. An edit of line N shows on line N+1,
whose prev no longer matches; removed lines as a gap in seq.

A chain cannot show an edit of its last line, or lines removed from its end. Keep
the last hash that verify prints somewhere the pool's hosts cannot write; a later
verify whose lines still lead through that hash proves the lines before it intact.`,
		Example: `  # Check the current audit log.
  hsmpool audit verify /var/lib/hsmpool/audit/audit.log

  # Check the rotated files and the current one as one chain, for a script.
  hsmpool audit verify /var/lib/hsmpool/audit/audit.log.* /var/lib/hsmpool/audit/audit.log -o json`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := opts.validate(); err != nil {
				return err
			}
			return auditVerify(cmd, opts, args)
		},
	}
	cmd.Flags().StringVarP(&opts.Output, "output", "o", opts.Output, "output format: table or json")
	return cmd
}

// auditReport is what "audit verify" prints; its JSON form is the output of -o json.
type auditReport struct {
	// Files are the files checked, in chain order.
	Files []auditFile `json:"files"`
	auditSpan
}

// auditFile is one file of the report.
type auditFile struct {
	File string `json:"file"`
	auditSpan
}

// auditSpan is what a run of lines, in a file or in all of them, amounts to.
type auditSpan struct {
	Lines     int64      `json:"lines"`
	FirstSeq  uint64     `json:"firstSeq,omitempty"`
	LastSeq   uint64     `json:"lastSeq,omitempty"`
	FirstTime *time.Time `json:"firstTime,omitempty"`
	LastTime  *time.Time `json:"lastTime,omitempty"`
	// FirstPrev is 64 zeros when the lines start a chain.
	FirstPrev string `json:"firstPrev,omitempty"`
	// LastHash is the anchor to keep elsewhere.
	LastHash string `json:"lastHash,omitempty"`
}

func spanOf(s audit.Summary) auditSpan {
	if s.Lines == 0 {
		return auditSpan{}
	}
	return auditSpan{s.Lines, s.FirstSeq, s.LastSeq, &s.FirstTime, &s.LastTime, s.FirstPrev, s.LastHash}
}

// auditVerify does the work of "hsmpool audit verify" once the options are valid.
func auditVerify(cmd *cobra.Command, opts *auditVerifyOptions, files []string) error {
	var (
		report   auditReport
		prev     audit.Summary
		prevFile string
	)
	for _, name := range files {
		s, err := verifyAuditFile(name)
		if err != nil {
			return err
		}
		if s.Lines == 0 {
			report.Files = append(report.Files, auditFile{File: name})
			continue
		}
		if prev.Lines > 0 {
			if err := s.Follows(prev); err != nil {
				return withHints(fmt.Errorf("audit: %s does not continue %s: %w", name, prevFile, err),
					"give the files in chain order, oldest first, with none missing between them")
			}
		} else {
			report.FirstSeq, report.FirstTime, report.FirstPrev = s.FirstSeq, &s.FirstTime, s.FirstPrev
			if s.FirstSeq > 1 {
				fmt.Fprintf(cmd.ErrOrStderr(), "hsmpool: audit: %s starts at seq %d: it continues a file not given, whose last hash should be its first prev %s\n", name, s.FirstSeq, s.FirstPrev)
			}
		}
		report.Files = append(report.Files, auditFile{File: name, auditSpan: spanOf(s)})
		report.Lines += s.Lines
		report.LastSeq, report.LastTime, report.LastHash = s.LastSeq, &s.LastTime, s.LastHash
		prev, prevFile = s, name
	}

	out := cmd.OutOrStdout()
	if opts.Output == outputJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(report)
	}
	return printAuditTable(out, report)
}

// verifyAuditFile verifies one file; its errors name the file, and the line at fault.
func verifyAuditFile(name string) (audit.Summary, error) {
	f, err := os.Open(name)
	if err != nil {
		return audit.Summary{}, err
	}
	defer f.Close()
	s, err := audit.Verify(f)
	var ve *audit.VerifyError
	switch {
	case errors.As(err, &ve) && ve.Line > 1:
		return s, withHints(fmt.Errorf("audit: %s: %w", name, err),
			fmt.Sprintf("lines 1 to %d verify; keep the file as it is for the investigation", ve.Line-1))
	case err != nil:
		return s, fmt.Errorf("audit: %s: %w", name, err)
	}
	return s, nil
}

// printAuditTable writes the report as aligned text: the whole chain, then a line per file if there are several.
func printAuditTable(w io.Writer, r auditReport) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "lines:\t%d\n", r.Lines)
	if r.Lines > 0 {
		start := ""
		if r.FirstPrev == strings.Repeat("0", 64) {
			start = " (the start of the chain)"
		}
		fmt.Fprintf(tw, "seq:\t%d to %d\n", r.FirstSeq, r.LastSeq)
		fmt.Fprintf(tw, "first time:\t%s\n", r.FirstTime.Format(time.RFC3339Nano))
		fmt.Fprintf(tw, "last time:\t%s\n", r.LastTime.Format(time.RFC3339Nano))
		fmt.Fprintf(tw, "first prev:\t%s%s\n", r.FirstPrev, start)
		fmt.Fprintf(tw, "last hash:\t%s\n", r.LastHash)
	}
	if err := tw.Flush(); err != nil || len(r.Files) < 2 {
		return err
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FILE\tLINES\tSEQ")
	for _, f := range r.Files {
		seq := "-"
		if f.Lines > 0 {
			seq = fmt.Sprintf("%d to %d", f.FirstSeq, f.LastSeq)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\n", f.File, f.Lines, seq)
	}
	return tw.Flush()
}
