package hsm

import (
	"bytes"
	"context"
	"crypto/rsa"
	"fmt"

	"github.com/miekg/pkcs11"

	"github.com/hsmpool/hsmpool/internal/fault"
)

// KEK is the domain key-encryption key: an AES-256 token object that wraps every key
// version of the pool. It can wrap and unwrap and do nothing else, and whatever it unwraps
// is sensitive and non-extractable. See kekTemplate for each attribute's reason.
type KEK struct {
	obj   pkcs11.ObjectHandle
	label string
}

// Label is the KEK's CKA_LABEL.
func (k *KEK) Label() string { return k.label }

// kekTemplate is the domain KEK's attribute template. Each attribute closes a path that
// docs/hsm.md and the SoftHSM2 measurements (shared/spec/softhsm-notes.md §2.1) describe.
func kekTemplate(label string, unwrapTmpl []byte) []*pkcs11.Attribute {
	return []*pkcs11.Attribute{
		attr(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		attr(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		attr(pkcs11.CKA_VALUE_LEN, 32),
		attr(pkcs11.CKA_LABEL, label),
		attr(pkcs11.CKA_ID, []byte(label)),
		// A token object survives restarts; private means only a logged-in user sees it.
		attr(pkcs11.CKA_TOKEN, true),
		attr(pkcs11.CKA_PRIVATE, true),
		// Its value can never be read.
		attr(pkcs11.CKA_SENSITIVE, true),
		// Extractable only to keys the security officer marked CKA_TRUSTED, so that a
		// joining node can receive it wrapped to its own HSM and nobody else can.
		attr(pkcs11.CKA_EXTRACTABLE, true),
		attr(pkcs11.CKA_WRAP_WITH_TRUSTED, true),
		attr(pkcs11.CKA_WRAP, true),
		attr(pkcs11.CKA_UNWRAP, true),
		// No encrypt/decrypt: with CKA_DECRYPT a PIN holder could undo the key wrap in
		// software through an AES-ECB oracle and read every key (softhsm-notes 1.0e/1.0f).
		attr(pkcs11.CKA_ENCRYPT, false),
		attr(pkcs11.CKA_DECRYPT, false),
		attr(pkcs11.CKA_SIGN, false),
		attr(pkcs11.CKA_VERIFY, false),
		attr(pkcs11.CKA_DERIVE, false),
		attr(pkcs11.CKA_ALLOWED_MECHANISMS, ulongs(pkcs11.CKM_AES_KEY_WRAP_PAD, pkcs11.CKM_AES_KEY_WRAP)),
		// Every key unwrapped under the KEK must be sensitive and non-extractable, or a
		// PIN holder could unwrap a blob as a readable key (softhsm-notes 1.0d, 2.E1f).
		attr(pkcs11.CKA_UNWRAP_TEMPLATE, unwrapTmpl),
		// Nobody can copy it or change any of the above. SoftHSM2 rejects attributes
		// after CKA_MODIFIABLE=false in some templates (softhsm-notes 1.5c), so it is last.
		attr(pkcs11.CKA_COPYABLE, false),
		attr(pkcs11.CKA_MODIFIABLE, false),
	}
}

// kekUnwrapPolicy is the CKA_UNWRAP_TEMPLATE of the KEK.
var kekUnwrapPolicy = []*pkcs11.Attribute{
	attr(pkcs11.CKA_SENSITIVE, true),
	attr(pkcs11.CKA_EXTRACTABLE, false),
}

// CreateKEK generates a new domain KEK in the token under label. It fails with
// AlreadyExists if a KEK with that label exists, so that a pool never has two.
func (p *Pool) CreateKEK(ctx context.Context, label string) (*KEK, error) {
	return p.makeKEK(ctx, label, func(s pkcs11.SessionHandle, tmpl []*pkcs11.Attribute) (pkcs11.ObjectHandle, error) {
		o, err := p.mod.ctx.GenerateKey(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)}, tmpl)
		if err != nil {
			return 0, p11err(fmt.Sprintf("generate KEK %q", label), err)
		}
		return o, nil
	})
}

