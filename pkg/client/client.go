package client

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azadmin/rbac"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
)

// Options are optional settings of [New].
type Options struct {
	// Retry is how every client built retries failed requests; the zero value is the Azure SDK's default.
	Retry policy.RetryOptions
}

// Client holds the clients of one pool, built from a client file by [New].
type Client struct {
	url  string
	http *http.Client
	cred *azidentity.ClientSecretCredential
	keys *azkeys.Client
	sd   *SecurityDomainClient
	pr   *PrincipalsClient
	rbac *rbac.Client
}

// New builds the clients of the pool that f describes: the HTTP client ([NewHTTPClient] with f.CAFile), the
// credential, the keys client, the security-domain client, the principals client and the RBAC client, all on the
// same transport.
func New(f *File, opts *Options) (*Client, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	if opts == nil {
		opts = &Options{}
	}
	hc, err := NewHTTPClient(f.CAFile)
	if err != nil {
		return nil, err
	}
	base := azcore.ClientOptions{Transport: hc, Retry: opts.Retry}

	credOpts := &azidentity.ClientSecretCredentialOptions{ClientOptions: base, DisableInstanceDiscovery: true}
	credOpts.Cloud = cloud.Configuration{ActiveDirectoryAuthorityHost: strings.TrimSuffix(f.AuthorityHost, "/") + "/"}
	cred, err := azidentity.NewClientSecretCredential(f.TenantID, f.ClientID, f.ClientSecret.Reveal(), credOpts)
	if err != nil {
		return nil, fmt.Errorf("make the credential: %w", err)
	}
	keys, err := azkeys.NewClient(f.URL, cred, &azkeys.ClientOptions{ClientOptions: base})
	if err != nil {
		return nil, fmt.Errorf("make the keys client: %w", err)
	}
	sd, err := NewSecurityDomainClient(f.URL, cred, &SecurityDomainClientOptions{ClientOptions: base})
	if err != nil {
		return nil, err
	}
	pr, err := NewPrincipalsClient(f.URL, cred, &PrincipalsClientOptions{ClientOptions: base})
	if err != nil {
		return nil, err
	}
	rc, err := rbac.NewClient(f.URL, cred, &rbac.ClientOptions{ClientOptions: base})
	if err != nil {
		return nil, fmt.Errorf("make the RBAC client: %w", err)
	}
	return &Client{url: f.URL, http: hc, cred: cred, keys: keys, sd: sd, pr: pr, rbac: rc}, nil
}

// URL returns the pool's data-plane URL.
func (c *Client) URL() string { return c.url }

// HTTPClient returns the HTTP client that every client of c uses; give it, as the Transport of
// azcore.ClientOptions, to other Azure SDK clients of the pool (azadmin...).
func (c *Client) HTTPClient() *http.Client { return c.http }

// Credential returns the credential of the client file's principal.
func (c *Client) Credential() *azidentity.ClientSecretCredential { return c.cred }

// Keys returns the client of the keys API.
func (c *Client) Keys() *azkeys.Client { return c.keys }

// SecurityDomain returns the client of the security-domain endpoints.
func (c *Client) SecurityDomain() *SecurityDomainClient { return c.sd }

// Principals returns the client of the pool's principals API.
func (c *Client) Principals() *PrincipalsClient { return c.pr }

// RBAC returns the client of the local RBAC API (role definitions and assignments), the Azure SDK's azadmin/rbac.
func (c *Client) RBAC() *rbac.Client { return c.rbac }
