package core

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/hsmpool/hsmpool/internal/auth"
	"github.com/hsmpool/hsmpool/internal/hsm"
	"github.com/hsmpool/hsmpool/internal/secret"
	"github.com/hsmpool/hsmpool/internal/softhsm"
	"github.com/hsmpool/hsmpool/internal/state"
	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

// These tests run the core over a real SoftHSM2 token and the real state, with the Raft log
// replaced by direct application (one node, in order) and a clock the test moves.

type applyDirect struct {
	mu  sync.Mutex
	st  *state.State
	idx uint64
}

func (a *applyDirect) Propose(_ context.Context, cmd *pb.Command) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.idx++
	return a.st.Apply(a.idx, proto.Clone(cmd).(*pb.Command))
}

type leader struct{}

func (leader) NodeID() string    { return "n1" }
func (leader) RaftState() string { return "Leader" }
func (leader) IsLeader() bool    { return true }

type admin struct{}

func (admin) Validate(context.Context, string, ...string) (auth.Claims, error) {
	return auth.Claims{ObjectID: "oid-admin"}, nil
}

var tokenOnce struct {
	sync.Once
	module string
	err    error
}

func newTestCore(t *testing.T, now *time.Time) (*Core, *keysServer) {
	t.Helper()
	tokenOnce.Do(func() {
		tokenOnce.module, tokenOnce.err = softhsm.Module()
		if tokenOnce.err != nil {
			return
		}
		dir, err := os.MkdirTemp("", "hsmpool-core-test-")
		if err != nil {
			tokenOnce.err = err
			return
		}
		conf, err := softhsm.WriteConfig(dir)
		if err != nil {
			tokenOnce.err = err
			return
		}
		os.Setenv("SOFTHSM2_CONF", conf)
	})
	if tokenOnce.err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("SoftHSM2 is required in CI: %v", tokenOnce.err)
		}
		t.Skipf("skipping: this test needs SoftHSM2 (make test installs it): %v", tokenOnce.err)
	}
	ctx := context.Background()
	label := fmt.Sprintf("core-%d", time.Now().UnixNano()%1e9)
	if _, err := hsm.InitToken(ctx, tokenOnce.module, label, secret.Copy([]byte("so-pin")), secret.Copy([]byte("user-pin"))); err != nil {
		t.Fatal(err)
	}
	pin := filepath.Join(t.TempDir(), "pin")
	os.WriteFile(pin, []byte("user-pin"), 0o600)
	cfg := hsm.Default()
	cfg.Module, cfg.TokenLabel, cfg.PINFile = tokenOnce.module, label, pin
	pool, err := hsm.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pool.Close() })

	st := state.New()
	repl := &applyDirect{st: st}
	init := &pb.Command{Time: now.Unix(), Op: &pb.Command_InitPool{InitPool: &pb.InitPool{Name: "contoso", TenantId: "t", RecoverableDays: 30,
		Principals: []*pb.PrincipalRecord{{ObjectId: "oid-admin", ClientId: "cid", Administrator: true}}}}}
	if err := repl.Propose(ctx, init); err != nil {
		t.Fatal(err)
	}
	c, err := New(Config{HSM: pool, Cache: hsm.NewCache(64), Replicator: repl, State: st, Tokens: admin{}, Cluster: leader{},
		Audiences: []string{"https://managedhsm.localhost"}, Now: func() time.Time { return *now }})
	if err != nil {
		t.Fatal(err)
	}
	var certs [][]byte
	for i := range 3 {
		k, _ := rsa.GenerateKey(rand.Reader, 2048)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(i + 1)), Subject: pkix.Name{CommonName: fmt.Sprint("officer", i)},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)}
		der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
		certs = append(certs, der)
	}
	if _, err := (&sdServer{c: c}).Download(ctx, &pb.DownloadRequest{Certificates: certs, Quorum: 2}); err != nil {
		t.Fatal(err)
	}
	return c, &keysServer{c: c}
}

func TestHousekeepingRotatesAndPurges(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	c, ks := newTestCore(t, &now)
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer x"))

	k, err := ks.CreateKey(ctx, &pb.CreateKeyRequest{Name: "r1", Kty: "EC-HSM"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ks.CreateKey(ctx, &pb.CreateKeyRequest{Name: "gone", Kty: "oct-HSM"}); err != nil {
		t.Fatal(err)
	}
	if _, err := ks.SetRotationPolicy(ctx, &pb.SetRotationPolicyRequest{Name: "r1", Policy: &pb.RotationPolicy{ExpiryTime: "P60D",
		LifetimeActions: []*pb.LifetimeAction{{TimeAfterCreate: "P30D", Action: "Rotate"}}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := ks.DeleteKey(ctx, &pb.KeyRef{Name: "gone"}); err != nil {
		t.Fatal(err)
	}

	// Nothing is due yet.
	now = now.Add(29 * 24 * time.Hour)
	c.housekeep(ctx)
	if got, _ := ks.GetKey(ctx, &pb.KeyRef{Name: "r1"}); got.Version != k.Version {
		t.Fatalf("rotated after 29 days")
	}
	if _, err := ks.GetDeletedKey(ctx, &pb.KeyRef{Name: "gone"}); err != nil {
		t.Fatalf("purged before its retention ran out: %v", err)
	}

	// After 30 days the policy rotates r1 once; after 30 days of retention the deleted key is purged.
	now = now.Add(2 * 24 * time.Hour)
	c.housekeep(ctx)
	c.housekeep(ctx)
	got, err := ks.GetKey(ctx, &pb.KeyRef{Name: "r1"})
	if err != nil || got.Version == k.Version {
		t.Fatalf("not rotated after 31 days: %v", err)
	}
	if exp := got.Attributes.GetExpires(); exp != now.Add(60*24*time.Hour).Unix() {
		t.Errorf("rotated version expires at %d, want now + P60D", exp)
	}
	vs, _ := ks.ListKeyVersions(ctx, &pb.ListRequest{Name: "r1"})
	if len(vs.Keys) != 2 {
		t.Errorf("%d versions after one due rotation, want 2", len(vs.Keys))
	}
	if _, err := ks.GetDeletedKey(ctx, &pb.KeyRef{Name: "gone"}); err == nil {
		t.Error("the deleted key outlived its retention")
	}

	// The new version works.
	if _, err := ks.Sign(ctx, &pb.KeyOperationRequest{Name: "r1", Alg: "ES256", Value: make([]byte, 32)}); err != nil {
		t.Errorf("sign with the rotated version: %v", err)
	}
}
