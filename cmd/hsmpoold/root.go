package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

// rootOptions holds what every hsmpoold subcommand may need.
type rootOptions struct {
	// version is printed by "hsmpoold version".
	version string
}

// newRootCmd builds the hsmpoold command tree.
func newRootCmd(opts *rootOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "hsmpoold",
		Short: "Run a node of an hsmpool managed HSM pool",
		Long: `hsmpoold runs one node of an hsmpool pool: a single-tenant managed HSM that serves the
Azure Managed HSM data-plane API from PKCS#11 slots. Nodes form a cluster of 1, 3 or 5
kept consistent by Raft; every key leaves an HSM only wrapped under the pool's security domain.

"hsmpoold dev" is the embedded default: a single-node pool backed by SoftHSM2 in a local
data directory, for development. It is what "make run" starts.`,
		Example: `  # Print the version of this binary.
  hsmpoold version

  # Start the embedded default pool in ./.data.
  hsmpoold dev --data-dir .data`,
		// No Args: cobra's default for a root command reports an unknown subcommand as an error.
		SilenceUsage:  true,
		SilenceErrors: true, // run prints the error with the "hsmpoold:" prefix
	}
	cmd.CompletionOptions.DisableDefaultCmd = true
	cmd.AddCommand(
		newVersionCmd(opts),
		newDevCmd(defaultDevOptions()),
		newInitCmd(),
		newServeCmd(),
		newTrustJoinKeyCmd(),
		newLeaveCmd(),
	)
	return cmd
}

// newVersionCmd builds "hsmpoold version".
func newVersionCmd(opts *rootOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of hsmpoold",
		Long: `version prints the version of this hsmpoold binary on stdout: the output of
"git describe --always --dirty" when it was built with make, "dev" otherwise.`,
		Example: `  hsmpoold version`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), opts.version)
			return err
		},
	}
}
