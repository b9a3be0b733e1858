package hsm

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"hash"

	"github.com/miekg/pkcs11"

	"github.com/hsmpool/hsmpool/internal/fault"
)

// Encryption and key-wrap algorithms.
const (
	RSAOAEP    Alg = "RSA-OAEP"
	RSAOAEP256 Alg = "RSA-OAEP-256"
	RSA15      Alg = "RSA1_5"
	A128GCM    Alg = "A128GCM"
	A192GCM    Alg = "A192GCM"
	A256GCM    Alg = "A256GCM"
	A128CBC    Alg = "A128CBC"
	A192CBC    Alg = "A192CBC"
	A256CBC    Alg = "A256CBC"
	A128CBCPAD Alg = "A128CBCPAD"
	A192CBCPAD Alg = "A192CBCPAD"
	A256CBCPAD Alg = "A256CBCPAD"
	A128KW     Alg = "A128KW"
	A192KW     Alg = "A192KW"
	A256KW     Alg = "A256KW"
	AESKW      Alg = "CKM_AES_KEY_WRAP"
	AESKWP     Alg = "CKM_AES_KEY_WRAP_PAD"
)

type mode uint8

const (
	_ mode = iota
	modeOAEP
	modeOAEP256
	modePKCS1
	modeGCM
	modeCBC
	modeCBCPad
	modeKW
	modeKWP
)

type cipherAlg struct {
	key  KeyType
	bits int // AES key size the algorithm requires; 0 for any
	mode mode
	wrap bool // a wrapkey/unwrapkey algorithm, not encrypt/decrypt
}

var cipherAlgs = map[Alg]cipherAlg{
	RSAOAEP:    {key: RSA, mode: modeOAEP},
	RSAOAEP256: {key: RSA, mode: modeOAEP256},
	RSA15:      {key: RSA, mode: modePKCS1},
	A128GCM:    {key: AES, bits: 128, mode: modeGCM},
	A192GCM:    {key: AES, bits: 192, mode: modeGCM},
	A256GCM:    {key: AES, bits: 256, mode: modeGCM},
	A128CBC:    {key: AES, bits: 128, mode: modeCBC},
	A192CBC:    {key: AES, bits: 192, mode: modeCBC},
	A256CBC:    {key: AES, bits: 256, mode: modeCBC},
	A128CBCPAD: {key: AES, bits: 128, mode: modeCBCPad},
	A192CBCPAD: {key: AES, bits: 192, mode: modeCBCPad},
	A256CBCPAD: {key: AES, bits: 256, mode: modeCBCPad},
	A128KW:     {key: AES, bits: 128, mode: modeKW, wrap: true},
	A192KW:     {key: AES, bits: 192, mode: modeKW, wrap: true},
	A256KW:     {key: AES, bits: 256, mode: modeKW, wrap: true},
	AESKW:      {key: AES, mode: modeKW, wrap: true},
	AESKWP:     {key: AES, mode: modeKWP, wrap: true},
}

const (
	gcmIVLen  = 12
	gcmTagLen = 16
	cbcIVLen  = 16
	// maxData bounds the data of one call; the REST layer limits bodies far below.
	maxData = 1 << 20
)

// Ciphertext is the result of an encryption: the value, and for AES-GCM and AES-CBC the
// IV used; for AES-GCM the authentication tag.
type Ciphertext struct {
	Value, IV, Tag []byte
}

// cipherFor looks up alg and checks it against the key and the operation.
func (k *Key) cipherFor(alg Alg, wrap bool, op Usage) (cipherAlg, error) {
	a, ok := cipherAlgs[alg]
	if !ok || (a.wrap != wrap && a.key != RSA) {
		what := "an encryption"
		if wrap {
			what = "a key-wrap"
		}
		return a, errf(fault.BadParameter, "%q is not %s algorithm", alg, what)
	}
	if err := k.fits(alg, a.key, ""); err != nil {
		return a, err
	}
	if a.bits != 0 && a.bits != k.spec.Bits {
		return a, errf(fault.BadParameter, "algorithm %s needs an AES-%d key, not %s", alg, a.bits, k.spec)
	}
	if !k.usage.has(op) {
		return a, errf(fault.Forbidden, "the key may not %s", opName[op])
	}
	return a, nil
}

