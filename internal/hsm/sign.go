package hsm

import (
	"context"
	"crypto/ecdsa"
	"fmt"
	"math/big"

	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	"github.com/miekg/pkcs11"

	"github.com/hsmpool/hsmpool/internal/fault"
)

// Alg is an Azure Key Vault algorithm name, such as "ES256" or "RSA-OAEP-256".
type Alg string

// Signature algorithms.
const (
	RS256  Alg = "RS256"
	RS384  Alg = "RS384"
	RS512  Alg = "RS512"
	PS256  Alg = "PS256"
	PS384  Alg = "PS384"
	PS512  Alg = "PS512"
	ES256  Alg = "ES256"
	ES256K Alg = "ES256K"
	ES384  Alg = "ES384"
	ES512  Alg = "ES512"
	HS256  Alg = "HS256"
	HS384  Alg = "HS384"
	HS512  Alg = "HS512"
)

// signAlg describes a signature algorithm: the key it needs and the digest it signs.
type signAlg struct {
	key      KeyType
	curve    Curve // EC only
	hashLen  int   // digest length; for HMAC the minimum key length (RFC 7518 §3.2)
	hashMech uint  // CKM_SHA* for PSS parameters
	mgf      uint
	mech     uint
	prefix   []byte // DigestInfo prefix for RS*
}

// DigestInfo DER prefixes of PKCS#1 v1.5 signatures (RFC 8017 §9.2, note 1).
var (
	prefixSHA256 = []byte{0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20}
	prefixSHA384 = []byte{0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30}
	prefixSHA512 = []byte{0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40}
)

var signAlgs = map[Alg]signAlg{
	RS256:  {key: RSA, hashLen: 32, mech: pkcs11.CKM_RSA_PKCS, prefix: prefixSHA256},
	RS384:  {key: RSA, hashLen: 48, mech: pkcs11.CKM_RSA_PKCS, prefix: prefixSHA384},
	RS512:  {key: RSA, hashLen: 64, mech: pkcs11.CKM_RSA_PKCS, prefix: prefixSHA512},
	PS256:  {key: RSA, hashLen: 32, mech: pkcs11.CKM_RSA_PKCS_PSS, hashMech: pkcs11.CKM_SHA256, mgf: pkcs11.CKG_MGF1_SHA256},
	PS384:  {key: RSA, hashLen: 48, mech: pkcs11.CKM_RSA_PKCS_PSS, hashMech: pkcs11.CKM_SHA384, mgf: pkcs11.CKG_MGF1_SHA384},
	PS512:  {key: RSA, hashLen: 64, mech: pkcs11.CKM_RSA_PKCS_PSS, hashMech: pkcs11.CKM_SHA512, mgf: pkcs11.CKG_MGF1_SHA512},
	ES256:  {key: EC, curve: P256, hashLen: 32, mech: pkcs11.CKM_ECDSA},
	ES256K: {key: EC, curve: P256K, hashLen: 32, mech: pkcs11.CKM_ECDSA},
	ES384:  {key: EC, curve: P384, hashLen: 48, mech: pkcs11.CKM_ECDSA},
	ES512:  {key: EC, curve: P521, hashLen: 64, mech: pkcs11.CKM_ECDSA},
	HS256:  {key: AES, hashLen: 32, mech: pkcs11.CKM_SHA256_HMAC},
	HS384:  {key: AES, hashLen: 48, mech: pkcs11.CKM_SHA384_HMAC},
	HS512:  {key: AES, hashLen: 64, mech: pkcs11.CKM_SHA512_HMAC},
}

// maxHMACInput bounds the data of one HS* call; the REST layer limits bodies far below.
const maxHMACInput = 1 << 20

