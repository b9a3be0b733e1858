package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/hsmpool/hsmpool/internal/fault"
)

// opaqueSigner hides the concrete key type, as an HSM-backed signer would.
type opaqueSigner struct {
	pub  crypto.PublicKey
	sign func(io.Reader, []byte, crypto.SignerOpts) ([]byte, error)
}

func (s opaqueSigner) Public() crypto.PublicKey { return s.pub }
func (s opaqueSigner) Sign(r io.Reader, d []byte, o crypto.SignerOpts) ([]byte, error) {
	return s.sign(r, d, o)
}

func TestNewIssuer(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	good := func() IssuerConfig {
		return IssuerConfig{AuthorityHost: "https://127.0.0.1:8443", TenantID: testTenant, Signer: key, KeyID: "k1"}
	}
	tests := []struct {
		name    string
		edit    func(*IssuerConfig)
		noDir   bool
		wantErr string // names the field; "" means valid
	}{
		{name: "valid", edit: func(*IssuerConfig) {}},
		{name: "authority with trailing slash", edit: func(c *IssuerConfig) { c.AuthorityHost = "https://127.0.0.1:8443/" }},
		{name: "authority without port", edit: func(c *IssuerConfig) { c.AuthorityHost = "https://hsm.example.com" }},
		{name: "tenant in upper case", edit: func(c *IssuerConfig) { c.TenantID = strings.ToUpper(testTenant) }},
		{name: "default key id", edit: func(c *IssuerConfig) { c.KeyID = "" }},
		{name: "opaque signer", edit: func(c *IssuerConfig) {
			c.Signer = opaqueSigner{pub: key.Public(), sign: key.Sign}
		}},
		{name: "shortest lifetime", edit: func(c *IssuerConfig) { c.Lifetime = MinLifetime }},
		{name: "longest lifetime", edit: func(c *IssuerConfig) { c.Lifetime = MaxLifetime }},

		{name: "http authority", edit: func(c *IssuerConfig) { c.AuthorityHost = "http://127.0.0.1:8443" }, wantErr: "AuthorityHost"},
		{name: "authority with path", edit: func(c *IssuerConfig) { c.AuthorityHost = "https://127.0.0.1:8443/" + testTenant }, wantErr: "AuthorityHost"},
		{name: "authority with query", edit: func(c *IssuerConfig) { c.AuthorityHost = "https://127.0.0.1:8443?x=1" }, wantErr: "AuthorityHost"},
		{name: "authority with user", edit: func(c *IssuerConfig) { c.AuthorityHost = "https://u@127.0.0.1:8443" }, wantErr: "AuthorityHost"},
		{name: "authority without host", edit: func(c *IssuerConfig) { c.AuthorityHost = "https:///x" }, wantErr: "AuthorityHost"},
		{name: "no authority", edit: func(c *IssuerConfig) { c.AuthorityHost = "" }, wantErr: "AuthorityHost"},
		{name: "tenant not a uuid", edit: func(c *IssuerConfig) { c.TenantID = "contoso.onmicrosoft.com" }, wantErr: "TenantID"},
		{name: "no tenant", edit: func(c *IssuerConfig) { c.TenantID = "" }, wantErr: "TenantID"},
		{name: "no signer", edit: func(c *IssuerConfig) { c.Signer = nil }, wantErr: "Signer"},
		{name: "P-384 signer", edit: func(c *IssuerConfig) { c.Signer = p384 }, wantErr: "Signer"},
		{name: "RSA signer", edit: func(c *IssuerConfig) { c.Signer = rsaKey }, wantErr: "Signer"},
		{name: "Ed25519 signer", edit: func(c *IssuerConfig) { c.Signer = edKey }, wantErr: "Signer"},
		{name: "signer that does not match its public key", edit: func(c *IssuerConfig) {
			c.Signer = opaqueSigner{pub: key.Public(), sign: other.Sign}
		}, wantErr: "signer does not match"},
		{name: "signer that fails", edit: func(c *IssuerConfig) {
			c.Signer = opaqueSigner{pub: key.Public(), sign: func(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
				return nil, errors.New("CKR_DEVICE_ERROR")
			}}
		}, wantErr: "CKR_DEVICE_ERROR"},
		{name: "lifetime too short", edit: func(c *IssuerConfig) { c.Lifetime = 5 * time.Minute }, wantErr: "Lifetime"},
		{name: "lifetime too long", edit: func(c *IssuerConfig) { c.Lifetime = 25 * time.Hour }, wantErr: "Lifetime"},
		{name: "negative lifetime", edit: func(c *IssuerConfig) { c.Lifetime = -time.Hour }, wantErr: "Lifetime"},
		{name: "key id with a space", edit: func(c *IssuerConfig) { c.KeyID = "k 1" }, wantErr: "KeyID"},
		{name: "no directory", edit: func(*IssuerConfig) {}, noDir: true, wantErr: "Directory"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good()
			tc.edit(&cfg)
			var dir Directory = directory{}
			if tc.noDir {
				dir = nil
			}
			iss, err := NewIssuer(cfg, dir)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("NewIssuer: %v", err)
				}
				if want := "https://" + strings.TrimSuffix(strings.TrimPrefix(cfg.AuthorityHost, "https://"), "/") + "/" + testTenant + "/v2.0"; iss.Issuer() != want {
					t.Errorf("Issuer() = %q, want %q", iss.Issuer(), want)
				}
				if iss.TenantID() != testTenant {
					t.Errorf("TenantID() = %q", iss.TenantID())
				}
				return
			}
			if err == nil {
				t.Fatal("NewIssuer accepted the config")
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q does not name %q", err, tc.wantErr)
			}
			if strings.HasPrefix(tc.name, "signer that") {
				return // the signer's failure, not a config error
			}
			if fault.Of(err) != fault.BadParameter {
				t.Errorf("kind = %v, want bad parameter", fault.Of(err))
			}
		})
	}
}

