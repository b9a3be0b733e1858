package hsm

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/subtle"
	"math/big"

	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	secpecdsa "github.com/decred/dcrd/dcrec/secp256k1/v4/ecdsa"
	"github.com/miekg/pkcs11"

	"github.com/hsmpool/hsmpool/internal/fault"
)

// checkPair proves that an imported private key belongs to the public key that came with
// it: the token signs (or, for a decrypt-only RSA key, decrypts) and Go checks the result
// with the public key. Without it a JWK whose d does not match x and y would import, and
// every signature the pool made with it would fail to verify for ever.
func (p *Pool) checkPair(s pkcs11.SessionHandle, k *Key) error {
	c := p.mod.ctx
	mismatch := errf(fault.BadParameter, "the private key does not belong to the public key given with it")
	digest := make([]byte, 32)
	if _, err := rand.Read(digest); err != nil {
		return err
	}
	switch pub := k.pub.(type) {
	case *rsa.PublicKey:
		if k.usage.has(UseSign) {
			if err := c.SignInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS, nil)}, k.obj); err != nil {
				return p11err("check the imported key", err)
			}
			sig, err := c.Sign(s, append(append([]byte(nil), prefixSHA256...), digest...))
			if err != nil || rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest, sig) != nil {
				return mismatch
			}
			return nil
		}
		if !k.usage.has(UseDecrypt | UseUnwrapKey) {
			return nil // the key can do nothing in the token; nothing to check with
		}
		ct, err := rsa.EncryptOAEP(sha1.New(), rand.Reader, pub, digest, nil)
		if err != nil {
			return err
		}
		pt, err := p.decryptOnce(s, k.obj, pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_OAEP,
			pkcs11.NewOAEPParams(pkcs11.CKM_SHA_1, pkcs11.CKG_MGF1_SHA1, pkcs11.CKZ_DATA_SPECIFIED, nil)), ct)
		if err != nil || subtle.ConstantTimeCompare(pt, digest) != 1 {
			return mismatch
		}
		return nil
	case *ecdsa.PublicKey, *secp256k1.PublicKey:
		if !k.usage.has(UseSign) {
			return nil
		}
		if err := c.SignInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil)}, k.obj); err != nil {
			return p11err("check the imported key", err)
		}
		sig, err := c.Sign(s, digest)
		if err != nil || !verifyECDSA(pub, digest, sig) {
			return mismatch
		}
	}
	return nil
}

// verifyECDSA checks a raw r||s signature.
func verifyECDSA(pub crypto.PublicKey, digest, sig []byte) bool {
	half := len(sig) / 2
	if half == 0 || len(sig)%2 != 0 {
		return false
	}
	switch pk := pub.(type) {
	case *ecdsa.PublicKey:
		return ecdsa.Verify(pk, digest, new(big.Int).SetBytes(sig[:half]), new(big.Int).SetBytes(sig[half:]))
	case *secp256k1.PublicKey:
		var r, s secp256k1.ModNScalar
		if half != 32 || r.SetByteSlice(sig[:half]) || s.SetByteSlice(sig[half:]) {
			return false
		}
		return secpecdsa.NewSignature(&r, &s).Verify(digest, pk)
	}
	return false
}
