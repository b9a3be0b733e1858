package test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azadmin/rbac"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/uuid"
)

const cryptoUser = "21dbd100-6940-42c2-9190-5d6cb909625b"

// TestClientCertificateCredential: a principal with only a client certificate gets tokens with
// the unmodified azidentity.ClientCertificateCredential and uses the pool; once the certificate is
// removed it gets none.
func TestClientCertificateCredential(t *testing.T) {
	p := startPool(t)
	p.activate()
	admin := p.admin()
	ctx := context.Background()

	res := p.do("POST", "/principals?api-version=2025-07-01", p.token(), strings.NewReader(`{"displayName":"cert app","noSecret":true}`))
	var pr struct {
		ObjectID string `json:"objectId"`
		ClientID string `json:"clientId"`
		Secret   string `json:"secret"`
	}
	if res.status != 201 || json.Unmarshal(res.body, &pr) != nil || pr.Secret != "" {
		t.Fatalf("create principal without a secret: %d %s", res.status, res.body)
	}
	key, cert := selfSigned(t, "cert app")
	pemCert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
	body, _ := json.Marshal(map[string]string{"certificate": string(pemCert)})
	res = p.do("POST", "/principals/"+pr.ObjectID+"/certificates?api-version=2025-07-01", p.token(), strings.NewReader(string(body)))
	if res.status != 201 {
		t.Fatalf("add certificate: %d %s", res.status, res.body)
	}
	var withCert struct {
		Credentials []struct{ ID, Type, Thumbprint string } `json:"credentials"`
	}
	if err := json.Unmarshal(res.body, &withCert); err != nil || len(withCert.Credentials) != 1 || withCert.Credentials[0].Type != "certificate" {
		t.Fatalf("credentials after adding a certificate: %s", res.body)
	}
	admin.assign(rbac.RoleScopeGlobal, cryptoUser, pr.ObjectID)

	newCred := func() *azidentity.ClientCertificateCredential {
		cred, err := azidentity.NewClientCertificateCredential(p.client.TenantID, pr.ClientID, []*x509.Certificate{cert}, key,
			&azidentity.ClientCertificateCredentialOptions{
				ClientOptions:            azcore.ClientOptions{Cloud: cloud.Configuration{ActiveDirectoryAuthorityHost: p.client.AuthorityHost + "/"}, Transport: p.http},
				DisableInstanceDiscovery: true,
			})
		if err != nil {
			t.Fatal(err)
		}
		return cred
	}
	a := p.actorFor(pr.ObjectID, pr.ClientID, newCred())
	if _, err := a.keys.CreateKey(ctx, "by-cert", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeECHSM)}, nil); err != nil {
		t.Fatalf("create a key with a certificate credential: %v", err)
	}

	// A certificate the principal does not have is refused.
	otherKey, otherCert := selfSigned(t, "cert app")
	cred, err := azidentity.NewClientCertificateCredential(p.client.TenantID, pr.ClientID, []*x509.Certificate{otherCert}, otherKey,
		&azidentity.ClientCertificateCredentialOptions{
			ClientOptions:            azcore.ClientOptions{Cloud: cloud.Configuration{ActiveDirectoryAuthorityHost: p.client.AuthorityHost + "/"}, Transport: p.http},
			DisableInstanceDiscovery: true,
		})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.actorFor(pr.ObjectID, pr.ClientID, cred).keys.GetKey(ctx, "by-cert", "", nil); err == nil {
		t.Fatal("an assertion signed by another key got a token")
	}

	res = p.do("DELETE", "/principals/"+pr.ObjectID+"/credentials/"+withCert.Credentials[0].ID+"?api-version=2025-07-01", p.token(), nil)
	if res.status != 200 {
		t.Fatalf("remove the certificate: %d %s", res.status, res.body)
	}
	if _, err := p.actorFor(pr.ObjectID, pr.ClientID, newCred()).keys.GetKey(ctx, "by-cert", "", nil); err == nil {
		t.Fatal("a removed certificate still gets tokens")
	}
}

// externalIssuer is an OpenID Connect issuer made by the test: its key signs access tokens the
// pool is configured to trust.
type externalIssuer struct {
	iss string
	key *ecdsa.PrivateKey
}

func newExternalIssuer(t *testing.T, iss string) externalIssuer {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return externalIssuer{iss: iss, key: k}
}

