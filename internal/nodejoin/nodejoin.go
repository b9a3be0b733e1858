// Package nodejoin is the post-quantum envelope around the domain KEK on its way to a
// joining node. The KEK itself never leaves an HSM in clear: the source node's token wraps
// it with RSA-OAEP to a join key generated inside the joining node's token
// (hsm.Pool.SendKEK, hsm.Pool.ReceiveKEK). This package seals that RSA ciphertext once more,
// with HPKE (RFC 9180) to a key of the joining node, so that traffic recorded today stays
// safe if RSA falls to a quantum computer later.
//
// The suite is HPKE base mode with the X-Wing KEM (X25519 combined with ML-KEM-768,
// draft-connolly-cfrg-xwing-kem, circl's hpke.KEM_XWING), HKDF-SHA256 and AES-256-GCM.
// circl v1.6.5 offers no other HPKE KEM over ML-KEM-768 (its KEM_X25519_KYBER768_DRAFT00 is
// pre-standard Kyber, and kem/hybrid.X25519MLKEM768 is not an HPKE suite).
//
// The flow: the joining node calls NewJoiner with its join key's public half and sends
// Joiner.Offer's encoding to the source node over the authenticated cluster channel; an
// operator compares Offer.Fingerprint on both nodes. The source node parses it with
// ParseOffer, wraps the KEK to Offer.Transport in its HSM, and calls Seal; the joining node
// calls Joiner.Open and hands the result to its HSM.
//
// # Security
//
// Reading the KEK from a recording needs both the RSA-3072 join key and the HPKE key, and
// the HPKE key in turn needs both X25519 and ML-KEM-768 broken: the KEK stays secret if RSA
// falls (the envelope holds), if ML-KEM falls (X25519 and RSA hold), or if X25519 falls
// (ML-KEM and RSA hold). Seal binds the pool's name, both node IDs and the join key's
// fingerprint into HPKE's info, so an envelope opens only for the join it was made for.
//
// The HPKE private key lives in host memory, unlike the join key. That is deliberate: it
// protects only a blob that is already RSA-wrapped to a key inside the joining node's HSM,
// so it is not key material of the pool, and someone who reads it from the joining host
// learns nothing the HSM does not still guard. It lives for one join, is never stored, and
// is dropped after Open; circl's types cannot be wiped, so that is best effort.
//
// Nothing here authenticates the offer: a man in the middle who replaces it is stopped by
// the operator's fingerprint comparison and by the security officer trusting only the join
// key they checked, not by this package.
//
// # Concurrency
//
// Offers are immutable after parsing and safe for concurrent use; a Joiner is too.
package nodejoin

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"fmt"

	"github.com/cloudflare/circl/hpke"
	"github.com/cloudflare/circl/kem"
	"golang.org/x/crypto/cryptobyte"

	"github.com/hsmpool/hsmpool/internal/fault"
)

// TransportBits is the size of the joining node's RSA join key (hsm.JoinKeyBits).
const TransportBits = 3072

// version is the first byte of every encoding this package makes.
const version = 1

const (
	kemID  = hpke.KEM_XWING
	kdfID  = hpke.KDF_HKDF_SHA256
	aeadID = hpke.AEAD_AES256GCM
)

var suite = hpke.NewSuite(kemID, kdfID, aeadID)

// wrappedSize is the size of an RSA-OAEP ciphertext under the join key.
const wrappedSize = TransportBits / 8

// maxOfferSize bounds an offer: a version byte, two length-prefixed fields, the PKIX
// encoding of an RSA-3072 key (422 bytes) and the X-Wing public key (1216 bytes).
const maxOfferSize = 2048

// Binding names the join an envelope belongs to. Every field is required.
type Binding struct {
	Pool   string // the pool's name
	Sender string // node ID of the node that sends the KEK
	Joiner string // node ID of the joining node
}

func (b Binding) validate() error {
	for _, f := range []struct{ name, v string }{{"pool", b.Pool}, {"sender", b.Sender}, {"joiner", b.Joiner}} {
		if f.v == "" || len(f.v) > 255 {
			return fmt.Errorf("join binding: %s must be 1 to 255 bytes, got %d: %w", f.name, len(f.v), fault.BadParameter)
		}
	}
	if b.Sender == b.Joiner {
		return fmt.Errorf("join binding: sender and joiner are both %q: %w", b.Sender, fault.BadParameter)
	}
	return nil
}

