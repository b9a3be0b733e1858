package hsm

import (
	"context"
	"crypto/rsa"
	"fmt"
	"math/big"

	"github.com/miekg/pkcs11"

	"github.com/hsmpool/hsmpool/internal/fault"
)

// Moving the domain KEK to a joining node (softhsm-notes §2.2). The KEK leaves a token only
// as RSA-OAEP ciphertext made by C_WrapKey inside the source token, to a key generated
// inside the joining node's token, and comes back to life there by C_UnwrapKey:
//
//  1. The joining node: CreateJoinKey makes an RSA-3072 pair whose private half can only
//     unwrap, and only into an AES key with the KEK's policy. It publishes Public().
//  2. The source node's security officer: TrustJoinKey, in a process of its own with the
//     SO PIN, puts that public key into the source token with CKA_TRUSTED=true. Only the SO
//     can set CKA_TRUSTED (softhsm-notes 1.20–1.24), and the KEK's CKA_WRAP_WITH_TRUSTED
//     makes the token refuse to wrap it to any other key (1.45).
//  3. The source node: SendKEK wraps the KEK to the trusted key with CKM_RSA_PKCS_OAEP,
//     SHA-1/MGF1-SHA-1 (the only OAEP SoftHSM2 2.6.1 wraps with, 1.44), and destroys the
//     trusted key, so the permission is used once.
//  4. The joining node: ReceiveKEK unwraps the blob into a token object with the KEK's
//     template and destroys the join key.
//
// OAEP's security does not rest on SHA-1's collision resistance; the OAEP is "RSA-OAEP",
// not "RSA-OAEP-256". internal/nodejoin seals the blob in a post-quantum envelope.

// JoinKeyBits is the size of the join key: RSA-3072, as softhsm-notes §2.2 recommends,
// about 128-bit classical strength, the level of the AES-256 KEK's other protections.
const JoinKeyBits = 3072

// JoinKey is the transport key pair a joining node generates in its own token to receive
// the domain KEK. Its private half is sensitive, non-extractable and can only unwrap, and
// its CKA_UNWRAP_TEMPLATE forces whatever it unwraps to be a sensitive AES key with the
// KEK's rights and no others. A JoinKey is safe for concurrent use.
type JoinKey struct {
	pool  *Pool
	label string
	obj   pkcs11.ObjectHandle // the private key
	pub   *rsa.PublicKey
}

// Label returns the CKA_LABEL of the private key.
func (k *JoinKey) Label() string { return k.label }

// Public returns the RSA public key, which the joining node sends to the source node.
func (k *JoinKey) Public() *rsa.PublicKey { return k.pub }

