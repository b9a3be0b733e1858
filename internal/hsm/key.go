package hsm

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/asn1"
	"fmt"
	"math/big"
	"sync"

	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	"github.com/miekg/pkcs11"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/hsmpool/hsmpool/internal/fault"
	"github.com/hsmpool/hsmpool/internal/secret"
)

// KeyType is the family of a key. The zero value is invalid.
type KeyType uint8

const (
	_ KeyType = iota
	RSA
	EC
	AES
)

func (t KeyType) String() string {
	switch t {
	case RSA:
		return "RSA"
	case EC:
		return "EC"
	case AES:
		return "AES"
	}
	return "invalid key type"
}

// Curve names an elliptic curve with its JOSE name, as Azure does.
type Curve string

const (
	P256  Curve = "P-256"
	P384  Curve = "P-384"
	P521  Curve = "P-521"
	P256K Curve = "P-256K" // secp256k1
)

// curveInfo is what the layer needs to know of a curve.
type curveInfo struct {
	oid     asn1.ObjectIdentifier
	size    int      // bytes of a coordinate and of r or s
	order   *big.Int // group order n, for low-S normalisation
	goCurve elliptic.Curve
}

var curves = map[Curve]curveInfo{
	P256:  {asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}, 32, elliptic.P256().Params().N, elliptic.P256()},
	P384:  {asn1.ObjectIdentifier{1, 3, 132, 0, 34}, 48, elliptic.P384().Params().N, elliptic.P384()},
	P521:  {asn1.ObjectIdentifier{1, 3, 132, 0, 35}, 66, elliptic.P521().Params().N, elliptic.P521()},
	P256K: {asn1.ObjectIdentifier{1, 3, 132, 0, 10}, 32, secp256k1.Params().N, nil},
}

// Spec says what a key is: RSA with Bits 2048/3072/4096, EC on Curve, or AES with Bits
// 128/192/256.
type Spec struct {
	Type  KeyType
	Bits  int
	Curve Curve
}

func (s Spec) String() string {
	switch s.Type {
	case EC:
		return fmt.Sprintf("EC %s", s.Curve)
	case RSA, AES:
		return fmt.Sprintf("%s-%d", s.Type, s.Bits)
	}
	return "invalid key spec"
}

// Validate checks that the spec is one the pool supports.
func (s Spec) Validate() error {
	switch s.Type {
	case RSA:
		if s.Bits == 2048 || s.Bits == 3072 || s.Bits == 4096 {
			return nil
		}
		return errf(fault.BadParameter, "RSA key size %d is not one of 2048, 3072, 4096", s.Bits)
	case EC:
		if _, ok := curves[s.Curve]; ok {
			return nil
		}
		return errf(fault.BadParameter, "curve %q is not one of P-256, P-384, P-521, P-256K", s.Curve)
	case AES:
		if s.Bits == 128 || s.Bits == 192 || s.Bits == 256 {
			return nil
		}
		return errf(fault.BadParameter, "AES key size %d is not one of 128, 192, 256", s.Bits)
	}
	return errf(fault.BadParameter, "key type %d is not RSA, EC or AES", s.Type)
}

// Usage is the set of Azure key operations a key object may serve. The layer turns it
// into PKCS#11 usage attributes, so the token refuses an operation the key was not made
// for even if a caller's check is missing.
type Usage uint8

const (
	UseSign Usage = 1 << iota
	UseVerify
	UseEncrypt
	UseDecrypt
	UseWrapKey
	UseUnwrapKey
)

// UseAll is every operation.
const UseAll = UseSign | UseVerify | UseEncrypt | UseDecrypt | UseWrapKey | UseUnwrapKey

func (u Usage) has(v Usage) bool { return u&v != 0 }

// Key is a key object inside the token: the private or secret key as a session object,
// and the public key in Go for RSA and EC. A Key stays usable until Destroy or until its
// Pool is closed. Keys are safe for concurrent use.
type Key struct {
	pool  *Pool
	spec  Spec
	usage Usage
	obj   pkcs11.ObjectHandle
	// hmac is a CKK_GENERIC_SECRET twin of an AES key for HS256, which SoftHSM2 and the
	// PKCS#11 spec allow only on generic secrets (see docs/hsm.md). 0 when absent.
	hmac        pkcs11.ObjectHandle
	pub         crypto.PublicKey
	extractable bool

	destroyOnce sync.Once
	destroyErr  error
}

// Spec returns what the key is.
func (k *Key) Spec() Spec { return k.spec }

// Public returns the public key: *rsa.PublicKey, *ecdsa.PublicKey for the NIST curves, or
// *secp256k1.PublicKey for P-256K. It is nil for AES keys.
func (k *Key) Public() crypto.PublicKey { return k.pub }

