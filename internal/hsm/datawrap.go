package hsm

import (
	"context"
	"fmt"

	"github.com/miekg/pkcs11"

	"github.com/hsmpool/hsmpool/internal/fault"
	"github.com/hsmpool/hsmpool/internal/keywrap"
)

// AES key wrap of client data. PKCS#11 offers CKM_AES_KEY_WRAP(_PAD) only through
// C_WrapKey and C_UnwrapKey, which work on key objects, so the client's bytes pass through
// a temporary generic-secret session object that lives for one call (docs/hsm.md).

// tempSecret is the template of the temporary object that carries client data.
func tempSecret(value []byte) []*pkcs11.Attribute {
	t := []*pkcs11.Attribute{
		attr(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		attr(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_GENERIC_SECRET),
		attr(pkcs11.CKA_TOKEN, false),
		attr(pkcs11.CKA_SENSITIVE, false),
		attr(pkcs11.CKA_EXTRACTABLE, true),
	}
	if value != nil {
		t = append(t, attr(pkcs11.CKA_VALUE, value))
	}
	return t
}

// wrapKW is RFC 3394 AES key wrap. SoftHSM2 2.6.1 silently zero-pads a value whose length
// is not a multiple of 8, which RFC 3394 does not allow, so such lengths are refused here.
func (p *Pool) wrapKW(ctx context.Context, k *Key, alg Alg, value []byte) ([]byte, error) {
	if len(value) < 16 || len(value)%8 != 0 || len(value) > maxData {
		return nil, errf(fault.BadParameter, "%s wraps 16 to %d bytes in multiples of 8, got %d (use CKM_AES_KEY_WRAP_PAD for other lengths)", alg, maxData, len(value))
	}
	return p.wrapWithToken(ctx, k, alg, pkcs11.CKM_AES_KEY_WRAP, value)
}

// wrapKWP is RFC 5649 AES key wrap with padding. SoftHSM2 2.6.1's C_WrapKey with
// CKM_AES_KEY_WRAP_PAD pads to a multiple of 8 before wrapping and records the padded
// length, which is not RFC 5649 unless the length is already a multiple of 8 (fixed in
// 2.7.0). So other lengths, and the single-block case, run RFC 5649 here over the token's
// AES-ECB with the key: 6n single-block encryptions, the key never leaving the token.
func (p *Pool) wrapKWP(ctx context.Context, k *Key, alg Alg, value []byte) ([]byte, error) {
	if len(value) == 0 || len(value) > maxData {
		return nil, errf(fault.BadParameter, "%s wraps 1 to %d bytes, got %d", alg, maxData, len(value))
	}
	if len(value)%8 == 0 && len(value) >= 16 {
		return p.wrapWithToken(ctx, k, alg, pkcs11.CKM_AES_KEY_WRAP_PAD, value)
	}
	var out []byte
	err := p.withSession(ctx, func(s pkcs11.SessionHandle) error {
		c := p.mod.ctx
		if err := c.EncryptInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_ECB, nil)}, k.obj); err != nil {
			return p11err(fmt.Sprintf("wrap with %s", alg), err)
		}
		b := &ecbBlock{p: p, s: s}
		wrapped, err := keywrap.WrapPad(b, value)
		// End the operation whatever happened; after a failed update it is over already.
		if _, ferr := c.EncryptFinal(s); b.err == nil && ferr != nil {
			b.err = ferr
		}
		if b.err != nil {
			return p11err(fmt.Sprintf("wrap with %s", alg), b.err)
		}
		if err != nil {
			return fmt.Errorf("wrap with %s: %w", alg, err)
		}
		out = wrapped
		return nil
	})
	return out, err
}

func (p *Pool) wrapWithToken(ctx context.Context, k *Key, alg Alg, mech uint, value []byte) ([]byte, error) {
	var out []byte
	err := p.withSession(ctx, func(s pkcs11.SessionHandle) error {
		c := p.mod.ctx
		tmp, err := c.CreateObject(s, tempSecret(value))
		if err != nil {
			return p11err(fmt.Sprintf("wrap with %s: load the value", alg), err)
		}
		defer func() { _ = c.DestroyObject(s, tmp) }()
		out, err = c.WrapKey(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(mech, nil)}, k.obj, tmp)
		if err != nil {
			return p11err(fmt.Sprintf("wrap with %s", alg), err)
		}
		return nil
	})
	return out, err
}

// unwrapAES undoes wrapKW and wrapKWP: C_UnwrapKey into a readable temporary object,
// whose value is read and which is then destroyed. SoftHSM2's unwrap is exact RFC 3394 and
// RFC 5649 for every length.
func (p *Pool) unwrapAES(ctx context.Context, k *Key, m mode, alg Alg, wrapped []byte) ([]byte, error) {
	min := 24
	mech := uint(pkcs11.CKM_AES_KEY_WRAP)
	if m == modeKWP {
		min, mech = 16, pkcs11.CKM_AES_KEY_WRAP_PAD
	}
	if len(wrapped) < min || len(wrapped)%8 != 0 || len(wrapped) > maxData+16 {
		return nil, errf(fault.BadParameter, "%s wrapped value must be at least %d bytes in multiples of 8, got %d", alg, min, len(wrapped))
	}
	var out []byte
	err := p.withSession(ctx, func(s pkcs11.SessionHandle) error {
		c := p.mod.ctx
		tmp, err := c.UnwrapKey(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(mech, nil)}, k.obj, wrapped, tempSecret(nil))
		if err != nil {
			if isCKR(err, pkcs11.CKR_GENERAL_ERROR) {
				return fmt.Errorf("unwrap with %s: the wrapped value does not authenticate under this key: %w", alg, fault.BadParameter)
			}
			return p11err(fmt.Sprintf("unwrap with %s", alg), err)
		}
		defer func() { _ = c.DestroyObject(s, tmp) }()
		attrs, err := c.GetAttributeValue(s, tmp, []*pkcs11.Attribute{attr(pkcs11.CKA_VALUE, nil)})
		if err != nil {
			return p11err(fmt.Sprintf("unwrap with %s: read the value", alg), err)
		}
		out = attrs[0].Value
		return nil
	})
	return out, err
}

// ecbBlock is a cipher.Block whose Encrypt is one AES-ECB block through the token, inside
// an encryption operation the caller started. cipher.Block cannot return errors, so the
// first one is kept in err and later blocks are skipped.
type ecbBlock struct {
	p   *Pool
	s   pkcs11.SessionHandle
	err error
}

func (b *ecbBlock) BlockSize() int { return 16 }

func (b *ecbBlock) Encrypt(dst, src []byte) {
	if b.err != nil {
		return
	}
	out, err := b.p.mod.ctx.EncryptUpdate(b.s, src[:16])
	if err == nil && len(out) != 16 {
		err = errf(fault.HSMFailure, "AES-ECB returned %d bytes for one block", len(out))
	}
	if err != nil {
		b.err = err
		return
	}
	copy(dst, out)
}

// Decrypt is never called: unwrapping runs in the token.
func (b *ecbBlock) Decrypt(dst, src []byte) {
	if b.err == nil {
		b.err = errf(fault.Internal, "ecbBlock cannot decrypt")
	}
}
