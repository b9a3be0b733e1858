package client

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
)

// PrincipalsAPIVersion is the api-version the principals client sends, as the rest of the pool's data plane.
const PrincipalsAPIVersion = "2025-07-01"

// CredentialType is the kind of a principal's credential.
type CredentialType string

// Values of [CredentialType].
const (
	CredentialSecret      CredentialType = "secret"
	CredentialCertificate CredentialType = "certificate"
)

// Credential is one credential of a principal: a client secret (only its ID and dates are ever shown again) or a
// certificate whose key signs client assertions.
type Credential struct {
	// ID identifies the credential within its principal; [PrincipalsClient.RemoveCredential] takes it.
	ID string `json:"id"`
	// Type is CredentialSecret or CredentialCertificate.
	Type CredentialType `json:"type"`
	// Expires is when the credential stops working, in Unix seconds; 0 means never. A certificate's is its
	// NotAfter.
	Expires int64 `json:"expires,omitempty"`
	// Thumbprint and Subject describe a certificate; "" for a secret.
	Thumbprint string `json:"thumbprint,omitempty"`
	Subject    string `json:"subject,omitempty"`
	// Created is when the credential was added, in Unix seconds.
	Created int64 `json:"created,omitempty"`
}

// Principal is one of the pool's own service principals (not an Entra ID one): what the principals endpoints
// return. Role assignments name it by ObjectID; it signs in with ClientID.
type Principal struct {
	ObjectID    string `json:"objectId"`
	ClientID    string `json:"clientId"`
	DisplayName string `json:"displayName"`
	// Created is when the principal was made, in Unix seconds.
	Created     int64        `json:"created,omitempty"`
	Credentials []Credential `json:"credentials"`

	// SecretID and Secret are set only in the answer that made a secret ([PrincipalsClient.Create] without
	// NoSecret, [PrincipalsClient.AddSecret]): the pool shows a secret once and keeps only its hash. Secret prints
	// and marshals as "[REDACTED]"; read it with Secret.Reveal.
	SecretID string `json:"secretId,omitempty"`
	Secret   Secret `json:"secret,omitzero"`
}

// CreatePrincipalOptions are optional settings of [PrincipalsClient.Create].
type CreatePrincipalOptions struct {
	// NoSecret makes the principal without a client secret, for one that will sign in with a certificate.
	NoSecret bool
	// SecretExpires is when the first secret stops working; the zero time means never.
	SecretExpires time.Time
}

// AddSecretOptions are optional settings of [PrincipalsClient.AddSecret].
type AddSecretOptions struct {
	// Expires is when the secret stops working; the zero time means never.
	Expires time.Time
}

// PrincipalsClientOptions are optional settings of [NewPrincipalsClient].
type PrincipalsClientOptions struct {
	azcore.ClientOptions

	// DisableChallengeResourceVerification lets the client ask for a token for a resource that is not the pool's
	// host or a domain above it; see [SecurityDomainClientOptions].
	DisableChallengeResourceVerification bool
}

// PrincipalsClient calls the pool's own principals API (POST/GET/DELETE /principals...), which manages the
// service principals that sign in to the pool's token endpoint. Azure has no such API (Entra ID manages
// principals there), so no Azure SDK covers it. It authorizes requests as [SecurityDomainClient] does.
//
// Methods that make something (Create, AddSecret, AddCertificate) are not retried: a retry would make a second
// principal or credential.
type PrincipalsClient struct {
	endpoint string
	pl       runtime.Pipeline
}

// NewPrincipalsClient returns a client of the principals API of the pool at poolURL, which must be https.
func NewPrincipalsClient(poolURL string, cred azcore.TokenCredential, opts *PrincipalsClientOptions) (*PrincipalsClient, error) {
	if u, err := url.Parse(poolURL); err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("pool URL %q: want an https URL", poolURL)
	}
	if opts == nil {
		opts = &PrincipalsClientOptions{}
	}
	pl := runtime.NewPipeline("hsmpool-principals", "v1", runtime.PipelineOptions{
		PerRetry: []policy.Policy{newChallengePolicy(cred, opts.DisableChallengeResourceVerification)},
	}, &opts.ClientOptions)
	return &PrincipalsClient{endpoint: strings.TrimSuffix(poolURL, "/"), pl: pl}, nil
}

// Create makes a principal named displayName: POST /principals. Unless opts.NoSecret, the answer holds its first
// client secret, in SecretID and Secret, which the pool never shows again.
func (c *PrincipalsClient) Create(ctx context.Context, displayName string, opts *CreatePrincipalOptions) (*Principal, error) {
	if opts == nil {
		opts = &CreatePrincipalOptions{}
	}
	if strings.TrimSpace(displayName) == "" {
		return nil, errors.New("principal create: the display name is empty")
	}
	if opts.NoSecret && !opts.SecretExpires.IsZero() {
		return nil, errors.New("principal create: an expiry for the secret, but no secret")
	}
	body := struct {
		DisplayName   string `json:"displayName"`
		NoSecret      bool   `json:"noSecret,omitempty"`
		SecretExpires int64  `json:"secretExpires,omitempty"`
	}{DisplayName: displayName, NoSecret: opts.NoSecret, SecretExpires: unixOrZero(opts.SecretExpires)}
	return c.do(withoutRetries(ctx), "principal create", http.MethodPost, "/principals", body, http.StatusCreated)
}

// List returns the pool's principals: GET /principals.
func (c *PrincipalsClient) List(ctx context.Context) ([]Principal, error) {
	req, err := c.newRequest(ctx, http.MethodGet, "/principals", nil)
	if err != nil {
		return nil, fmt.Errorf("principal list: %w", err)
	}
	var out struct {
		Value []Principal `json:"value"`
	}
	if err := c.send(req, "principal list", &out, http.StatusOK); err != nil {
		return nil, err
	}
	return out.Value, nil
}

