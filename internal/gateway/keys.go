package gateway

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"google.golang.org/grpc"

	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

// The keys API (azure-mhsm-api.md §3). Each handler is one gRPC call; the core validates names,
// enums and sizes, the gateway only the JSON.

func (c *call) ref() *pb.KeyRef { return &pb.KeyRef{Name: c.name, Version: c.version} }

// keyBundle and deletedKeyBundle take a gRPC call's results as they come.
func (c *call) keyBundle(k *pb.Key, err error) (any, error) {
	if err != nil {
		return nil, err
	}
	return c.bundle(k, false), nil
}

func (c *call) deletedKeyBundle(k *pb.Key, err error) (any, error) {
	if err != nil {
		return nil, err
	}
	return c.bundle(k, true), nil
}

func (g *Gateway) createKey(c *call) (any, error) {
	var p keyParams
	if err := g.decode(c, &p); err != nil {
		return nil, err
	}
	return c.keyBundle(g.keys.CreateKey(c.ctx, &pb.CreateKeyRequest{
		Name: c.name, Kty: p.Kty, KeySize: p.KeySize, PublicExponent: p.PublicExponent, Crv: p.Crv,
		KeyOps: keyOps(p.KeyOps), Attributes: p.Attributes.proto(), Tags: p.Tags, ReleasePolicy: p.ReleasePolicy.proto(),
	}))
}

func (g *Gateway) importKey(c *call) (any, error) {
	var p importParams
	err := g.decode(c, &p)
	defer p.Key.wipe()
	if err != nil {
		return nil, err
	}
	return c.keyBundle(g.keys.ImportKey(c.ctx, &pb.ImportKeyRequest{
		Name: c.name, Hsm: p.HSM, Key: p.Key.proto(), Attributes: p.Attributes.proto(), Tags: p.Tags,
		ReleasePolicy: p.ReleasePolicy.proto(),
	}))
}

func (g *Gateway) updateKey(c *call) (any, error) {
	var p keyParams
	if err := g.decode(c, &p); err != nil {
		return nil, err
	}
	req := &pb.UpdateKeyRequest{
		Name: c.name, Version: c.version, KeyOps: keyOps(p.KeyOps), Attributes: p.Attributes.proto(),
		ReleasePolicy: p.ReleasePolicy.proto(),
	}
	if p.Tags != nil { // present, even {}: replace the tags
		req.Tags = &pb.Tags{Tags: p.Tags}
	}
	return c.keyBundle(g.keys.UpdateKey(c.ctx, req))
}

func (g *Gateway) getKey(c *call) (any, error) { return c.keyBundle(g.keys.GetKey(c.ctx, c.ref())) }

func (g *Gateway) deleteKey(c *call) (any, error) {
	return c.deletedKeyBundle(g.keys.DeleteKey(c.ctx, c.ref()))
}

func (g *Gateway) getDeletedKey(c *call) (any, error) {
	return c.deletedKeyBundle(g.keys.GetDeletedKey(c.ctx, c.ref()))
}

func (g *Gateway) recoverDeletedKey(c *call) (any, error) {
	return c.keyBundle(g.keys.RecoverDeletedKey(c.ctx, c.ref()))
}

func (g *Gateway) purgeDeletedKey(c *call) (any, error) {
	if _, err := g.keys.PurgeDeletedKey(c.ctx, c.ref()); err != nil {
		return nil, err
	}
	c.status = http.StatusNoContent
	return nil, nil
}

func (g *Gateway) rotateKey(c *call) (any, error) {
	return c.keyBundle(g.keys.RotateKey(c.ctx, c.ref()))
}

func (g *Gateway) backupKey(c *call) (any, error) {
	b, err := g.keys.BackupKey(c.ctx, c.ref())
	if err != nil {
		return nil, err
	}
	return blob{Value: b.Value}, nil
}

func (g *Gateway) restoreKey(c *call) (any, error) {
	var p blob
	if err := g.decode(c, &p); err != nil {
		return nil, err
	}
	return c.keyBundle(g.keys.RestoreKey(c.ctx, &pb.Blob{Value: p.Value}))
}

