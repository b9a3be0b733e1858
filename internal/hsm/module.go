package hsm

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"unsafe"

	"github.com/miekg/pkcs11"

	"github.com/hsmpool/hsmpool/internal/fault"
	"github.com/hsmpool/hsmpool/internal/secret"
)

// module is one loaded PKCS#11 library. C_Initialize may be called once per process and
// library, and several Pools (one per slot) may share a library, so modules are counted
// references in a process-wide registry.
type module struct {
	path string
	ctx  *pkcs11.Ctx

	// refs and slots are guarded by registry.mu.
	refs  int
	slots map[uint]bool // slots that an open Pool is bound to
	// ownInit is false when someone else in the process initialised the library; then
	// we must not finalise it either.
	ownInit bool

	// tokenMu serialises token initialisation, which changes the slot list.
	tokenMu sync.Mutex
}

var registry struct {
	mu      sync.Mutex
	modules map[string]*module
}

// loadModule returns the module at path, loading and initialising it on first use.
func loadModule(path string) (*module, error) {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	if m := registry.modules[path]; m != nil {
		m.refs++
		return m, nil
	}
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("load PKCS#11 module %q: %w: %w", path, fault.NotFound, err)
	}
	ctx := pkcs11.New(path)
	if ctx == nil {
		return nil, fmt.Errorf("load PKCS#11 module %q: %w: the library could not be loaded (not a PKCS#11 module, or a dependency is missing)", path, fault.Unavailable)
	}
	m := &module{path: path, ctx: ctx, refs: 1, slots: map[uint]bool{}, ownInit: true}
	if err := ctx.Initialize(); err != nil {
		if !isCKR(err, pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
			ctx.Destroy()
			return nil, p11err(fmt.Sprintf("initialise PKCS#11 module %q", path), err)
		}
		m.ownInit = false
	}
	if registry.modules == nil {
		registry.modules = map[string]*module{}
	}
	registry.modules[path] = m
	return m, nil
}

// release drops one reference; the last one finalises and unloads the library.
func (m *module) release() {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	m.refs--
	if m.refs > 0 {
		return
	}
	delete(registry.modules, m.path)
	if m.ownInit {
		_ = m.ctx.Finalize()
	}
	m.ctx.Destroy()
}

// claim binds slot to one Pool, so that two Pools in a process never share a login.
func (m *module) claim(slot uint) error {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	if m.slots[slot] {
		return errf(fault.Conflict, "slot %d of %q is already open in this process", slot, m.path)
	}
	m.slots[slot] = true
	return nil
}

func (m *module) unclaim(slot uint) {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	delete(m.slots, slot)
}

// findSlot resolves a slot by ID or by token label.
func (m *module) findSlot(label string, id *uint) (uint, error) {
	slots, err := m.ctx.GetSlotList(true)
	if err != nil {
		return 0, p11err("list slots", err)
	}
	var labels []string
	var found []uint
	for _, s := range slots {
		ti, err := m.ctx.GetTokenInfo(s)
		if err != nil {
			continue // a slot whose token went away while we listed
		}
		if ti.Flags&pkcs11.CKF_TOKEN_INITIALIZED == 0 {
			continue
		}
		l := strings.TrimRight(ti.Label, " \x00")
		labels = append(labels, fmt.Sprintf("%q (slot %d)", l, s))
		if (id != nil && s == *id) || (id == nil && l == label) {
			found = append(found, s)
		}
	}
	switch {
	case len(found) == 1:
		return found[0], nil
	case len(found) > 1:
		return 0, errf(fault.BadParameter, "token label %q is ambiguous in module %q: %d tokens carry it; choose one by slot_id", label, m.path, len(found))
	}
	have := "no initialised tokens"
	if len(labels) > 0 {
		have = "tokens: " + strings.Join(labels, ", ")
	}
	if id != nil {
		return 0, errf(fault.NotFound, "no initialised token in slot %d of module %q (%s)", *id, m.path, have)
	}
	return 0, errf(fault.NotFound, "no token labelled %q in module %q (%s)", label, m.path, have)
}

// pinString lends the PIN to miekg/pkcs11, whose Login takes a string, without making an
// immutable copy on the Go heap. The string must not outlive the call it is passed to.
func pinString(pin secret.Bytes) string {
	b := pin.Reveal()
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// InitToken initialises a token with the given label in a free slot of the module and
// sets its user PIN, as softhsm2-util --init-token --free does. It returns the new
// token's slot ID. The daemon's embedded default and the tests use it to make SoftHSM2
// tokens; with SoftHSM2 the token is created under the tokendir of the file named by
// SOFTHSM2_CONF, which must be set before the module is first loaded in the process.
func InitToken(ctx context.Context, modulePath, label string, soPIN, userPIN secret.Bytes) (uint, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if label == "" || len(label) > 32 {
		return 0, errf(fault.BadParameter, "token label %q must be 1 to 32 bytes", label)
	}
	m, err := loadModule(modulePath)
	if err != nil {
		return 0, err
	}
	defer m.release()
	m.tokenMu.Lock()
	defer m.tokenMu.Unlock()

	if _, err := m.findSlot(label, nil); err == nil {
		return 0, errf(fault.AlreadyExists, "a token labelled %q exists in module %q", label, modulePath)
	}
	slots, err := m.ctx.GetSlotList(true)
	if err != nil {
		return 0, p11err("list slots", err)
	}
	free, ok := uint(0), false
	for _, s := range slots {
		if ti, err := m.ctx.GetTokenInfo(s); err == nil && ti.Flags&pkcs11.CKF_TOKEN_INITIALIZED == 0 {
			free, ok = s, true
			break
		}
	}
	if !ok {
		return 0, errf(fault.Unavailable, "module %q has no free slot for a new token", modulePath)
	}
	if err := m.ctx.InitToken(free, pinString(soPIN), label); err != nil {
		return 0, p11err(fmt.Sprintf("initialise token %q in slot %d", label, free), err)
	}
	// SoftHSM2 renumbers an initialised token's slot from its serial number, so find it
	// again by label.
	slot, err := m.findSlot(label, nil)
	if err != nil {
		return 0, err
	}
	sh, err := m.ctx.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		return 0, p11err("open session", err)
	}
	defer m.ctx.CloseSession(sh)
	if err := m.ctx.Login(sh, pkcs11.CKU_SO, pinString(soPIN)); err != nil {
		return 0, p11err(fmt.Sprintf("log in to token %q as security officer", label), err)
	}
	defer m.ctx.Logout(sh)
	if err := m.ctx.InitPIN(sh, pinString(userPIN)); err != nil {
		return 0, p11err(fmt.Sprintf("set the user PIN of token %q", label), err)
	}
	return slot, nil
}
