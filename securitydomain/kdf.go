package securitydomain

import (
	"crypto/hmac"
	"crypto/sha512"
	"encoding/binary"
)

// kdf is NIST SP 800-108 key derivation in counter mode with HMAC-SHA512 as the PRF:
// block i is HMAC(key, BE32(i) || label || 0x00 || context || BE32(bits)), truncated to
// bits. The security domain derives each datum's 64-byte content key with label = tag and
// an empty context (spec §6).
func kdf(key, label, context []byte, bits int) []byte {
	n := (bits + 7) / 8
	out := make([]byte, 0, n+sha512.Size)
	var buf [4]byte
	for i := uint32(1); len(out) < n; i++ {
		m := hmac.New(sha512.New, key)
		binary.BigEndian.PutUint32(buf[:], i)
		m.Write(buf[:])
		m.Write(label)
		m.Write([]byte{0})
		m.Write(context)
		binary.BigEndian.PutUint32(buf[:], uint32(bits))
		m.Write(buf[:])
		out = m.Sum(out)
	}
	clear(out[n:])
	return out[:n]
}

// datumKey is the 64-byte A256CBC-HS512 key of the datum named tag.
func datumKey(master []byte, tag string) []byte {
	return kdf(master, []byte(tag), nil, 512)
}