func (e externalIssuer) jwks(t *testing.T) []byte {
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &e.key.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// token signs an access token; edit changes its claims before signing.
func (e externalIssuer) token(t *testing.T, oid, aud string, edit func(*jwt.Claims)) string {
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: e.key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "k1"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	c := jwt.Claims{Issuer: e.iss, Subject: oid, Audience: jwt.Audience{aud}, IssuedAt: jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now.Add(-time.Minute)), Expiry: jwt.NewNumericDate(now.Add(time.Hour)), ID: uuid.NewString()}
	if edit != nil {
		edit(&c)
	}
	tok, err := jwt.Signed(sig).Claims(c).Claims(map[string]any{"oid": oid, "tid": uuid.NewString()}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestExternalIssuer configures the pool to trust an issuer the test runs, then checks that its
// tokens work with role assignments on their oid, and that untrusted, expired, forged and
// wrong-audience tokens, and tokens that claim a pool principal's oid, get 401.
func TestExternalIssuer(t *testing.T) {
	p := startPool(t)
	p.activate()
	admin := p.admin()
	ctx := context.Background()
	if _, err := admin.keys.CreateKey(ctx, "shared", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeECHSM)}, nil); err != nil {
		t.Fatal(err)
	}

	trusted := newExternalIssuer(t, "https://login.example.test/tenant-a/v2.0")
	const aud = "api://hsmpool-test"
	jwks := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(jwks, trusted.jwks(t), 0o600); err != nil {
		t.Fatal(err)
	}
	confPath := filepath.Join(p.dir, "hsmpoold.json")
	var conf map[string]any
	raw, err := os.ReadFile(confPath)
	if err != nil || json.Unmarshal(raw, &conf) != nil {
		t.Fatalf("read %s: %v", confPath, err)
	}
	conf["external_issuers"] = []map[string]any{{"issuer": trusted.iss, "audiences": []string{aud}, "jwks_file": jwks}}
	raw, _ = json.MarshalIndent(conf, "", "  ")
	if err := os.WriteFile(confPath, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	p.restart()

	oid := uuid.NewString()
	admin.assign(rbac.RoleScopeGlobal, cryptoUser, oid)
	get := func(tok string) response { return p.do("GET", "/keys/shared?api-version=2025-07-01", tok, nil) }
	if r := get(trusted.token(t, oid, aud, nil)); r.status != http.StatusOK {
		t.Fatalf("a trusted external token: %d %s", r.status, r.body)
	}
	if r := get(trusted.token(t, uuid.NewString(), aud, nil)); r.status != http.StatusForbidden {
		t.Fatalf("an external principal without a role: %d %s, want 403", r.status, r.body)
	}
	forger := newExternalIssuer(t, trusted.iss)
	stranger := newExternalIssuer(t, "https://evil.example.test/v2.0")
	for name, tok := range map[string]string{
		"untrusted issuer": stranger.token(t, oid, aud, nil),
		"forged signature": forger.token(t, oid, aud, nil),
		"wrong audience":   trusted.token(t, oid, "api://other", nil),
		"expired": trusted.token(t, oid, aud, func(c *jwt.Claims) {
			c.Expiry = jwt.NewNumericDate(time.Now().Add(-10 * time.Minute))
			c.NotBefore = jwt.NewNumericDate(time.Now().Add(-time.Hour))
		}),
		"pool principal's oid": trusted.token(t, poolPrincipalOID(t, p), aud, nil),
	} {
		if r := get(tok); r.status != http.StatusUnauthorized {
			t.Errorf("%s: %d %s, want 401", name, r.status, r.body)
		}
	}
}

// poolPrincipalOID is the object ID of the dev principal, read from the pool's principal list.
func poolPrincipalOID(t *testing.T, p *testPool) string {
	res := p.do("GET", "/principals?api-version=2025-07-01", p.token(), nil)
	var l struct {
		Value []struct{ ObjectID, ClientID string } `json:"value"`
	}
	if err := json.Unmarshal(res.body, &l); err != nil {
		t.Fatal(err)
	}
	for _, x := range l.Value {
		if x.ClientID == p.client.ClientID {
			return x.ObjectID
		}
	}
	t.Fatal("the dev principal is not listed")
	return ""
}
