package test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"github.com/google/uuid"

	"github.com/hsmpool/hsmpool/internal/nodejoin"
	"github.com/hsmpool/hsmpool/internal/softhsm"
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

// freePort returns 127.0.0.1:P for a free port P.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// newToken makes a SoftHSM2 configuration and token in dir/softhsm with softhsm2-util, as an
// operator would for a new node, and returns the flags and environment that bind a node to it.
func newToken(t *testing.T, dir, label string) (flags, env []string) {
	t.Helper()
	conf, err := softhsm.WriteConfig(filepath.Join(dir, "softhsm"))
	if err != nil {
		t.Fatal(err)
	}
	module, err := softhsm.Module()
	if err != nil {
		t.Fatal(err)
	}
	pin := filepath.Join(dir, "softhsm", "user.pin")
	if err := os.WriteFile(pin, []byte("1234-user"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("softhsm2-util", "--init-token", "--free", "--label", label, "--so-pin", "1234-so", "--pin", "1234-user")
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+conf)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("softhsm2-util: %v\n%s", err, out)
	}
	return []string{"--pkcs11-module", module, "--token-label", label, "--pin-file", pin}, []string{"SOFTHSM2_CONF=" + conf}
}

// createJoinToken makes a join token on p through REST and writes it to a file.
func createJoinToken(t *testing.T, p *testPool) string {
	t.Helper()
	r := p.do(http.MethodPost, "/cluster/join-tokens?api-version=2025-07-01", p.token(), strings.NewReader("{}"))
	if r.status != http.StatusCreated {
		t.Fatalf("POST /cluster/join-tokens: %d %s", r.status, r.body)
	}
	var out struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(r.body, &out); err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "join.token")
	if err := os.WriteFile(f, []byte(out.Token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// trustWhenPending waits for a join offer in the source node's data directory and runs
// hsmpoold trust-join-key with its fingerprint, as the source node's security officer.
func trustWhenPending(t *testing.T, src *testPool, deadline time.Duration) <-chan error {
	done := make(chan error, 1)
	go func() {
		end := time.Now().Add(deadline)
		for time.Now().Before(end) {
			files, _ := filepath.Glob(filepath.Join(src.dir, "joins", "*.pem"))
			for _, f := range files {
				b, err := os.ReadFile(f)
				if err != nil {
					continue
				}
				blk, _ := pem.Decode(b)
				if blk == nil {
					continue
				}
				offer, err := nodejoin.ParseOffer(blk.Bytes)
				if err != nil {
					done <- err
					return
				}
				fp := offer.Fingerprint()
				cmd := exec.Command(hsmpooldBinary(t), "trust-join-key", "--config", filepath.Join(src.dir, "hsmpoold.json"),
					"--so-pin-file", filepath.Join(src.dir, "softhsm", "so.pin"), "--fingerprint", hex.EncodeToString(fp[:]))
				out, err := cmd.CombinedOutput()
				if err != nil {
					done <- fmt.Errorf("trust-join-key: %v\n%s", err, out)
				} else {
					done <- nil
				}
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		done <- errors.New("no join offer appeared on the source node")
	}()
	return done
}

// TestJoinSecondNode runs the join protocol between two real processes, each with its own
// SoftHSM2 token: node 1 is an activated dev pool with a key; node 2 joins with a join token
// made through REST, after node 1's security officer trusted its join key; node 2 then serves
// the key from its replicated state and signs with its own HSM and the KEK it received. A
// reused token is refused.
func TestJoinSecondNode(t *testing.T) {
	requireSoftHSM(t)
	requireTool(t, "softhsm2-util", "softhsm2")
	p1 := &testPool{t: t, dir: filepath.Join(t.TempDir(), "node1"), listen: freeListen(t)}
	p1.args = []string{"dev", "--data-dir", p1.dir, "--listen", p1.listen, "--node-addr", freePort(t)}
	p1.start()
	t.Cleanup(p1.stop)
	var cfg1 struct {
		Raft struct {
			NodeAddr string `json:"node_addr"`
		} `json:"raft"`
	}
	b, err := os.ReadFile(filepath.Join(p1.dir, "hsmpoold.json"))
	if err != nil {
		t.Fatal(err)
	}
	json.Unmarshal(b, &cfg1)
	p1.activate()
	ctx := context.Background()
	created, err := p1.keys.CreateKey(ctx, "before-join", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeECHSM), Curve: to.Ptr(azkeys.CurveNameP256)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tokenFile := createJoinToken(t, p1)

	// Node 2: its own token, its own ports; the administrator's client file, pointed at node 2.
	dir2 := filepath.Join(t.TempDir(), "node2")
	if err := os.MkdirAll(dir2, 0o700); err != nil {
		t.Fatal(err)
	}
	flags, env := newToken(t, dir2, "node2")
	p2 := &testPool{t: t, dir: dir2, listen: freeListen(t), env: env}
	p2.args = append([]string{"init", "--join", cfg1.Raft.NodeAddr, "--join-token-file", tokenFile, "--data-dir", dir2,
		"--listen", p2.listen, "--raft-addr", raftAddrOf(p2.listen), "--node-addr", freePort(t)}, flags...)
	p2.clientPath = filepath.Join(t.TempDir(), "client2.json")
	writeClientFor(t, filepath.Join(p1.dir, "client.json"), p2.clientPath, p2.listen)

	start := time.Now()
	trusted := trustWhenPending(t, p1, 60*time.Second)
	p2.start()
	t.Cleanup(p2.stop)
	if err := <-trusted; err != nil {
		t.Fatal(err)
	}
	t.Logf("node 2 joined and serves after %v", time.Since(start))

	// Node 2 is a follower of node 1's Raft.
	r := p2.do(http.MethodGet, "/readyz", "", nil)
	if r.status != http.StatusOK || !strings.Contains(strings.ToLower(string(r.body)), `"raftstate":"follower"`) {
		t.Errorf("node 2 /readyz: %d %s", r.status, r.body)
	}
	// The key made before the join, from node 2's state.
	got, err := p2.keys.GetKey(ctx, "before-join", "", nil)
	if err != nil {
		t.Fatalf("GetKey on node 2: %v", err)
	}
	// The key ID names the node's own URL (its port); the version is the same.
	if got.Key.KID.Name() != "before-join" || got.Key.KID.Version() != created.Key.KID.Version() {
		t.Errorf("node 2 has %s, want the version of %s", *got.Key.KID, *created.Key.KID)
	}
	// A signature by node 2's HSM, with the KEK it received, verifies with the key.
	digest := sha256.Sum256([]byte("signed on node 2"))
	sig, err := p2.keys.Sign(ctx, "before-join", "", azkeys.SignParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmES256), Value: digest[:]}, nil)
	if err != nil {
		t.Fatalf("Sign on node 2: %v", err)
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, created.Key.X...), created.Key.Y...))
	if err != nil {
		t.Fatalf("the key's public key: %v", err)
	}
	if len(sig.Result) != 64 || !ecdsa.Verify(pub, digest[:], new(big.Int).SetBytes(sig.Result[:32]), new(big.Int).SetBytes(sig.Result[32:])) {
		t.Error("node 2's signature does not verify with the key's public key")
	}

	// A key made on node 1 after the join commits (node 2 is a voter: the quorum is both) and
	// reaches node 2.
	if _, err := p1.keys.CreateKey(ctx, "after-join", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeECHSM), Curve: to.Ptr(azkeys.CurveNameP256)}, nil); err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := p2.keys.GetKey(ctx, "after-join", "", nil); err == nil {
			break
		} else if time.Now().After(end) {
			t.Fatalf("the key made on node 1 after the join is not on node 2: %v", err)
		}
	}

	testForwarding(t, p1, p2)

	// The token is spent: a third node that presents it is refused at once.
	dir3 := filepath.Join(t.TempDir(), "node3")
	os.MkdirAll(dir3, 0o700)
	flags3, env3 := newToken(t, dir3, "node3")
	l3 := freeListen(t)
	cmd := exec.Command(hsmpooldBinary(t), append([]string{"init", "--join", cfg1.Raft.NodeAddr, "--join-token-file", tokenFile,
		"--data-dir", dir3, "--listen", l3, "--raft-addr", raftAddrOf(l3), "--node-addr", freePort(t), "--join-timeout", "30s"}, flags3...)...)
	cmd.Env = append(os.Environ(), env3...)
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "used by another node") {
		t.Errorf("a reused join token: %v\n%s", err, out)
	}
}

