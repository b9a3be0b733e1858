package hsm

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"

	"github.com/hsmpool/hsmpool/internal/fault"
)

// KEKCheck proves that a KEK is the domain's: a random AES key wrapped under the KEK and
// a GCM encryption of a constant under that key. It holds only ciphertext and is kept in
// the pool's replicated state. A node checks its KEK with VerifyKEK before it wraps
// anything, which catches a key someone destroyed and replaced under the same label
// (a user-PIN holder can: the KEK copies none of its value into a key they could read,
// but a replacement whose value they chose would expose every key wrapped after it).
type KEKCheck struct {
	Blob, IV, Ciphertext, Tag []byte
}

// kekCheckPlaintext is what a KEKCheck decrypts to.
var kekCheckPlaintext = []byte("hsmpool domain KEK check v1")

// NewKEKCheck makes a check record for kek.
func (p *Pool) NewKEKCheck(ctx context.Context, kek *KEK) (KEKCheck, error) {
	spec := Spec{Type: AES, Bits: 256}
	k, err := p.Generate(ctx, spec, UseEncrypt)
	if err != nil {
		return KEKCheck{}, fmt.Errorf("make KEK check: %w", err)
	}
	defer k.Destroy(ctx)
	blob, err := p.Wrap(ctx, kek, k)
	if err != nil {
		return KEKCheck{}, fmt.Errorf("make KEK check: %w", err)
	}
	ct, err := p.Encrypt(ctx, k, A256GCM, kekCheckPlaintext, nil, nil)
	if err != nil {
		return KEKCheck{}, fmt.Errorf("make KEK check: %w", err)
	}
	return KEKCheck{Blob: blob, IV: ct.IV, Ciphertext: ct.Value, Tag: ct.Tag}, nil
}

// VerifyKEK checks kek against a record from NewKEKCheck made with the domain's KEK. It
// fails with fault.Forbidden when kek is another key.
func (p *Pool) VerifyKEK(ctx context.Context, kek *KEK, c KEKCheck) error {
	k, err := p.Unwrap(ctx, kek, c.Blob, Spec{Type: AES, Bits: 256}, UseDecrypt, nil)
	if errors.Is(err, fault.Internal) {
		return fmt.Errorf("KEK %q is not the domain's KEK: %w", kek.label, fault.Forbidden)
	}
	if err != nil {
		return fmt.Errorf("verify KEK %q: %w", kek.label, err)
	}
	defer k.Destroy(ctx)
	pt, err := p.Decrypt(ctx, k, A256GCM, Ciphertext{Value: c.Ciphertext, IV: c.IV, Tag: c.Tag}, nil)
	if err != nil || subtle.ConstantTimeCompare(pt, kekCheckPlaintext) != 1 {
		return fmt.Errorf("KEK %q is not the domain's KEK: %w", kek.label, fault.Forbidden)
	}
	return nil
}
