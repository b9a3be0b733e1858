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
serves the Azure Managed HSM data-plane API. Administrators use it for keys, role
assignments, principals, backups and the cluster; security officers use it for the
security domain, including building a restore blob offline.

Data goes to stdout; diagnostics go to stderr, prefixed with "hsmpool:".`,
		Example: `  # Print the version of this binary.
  hsmpool version

  # A security officer makes a key pair and certificate for the security domain.
  hsmpool sd officer-keygen --out officer1`,
		// No Args: cobra's default for a root command reports an unknown subcommand as an error.
		SilenceUsage:  true,
		SilenceErrors: true, // run prints the error with the "hsmpool:" prefix
	}
	cmd.CompletionOptions.DisableDefaultCmd = true
	cmd.AddCommand(
		newVersionCmd(opts),
		newSDCmd(),
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