// makeKEK makes a KEK under label with create, which gets the KEK template, unless a KEK
// with that label exists already.
func (p *Pool) makeKEK(ctx context.Context, label string, create func(pkcs11.SessionHandle, []*pkcs11.Attribute) (pkcs11.ObjectHandle, error)) (*KEK, error) {
	if label == "" {
		return nil, errf(fault.BadParameter, "KEK label is empty")
	}
	var kek *KEK
	err := p.withSession(ctx, func(s pkcs11.SessionHandle) error {
		objs, err := p.findByLabel(s, label)
		if err != nil {
			return err
		}
		if len(objs) > 0 {
			return errf(fault.AlreadyExists, "a KEK labelled %q exists on token %q", label, p.label)
		}
		nested, free := nestedTemplate(kekUnwrapPolicy)
		defer free()
		o, err := create(s, kekTemplate(label, nested))
		if err != nil {
			return err
		}
		kek = &KEK{obj: o, label: label}
		return nil
	})
	return kek, err
}

// FindKEK finds the domain KEK by label.
func (p *Pool) FindKEK(ctx context.Context, label string) (*KEK, error) {
	var kek *KEK
	err := p.withSession(ctx, func(s pkcs11.SessionHandle) error {
		objs, err := p.findByLabel(s, label)
		if err != nil {
			return err
		}
		switch len(objs) {
		case 0:
			return errf(fault.NotFound, "no KEK labelled %q on token %q", label, p.label)
		case 1:
			if err := p.checkPolicy(s, objs[0], label, kekPolicy); err != nil {
				return err
			}
			kek = &KEK{obj: objs[0], label: label}
			return nil
		}
		return errf(fault.Conflict, "%d KEKs labelled %q on token %q", len(objs), label, p.label)
	})
	return kek, err
}

// DestroyKEK destroys every secret key object labelled label in the token: the domain KEK of
// a node that leaves the pool (hsmpoold leave), so that the token no longer unwraps any of the
// pool's keys. It returns how many objects it destroyed; none is not an error (a repeated
// leave). It runs to the end even when ctx ends, so that a leave is not left half done.
func (p *Pool) DestroyKEK(ctx context.Context, label string) (int, error) {
	var n int
	err := p.withSession(context.WithoutCancel(ctx), func(s pkcs11.SessionHandle) error {
		objs, err := p.findByLabel(s, label)
		if err != nil {
			return err
		}
		n = len(objs)
		return p.destroy(s, objs...)
	})
	return n, err
}

// keyPolicy is what a token object must carry before the pool relies on it: its key type and
// the value of each listed boolean attribute.
type keyPolicy struct {
	role    string // what the pool uses it as, for messages: "KEK", "exchange key"
	keyType uint   // CKK_*
	typeDoc string // "an AES key"
	attrs   []policyAttr
}

type policyAttr struct {
	attr uint
	name string
	want bool
}

// kekPolicy is what FindKEK requires of an object before it wraps anything under it.
var kekPolicy = keyPolicy{role: "KEK", keyType: pkcs11.CKK_AES, typeDoc: "an AES key", attrs: []policyAttr{
	{pkcs11.CKA_SENSITIVE, "CKA_SENSITIVE", true},
	{pkcs11.CKA_WRAP_WITH_TRUSTED, "CKA_WRAP_WITH_TRUSTED", true},
	{pkcs11.CKA_WRAP, "CKA_WRAP", true},
	{pkcs11.CKA_UNWRAP, "CKA_UNWRAP", true},
	{pkcs11.CKA_ENCRYPT, "CKA_ENCRYPT", false},
	{pkcs11.CKA_DECRYPT, "CKA_DECRYPT", false},
	{pkcs11.CKA_SIGN, "CKA_SIGN", false},
	{pkcs11.CKA_VERIFY, "CKA_VERIFY", false},
	{pkcs11.CKA_DERIVE, "CKA_DERIVE", false},
	{pkcs11.CKA_MODIFIABLE, "CKA_MODIFIABLE", false},
	{pkcs11.CKA_COPYABLE, "CKA_COPYABLE", false},
}}