// info is HPKE's info string: a label, the binding and the join key's fingerprint, each
// field length-prefixed so that no two bindings share an encoding.
func (b Binding) info(transport *rsa.PublicKey) []byte {
	var c cryptobyte.Builder
	c.AddBytes([]byte("hsmpool node join v1"))
	for _, f := range []string{b.Pool, b.Sender, b.Joiner} {
		c.AddUint8LengthPrefixed(func(c *cryptobyte.Builder) { c.AddBytes([]byte(f)) })
	}
	fp := Fingerprint(transport)
	c.AddBytes(fp[:])
	return c.BytesOrPanic()
}

// Offer is a joining node's public material: the public half of the join key in its HSM
// and its HPKE public key.
type Offer struct {
	// Transport is the join key (hsm.JoinKey.Public): RSA-3072, exponent 65537.
	Transport *rsa.PublicKey
	kemPub    kem.PublicKey
	encoded   []byte
}

// MarshalBinary encodes the offer: version 1, then the PKIX DER of Transport and the X-Wing
// public key, each with a 16-bit big-endian length.
func (o *Offer) MarshalBinary() ([]byte, error) { return bytes.Clone(o.encoded), nil }

// Fingerprint is the SHA-256 of the offer's encoding, which covers both keys. Operators
// compare it on both nodes before the security officer trusts the join key.
func (o *Offer) Fingerprint() [32]byte { return sha256.Sum256(o.encoded) }

// Fingerprint is the SHA-256 of an RSA public key's PKIX DER encoding.
func Fingerprint(pub *rsa.PublicKey) [32]byte {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		panic(fmt.Sprintf("nodejoin: encode an RSA public key: %v", err)) // only for a nil modulus
	}
	return sha256.Sum256(der)
}

func newOffer(transport *rsa.PublicKey, kemPub kem.PublicKey) (*Offer, error) {
	if err := checkTransport(transport); err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(transport)
	if err != nil {
		return nil, fmt.Errorf("encode the join key: %w: %w", fault.BadParameter, err)
	}
	kb, err := kemPub.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("encode the HPKE public key: %w", err)
	}
	var c cryptobyte.Builder
	c.AddUint8(version)
	c.AddUint16LengthPrefixed(func(c *cryptobyte.Builder) { c.AddBytes(der) })
	c.AddUint16LengthPrefixed(func(c *cryptobyte.Builder) { c.AddBytes(kb) })
	enc, err := c.Bytes()
	if err != nil {
		return nil, fmt.Errorf("encode the offer: %w", err)
	}
	return &Offer{Transport: transport, kemPub: kemPub, encoded: enc}, nil
}

// ParseOffer decodes an offer from MarshalBinary. The bytes come from another node and are
// untrusted: every field is checked, and trailing bytes are refused. Errors are
// fault.BadParameter.
func ParseOffer(b []byte) (*Offer, error) {
	if len(b) > maxOfferSize {
		return nil, fmt.Errorf("join offer of %d bytes is larger than %d: %w", len(b), maxOfferSize, fault.BadParameter)
	}
	in := cryptobyte.String(b)
	var v uint8
	var der, kb cryptobyte.String
	if !in.ReadUint8(&v) || !in.ReadUint16LengthPrefixed(&der) || !in.ReadUint16LengthPrefixed(&kb) || !in.Empty() {
		return nil, fmt.Errorf("join offer is malformed: %w", fault.BadParameter)
	}
	if v != version {
		return nil, fmt.Errorf("join offer has version %d, want %d: %w", v, version, fault.BadParameter)
	}
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("join offer: the join key does not parse: %w", fault.BadParameter)
	}
	rp, ok := pub.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("join offer: the join key is %T, not RSA: %w", pub, fault.BadParameter)
	}
	kemPub, err := kemID.Scheme().UnmarshalBinaryPublicKey(kb)
	if err != nil {
		return nil, fmt.Errorf("join offer: the HPKE public key does not parse: %w", fault.BadParameter)
	}
	o, err := newOffer(rp, kemPub)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(o.encoded, b) { // one encoding per offer, so one fingerprint
		return nil, fmt.Errorf("join offer is not in canonical form: %w", fault.BadParameter)
	}
	return o, nil
}

