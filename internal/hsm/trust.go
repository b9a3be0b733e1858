package hsm

import (
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"math/big"

	"github.com/miekg/pkcs11"

	"github.com/hsmpool/hsmpool/internal/fault"
	"github.com/hsmpool/hsmpool/internal/secret"
)

// SOConfig says how the security officer's step of a join reaches the source node's token.
// It is not part of the daemon's Config on purpose: CKA_TRUSTED is a barrier only because
// the daemon cannot set it (softhsm-notes §2.2). A daemon holding the SO PIN could trust a
// key of an attacker who owns its host, and the KEK would be one C_WrapKey from host memory.
// So the SO PIN is an input of the operator's admin step only, read from a file, and used
// for one C_Login(CKU_SO) in a process that has no Pool open on the token.
type SOConfig struct {
	// Module is the path of the PKCS#11 shared library.
	Module string `json:"module"`
	// TokenLabel or SlotID selects the source node's token, as in Config.
	TokenLabel string `json:"token_label,omitempty"`
	SlotID     *uint  `json:"slot_id,omitempty"`
	// SOPINFile is a file holding the security officer's PIN (one trailing newline is
	// ignored). It is read once, for the login, and wiped after it.
	SOPINFile string `json:"so_pin_file"`
}

// Validate checks the SOConfig without touching the HSM.
func (c SOConfig) Validate() error {
	var errs []error
	if c.Module == "" {
		errs = append(errs, errors.New("module: the PKCS#11 module path is required"))
	}
	switch {
	case c.TokenLabel == "" && c.SlotID == nil:
		errs = append(errs, errors.New("token_label, slot_id: set one to choose the slot"))
	case c.TokenLabel != "" && c.SlotID != nil:
		errs = append(errs, errors.New("token_label, slot_id: set only one"))
	}
	if c.SOPINFile == "" {
		errs = append(errs, errors.New("so_pin_file: the security officer's PIN file is required"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("hsm security officer config: %w: %w", fault.BadParameter, err)
	}
	return nil
}

// TrustJoinKey is the security officer's step of a join, run on the source node by an
// operator who has compared pub's fingerprint with the one the joining node shows. It logs
// in as SO and creates pub in the token as a public token object labelled label, marked
// CKA_TRUSTED and good only for wrapping, so that the daemon's SendKEK may wrap the KEK to
// it once. The SO cannot see or use the KEK itself (softhsm-notes 1.31–1.33).
//
// PKCS#11 allows one login per application and token, so TrustJoinKey must run in a
// process that has no Pool open on the token (softhsm-notes 1.09, 1.4b): it fails with
// fault.Conflict otherwise. The daemon keeps its own user login meanwhile.
func TrustJoinKey(ctx context.Context, cfg SOConfig, label string, pub *rsa.PublicKey) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	if label == "" {
		return errf(fault.BadParameter, "the trusted join key needs a label")
	}
	if err := checkJoinPublic(pub); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	pin, err := secret.ReadFile(cfg.SOPINFile)
	if err != nil {
		return fmt.Errorf("so_pin_file: %w: %w", fault.BadParameter, err)
	}
	defer pin.Wipe()

	m, err := loadModule(cfg.Module)
	if err != nil {
		return err
	}
	defer m.release()
	slot, err := m.findSlot(cfg.TokenLabel, cfg.SlotID)
	if err != nil {
		return err
	}
	if err := m.claim(slot); err != nil {
		return fmt.Errorf("trust a join key: the security officer's login needs a process without a pool on the token: %w", err)
	}
	defer m.unclaim(slot)
	c := m.ctx
	s, err := c.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		return p11err(fmt.Sprintf("open a session on slot %d", slot), err)
	}
	defer c.CloseSession(s)
	if err := c.Login(s, pkcs11.CKU_SO, pinString(pin)); err != nil {
		what := "log in as security officer"
		switch {
		case isCKR(err, pkcs11.CKR_PIN_INCORRECT):
			what += " (wrong SO PIN)"
		case isCKR(err, pkcs11.CKR_USER_ANOTHER_ALREADY_LOGGED_IN):
			what += " (this process is logged in as the user)"
		}
		return p11err(fmt.Sprintf("%s to the token in slot %d", what, slot), err)
	}
	defer c.Logout(s)

	if err := c.FindObjectsInit(s, []*pkcs11.Attribute{attr(pkcs11.CKA_TOKEN, true), attr(pkcs11.CKA_LABEL, label)}); err != nil {
		return p11err("find objects", err)
	}
	objs, _, err := c.FindObjects(s, 1)
	if ferr := c.FindObjectsFinal(s); err == nil && ferr != nil {
		err = ferr
	}
	if err != nil {
		return p11err("find objects", err)
	}
	if len(objs) > 0 {
		return errf(fault.AlreadyExists, "a public object labelled %q exists in slot %d", label, slot)
	}
	tmpl := []*pkcs11.Attribute{
		attr(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY),
		attr(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_RSA),
		// A token object, so the daemon's sessions in another process see it (1.4c).
		attr(pkcs11.CKA_TOKEN, true),
		// The SO can create only public objects (CKA_PRIVATE=true: CKR_USER_NOT_LOGGED_IN, 1.27).
		attr(pkcs11.CKA_PRIVATE, false),
		attr(pkcs11.CKA_LABEL, label),
		attr(pkcs11.CKA_MODULUS, pub.N.Bytes()),
		attr(pkcs11.CKA_PUBLIC_EXPONENT, big.NewInt(int64(pub.E)).Bytes()),
		// It may wrap (the KEK, once) and do nothing else.
		attr(pkcs11.CKA_WRAP, true),
		attr(pkcs11.CKA_ENCRYPT, false),
		attr(pkcs11.CKA_VERIFY, false),
		attr(pkcs11.CKA_VERIFY_RECOVER, false),
		attr(pkcs11.CKA_DERIVE, false),
		// What only the SO can set, and what CKA_WRAP_WITH_TRUSTED on the KEK asks for. A
		// user cannot change the modulus of a trusted key afterwards (1.41, 1.42).
		attr(pkcs11.CKA_TRUSTED, true),
	}
	if _, err := c.CreateObject(s, tmpl); err != nil {
		return p11err(fmt.Sprintf("create the trusted join key %q", label), err)
	}
	return nil
}
