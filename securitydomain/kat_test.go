package securitydomain

import (
	"bytes"
	"encoding/hex"
	"testing"
)

// Known-answer vectors from shared/spec/security-domain-format.md §11, computed with the
// Azure CLI 2.45.0 modules.

func TestKDFKnownAnswers(t *testing.T) {
	seq := make([]byte, 32)
	for i := range seq {
		seq[i] = byte(i)
	}
	tests := []struct {
		name                string
		key, label, context []byte
		bits                int
		want                string
	}{
		{"CLI self-test", bytes.Repeat([]byte{0x41}, 32), []byte("label"), []byte("context"), 256,
			"f0ca51f6308791404bf68b56024ee7c64d6c737716f81d47e1e68b5c4e399575"},
		{"hsm_backup datum key", seq, []byte("hsm_backup"), nil, 512,
			"2d34f55a1dd64e68d793ce19439e032e913bc2c83a99237a33c1bde888fb91da91626f37c72aaff2d718d3e7a37f0a39417a66839669da3c76fe4336aec9747c"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := hex.EncodeToString(kdf(tc.key, tc.label, tc.context, tc.bits)); got != tc.want {
				t.Errorf("kdf = %s, want %s", got, tc.want)
			}
		})
	}
	if got := hex.EncodeToString(datumKey(seq, "hsm_backup")); got != tests[1].want {
		t.Errorf("datumKey = %s", got)
	}
}

func TestShamirKnownAnswers(t *testing.T) {
	// secret 41 ff, M=2, f0 = 0x41 + 5x, f1 = 0xff + x.
	want := map[int]string{1: "46020003", 2: "4b040004", 3: "50060106"}
	shares := map[int]share{}
	for x := 1; x <= 3; x++ {
		s := share{x: x, v: []uint16{uint16((0x41 + 5*x) % prime), uint16((0xff + x) % prime)}}
		if got := hex.EncodeToString(s.encode()); got != want[x] {
			t.Errorf("share x=%d encodes as %s, want %s", x, got, want[x])
		}
		b, _ := hex.DecodeString(want[x])
		d, err := decodeShare(b)
		if err != nil || d.x != x {
			t.Fatalf("decode share %s: %v", want[x], err)
		}
		shares[x] = d
	}
	for _, pair := range [][2]int{{1, 2}, {2, 3}, {3, 1}} {
		got, err := combine([]share{shares[pair[0]], shares[pair[1]]})
		if err != nil || hex.EncodeToString(got) != "41ff" {
			t.Errorf("combine %v = %x, %v; want 41ff", pair, got, err)
		}
	}
}

func TestJWEKnownAnswer(t *testing.T) {
	cek := make([]byte, 64)
	for i := range cek {
		cek[i] = byte(i)
	}
	const vector = "eyJhbGciOiJkaXIiLCJlbmMiOiJBMjU2Q0JDLUhTNTEyIiwia2lkIjoiaHNtX2JhY2t1cCJ9..AAECAwQFBgcICQoLDA0ODw.BvKjYkqvHl_ygBr9nsjRSaFA8Vrrg8TeDijjb-9jZs0.tr5cm89ROSxwWZh_EpavSPXa7a2A8Q8rHwELpVJKQ3E"
	pt, err := openDir(vector, cek)
	if err != nil || string(pt) != "hello security domain" {
		t.Fatalf("open KAT: %q, %v", pt, err)
	}
	cek[0] ^= 1
	if _, err := openDir(vector, cek); err == nil {
		t.Error("KAT opened under a wrong key")
	}
}

// TestJWEHeaders: our JWEs carry exactly the protected headers the Azure CLI writes.
func TestJWEHeaders(t *testing.T) {
	cek := make([]byte, 64)
	dir, err := sealDir(cek, "hsm_backup", []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	if h := header(dir); h != "eyJhbGciOiJkaXIiLCJlbmMiOiJBMjU2Q0JDLUhTNTEyIiwia2lkIjoiaHNtX2JhY2t1cCJ9" {
		t.Errorf("dir header %s", h)
	}
	if parts := bytes.Split([]byte(dir), []byte(".")); len(parts) != 5 || len(parts[1]) != 0 || len(parts[4]) != 43 {
		t.Errorf("dir JWE is not header..iv.ct.tag with a 32-byte tag: %s", dir)
	}
	rsaJWE, err := sealRSA(&testOfficers(t, 1)[0].PublicKey, make([]byte, 64))
	if err != nil {
		t.Fatal(err)
	}
	if h := header(rsaJWE); h != "eyJhbGciOiJSU0EtT0FFUC0yNTYiLCJlbmMiOiJBMjU2Q0JDLUhTNTEyIiwia2lkIjoibm90IHVzZWQifQ" {
		t.Errorf("RSA-OAEP-256 header %s", h)
	}
}

func header(jwe string) string { return jwe[:bytes.IndexByte([]byte(jwe), '.')] }