func (g *Gateway) getRandomBytes(c *call) (any, error) {
	var p randomParams
	if err := g.decode(c, &p); err != nil {
		return nil, err
	}
	b, err := g.keys.GetRandomBytes(c.ctx, &pb.RandomRequest{Count: p.Count})
	if err != nil {
		return nil, err
	}
	return blob{Value: b.Value}, nil
}

func (g *Gateway) getRotationPolicy(c *call) (any, error) {
	p, err := g.keys.GetRotationPolicy(c.ctx, c.ref())
	if err != nil {
		return nil, err
	}
	return c.rotationPolicy(p), nil
}

func (g *Gateway) setRotationPolicy(c *call) (any, error) {
	var p rotationPolicy
	if err := g.decode(c, &p); err != nil {
		return nil, err
	}
	out, err := g.keys.SetRotationPolicy(c.ctx, &pb.SetRotationPolicyRequest{Name: c.name, Policy: p.proto()})
	if err != nil {
		return nil, err
	}
	return c.rotationPolicy(out), nil
}

// keyOp serves encrypt, decrypt, wrapkey, unwrapkey and sign, which share their models.
func keyOp(rpc func(pb.KeysClient, context.Context, *pb.KeyOperationRequest, ...grpc.CallOption) (*pb.KeyOperationResult, error)) handler {
	return func(g *Gateway, c *call) (any, error) {
		var p keyOpParams
		if err := g.decodeKeyOp(c, &p); err != nil {
			return nil, err
		}
		r, err := rpc(g.keys, c.ctx, &pb.KeyOperationRequest{
			Name: c.name, Version: c.version, Alg: p.Alg, Value: p.Value, Iv: p.IV, Aad: p.AAD, Tag: p.Tag,
		})
		if err != nil {
			return nil, err
		}
		return &keyOpResult{KID: c.kid(r.Name, r.Version), Value: r.Value, IV: r.Iv, Tag: r.Tag, AAD: r.Aad}, nil
	}
}

func (g *Gateway) verify(c *call) (any, error) {
	var p keyOpParams
	if err := g.decodeKeyOp(c, &p); err != nil {
		return nil, err
	}
	r, err := g.keys.Verify(c.ctx, &pb.VerifyRequest{
		Name: c.name, Version: c.version, Alg: p.Alg, Digest: p.Digest, Signature: p.Value,
	})
	if err != nil {
		return nil, err
	}
	return verifyResult{Value: r.Value}, nil
}

type listRPC func(context.Context, *pb.ListRequest, ...grpc.CallOption) (*pb.KeyList, error)

func (g *Gateway) getKeys(c *call) (any, error) {
	return c.list(g.keys.ListKeys, false, false, "keys")
}

func (g *Gateway) getKeyVersions(c *call) (any, error) {
	return c.list(g.keys.ListKeyVersions, true, false, "keys", c.name, "versions")
}

func (g *Gateway) getDeletedKeys(c *call) (any, error) {
	return c.list(g.keys.ListDeletedKeys, false, true, "deletedkeys")
}

// list serves one page of a list. Items carry a versioned kid only in the versions list. The
// nextLink is absolute and carries api-version, because Go follows it without adding one.
func (c *call) list(rpc listRPC, versioned, deleted bool, path ...string) (any, error) {
	req := &pb.ListRequest{Name: c.name, PageToken: c.query.Get("$skiptoken")}
	if c.query.Has("maxresults") {
		n, err := strconv.Atoi(c.query.Get("maxresults"))
		if err != nil || n < 1 || n > 25 {
			return nil, badParameter("maxresults must be an integer from 1 to 25.")
		}
		req.MaxResults = int32(n)
	}
	l, err := rpc(c.ctx, req)
	if err != nil {
		return nil, err
	}
	out := keyList{Value: make([]keyItem, 0, len(l.Keys))}
	for _, k := range l.Keys {
		out.Value = append(out.Value, c.item(k, versioned, deleted))
	}
	if l.NextPageToken != "" {
		q := "?api-version=" + url.QueryEscape(c.apiVersion) + "&$skiptoken=" + url.QueryEscape(l.NextPageToken)
		if req.MaxResults != 0 {
			q += "&maxresults=" + strconv.Itoa(int(req.MaxResults))
		}
		out.NextLink = c.url(path...) + q
	}
	return out, nil
}