// checkPolicy refuses an object that does not carry pol, so that a key someone put in the token
// under the expected label is not used by mistake. It cannot tell a planted key that copies the
// policy from the real one; for the KEK, VerifyKEK can.
func (p *Pool) checkPolicy(s pkcs11.SessionHandle, o pkcs11.ObjectHandle, label string, pol keyPolicy) error {
	tmpl := []*pkcs11.Attribute{attr(pkcs11.CKA_KEY_TYPE, nil)}
	for _, a := range pol.attrs {
		tmpl = append(tmpl, attr(a.attr, nil))
	}
	got, err := p.mod.ctx.GetAttributeValue(s, o, tmpl)
	if err != nil {
		return p11err(fmt.Sprintf("read the attributes of %s %q", pol.role, label), err)
	}
	if !bytes.Equal(got[0].Value, ulongs(pol.keyType)) {
		return errf(fault.Forbidden, "the object labelled %q is not %s; refusing to use it as the %s", label, pol.typeDoc, pol.role)
	}
	for i, a := range pol.attrs {
		if v := got[i+1].Value; len(v) != 1 || (v[0] != 0) != a.want {
			return errf(fault.Forbidden, "the object labelled %q has %s=%v, which the %s never has; refusing to use it", label, a.name, !a.want, pol.role)
		}
	}
	return nil
}

func (p *Pool) findByLabel(s pkcs11.SessionHandle, label string) ([]pkcs11.ObjectHandle, error) {
	c := p.mod.ctx
	tmpl := []*pkcs11.Attribute{
		attr(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		attr(pkcs11.CKA_TOKEN, true),
		attr(pkcs11.CKA_LABEL, label),
	}
	if err := c.FindObjectsInit(s, tmpl); err != nil {
		return nil, p11err("find objects", err)
	}
	objs, _, err := c.FindObjects(s, 16)
	if ferr := c.FindObjectsFinal(s); err == nil && ferr != nil {
		err = ferr
	}
	if err != nil {
		return nil, p11err("find objects", err)
	}
	return objs, nil
}

// Wrap wraps a key made by Generate or Import under the KEK with CKM_AES_KEY_WRAP_PAD and
// returns the blob: PKCS#8 for RSA and EC, the raw key for AES. Keys from Unwrap are not
// extractable and cannot be wrapped again.
func (p *Pool) Wrap(ctx context.Context, kek *KEK, k *Key) ([]byte, error) {
	var blob []byte
	err := p.withSession(ctx, func(s pkcs11.SessionHandle) error {
		b, err := p.mod.ctx.WrapKey(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_WRAP_PAD, nil)}, kek.obj, k.obj)
		if err != nil {
			return p11err(fmt.Sprintf("wrap %s key under KEK %q", k.spec, kek.label), err)
		}
		blob = b
		return nil
	})
	return blob, err
}