// Destroy removes the key objects from the token. It is idempotent, and a no-op once the
// Pool is closed (closing the sessions destroyed the objects already).
func (k *Key) Destroy(ctx context.Context) error {
	// A caller's cancellation must not leave the object behind: Destroy runs once.
	ctx = context.WithoutCancel(ctx)
	k.destroyOnce.Do(func() {
		err := k.pool.withSession(ctx, func(s pkcs11.SessionHandle) error {
			return k.pool.destroy(s, k.obj, k.hmac)
		})
		if err == errClosed {
			err = nil
		}
		k.destroyErr = err
	})
	return k.destroyErr
}

func (p *Pool) destroy(s pkcs11.SessionHandle, objs ...pkcs11.ObjectHandle) error {
	var first error
	for _, o := range objs {
		if o == 0 {
			continue
		}
		if err := p.mod.ctx.DestroyObject(s, o); err != nil && first == nil {
			first = p11err("destroy key object", err)
		}
	}
	return first
}

// usageAttrs are the PKCS#11 rights of a private or secret key object for the Azure
// operations in u. Public-key operations (verify, RSA encrypt and wrap) run in Go from the
// public key and need no right on the private object.
func usageAttrs(t KeyType, u Usage) []*pkcs11.Attribute {
	switch t {
	case RSA:
		// Without a mechanism list a sign-only key would also do raw RSA (CKM_RSA_X_509),
		// which decrypts anything encrypted to it.
		var mechs []uint
		if u.has(UseSign) {
			mechs = append(mechs, pkcs11.CKM_RSA_PKCS, pkcs11.CKM_RSA_PKCS_PSS)
		}
		if u.has(UseDecrypt | UseUnwrapKey) {
			// CKM_RSA_X_509 is the RSA-OAEP-256 route on tokens without OAEP-SHA-256.
			mechs = append(mechs, pkcs11.CKM_RSA_PKCS_OAEP, pkcs11.CKM_RSA_X_509)
			if !u.has(UseSign) {
				mechs = append(mechs, pkcs11.CKM_RSA_PKCS)
			}
		}
		return []*pkcs11.Attribute{
			attr(pkcs11.CKA_SIGN, u.has(UseSign)),
			// Azure unwrapKey with RSA is an RSA decryption of the client's bytes.
			attr(pkcs11.CKA_DECRYPT, u.has(UseDecrypt|UseUnwrapKey)),
			attr(pkcs11.CKA_UNWRAP, false),
			attr(pkcs11.CKA_ALLOWED_MECHANISMS, ulongs(orNone(mechs)...)),
		}
	case EC:
		return []*pkcs11.Attribute{
			attr(pkcs11.CKA_SIGN, u.has(UseSign)),
			attr(pkcs11.CKA_DERIVE, false),
			attr(pkcs11.CKA_ALLOWED_MECHANISMS, ulongs(pkcs11.CKM_ECDSA)),
		}
	case AES:
		var mechs []uint
		if u.has(UseEncrypt | UseDecrypt) {
			mechs = append(mechs, pkcs11.CKM_AES_GCM, pkcs11.CKM_AES_CBC, pkcs11.CKM_AES_CBC_PAD)
		}
		if u.has(UseWrapKey | UseUnwrapKey) {
			mechs = append(mechs, pkcs11.CKM_AES_KEY_WRAP, pkcs11.CKM_AES_KEY_WRAP_PAD)
		}
		if u.has(UseWrapKey) {
			// RFC 5649 wrapping in host code over single AES blocks; see wrapKeyPad.
			mechs = append(mechs, pkcs11.CKM_AES_ECB)
		}
		mechs = orNone(mechs)
		return []*pkcs11.Attribute{
			attr(pkcs11.CKA_ENCRYPT, u.has(UseEncrypt|UseWrapKey)),
			attr(pkcs11.CKA_DECRYPT, u.has(UseDecrypt)),
			attr(pkcs11.CKA_WRAP, u.has(UseWrapKey)),
			attr(pkcs11.CKA_UNWRAP, u.has(UseUnwrapKey)),
			attr(pkcs11.CKA_SIGN, false),
			attr(pkcs11.CKA_DERIVE, false),
			attr(pkcs11.CKA_ALLOWED_MECHANISMS, ulongs(mechs...)),
		}
	}
	return nil
}

// orNone returns mechs, or a list with one mechanism no key type has when mechs is empty:
// an empty CKA_ALLOWED_MECHANISMS means "any mechanism" in PKCS#11.
func orNone(mechs []uint) []uint {
	if len(mechs) == 0 {
		return []uint{pkcs11.CKM_VENDOR_DEFINED}
	}
	return mechs
}