// Get returns the principal whose object ID or client ID is id: GET /principals/{id}.
func (c *PrincipalsClient) Get(ctx context.Context, id string) (*Principal, error) {
	p, err := principalPath(id)
	if err != nil {
		return nil, fmt.Errorf("principal get: %w", err)
	}
	return c.do(ctx, "principal get", http.MethodGet, p, nil, http.StatusOK)
}

// Delete deletes the principal whose object ID or client ID is id, and returns it: DELETE /principals/{id}. Its
// credentials stop working; its role assignments stay until they are deleted.
func (c *PrincipalsClient) Delete(ctx context.Context, id string) (*Principal, error) {
	p, err := principalPath(id)
	if err != nil {
		return nil, fmt.Errorf("principal delete: %w", err)
	}
	return c.do(ctx, "principal delete", http.MethodDelete, p, nil, http.StatusOK)
}

// AddSecret adds a client secret to the principal id: POST /principals/{id}/secrets. The answer holds the new
// secret, in SecretID and Secret, which the pool never shows again.
func (c *PrincipalsClient) AddSecret(ctx context.Context, id string, opts *AddSecretOptions) (*Principal, error) {
	p, err := principalPath(id)
	if err != nil {
		return nil, fmt.Errorf("principal add secret: %w", err)
	}
	if opts == nil {
		opts = &AddSecretOptions{}
	}
	body := struct {
		Expires int64 `json:"expires,omitempty"`
	}{Expires: unixOrZero(opts.Expires)}
	return c.do(withoutRetries(ctx), "principal add secret", http.MethodPost, p+"/secrets", body, http.StatusCreated)
}

// AddCertificate adds the certificate der (DER) to the principal id, which may then sign in with a client
// assertion signed by the certificate's key: POST /principals/{id}/certificates. The pool checks the certificate.
func (c *PrincipalsClient) AddCertificate(ctx context.Context, id string, der []byte) (*Principal, error) {
	p, err := principalPath(id)
	if err != nil {
		return nil, fmt.Errorf("principal add certificate: %w", err)
	}
	if len(der) == 0 {
		return nil, errors.New("principal add certificate: the certificate is empty")
	}
	body := struct {
		Certificate string `json:"certificate"`
	}{Certificate: base64.StdEncoding.EncodeToString(der)}
	return c.do(withoutRetries(ctx), "principal add certificate", http.MethodPost, p+"/certificates", body, http.StatusCreated)
}

// RemoveCredential removes the credential credentialID (a secret's or a certificate's ID, from
// [Principal.Credentials]) from the principal id: DELETE /principals/{id}/credentials/{credentialId}.
func (c *PrincipalsClient) RemoveCredential(ctx context.Context, id, credentialID string) (*Principal, error) {
	p, err := principalPath(id)
	if err != nil {
		return nil, fmt.Errorf("principal remove credential: %w", err)
	}
	if err := checkPathSegment("credential ID", credentialID); err != nil {
		return nil, fmt.Errorf("principal remove credential: %w", err)
	}
	return c.do(ctx, "principal remove credential", http.MethodDelete, p+"/credentials/"+url.PathEscape(credentialID), nil, http.StatusOK)
}

// do sends a request with body (nil for none) and decodes the principal that the answer holds.
func (c *PrincipalsClient) do(ctx context.Context, op, method, path string, body any, status int) (*Principal, error) {
	req, err := c.newRequest(ctx, method, path, body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	var p Principal
	if err := c.send(req, op, &p, status); err != nil {
		return nil, err
	}
	if p.ObjectID == "" {
		return nil, fmt.Errorf("%s: the answer holds no principal (no \"objectId\")", op)
	}
	return &p, nil
}

// send sends req, checks that the answer has the status, and decodes its body into out. Errors start with op.
func (c *PrincipalsClient) send(req *policy.Request, op string, out any, status int) error {
	resp, err := c.pl.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if !runtime.HasStatusCode(resp, status) {
		return fmt.Errorf("%s: %w", op, newResponseError(resp))
	}
	if err := runtime.UnmarshalAsJSON(resp, out); err != nil {
		return fmt.Errorf("%s: the answer: %w", op, err)
	}
	return nil
}

// newRequest makes a request for path below the pool's URL, with the api-version and, unless body is nil, body
// as JSON.
func (c *PrincipalsClient) newRequest(ctx context.Context, method, path string, body any) (*policy.Request, error) {
	req, err := runtime.NewRequest(ctx, method, c.endpoint+path+"?api-version="+PrincipalsAPIVersion)
	if err != nil {
		return nil, err
	}
	req.Raw().Header.Set("Accept", "application/json")
	if body != nil {
		if err := runtime.MarshalAsJSON(req, body); err != nil {
			return nil, err
		}
	}
	return req, nil
}

// principalPath is the path of the principal id, an object or client ID.
func principalPath(id string) (string, error) {
	if err := checkPathSegment("principal ID", id); err != nil {
		return "", err
	}
	return "/principals/" + url.PathEscape(id), nil
}

// checkPathSegment refuses an ID that is empty or would leave its path segment.
func checkPathSegment(what, id string) error {
	if id == "" || id == "." || id == ".." || strings.ContainsAny(id, "/\\?#") {
		return fmt.Errorf("%s %q: want an ID", what, id)
	}
	return nil
}

// withoutRetries returns ctx with retries turned off, for a request that must not be sent twice.
func withoutRetries(ctx context.Context) context.Context {
	return policy.WithRetryOptions(ctx, policy.RetryOptions{MaxRetries: -1})
}

// unixOrZero is t in Unix seconds, or 0 for the zero time.
func unixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}