// joinUnwrapPolicy is the join key's CKA_UNWRAP_TEMPLATE. The wrapped KEK is raw bytes: the
// receiving template decides its attributes, and without this a user-PIN holder on the
// joining node could unwrap it as a readable key (softhsm-notes 1.58). Every attribute here
// must appear with the same value in ReceiveKEK's template, which is kekTemplate
// (softhsm-notes 1.51, 1.52, 1.5a). SoftHSM2 2.6.1 rejects nested templates, so the join
// key cannot also force the KEK's own unwrap template (1.5d): ReceiveKEK supplies it, and
// that is exposed only to code running during the join.
var joinUnwrapPolicy = []*pkcs11.Attribute{
	attr(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
	attr(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
	attr(pkcs11.CKA_PRIVATE, true),           // invisible without login
	attr(pkcs11.CKA_SENSITIVE, true),         // its value can never be read
	attr(pkcs11.CKA_WRAP_WITH_TRUSTED, true), // extractable, if at all, only to SO-trusted keys
	attr(pkcs11.CKA_ENCRYPT, false),          // no AES-ECB oracle (softhsm-notes 1.0e/1.0f)
	attr(pkcs11.CKA_DECRYPT, false),
	attr(pkcs11.CKA_SIGN, false),
	attr(pkcs11.CKA_VERIFY, false),
	attr(pkcs11.CKA_DERIVE, false),
	attr(pkcs11.CKA_COPYABLE, false),
	attr(pkcs11.CKA_MODIFIABLE, false), // last, as in every template (softhsm-notes 1.5c)
}

// joinPrivateTemplate is the join key's private half. It is a token object: the join waits
// for an operator on the source node (the SO's trust step, after comparing fingerprints),
// which may outlast the joining process; a rerun finds the key with FindJoinKey instead of
// asking the operator to trust a new one. ReceiveKEK destroys it, DestroyJoinKey removes it
// when a join is abandoned, and a leftover can only unwrap into a KEK nobody can read.
func joinPrivateTemplate(label string, nested []byte) []*pkcs11.Attribute {
	return []*pkcs11.Attribute{
		attr(pkcs11.CKA_TOKEN, true),
		attr(pkcs11.CKA_PRIVATE, true),
		attr(pkcs11.CKA_LABEL, label),
		attr(pkcs11.CKA_SENSITIVE, true),    // the private exponent is never read
		attr(pkcs11.CKA_EXTRACTABLE, false), // nor wrapped out
		attr(pkcs11.CKA_UNWRAP, true),       // the one right it needs
		// No decrypt: C_Decrypt would put the KEK, unwrapped in software, in host memory.
		attr(pkcs11.CKA_DECRYPT, false),
		attr(pkcs11.CKA_SIGN, false),
		attr(pkcs11.CKA_DERIVE, false),
		attr(pkcs11.CKA_COPYABLE, false), // a copy could carry another unwrap template
		attr(pkcs11.CKA_ALLOWED_MECHANISMS, ulongs(pkcs11.CKM_RSA_PKCS_OAEP)),
		attr(pkcs11.CKA_UNWRAP_TEMPLATE, nested),
		attr(pkcs11.CKA_MODIFIABLE, false), // last: nothing above can be changed
	}
}

// joinPolicy is what FindJoinKey requires of the private object.
var joinPolicy = keyPolicy{role: "join key", keyType: pkcs11.CKK_RSA, typeDoc: "an RSA key", attrs: []policyAttr{
	{pkcs11.CKA_SENSITIVE, "CKA_SENSITIVE", true},
	{pkcs11.CKA_EXTRACTABLE, "CKA_EXTRACTABLE", false},
	{pkcs11.CKA_UNWRAP, "CKA_UNWRAP", true},
	{pkcs11.CKA_DECRYPT, "CKA_DECRYPT", false},
	{pkcs11.CKA_SIGN, "CKA_SIGN", false},
	{pkcs11.CKA_DERIVE, "CKA_DERIVE", false},
	{pkcs11.CKA_COPYABLE, "CKA_COPYABLE", false},
	{pkcs11.CKA_MODIFIABLE, "CKA_MODIFIABLE", false},
}}

// oaepSHA1 is CKM_RSA_PKCS_OAEP with SHA-1, MGF1-SHA-1 and no label.
func oaepSHA1() []*pkcs11.Mechanism {
	return []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_OAEP,
		pkcs11.NewOAEPParams(pkcs11.CKM_SHA_1, pkcs11.CKG_MGF1_SHA1, pkcs11.CKZ_DATA_SPECIFIED, nil))}
}

// CreateJoinKey generates the join key pair in the token under label. It fails with
// fault.AlreadyExists when an object already carries the label.
func (p *Pool) CreateJoinKey(ctx context.Context, label string) (*JoinKey, error) {
	if label == "" {
		return nil, errf(fault.BadParameter, "the join key needs a label")
	}
	k := &JoinKey{pool: p, label: label}
	err := p.withSession(ctx, func(s pkcs11.SessionHandle) error {
		privs, pubs, err := p.findExchange(s, label)
		if err != nil {
			return err
		}
		if len(privs)+len(pubs) > 0 {
			return errf(fault.AlreadyExists, "an object labelled %q exists on token %q", label, p.label)
		}
		nested, free := nestedTemplate(joinUnwrapPolicy)
		defer free()
		// The public half is a session object, destroyed at once: the modulus is read from
		// the private half, and nothing in this token ever encrypts or wraps with it.
		pubT := []*pkcs11.Attribute{
			attr(pkcs11.CKA_TOKEN, false),
			attr(pkcs11.CKA_MODULUS_BITS, JoinKeyBits),
			attr(pkcs11.CKA_PUBLIC_EXPONENT, []byte{1, 0, 1}),
			attr(pkcs11.CKA_ENCRYPT, false),
			attr(pkcs11.CKA_WRAP, false),
			attr(pkcs11.CKA_VERIFY, false),
		}
		c := p.mod.ctx
		pubO, privO, err := c.GenerateKeyPair(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, nil)}, pubT, joinPrivateTemplate(label, nested))
		if err != nil {
			return p11err("generate the join key", err)
		}
		if err := p.destroy(s, pubO); err != nil {
			_ = p.destroy(s, privO)
			return err
		}
		n, e, err := p.rsaPublic(s, privO)
		if err != nil {
			_ = p.destroy(s, privO)
			return err
		}
		k.obj, k.pub = privO, &rsa.PublicKey{N: n, E: e}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return k, nil
}