// extractableTemplate is the private or secret half of a key from Generate or Import: a
// sensitive session object that can be wrapped once under the KEK.
func extractableTemplate(t KeyType, u Usage) []*pkcs11.Attribute {
	return append([]*pkcs11.Attribute{
		attr(pkcs11.CKA_TOKEN, false),
		attr(pkcs11.CKA_PRIVATE, true),
		attr(pkcs11.CKA_SENSITIVE, true),
		attr(pkcs11.CKA_EXTRACTABLE, true),
	}, usageAttrs(t, u)...)
}

// Generate makes a new key inside the token as an extractable session object, so that it
// can be wrapped once under the domain KEK with Wrap. It never leaves the token in clear:
// it is sensitive, and session objects are visible to this process only. The caller wraps
// it and then destroys it; operations run on keys from Unwrap, which are non-extractable.
func (p *Pool) Generate(ctx context.Context, spec Spec, u Usage) (*Key, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	k := &Key{pool: p, spec: spec, usage: u, extractable: true}
	priv := extractableTemplate(spec.Type, u)
	err := p.withSession(ctx, func(s pkcs11.SessionHandle) error {
		c := p.mod.ctx
		switch spec.Type {
		case AES:
			tmpl := append([]*pkcs11.Attribute{
				attr(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
				attr(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
				attr(pkcs11.CKA_VALUE_LEN, spec.Bits/8),
			}, priv...)
			o, err := c.GenerateKey(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)}, tmpl)
			if err != nil {
				return p11err(fmt.Sprintf("generate %s key", spec), err)
			}
			k.obj = o
			return nil
		case RSA:
			pubT := []*pkcs11.Attribute{
				attr(pkcs11.CKA_TOKEN, false),
				attr(pkcs11.CKA_MODULUS_BITS, spec.Bits),
				attr(pkcs11.CKA_PUBLIC_EXPONENT, []byte{1, 0, 1}),
			}
			return p.generatePair(s, k, pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, pubT, priv)
		default:
			params, _ := asn1.Marshal(curves[spec.Curve].oid)
			pubT := []*pkcs11.Attribute{
				attr(pkcs11.CKA_TOKEN, false),
				attr(pkcs11.CKA_EC_PARAMS, params),
			}
			return p.generatePair(s, k, pkcs11.CKM_EC_KEY_PAIR_GEN, pubT, priv)
		}
	})
	if err != nil {
		return nil, err
	}
	return k, nil
}

// generatePair makes a key pair, keeps the private object and reads the public key into
// Go; the public object is destroyed because public-key operations run in Go.
func (p *Pool) generatePair(s pkcs11.SessionHandle, k *Key, mech uint, pubT, privT []*pkcs11.Attribute) error {
	c := p.mod.ctx
	pubO, privO, err := c.GenerateKeyPair(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(mech, nil)}, pubT, privT)
	if err != nil {
		return p11err(fmt.Sprintf("generate %s key", k.spec), err)
	}
	defer func() { _ = c.DestroyObject(s, pubO) }()
	pub, err := p.readPublic(s, pubO, k.spec)
	if err != nil {
		_ = c.DestroyObject(s, privO)
		return err
	}
	k.obj, k.pub = privO, pub
	return nil
}

// readPublic reads the public key of an RSA or EC public key object.
func (p *Pool) readPublic(s pkcs11.SessionHandle, o pkcs11.ObjectHandle, spec Spec) (crypto.PublicKey, error) {
	if spec.Type == RSA {
		n, e, err := p.rsaPublic(s, o)
		if err != nil {
			return nil, err
		}
		return &rsa.PublicKey{N: n, E: e}, nil
	}
	attrs, err := p.mod.ctx.GetAttributeValue(s, o, []*pkcs11.Attribute{attr(pkcs11.CKA_EC_POINT, nil)})
	if err != nil {
		return nil, p11err("read EC public key", err)
	}
	return parseECPoint(spec.Curve, attrs[0].Value)
}

// rsaPublic reads the modulus and public exponent, which RSA private objects carry too.
func (p *Pool) rsaPublic(s pkcs11.SessionHandle, o pkcs11.ObjectHandle) (*big.Int, int, error) {
	attrs, err := p.mod.ctx.GetAttributeValue(s, o, []*pkcs11.Attribute{
		attr(pkcs11.CKA_MODULUS, nil), attr(pkcs11.CKA_PUBLIC_EXPONENT, nil),
	})
	if err != nil {
		return nil, 0, p11err("read RSA public key", err)
	}
	e := new(big.Int).SetBytes(attrs[1].Value)
	if !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31-1 {
		return nil, 0, errf(fault.HSMFailure, "RSA public exponent of %d bytes is out of range", len(attrs[1].Value))
	}
	return new(big.Int).SetBytes(attrs[0].Value), int(e.Int64()), nil
}