var opName = map[Usage]string{
	UseEncrypt: "encrypt", UseDecrypt: "decrypt", UseWrapKey: "wrap keys", UseUnwrapKey: "unwrap keys",
}

// Encrypt encrypts plaintext. RSA encryption runs in Go from the public key. AES-GCM takes
// no iv: the IV comes from the token's RNG and is returned with the tag. AES-CBC uses iv if
// given (16 bytes) and otherwise one from the token's RNG.
func (p *Pool) Encrypt(ctx context.Context, k *Key, alg Alg, plaintext, iv, aad []byte) (Ciphertext, error) {
	a, err := k.cipherFor(alg, false, UseEncrypt)
	if err != nil {
		return Ciphertext{}, err
	}
	if a.key == RSA {
		return rsaEncrypt(k, a.mode, alg, plaintext)
	}
	return p.aesEncrypt(ctx, k, a.mode, alg, plaintext, iv, aad)
}

// Decrypt decrypts ct. For AES-GCM ct must carry the IV and the tag, and aad the
// additional data given at encryption; for AES-CBC, the IV.
func (p *Pool) Decrypt(ctx context.Context, k *Key, alg Alg, ct Ciphertext, aad []byte) ([]byte, error) {
	a, err := k.cipherFor(alg, false, UseDecrypt)
	if err != nil {
		return nil, err
	}
	if a.key == RSA {
		return p.rsaDecrypt(ctx, k, a.mode, alg, ct.Value)
	}
	return p.aesDecrypt(ctx, k, a.mode, alg, ct, aad)
}

// WrapKey is Azure's wrapkey: it encrypts a key the client holds (value) under k. RSA runs
// in Go from the public key; AES key wrap runs in the token (see wrapKW and wrapKWP).
func (p *Pool) WrapKey(ctx context.Context, k *Key, alg Alg, value []byte) ([]byte, error) {
	a, err := k.cipherFor(alg, true, UseWrapKey)
	if err != nil {
		return nil, err
	}
	switch a.mode {
	case modeKW:
		return p.wrapKW(ctx, k, alg, value)
	case modeKWP:
		return p.wrapKWP(ctx, k, alg, value)
	}
	ct, err := rsaEncrypt(k, a.mode, alg, value)
	return ct.Value, err
}

// UnwrapKey is Azure's unwrapkey, the inverse of WrapKey; it returns the client's key.
func (p *Pool) UnwrapKey(ctx context.Context, k *Key, alg Alg, wrapped []byte) ([]byte, error) {
	a, err := k.cipherFor(alg, true, UseUnwrapKey)
	if err != nil {
		return nil, err
	}
	switch a.mode {
	case modeKW, modeKWP:
		return p.unwrapAES(ctx, k, a.mode, alg, wrapped)
	}
	return p.rsaDecrypt(ctx, k, a.mode, alg, wrapped)
}

func rsaEncrypt(k *Key, m mode, alg Alg, msg []byte) (Ciphertext, error) {
	pub := k.pub.(*rsa.PublicKey)
	var out []byte
	var err error
	switch m {
	case modeOAEP:
		out, err = rsa.EncryptOAEP(sha1.New(), rand.Reader, pub, msg, nil)
	case modeOAEP256:
		out, err = rsa.EncryptOAEP(sha256.New(), rand.Reader, pub, msg, nil)
	default:
		// RSA1_5 is part of Azure's API. Encryption is not the dangerous half; decryption,
		// the padding oracle, runs inside the token.
		//lint:ignore SA1019 wire compatibility with Azure's RSA1_5
		out, err = rsa.EncryptPKCS1v15(rand.Reader, pub, msg)
	}
	if errors.Is(err, rsa.ErrMessageTooLong) {
		return Ciphertext{}, errf(fault.BadParameter, "%d bytes are too long for %s with a %d-bit key", len(msg), alg, pub.N.BitLen())
	}
	if err != nil {
		return Ciphertext{}, fmt.Errorf("encrypt with %s: %w", alg, err)
	}
	return Ciphertext{Value: out}, nil
}

