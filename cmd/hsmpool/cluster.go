package main

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
)

func newClusterCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Manage the pool's nodes",
		Long: `cluster manages the nodes of the pool (docs/cluster.md). A new node joins with a join
token: "hsmpool cluster join-token" makes one, and "hsmpoold init --join ADDR
--join-token-file F" on the new node uses it.`,
		Example: `  hsmpool cluster join-token > join.token`,
		Args:    cobra.NoArgs,
		RunE:    func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newClusterJoinTokenCmd())
	return cmd
}

func newClusterJoinTokenCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "join-token",
		Short: "Make a single-use token that admits one node, valid for an hour",
		Long: `join-token makes a join token and prints it once on stdout: the pool keeps only its
hash. It admits one node, within an hour, and carries the fingerprint of the pool CA,
which the joining node pins. It needs securitydomain/download/action (Managed HSM
Administrator): a node that joins receives the domain KEK. With -o json it prints the
token and its expiry (Unix seconds).`,
		Example: `  hsmpool cluster join-token > join.token
  hsmpoold init --join 10.0.0.1:8445 --join-token-file join.token ...`,
		Args: cobra.NoArgs,
	}
	return defaultPoolOptions().command(cmd, true, nil, func(s *session, _ []string) error {
		t, err := s.client.Cluster().CreateJoinToken(s.ctx)
		if err != nil {
			return err
		}
		out := struct {
			Token   string `json:"token"`
			Expires int64  `json:"expires"`
		}{t.Token.Reveal(), t.Expires}
		if err := s.print(out, func(w io.Writer) error { _, err := fmt.Fprintln(w, out.Token); return err }); err != nil {
			return err
		}
		fmt.Fprintf(s.errOut, "hsmpool: the join token is shown once and expires at %s\n", t.ExpiresAt().UTC().Format(time.RFC3339))
		return nil
	})
}
