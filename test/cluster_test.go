package test

import (
	"crypto/sha256"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hsmpool/hsmpool/internal/nodejoin"
)

// TestJoinTokenREST makes join tokens through POST /cluster/join-tokens: each is new, carries
// the fingerprint of the pool CA the client trusts, and expires in an hour; without a token
// the call is refused.
func TestJoinTokenREST(t *testing.T) {
	p := startPool(t)
	caPEM, err := os.ReadFile(p.client.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(caPEM)
	wantFP := sha256.Sum256(blk.Bytes)

	tok := p.token()
	seen := map[string]bool{}
	for range 2 {
		r := p.do(http.MethodPost, "/cluster/join-tokens?api-version=2025-07-01", tok, strings.NewReader("{}"))
		if r.status != http.StatusCreated {
			t.Fatalf("POST /cluster/join-tokens: %d %s", r.status, r.body)
		}
		var out struct {
			Token   string `json:"token"`
			Expires int64  `json:"expires"`
		}
		if err := json.Unmarshal(r.body, &out); err != nil {
			t.Fatal(err)
		}
		jt, err := nodejoin.ParseToken(out.Token)
		if err != nil {
			t.Fatalf("the token does not parse: %v", err)
		}
		if jt.CAFingerprint != wantFP {
			t.Error("the token does not pin the pool CA")
		}
		if d := time.Until(time.Unix(out.Expires, 0)); d < 59*time.Minute || d > 61*time.Minute {
			t.Errorf("the token expires in %v, want an hour", d)
		}
		if seen[out.Token] {
			t.Error("two join tokens are the same")
		}
		seen[out.Token] = true
	}
	if r := p.do(http.MethodPost, "/cluster/join-tokens?api-version=2025-07-01", "", strings.NewReader("{}")); r.status != http.StatusUnauthorized {
		t.Errorf("without a bearer token: %d, want 401", r.status)
	}
}
