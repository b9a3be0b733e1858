package hsm

import (
	"context"
	"crypto/aes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"fmt"
	"sync"

	"github.com/miekg/pkcs11"

	"github.com/hsmpool/hsmpool/internal/fault"
	"github.com/hsmpool/hsmpool/internal/keywrap"
	"github.com/hsmpool/hsmpool/internal/secret"
)

// Plaintext key material enters the token wrapped, never as a C_CreateObject attribute:
// miekg/pkcs11 copies attribute values into C memory that it frees without zeroing, where a
// wrapped value is only ciphertext. The route is the two-step BYOK unwrap that SoftHSM2
// 2.6.1 supports (softhsm-notes §4): a fresh AES key encrypted with RSA-OAEP (SHA-1, the
// only OAEP SoftHSM2 unwraps with) to the pool's transport key, and the material wrapped
// under that AES key with RFC 5649. In Go the material lives only in buffers that are
// wiped, and the ephemeral AES key is used once.

// transport is the pool's import key pair, made in the token on first use. Its private
// half can only unwrap, and its unwrap template forces what it unwraps to be an AES key
// that is sensitive, non-extractable and good only for unwrapping.
type transport struct {
	mu   sync.Mutex
	priv pkcs11.ObjectHandle
	pub  *rsa.PublicKey
}

var transportUnwrapPolicy = []*pkcs11.Attribute{
	attr(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
	attr(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
	attr(pkcs11.CKA_SENSITIVE, true),
	attr(pkcs11.CKA_EXTRACTABLE, false),
	attr(pkcs11.CKA_UNWRAP, true),
	attr(pkcs11.CKA_WRAP, false),
	attr(pkcs11.CKA_ENCRYPT, false),
	attr(pkcs11.CKA_DECRYPT, false),
}

// ephemeralTemplate is the template of the one-use AES key; it must agree with
// transportUnwrapPolicy.
func ephemeralTemplate() []*pkcs11.Attribute {
	return append([]*pkcs11.Attribute{attr(pkcs11.CKA_TOKEN, false), attr(pkcs11.CKA_PRIVATE, true)}, transportUnwrapPolicy...)
}

func (p *Pool) transportKey(s pkcs11.SessionHandle) (pkcs11.ObjectHandle, *rsa.PublicKey, error) {
	t := &p.transport
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.priv != 0 {
		return t.priv, t.pub, nil
	}
	nested, free := nestedTemplate(transportUnwrapPolicy)
	defer free()
	pubT := []*pkcs11.Attribute{
		attr(pkcs11.CKA_TOKEN, false),
		attr(pkcs11.CKA_MODULUS_BITS, 2048),
		attr(pkcs11.CKA_PUBLIC_EXPONENT, []byte{1, 0, 1}),
	}
	privT := []*pkcs11.Attribute{
		attr(pkcs11.CKA_TOKEN, false),
		attr(pkcs11.CKA_PRIVATE, true),
		attr(pkcs11.CKA_SENSITIVE, true),
		attr(pkcs11.CKA_EXTRACTABLE, false),
		attr(pkcs11.CKA_UNWRAP, true),
		attr(pkcs11.CKA_DECRYPT, false),
		attr(pkcs11.CKA_SIGN, false),
		attr(pkcs11.CKA_UNWRAP_TEMPLATE, nested),
	}
	c := p.mod.ctx
	pubO, privO, err := c.GenerateKeyPair(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, nil)}, pubT, privT)
	if err != nil {
		return 0, nil, p11err("generate the import transport key", err)
	}
	defer func() { _ = c.DestroyObject(s, pubO) }()
	n, e, err := p.rsaPublic(s, pubO)
	if err != nil {
		_ = c.DestroyObject(s, privO)
		return 0, nil, err
	}
	t.priv, t.pub = privO, &rsa.PublicKey{N: n, E: e}
	return t.priv, t.pub, nil
}

// importWrapped brings plaintext into the token as a new object with template tmpl. It
// does not wipe plaintext; the caller does.
func (p *Pool) importWrapped(s pkcs11.SessionHandle, plaintext []byte, tmpl []*pkcs11.Attribute) (pkcs11.ObjectHandle, error) {
	priv, pub, err := p.transportKey(s)
	if err != nil {
		return 0, err
	}
	eph := make([]byte, 32)
	defer clear(eph)
	if _, err := rand.Read(eph); err != nil {
		return 0, fmt.Errorf("make an ephemeral import key: %w", err)
	}
	block, err := aes.NewCipher(eph)
	if err != nil {
		return 0, fmt.Errorf("make an ephemeral import key: %w", err)
	}
	wrapped, err := keywrap.WrapPad(block, plaintext)
	if err != nil {
		return 0, fmt.Errorf("wrap key material for import: %w", err)
	}
	// With the ephemeral key, wrapped is as good as the plaintext. Go's AES key schedule
	// and crypto/rsa's big-number copy of eph cannot be cleared: best effort.
	defer clear(wrapped)
	encEph, err := rsa.EncryptOAEP(sha1.New(), rand.Reader, pub, eph, nil)
	if err != nil {
		return 0, fmt.Errorf("wrap the ephemeral import key: %w", err)
	}
	c := p.mod.ctx
	oaep := pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_OAEP, pkcs11.NewOAEPParams(pkcs11.CKM_SHA_1, pkcs11.CKG_MGF1_SHA1, pkcs11.CKZ_DATA_SPECIFIED, nil))
	ephO, err := c.UnwrapKey(s, []*pkcs11.Mechanism{oaep}, priv, encEph, ephemeralTemplate())
	if err != nil {
		return 0, p11err("unwrap the ephemeral import key", err)
	}
	defer func() { _ = c.DestroyObject(s, ephO) }()
	o, err := c.UnwrapKey(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_WRAP_PAD, nil)}, ephO, wrapped, tmpl)
	if err != nil {
		if isCKR(err, pkcs11.CKR_FUNCTION_FAILED) || isCKR(err, pkcs11.CKR_GENERAL_ERROR) {
			// SoftHSM2 fails this way when the material does not decode as the key type.
			return 0, fmt.Errorf("the token does not accept the key material as a key of this type: %w: %w", fault.BadParameter, err)
		}
		return 0, p11err("unwrap the imported key", err)
	}
	return o, nil
}

// ImportKEK brings an existing domain KEK into the token under label, with the same
// attributes as CreateKEK: at activation the pool makes the KEK's bytes to seal them in the
// security domain, and in a recovery they come out of the restore blob. value must be 32
// bytes; ImportKEK does not wipe it (the caller may still need it), the caller does.
func (p *Pool) ImportKEK(ctx context.Context, label string, value secret.Bytes) (*KEK, error) {
	if value.Len() != 32 {
		return nil, errf(fault.BadParameter, "a KEK is 32 bytes (AES-256), got %d", value.Len())
	}
	return p.makeKEK(ctx, label, func(s pkcs11.SessionHandle, kekTmpl []*pkcs11.Attribute) (pkcs11.ObjectHandle, error) {
		var tmpl []*pkcs11.Attribute
		for _, a := range kekTmpl {
			if a.Type != pkcs11.CKA_VALUE_LEN { // not allowed in an unwrap template (softhsm-notes 1.53)
				tmpl = append(tmpl, a)
			}
		}
		o, err := p.importWrapped(s, value.Reveal(), tmpl)
		if err != nil {
			return 0, fmt.Errorf("import KEK %q: %w", label, err)
		}
		return o, nil
	})
}
