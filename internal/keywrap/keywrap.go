// Package keywrap implements AES Key Wrap (RFC 3394) and AES Key Wrap with
// Padding (RFC 5649) over a [cipher.Block] supplied by the caller.
//
// The daemon needs this because SoftHSM2 2.6.1 does not produce RFC 5649
// output for CKM_AES_KEY_WRAP_PAD when the data length is not a multiple of
// 8: it zero-pads the data first and then counts the zeros in the message
// length indicator. The daemon therefore runs the RFC algorithm here, in host
// code, over a cipher.Block whose Encrypt and Decrypt are the HSM's
// CKM_AES_ECB operations on a key that never leaves the HSM. Tests use the
// same functions with [crypto/aes] as the reference implementation to check
// the HSM's own KW and KWP output byte for byte.
//
// # Block calls
//
// The cipher.Block may be slow (one HSM round trip per call), so the number
// of block operations is fixed and callers may budget by it. Let n be the
// number of 64-bit semiblocks of the plaintext, after padding for
// [WrapPad] (n = len(ciphertext)/8 - 1 when unwrapping):
//
//   - [Wrap] calls b.Encrypt exactly 6*n times.
//   - [Unwrap] calls b.Decrypt exactly 6*n times.
//   - [WrapPad] calls b.Encrypt exactly 6*n times when n >= 2, and exactly
//     once when the plaintext is 1 to 8 bytes long (n = 1).
//   - [UnwrapPad] calls b.Decrypt exactly 6*n times when n >= 2, and exactly
//     once for a 16-byte ciphertext (n = 1).
//
// Wrapping never calls Decrypt and unwrapping never calls Encrypt, so an HSM
// adapter used only for wrapping needs only an ECB encrypt oracle. Each
// function calls b.BlockSize once; when it returns an argument error (block
// size or length) it has made no Encrypt or Decrypt call.
//
// # Concurrency
//
// The functions keep no state between calls. They are safe for concurrent
// use if the cipher.Block is (a block from [crypto/aes] is).
//
// # Security
//
// The package never sees the key-encryption key: it is given only the
// cipher.Block, keeps no reference to it after returning, and holds no key
// material of its own between calls.
//
// [Unwrap] compares the recovered integrity check value in constant time.
// [UnwrapPad] checks the alternative IV, the range of the message length
// indicator and that the padding bytes are zero without data-dependent early
// exits, combining the three results before a single branch; every failure of
// either function is reported as [ErrIntegrity], which never says which check
// failed. The lengths of the inputs are treated as public.
//
// Intermediate buffers that held plaintext are zeroed before return, and a
// failed unwrap zeroes its partial output. This is best effort: Go may have
// copied the data elsewhere (for example a cipher.Block implementation may),
// and nothing is wiped if the cipher.Block panics. The plaintext returned by
// [Unwrap] and [UnwrapPad] is a new slice owned by the caller, who is
// responsible for wiping it when done. Inputs are never modified.
package keywrap

import (
	"crypto/cipher"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
)

// ErrIntegrity is returned by [Unwrap] and [UnwrapPad] when the ciphertext
// fails authentication: a wrong integrity check value, a message length
// indicator out of range, or non-zero padding. It deliberately does not say
// which; a wrong key-encryption key gives the same error.
var ErrIntegrity = errors.New("keywrap: integrity check failed")

const (
	semiblock = 8  // bytes in a semiblock, the unit of the wrapping
	blockSize = 16 // AES block size; the only one the algorithms are defined for

	// maxPadPlaintext is the largest plaintext RFC 5649 can wrap: the message
	// length indicator is 32 bits.
	maxPadPlaintext = math.MaxUint32
	// maxPadCiphertext is the length of the wrapping of maxPadPlaintext bytes:
	// the AIV semiblock plus the plaintext padded to 2^32 bytes.
	maxPadCiphertext = semiblock + (maxPadPlaintext+semiblock-1)/semiblock*semiblock
)

// defaultIV is the RFC 3394 §2.2.3.1 default initial value.
var defaultIV = [semiblock]byte{0xa6, 0xa6, 0xa6, 0xa6, 0xa6, 0xa6, 0xa6, 0xa6}

// aivPrefix is the constant first half of the RFC 5649 §3 alternative
// initial value; the second half is the 32-bit big-endian message length.
var aivPrefix = [4]byte{0xa6, 0x59, 0x59, 0xa6}

// Wrap wraps plaintext with the RFC 3394 §2.2.1 key wrap algorithm and the
// default initial value A6A6A6A6A6A6A6A6. The plaintext must be at least 16
// bytes long and a multiple of 8; the result is 8 bytes longer.
//
// b must have a 16-byte block size. Wrap calls b.Encrypt exactly 6*n times,
// n = len(plaintext)/8.
func Wrap(b cipher.Block, plaintext []byte) ([]byte, error) {
	if err := checkBlock(b); err != nil {
		return nil, err
	}
	if len(plaintext) < 2*semiblock || len(plaintext)%semiblock != 0 {
		return nil, fmt.Errorf("keywrap: plaintext is %d bytes; it must be at least 16 bytes and a multiple of 8", len(plaintext))
	}
	out := make([]byte, semiblock+len(plaintext))
	copy(out[semiblock:], plaintext)
	a := wrapW(b, defaultIV, out[semiblock:])
	copy(out, a[:])
	return out, nil
}

