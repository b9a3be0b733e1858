package core

import (
	"context"
	"crypto/elliptic"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hsmpool/hsmpool/internal/fault"
	"github.com/hsmpool/hsmpool/internal/hsm"
	"github.com/hsmpool/hsmpool/internal/rpcerr"
	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

var goCurves = map[string]elliptic.Curve{"P-256": elliptic.P256(), "P-384": elliptic.P384(), "P-521": elliptic.P521()}

// cacheID names an unwrapped key in the cache: "name/version/usage". It runs on every crypto
// operation, hence no fmt.
func cacheID(name, version string, u hsm.Usage) string {
	return name + "/" + version + "/" + strconv.FormatUint(uint64(u), 10)
}

func forbidden(format string, args ...any) error {
	return rpcerr.New(fault.Forbidden, "Forbidden", format, args...)
}

// usable checks that op may run on version v now: enabled, inside nbf..exp, and allowed by key_ops.
// The state is this node's, so a key disabled through any node stops working here as soon as the
// command is applied here.
func usable(name string, v *pb.KeyVersion, op string, now time.Time) error {
	a := v.Attributes
	switch {
	case !a.GetEnabled():
		return forbidden("Operation %s is not allowed on a disabled key (%s/%s).", op, name, v.Version)
	case a.GetNotBefore() != 0 && now.Unix() < a.GetNotBefore():
		return forbidden("Operation %s is not allowed before the key's nbf (%s/%s).", op, name, v.Version)
	case a.GetExpires() != 0 && now.Unix() >= a.GetExpires():
		return forbidden("Operation %s is not allowed on an expired key (%s/%s).", op, name, v.Version)
	case !slices.Contains(v.KeyOps, op):
		return forbidden("Operation %s is not permitted by the key_ops of %s/%s.", op, name, v.Version)
	}
	return nil
}

// withKey runs fn with version (name, version) of a live key unwrapped in this node's token,
// after checking that op may run on it.
func (c *Core) withKey(ctx context.Context, name, version, op string, fn func(k *hsm.Key) error) (*pb.KeyVersion, error) {
	_, v, err := c.st.Version(name, version)
	if err != nil {
		return nil, err
	}
	if err := usable(name, v, op, c.now()); err != nil {
		return nil, err
	}
	u := usage(v.KeyOps)
	err = c.cache.Use(ctx, cacheID(name, v.Version, u), func(ctx context.Context) (*hsm.Key, error) {
		pub, err := publicKey(v)
		if err != nil {
			return nil, fmt.Errorf("stored public key of %s/%s: %w: %w", name, v.Version, err, fault.Internal)
		}
		return c.hsm.Unwrap(ctx, c.kek.Load(), v.Wrapped, specOf(v), u, pub)
	}, fn)
	return v, err
}

// algError turns the HSM layer's complaints about an algorithm into the service's 400.
// The HSM layer's messages end with their kind (": bad parameter"), which clients need not see.
func algError(err error) error {
	switch k := fault.Of(err); k {
	case fault.BadParameter, fault.Unsupported:
		return rpcerr.New(fault.BadParameter, "BadParameter", "%s", strings.TrimSuffix(err.Error(), ": "+k.Error()))
	}
	return err
}

// keyOp runs op on the key r names and returns what fn made of it as the operation's value.
func (s *keysServer) keyOp(ctx context.Context, r *pb.KeyOperationRequest, op string, fn func(k *hsm.Key) ([]byte, error)) (*pb.KeyOperationResult, error) {
	var out []byte
	v, err := s.c.withKey(ctx, r.Name, r.Version, op, func(k *hsm.Key) (err error) {
		out, err = fn(k)
		return algError(err)
	})
	if err != nil {
		return nil, err
	}
	return &pb.KeyOperationResult{Name: r.Name, Version: v.Version, Value: out}, nil
}

func (s *keysServer) Sign(ctx context.Context, r *pb.KeyOperationRequest) (*pb.KeyOperationResult, error) {
	return s.keyOp(ctx, r, "sign", func(k *hsm.Key) ([]byte, error) { return s.c.hsm.Sign(ctx, k, hsm.Alg(r.Alg), r.Value) })
}

func (s *keysServer) Verify(ctx context.Context, r *pb.VerifyRequest) (*pb.VerifyResult, error) {
	var ok bool
	_, err := s.c.withKey(ctx, r.Name, r.Version, "verify", func(k *hsm.Key) (err error) {
		ok, err = s.c.hsm.Verify(ctx, k, hsm.Alg(r.Alg), r.Digest, r.Signature)
		return algError(err)
	})
	if err != nil {
		return nil, err
	}
	return &pb.VerifyResult{Value: ok}, nil
}

func (s *keysServer) Encrypt(ctx context.Context, r *pb.KeyOperationRequest) (*pb.KeyOperationResult, error) {
	var ct hsm.Ciphertext
	res, err := s.keyOp(ctx, r, "encrypt", func(k *hsm.Key) (_ []byte, err error) {
		ct, err = s.c.hsm.Encrypt(ctx, k, hsm.Alg(r.Alg), r.Value, r.Iv, r.Aad)
		return ct.Value, err
	})
	if err != nil {
		return nil, err
	}
	res.Iv, res.Tag, res.Aad = ct.IV, ct.Tag, r.Aad
	return res, nil
}

func (s *keysServer) Decrypt(ctx context.Context, r *pb.KeyOperationRequest) (*pb.KeyOperationResult, error) {
	return s.keyOp(ctx, r, "decrypt", func(k *hsm.Key) ([]byte, error) {
		return s.c.hsm.Decrypt(ctx, k, hsm.Alg(r.Alg), hsm.Ciphertext{Value: r.Value, IV: r.Iv, Tag: r.Tag}, r.Aad)
	})
}

func (s *keysServer) WrapKey(ctx context.Context, r *pb.KeyOperationRequest) (*pb.KeyOperationResult, error) {
	return s.keyOp(ctx, r, "wrapKey", func(k *hsm.Key) ([]byte, error) { return s.c.hsm.WrapKey(ctx, k, hsm.Alg(r.Alg), r.Value) })
}

func (s *keysServer) UnwrapKey(ctx context.Context, r *pb.KeyOperationRequest) (*pb.KeyOperationResult, error) {
	return s.keyOp(ctx, r, "unwrapKey", func(k *hsm.Key) ([]byte, error) { return s.c.hsm.UnwrapKey(ctx, k, hsm.Alg(r.Alg), r.Value) })
}