func checkTransport(pub *rsa.PublicKey) error {
	if pub == nil || pub.N == nil || pub.N.BitLen() != TransportBits || pub.E != 65537 {
		return fmt.Errorf("the join key must be RSA-%d with exponent 65537: %w", TransportBits, fault.BadParameter)
	}
	return nil
}

// Joiner is the joining node's side: its offer and the HPKE private key that opens the
// envelope. See the package doc for why that key may live in host memory.
type Joiner struct {
	offer  *Offer
	kemKey kem.PrivateKey
}

// NewJoiner makes a fresh HPKE key pair for one join and the offer that carries it with
// transport, the public half of the join key in this node's HSM.
func NewJoiner(transport *rsa.PublicKey) (*Joiner, error) {
	pub, priv, err := kemID.Scheme().GenerateKeyPair()
	if err != nil {
		return nil, fmt.Errorf("make the HPKE key of a join: %w", err)
	}
	o, err := newOffer(transport, pub)
	if err != nil {
		return nil, err
	}
	return &Joiner{offer: o, kemKey: priv}, nil
}

// Offer returns the offer to send to the source node.
func (j *Joiner) Offer() *Offer { return j.offer }

// header is the envelope's first bytes, also its AEAD associated data: the version and the
// suite's three identifiers.
func header() []byte {
	h := []byte{version, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint16(h[1:], uint16(kemID))
	binary.BigEndian.PutUint16(h[3:], uint16(kdfID))
	binary.BigEndian.PutUint16(h[5:], uint16(aeadID))
	return h
}

// encSize and sealedSize are the sizes of the encapsulated key and of a whole envelope.
var (
	encSize    = kemID.Scheme().CiphertextSize()
	sealedSize = len(header()) + encSize + wrappedSize + 16
)

// Seal seals wrapped, the KEK as the source node's HSM wrapped it to o.Transport, for the
// joining node of o under binding b. The envelope is the header (version and suite), the
// HPKE encapsulated key and the AES-256-GCM ciphertext.
func Seal(o *Offer, wrapped []byte, b Binding) ([]byte, error) {
	if o == nil || o.kemPub == nil {
		return nil, fmt.Errorf("seal the KEK: no offer: %w", fault.BadParameter)
	}
	if err := b.validate(); err != nil {
		return nil, err
	}
	if len(wrapped) != wrappedSize {
		return nil, fmt.Errorf("seal the KEK: a KEK wrapped to RSA-%d is %d bytes, got %d: %w", TransportBits, wrappedSize, len(wrapped), fault.BadParameter)
	}
	s, err := suite.NewSender(o.kemPub, b.info(o.Transport))
	if err != nil {
		return nil, fmt.Errorf("seal the KEK: %w", err)
	}
	enc, sealer, err := s.Setup(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("seal the KEK: %w", err)
	}
	h := header()
	ct, err := sealer.Seal(wrapped, h)
	if err != nil {
		return nil, fmt.Errorf("seal the KEK: %w", err)
	}
	out := make([]byte, 0, sealedSize)
	out = append(append(append(out, h...), enc...), ct...)
	return out, nil
}

// Open opens an envelope from Seal made for this joiner under binding b and returns the
// RSA-wrapped KEK for hsm.Pool.ReceiveKEK. The envelope is untrusted input: a wrong size,
// version or suite, a wrong binding and any tampering all fail with fault.BadParameter,
// without saying which.
func (j *Joiner) Open(sealed []byte, b Binding) ([]byte, error) {
	if err := b.validate(); err != nil {
		return nil, err
	}
	h := header()
	if len(sealed) != sealedSize || !bytes.Equal(sealed[:len(h)], h) {
		return nil, fmt.Errorf("open the KEK envelope: not a version %d envelope of %d bytes: %w", version, sealedSize, fault.BadParameter)
	}
	enc := sealed[len(h) : len(h)+encSize]
	ct := sealed[len(h)+encSize:]
	r, err := suite.NewReceiver(j.kemKey, b.info(j.offer.Transport))
	if err != nil {
		return nil, fmt.Errorf("open the KEK envelope: %w", err)
	}
	opener, err := r.Setup(enc)
	if err != nil {
		return nil, fmt.Errorf("open the KEK envelope: it does not open for this join: %w", fault.BadParameter)
	}
	wrapped, err := opener.Open(ct, h)
	if err != nil {
		return nil, fmt.Errorf("open the KEK envelope: it does not open for this join: %w", fault.BadParameter)
	}
	return wrapped, nil
}
