package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
)

// JoinToken is a single-use token that admits one node to the pool (hsmpoold init --join). Token is a secret: it
// prints and marshals as "[REDACTED]"; read it with Token.Reveal.
type JoinToken struct {
	Token   Secret `json:"token"`
	Expires int64  `json:"expires"` // Unix seconds
}

// ClusterStatus is every node of the pool as the node that answered sees it: GET /cluster/status.
type ClusterStatus struct {
	// LeaderID is the node that leads, as the answering node knows it; "" when it knows no leader.
	LeaderID string `json:"leaderId"`
	// AnsweredBy is the node that gathered the status: the one the client's URL names.
	AnsweredBy string `json:"answeredBy"`
	// Nodes are the members of the Raft configuration, sorted by node ID.
	Nodes []NodeStatus `json:"nodes"`
}

// NodeStatus is one node of a [ClusterStatus]: what the Raft configuration and the node map say of it, and what
// the node says of itself when it could be asked (Reachable).
type NodeStatus struct {
	NodeID   string `json:"nodeId"`
	RaftAddr string `json:"raftAddr"`
	// NodeAddr is the node's node API (host:port); URL its REST URL. Either is "" when the node map has no entry.
	NodeAddr string `json:"nodeAddr"`
	URL      string `json:"url"`
	// Suffrage is Voter, Nonvoter or Staging.
	Suffrage string `json:"suffrage"`
	// Role is Leader, Follower, Candidate or Shutdown; "" when the node is unreachable.
	Role string `json:"role"`
	Term uint64 `json:"term"`
	// LastIndex is the node's last Raft log entry, CommitIndex the last it knows committed, AppliedIndex the last
	// applied to its state.
	LastIndex    uint64 `json:"lastIndex"`
	CommitIndex  uint64 `json:"commitIndex"`
	AppliedIndex uint64 `json:"appliedIndex"`
	// Lag is how many entries AppliedIndex is behind the leader's commit index; 0 on the leader and when no leader
	// answered.
	Lag uint64 `json:"lag"`
	// LastContactMs is, on a follower, how many milliseconds ago it last heard from the leader; -1 unknown.
	LastContactMs int64 `json:"lastContactMs"`
	// HSMOk tells whether the node's HSM answered a probe just now; HSMError says why not.
	HSMOk    bool   `json:"hsmOk"`
	HSMError string `json:"hsmError"`
	// Reachable tells whether the node answered for itself; Error says why not.
	Reachable bool   `json:"reachable"`
	Error     string `json:"error"`
	// Version is the node's hsmpoold version.
	Version string `json:"version"`
}

// Leader returns the status of the leading node, or nil when s names none or does not list it.
func (s *ClusterStatus) Leader() *NodeStatus {
	for i := range s.Nodes {
		if s.LeaderID != "" && s.Nodes[i].NodeID == s.LeaderID {
			return &s.Nodes[i]
		}
	}
	return nil
}

// ClusterClient calls the pool's own cluster API (/cluster/...), which no Azure SDK covers. It authorizes requests
// as [PrincipalsClient] does.
type ClusterClient struct{ pc *PrincipalsClient }

// Cluster returns the cluster API's client.
func (c *Client) Cluster() *ClusterClient { return &ClusterClient{pc: c.pr} }

// ClusterClientOptions are optional settings of [NewClusterClient].
type ClusterClientOptions struct {
	azcore.ClientOptions

	// DisableChallengeResourceVerification lets the client ask for a token for a resource that is not the pool's
	// host or a domain above it; see [SecurityDomainClientOptions].
	DisableChallengeResourceVerification bool
}

// NewClusterClient returns a client of the cluster API of the pool node at poolURL, which must be https, for a
// credential of one's own ([Client.Cluster] is the one of a client file).
func NewClusterClient(poolURL string, cred azcore.TokenCredential, opts *ClusterClientOptions) (*ClusterClient, error) {
	if opts == nil {
		opts = &ClusterClientOptions{}
	}
	pc, err := NewPrincipalsClient(poolURL, cred, &PrincipalsClientOptions{ClientOptions: opts.ClientOptions,
		DisableChallengeResourceVerification: opts.DisableChallengeResourceVerification})
	if err != nil {
		return nil, err
	}
	return &ClusterClient{pc: pc}, nil
}

// CreateJoinToken makes a join token, valid for an hour: POST /cluster/join-tokens. The pool keeps only its hash;
// the answer is the only copy. Not retried: a retry would make a second token.
func (c *ClusterClient) CreateJoinToken(ctx context.Context) (*JoinToken, error) {
	const op = "cluster join-token"
	req, err := c.pc.newRequest(withoutRetries(ctx), http.MethodPost, "/cluster/join-tokens", struct{}{})
	if err != nil {
		return nil, err
	}
	var out JoinToken
	if err := c.pc.send(req, op, &out, http.StatusCreated); err != nil {
		return nil, err
	}
	if len(out.Token.Reveal()) == 0 {
		return nil, errors.New(op + ": the answer holds no token")
	}
	return &out, nil
}

// Status returns every node of the pool as the node the client talks to sees it: GET /cluster/status. It needs
// securitydomain/download/read. A node that could not be asked is listed with Reachable false and the error.
func (c *ClusterClient) Status(ctx context.Context) (*ClusterStatus, error) {
	const op = "cluster status"
	req, err := c.pc.newRequest(ctx, http.MethodGet, "/cluster/status", nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	var out ClusterStatus
	if err := c.pc.send(req, op, &out, http.StatusOK); err != nil {
		return nil, err
	}
	if out.AnsweredBy == "" {
		return nil, errors.New(op + ": the answer names no node (no \"answeredBy\")")
	}
	if out.Nodes == nil {
		out.Nodes = []NodeStatus{}
	}
	return &out, nil
}

// RemoveNode removes the node nodeID from the pool, through the leader: DELETE /cluster/nodes/{nodeId}. Every node
// refuses the removed node's certificate from then on; the node keeps its copy of the domain KEK until it is
// destroyed there ("hsmpoold leave" removes a node and destroys it). It needs securitydomain/download/action; an
// unknown node is a 404. Not retried: a retry after a removal whose answer was lost would report the node unknown.
func (c *ClusterClient) RemoveNode(ctx context.Context, nodeID string) error {
	const op = "cluster remove"
	if err := checkPathSegment("node ID", nodeID); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	req, err := c.pc.newRequest(withoutRetries(ctx), http.MethodDelete, "/cluster/nodes/"+url.PathEscape(nodeID), nil)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return c.pc.send(req, op, &struct{}{}, http.StatusNoContent)
}

// ExpiresAt is when the token stops working.
func (t *JoinToken) ExpiresAt() time.Time { return time.Unix(t.Expires, 0) }
