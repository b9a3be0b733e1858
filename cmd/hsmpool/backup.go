package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azadmin/backup"
	"github.com/spf13/cobra"

	"github.com/hsmpool/hsmpool/pkg/client"
)

// Full backup and restore of a pool, through the Azure SDK's azadmin/backup (which sends a
// file:// URI as it sends a container URI), and job status through pkg/client.

// locationOptions are the flags that name a backup location.
type locationOptions struct {
	URI       string
	Token     string
	TokenFile string
	Wait      bool

	token string // read by validate
}

func (o *locationOptions) bind(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&o.URI, "uri", o.URI, "blob container URI (https://ACCOUNT.blob.core.windows.net/CONTAINER) or file:///DIR on the pool's nodes (required)")
	f.StringVar(&o.Token, "token", o.Token, "SAS token of the container (prefer --token-file or $HSMPOOL_SAS_TOKEN: flags show in process lists)")
	f.StringVar(&o.TokenFile, "token-file", o.TokenFile, "read the SAS token from this file")
	f.BoolVar(&o.Wait, "wait", o.Wait, "wait for the job to end, and print its final status")
}

func (o *locationOptions) validate() error {
	if o.URI == "" {
		return errors.New("--uri is required: the blob container or file:// directory")
	}
	if o.Token != "" && o.TokenFile != "" {
		return errors.New("--token and --token-file: give one")
	}
	o.token = o.Token
	if o.TokenFile != "" {
		b, err := os.ReadFile(o.TokenFile)
		if err != nil {
			return fmt.Errorf("--token-file: %w", err)
		}
		o.token = strings.TrimSpace(string(b))
	}
	if o.token == "" {
		o.token = os.Getenv("HSMPOOL_SAS_TOKEN")
	}
	if strings.HasPrefix(o.URI, "https://") && o.token == "" {
		return withHints(errors.New("a blob container needs a SAS token: --token-file FILE, --token or $HSMPOOL_SAS_TOKEN"),
			"the token needs read, write, create and list permissions on the container")
	}
	return nil
}

func (o *locationOptions) sas() *backup.SASTokenParameters {
	p := &backup.SASTokenParameters{StorageResourceURI: to.Ptr(o.URI)}
	if o.token != "" {
		p.Token = to.Ptr(o.token)
	}
	return p
}

func backupClient(s *session) (*backup.Client, error) {
	return backup.NewClient(s.client.URL(), s.client.Credential(), &backup.ClientOptions{
		ClientOptions: azcore.ClientOptions{Transport: s.client.HTTPClient(), Retry: poolRetry}})
}

// jobPoll is how often --wait polls.
var jobPoll = &runtime.PollUntilDoneOptions{Frequency: time.Second}

// startJob finishes a started job: with wait, polls it to its end; otherwise polls it once, for the job ID.
func startJob[T any](s *session, p *runtime.Poller[T], wait bool) error {
	if wait {
		if _, err := p.PollUntilDone(s.ctx, jobPoll); err != nil {
			return err
		}
	}
	resp, err := p.Poll(s.ctx)
	if err != nil {
		return err
	}
	body, err := runtime.Payload(resp)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("job status: HTTP %d", resp.StatusCode)
	}
	var j client.BackupJob
	if err := json.Unmarshal(body, &j); err != nil {
		return fmt.Errorf("job status: %w", err)
	}
	return printJob(s, &j)
}

func printJob(s *session, j *client.BackupJob) error {
	return s.print(j, func(w io.Writer) error {
		fmt.Fprintf(w, "job:      %s\nstatus:   %s\nstarted:  %s\n", j.JobID, j.Status, time.Unix(j.StartTime, 0).UTC().Format(time.RFC3339))
		if j.EndTime != nil {
			fmt.Fprintf(w, "ended:    %s\n", time.Unix(*j.EndTime, 0).UTC().Format(time.RFC3339))
		}
		if j.FolderURI != nil {
			fmt.Fprintf(w, "folder:   %s\n", *j.FolderURI)
		}
		if j.Error != nil {
			fmt.Fprintf(w, "error:    %s: %s\n", j.Error.Code, j.Error.Message)
		}
		return nil
	})
}

func newStatusCmd(kind client.BackupJobKind) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "status JOBID",
		Short: "Print the status of a " + string(kind) + " job",
		Long: `status prints the status of a ` + string(kind) + ` job that "` + string(kind) + ` start" began:
InProgress, Succeeded, Failed (with the error) or Canceled. A node keeps the jobs it ran
in memory: ask the node that started the job, before it restarts.`,
		Example: `  hsmpool ` + string(kind) + ` status 8c0a6a2e3c4b4d5e9f0a1b2c3d4e5f60`,
		Args:    cobra.ExactArgs(1),
	}
	return defaultPoolOptions().command(cmd, true, nil, func(s *session, args []string) error {
		c, err := client.NewBackupStatusClient(s.client.URL(), s.client.Credential(),
			&client.BackupStatusClientOptions{ClientOptions: azcore.ClientOptions{Transport: s.client.HTTPClient(), Retry: poolRetry}})
		if err != nil {
			return err
		}
		j, err := c.Status(s.ctx, kind, args[0])
		if err != nil {
			return err
		}
		return printJob(s, j)
	})
}

