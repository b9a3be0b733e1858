package client

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
)

// SecurityDomainAPIVersion is the api-version the security-domain client sends, as the Azure CLI's track-2
// security-domain client does.
const SecurityDomainAPIVersion = "7.5"

// Bounds of a security-domain download, as Azure Managed HSM has them.
const (
	MinOfficers = 3
	MaxOfficers = 10
	MinQuorum   = 2
)

// Values of [Status.Status].
const (
	StatusSuccess    = "Success"
	StatusInProgress = "InProgress"
	StatusFailed     = "Failed"
)

// Status is the state of a security-domain operation.
type Status struct {
	// Status is StatusSuccess, StatusInProgress or StatusFailed.
	Status string `json:"status"`
	// Details says more, in words; on failure, why.
	Details string `json:"status_details"`
}

// SecurityDomainClientOptions are optional settings of [NewSecurityDomainClient].
type SecurityDomainClientOptions struct {
	azcore.ClientOptions

	// DisableChallengeResourceVerification lets the client ask for a token for a resource that is not the pool's
	// host or a domain above it, as for a pool reached by IP address; see azkeys.ClientOptions.
	DisableChallengeResourceVerification bool
}

// SecurityDomainClient calls the security-domain endpoints of a pool (azure-mhsm-api.md §5.1), which no Azure SDK
// for Go covers. It authorizes requests as the Azure SDKs' Key Vault clients do: it answers the pool's 401
// challenge with a token for the resource the challenge names, and caches it.
type SecurityDomainClient struct {
	endpoint string
	pl       runtime.Pipeline
}

// NewSecurityDomainClient returns a client of the pool at poolURL, which must be https.
func NewSecurityDomainClient(poolURL string, cred azcore.TokenCredential, opts *SecurityDomainClientOptions) (*SecurityDomainClient, error) {
	if u, err := url.Parse(poolURL); err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("pool URL %q: want an https URL", poolURL)
	}
	if opts == nil {
		opts = &SecurityDomainClientOptions{}
	}
	pl := runtime.NewPipeline("hsmpool-securitydomain", "v1", runtime.PipelineOptions{
		PerRetry: []policy.Policy{newChallengePolicy(cred, opts.DisableChallengeResourceVerification)},
	}, &opts.ClientOptions)
	return &SecurityDomainClient{endpoint: strings.TrimSuffix(poolURL, "/"), pl: pl}, nil
}

// certificateJWK is one officer's certificate as the download request carries it, in the Azure CLI's field order
// (security-domain-format.md §2.1).
type certificateJWK struct {
	Kty     string   `json:"kty"`
	KeyOps  []string `json:"key_ops"`
	N       string   `json:"n"`
	E       string   `json:"e"`
	X5c     []string `json:"x5c"`
	X5t     string   `json:"x5t"`
	X5tS256 string   `json:"x5t#S256"`
	Alg     string   `json:"alg"`
}

// downloadRequest is the body of POST /securitydomain/download.
type downloadRequest struct {
	Certificates []certificateJWK `json:"certificates"`
	Required     int              `json:"required"`
}

// newCertificateJWK describes the certificate der, which must hold an RSA key.
func newCertificateJWK(der []byte) (certificateJWK, error) {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return certificateJWK{}, err
	}
	pub, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok {
		return certificateJWK{}, fmt.Errorf("its key is %T; officers' keys are RSA", cert.PublicKey)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	s1, s256 := sha1.Sum(der), sha256.Sum256(der)
	return certificateJWK{
		Kty:     "RSA",
		KeyOps:  []string{"verify", "encrypt", "wrapKey"},
		N:       b64(pub.N.Bytes()),
		E:       b64(big.NewInt(int64(pub.E)).Bytes()),
		X5c:     []string{base64.StdEncoding.EncodeToString(der)},
		X5t:     b64(s1[:]),
		X5tS256: b64(s256[:]),
		Alg:     "RSA-OAEP-256",
	}, nil
}