// Unwrap unwraps a blob from Wrap into a sensitive, non-extractable session object with the
// rights for usage u. pub is the key's public key, which the caller keeps with the blob
// (EC private keys in PKCS#8 need not carry it); it must be nil for AES. For RSA the
// token's modulus is checked against pub. For EC it is not (that would cost a signature on
// every cache miss): blob and public key both come from the pool's replicated state, and
// Import checked the pair when the key came in.
func (p *Pool) Unwrap(ctx context.Context, kek *KEK, blob []byte, spec Spec, u Usage, pub any) (*Key, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	if err := checkPublic(spec, pub); err != nil {
		return nil, err
	}
	k := &Key{pool: p, spec: spec, usage: u, pub: pub}
	err := p.withSession(ctx, func(s pkcs11.SessionHandle) error {
		o, err := p.unwrapObject(s, kek, blob, spec.Type, u, false)
		if err != nil {
			return err
		}
		k.obj = o
		if spec.Type == AES && u.has(UseSign|UseVerify) && spec.Bits >= 256 {
			h, err := p.unwrapObject(s, kek, blob, AES, u, true)
			if err != nil {
				_ = p.destroy(s, o)
				return err
			}
			k.hmac = h
		}
		if spec.Type == RSA {
			n, e, err := p.rsaPublic(s, o)
			if err == nil && (n.Cmp(pub.(*rsa.PublicKey).N) != 0 || e != pub.(*rsa.PublicKey).E) {
				err = errf(fault.BadParameter, "the unwrapped RSA key does not match the public key given with it")
			}
			if err != nil {
				_ = p.destroy(s, k.obj, k.hmac)
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return k, nil
}

// unwrapObject unwraps blob under the KEK. hmac asks for the CKK_GENERIC_SECRET twin of an
// AES key, which can only sign and verify with HMAC.
func (p *Pool) unwrapObject(s pkcs11.SessionHandle, kek *KEK, blob []byte, t KeyType, u Usage, hmac bool) (pkcs11.ObjectHandle, error) {
	tmpl := []*pkcs11.Attribute{
		attr(pkcs11.CKA_TOKEN, false),
		attr(pkcs11.CKA_PRIVATE, true),
		// Both must be given: the KEK's unwrap template only checks them (softhsm-notes 1.52).
		attr(pkcs11.CKA_SENSITIVE, true),
		attr(pkcs11.CKA_EXTRACTABLE, false),
	}
	switch {
	case hmac:
		tmpl = append(tmpl,
			attr(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
			attr(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_GENERIC_SECRET),
			attr(pkcs11.CKA_SIGN, u.has(UseSign)),
			attr(pkcs11.CKA_VERIFY, u.has(UseVerify)),
			attr(pkcs11.CKA_ENCRYPT, false), attr(pkcs11.CKA_DECRYPT, false),
			attr(pkcs11.CKA_WRAP, false), attr(pkcs11.CKA_UNWRAP, false), attr(pkcs11.CKA_DERIVE, false),
			attr(pkcs11.CKA_ALLOWED_MECHANISMS, ulongs(pkcs11.CKM_SHA256_HMAC, pkcs11.CKM_SHA384_HMAC, pkcs11.CKM_SHA512_HMAC)))
	case t == AES:
		tmpl = append(tmpl, attr(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY), attr(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES))
		tmpl = append(tmpl, usageAttrs(t, u)...)
	case t == RSA:
		tmpl = append(tmpl, attr(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY), attr(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_RSA))
		tmpl = append(tmpl, usageAttrs(t, u)...)
	default:
		tmpl = append(tmpl, attr(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY), attr(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_EC))
		tmpl = append(tmpl, usageAttrs(t, u)...)
	}
	o, err := p.mod.ctx.UnwrapKey(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_WRAP_PAD, nil)}, kek.obj, blob, tmpl)
	if err != nil {
		if isCKR(err, pkcs11.CKR_GENERAL_ERROR) {
			// SoftHSM2 reports a failed integrity check of the wrapped key this way. Blobs
			// come from the pool's own state, so this is corruption or the wrong KEK.
			return 0, fmt.Errorf("unwrap %s key under KEK %q: the blob does not authenticate (wrong KEK or corrupt blob): %w", t, kek.label, fault.Internal)
		}
		return 0, p11err(fmt.Sprintf("unwrap %s key under KEK %q", t, kek.label), err)
	}
	return o, nil
}

func checkPublic(spec Spec, pub any) error {
	ok := false
	switch spec.Type {
	case AES:
		ok = pub == nil
	case RSA:
		rp, isRSA := pub.(*rsa.PublicKey)
		ok = isRSA && rp.N.BitLen() == spec.Bits
	case EC:
		ok = ecCurveOf(pub) == spec.Curve
	}
	if !ok {
		return errf(fault.BadParameter, "public key of type %T does not fit a %s key", pub, spec)
	}
	return nil
}
