package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/hsmpool/hsmpool/pkg/client"
)

func newClusterCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Manage the pool's nodes",
		Long: `cluster manages the nodes of the pool (docs/cluster.md, docs/cluster-api.md).

"status" shows every node: its Raft role, term and applied index, how far it lags
behind the leader, and whether its HSM answers. "join-token" makes the single-use
token a new node joins with ("hsmpoold init --join ADDR --join-token-file F", or
"hsmpoold dev --join" for a local test). "remove" takes a node out of the pool; a
node that leaves on its own runs "hsmpoold leave", which also destroys the domain KEK
in its HSM.

They talk to the node that the client file's "url" names, or --url: one client file
reaches every node of the pool.`,
		Example: `  hsmpool cluster status
  hsmpool cluster status --url https://contoso.managedhsm.localhost:8453 -o json
  hsmpool cluster join-token > join.token
  hsmpool cluster remove node-8453`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newClusterStatusCmd(), newClusterJoinTokenCmd(), newClusterRemoveCmd())
	return cmd
}

func newClusterStatusCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show every node of the pool: Raft role, applied index, lag, HSM health",
		Long: `status asks the node it talks to for the status of every node of the pool, which
that node gathers from each over the node API, and prints one line per node:

  NODE      the node ID
  ROLE      Leader, Follower or Candidate ("-" when the node did not answer)
  SUFFRAGE  Voter, Nonvoter or Staging
  RAFT ADDR the node's Raft address; NODE API its node API address
  TERM      its Raft term; APPLIED the last log index applied to its state
  LAG       how many entries it is behind the leader's commit index
  HSM       ok, or "error" when its HSM did not answer a probe

After the table, a line for each node that did not answer, and for each HSM error,
says why. With -o json it prints the REST API's JSON (GET /cluster/status). It needs
securitydomain/download/read (Managed HSM Administrator). A node that did not answer
is not an error: the command exits 0 whenever the node it asked answered.`,
		Example: `  hsmpool cluster status
  hsmpool cluster status --url https://contoso.managedhsm.localhost:8453
  hsmpool cluster status -o json`,
		Args: cobra.NoArgs,
	}
	return defaultPoolOptions().command(cmd, true, nil, func(s *session, _ []string) error {
		st, err := s.client.Cluster().Status(s.ctx)
		if err != nil {
			return err
		}
		return s.print(st, func(w io.Writer) error { return printClusterStatus(w, st) })
	})
}

// printClusterStatus writes the human form of st: who leads, a table of the nodes, and a line per problem.
func printClusterStatus(w io.Writer, st *client.ClusterStatus) error {
	leader := st.LeaderID
	if leader == "" {
		leader = "none known"
	}
	if _, err := fmt.Fprintf(w, "leader: %s (answered by %s)\n", leader, st.AnsweredBy); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tROLE\tSUFFRAGE\tRAFT ADDR\tNODE API\tTERM\tAPPLIED\tLAG\tHSM")
	var notes []string
	for _, n := range st.Nodes {
		nodeAPI := orDash(n.NodeAddr)
		if !n.Reachable {
			fmt.Fprintf(tw, "%s\t-\t%s\t%s\t%s\t-\t-\t-\t-\n", n.NodeID, orDash(n.Suffrage), orDash(n.RaftAddr), nodeAPI)
			notes = append(notes, fmt.Sprintf("%s: unreachable: %s", n.NodeID, orDash(n.Error)))
			continue
		}
		hsm := "ok"
		if !n.HSMOk {
			hsm = "error"
			notes = append(notes, fmt.Sprintf("%s: HSM: %s", n.NodeID, orDash(n.HSMError)))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\n", n.NodeID, orDash(n.Role), orDash(n.Suffrage), orDash(n.RaftAddr),
			nodeAPI, n.Term, n.AppliedIndex, n.Lag, hsm)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, note := range notes {
		if _, err := fmt.Fprintln(w, note); err != nil {
			return err
		}
	}
	return nil
}

// orDash is s, or "-" when it is empty.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newClusterRemoveCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "remove NODE_ID",
		Short: "Remove a node from the pool",
		Long: `remove takes the node NODE_ID out of the pool, through the leader: out of the Raft
configuration and the node map. Every node refuses its certificate from then on, so it
can neither vote nor join again with it. The node is not told: stop it, and destroy
what it holds (its HSM token still has the domain KEK). A node that is still running
and healthy should rather leave on its own with "hsmpoold leave", which also destroys
the KEK in its HSM.

Removing a node lowers the number of voters: with two nodes left, both are needed for
a quorum. "hsmpool cluster status" lists the node IDs. It needs
securitydomain/download/action (Managed HSM Administrator); an unknown node is a 404.
There is no prompt, as for the CLI's other deletions; nothing is printed on success
but a line on stderr.`,
		Example: `  hsmpool cluster status
  hsmpool cluster remove node-8453`,
	}
	validate := func(args []string) error {
		if len(args) != 1 {
			return fmt.Errorf("want one node ID: %s", cmd.UseLine())
		}
		if id := args[0]; id == "" || id == "." || id == ".." || strings.ContainsAny(id, "/\\?#") {
			return fmt.Errorf("node ID %q: want a node ID, such as node-8453", id)
		}
		return nil
	}
	return defaultPoolOptions().command(cmd, false, validate, func(s *session, args []string) error {
		if err := s.client.Cluster().RemoveNode(s.ctx, args[0]); err != nil {
			return err
		}
		fmt.Fprintf(s.errOut, "hsmpool: removed %s from the pool; stop it, and destroy the domain KEK in its HSM token\n", args[0])
		return nil
	})
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