// Sign signs with k. For RS*, PS* and ES* value is the message digest, whose length must
// match the algorithm; RS* builds the DigestInfo itself; ES* returns the raw r||s form,
// and ES256K a low-S signature. For HS* value is the data to authenticate.
func (p *Pool) Sign(ctx context.Context, k *Key, alg Alg, value []byte) ([]byte, error) {
	a, err := k.checkSign(alg, value)
	if err != nil {
		return nil, err
	}
	obj := k.obj
	var data []byte
	var mech *pkcs11.Mechanism
	switch {
	case a.prefix != nil:
		data = append(append(make([]byte, 0, len(a.prefix)+len(value)), a.prefix...), value...)
		mech = pkcs11.NewMechanism(a.mech, nil)
	case a.mech == pkcs11.CKM_RSA_PKCS_PSS:
		// Salt as long as the digest, as Azure and most verifiers expect.
		data = value
		mech = pkcs11.NewMechanism(a.mech, pkcs11.NewPSSParams(a.hashMech, a.mgf, uint(a.hashLen)))
	case a.key == AES:
		obj, data = k.hmac, value
		mech = pkcs11.NewMechanism(a.mech, nil)
	default:
		data = value
		mech = pkcs11.NewMechanism(a.mech, nil)
	}
	var sig []byte
	err = p.withSession(ctx, func(s pkcs11.SessionHandle) error {
		c := p.mod.ctx
		if err := c.SignInit(s, []*pkcs11.Mechanism{mech}, obj); err != nil {
			return p11err(fmt.Sprintf("sign with %s", alg), err)
		}
		out, err := c.Sign(s, data)
		if err != nil {
			return p11err(fmt.Sprintf("sign with %s", alg), err)
		}
		sig = out
		return nil
	})
	if err != nil {
		return nil, err
	}
	if alg == ES256K {
		lowS(sig, curves[P256K].order)
	}
	return sig, nil
}

// checkSign validates alg against the key and the digest before the HSM sees them, so the
// caller gets an error that says what is wrong rather than a CKR code.
func (k *Key) checkSign(alg Alg, value []byte) (signAlg, error) {
	a, ok := signAlgs[alg]
	if !ok {
		return a, errf(fault.BadParameter, "%q is not a signature algorithm", alg)
	}
	if err := k.fits(alg, a.key, a.curve); err != nil {
		return a, err
	}
	if !k.usage.has(UseSign) {
		return a, errf(fault.Forbidden, "the key may not sign")
	}
	if a.key == AES {
		if k.spec.Bits/8 < a.hashLen {
			return a, errf(fault.BadParameter, "%s needs a key of at least %d bits (RFC 7518 §3.2); this key has %d", alg, a.hashLen*8, k.spec.Bits)
		}
		if k.hmac == 0 {
			return a, errf(fault.Unsupported, "%s needs the key unwrapped from its blob (HMAC runs on a generic-secret twin, see docs/hsm.md)", alg)
		}
		if len(value) == 0 || len(value) > maxHMACInput {
			return a, errf(fault.BadParameter, "%s input must be 1 to %d bytes, got %d", alg, maxHMACInput, len(value))
		}
		return a, nil
	}
	if len(value) != a.hashLen {
		return a, errf(fault.BadParameter, "%s signs a %d-byte digest, got %d bytes", alg, a.hashLen, len(value))
	}
	return a, nil
}

// fits checks that the algorithm alg, which needs a key of type t (and curve c for EC),
// can run on k.
func (k *Key) fits(alg Alg, t KeyType, c Curve) error {
	if k.spec.Type != t || (t == EC && k.spec.Curve != c) {
		want := t.String()
		if t == EC {
			want = "EC " + string(c)
		}
		return errf(fault.BadParameter, "algorithm %s needs an %s key, not %s", alg, want, k.spec)
	}
	return nil
}

// lowS replaces s by n-s in a raw r||s signature when s > n/2. Both are valid ECDSA
// signatures; Bitcoin-style verifiers accept only the low one (BIP 62, BIP 146).
func lowS(sig []byte, n *big.Int) {
	half := len(sig) / 2
	s := new(big.Int).SetBytes(sig[half:])
	if s.Cmp(new(big.Int).Rsh(n, 1)) <= 0 {
		return
	}
	s.Sub(n, s)
	s.FillBytes(sig[half:])
}

// ecCurveOf names the curve of an EC public key, or "" if pub is not one.
func ecCurveOf(pub any) Curve {
	switch pk := pub.(type) {
	case *ecdsa.PublicKey:
		for name, info := range curves {
			if info.goCurve != nil && info.goCurve == pk.Curve {
				return name
			}
		}
	case *secp256k1.PublicKey:
		return P256K
	}
	return ""
}
