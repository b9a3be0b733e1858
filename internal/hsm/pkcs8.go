package hsm

import (
	"encoding/asn1"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/hsmpool/hsmpool/internal/fault"
)

// PKCS#8 encodings of imported private keys, built from the JWK's raw big-endian fields in
// one fixed buffer that the caller wipes: going through crypto/rsa or crypto/ecdsa would
// leave copies in big.Int and key-schedule memory that cannot be cleared.

var (
	oidRSAEncryption = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
	oidECPublicKey   = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
)

// rsaPKCS8 encodes PrivateKeyInfo{rsaEncryption, RSAPrivateKey} (RFC 5208, RFC 8017 A.1.2).
// PKCS#11 modules decode the whole structure, so every CRT field is required.
func rsaPKCS8(m *Material) ([]byte, error) {
	fields := [][]byte{m.N, m.E, m.D.Reveal(), m.P.Reveal(), m.Q.Reveal(), m.DP.Reveal(), m.DQ.Reveal(), m.QI.Reveal()}
	size := 128
	for _, f := range fields {
		if len(f) == 0 {
			return nil, errf(fault.BadParameter, "RSA key material needs n, e, d, p, q, dp, dq and qi")
		}
		size += len(f) + 8
	}
	return buildFixed(2*size, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1Int64(0)
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1ObjectIdentifier(oidRSAEncryption)
				b.AddASN1NULL()
			})
			b.AddASN1(cbasn1.OCTET_STRING, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1Int64(0)
					for _, f := range fields {
						addUnsigned(b, f)
					}
				})
			})
		})
	})
}

// ecPKCS8 encodes PrivateKeyInfo{id-ecPublicKey curve, ECPrivateKey} (RFC 5915) with the
// public point, which SoftHSM2 does not recompute.
func ecPKCS8(c Curve, m *Material) ([]byte, error) {
	info := curves[c]
	d := m.D.Reveal()
	if len(d) == 0 || len(d) > info.size || len(m.X) == 0 || len(m.X) > info.size || len(m.Y) == 0 || len(m.Y) > info.size {
		return nil, errf(fault.BadParameter, "EC key material for %s needs d, x and y of at most %d bytes", c, info.size)
	}
	return buildFixed(4*info.size+256, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1Int64(0)
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1ObjectIdentifier(oidECPublicKey)
				b.AddASN1ObjectIdentifier(info.oid)
			})
			b.AddASN1(cbasn1.OCTET_STRING, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1Int64(1)
					b.AddASN1(cbasn1.OCTET_STRING, func(b *cryptobyte.Builder) {
						addPadded(b, d, info.size)
					})
					b.AddASN1(cbasn1.Tag(1).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
						b.AddASN1(cbasn1.BIT_STRING, func(b *cryptobyte.Builder) {
							b.AddUint8(0) // no unused bits
							b.AddUint8(4) // uncompressed point
							addPadded(b, m.X, info.size)
							addPadded(b, m.Y, info.size)
						})
					})
				})
			})
		})
	})
}

// buildFixed runs build in a buffer of capacity size that never grows, so no copy of the
// encoding is left behind in memory the caller cannot wipe.
func buildFixed(size int, build func(*cryptobyte.Builder)) ([]byte, error) {
	buf := make([]byte, 0, size)
	b := cryptobyte.NewFixedBuilder(buf)
	build(b)
	out, err := b.Bytes()
	if err != nil {
		clear(buf[:cap(buf)])
		return nil, errf(fault.Internal, "encode PKCS#8: %v", err)
	}
	return out, nil
}

// addUnsigned adds a DER INTEGER for the unsigned big-endian value v.
func addUnsigned(b *cryptobyte.Builder, v []byte) {
	b.AddASN1(cbasn1.INTEGER, func(b *cryptobyte.Builder) {
		for len(v) > 1 && v[0] == 0 {
			v = v[1:]
		}
		if len(v) == 0 || v[0]&0x80 != 0 {
			b.AddUint8(0)
		}
		b.AddBytes(v)
	})
}

// addPadded adds v left-padded with zeros to size bytes.
func addPadded(b *cryptobyte.Builder, v []byte, size int) {
	for range size - len(v) {
		b.AddUint8(0)
	}
	b.AddBytes(v)
}
