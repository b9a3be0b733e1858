package hsm

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/miekg/pkcs11"

	"github.com/hsmpool/hsmpool/internal/fault"
)

// Pool is a logged-in PKCS#11 token with a bounded pool of sessions. Every operation
// borrows one session for its duration; see the package doc for the concurrency contract.
type Pool struct {
	mod   *module
	slot  uint
	label string

	all []pkcs11.SessionHandle
	// tokens holds one token per free session; free is a stack so that the session
	// used last, whose state is warm in the module, is used next.
	tokens chan struct{}
	mu     sync.Mutex
	free   []pkcs11.SessionHandle

	closing   chan struct{}
	closeOnce sync.Once
	closeErr  error

	transport transport

	// oaep256 remembers whether the token does RSA-OAEP with SHA-256 natively
	// (oaepNative) or needs the raw-RSA route (oaepHost); 0 until the first try.
	oaep256 atomic.Int32
}

// errClosed is returned by operations started after Close.
var errClosed = fmt.Errorf("hsm pool is closed: %w", fault.Unavailable)

// Open loads the module (once per process), finds the slot, opens cfg.Sessions sessions
// and logs in once with the user PIN. The PIN is wiped from Go memory after the login.
// ctx is checked before the HSM is touched; PKCS#11 calls themselves cannot be cancelled.
func Open(ctx context.Context, cfg Config) (*Pool, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	pin, err := cfg.pin()
	if err != nil {
		return nil, err
	}
	defer pin.Wipe()

	m, err := loadModule(cfg.Module)
	if err != nil {
		return nil, err
	}
	slot, err := m.findSlot(cfg.TokenLabel, cfg.SlotID)
	if err != nil {
		m.release()
		return nil, err
	}
	if err := m.claim(slot); err != nil {
		m.release()
		return nil, err
	}
	ti, err := m.ctx.GetTokenInfo(slot)
	if err != nil {
		m.unclaim(slot)
		m.release()
		return nil, p11err(fmt.Sprintf("read token info of slot %d", slot), err)
	}
	p := &Pool{
		mod:     m,
		slot:    slot,
		label:   ti.Label,
		tokens:  make(chan struct{}, cfg.Sessions),
		closing: make(chan struct{}),
	}
	fail := func(err error) (*Pool, error) {
		for _, s := range p.all {
			_ = m.ctx.CloseSession(s)
		}
		m.unclaim(slot)
		m.release()
		return nil, err
	}
	for range cfg.Sessions {
		s, err := m.ctx.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
		if err != nil {
			return fail(p11err(fmt.Sprintf("open session %d of %d on token %q", len(p.all)+1, cfg.Sessions, p.label), err))
		}
		p.all = append(p.all, s)
		p.free = append(p.free, s)
		p.tokens <- struct{}{}
	}
	// One login covers every session of the application on this token.
	if err := m.ctx.Login(p.all[0], pkcs11.CKU_USER, pinString(pin)); err != nil && !isCKR(err, pkcs11.CKR_USER_ALREADY_LOGGED_IN) {
		what := "log in"
		if isCKR(err, pkcs11.CKR_PIN_INCORRECT) {
			what = "log in (wrong PIN)"
		}
		return fail(p11err(fmt.Sprintf("%s to token %q in slot %d", what, p.label, slot), err))
	}
	return p, nil
}

// Label is the token label; Slot the slot ID.
func (p *Pool) Label() string { return p.label }
func (p *Pool) Slot() uint    { return p.slot }

// withSession runs fn with a session borrowed from the pool. Waiting for a free session
// is bounded by ctx; fn itself is not interrupted. The session returns to the pool
// whatever fn returns, even if it panics.
func (p *Pool) withSession(ctx context.Context, fn func(s pkcs11.SessionHandle) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case <-p.closing:
		return errClosed
	default:
	}
	select {
	case <-p.tokens:
		p.mu.Lock()
		s := p.free[len(p.free)-1]
		p.free = p.free[:len(p.free)-1]
		p.mu.Unlock()
		defer func() {
			p.mu.Lock()
			p.free = append(p.free, s)
			p.mu.Unlock()
			p.tokens <- struct{}{}
		}()
		return fn(s)
	case <-ctx.Done():
		return ctx.Err()
	case <-p.closing:
		return errClosed
	}
}

// Close stops new operations, waits for borrowed sessions to come back, logs out and
// closes every session (which destroys every session object: all unwrapped keys), and
// releases the module. Close is idempotent.
func (p *Pool) Close() error {
	p.closeOnce.Do(func() {
		close(p.closing)
		for range p.all {
			<-p.tokens
		}
		ctx := p.mod.ctx
		var errs []error
		if err := ctx.Logout(p.all[0]); err != nil && !isCKR(err, pkcs11.CKR_USER_NOT_LOGGED_IN) {
			errs = append(errs, p11err("log out", err))
		}
		for _, s := range p.all {
			if err := ctx.CloseSession(s); err != nil {
				errs = append(errs, p11err("close session", err))
			}
		}
		p.mod.unclaim(p.slot)
		p.mod.release()
		p.closeErr = errors.Join(errs...)
	})
	return p.closeErr
}

// idle reports how many sessions are in the pool now; tests use it to find leaks.
func (p *Pool) idle() int { return len(p.tokens) }

// Random returns n bytes from the token's random number generator.
func (p *Pool) Random(ctx context.Context, n int) ([]byte, error) {
	if n < 1 || n > maxRandom {
		return nil, errf(fault.BadParameter, "random byte count %d is outside 1..%d", n, maxRandom)
	}
	var out []byte
	err := p.withSession(ctx, func(s pkcs11.SessionHandle) (err error) {
		out, err = p.random(s, n)
		return err
	})
	return out, err
}

const maxRandom = 4096

func (p *Pool) random(s pkcs11.SessionHandle, n int) ([]byte, error) {
	b, err := p.mod.ctx.GenerateRandom(s, n)
	if err != nil {
		return nil, p11err("generate random bytes", err)
	}
	if len(b) != n {
		return nil, errf(fault.HSMFailure, "token returned %d random bytes, want %d", len(b), n)
	}
	return b, nil
}