// parseECPoint decodes CKA_EC_POINT: a DER OCTET STRING holding the uncompressed point
// (PKCS#11 v2.40), or the bare point, which some modules return.
func parseECPoint(c Curve, v []byte) (crypto.PublicKey, error) {
	point := v
	in := cryptobyte.String(v)
	var inner cryptobyte.String
	if in.ReadASN1(&inner, cbasn1.OCTET_STRING) && in.Empty() {
		point = inner
	}
	info := curves[c]
	if info.goCurve == nil {
		pk, err := secp256k1.ParsePubKey(point)
		if err != nil {
			return nil, errf(fault.HSMFailure, "parse %s public key: %v", c, err)
		}
		return pk, nil
	}
	pk, err := ecdsa.ParseUncompressedPublicKey(info.goCurve, point)
	if err != nil {
		return nil, errf(fault.HSMFailure, "parse %s public key: %v", c, err)
	}
	return pk, nil
}

// Material is a plaintext private or secret key to import, as the fields of a JSON Web
// Key (big-endian bytes): RSA uses N, E (public) and D, P, Q, DP, DQ, QI (secret); EC uses
// X, Y (public) and D; AES uses K.
type Material struct {
	N, E, X, Y             []byte
	D, P, Q, DP, DQ, QI, K secret.Bytes
}

// Wipe zeroes the secret fields.
func (m *Material) Wipe() {
	for _, s := range []secret.Bytes{m.D, m.P, m.Q, m.DP, m.DQ, m.QI, m.K} {
		s.Wipe()
	}
}

// Import creates a session object from plaintext key material, for the REST import call.
// Like Generate it makes an extractable key, to be wrapped once under the KEK. The material
// reaches the token wrapped (see transport.go); Import wipes m's secret fields and every
// encoding of them before it returns, whatever the outcome.
func (p *Pool) Import(ctx context.Context, spec Spec, u Usage, m *Material) (*Key, error) {
	defer m.Wipe()
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	k := &Key{pool: p, spec: spec, usage: u, extractable: true}
	tmpl := extractableTemplate(spec.Type, u)
	var plain []byte
	var err error
	switch spec.Type {
	case AES:
		if m.K.Len()*8 != spec.Bits {
			return nil, errf(fault.BadParameter, "AES key material is %d bits, want %d", m.K.Len()*8, spec.Bits)
		}
		plain = m.K.Reveal() // wiped by m.Wipe
		tmpl = append(tmpl, attr(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY), attr(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES))
	case RSA:
		n := new(big.Int).SetBytes(m.N)
		e := new(big.Int).SetBytes(m.E)
		if n.BitLen() != spec.Bits {
			return nil, errf(fault.BadParameter, "RSA modulus is %d bits, want %d", n.BitLen(), spec.Bits)
		}
		if !e.IsInt64() || e.Int64() < 3 || e.Int64()%2 == 0 || e.Int64() > 1<<31-1 {
			return nil, errf(fault.BadParameter, "RSA public exponent is not an odd number in 3..2^31-1")
		}
		k.pub = &rsa.PublicKey{N: n, E: int(e.Int64())}
		if plain, err = rsaPKCS8(m); err != nil {
			return nil, err
		}
		defer clear(plain)
		tmpl = append(tmpl, attr(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY), attr(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_RSA))
	case EC:
		if k.pub, err = publicFromXY(spec.Curve, m.X, m.Y); err != nil {
			return nil, err
		}
		if plain, err = ecPKCS8(spec.Curve, m); err != nil {
			return nil, err
		}
		defer clear(plain)
		tmpl = append(tmpl, attr(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY), attr(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_EC))
	}
	err = p.withSession(ctx, func(s pkcs11.SessionHandle) error {
		o, err := p.importWrapped(s, plain, tmpl)
		if err != nil {
			return fmt.Errorf("import %s key: %w", spec, err)
		}
		k.obj = o
		if err := p.checkPair(s, k); err != nil {
			_ = p.destroy(s, o)
			return fmt.Errorf("import %s key: %w", spec, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return k, nil
}

// publicFromXY builds an EC public key from JWK coordinates and checks it is on the curve.
func publicFromXY(c Curve, x, y []byte) (crypto.PublicKey, error) {
	size := curves[c].size
	if len(x) == 0 || len(x) > size || len(y) == 0 || len(y) > size {
		return nil, errf(fault.BadParameter, "EC public key coordinates must be 1 to %d bytes for %s", size, c)
	}
	point := make([]byte, 1+2*size)
	point[0] = 4
	copy(point[1+size-len(x):1+size], x)
	copy(point[1+2*size-len(y):], y)
	pub, err := parseECPoint(c, point)
	if err != nil {
		return nil, fmt.Errorf("EC public key is not a point on %s: %w", c, fault.BadParameter)
	}
	return pub, nil
}
