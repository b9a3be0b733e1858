package hsm

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"io"

	"github.com/miekg/pkcs11"

	"github.com/hsmpool/hsmpool/internal/fault"
)

// ExchangeKeyBits is the size of the exchange key: OAEP-SHA256 must carry the restore
// blob's 64-byte content key, and the Azure CLI expects RSA-2048.
const ExchangeKeyBits = 2048

// ExchangeKey is the RSA key pair of a pool in recovery mode (the "transfer key" of
// GET /securitydomain/upload): restore blobs are encrypted to it. Both halves are token
// objects under one label, so that the key outlives a restart of the daemon between
// "init --recovery" and the upload; the private half can only decrypt and never leaves
// the token. An ExchangeKey is safe for concurrent use.
type ExchangeKey struct {
	pool  *Pool
	label string
	obj   pkcs11.ObjectHandle // the private key
	pub   *rsa.PublicKey
}

// Label returns the CKA_LABEL of both halves.
func (k *ExchangeKey) Label() string { return k.label }

// Public returns the RSA public key.
func (k *ExchangeKey) Public() *rsa.PublicKey { return k.pub }

// exchangePrivateTemplate is the private half: a persistent key that can do nothing but
// raw RSA decryption, from which OAEP-SHA256 decryption and the one self-signature of the
// exchange certificate are built in host code (SoftHSM2 2.6.1 has no OAEP with SHA-256).
func exchangePrivateTemplate(label string) []*pkcs11.Attribute {
	return []*pkcs11.Attribute{
		attr(pkcs11.CKA_TOKEN, true),        // survives a restart until the upload
		attr(pkcs11.CKA_PRIVATE, true),      // only a logged-in user sees it
		attr(pkcs11.CKA_LABEL, label),       // how FindExchangeKey finds it
		attr(pkcs11.CKA_SENSITIVE, true),    // the private exponent is never read out
		attr(pkcs11.CKA_EXTRACTABLE, false), // nor wrapped out
		attr(pkcs11.CKA_DECRYPT, true),      // the one right it needs
		// No CKA_SIGN: the certificate's signature is a raw RSA decryption of the PKCS#1
		// v1.5 encoding, which CKA_DECRYPT with CKM_RSA_X_509 already allows; a sign right
		// would add no power, only another route to audit.
		attr(pkcs11.CKA_SIGN, false),
		attr(pkcs11.CKA_UNWRAP, false),   // no key may be unwrapped into the token with it
		attr(pkcs11.CKA_DERIVE, false),   // nor derived from it
		attr(pkcs11.CKA_COPYABLE, false), // a copy could carry other rights
		attr(pkcs11.CKA_ALLOWED_MECHANISMS, ulongs(pkcs11.CKM_RSA_X_509, pkcs11.CKM_RSA_PKCS_OAEP)),
		attr(pkcs11.CKA_MODIFIABLE, false), // last: no right can be added later
	}
}

// exchangePolicy is what FindExchangeKey requires of the private object.
var exchangePolicy = keyPolicy{role: "exchange key", keyType: pkcs11.CKK_RSA, typeDoc: "an RSA key", attrs: []policyAttr{
	{pkcs11.CKA_SENSITIVE, "CKA_SENSITIVE", true},
	{pkcs11.CKA_EXTRACTABLE, "CKA_EXTRACTABLE", false},
	{pkcs11.CKA_DECRYPT, "CKA_DECRYPT", true},
	{pkcs11.CKA_SIGN, "CKA_SIGN", false},
	{pkcs11.CKA_UNWRAP, "CKA_UNWRAP", false},
	{pkcs11.CKA_DERIVE, "CKA_DERIVE", false},
}}

