package hsm

import (
	"context"
	"crypto/rand"
	"testing"

	"github.com/miekg/pkcs11"
)

// The benchmarks compare raw miekg/pkcs11 calls with the same operation through the layer,
// on one SoftHSM2 token, serially and from GOMAXPROCS goroutines. The raw side does the
// same PKCS#11 calls the layer must do for the Azure operation (for A256GCM that includes
// drawing the IV from the token), so the difference is the layer's own cost: the session
// pool, validation and result shaping. make bench runs them with -cpu 1,2.

type benchOp struct {
	raw   func(c *pkcs11.Ctx, s pkcs11.SessionHandle) error
	layer func(ctx context.Context) error
}

func runBench(b *testing.B, op benchOp) {
	p := benchPool
	c := p.mod.ctx
	rawSession := func(b *testing.B) pkcs11.SessionHandle {
		s, err := c.OpenSession(p.slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
		if err != nil {
			b.Fatal(err)
		}
		return s
	}
	b.Run("raw", func(b *testing.B) {
		s := rawSession(b)
		defer c.CloseSession(s)
		for b.Loop() {
			if err := op.raw(c, s); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("layer", func(b *testing.B) {
		ctx := context.Background()
		for b.Loop() {
			if err := op.layer(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("raw-parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			s := rawSession(b)
			defer c.CloseSession(s)
			for pb.Next() {
				if err := op.raw(c, s); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("layer-parallel", func(b *testing.B) {
		ctx := context.Background()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := op.layer(ctx); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// benchPool is opened by the first benchmark; a pool per benchmark would fill the token
// directory with tokens that each cost an init.
var (
	benchPool *Pool
	benchKEK  *KEK
)

func benchSetup(b *testing.B) {
	if benchPool != nil {
		return
	}
	cfg := newToken(b)
	cfg.Sessions = 8
	p, err := Open(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	benchPool = p
	benchKEK = newKEK(b, p)
}

func BenchmarkSignES256(b *testing.B) {
	benchSetup(b)
	k := workingKey(b, benchPool, benchKEK, Spec{Type: EC, Curve: P256}, UseAll)
	digest := make([]byte, 32)
	rand.Read(digest)
	mech := []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil)}
	runBench(b, benchOp{
		raw: func(c *pkcs11.Ctx, s pkcs11.SessionHandle) error {
			if err := c.SignInit(s, mech, k.obj); err != nil {
				return err
			}
			_, err := c.Sign(s, digest)
			return err
		},
		layer: func(ctx context.Context) error {
			_, err := benchPool.Sign(ctx, k, ES256, digest)
			return err
		},
	})
}

func BenchmarkSignRS256(b *testing.B) {
	benchSetup(b)
	k := workingKey(b, benchPool, benchKEK, Spec{Type: RSA, Bits: 2048}, UseAll)
	digest := make([]byte, 32)
	rand.Read(digest)
	mech := []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS, nil)}
	runBench(b, benchOp{
		raw: func(c *pkcs11.Ctx, s pkcs11.SessionHandle) error {
			if err := c.SignInit(s, mech, k.obj); err != nil {
				return err
			}
			_, err := c.Sign(s, append(append([]byte(nil), prefixSHA256...), digest...))
			return err
		},
		layer: func(ctx context.Context) error {
			_, err := benchPool.Sign(ctx, k, RS256, digest)
			return err
		},
	})
}

func BenchmarkEncryptA256GCM4KiB(b *testing.B) {
	benchSetup(b)
	k := workingKey(b, benchPool, benchKEK, Spec{Type: AES, Bits: 256}, UseAll)
	msg := make([]byte, 4096)
	rand.Read(msg)
	b.SetBytes(int64(len(msg)))
	runBench(b, benchOp{
		raw: func(c *pkcs11.Ctx, s pkcs11.SessionHandle) error {
			iv, err := c.GenerateRandom(s, 12)
			if err != nil {
				return err
			}
			params := pkcs11.NewGCMParams(iv, nil, 128)
			defer params.Free()
			if err := c.EncryptInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}, k.obj); err != nil {
				return err
			}
			_, err = c.Encrypt(s, msg)
			return err
		},
		layer: func(ctx context.Context) error {
			_, err := benchPool.Encrypt(ctx, k, A256GCM, msg, nil, nil)
			return err
		},
	})
}

func BenchmarkWrapKeyA256KW(b *testing.B) {
	benchSetup(b)
	k := workingKey(b, benchPool, benchKEK, Spec{Type: AES, Bits: 256}, UseAll)
	value := make([]byte, 32)
	rand.Read(value)
	mech := []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_WRAP, nil)}
	runBench(b, benchOp{
		raw: func(c *pkcs11.Ctx, s pkcs11.SessionHandle) error {
			tmp, err := c.CreateObject(s, tempSecret(value))
			if err != nil {
				return err
			}
			defer c.DestroyObject(s, tmp)
			_, err = c.WrapKey(s, mech, k.obj, tmp)
			return err
		},
		layer: func(ctx context.Context) error {
			_, err := benchPool.WrapKey(ctx, k, A256KW, value)
			return err
		},
	})
}

// BenchmarkUnwrapMiss is the cost of a cache miss: unwrapping a P-256 key under the KEK
// and destroying it (softhsm-notes §7 measured 442 µs).
func BenchmarkUnwrapMissP256(b *testing.B) {
	benchSetup(b)
	ctx := context.Background()
	gen, err := benchPool.Generate(ctx, Spec{Type: EC, Curve: P256}, UseAll)
	if err != nil {
		b.Fatal(err)
	}
	blob, err := benchPool.Wrap(ctx, benchKEK, gen)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		k, err := benchPool.Unwrap(ctx, benchKEK, blob, gen.Spec(), UseAll, gen.Public())
		if err != nil {
			b.Fatal(err)
		}
		_ = k.Destroy(ctx)
	}
}
