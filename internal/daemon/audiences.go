package daemon

import (
	"context"
	"net/url"
	"slices"
	"strings"

	"github.com/hsmpool/hsmpool/internal/auth"
	"github.com/hsmpool/hsmpool/internal/core"
	"github.com/hsmpool/hsmpool/internal/state"
)

// poolAudiences validates access tokens for this node's resource and for the resource of
// every node in the node map: each node's resource is https://managedhsm.<suffix>:<its port>,
// so without this a token a client got for one node would be refused by the next (a client
// that follows each node's challenge gets a token per node anyway; one that reuses its token,
// or a load balancer in front of the nodes, needs this). The issuer already issues tokens for
// any resource. docs/cluster.md, "Tokens across nodes".
type poolAudiences struct {
	tokens core.TokenValidator
	st     *state.State
	own    []string
}

func (p poolAudiences) Validate(ctx context.Context, token string, audiences ...string) (auth.Claims, error) {
	accept := slices.Concat(audiences, p.own)
	for _, n := range p.st.Nodes() {
		if r := resourceOf(n.Url); r != "" && !slices.Contains(accept, r) {
			accept = append(accept, r)
		}
	}
	return p.tokens.Validate(ctx, token, accept...)
}

// resourceOf is the token resource of a node's URL: https://<name>.managedhsm.<suffix>[:port]
// gives https://managedhsm.<suffix>[:port] (Config.Resource of that node); "" for anything else.
func resourceOf(nodeURL string) string {
	u, err := url.Parse(nodeURL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return ""
	}
	_, rest, ok := strings.Cut(u.Host, ".")
	if !ok || !strings.HasPrefix(rest, "managedhsm.") {
		return ""
	}
	return "https://" + rest
}
