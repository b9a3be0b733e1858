package gateway

import (
	"crypto/rsa"
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
	"unicode/utf8"

	"github.com/hsmpool/hsmpool/internal/rpcerr"
	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

// Health and the security domain (security-domain-format.md §2).

func (g *Gateway) healthz(*call) (any, error) {
	return map[string]string{"status": "ok"}, nil
}

// readyz is 200 when the core answers and its node is a Raft leader or follower: only then can
// it serve reads and forward writes. An unactivated pool is ready, as it must take the
// security-domain download that activates it.
func (g *Gateway) readyz(c *call) (any, error) {
	st, err := g.pool.GetStatus(c.ctx, &pb.PoolStatusRequest{})
	if err != nil {
		return nil, newError(http.StatusServiceUnavailable, "ServiceUnavailable", "The pool's core did not answer: %s", rpcerr.ToHTTP(err).Message)
	}
	out := poolStatus{
		Ready:        strings.EqualFold(st.RaftState, "Leader") || strings.EqualFold(st.RaftState, "Follower"),
		Name:         st.Name,
		TenantID:     st.TenantId,
		Activated:    st.Activated,
		NodeID:       st.NodeId,
		RaftState:    st.RaftState,
		AppliedIndex: st.AppliedIndex,
		Keys:         st.Keys,
	}
	if !out.Ready {
		c.status = http.StatusServiceUnavailable
	}
	return out, nil
}

// downloadSecurityDomain answers 202 with the finished file in the body: the download is
// synchronous, but the newer SDKs accept only 202 and poll Azure-AsyncOperation, and every
// client takes the result from this first body.
func (g *Gateway) downloadSecurityDomain(c *call) (any, error) {
	var p sdDownloadParams
	if err := g.decode(c, &p); err != nil {
		return nil, err
	}
	req := &pb.DownloadRequest{Quorum: 2} // the spec's default for an absent "required"
	if p.Required != nil {
		req.Quorum = *p.Required
	}
	for i, cert := range p.Certificates {
		x5c := cert.X5c
		if len(x5c) == 0 && cert.Value != nil {
			x5c = cert.Value.X5c
		}
		if len(x5c) == 0 || x5c[0] == "" {
			return nil, badParameter("certificates[%d].x5c must hold the officer's certificate.", i)
		}
		der, err := decodeBase64(x5c[0])
		if err != nil {
			return nil, badParameter("certificates[%d].x5c[0] is not valid base64.", i)
		}
		req.Certificates = append(req.Certificates, der)
	}
	res, err := g.sd.Download(c.ctx, req)
	if err != nil {
		return nil, err
	}
	if !utf8.Valid(res.File) {
		return nil, errors.New("security-domain file from the core is not UTF-8")
	}
	h := c.w.Header()
	// With api-version, so that a poller that uses the URL as it is gets past the version check.
	h.Set("Azure-AsyncOperation", c.url("securitydomain", "download", "pending")+"?api-version="+url.QueryEscape(c.apiVersion))
	h.Set("Retry-After", "5")
	c.status = http.StatusAccepted
	return sdValue{Value: string(res.File)}, nil
}

// securityDomainStatus serves download/pending.
func (g *Gateway) securityDomainStatus(c *call) (any, error) {
	st, err := g.sd.GetStatus(c.ctx, &pb.SecurityDomainStatusRequest{})
	if err != nil {
		return nil, err
	}
	return sdStatus{Status: st.Status, StatusDetails: st.StatusDetails}, nil
}

// uploadStatus serves upload/pending: the upload's status on a recovery pool. az CLI 2.45 polls
// this URL after a download too, so the core says Success whenever no upload runs.
func (g *Gateway) uploadStatus(c *call) (any, error) {
	st, err := g.sd.GetUploadStatus(c.ctx, &pb.SecurityDomainStatusRequest{})
	if err != nil {
		return nil, err
	}
	return sdStatus{Status: st.Status, StatusDetails: st.StatusDetails}, nil
}

// transferKey serves GET /securitydomain/upload (init-recovery): the exchange key as a JWK whose
// JSON text is the STRING transfer_key, which the CLI decodes twice (spec §2.3).
func (g *Gateway) transferKey(c *call) (any, error) {
	tk, err := g.sd.GetTransferKey(c.ctx, &pb.TransferKeyRequest{})
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(tk.Certificate)
	if err != nil {
		return nil, fmt.Errorf("exchange certificate from the core: %w", err)
	}
	pub, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok {
		return nil, errors.New("exchange certificate from the core is not RSA")
	}
	sum := sha256.Sum256(tk.Certificate)
	jwk, err := json.Marshal(transferJWK{
		Kty:     "RSA",
		KeyOps:  []string{"encrypt"},
		Alg:     "RSA-OAEP-256",
		Kid:     c.url("transfer_key"),
		N:       base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
		E:       base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes()),
		X5c:     []string{base64.StdEncoding.EncodeToString(tk.Certificate)},
		X5tS256: base64.RawURLEncoding.EncodeToString(sum[:]),
	})
	if err != nil {
		return nil, err
	}
	return sdTransferKey{KeyFormat: "jwk", TransferKey: string(jwk)}, nil
}

// uploadSecurityDomain serves POST /securitydomain/upload. The core opens and installs the
// blob within the call, so the 202 already carries the final status; the pending URL says it
// again for the clients that poll (spec §2.4).
func (g *Gateway) uploadSecurityDomain(c *call) (any, error) {
	var p sdValue
	if err := g.decode(c, &p); err != nil {
		return nil, err
	}
	if strings.TrimSpace(p.Value) == "" {
		return nil, badParameter("value must hold the restore blob (the JSON text made by restore-blob).")
	}
	st, err := g.sd.Upload(c.ctx, &pb.UploadRequest{Blob: []byte(p.Value)})
	if err != nil {
		return nil, err
	}
	h := c.w.Header()
	h.Set("Azure-AsyncOperation", c.url("securitydomain", "upload", "pending")+"?api-version="+url.QueryEscape(c.apiVersion))
	h.Set("Retry-After", "5")
	c.status = http.StatusAccepted
	return sdStatus{Status: st.Status, StatusDetails: st.StatusDetails}, nil
}
