package core

import (
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"encoding/base64"
	"fmt"
	"math/big"
	"strconv"
	"time"

	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/hsmpool/hsmpool/internal/fault"
	"github.com/hsmpool/hsmpool/internal/hsm"
	"github.com/hsmpool/hsmpool/internal/rpcerr"
	"github.com/hsmpool/hsmpool/internal/secret"
	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

type keysServer struct {
	pb.UnsafeKeysServer
	c *Core
}

// recoveryLevel is what Azure reports for soft delete without purge protection.
func recoveryLevel(days int32) string {
	if days >= 90 {
		return "Recoverable+Purgeable"
	}
	return "CustomizedRecoverable+Purgeable"
}

// toKey is the client's view of one version.
func toKey(rec *pb.KeyRecord, v *pb.KeyVersion) *pb.Key {
	return &pb.Key{
		Name: rec.Name, Version: v.Version, Kty: v.Kty, KeyOps: v.KeyOps, Public: v.Public,
		Attributes: v.Attributes, Tags: v.Tags, ReleasePolicy: v.ReleasePolicy, Deletion: rec.Deletion,
	}
}

func latest(rec *pb.KeyRecord) *pb.KeyVersion {
	if len(rec.Versions) == 0 {
		return nil
	}
	return rec.Versions[len(rec.Versions)-1]
}

func (s *keysServer) latestKey(rec *pb.KeyRecord, err error) (*pb.Key, error) {
	if err != nil {
		return nil, err
	}
	v := latest(rec)
	if v == nil {
		return nil, rpcerr.New(fault.Internal, "", "key %q has no versions", rec.Name)
	}
	return toKey(rec, v), nil
}

// publicProto stores a public key in the JWK encoding of its fields.
func publicProto(pub any) (*pb.PublicKey, error) {
	switch k := pub.(type) {
	case nil:
		return nil, nil
	case *rsa.PublicKey:
		return &pb.PublicKey{N: k.N.Bytes(), E: big.NewInt(int64(k.E)).Bytes()}, nil
	case *ecdsa.PublicKey:
		u, err := k.Bytes() // 0x04 || X || Y, each coordinate at the curve's size
		if err != nil {
			return nil, err
		}
		size := (len(u) - 1) / 2
		return &pb.PublicKey{Crv: k.Curve.Params().Name, X: u[1 : 1+size], Y: u[1+size:]}, nil
	case *secp256k1.PublicKey:
		u := k.SerializeUncompressed()
		return &pb.PublicKey{Crv: "P-256K", X: u[1:33], Y: u[33:65]}, nil
	}
	return nil, fmt.Errorf("unexpected public key type %T", pub)
}

// publicKey is the inverse of publicProto, for Unwrap's pair check and for local verify.
func publicKey(v *pb.KeyVersion) (any, error) {
	p := v.Public
	t, _, _ := keyType(v.Kty)
	switch t {
	case hsm.RSA:
		e := new(big.Int).SetBytes(p.GetE())
		if !e.IsInt64() || e.Int64() > 1<<31-1 {
			return nil, fmt.Errorf("stored RSA exponent out of range")
		}
		return &rsa.PublicKey{N: new(big.Int).SetBytes(p.GetN()), E: int(e.Int64())}, nil
	case hsm.EC:
		if v.Crv == "P-256K" {
			b := append(append([]byte{4}, p.GetX()...), p.GetY()...)
			return secp256k1.ParsePubKey(b)
		}
		c, ok := goCurves[v.Crv]
		if !ok {
			return nil, fmt.Errorf("stored curve %q unknown", v.Crv)
		}
		return ecdsa.ParseUncompressedPublicKey(c, append(append([]byte{4}, p.GetX()...), p.GetY()...))
	}
	return nil, nil
}

func specOf(v *pb.KeyVersion) hsm.Spec {
	t, _, _ := keyType(v.Kty)
	return hsm.Spec{Type: t, Bits: int(v.Bits), Curve: hsm.Curve(v.Crv)}
}

// createSpec resolves the size or curve of a create request, with Azure's defaults.
func createSpec(t hsm.KeyType, r *pb.CreateKeyRequest) (hsm.Spec, error) {
	switch t {
	case hsm.RSA:
		if r.Crv != "" {
			return hsm.Spec{}, bad("crv is not valid for an RSA key.")
		}
		if r.PublicExponent != 0 && r.PublicExponent != 65537 {
			return hsm.Spec{}, bad("The public exponent %d is not supported; only 65537 is.", r.PublicExponent)
		}
		bits := int(r.KeySize)
		if bits == 0 {
			bits = 2048
		}
		if bits != 2048 && bits != 3072 && bits != 4096 {
			return hsm.Spec{}, bad("The RSA key size %d is not supported: use 2048, 3072 or 4096.", bits)
		}
		return hsm.Spec{Type: t, Bits: bits}, nil
	case hsm.EC:
		crv := r.Crv
		if crv == "" {
			crv = "P-256"
		}
		if _, ok := curveBits[crv]; !ok {
			return hsm.Spec{}, bad("The curve %q is not supported: use P-256, P-256K, P-384 or P-521.", trunc(crv))
		}
		if r.KeySize != 0 && int(r.KeySize) != curveBits[crv] {
			return hsm.Spec{}, bad("key_size %d does not match the curve %s.", r.KeySize, crv)
		}
		return hsm.Spec{Type: t, Curve: hsm.Curve(crv)}, nil
	default:
		if r.Crv != "" || r.PublicExponent != 0 {
			return hsm.Spec{}, bad("crv and public_exponent are not valid for an oct key.")
		}
		bits := int(r.KeySize)
		if bits == 0 {
			bits = 256
		}
		if bits != 128 && bits != 192 && bits != 256 {
			return hsm.Spec{}, bad("The AES key size %d is not supported: use 128, 192 or 256.", bits)
		}
		return hsm.Spec{Type: t, Bits: bits}, nil
	}
}

var curveBits = map[string]int{"P-256": 256, "P-256K": 256, "P-384": 384, "P-521": 521}

// newVersion wraps k under the KEK and describes it as a stored version.
func (c *Core) newVersion(ctx context.Context, k *hsm.Key, kty string, ops []string, a *pb.KeyAttributes, tags map[string]string, now int64) (*pb.KeyVersion, error) {
	kek := c.kek.Load()
	blob, err := c.hsm.Wrap(ctx, kek, k)
	if err != nil {
		return nil, err
	}
	pub, err := publicProto(k.Public())
	if err != nil {
		return nil, err
	}
	spec := k.Spec()
	days := int32(90)
	if p := c.st.Pool(); p != nil && p.RecoverableDays != 0 {
		days = p.RecoverableDays
	}
	attrs := &pb.KeyAttributes{Enabled: proto.Bool(true), Created: now, Updated: now, RecoverableDays: days,
		RecoveryLevel: recoveryLevel(days), Exportable: proto.Bool(false)}
	if a != nil {
		if a.Enabled != nil {
			attrs.Enabled = proto.Bool(a.GetEnabled())
		}
		if a.GetNotBefore() != 0 {
			attrs.NotBefore = proto.Int64(a.GetNotBefore())
		}
		if a.GetExpires() != 0 {
			attrs.Expires = proto.Int64(a.GetExpires())
		}
	}
	v := &pb.KeyVersion{Version: newID(), Kty: kty, KeyOps: ops, Public: pub, Wrapped: blob, Attributes: attrs, Tags: tags}
	if spec.Type == hsm.EC {
		v.Crv = string(spec.Curve)
	} else {
		v.Bits = int32(spec.Bits)
	}
	return v, nil
}

// putVersion proposes a new version and answers from the state. The version was applied when
// propose returns; if a write applied after it (a delete by another client) hides it from the
// state already, the answer is the version as applied, not a 404 for a create that took effect.
func (c *Core) putVersion(ctx context.Context, name string, v *pb.KeyVersion, now int64) (*pb.Key, error) {
	cmd := &pb.Command{Op: &pb.Command_PutKeyVersion{PutKeyVersion: &pb.PutKeyVersion{Name: name, Version: v, MaxVersions: maxVersions}}}
	if err := c.propose(ctx, time.Unix(now, 0), cmd); err != nil {
		return nil, err
	}
	rec, got, err := c.st.Version(name, v.Version)
	if err != nil {
		return toKey(&pb.KeyRecord{Name: name}, v), nil
	}
	return toKey(rec, got), nil
}

func (s *keysServer) CreateKey(ctx context.Context, r *pb.CreateKeyRequest) (*pb.Key, error) {
	c := s.c
	t, kty, _ := keyType(r.Kty)
	spec, err := createSpec(t, r)
	if err != nil {
		return nil, err
	}
	ops, err := checkOps(t, r.KeyOps)
	if err != nil {
		return nil, err
	}
	k, err := c.hsm.Generate(ctx, spec, hsm.UseAll)
	if err != nil {
		return nil, err
	}
	defer k.Destroy(context.WithoutCancel(ctx))
	now := c.now().Unix()
	v, err := c.newVersion(ctx, k, kty, ops, r.Attributes, r.Tags, now)
	if err != nil {
		return nil, err
	}
	return c.putVersion(ctx, r.Name, v, now)
}

// A create, import or restore does not refuse a soft-deleted name from this node's state: on a
// follower that state may not yet hold a purge another node acknowledged, and the refusal would
// contradict it (TestCluster5Faults found such 409s). The state refuses the name on apply, on
// every node alike, with the same 409 (ObjectIsDeletedButRecoverable).

func (s *keysServer) ImportKey(ctx context.Context, r *pb.ImportKeyRequest) (*pb.Key, error) {
	c := s.c
	jwk := r.Key
	m := &hsm.Material{N: jwk.N, E: jwk.E, X: jwk.X, Y: jwk.Y,
		D: secret.New(jwk.D), P: secret.New(jwk.P), Q: secret.New(jwk.Q), DP: secret.New(jwk.Dp),
		DQ: secret.New(jwk.Dq), QI: secret.New(jwk.Qi), K: secret.New(jwk.K)}
	defer m.Wipe() // the request's private fields share these arrays
	if len(jwk.KeyHsm) > 0 {
		return nil, rpcerr.New(fault.BadParameter, "BadParameter", "BYOK import (key_hsm) is not supported by this pool yet; import the key's private parts over TLS instead.")
	}
	t, kty, err := keyType(jwk.Kty)
	if err != nil {
		return nil, err
	}
	var spec hsm.Spec
	switch t {
	case hsm.RSA:
		spec = hsm.Spec{Type: t, Bits: new(big.Int).SetBytes(jwk.N).BitLen()}
		if len(jwk.D) == 0 {
			return nil, bad("The RSA key has no private exponent d: only private keys can be imported.")
		}
	case hsm.EC:
		if _, ok := curveBits[jwk.Crv]; !ok {
			return nil, bad("The curve %q is not supported: use P-256, P-256K, P-384 or P-521.", trunc(jwk.Crv))
		}
		spec = hsm.Spec{Type: t, Curve: hsm.Curve(jwk.Crv)}
		if len(jwk.D) == 0 {
			return nil, bad("The EC key has no private scalar d: only private keys can be imported.")
		}
	default:
		spec = hsm.Spec{Type: t, Bits: len(jwk.K) * 8}
		if len(jwk.K) == 0 {
			return nil, bad("The oct key has no k.")
		}
	}
	if err := spec.Validate(); err != nil {
		return nil, rpcerr.New(fault.BadParameter, "BadParameter", "The key cannot be imported: %v", err)
	}
	var ops *pb.KeyOps
	if len(jwk.KeyOps) > 0 {
		ops = &pb.KeyOps{Ops: jwk.KeyOps}
	}
	opList, err := checkOps(t, ops)
	if err != nil {
		return nil, err
	}
	k, err := c.hsm.Import(ctx, spec, hsm.UseAll, m)
	if err != nil {
		return nil, err
	}
	defer k.Destroy(context.WithoutCancel(ctx))
	now := c.now().Unix()
	v, err := c.newVersion(ctx, k, kty, opList, r.Attributes, r.Tags, now)
	if err != nil {
		return nil, err
	}
	return c.putVersion(ctx, r.Name, v, now)
}

func (s *keysServer) GetKey(ctx context.Context, r *pb.KeyRef) (*pb.Key, error) {
	rec, v, err := s.c.st.Version(r.Name, r.Version)
	if err != nil {
		return nil, err
	}
	return toKey(rec, v), nil
}

// page tokens are opaque to clients: base64url of the last name (or version index) of a page.
func encodeToken(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func decodeToken(t string) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(t)
	if err != nil {
		return "", bad("The $skiptoken is not valid.")
	}
	return string(b), nil
}

func pageSize(n int32) int {
	if n <= 0 {
		return maxPage
	}
	return int(n)
}

func (s *keysServer) list(r *pb.ListRequest, deleted bool) (*pb.KeyList, error) {
	after, err := decodeToken(r.PageToken)
	if err != nil {
		return nil, err
	}
	recs, more := s.c.st.List(deleted, after, pageSize(r.MaxResults))
	out := &pb.KeyList{}
	for _, rec := range recs {
		if v := latest(rec); v != nil {
			out.Keys = append(out.Keys, toKey(rec, v))
		}
	}
	if more && len(recs) > 0 {
		out.NextPageToken = encodeToken(recs[len(recs)-1].Name)
	}
	return out, nil
}

func (s *keysServer) ListKeys(ctx context.Context, r *pb.ListRequest) (*pb.KeyList, error) {
	return s.list(r, false)
}

func (s *keysServer) ListDeletedKeys(ctx context.Context, r *pb.ListRequest) (*pb.KeyList, error) {
	return s.list(r, true)
}

func (s *keysServer) ListKeyVersions(ctx context.Context, r *pb.ListRequest) (*pb.KeyList, error) {
	rec, err := s.c.st.Key(r.Name)
	if err != nil {
		return nil, err
	}
	start := 0
	if r.PageToken != "" {
		t, err := decodeToken(r.PageToken)
		if err != nil {
			return nil, err
		}
		if start, err = strconv.Atoi(t); err != nil || start < 0 {
			return nil, bad("The $skiptoken is not valid.")
		}
	}
	n := pageSize(r.MaxResults)
	out := &pb.KeyList{}
	end := min(start+n, len(rec.Versions))
	for i := start; i < end; i++ {
		out.Keys = append(out.Keys, toKey(rec, rec.Versions[i]))
	}
	if end < len(rec.Versions) {
		out.NextPageToken = encodeToken(strconv.Itoa(end))
	}
	return out, nil
}

func (s *keysServer) UpdateKey(ctx context.Context, r *pb.UpdateKeyRequest) (*pb.Key, error) {
	c := s.c
	var v *pb.KeyVersion
	if err := c.lookForWrite(ctx, func() (err error) { _, v, err = c.st.Version(r.Name, r.Version); return err }); err != nil {
		return nil, err
	}
	t, _, _ := keyType(v.Kty)
	// Without a version the command names none: the state that applies it updates the version
	// current then. This node's state may lag behind a rotation another node acknowledged, and a
	// PATCH must not land on the version that was current here.
	up := &pb.UpdateKeyVersion{Name: r.Name, Version: r.Version, Tags: r.Tags}
	if r.KeyOps != nil {
		ops, err := checkOps(t, r.KeyOps)
		if err != nil {
			return nil, err
		}
		up.KeyOps = &pb.KeyOps{Ops: ops}
	}
	if a := r.Attributes; a != nil {
		up.Enabled = a.Enabled
		up.NotBefore = a.NotBefore
		up.Expires = a.Expires
		nbf, exp := v.Attributes.GetNotBefore(), v.Attributes.GetExpires()
		if a.NotBefore != nil {
			nbf = a.GetNotBefore()
		}
		if a.Expires != nil {
			exp = a.GetExpires()
		}
		if nbf != 0 && exp != 0 && nbf > exp {
			return nil, bad("The key's nbf (%d) is after its exp (%d).", nbf, exp)
		}
	}
	if err := c.propose(ctx, c.now(), &pb.Command{Op: &pb.Command_UpdateKeyVersion{UpdateKeyVersion: up}}); err != nil {
		return nil, err
	}
	return s.GetKey(ctx, &pb.KeyRef{Name: r.Name, Version: r.Version})
}

func (s *keysServer) DeleteKey(ctx context.Context, r *pb.KeyRef) (*pb.Key, error) {
	c := s.c
	if err := c.propose(ctx, c.now(), &pb.Command{Op: &pb.Command_DeleteKey{DeleteKey: &pb.DeleteKey{Name: r.Name}}}); err != nil {
		return nil, err
	}
	return s.latestKey(c.st.DeletedKey(r.Name))
}

func (s *keysServer) GetDeletedKey(ctx context.Context, r *pb.KeyRef) (*pb.Key, error) {
	return s.latestKey(s.c.st.DeletedKey(r.Name))
}

func (s *keysServer) RecoverDeletedKey(ctx context.Context, r *pb.KeyRef) (*pb.Key, error) {
	c := s.c
	if err := c.propose(ctx, c.now(), &pb.Command{Op: &pb.Command_RecoverKey{RecoverKey: &pb.RecoverKey{Name: r.Name}}}); err != nil {
		return nil, err
	}
	return s.latestKey(c.st.Key(r.Name))
}

func (s *keysServer) PurgeDeletedKey(ctx context.Context, r *pb.KeyRef) (*emptypb.Empty, error) {
	c := s.c
	// The state that applies the purge decides whether the key is deleted (404 otherwise): this
	// node's may lag behind a delete another node acknowledged. The local record, deleted or not
	// yet, names the versions whose handles this node drops.
	rec, err := c.st.DeletedKey(r.Name)
	if err != nil {
		rec, _ = c.st.Key(r.Name)
	}
	if err := c.propose(ctx, c.now(), &pb.Command{Op: &pb.Command_PurgeKey{PurgeKey: &pb.PurgeKey{Name: r.Name}}}); err != nil {
		return nil, err
	}
	if rec != nil {
		c.forget(ctx, rec)
	}
	return &emptypb.Empty{}, nil
}

// forget drops the unwrapped handles of a key's versions from this node's cache.
func (c *Core) forget(ctx context.Context, rec *pb.KeyRecord) {
	for _, v := range rec.Versions {
		c.cache.Invalidate(ctx, cacheID(rec.Name, v.Version, usage(v.KeyOps)))
	}
}

func (s *keysServer) RotateKey(ctx context.Context, r *pb.KeyRef) (*pb.Key, error) {
	return s.c.rotate(ctx, r.Name, true)
}

// rotate makes a new version like the current one. On demand (the REST call) a rotation policy
// must exist, as on a Managed HSM; the leader's scheduler rotates keys whose policy is due.
func (c *Core) rotate(ctx context.Context, name string, onDemand bool) (*pb.Key, error) {
	var rec *pb.KeyRecord
	if err := c.lookForWrite(ctx, func() (err error) { rec, err = c.st.Key(name); return err }); err != nil {
		return nil, err
	}
	if onDemand && rec.RotationPolicy == nil {
		return nil, bad("Key %s has no rotation policy: on a Managed HSM a rotation policy must be set before the key can be rotated.", name)
	}
	if len(rec.Versions) >= maxVersions {
		return nil, bad("Key %s has reached the maximum of %d versions.", name, maxVersions)
	}
	cur := latest(rec)
	k, err := c.hsm.Generate(ctx, specOf(cur), hsm.UseAll)
	if err != nil {
		return nil, err
	}
	defer k.Destroy(context.WithoutCancel(ctx))
	now := c.now()
	var attrs *pb.KeyAttributes
	if p := rec.RotationPolicy; p != nil && p.ExpiryTime != "" {
		d, err := parseDuration(p.ExpiryTime)
		if err == nil {
			attrs = &pb.KeyAttributes{Expires: proto.Int64(now.Add(d).Unix())}
		}
	}
	v, err := c.newVersion(ctx, k, cur.Kty, cur.KeyOps, attrs, cur.Tags, now.Unix())
	if err != nil {
		return nil, err
	}
	return c.putVersion(ctx, name, v, now.Unix())
}

func (s *keysServer) GetRotationPolicy(ctx context.Context, r *pb.KeyRef) (*pb.RotationPolicy, error) {
	rec, err := s.c.st.Key(r.Name)
	if err != nil {
		return nil, err
	}
	if rec.RotationPolicy == nil {
		return &pb.RotationPolicy{}, nil
	}
	return rec.RotationPolicy, nil
}

func (s *keysServer) SetRotationPolicy(ctx context.Context, r *pb.SetRotationPolicyRequest) (*pb.RotationPolicy, error) {
	c := s.c
	p, err := checkPolicy(r.Policy)
	if err != nil {
		return nil, err
	}
	if err := c.propose(ctx, c.now(), &pb.Command{Op: &pb.Command_SetRotationPolicy{SetRotationPolicy: &pb.SetRotationPolicy{Name: r.Name, Policy: p}}}); err != nil {
		return nil, err
	}
	return s.GetRotationPolicy(ctx, &pb.KeyRef{Name: r.Name})
}

func (s *keysServer) GetRandomBytes(ctx context.Context, r *pb.RandomRequest) (*pb.Blob, error) {
	b, err := s.c.hsm.Random(ctx, int(r.Count))
	if err != nil {
		return nil, err
	}
	return &pb.Blob{Value: b}, nil
}