// newBackupCmd builds "hsmpool backup".
func newBackupCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "backup",
		Short: "Full backup of a pool to blob storage or a directory",
		Long: `backup makes a full backup of the pool: every key (deleted ones and rotation
policies included), the custom roles and role assignments, and the principals, sealed
under the pool's security domain, into a new folder mhsm-POOL-YYYYMMDDHHMMSS of an Azure
Blob Storage container (with a SAS token) or of a directory on the pool's nodes
(file:///DIR). Only a pool of the same security domain can restore it. One backup or
restore runs at a time. See docs/backup.md.`,
		Example: `  hsmpool backup start --uri https://acct.blob.core.windows.net/backups --token-file sas.txt --wait
  hsmpool backup start --uri file:///var/backups/hsmpool
  hsmpool backup status 8c0a6a2e3c4b4d5e9f0a1b2c3d4e5f60`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	opts := &locationOptions{}
	start := &cobra.Command{
		Use:   "start --uri URI [--token-file FILE] [--wait]",
		Short: "Start a full backup",
		Long: `start starts a full backup and prints the job; with --wait it waits for the end and
prints the folder written.`,
		Example: `  hsmpool backup start --uri https://acct.blob.core.windows.net/backups --token-file sas.txt --wait`,
		Args:    cobra.NoArgs,
	}
	opts.bind(start)
	defaultPoolOptions().command(start, true, func([]string) error { return opts.validate() }, func(s *session, _ []string) error {
		bc, err := backupClient(s)
		if err != nil {
			return err
		}
		p, err := bc.BeginFullBackup(s.ctx, *opts.sas(), nil)
		if err != nil {
			return err
		}
		return startJob(s, p, opts.Wait)
	})
	cmd.AddCommand(start, newStatusCmd(client.BackupJobs))
	return cmd
}

// restoreOptions are the flags of "hsmpool restore start".
type restoreOptions struct {
	locationOptions
	Folder string
	Key    string
}

// newRestoreCmd builds "hsmpool restore".
func newRestoreCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "restore",
		Short: "Restore a pool, or one key, from a full backup",
		Long: `restore restores a full backup that "hsmpool backup" (or this pool's Azure
counterpart) made of a pool of the same security domain. A full restore replaces the
keys, custom roles and role assignments with the backup's and adds its principals;
with --key it restores that one key, every version, under a free name. See
docs/backup.md.`,
		Example: `  hsmpool restore start --uri file:///var/backups/hsmpool --folder mhsm-contoso-20260101120000 --wait
  hsmpool restore start --uri https://acct.blob.core.windows.net/backups --token-file sas.txt \
      --folder mhsm-contoso-20260101120000 --key k1 --wait`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	opts := &restoreOptions{}
	start := &cobra.Command{
		Use:     "start --uri URI --folder FOLDER [--key NAME] [--token-file FILE] [--wait]",
		Short:   "Start a full or selective restore",
		Long:    `start starts a restore and prints the job; with --wait it waits for the end.`,
		Example: `  hsmpool restore start --uri file:///var/backups/hsmpool --folder mhsm-contoso-20260101120000 --wait`,
		Args:    cobra.NoArgs,
	}
	opts.bind(start)
	start.Flags().StringVar(&opts.Folder, "folder", "", "the backup's folder, as the backup job printed it (required)")
	start.Flags().StringVar(&opts.Key, "key", "", "restore only this key (selective restore)")
	validate := func([]string) error {
		if err := opts.validate(); err != nil {
			return err
		}
		if opts.Folder == "" {
			return errors.New("--folder is required: the backup's folder, mhsm-POOL-YYYYMMDDHHMMSS")
		}
		if strings.Contains(opts.Folder, "/") {
			return withHints(fmt.Errorf("--folder %q: want the folder's name, not its URI", opts.Folder),
				"give the container or directory with --uri and the last segment of the folder URI with --folder")
		}
		return nil
	}
	defaultPoolOptions().command(start, true, validate, func(s *session, _ []string) error {
		bc, err := backupClient(s)
		if err != nil {
			return err
		}
		if opts.Key != "" {
			p, err := bc.BeginSelectiveKeyRestore(s.ctx, opts.Key, backup.SelectiveKeyRestoreOperationParameters{Folder: to.Ptr(opts.Folder), SASTokenParameters: opts.sas()}, nil)
			if err != nil {
				return err
			}
			return startJob(s, p, opts.Wait)
		}
		p, err := bc.BeginFullRestore(s.ctx, backup.RestoreOperationParameters{FolderToRestore: to.Ptr(opts.Folder), SASTokenParameters: opts.sas()}, nil)
		if err != nil {
			return err
		}
		return startJob(s, p, opts.Wait)
	})
	cmd.AddCommand(start, newStatusCmd(client.RestoreJobs))
	return cmd
}