// Unwrap unwraps ciphertext with the RFC 3394 §2.2.2 key unwrap algorithm and
// checks, in constant time, that the recovered initial value is the default
// A6A6A6A6A6A6A6A6. The ciphertext must be at least 24 bytes long and a
// multiple of 8, otherwise Unwrap returns an error that is not
// [ErrIntegrity]. If the check fails, Unwrap returns ErrIntegrity.
//
// b must have a 16-byte block size. Unwrap calls b.Decrypt exactly 6*n
// times, n = len(ciphertext)/8 - 1. The caller owns the returned plaintext
// and should wipe it when done.
func Unwrap(b cipher.Block, ciphertext []byte) ([]byte, error) {
	if err := checkBlock(b); err != nil {
		return nil, err
	}
	if len(ciphertext) < 3*semiblock || len(ciphertext)%semiblock != 0 {
		return nil, fmt.Errorf("keywrap: ciphertext is %d bytes; it must be at least 24 bytes and a multiple of 8", len(ciphertext))
	}
	r := make([]byte, len(ciphertext)-semiblock)
	copy(r, ciphertext[semiblock:])
	a := unwrapW(b, [semiblock]byte(ciphertext[:semiblock]), r)
	if subtle.ConstantTimeCompare(a[:], defaultIV[:]) != 1 {
		clear(r)
		return nil, ErrIntegrity
	}
	return r, nil
}

// WrapPad wraps plaintext with the RFC 5649 §4.1 key wrap with padding
// algorithm: the alternative initial value A65959A6 followed by the 32-bit
// big-endian message length, and the plaintext zero-padded to a multiple of
// 8 bytes. The plaintext must be 1 to 2^32-1 (4294967295) bytes long, the
// bound set by the 32-bit length indicator. The result is 8 bytes longer than
// the padded plaintext.
//
// When the padded plaintext is a single 8-byte semiblock (1 to 8 bytes of
// plaintext), the result is one AES-ECB encryption of AIV || P, as RFC 5649
// §4.1 specifies. Otherwise it is the RFC 3394 wrapping function W with the
// AIV as initial value.
//
// b must have a 16-byte block size. WrapPad calls b.Encrypt exactly 6*n
// times, n = len(padded plaintext)/8, or once when n = 1.
func WrapPad(b cipher.Block, plaintext []byte) ([]byte, error) {
	if err := checkBlock(b); err != nil {
		return nil, err
	}
	if err := checkPadPlaintextLen(len(plaintext)); err != nil {
		return nil, err
	}
	padded := (len(plaintext) + semiblock - 1) / semiblock * semiblock
	out := make([]byte, semiblock+padded) // the padding is already zero
	copy(out[semiblock:], plaintext)
	var aiv [semiblock]byte
	copy(aiv[:], aivPrefix[:])
	binary.BigEndian.PutUint32(aiv[4:], uint32(len(plaintext)))

	if padded == semiblock {
		// RFC 5649 §4.1: C[0] | C[1] = ENC(K, A | P[1]).
		copy(out, aiv[:])
		b.Encrypt(out, out)
		return out, nil
	}
	a := wrapW(b, aiv, out[semiblock:])
	copy(out, a[:])
	return out, nil
}

