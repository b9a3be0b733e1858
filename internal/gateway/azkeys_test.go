package gateway

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"google.golang.org/protobuf/proto"

	"github.com/hsmpool/hsmpool/internal/fault"
	"github.com/hsmpool/hsmpool/internal/rpcerr"
	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

// staticCredential hands out a fixed token and records what the SDK asked for.
type staticCredential struct {
	mu   sync.Mutex
	asks []policy.TokenRequestOptions
}

func (c *staticCredential) GetToken(_ context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.asks = append(c.asks, o)
	return azcore.AccessToken{Token: "sdk-token", ExpiresOn: time.Now().Add(time.Hour)}, nil
}

// TestAzureSDK runs the real Go SDK against the gateway, so that a JSON shape or a URL the SDK
// cannot take fails here.
func TestAzureSDK(t *testing.T) {
	e := newEnv(t)
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	point, err := priv.PublicKey.Bytes() // 0x04 || X || Y
	if err != nil {
		t.Fatal(err)
	}
	key := func(name string) *pb.Key {
		k := sampleKey(name, ver1)
		k.Public.X, k.Public.Y = point[1:33], point[33:]
		return k
	}
	e.core.on("Keys/CreateKey", func(req proto.Message) (proto.Message, error) {
		return key(req.(*pb.CreateKeyRequest).Name), nil
	})
	e.core.on("Keys/GetKey", func(req proto.Message) (proto.Message, error) {
		if name := req.(*pb.KeyRef).Name; name != "k1" {
			return nil, rpcerr.Status(rpcerr.New(fault.NotFound, "KeyNotFound", "Key not found: %s", name))
		}
		return key("k1"), nil
	})
	e.core.on("Keys/Sign", func(req proto.Message) (proto.Message, error) {
		r := req.(*pb.KeyOperationRequest)
		sig, err := ecdsa.SignASN1(rand.Reader, priv, r.Value)
		return &pb.KeyOperationResult{Name: r.Name, Version: ver1, Value: sig}, err
	})
	const token2 = "page 2/of+2"
	e.core.on("Keys/ListKeys", func(req proto.Message) (proto.Message, error) {
		switch req.(*pb.ListRequest).PageToken {
		case "":
			return &pb.KeyList{Keys: []*pb.Key{key("k1"), key("k2")}, NextPageToken: token2}, nil
		case token2:
			return &pb.KeyList{Keys: []*pb.Key{key("k3")}}, nil
		}
		return nil, rpcerr.Status(rpcerr.New(fault.BadParameter, "", "bad page token"))
	})

	cred := &staticCredential{}
	client, err := azkeys.NewClient(e.srv.URL, cred, &azkeys.ClientOptions{
		ClientOptions: azcore.ClientOptions{
			Transport: e.srv.Client(),
			Retry:     policy.RetryOptions{MaxRetries: -1},
		},
		// The vault is https://127.0.0.1:port, not a host under the challenge's resource.
		DisableChallengeResourceVerification: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	created, err := client.CreateKey(ctx, "k1", azkeys.CreateKeyParameters{
		Kty: to.Ptr(azkeys.KeyTypeECHSM), Curve: to.Ptr(azkeys.CurveNameP256),
	}, nil)
	if err != nil {
		t.Fatalf("CreateKey: %v", err)
	}
	if created.Key.KID.Name() != "k1" || created.Key.KID.Version() != ver1 || *created.Key.Kty != azkeys.KeyTypeECHSM ||
		!slices.Equal(created.Key.X, point[1:33]) || !slices.Equal(created.Key.Y, point[33:]) ||
		!created.Attributes.Created.Equal(time.Unix(1700000000, 0)) || *created.Attributes.RecoverableDays != 7 {
		t.Errorf("CreateKey decoded as %+v %+v", created.Key, created.Attributes)
	}

	got, err := client.GetKey(ctx, "k1", "", nil)
	if err != nil {
		t.Fatalf("GetKey: %v", err)
	}
	if *got.Key.KID != *created.Key.KID {
		t.Errorf("GetKey kid %s, want %s", *got.Key.KID, *created.Key.KID)
	}

	digest := sha256.Sum256([]byte("hello"))
	signed, err := client.Sign(ctx, "k1", "", azkeys.SignParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmES256), Value: digest[:]}, nil)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append([]byte{4}, slices.Concat(got.Key.X, got.Key.Y)...))
	if err != nil {
		t.Fatal(err)
	}
	if signed.KID.Version() != ver1 || !ecdsa.VerifyASN1(pub, digest[:], signed.Result) {
		t.Errorf("Sign: kid %s, signature does not verify with the key GetKey returned", *signed.KID)
	}

	var names []string
	pages := 0
	for pager := client.NewListKeyPropertiesPager(nil); pager.More(); {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatalf("page %d: %v", pages+1, err)
		}
		pages++
		for _, k := range page.Value {
			if k.KID.Version() != "" {
				t.Errorf("list item kid %s has a version", *k.KID)
			}
			names = append(names, k.KID.Name())
		}
	}
	if pages != 2 || !slices.Equal(names, []string{"k1", "k2", "k3"}) {
		t.Errorf("listed %d pages: %v", pages, names)
	}

	_, err = client.GetKey(ctx, "missing", "", nil)
	var re *azcore.ResponseError
	if !errors.As(err, &re) || re.StatusCode != http.StatusNotFound || re.ErrorCode != "KeyNotFound" {
		t.Errorf("GetKey(missing): %v", err)
	}

	// The challenge told the SDK the tenant and the scope, and the token reached the core.
	cred.mu.Lock()
	defer cred.mu.Unlock()
	if len(cred.asks) == 0 || cred.asks[0].TenantID != "tenant-1" || !slices.Equal(cred.asks[0].Scopes, []string{testResource + "/.default"}) {
		t.Errorf("token requests %+v", cred.asks)
	}
	for _, c := range e.core.reset() {
		if got := c.md.Get("authorization"); len(got) != 1 || got[0] != "Bearer sdk-token" {
			t.Errorf("%s: authorization %q", c.method, got)
		}
	}
}
