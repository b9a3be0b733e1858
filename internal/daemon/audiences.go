package daemon

import (
	"context"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/hsmpool/hsmpool/internal/auth"
	"github.com/hsmpool/hsmpool/internal/core"
	"github.com/hsmpool/hsmpool/internal/state"
	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

// poolTokens validates access tokens minted by any node of the pool, for any node
// (docs/cluster.md, "Tokens across nodes"):
//
//   - Audiences: each node's resource is https://managedhsm.<suffix>:<its port>, so this
//     node's resource and that of every node in the node map are accepted. A client that
//     follows each node's challenge gets a token per node anyway; one that reuses its token,
//     or a load balancer in front of the nodes, needs this. Issuers issue tokens for any
//     resource already.
//   - Issuers: each node's issuer is <its authority_host>/<tenant>/v2.0 (MSAL requires the
//     discovery document's issuer to match the authority it was given, so a node cannot
//     take another's name). All nodes sign with the same token-signing key, so a token whose
//     issuer is another node's (from the node map) is validated by an Issuer for that node's
//     authority with the same key: node 1's client.json then works against every node, and a
//     client may get its token from any node.
type poolTokens struct {
	own    *auth.Issuer
	st     *state.State
	newFor func(authority string) (*auth.Issuer, error) // an Issuer for another node's authority host
	self   string                                       // this node's authority host

	mu    sync.Mutex
	view  *nodesView              // derived from the pool record it names
	peers map[string]*auth.Issuer // by authority host
}

// nodesView is what Validate needs of the node map, derived once per pool record (the state
// replaces the record on every change), not on every request: the extra resources to accept
// and the other nodes' authority hosts.
type nodesView struct {
	pool        *pb.PoolRecord
	resources   []string
	authorities []string
}

func (p *poolTokens) nodes() *nodesView {
	pool := p.st.Pool()
	p.mu.Lock()
	defer p.mu.Unlock()
	if v := p.view; v != nil && v.pool == pool {
		return v
	}
	v := &nodesView{pool: pool}
	for _, n := range pool.GetNodes() {
		if r := resourceOf(n.Url); r != "" && !slices.Contains(v.resources, r) {
			v.resources = append(v.resources, r)
		}
		if a := n.AuthorityHost; a != "" && a != p.self && !slices.Contains(v.authorities, a) {
			v.authorities = append(v.authorities, a)
		}
	}
	p.view = v
	return v
}

func (p *poolTokens) Validate(ctx context.Context, token string, audiences ...string) (auth.Claims, error) {
	v := p.nodes()
	accept := audiences
	for _, r := range v.resources {
		if !slices.Contains(accept, r) {
			if len(accept) == len(audiences) {
				accept = slices.Clone(audiences)
			}
			accept = append(accept, r)
		}
	}
	return p.issuerOf(token, v.authorities).Validate(ctx, token, accept...)
}

// issuerOf picks the Issuer whose rules apply to token by its unverified "iss": another
// pool node's when it names one, else this node's (which also knows the external issuers).
// The choice only selects the expected issuer; the signature is always checked. With no
// other authority in the pool (a single node, or nodes sharing one) the token is not read.
func (p *poolTokens) issuerOf(token string, authorities []string) *auth.Issuer {
	if len(authorities) == 0 || p.newFor == nil {
		return p.own
	}
	iss := unverifiedIss(token)
	for _, a := range authorities {
		if iss == "" || !strings.HasPrefix(iss, a+"/") {
			continue
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		if i, ok := p.peers[a]; ok {
			return i
		}
		i, err := p.newFor(a)
		if err != nil {
			return p.own
		}
		if p.peers == nil {
			p.peers = map[string]*auth.Issuer{}
		}
		p.peers[a] = i
		return i
	}
	return p.own
}

// unverifiedIss reads the "iss" claim of a compact JWS without verifying anything (go-jose
// parses it; the Issuer verifies it afterwards).
func unverifiedIss(token string) string {
	if len(token) > 16<<10 {
		return ""
	}
	t, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return ""
	}
	var c jwt.Claims
	if t.UnsafeClaimsWithoutVerification(&c) != nil {
		return ""
	}
	return c.Issuer
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

var _ core.TokenValidator = (*poolTokens)(nil)