// FindJoinKey finds the join key labelled label, as a rerun of a join does, and checks its
// policy. It fails with fault.NotFound when there is none.
func (p *Pool) FindJoinKey(ctx context.Context, label string) (*JoinKey, error) {
	k := &JoinKey{pool: p, label: label}
	err := p.withSession(ctx, func(s pkcs11.SessionHandle) error {
		privs, err := p.findObjects(s, pkcs11.CKO_PRIVATE_KEY, label)
		if err != nil {
			return err
		}
		switch len(privs) {
		case 0:
			return errf(fault.NotFound, "no join key labelled %q on token %q", label, p.label)
		case 1:
		default:
			return errf(fault.Conflict, "%d join keys labelled %q on token %q", len(privs), label, p.label)
		}
		if err := p.checkPolicy(s, privs[0], label, joinPolicy); err != nil {
			return err
		}
		n, e, err := p.rsaPublic(s, privs[0])
		if err != nil {
			return err
		}
		k.obj, k.pub = privs[0], &rsa.PublicKey{N: n, E: e}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return k, nil
}

// DestroyJoinKey destroys every key object labelled label: the join key of an abandoned
// join. It is a no-op when there is none.
func (p *Pool) DestroyJoinKey(ctx context.Context, label string) error {
	return p.withSession(context.WithoutCancel(ctx), func(s pkcs11.SessionHandle) error {
		privs, pubs, err := p.findExchange(s, label)
		if err != nil {
			return err
		}
		return p.destroy(s, append(privs, pubs...)...)
	})
}

// ReceiveKEK unwraps a KEK that SendKEK wrapped to jk into a token object labelled label
// with exactly the attributes of CreateKEK (kekTemplate), then destroys the join key. The
// KEK's bytes exist only inside the two tokens. It fails with fault.AlreadyExists when a KEK
// with that label exists, and with fault.BadParameter when wrapped was not made for jk.
func (p *Pool) ReceiveKEK(ctx context.Context, jk *JoinKey, label string, wrapped []byte) (*KEK, error) {
	if jk == nil || jk.pool != p {
		return nil, errf(fault.BadParameter, "the join key does not belong to token %q", p.label)
	}
	if size := (jk.pub.N.BitLen() + 7) / 8; len(wrapped) != size {
		return nil, errf(fault.BadParameter, "a KEK wrapped to a %d-bit join key is %d bytes, got %d", jk.pub.N.BitLen(), size, len(wrapped))
	}
	kek, err := p.makeKEK(ctx, label, func(s pkcs11.SessionHandle, kekTmpl []*pkcs11.Attribute) (pkcs11.ObjectHandle, error) {
		var tmpl []*pkcs11.Attribute
		for _, a := range kekTmpl {
			if a.Type != pkcs11.CKA_VALUE_LEN { // not allowed in an unwrap template (softhsm-notes 1.53)
				tmpl = append(tmpl, a)
			}
		}
		o, err := p.mod.ctx.UnwrapKey(s, oaepSHA1(), jk.obj, wrapped, tmpl)
		if err != nil {
			if isCKR(err, pkcs11.CKR_GENERAL_ERROR) || isCKR(err, pkcs11.CKR_ENCRYPTED_DATA_INVALID) || isCKR(err, pkcs11.CKR_WRAPPED_KEY_INVALID) {
				// SoftHSM2 reports a failed OAEP decoding as CKR_GENERAL_ERROR (softhsm-notes 3.21).
				return 0, fmt.Errorf("receive KEK %q: the wrapped KEK does not decrypt under join key %q: %w", label, jk.label, fault.BadParameter)
			}
			return 0, p11err(fmt.Sprintf("receive KEK %q with join key %q", label, jk.label), err)
		}
		if err := p.checkPolicy(s, o, label, kekPolicy); err != nil {
			_ = p.destroy(s, o)
			return 0, err
		}
		return o, nil
	})
	if err != nil {
		return nil, err
	}
	if err := p.DestroyJoinKey(ctx, jk.label); err != nil {
		return nil, fmt.Errorf("KEK %q received, but the join key %q could not be destroyed (retry with DestroyJoinKey): %w", label, jk.label, err)
	}
	return kek, nil
}

// SendKEK wraps kek to the joining node's join key peer and returns the OAEP ciphertext,
// the only form in which the KEK leaves the token. The token wraps the KEK only to a public
// key its security officer marked CKA_TRUSTED, so TrustJoinKey must have put peer into this
// token first; SendKEK then destroys that trusted object whether or not the wrap worked,
// so that each trust allows one wrap. Without a trusted object it fails with fault.Forbidden.
func (p *Pool) SendKEK(ctx context.Context, kek *KEK, peer *rsa.PublicKey) ([]byte, error) {
	if err := checkJoinPublic(peer); err != nil {
		return nil, err
	}
	var out []byte
	err := p.withSession(ctx, func(s pkcs11.SessionHandle) error {
		objs, err := p.findTrusted(s, peer)
		if err != nil {
			return err
		}
		if len(objs) == 0 {
			return errf(fault.Forbidden, "no public key matching the join key is marked trusted on token %q; its security officer must trust it (TrustJoinKey) before KEK %q can be sent", p.label, kek.label)
		}
		// Whatever happens, the trust is spent.
		defer func() { _ = p.destroy(s, objs...) }()
		out, err = p.wrapKEKTo(s, kek, objs[0])
		if err != nil {
			return err
		}
		if len(out) != (peer.N.BitLen()+7)/8 {
			return errf(fault.HSMFailure, "the token wrapped KEK %q into %d bytes, want %d", kek.label, len(out), (peer.N.BitLen()+7)/8)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// wrapKEKTo wraps the KEK to the public key object pub with RSA-OAEP (SHA-1).
func (p *Pool) wrapKEKTo(s pkcs11.SessionHandle, kek *KEK, pub pkcs11.ObjectHandle) ([]byte, error) {
	out, err := p.mod.ctx.WrapKey(s, oaepSHA1(), pub, kek.obj)
	if isCKR(err, pkcs11.CKR_KEY_NOT_WRAPPABLE) {
		// CKA_WRAP_WITH_TRUSTED at work (softhsm-notes 1.45).
		return nil, fmt.Errorf("wrap KEK %q: the token wraps it only to keys its security officer marked trusted: %w: %w", kek.label, fault.Forbidden, ckrError(pkcs11.CKR_KEY_NOT_WRAPPABLE))
	}
	if err != nil {
		return nil, p11err(fmt.Sprintf("wrap KEK %q to the join key", kek.label), err)
	}
	return out, nil
}

// findTrusted returns the trusted RSA public key objects with pub's modulus and exponent.
func (p *Pool) findTrusted(s pkcs11.SessionHandle, pub *rsa.PublicKey) ([]pkcs11.ObjectHandle, error) {
	c := p.mod.ctx
	tmpl := []*pkcs11.Attribute{
		attr(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY),
		attr(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_RSA),
		attr(pkcs11.CKA_TRUSTED, true),
		attr(pkcs11.CKA_MODULUS, pub.N.Bytes()),
		attr(pkcs11.CKA_PUBLIC_EXPONENT, big.NewInt(int64(pub.E)).Bytes()),
	}
	if err := c.FindObjectsInit(s, tmpl); err != nil {
		return nil, p11err("find trusted keys", err)
	}
	objs, _, err := c.FindObjects(s, 16)
	if ferr := c.FindObjectsFinal(s); err == nil && ferr != nil {
		err = ferr
	}
	if err != nil {
		return nil, p11err("find trusted keys", err)
	}
	return objs, nil
}

// checkJoinPublic accepts only what CreateJoinKey makes: RSA-3072 with exponent 65537.
func checkJoinPublic(pub *rsa.PublicKey) error {
	if pub == nil || pub.N == nil || pub.N.BitLen() != JoinKeyBits || pub.E != 65537 {
		return errf(fault.BadParameter, "a join key is RSA-%d with exponent 65537", JoinKeyBits)
	}
	return nil
}
