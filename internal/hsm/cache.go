package hsm

import (
	"container/list"
	"context"
	"errors"
	"sync"

	"github.com/miekg/pkcs11"
)

// Cache keeps unwrapped keys by key-version ID, least recently used first out, because
// unwrapping costs 0.4–1.5 ms for an asymmetric key (softhsm-notes §7) and an operation
// costs far less. An evicted or invalidated key is destroyed in the token as soon as no
// operation uses it any more. Concurrent misses on one ID unwrap once.
type Cache struct {
	max int

	mu      sync.Mutex
	entries map[string]*cacheEntry
	lru     *list.List // of *cacheEntry, most recent first; only loaded entries
}

type cacheEntry struct {
	id    string
	ready chan struct{} // closed when key or err is set
	key   *Key
	err   error
	refs  int  // operations using key now, plus the loader
	gone  bool // evicted or invalidated: destroy when refs drops to 0
	elem  *list.Element
}

// NewCache makes a cache of at most size unwrapped keys (at least 1).
func NewCache(size int) *Cache {
	return &Cache{max: max(size, 1), entries: map[string]*cacheEntry{}, lru: list.New()}
}

// Use runs fn with the key cached under id, calling load to unwrap it on a miss. The key
// cannot be destroyed while fn runs. An error from load is returned and not cached.
func (c *Cache) Use(ctx context.Context, id string, load func(context.Context) (*Key, error), fn func(*Key) error) error {
	for {
		e, err := c.acquire(ctx, id, load)
		if errors.Is(err, errRetry) {
			continue
		}
		if err != nil {
			return err
		}
		defer c.release(ctx, e)
		err = fn(e.key)
		if isCKR(err, pkcs11.CKR_OBJECT_HANDLE_INVALID) || isCKR(err, pkcs11.CKR_KEY_HANDLE_INVALID) {
			// The object is gone from the token (a reset, a lost session): unwrap afresh
			// next time rather than fail for ever.
			c.Invalidate(ctx, id)
		}
		return err
	}
}

// errRetry means a concurrent load failed for a reason of its own caller (its context
// ended); this caller tries the load itself.
var errRetry = errors.New("retry")

func (c *Cache) acquire(ctx context.Context, id string, load func(context.Context) (*Key, error)) (*cacheEntry, error) {
	c.mu.Lock()
	e := c.entries[id]
	if e != nil {
		e.refs++
		if e.elem != nil {
			c.lru.MoveToFront(e.elem)
		}
		c.mu.Unlock()
		select {
		case <-e.ready:
		case <-ctx.Done():
			c.release(ctx, e)
			return nil, ctx.Err()
		}
		if e.err != nil {
			c.release(ctx, e)
			if isContextErr(e.err) && ctx.Err() == nil {
				return nil, errRetry
			}
			return nil, e.err
		}
		return e, nil
	}
	e = &cacheEntry{id: id, ready: make(chan struct{}), refs: 1}
	c.entries[id] = e
	c.mu.Unlock()

	key, err := c.load(ctx, e, load)

	c.mu.Lock()
	var evicted []*Key
	if err != nil {
		e.err = err
		e.refs--
		if c.entries[id] == e {
			delete(c.entries, id)
		}
	} else {
		e.key = key
		if !e.gone { // Invalidate during the load: use the key once, then destroy it
			e.elem = c.lru.PushFront(e)
		}
		for c.lru.Len() > c.max {
			evicted = append(evicted, c.remove(c.lru.Back().Value.(*cacheEntry))...)
		}
	}
	close(e.ready)
	c.mu.Unlock()
	destroyAll(ctx, evicted)
	if err != nil {
		return nil, err
	}
	return e, nil
}

// load runs the loader. If it panics, the entry is dropped and its waiters released before
// the panic goes on, so that the ID does not hang for ever.
func (c *Cache) load(ctx context.Context, e *cacheEntry, load func(context.Context) (*Key, error)) (key *Key, err error) {
	done := false
	defer func() {
		if done {
			return
		}
		c.mu.Lock()
		e.err = errLoadPanicked
		e.refs--
		if c.entries[e.id] == e {
			delete(c.entries, e.id)
		}
		close(e.ready)
		c.mu.Unlock()
	}()
	key, err = load(ctx)
	done = true
	return key, err
}

var errLoadPanicked = errors.New("hsm cache: loading the key panicked")

func (c *Cache) release(ctx context.Context, e *cacheEntry) {
	c.mu.Lock()
	e.refs--
	destroy := e.gone && e.refs == 0 && e.key != nil
	c.mu.Unlock()
	if destroy {
		destroyAll(ctx, []*Key{e.key})
	}
}

// remove takes e out of the cache; it returns the key to destroy now if nobody uses it.
// c.mu is held.
func (c *Cache) remove(e *cacheEntry) []*Key {
	if e.gone {
		return nil
	}
	e.gone = true
	if c.entries[e.id] == e {
		delete(c.entries, e.id)
	}
	if e.elem != nil {
		c.lru.Remove(e.elem)
		e.elem = nil
	}
	if e.refs == 0 && e.key != nil {
		return []*Key{e.key}
	}
	return nil
}

// Invalidate drops id from the cache. Call it whenever what was unwrapped no longer holds:
// the version was deleted or purged, its blob changed, or its key_ops changed (a cached Key
// keeps the usage it was unwrapped with). A load of id in flight is not cached.
func (c *Cache) Invalidate(ctx context.Context, id string) {
	c.mu.Lock()
	var keys []*Key
	if e := c.entries[id]; e != nil {
		keys = c.remove(e)
	}
	c.mu.Unlock()
	destroyAll(ctx, keys)
}

// Len is the number of cached keys.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

// destroyAll destroys keys, best effort: a key that cannot be destroyed goes with its
// session when the Pool closes. The caller's cancellation must not leak objects.
func destroyAll(ctx context.Context, keys []*Key) {
	ctx = context.WithoutCancel(ctx)
	for _, k := range keys {
		_ = k.Destroy(ctx)
	}
}

func isContextErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}