// testForwarding shows that writes sent to node 2, a follower, are forwarded to node 1, the
// leader: the caller reads its own write on node 2 at once, node 1 has it, and a business error
// the leader's state returns reaches the client with its status and codes.
func testForwarding(t *testing.T, p1, p2 *testPool) {
	ctx := context.Background()
	start := time.Now()
	created, err := p2.keys.CreateKey(ctx, "via-node-2", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeECHSM), Curve: to.Ptr(azkeys.CurveNameP256)}, nil)
	if err != nil {
		t.Fatalf("CreateKey through node 2: %v", err)
	}
	t.Logf("a key created through node 2 in %v", time.Since(start))
	for _, n := range []struct {
		name string
		p    *testPool
	}{{"node 2", p2}, {"node 1", p1}} {
		got, err := n.p.keys.GetKey(ctx, "via-node-2", "", nil)
		if err != nil {
			t.Fatalf("GetKey on %s right after the forwarded create: %v", n.name, err)
		}
		if got.Key.KID.Version() != created.Key.KID.Version() {
			t.Errorf("%s has version %s, want %s", n.name, got.Key.KID.Version(), created.Key.KID.Version())
		}
	}

	// A second assignment of what the administrator's assignment grants: the core proposes it
	// without a check of its own, and the leader's state refuses it with a 409.
	const asgs = "/providers/Microsoft.Authorization/roleAssignments"
	tok := p2.token()
	r := p2.do(http.MethodGet, asgs+"?api-version=7.4", tok, nil)
	var list struct {
		Value []struct {
			Properties struct {
				RoleDefinitionID string `json:"roleDefinitionId"`
				PrincipalID      string `json:"principalId"`
			} `json:"properties"`
		} `json:"value"`
	}
	if err := json.Unmarshal(r.body, &list); r.status != http.StatusOK || err != nil || len(list.Value) == 0 {
		t.Fatalf("list role assignments on node 2: %d %s", r.status, r.body)
	}
	body, _ := json.Marshal(map[string]any{"properties": map[string]string{
		"roleDefinitionId": list.Value[0].Properties.RoleDefinitionID, "principalId": list.Value[0].Properties.PrincipalID}})
	var codes [2]string
	for i, p := range []*testPool{p1, p2} {
		r := p.do(http.MethodPut, asgs+"/"+uuid.NewString()+"?api-version=7.4", p.token(), bytes.NewReader(body))
		if r.status != http.StatusConflict {
			t.Fatalf("a duplicate role assignment through node %d: %d %s, want 409", i+1, r.status, r.body)
		}
		var e struct {
			Error struct {
				Code       string `json:"code"`
				InnerError struct {
					Code string `json:"code"`
				} `json:"innererror"`
			} `json:"error"`
		}
		json.Unmarshal(r.body, &e)
		codes[i] = e.Error.Code + "/" + e.Error.InnerError.Code
	}
	if codes[0] != codes[1] || codes[1] != "Conflict/RoleAssignmentExists" {
		t.Errorf("the 409's codes: node 1 %s, node 2 (forwarded) %s; want Conflict/RoleAssignmentExists on both", codes[0], codes[1])
	}
}

func raftAddrOf(listen string) string {
	host, port, _ := net.SplitHostPort(listen)
	n, _ := strconv.Atoi(port)
	return net.JoinHostPort(host, strconv.Itoa(n+1))
}

// writeClientFor copies a client file, pointed at the node listening on listen.
func writeClientFor(t *testing.T, from, to, listen string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(listen)
	u := m["url"].(string)
	m["url"] = u[:strings.LastIndex(u, ":")+1] + port
	m["authority_host"] = "https://" + listen
	b, _ = json.Marshal(m)
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
