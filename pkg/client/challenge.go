package client

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
)

// Challenge is what a pool's 401 answer asks for, in its WWW-Authenticate header:
//
//	Bearer authorization="https://127.0.0.1:8443/<tenant>", resource="https://managedhsm.localhost:8443"
type Challenge struct {
	// Authorization is the authority URL, https://HOST[:PORT]/TENANT.
	Authorization string
	// Resource is the resource a token must be for; its scope is Resource + "/.default".
	Resource string
	// Scope, when the challenge gives one instead of a resource, is the scope itself.
	Scope string
}

// ParseChallenge parses a WWW-Authenticate value of the Bearer scheme. Parameters are key="value" or key=value,
// separated by commas or spaces; "authorization_uri" stands for "authorization". It fails unless the challenge
// names a resource or a scope.
func ParseChallenge(header string) (Challenge, error) {
	scheme, rest, _ := strings.Cut(strings.TrimSpace(header), " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return Challenge{}, fmt.Errorf("authentication challenge %q: not of the Bearer scheme", header)
	}
	params, err := challengeParams(rest)
	if err != nil {
		return Challenge{}, fmt.Errorf("authentication challenge %q: %w", header, err)
	}
	c := Challenge{Authorization: params["authorization"], Resource: params["resource"], Scope: params["scope"]}
	if c.Authorization == "" {
		c.Authorization = params["authorization_uri"]
	}
	if c.Resource == "" && c.Scope == "" {
		return Challenge{}, fmt.Errorf("authentication challenge %q: names no resource", header)
	}
	return c, nil
}

// challengeParams splits `k1="v1", k2=v2 ...` into a map with lower-case keys.
func challengeParams(s string) (map[string]string, error) {
	params := map[string]string{}
	for {
		s = strings.TrimLeft(s, " \t,")
		if s == "" {
			return params, nil
		}
		key, rest, ok := strings.Cut(s, "=")
		if !ok || key == "" || strings.ContainsAny(key, " \t,\"") {
			return nil, fmt.Errorf("malformed parameter at %q", s)
		}
		var value string
		if strings.HasPrefix(rest, `"`) {
			end := strings.IndexByte(rest[1:], '"')
			if end < 0 {
				return nil, fmt.Errorf("unterminated quoted value of %s", key)
			}
			value, s = rest[1:1+end], rest[2+end:]
		} else {
			end := strings.IndexAny(rest, " \t,")
			if end < 0 {
				end = len(rest)
			}
			value, s = rest[:end], rest[end:]
		}
		params[strings.ToLower(key)] = value
	}
}

// TokenScope returns the scope a token must have: Scope if the challenge gives one, else Resource (without a
// trailing slash) + "/.default".
func (c Challenge) TokenScope() string {
	if c.Scope != "" {
		return c.Scope
	}
	return strings.TrimSuffix(c.Resource, "/") + "/.default"
}

// Tenant returns the first path segment of Authorization, or "" when there is none (the credential's own tenant
// is used then).
func (c Challenge) Tenant() string {
	u, err := url.Parse(c.Authorization)
	if err != nil {
		return ""
	}
	tenant, _, _ := strings.Cut(strings.TrimPrefix(u.Path, "/"), "/")
	return tenant
}

// verify checks that the challenge's resource is the request's host or a domain above it, port included, as the
// Azure SDKs' Key Vault policy does: a token for another resource must never be sent to this host.
func (c Challenge) verify(reqHost string) error {
	r := c.Resource
	if r == "" {
		r = strings.TrimSuffix(c.Scope, "/.default")
	}
	u, err := url.Parse(r)
	if err != nil || u.Host == "" {
		return fmt.Errorf("challenge resource %q is not a URL", r)
	}
	if !strings.EqualFold(reqHost, u.Host) && !strings.HasSuffix(strings.ToLower(reqHost), "."+strings.ToLower(u.Host)) {
		return fmt.Errorf("challenge resource %q does not match the requested host %s", r, reqHost)
	}
	return nil
}

// challengeAuth authorizes requests the way the Azure SDKs' Key Vault policy does: the first request goes without
// a token; the 401 challenge names the resource and the tenant; the request is sent again with a token for them,
// once; later requests carry a token from the start.
type challengeAuth struct {
	// noVerify skips Challenge.verify.
	noVerify bool

	mu sync.Mutex
	// tro is what tokens are asked for, once a challenge was seen; nil before.
	tro *policy.TokenRequestOptions
}

// newChallengePolicy returns the bearer-token policy of a pipeline that talks to a pool.
func newChallengePolicy(cred azcore.TokenCredential, noVerify bool) policy.Policy {
	a := &challengeAuth{noVerify: noVerify}
	return runtime.NewBearerTokenPolicy(cred, nil, &policy.BearerTokenOptions{
		AuthorizationHandler: policy.AuthorizationHandler{OnRequest: a.onRequest, OnChallenge: a.onChallenge},
	})
}

func (a *challengeAuth) onRequest(_ *policy.Request, authorize func(policy.TokenRequestOptions) error) error {
	a.mu.Lock()
	tro := a.tro
	a.mu.Unlock()
	if tro == nil {
		return nil // no challenge seen yet: go without a token and get one
	}
	return authorize(*tro)
}

func (a *challengeAuth) onChallenge(req *policy.Request, res *http.Response, authorize func(policy.TokenRequestOptions) error) error {
	c, err := ParseChallenge(res.Header.Get("WWW-Authenticate"))
	if err != nil {
		return err
	}
	if !a.noVerify {
		if err := c.verify(req.Raw().URL.Host); err != nil {
			return err
		}
	}
	tro := policy.TokenRequestOptions{Scopes: []string{c.TokenScope()}, TenantID: c.Tenant()}
	a.mu.Lock()
	a.tro = &tro
	a.mu.Unlock()
	return authorize(tro)
}
