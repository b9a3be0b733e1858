package client

import (
	"context"
	"errors"
	"net/http"
	"time"
)

// JoinToken is a single-use token that admits one node to the pool (hsmpoold init --join). Token is a secret: it
// prints and marshals as "[REDACTED]"; read it with Token.Reveal.
type JoinToken struct {
	Token   Secret `json:"token"`
	Expires int64  `json:"expires"` // Unix seconds
}

// ClusterClient calls the pool's own cluster API (POST /cluster/join-tokens), which no Azure SDK covers. It
// authorizes requests as [PrincipalsClient] does.
type ClusterClient struct{ pc *PrincipalsClient }

// Cluster returns the cluster API's client.
func (c *Client) Cluster() *ClusterClient { return &ClusterClient{pc: c.pr} }

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

// ExpiresAt is when the token stops working.
func (t *JoinToken) ExpiresAt() time.Time { return time.Unix(t.Expires, 0) }