// CreateExchangeKey generates the exchange key pair in the token under label. It fails with
// fault.AlreadyExists when an object already carries the label.
func (p *Pool) CreateExchangeKey(ctx context.Context, label string) (*ExchangeKey, error) {
	if label == "" {
		return nil, errf(fault.BadParameter, "the exchange key needs a label")
	}
	k := &ExchangeKey{pool: p, label: label}
	err := p.withSession(ctx, func(s pkcs11.SessionHandle) error {
		privs, pubs, err := p.findExchange(s, label)
		if err != nil {
			return err
		}
		if len(privs)+len(pubs) > 0 {
			return errf(fault.AlreadyExists, "an exchange key labelled %q exists on token %q", label, p.label)
		}
		pubT := []*pkcs11.Attribute{
			attr(pkcs11.CKA_TOKEN, true),
			attr(pkcs11.CKA_PRIVATE, false),
			attr(pkcs11.CKA_LABEL, label),
			attr(pkcs11.CKA_MODULUS_BITS, ExchangeKeyBits),
			attr(pkcs11.CKA_PUBLIC_EXPONENT, []byte{1, 0, 1}),
			attr(pkcs11.CKA_ENCRYPT, true),
			attr(pkcs11.CKA_VERIFY, false),
			attr(pkcs11.CKA_WRAP, false),
		}
		c := p.mod.ctx
		pubO, privO, err := c.GenerateKeyPair(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, nil)}, pubT, exchangePrivateTemplate(label))
		if err != nil {
			return p11err("generate the exchange key", err)
		}
		n, e, err := p.rsaPublic(s, privO)
		if err != nil {
			_ = p.destroy(s, privO, pubO)
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

// FindExchangeKey finds the exchange key labelled label and checks its private half's
// policy. It fails with fault.NotFound when there is none.
func (p *Pool) FindExchangeKey(ctx context.Context, label string) (*ExchangeKey, error) {
	k := &ExchangeKey{pool: p, label: label}
	err := p.withSession(ctx, func(s pkcs11.SessionHandle) error {
		privs, _, err := p.findExchange(s, label)
		if err != nil {
			return err
		}
		switch len(privs) {
		case 0:
			return errf(fault.NotFound, "no exchange key labelled %q on token %q", label, p.label)
		case 1:
		default:
			return errf(fault.Conflict, "%d exchange keys labelled %q on token %q", len(privs), label, p.label)
		}
		if err := p.checkPolicy(s, privs[0], label, exchangePolicy); err != nil {
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

// DestroyExchangeKey destroys both halves of the exchange key labelled label. It is a no-op
// when there is none.
func (p *Pool) DestroyExchangeKey(ctx context.Context, label string) error {
	return p.withSession(context.WithoutCancel(ctx), func(s pkcs11.SessionHandle) error {
		privs, pubs, err := p.findExchange(s, label)
		if err != nil {
			return err
		}
		return p.destroy(s, append(privs, pubs...)...)
	})
}

// findExchange returns the private and public key objects labelled label.
func (p *Pool) findExchange(s pkcs11.SessionHandle, label string) (privs, pubs []pkcs11.ObjectHandle, err error) {
	if privs, err = p.findObjects(s, pkcs11.CKO_PRIVATE_KEY, label); err != nil {
		return nil, nil, err
	}
	if pubs, err = p.findObjects(s, pkcs11.CKO_PUBLIC_KEY, label); err != nil {
		return nil, nil, err
	}
	return privs, pubs, nil
}

func (p *Pool) findObjects(s pkcs11.SessionHandle, class uint, label string) ([]pkcs11.ObjectHandle, error) {
	c := p.mod.ctx
	tmpl := []*pkcs11.Attribute{
		attr(pkcs11.CKA_CLASS, class),
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

// Decrypter returns a crypto.Decrypter over the exchange key for RSA-OAEP with SHA-256
// (opts must be *rsa.OAEPOptions with Hash crypto.SHA256, MGF1 with SHA-256 and no label).
// The raw RSA decryption runs in the token; the OAEP decoding runs in host code in constant
// time, as for the keys API's RSA-OAEP-256. Calls are bounded by ctx.
func (k *ExchangeKey) Decrypter(ctx context.Context) crypto.Decrypter {
	return exchangeDecrypter{k: k, ctx: ctx}
}

// Signer returns a crypto.Signer over the exchange key for RS256 (RSASSA-PKCS1-v1_5 with
// SHA-256), enough for x509.CreateCertificate to self-sign the exchange certificate. Every
// signature is verified before it is returned.
func (k *ExchangeKey) Signer(ctx context.Context) crypto.Signer {
	return exchangeSigner{k: k, ctx: ctx}
}

type exchangeDecrypter struct {
	k   *ExchangeKey
	ctx context.Context
}

func (d exchangeDecrypter) Public() crypto.PublicKey { return d.k.pub }

func (d exchangeDecrypter) Decrypt(_ io.Reader, ct []byte, opts crypto.DecrypterOpts) ([]byte, error) {
	o, ok := opts.(*rsa.OAEPOptions)
	if !ok || o.Hash != crypto.SHA256 || (o.MGFHash != 0 && o.MGFHash != crypto.SHA256) || len(o.Label) != 0 {
		return nil, errf(fault.BadParameter, "the exchange key decrypts only RSA-OAEP with SHA-256 and no label")
	}
	k := d.k
	if size := (k.pub.N.BitLen() + 7) / 8; len(ct) != size {
		return nil, errf(fault.BadParameter, "RSA-OAEP-256 ciphertext for the exchange key must be %d bytes, got %d", size, len(ct))
	}
	var out []byte
	err := k.pool.withSession(d.ctx, func(s pkcs11.SessionHandle) error {
		var err error
		if out, err = k.pool.hostOAEP256(s, k.obj, ct); err != nil {
			return decryptErr(RSAOAEP256, err)
		}
		return nil
	})
	return out, err
}

type exchangeSigner struct {
	k   *ExchangeKey
	ctx context.Context
}

func (g exchangeSigner) Public() crypto.PublicKey { return g.k.pub }

func (g exchangeSigner) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts == nil || opts.HashFunc() != crypto.SHA256 || len(digest) != sha256.Size {
		return nil, errf(fault.BadParameter, "the exchange key signs only SHA-256 digests with RSASSA-PKCS1-v1_5")
	}
	if _, pss := opts.(*rsa.PSSOptions); pss {
		return nil, errf(fault.BadParameter, "the exchange key signs only with RSASSA-PKCS1-v1_5, not PSS")
	}
	k := g.k
	size := (k.pub.N.BitLen() + 7) / 8
	// EMSA-PKCS1-v1_5 (RFC 8017 §9.2): 00 01 FF..FF 00 DigestInfo.
	tLen := len(prefixSHA256) + len(digest)
	em := make([]byte, size)
	em[1] = 1
	for i := 2; i < size-tLen-1; i++ {
		em[i] = 0xff
	}
	copy(em[size-tLen:], prefixSHA256)
	copy(em[size-len(digest):], digest)
	var sig []byte
	err := k.pool.withSession(g.ctx, func(s pkcs11.SessionHandle) error {
		out, err := k.pool.decryptOnce(s, k.obj, pkcs11.NewMechanism(pkcs11.CKM_RSA_X_509, nil), em)
		if err != nil {
			return p11err("sign with the exchange key", err)
		}
		if len(out) > size {
			return errf(fault.HSMFailure, "raw RSA result of %d bytes for a %d-byte modulus", len(out), size)
		}
		sig = make([]byte, size)
		copy(sig[size-len(out):], out)
		return nil
	})
	if err != nil {
		return nil, err
	}
	// A faulty signature can leak the private key (Boneh-DeMillo-Lipton); check it.
	if err := rsa.VerifyPKCS1v15(k.pub, crypto.SHA256, digest, sig); err != nil {
		return nil, errf(fault.HSMFailure, "the token's signature with the exchange key does not verify")
	}
	return sig, nil
}