// Download downloads the pool's security domain, which activates a new pool: the pool splits it into shares with
// quorum M of the N officers' certificates certsDER (DER, RSA keys; 3 to 10 of them, all different) and returns
// the security-domain file, the JSON document that "az keyvault security-domain download" writes. The request is
// not retried: a second download would make another file.
func (c *SecurityDomainClient) Download(ctx context.Context, certsDER [][]byte, quorum int) ([]byte, error) {
	n := len(certsDER)
	switch {
	case n < MinOfficers || n > MaxOfficers:
		return nil, fmt.Errorf("security-domain download: %d certificates; want %d to %d", n, MinOfficers, MaxOfficers)
	case quorum < MinQuorum || quorum > n:
		return nil, fmt.Errorf("security-domain download: quorum %d; want %d to %d, the number of certificates", quorum, MinQuorum, n)
	}
	body := downloadRequest{Required: quorum}
	for i, der := range certsDER {
		for j := range i {
			if bytes.Equal(der, certsDER[j]) {
				return nil, fmt.Errorf("security-domain download: certificates %d and %d are the same", j+1, i+1)
			}
		}
		jwk, err := newCertificateJWK(der)
		if err != nil {
			return nil, fmt.Errorf("security-domain download: certificate %d: %w", i+1, err)
		}
		body.Certificates = append(body.Certificates, jwk)
	}

	ctx = policy.WithRetryOptions(ctx, policy.RetryOptions{MaxRetries: -1})
	req, err := c.newRequest(ctx, http.MethodPost, "/securitydomain/download")
	if err != nil {
		return nil, err
	}
	if err := runtime.MarshalAsJSON(req, body); err != nil {
		return nil, err
	}
	resp, err := c.pl.Do(req)
	if err != nil {
		return nil, fmt.Errorf("security-domain download: %w", err)
	}
	// Azure answers 202; the Azure CLI 2.45 accepts 200 too. Either way the file is in the body, and refusing it
	// would lose a security domain that the pool has made.
	if !runtime.HasStatusCode(resp, http.StatusAccepted, http.StatusOK) {
		return nil, fmt.Errorf("security-domain download: %w", newResponseError(resp))
	}
	var out struct {
		Value string `json:"value"`
	}
	if err := runtime.UnmarshalAsJSON(resp, &out); err != nil {
		return nil, fmt.Errorf("security-domain download: the answer: %w", err)
	}
	if out.Value == "" {
		return nil, errors.New("security-domain download: the answer holds no security domain (no \"value\")")
	}
	return []byte(out.Value), nil
}

// Status returns the state of the security-domain download: GET /securitydomain/download/pending.
func (c *SecurityDomainClient) Status(ctx context.Context) (Status, error) {
	req, err := c.newRequest(ctx, http.MethodGet, "/securitydomain/download/pending")
	if err != nil {
		return Status{}, err
	}
	resp, err := c.pl.Do(req)
	if err != nil {
		return Status{}, fmt.Errorf("security-domain status: %w", err)
	}
	if !runtime.HasStatusCode(resp, http.StatusOK) {
		return Status{}, fmt.Errorf("security-domain status: %w", newResponseError(resp))
	}
	var s Status
	if err := runtime.UnmarshalAsJSON(resp, &s); err != nil {
		return Status{}, fmt.Errorf("security-domain status: the answer: %w", err)
	}
	return s, nil
}

