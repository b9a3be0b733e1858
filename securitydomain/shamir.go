package securitydomain

import (
	"encoding/binary"
	"fmt"
	"io"
)

// Shamir secret sharing over GF(257), one independent polynomial per secret byte, as the
// Azure CLI's shared_secret.py reads it (spec §4). A share of an n-byte secret is n
// little-endian uint16 values (x << 9) | f(x), with x the same in every value.

const prime = 257

// maxX is the largest x coordinate: the encoding has 7 bits for it.
const maxX = 127

// share is one decoded share: its x coordinate and f_j(x) for every secret byte j.
type share struct {
	x int
	v []uint16 // each in [0, 256]
}

func (s share) encode() []byte {
	out := make([]byte, 2*len(s.v))
	for i, v := range s.v {
		binary.LittleEndian.PutUint16(out[2*i:], uint16(s.x)<<9|v)
	}
	return out
}

func decodeShare(b []byte) (share, error) {
	if len(b) == 0 || len(b)%2 != 0 {
		return share{}, fmt.Errorf("share of %d bytes is not a list of uint16: %w", len(b), ErrMalformed)
	}
	s := share{v: make([]uint16, len(b)/2)}
	for i := range s.v {
		w := binary.LittleEndian.Uint16(b[2*i:])
		x, v := int(w>>9), w&0x1FF
		if i == 0 {
			s.x = x
		}
		if x != s.x || x == 0 || v >= prime {
			return share{}, fmt.Errorf("share value %d is not a point (x %d, y %d): %w", i, x, v, ErrMalformed)
		}
		s.v[i] = v
	}
	return s, nil
}

func (s share) wipe() { clear(s.v) }

// split shares secret among n holders so that any m recover it; holder i gets x = i+1.
func split(secret []byte, n, m int, rand io.Reader) ([]share, error) {
	if m < 2 || m > n || n > maxX {
		return nil, fmt.Errorf("cannot split %d-of-%d", m, n)
	}
	shares := make([]share, n)
	for i := range shares {
		shares[i] = share{x: i + 1, v: make([]uint16, len(secret))}
	}
	coef := make([]int, m)
	defer clear(coef)
	for j, b := range secret {
		coef[0] = int(b)
		for k := 1; k < m; k++ {
			c, err := randElement(rand)
			if err != nil {
				return nil, err
			}
			coef[k] = c
		}
		for i := range shares {
			x, y := shares[i].x, 0
			for k := m - 1; k >= 0; k-- { // Horner
				y = (y*x + coef[k]) % prime
			}
			shares[i].v[j] = uint16(y)
		}
	}
	return shares, nil
}

// randElement returns a uniform element of GF(257) by rejection sampling on 9 bits.
func randElement(rand io.Reader) (int, error) {
	var b [2]byte
	for {
		if _, err := io.ReadFull(rand, b[:]); err != nil {
			return 0, fmt.Errorf("read randomness: %w", err)
		}
		if v := int(binary.LittleEndian.Uint16(b[:]) & 0x1FF); v < prime {
			return v, nil
		}
	}
}

// combine interpolates the shares at 0. The shares must have distinct x and equal length;
// a result byte of 256 cannot come from consistent shares and is an integrity error.
// Wrong shares usually combine to a wrong secret without error: callers authenticate the
// result (File.Open does, through the datums).
func combine(shares []share) ([]byte, error) {
	if len(shares) < 2 {
		return nil, fmt.Errorf("%d shares: %w", len(shares), ErrTooFewKeys)
	}
	n := len(shares[0].v)
	seen := map[int]bool{}
	for _, s := range shares {
		if len(s.v) != n {
			return nil, fmt.Errorf("shares of different lengths: %w", ErrIntegrity)
		}
		if seen[s.x] {
			return nil, fmt.Errorf("two shares with x = %d: %w", s.x, ErrIntegrity)
		}
		seen[s.x] = true
	}
	// Lagrange basis at 0: l_i = prod_{j != i} x_j / (x_j - x_i).
	basis := make([]int, len(shares))
	for i, si := range shares {
		num, den := 1, 1
		for j, sj := range shares {
			if i != j {
				num = num * sj.x % prime
				den = den * ((sj.x - si.x + prime) % prime) % prime
			}
		}
		basis[i] = num * inverse(den) % prime
	}
	out := make([]byte, n)
	for k := range n {
		acc := 0
		for i, s := range shares {
			acc = (acc + int(s.v[k])*basis[i]) % prime
		}
		if acc > 255 {
			clear(out)
			return nil, fmt.Errorf("shares are inconsistent: %w", ErrIntegrity)
		}
		out[k] = byte(acc)
	}
	return out, nil
}

// inverse is a^255 = a^-1 in GF(257) (Fermat).
func inverse(a int) int {
	r, base, e := 1, a%prime, prime-2
	for e > 0 {
		if e&1 == 1 {
			r = r * base % prime
		}
		base = base * base % prime
		e >>= 1
	}
	return r
}
