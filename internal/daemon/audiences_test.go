package daemon

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/hsmpool/hsmpool/internal/auth"
	"github.com/hsmpool/hsmpool/internal/fault"
	"github.com/hsmpool/hsmpool/internal/state"
	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

type oneClient struct{ p auth.Principal }

func (d oneClient) PrincipalByClientID(_ context.Context, id string) (auth.Principal, error) {
	if id != d.p.ClientID {
		return auth.Principal{}, fault.NotFound
	}
	return d.p, nil
}

const testTenantID = "0f5a9c1e-3d4b-4c6a-9e8f-1a2b3c4d5e6f"

// TestTokensAcrossNodes: a node accepts a token another node of the pool issued (its issuer is
// that node's authority host, from the node map; the signing key is shared), for any node's
// resource in the map; it refuses a resource that no node has, and an issuer that is no pool
// node's.
func TestTokensAcrossNodes(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sec, hash, err := auth.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	dir := oneClient{auth.Principal{ObjectID: "7d3f0b1e-5c2a-4e8b-9f6d-0a1b2c3d4e5f", ClientID: "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f", DisplayName: "app", Secrets: []auth.SecretHash{hash}}}
	issuerAt := func(authority string) *auth.Issuer {
		i, err := auth.NewIssuer(auth.IssuerConfig{AuthorityHost: authority, TenantID: testTenantID, Signer: key}, dir)
		if err != nil {
			t.Fatal(err)
		}
		return i
	}
	// token gets a token from issuer i for resource.
	token := func(i *auth.Issuer, resource string) string {
		t.Helper()
		srv := httptest.NewServer(i.Handler())
		defer srv.Close()
		form := url.Values{"grant_type": {"client_credentials"}, "client_id": {dir.p.ClientID},
			"client_secret": {string(sec.Reveal())}, "scope": {resource + "/.default"}}
		resp, err := http.Post(srv.URL+"/"+testTenantID+"/oauth2/v2.0/token", "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct {
			AccessToken string `json:"access_token"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.AccessToken == "" {
			t.Fatalf("token from %s: %d %v", srv.URL, resp.StatusCode, err)
		}
		return out.AccessToken
	}

	st := state.New()
	apply := func(c *pb.Command) {
		t.Helper()
		if err := st.Apply(st.Index()+1, stamp(c)); err != nil {
			t.Fatal(err)
		}
	}
	apply(&pb.Command{Op: &pb.Command_InitPool{InitPool: &pb.InitPool{Name: "contoso", TenantId: testTenantID, RecoverableDays: 90}}})
	for _, n := range []*pb.NodeRecord{
		{NodeId: "node-1", NodeAddr: "127.0.0.1:8445", Url: "https://contoso.managedhsm.localhost:8443", AuthorityHost: "https://127.0.0.1:8443"},
		{NodeId: "node-2", NodeAddr: "127.0.0.1:9445", Url: "https://contoso.managedhsm.localhost:9443", AuthorityHost: "https://127.0.0.1:9443"},
	} {
		apply(&pb.Command{Op: &pb.Command_PutNode{PutNode: &pb.PutNode{Node: n}}})
	}

	// This is node 2.
	node1, node2 := issuerAt("https://127.0.0.1:8443"), issuerAt("https://127.0.0.1:9443")
	pt := &poolTokens{own: node2, st: st, self: "https://127.0.0.1:9443", newFor: func(a string) (*auth.Issuer, error) { return issuerAt(a), nil }}
	own := "https://managedhsm.localhost:9443"
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		tok   string
		valid bool
	}{
		{"node 1's token for node 1's resource", token(node1, "https://managedhsm.localhost:8443"), true},
		{"node 1's token for node 2's resource", token(node1, own), true},
		{"node 2's token for node 1's resource", token(node2, "https://managedhsm.localhost:8443"), true},
		{"a resource no node has", token(node1, "https://managedhsm.localhost:7443"), false},
		{"an issuer that is no pool node's", token(issuerAt("https://127.0.0.1:7443"), own), false},
	} {
		_, err := pt.Validate(ctx, tc.tok, own)
		if (err == nil) != tc.valid {
			t.Errorf("%s: %v, want valid %v", tc.name, err, tc.valid)
		}
		if err != nil && !errors.Is(err, fault.Unauthorized) {
			t.Errorf("%s: %v, want Unauthorized", tc.name, err)
		}
	}
	if got := resourceOf("https://contoso.managedhsm.localhost"); got != "https://managedhsm.localhost" {
		t.Errorf("resourceOf without a port: %q", got)
	}
	if got := resourceOf("http://contoso.managedhsm.localhost:1"); got != "" {
		t.Errorf("resourceOf of http: %q", got)
	}
}
