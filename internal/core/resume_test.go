package core

import (
	"context"
	"testing"
	"time"

	"github.com/hsmpool/hsmpool/internal/hsm"
	"github.com/hsmpool/hsmpool/internal/state"
)

// TestKEKLoadedWhenActivatedLate: a core whose Resume ran before its state held the pool's
// activation (a follower replaying its log after a restart) loads the KEK at its first key or
// backup call instead of refusing them as not activated until the next restart.
func TestKEKLoadedWhenActivatedLate(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	c, _ := newTestCore(t, &now)
	ctx := context.Background()
	late, err := New(Config{HSM: c.hsm, Cache: hsm.NewCache(64), Replicator: c.repl, State: c.st, Tokens: admin{}, Cluster: leader{},
		Audiences: []string{"https://managedhsm.localhost"}, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	if late.kek.Load() != nil {
		t.Fatal("a new core holds a KEK before Resume")
	}
	if ready, err := late.kekReady(ctx); err != nil || !ready {
		t.Fatalf("kekReady on an activated pool: %v, %v", ready, err)
	}
	if late.kek.Load() == nil {
		t.Fatal("kekReady did not load the KEK")
	}
	if err := late.requireActivated(ctx); err != nil {
		t.Errorf("requireActivated: %v", err)
	}

	// A pool that is not activated stays so, without an error.
	st := state.New()
	fresh, err := New(Config{HSM: c.hsm, Cache: hsm.NewCache(64), Replicator: &applyDirect{st: st}, State: st, Tokens: admin{}, Cluster: leader{},
		Audiences: []string{"https://managedhsm.localhost"}, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	if ready, err := fresh.kekReady(ctx); err != nil || ready {
		t.Errorf("kekReady without a pool: %v, %v", ready, err)
	}
}
