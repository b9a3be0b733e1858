package nodejoin

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"strconv"
	"sync"
	"testing"

	"github.com/hsmpool/hsmpool/internal/fault"
)

// The join key is made in the HSM in production; here a Go key stands in for it, made once
// because RSA-3072 generation is slow.
var testKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, TransportBits)
	if err != nil {
		panic(err)
	}
	return k
})

var binding = Binding{Pool: "contoso", Sender: "node-a", Joiner: "node-b"}

func newJoiner(t testing.TB) *Joiner {
	t.Helper()
	j, err := NewJoiner(&testKey().PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func wrappedBlob() []byte {
	b := make([]byte, wrappedSize)
	rand.Read(b)
	return b
}

// TestSealOpen: an envelope sealed to a parsed offer opens for the joiner with the same
// binding and gives back the wrapped KEK unchanged.
func TestSealOpen(t *testing.T) {
	j := newJoiner(t)
	enc, _ := j.Offer().MarshalBinary()
	o, err := ParseOffer(enc)
	if err != nil {
		t.Fatal(err)
	}
	if o.Fingerprint() != j.Offer().Fingerprint() || Fingerprint(o.Transport) != Fingerprint(&testKey().PublicKey) {
		t.Error("fingerprints differ across encoding")
	}
	w := wrappedBlob()
	sealed, err := Seal(o, w, binding)
	if err != nil {
		t.Fatal(err)
	}
	if len(sealed) != sealedSize {
		t.Errorf("envelope is %d bytes, want %d", len(sealed), sealedSize)
	}
	if bytes.Contains(sealed, w[:32]) {
		t.Error("the envelope carries the wrapped KEK in clear")
	}
	got, err := j.Open(sealed, binding)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, w) {
		t.Error("Open returned other bytes than were sealed")
	}
	again, _ := Seal(o, w, binding)
	if bytes.Equal(again, sealed) {
		t.Error("two envelopes of one blob are equal: no fresh encapsulation")
	}
}

// TestOpenRefuses: a tampered envelope, another binding, another joiner and malformed
// envelopes are all refused with BadParameter.
func TestOpenRefuses(t *testing.T) {
	j := newJoiner(t)
	sealed, err := Seal(j.Offer(), wrappedBlob(), binding)
	if err != nil {
		t.Fatal(err)
	}
	check := func(name string, j *Joiner, env []byte, b Binding) {
		t.Helper()
		if _, err := j.Open(env, b); fault.Of(err) != fault.BadParameter {
			t.Errorf("%s: err = %v, want BadParameter", name, err)
		}
	}
	// Flip one bit in the header, the encapsulated key, the ciphertext and the tag.
	for _, i := range []int{0, 2, 6, 7, 7 + encSize/2, 7 + encSize - 1, 7 + encSize, len(sealed) - 17, len(sealed) - 1} {
		env := bytes.Clone(sealed)
		env[i] ^= 0x01
		check("bit flipped at "+strconv.Itoa(i), j, env, binding)
	}
	check("truncated", j, sealed[:len(sealed)-1], binding)
	check("extended", j, append(bytes.Clone(sealed), 0), binding)
	check("empty", j, nil, binding)
	for name, b := range map[string]Binding{
		"other pool":     {Pool: "fabrikam", Sender: "node-a", Joiner: "node-b"},
		"other sender":   {Pool: "contoso", Sender: "node-c", Joiner: "node-b"},
		"other joiner":   {Pool: "contoso", Sender: "node-a", Joiner: "node-c"},
		"swapped":        {Pool: "contoso", Sender: "node-b", Joiner: "node-a"},
		"shifted fields": {Pool: "contoso", Sender: "node-an", Joiner: "ode-b"},
	} {
		check(name, j, sealed, b)
	}
	check("another joiner's key", newJoiner(t), sealed, binding)

	// Same HPKE key, other RSA key in the offer: the fingerprint in the binding differs.
	other, _ := rsa.GenerateKey(rand.Reader, TransportBits)
	swapped := &Joiner{offer: &Offer{Transport: &other.PublicKey, kemPub: j.offer.kemPub}, kemKey: j.kemKey}
	check("offer with another join key", swapped, sealed, binding)
}

// TestSealRefuses: bad bindings and blobs of the wrong size are refused before sealing.
func TestSealRefuses(t *testing.T) {
	o := newJoiner(t).Offer()
	for name, tc := range map[string]struct {
		w []byte
		b Binding
	}{
		"short blob":     {make([]byte, wrappedSize-1), binding},
		"long blob":      {make([]byte, wrappedSize+1), binding},
		"no pool":        {wrappedBlob(), Binding{Sender: "a", Joiner: "b"}},
		"no sender":      {wrappedBlob(), Binding{Pool: "p", Joiner: "b"}},
		"no joiner":      {wrappedBlob(), Binding{Pool: "p", Sender: "a"}},
		"sender=joiner":  {wrappedBlob(), Binding{Pool: "p", Sender: "a", Joiner: "a"}},
		"long pool name": {wrappedBlob(), Binding{Pool: string(make([]byte, 256)), Sender: "a", Joiner: "b"}},
	} {
		if _, err := Seal(o, tc.w, tc.b); fault.Of(err) != fault.BadParameter {
			t.Errorf("%s: err = %v, want BadParameter", name, err)
		}
	}
	if _, err := Seal(nil, wrappedBlob(), binding); fault.Of(err) != fault.BadParameter {
		t.Errorf("nil offer: err = %v, want BadParameter", err)
	}
}

// TestParseOfferRefuses: offers with a wrong version, a key that is not RSA-3072/65537,
// a bad HPKE key, trailing bytes or a non-canonical encoding are refused.
func TestParseOfferRefuses(t *testing.T) {
	j := newJoiner(t)
	good, _ := j.Offer().MarshalBinary()
	kb, _ := j.offer.kemPub.MarshalBinary()
	build := func(v byte, der, k []byte) []byte {
		b := []byte{v, byte(len(der) >> 8), byte(len(der))}
		b = append(append(b, der...), byte(len(k)>>8), byte(len(k)))
		return append(b, k...)
	}
	der3072, _ := x509.MarshalPKIXPublicKey(&testKey().PublicKey)
	small, _ := rsa.GenerateKey(rand.Reader, 2048)
	der2048, _ := x509.MarshalPKIXPublicKey(&small.PublicKey)
	e3 := testKey().PublicKey
	e3.E = 3
	derE3, _ := x509.MarshalPKIXPublicKey(&e3)
	if !bytes.Equal(build(1, der3072, kb), good) {
		t.Fatal("the test's encoder disagrees with MarshalBinary")
	}
	for name, b := range map[string][]byte{
		"version 2":       build(2, der3072, kb),
		"RSA-2048":        build(1, der2048, kb),
		"exponent 3":      build(1, derE3, kb),
		"short HPKE key":  build(1, der3072, kb[:len(kb)-1]),
		"trailing byte":   append(bytes.Clone(good), 0),
		"truncated":       good[:len(good)-1],
		"empty":           nil,
		"not PKIX":        build(1, []byte{0x30, 0}, kb),
		"oversized input": make([]byte, maxOfferSize+1),
	} {
		if _, err := ParseOffer(b); fault.Of(err) != fault.BadParameter {
			t.Errorf("%s: err = %v, want BadParameter", name, err)
		}
	}
	if _, err := NewJoiner(&small.PublicKey); fault.Of(err) != fault.BadParameter {
		t.Errorf("NewJoiner with RSA-2048: err = %v, want BadParameter", err)
	}
}

// FuzzParseOffer: offers come from another node. ParseOffer never panics, and whatever it
// accepts encodes back to the same bytes.
func FuzzParseOffer(f *testing.F) {
	j := newJoiner(f)
	good, _ := j.Offer().MarshalBinary()
	f.Add(good)
	f.Add(good[:10])
	f.Add([]byte{1, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		o, err := ParseOffer(b)
		if err != nil {
			if fault.Of(err) != fault.BadParameter {
				t.Fatalf("err = %v, want BadParameter", err)
			}
			return
		}
		if enc, _ := o.MarshalBinary(); !bytes.Equal(enc, b) {
			t.Fatal("an accepted offer does not encode back to its input")
		}
	})
}

// FuzzOpen: envelopes come from another node. Open never panics and refuses anything that
// was not sealed for this join, with BadParameter.
func FuzzOpen(f *testing.F) {
	j := newJoiner(f)
	w := wrappedBlob()
	sealed, err := Seal(j.Offer(), w, binding)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(sealed)
	f.Add(sealed[:100])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := j.Open(b, binding)
		if err != nil {
			if fault.Of(err) != fault.BadParameter {
				t.Fatalf("err = %v, want BadParameter", err)
			}
			return
		}
		if !bytes.Equal(b, sealed) || !bytes.Equal(got, w) {
			t.Fatal("Open accepted an envelope that was not sealed for this join")
		}
	})
}
