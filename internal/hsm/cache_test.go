package hsm

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/big"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/pkcs11"
)

// cacheFixture has n wrapped EC keys and counts unwraps.
type cacheFixture struct {
	p       *Pool
	kek     *KEK
	blobs   map[string][]byte
	pubs    map[string]any
	unwraps atomic.Int64
}

func newCacheFixture(t *testing.T, n int) *cacheFixture {
	f := &cacheFixture{p: newPool(t, 4), blobs: map[string][]byte{}, pubs: map[string]any{}}
	f.kek = newKEK(t, f.p)
	ctx := context.Background()
	for i := range n {
		gen, err := f.p.Generate(ctx, Spec{Type: EC, Curve: P256}, UseAll)
		if err != nil {
			t.Fatal(err)
		}
		id := fmt.Sprintf("v%d", i)
		if f.blobs[id], err = f.p.Wrap(ctx, f.kek, gen); err != nil {
			t.Fatal(err)
		}
		f.pubs[id] = gen.Public()
		_ = gen.Destroy(ctx)
	}
	return f
}

func (f *cacheFixture) load(id string) func(context.Context) (*Key, error) {
	return func(ctx context.Context) (*Key, error) {
		f.unwraps.Add(1)
		return f.p.Unwrap(ctx, f.kek, f.blobs[id], Spec{Type: EC, Curve: P256}, UseAll, f.pubs[id])
	}
}

// alive reports whether the key object still exists in the token.
func (f *cacheFixture) alive(t *testing.T, k *Key) bool {
	err := getAttr(f.p, k.obj, pkcs11.CKA_KEY_TYPE)
	if err != nil && !isCKR(err, pkcs11.CKR_OBJECT_HANDLE_INVALID) {
		t.Fatalf("read attribute: %v", err)
	}
	return err == nil
}

func TestCacheEvictsAndDestroys(t *testing.T) {
	f := newCacheFixture(t, 3)
	c := NewCache(2)
	ctx := context.Background()
	keys := map[string]*Key{}
	use := func(id string) {
		t.Helper()
		err := c.Use(ctx, id, f.load(id), func(k *Key) error {
			keys[id] = k
			digest := sha256.Sum256([]byte(id))
			_, err := f.p.Sign(ctx, k, ES256, digest[:])
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	use("v0")
	use("v1")
	use("v0") // hit: v0 becomes most recent
	if got := f.unwraps.Load(); got != 2 {
		t.Fatalf("%d unwraps after two misses and a hit", got)
	}
	use("v2") // evicts v1, the least recently used
	if c.Len() != 2 {
		t.Errorf("cache holds %d keys, want 2", c.Len())
	}
	if f.alive(t, keys["v1"]) {
		t.Error("evicted key v1 still exists in the token")
	}
	if !f.alive(t, keys["v0"]) || !f.alive(t, keys["v2"]) {
		t.Error("a cached key was destroyed")
	}
	c.Invalidate(ctx, "v0")
	if f.alive(t, keys["v0"]) || c.Len() != 1 {
		t.Error("invalidated key v0 still exists or is still cached")
	}
	use("v0")
	if got := f.unwraps.Load(); got != 4 {
		t.Errorf("%d unwraps, want 4 (v0 again after invalidation)", got)
	}
}

// TestCacheKeyInUseOutlivesEviction: a key evicted or invalidated while an operation uses it
// is destroyed only when that operation ends.
func TestCacheKeyInUseOutlivesEviction(t *testing.T) {
	f := newCacheFixture(t, 2)
	c := NewCache(1)
	ctx := context.Background()
	var held *Key
	err := c.Use(ctx, "v0", f.load("v0"), func(k *Key) error {
		held = k
		if err := c.Use(ctx, "v1", f.load("v1"), func(*Key) error { return nil }); err != nil {
			return err
		}
		c.Invalidate(ctx, "v0")
		if !f.alive(t, k) {
			return errors.New("key destroyed while in use")
		}
		digest := sha256.Sum256([]byte("in use"))
		_, err := f.p.Sign(ctx, k, ES256, digest[:])
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if f.alive(t, held) {
		t.Error("evicted key survives the end of its last use")
	}
}

// TestCacheConcurrentMissesUnwrapOnce: many callers missing the same ID at once share one
// unwrap; a failed load is not cached.
func TestCacheConcurrentMissesUnwrapOnce(t *testing.T) {
	f := newCacheFixture(t, 1)
	c := NewCache(4)
	ctx := context.Background()
	gate := make(chan struct{})
	slowLoad := func(ctx context.Context) (*Key, error) {
		<-gate
		return f.load("v0")(ctx)
	}
	var wg sync.WaitGroup
	var used atomic.Int64
	for range 16 {
		wg.Go(func() {
			if err := c.Use(ctx, "v0", slowLoad, func(*Key) error { used.Add(1); return nil }); err != nil {
				t.Error(err)
			}
		})
	}
	time.Sleep(20 * time.Millisecond) // let the callers pile up on the miss
	close(gate)
	wg.Wait()
	if f.unwraps.Load() != 1 || used.Load() != 16 {
		t.Errorf("%d unwraps for %d uses, want 1 for 16", f.unwraps.Load(), used.Load())
	}

	boom := errors.New("boom")
	fail := func(context.Context) (*Key, error) { return nil, boom }
	if err := c.Use(ctx, "bad", fail, func(*Key) error { return nil }); !errors.Is(err, boom) {
		t.Errorf("failed load: err = %v", err)
	}
	calls := 0
	_ = c.Use(ctx, "bad", func(context.Context) (*Key, error) { calls++; return nil, boom }, func(*Key) error { return nil })
	if calls != 1 {
		t.Error("a failed load was cached")
	}
}

// TestDecodeOAEP checks the host-side OAEP decoding against Go's encryption, with the raw
// RSA step done in Go, and that any change to the padding is refused.
func TestDecodeOAEP(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	raw := func(ct []byte) []byte {
		c := new(big.Int).SetBytes(ct)
		return c.Exp(c, key.D, key.N).FillBytes(make([]byte, 256))
	}
	for _, n := range []int{0, 1, 100, 256 - 2*32 - 2} {
		msg := make([]byte, n)
		rand.Read(msg)
		ct, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, &key.PublicKey, msg, nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeOAEP(sha256.New(), raw(ct), nil)
		if err != nil || string(got) != string(msg) {
			t.Errorf("%d-byte message: got %d bytes, %v", n, len(got), err)
		}
		for _, i := range []int{0, 1, 40, 100, 255} {
			em := raw(ct)
			em[i] ^= 0x40
			if out, err := decodeOAEP(sha256.New(), em, nil); err == nil && string(out) == string(msg) {
				t.Errorf("byte %d altered: decoded to the message", i)
			} else if err == nil && i < 33+32 {
				t.Errorf("byte %d altered in the seed or label hash: decoded without error", i)
			}
		}
		if _, err := decodeOAEP(sha256.New(), raw(ct), []byte("label")); err == nil {
			t.Error("wrong label accepted")
		}
	}
	if _, err := decodeOAEP(sha256.New(), make([]byte, 60), nil); err == nil {
		t.Error("short input accepted")
	}
}