func TestDefaultKeyIDIsThumbprint(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	iss, err := NewIssuer(IssuerConfig{AuthorityHost: "https://127.0.0.1:8443", TenantID: testTenant, Signer: key}, directory{})
	if err != nil {
		t.Fatal(err)
	}
	tp, err := (&jose.JSONWebKey{Key: &key.PublicKey}).Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if want := base64.RawURLEncoding.EncodeToString(tp); iss.public.KeyID != want {
		t.Errorf("kid = %q, want the thumbprint %q", iss.public.KeyID, want)
	}
}

// TestChallenge parses the challenge as the Go Key Vault challenge policy (client-compat §2) and
// as the JS one do.
func TestChallenge(t *testing.T) {
	f := newFixture(t)
	got := f.iss.Challenge(testResource)
	want := `Bearer authorization="` + f.srv.URL + `/` + testTenant + `", resource="` + testResource + `"`
	if got != want {
		t.Fatalf("Challenge = %s\nwant        %s", got, want)
	}
	// Go: strip "Bearer ", split on spaces, then on "=", strip quotes and a trailing comma.
	params := map[string]string{}
	for _, part := range strings.Split(strings.TrimPrefix(got, "Bearer "), " ") {
		kv := strings.Split(part, "=")
		if len(kv) == 2 {
			params[kv[0]] = strings.Trim(strings.TrimSuffix(kv[1], ","), `"`)
		}
	}
	if params["resource"] != testResource {
		t.Errorf("resource = %q", params["resource"])
	}
	// parseTenant: strings.Split(url, "/")[3].
	if parts := strings.Split(params["authorization"], "/"); len(parts) != 4 || parts[3] != testTenant {
		t.Errorf("authorization %q does not have exactly the tenant as its one path segment", params["authorization"])
	}
	// The resource check: vault host ends with "."+host:port of the resource.
	res, _ := url.Parse(params["resource"])
	if vault := "myhsm.managedhsm.localhost:8443"; !strings.HasSuffix(vault, "."+res.Host) {
		t.Errorf("vault %s fails the challenge resource verification against %s", vault, res.Host)
	}
	// The authorization URL is the authority the credential's token requests go to.
	if params["authorization"]+"/v2.0" != f.iss.Issuer() {
		t.Errorf("authorization %q is not the issuer's authority", params["authorization"])
	}
	// JS takes the whole path as the tenant.
	a, _ := url.Parse(params["authorization"])
	if a.Path[1:] != testTenant {
		t.Errorf("JS would read tenant %q", a.Path[1:])
	}
}

var uuidV4 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestNewSecret(t *testing.T) {
	s1, h1, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	s2, h2, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	text := string(s1.Reveal())
	raw, err := base64.RawURLEncoding.Strict().DecodeString(text)
	if err != nil || len(raw) < 32 {
		t.Errorf("secret is not 256 bits of unpadded base64url: %d bytes, %v", len(raw), err)
	}
	if url.QueryEscape(text) != text {
		t.Errorf("secret needs escaping in a form")
	}
	if s1.Equal(s2) || h1.ID == h2.ID || string(h1.Hash) == string(h2.Hash) {
		t.Error("two secrets are alike")
	}
	if !uuidV4.MatchString(h1.ID) {
		t.Errorf("ID %q is not a random UUID", h1.ID)
	}
	if len(h1.Hash) != 32 || strings.Contains(string(h1.Hash), text) || !h1.Expires.IsZero() {
		t.Errorf("hash = %+v", h1)
	}
	if got := string(hashSecret(s1.Reveal())); got != string(h1.Hash) {
		t.Error("the hash is not hashSecret of the secret")
	}
	// The hash is keyed: it is not plain SHA-256 of the secret.
	if plain := sha256.Sum256(s1.Reveal()); string(plain[:]) == string(h1.Hash) {
		t.Error("the hash is plain SHA-256")
	}
	if fmt.Sprint(s1) != "[REDACTED]" {
		t.Error("the secret prints itself")
	}
}

func TestCheckSecret(t *testing.T) {
	now := time.Now()
	a, ha := mustSecret(t)
	b, hb := mustSecret(t)
	expired := hb
	expired.Expires = now
	future := ha
	future.Expires = now.Add(time.Second)
	tests := []struct {
		name      string
		secrets   []SecretHash
		presented string
		want      secretCheck
	}{
		{"valid", []SecretHash{ha}, a, secretValid},
		{"valid until later", []SecretHash{future}, a, secretValid},
		{"second of two", []SecretHash{hb, ha}, a, secretValid},
		{"wrong", []SecretHash{ha}, b, secretWrong},
		{"expires now", []SecretHash{expired}, b, secretExpired},
		{"expired and another valid", []SecretHash{expired, ha}, b, secretExpired},
		{"same secret stored expired and valid", []SecretHash{expired, hb}, b, secretValid},
		{"no secrets", nil, a, secretWrong},
		{"empty", []SecretHash{ha}, "", secretWrong},
		{"empty hash stored", []SecretHash{{ID: "x"}}, "", secretWrong},
		{"too long", []SecretHash{{Hash: hashSecret([]byte(strings.Repeat("a", maxSecretLen+1)))}}, strings.Repeat("a", maxSecretLen+1), secretWrong},
		{"prefix", []SecretHash{ha}, a[:len(a)-1], secretWrong},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := Principal{ObjectID: "o", ClientID: "c", Secrets: tc.secrets}
			if got := checkSecret(p, []byte(tc.presented), now); got != tc.want {
				t.Errorf("checkSecret = %v, want %v", got, tc.want)
			}
		})
	}
}