// UnwrapPad unwraps ciphertext with the RFC 5649 §4.2 key unwrap with
// padding algorithm. A 16-byte ciphertext is one AES-ECB decryption;
// a longer one is the RFC 3394 unwrapping function W^-1. The ciphertext must
// be a multiple of 8 bytes from 16 to 2^32+8 (the longest a wrapping of
// 2^32-1 bytes can be), otherwise UnwrapPad returns an error that is not
// [ErrIntegrity].
//
// UnwrapPad then checks that the recovered AIV starts with A65959A6, that
// its message length indicator MLI satisfies 8*(n-1) < MLI <= 8*n, and that
// the 8*n-MLI padding bytes are zero. The three checks run without
// data-dependent early exits and any failure is ErrIntegrity.
//
// b must have a 16-byte block size. UnwrapPad calls b.Decrypt exactly 6*n
// times, n = len(ciphertext)/8 - 1, or once when n = 1. The caller owns the
// returned plaintext and should wipe it when done.
func UnwrapPad(b cipher.Block, ciphertext []byte) ([]byte, error) {
	if err := checkBlock(b); err != nil {
		return nil, err
	}
	if len(ciphertext) < 2*semiblock || len(ciphertext)%semiblock != 0 || uint64(len(ciphertext)) > maxPadCiphertext {
		return nil, fmt.Errorf("keywrap: ciphertext is %d bytes; it must be a multiple of 8 from 16 to %d bytes", len(ciphertext), uint64(maxPadCiphertext))
	}
	n := len(ciphertext)/semiblock - 1
	r := make([]byte, n*semiblock)
	var a [semiblock]byte
	if n == 1 {
		// RFC 5649 §4.2: A | P[1] = DEC(K, C[0] | C[1]).
		var blk [blockSize]byte
		b.Decrypt(blk[:], ciphertext)
		copy(a[:], blk[:semiblock])
		copy(r, blk[semiblock:])
		clear(blk[:])
	} else {
		copy(r, ciphertext[semiblock:])
		a = unwrapW(b, [semiblock]byte(ciphertext[:semiblock]), r)
	}

	// All three checks are computed in full and combined; only the combined
	// result is branched on.
	aivOK := subtle.ConstantTimeCompare(a[:4], aivPrefix[:])
	mli := uint64(binary.BigEndian.Uint32(a[4:]))
	n8 := uint64(n) * semiblock
	rangeOK := lessOrEq(n8-semiblock+1, mli) & lessOrEq(mli, n8)
	// The padding, when the MLI is in range, lies inside the last
	// semiblock: OR together every byte of it at or after offset MLI.
	var pad byte
	for i := n8 - semiblock; i < n8; i++ {
		pad |= r[i] & -byte(lessOrEq(mli, i))
	}
	padOK := subtle.ConstantTimeByteEq(pad, 0)
	if aivOK&rangeOK&padOK != 1 {
		clear(r)
		return nil, ErrIntegrity
	}
	// The bytes cut off are the padding, which is zero.
	return r[:mli:mli], nil
}

// checkBlock reports whether b can be used: it must be a 128-bit block
// cipher (AES).
func checkBlock(b cipher.Block) error {
	if b == nil {
		return errors.New("keywrap: cipher.Block is nil")
	}
	if bs := b.BlockSize(); bs != blockSize {
		return fmt.Errorf("keywrap: cipher block size is %d bytes; it must be 16 (AES)", bs)
	}
	return nil
}

// checkPadPlaintextLen enforces the RFC 5649 bound 1 <= n <= 2^32-1.
func checkPadPlaintextLen(n int) error {
	if n < 1 || uint64(n) > maxPadPlaintext {
		return fmt.Errorf("keywrap: plaintext is %d bytes; it must be 1 to %d bytes", n, uint64(maxPadPlaintext))
	}
	return nil
}

// wrapW is the RFC 3394 §2.2.1 wrapping process W, in its index-based
// form, with initial value iv. It encrypts the semiblocks r in place (the
// R[i] of the RFC, len(r) = 8*n, n >= 1) and returns the final A, which is
// C[0]. It calls b.Encrypt exactly 6*n times.
func wrapW(b cipher.Block, iv [semiblock]byte, r []byte) [semiblock]byte {
	n := len(r) / semiblock
	// blk is B = A | R[i]; its first half carries A from step to step.
	var blk [blockSize]byte
	copy(blk[:semiblock], iv[:])
	for j := range uint64(6) {
		for i := range n {
			ri := r[i*semiblock : (i+1)*semiblock]
			copy(blk[semiblock:], ri)
			b.Encrypt(blk[:], blk[:])
			t := j*uint64(n) + uint64(i) + 1
			binary.BigEndian.PutUint64(blk[:semiblock], binary.BigEndian.Uint64(blk[:semiblock])^t)
			copy(ri, blk[semiblock:])
		}
	}
	a := [semiblock]byte(blk[:semiblock])
	clear(blk[:])
	return a
}

// unwrapW is the RFC 3394 §2.2.2 unwrapping process W^-1, in its
// index-based form, with a = C[0]. It decrypts the semiblocks r in place
// (C[1]..C[n] in, P[1]..P[n] out) and returns the recovered A, which the
// caller must check. It calls b.Decrypt exactly 6*n times.
func unwrapW(b cipher.Block, a [semiblock]byte, r []byte) [semiblock]byte {
	n := len(r) / semiblock
	var blk [blockSize]byte
	copy(blk[:semiblock], a[:])
	for j := int64(5); j >= 0; j-- {
		for i := n - 1; i >= 0; i-- {
			ri := r[i*semiblock : (i+1)*semiblock]
			t := uint64(j)*uint64(n) + uint64(i) + 1
			binary.BigEndian.PutUint64(blk[:semiblock], binary.BigEndian.Uint64(blk[:semiblock])^t)
			copy(blk[semiblock:], ri)
			b.Decrypt(blk[:], blk[:])
			copy(ri, blk[semiblock:])
		}
	}
	a = [semiblock]byte(blk[:semiblock])
	clear(blk[:])
	return a
}

// lessOrEq returns 1 if x <= y and 0 otherwise, in constant time.
func lessOrEq(x, y uint64) int {
	_, borrow := bits.Sub64(y, x, 0)
	return int(borrow ^ 1)
}
