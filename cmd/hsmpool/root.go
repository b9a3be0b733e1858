package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

// rootOptions holds what every hsmpool subcommand may need.
type rootOptions struct {
	// version is printed by "hsmpool version".
	version string
}

// newRootCmd builds the hsmpool command tree.
func newRootCmd(opts *rootOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "hsmpool",
		Short: "Administer an hsmpool managed HSM pool",
		Long: `hsmpool is the command-line client of an hsmpool pool, a single-tenant managed HSM that
serves the Azure Managed HSM data-plane API. Administrators and applications use it
for keys and random bytes, and to activate a pool; security officers use it for the
security domain, including building a restore blob offline.

Commands that talk to a pool read a client file (--client-file FILE, or
$HSMPOOL_CLIENT_FILE): the pool's URL and CA, and a principal's credentials.
"hsmpoold dev" writes one as DATA_DIR/client.json. --url URL (or $HSMPOOL_URL)
talks to another node of the pool with the same client file.

Data goes to stdout, as a short human form or, with -o json, the REST API's JSON;
diagnostics go to stderr, prefixed with "hsmpool:".`,
		Example: `  # Print the version of this binary.
  hsmpool version

  # A security officer makes a key pair and certificate for the security domain.
  hsmpool sd officer-keygen --out officer1

  # The administrator activates a new pool with three officers' certificates.
  export HSMPOOL_CLIENT_FILE=.data/client.json
  hsmpool sd download --cert o1.cer --cert o2.cer --cert o3.cer --quorum 2 -o sd.json

  # An application signs with a key of the pool.
  hsmpool key create k1 --kty EC-HSM --curve P-256
  hsmpool key sign k1 --alg ES256 --data-file msg.txt`,
		// No Args: cobra's default for a root command reports an unknown subcommand as an error.
		SilenceUsage:  true,
		SilenceErrors: true, // run prints the error with the "hsmpool:" prefix
	}
	cmd.CompletionOptions.DisableDefaultCmd = true
	cmd.AddCommand(
		newVersionCmd(opts),
		newKeyCmd(),
		newRandomCmd(),
		newSDCmd(),
		newPrincipalCmd(),
		newRoleCmd(),
		newAuditCmd(),
		newBackupCmd(),
		newRestoreCmd(),
		newClusterCmd(),
	)
	return cmd
}

// newVersionCmd builds "hsmpool version".
func newVersionCmd(opts *rootOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of hsmpool",
		Long: `version prints the version of this hsmpool binary on stdout: the output of
"git describe --always --dirty" when it was built with make, "dev" otherwise.`,
		Example: `  hsmpool version`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), opts.version)
			return err
		},
	}
}