// oaep256 states.
const (
	oaepUnknown int32 = iota
	oaepNative
	oaepHost
)

func (p *Pool) rsaDecrypt(ctx context.Context, k *Key, m mode, alg Alg, ct []byte) ([]byte, error) {
	size := (k.pub.(*rsa.PublicKey).N.BitLen() + 7) / 8
	if len(ct) != size {
		return nil, errf(fault.BadParameter, "%s ciphertext for a %d-bit key must be %d bytes, got %d", alg, size*8, size, len(ct))
	}
	var out []byte
	err := p.withSession(ctx, func(s pkcs11.SessionHandle) error {
		var err error
		switch m {
		case modeOAEP:
			out, err = p.decryptOnce(s, k.obj, pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_OAEP,
				pkcs11.NewOAEPParams(pkcs11.CKM_SHA_1, pkcs11.CKG_MGF1_SHA1, pkcs11.CKZ_DATA_SPECIFIED, nil)), ct)
		case modePKCS1:
			out, err = p.decryptOnce(s, k.obj, pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS, nil), ct)
		default:
			out, err = p.decryptOAEP256(s, k, ct)
		}
		if err != nil {
			return decryptErr(alg, err)
		}
		return nil
	})
	return out, err
}

// decryptErr reports a failed decryption. SoftHSM2 answers CKR_GENERAL_ERROR or
// CKR_ENCRYPTED_DATA_INVALID when padding or authentication fails, which is the caller's
// input, not the HSM failing; the message does not say which check failed.
func decryptErr(alg Alg, err error) error {
	if isCKR(err, pkcs11.CKR_ENCRYPTED_DATA_INVALID) || isCKR(err, pkcs11.CKR_GENERAL_ERROR) || err == errDecryption {
		return fmt.Errorf("decrypt with %s: the ciphertext is not valid for this key (or its tag, IV or additional data were altered): %w", alg, fault.BadParameter)
	}
	return p11err(fmt.Sprintf("decrypt with %s", alg), err)
}

// decryptOAEP256 uses the token's RSA-OAEP with SHA-256 where it has it. SoftHSM2 (up to
// 2.7.0 at least) accepts only SHA-1 OAEP parameters and answers CKR_ARGUMENTS_BAD; then
// the token does the raw RSA decryption (CKM_RSA_X_509) and the OAEP decoding runs here in
// constant time. The result goes to the client either way. The choice is remembered.
func (p *Pool) decryptOAEP256(s pkcs11.SessionHandle, k *Key, ct []byte) ([]byte, error) {
	if p.oaep256.Load() != oaepHost {
		out, err := p.decryptOnce(s, k.obj, pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_OAEP,
			pkcs11.NewOAEPParams(pkcs11.CKM_SHA256, pkcs11.CKG_MGF1_SHA256, pkcs11.CKZ_DATA_SPECIFIED, nil)), ct)
		if err == nil {
			p.oaep256.Store(oaepNative)
			return out, nil
		}
		if !isCKR(err, pkcs11.CKR_ARGUMENTS_BAD) && !isCKR(err, pkcs11.CKR_MECHANISM_PARAM_INVALID) || p.oaep256.Load() == oaepNative {
			return nil, err
		}
		p.oaep256.Store(oaepHost)
	}
	return p.hostOAEP256(s, k.obj, ct)
}