// TransferKey returns the exchange (transfer) key of a pool in recovery mode: the DER certificate of the RSA key that
// restore blobs are encrypted to, as "az keyvault security-domain init-recovery" gets it (GET /securitydomain/upload).
func (c *SecurityDomainClient) TransferKey(ctx context.Context) ([]byte, error) {
	req, err := c.newRequest(ctx, http.MethodGet, "/securitydomain/upload")
	if err != nil {
		return nil, err
	}
	resp, err := c.pl.Do(req)
	if err != nil {
		return nil, fmt.Errorf("security-domain transfer key: %w", err)
	}
	if !runtime.HasStatusCode(resp, http.StatusOK) {
		return nil, fmt.Errorf("security-domain transfer key: %w", newResponseError(resp))
	}
	var out struct {
		TransferKey string `json:"transfer_key"` // the JWK's JSON text
	}
	if err := runtime.UnmarshalAsJSON(resp, &out); err != nil {
		return nil, fmt.Errorf("security-domain transfer key: the answer: %w", err)
	}
	var jwk struct {
		X5c []string `json:"x5c"`
	}
	if err := json.Unmarshal([]byte(out.TransferKey), &jwk); err != nil {
		return nil, fmt.Errorf("security-domain transfer key: transfer_key is not a JWK: %w", err)
	}
	if len(jwk.X5c) == 0 {
		return nil, errors.New("security-domain transfer key: the JWK has no certificate (x5c)")
	}
	der, err := base64.StdEncoding.DecodeString(jwk.X5c[0])
	if err != nil {
		return nil, fmt.Errorf("security-domain transfer key: x5c[0]: %w", err)
	}
	if _, err := x509.ParseCertificate(der); err != nil {
		return nil, fmt.Errorf("security-domain transfer key: x5c[0]: %w", err)
	}
	return der, nil
}

// Upload uploads a restore blob (the JSON text "az keyvault security-domain restore-blob" or
// securitydomain.RestoreBlob makes) to a pool in recovery mode, which activates it with that security domain. The
// returned status is the pool's answer; poll [SecurityDomainClient.UploadStatus] while it is StatusInProgress. The
// request is not retried.
func (c *SecurityDomainClient) Upload(ctx context.Context, blob []byte) (Status, error) {
	if len(bytes.TrimSpace(blob)) == 0 {
		return Status{}, errors.New("security-domain upload: the restore blob is empty")
	}
	ctx = policy.WithRetryOptions(ctx, policy.RetryOptions{MaxRetries: -1})
	req, err := c.newRequest(ctx, http.MethodPost, "/securitydomain/upload")
	if err != nil {
		return Status{}, err
	}
	if err := runtime.MarshalAsJSON(req, struct {
		Value string `json:"value"`
	}{string(blob)}); err != nil {
		return Status{}, err
	}
	resp, err := c.pl.Do(req)
	if err != nil {
		return Status{}, fmt.Errorf("security-domain upload: %w", err)
	}
	if !runtime.HasStatusCode(resp, http.StatusAccepted, http.StatusOK, http.StatusNoContent) {
		return Status{}, fmt.Errorf("security-domain upload: %w", newResponseError(resp))
	}
	s := Status{Status: StatusInProgress}
	if resp.StatusCode != http.StatusNoContent {
		if err := runtime.UnmarshalAsJSON(resp, &s); err != nil {
			return Status{}, fmt.Errorf("security-domain upload: the answer: %w", err)
		}
	}
	return s, nil
}

// UploadStatus returns the state of the security-domain upload: GET /securitydomain/upload/pending.
func (c *SecurityDomainClient) UploadStatus(ctx context.Context) (Status, error) {
	req, err := c.newRequest(ctx, http.MethodGet, "/securitydomain/upload/pending")
	if err != nil {
		return Status{}, err
	}
	resp, err := c.pl.Do(req)
	if err != nil {
		return Status{}, fmt.Errorf("security-domain upload status: %w", err)
	}
	if !runtime.HasStatusCode(resp, http.StatusOK) {
		return Status{}, fmt.Errorf("security-domain upload status: %w", newResponseError(resp))
	}
	var s Status
	if err := runtime.UnmarshalAsJSON(resp, &s); err != nil {
		return Status{}, fmt.Errorf("security-domain upload status: the answer: %w", err)
	}
	return s, nil
}

// newRequest makes a request for path below the pool's URL, with the api-version.
func (c *SecurityDomainClient) newRequest(ctx context.Context, method, path string) (*policy.Request, error) {
	req, err := runtime.NewRequest(ctx, method, c.endpoint+path+"?api-version="+SecurityDomainAPIVersion)
	if err != nil {
		return nil, err
	}
	req.Raw().Header.Set("Accept", "application/json")
	return req, nil
}
