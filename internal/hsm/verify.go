package hsm

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/subtle"

	"github.com/hsmpool/hsmpool/internal/fault"
)

var hashOf = map[int]crypto.Hash{32: crypto.SHA256, 48: crypto.SHA384, 64: crypto.SHA512}

// Verify checks a signature made by Sign. RSA and EC signatures are checked in Go from the
// public key (no token round trip: verify is public); HS* recomputes the MAC in the token and
// compares in constant time. A signature that does not verify is (false, nil); an algorithm
// that does not fit the key, or a digest of the wrong length, is an error.
func (p *Pool) Verify(ctx context.Context, k *Key, alg Alg, digest, sig []byte) (bool, error) {
	a, ok := signAlgs[alg]
	if !ok {
		return false, errf(fault.BadParameter, "%q is not a signature algorithm", alg)
	}
	if err := k.fits(alg, a.key, a.curve); err != nil {
		return false, err
	}
	if a.key == AES {
		mac, err := p.Sign(ctx, k, alg, digest)
		if err != nil {
			return false, err
		}
		return subtle.ConstantTimeCompare(mac, sig) == 1, nil
	}
	if len(digest) != a.hashLen {
		return false, errf(fault.BadParameter, "%s verifies a %d-byte digest, got %d bytes", alg, a.hashLen, len(digest))
	}
	switch a.key {
	case RSA:
		pub, ok := k.pub.(*rsa.PublicKey)
		if !ok {
			return false, errf(fault.Internal, "RSA key without an RSA public key")
		}
		h := hashOf[a.hashLen]
		if a.prefix != nil {
			return rsa.VerifyPKCS1v15(pub, h, digest, sig) == nil, nil
		}
		return rsa.VerifyPSS(pub, h, digest, sig, &rsa.PSSOptions{SaltLength: a.hashLen, Hash: h}) == nil, nil
	case EC:
		return verifyECDSA(k.pub, digest, sig), nil
	}
	return false, nil
}