// hostOAEP256 is RSA-OAEP-256 decryption of ct (as long as the modulus) with the private key
// o: the token does the raw RSA decryption (CKM_RSA_X_509), host code the OAEP decoding.
func (p *Pool) hostOAEP256(s pkcs11.SessionHandle, o pkcs11.ObjectHandle, ct []byte) ([]byte, error) {
	em, err := p.decryptOnce(s, o, pkcs11.NewMechanism(pkcs11.CKM_RSA_X_509, nil), ct)
	if err != nil {
		return nil, err
	}
	// A module may drop leading zero bytes of the raw result; always decode a full-length
	// copy, so that no branch tells whether the first byte was zero (Manger's attack).
	size := len(ct)
	if len(em) > size {
		clear(em)
		return nil, errf(fault.HSMFailure, "raw RSA result of %d bytes for a %d-byte modulus", len(em), size)
	}
	full := make([]byte, size)
	copy(full[size-len(em):], em)
	clear(em)
	defer clear(full)
	msg, err := decodeOAEP(sha256.New(), full, nil)
	if err != nil {
		return nil, err
	}
	return append([]byte(nil), msg...), nil
}

func (p *Pool) decryptOnce(s pkcs11.SessionHandle, o pkcs11.ObjectHandle, m *pkcs11.Mechanism, ct []byte) ([]byte, error) {
	c := p.mod.ctx
	if err := c.DecryptInit(s, []*pkcs11.Mechanism{m}, o); err != nil {
		return nil, err
	}
	return c.Decrypt(s, ct)
}

func (p *Pool) aesEncrypt(ctx context.Context, k *Key, m mode, alg Alg, pt, iv, aad []byte) (Ciphertext, error) {
	if len(pt) > maxData {
		return Ciphertext{}, errf(fault.BadParameter, "%s plaintext of %d bytes is over the %d-byte limit", alg, len(pt), maxData)
	}
	switch m {
	case modeGCM:
		if iv != nil {
			return Ciphertext{}, errf(fault.BadParameter, "%s takes no IV: the HSM makes it", alg)
		}
	case modeCBC:
		if len(pt) == 0 || len(pt)%16 != 0 {
			return Ciphertext{}, errf(fault.BadParameter, "%s plaintext must be a non-zero multiple of 16 bytes, got %d (use %sPAD for other lengths)", alg, len(pt), alg)
		}
		fallthrough
	default:
		if iv != nil && len(iv) != cbcIVLen {
			return Ciphertext{}, errf(fault.BadParameter, "%s IV must be %d bytes, got %d", alg, cbcIVLen, len(iv))
		}
	}
	var out Ciphertext
	err := p.withSession(ctx, func(s pkcs11.SessionHandle) error {
		c := p.mod.ctx
		var err error
		if iv == nil {
			n := cbcIVLen
			if m == modeGCM {
				n = gcmIVLen
			}
			if iv, err = p.random(s, n); err != nil {
				return err
			}
		}
		mech, free := aesMechanism(m, iv, aad)
		defer free()
		if err := c.EncryptInit(s, []*pkcs11.Mechanism{mech}, k.obj); err != nil {
			return p11err(fmt.Sprintf("encrypt with %s", alg), err)
		}
		ct, err := c.Encrypt(s, pt)
		if err != nil {
			return p11err(fmt.Sprintf("encrypt with %s", alg), err)
		}
		out = Ciphertext{Value: ct, IV: iv}
		if m == modeGCM {
			if len(ct) < gcmTagLen {
				return errf(fault.HSMFailure, "%s output of %d bytes has no tag", alg, len(ct))
			}
			out.Value, out.Tag = ct[:len(ct)-gcmTagLen], ct[len(ct)-gcmTagLen:]
		}
		return nil
	})
	return out, err
}

func (p *Pool) aesDecrypt(ctx context.Context, k *Key, m mode, alg Alg, ct Ciphertext, aad []byte) ([]byte, error) {
	if len(ct.Value) > maxData {
		return nil, errf(fault.BadParameter, "%s ciphertext of %d bytes is over the %d-byte limit", alg, len(ct.Value), maxData)
	}
	data := ct.Value
	switch m {
	case modeGCM:
		if len(ct.IV) != gcmIVLen {
			return nil, errf(fault.BadParameter, "%s IV must be %d bytes, got %d", alg, gcmIVLen, len(ct.IV))
		}
		if len(ct.Tag) != gcmTagLen {
			return nil, errf(fault.BadParameter, "%s tag must be %d bytes, got %d", alg, gcmTagLen, len(ct.Tag))
		}
		data = append(append(make([]byte, 0, len(ct.Value)+gcmTagLen), ct.Value...), ct.Tag...)
	default:
		if len(ct.IV) != cbcIVLen {
			return nil, errf(fault.BadParameter, "%s IV must be %d bytes, got %d", alg, cbcIVLen, len(ct.IV))
		}
		if len(data) == 0 || len(data)%16 != 0 {
			return nil, errf(fault.BadParameter, "%s ciphertext must be a non-zero multiple of 16 bytes, got %d", alg, len(data))
		}
	}
	var out []byte
	err := p.withSession(ctx, func(s pkcs11.SessionHandle) error {
		mech, free := aesMechanism(m, ct.IV, aad)
		defer free()
		pt, err := p.decryptOnce(s, k.obj, mech, data)
		if err != nil {
			return decryptErr(alg, err)
		}
		out = pt
		return nil
	})
	return out, err
}

// aesMechanism builds the mechanism for an AES mode; free releases the C memory that GCM
// parameters hold and must run after the operation.
func aesMechanism(m mode, iv, aad []byte) (*pkcs11.Mechanism, func()) {
	switch m {
	case modeGCM:
		params := pkcs11.NewGCMParams(iv, aad, gcmTagLen*8)
		return pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params), params.Free
	case modeCBC:
		return pkcs11.NewMechanism(pkcs11.CKM_AES_CBC, iv), func() {}
	default:
		return pkcs11.NewMechanism(pkcs11.CKM_AES_CBC_PAD, iv), func() {}
	}
}

// decodeOAEP is EME-OAEP decoding (RFC 8017 §7.1.2, steps 3a–3g) of em, the raw RSA
// decryption, written like crypto/rsa's: every check runs on every input and the only
// branch is on the combined result, so timing does not tell which check failed.
func decodeOAEP(h hash.Hash, em, label []byte) ([]byte, error) {
	h.Reset()
	h.Write(label)
	lHash := h.Sum(nil)
	hLen := h.Size()
	if len(em) < 2*hLen+2 {
		return nil, errDecryption
	}
	firstByteIsZero := subtle.ConstantTimeByteEq(em[0], 0)
	seed := em[1 : hLen+1]
	db := em[hLen+1:]
	mgf1XOR(seed, h, db)
	mgf1XOR(db, h, seed)
	lHashGood := subtle.ConstantTimeCompare(lHash, db[:hLen])

	// After lHash: zero or more 0x00, one 0x01, then the message.
	lookingForIndex, index, invalid := 1, 0, 0
	rest := db[hLen:]
	for i := range rest {
		equals0 := subtle.ConstantTimeByteEq(rest[i], 0)
		equals1 := subtle.ConstantTimeByteEq(rest[i], 1)
		index = subtle.ConstantTimeSelect(lookingForIndex&equals1, i, index)
		lookingForIndex = subtle.ConstantTimeSelect(equals1, 0, lookingForIndex)
		invalid = subtle.ConstantTimeSelect(lookingForIndex&^equals0, 1, invalid)
	}
	if firstByteIsZero&lHashGood&^invalid&^lookingForIndex != 1 {
		return nil, errDecryption
	}
	return rest[index+1:], nil
}

var errDecryption = errors.New("OAEP decoding failed")

// mgf1XOR XORs out with MGF1(seed) (RFC 8017 appendix B.2.1).
func mgf1XOR(out []byte, h hash.Hash, seed []byte) {
	var counter [4]byte
	var digest []byte
	done := 0
	for done < len(out) {
		h.Reset()
		h.Write(seed)
		h.Write(counter[:])
		digest = h.Sum(digest[:0])
		for i := 0; i < len(digest) && done < len(out); i++ {
			out[done] ^= digest[i]
			done++
		}
		for i := 3; i >= 0; i-- {
			counter[i]++
			if counter[i] != 0 {
				break
			}
		}
	}
}
