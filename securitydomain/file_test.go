package securitydomain

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/hsmpool/hsmpool/internal/secret"
)

// RSA key generation is slow, so the tests share up to ten officers made once.
var (
	officersOnce sync.Once
	officerKeys  []*rsa.PrivateKey
	officerCerts []*x509.Certificate
)

func testOfficers(t testing.TB, n int) []*rsa.PrivateKey {
	t.Helper()
	officersOnce.Do(func() {
		for i := range MaxOfficers + 1 { // one more: the exchange key
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			officerKeys = append(officerKeys, k)
			officerCerts = append(officerCerts, selfSigned(k, fmt.Sprintf("officer%d", i)))
		}
	})
	return officerKeys[:n]
}

func selfSigned(k *rsa.PrivateKey, cn string) *x509.Certificate {
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		panic(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		panic(err)
	}
	return c
}

func certs(t testing.TB, n int) []*x509.Certificate {
	testOfficers(t, n)
	return officerCerts[:n]
}

func officer(i int) OfficerKey { return OfficerKey{Cert: officerCerts[i], Key: officerKeys[i]} }

func exchange(t testing.TB) Exchange {
	testOfficers(t, 1)
	return Exchange{Cert: officerCerts[MaxOfficers], Key: officerKeys[MaxOfficers]}
}

func sampleDatums() []Datum {
	var out []Datum
	for _, tag := range []string{"hsm_backup", "domain_kek", "backup_key"} {
		b := make([]byte, 48)
		rand.Read(b)
		out = append(out, Datum{Tag: tag, Data: secret.New(b)})
	}
	return out
}

func sameDatums(t testing.TB, got, want []Datum) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d datums, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].Tag != want[i].Tag || !got[i].Data.Equal(want[i].Data) {
			t.Fatalf("datum %d: %q differs from %q", i, got[i].Tag, want[i].Tag)
		}
	}
}

func TestFileLayout(t *testing.T) {
	b, err := NewFile(certs(t, 3), 2, sampleDatums())
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(b), `{"EncData":{"data":[{"compact_jwe":"`) || !strings.Contains(string(b), `"kdf":"sp108_kdf"},"SharedKeys":{"enc_shares":[{"enc_key":"`) ||
		!strings.HasSuffix(string(b), `"key_algorithm":"shamir_share","required":2},"version":2}`) {
		t.Errorf("file layout differs from the service's: %.200s ... %s", b, b[len(b)-80:])
	}
	f, err := ParseFile(b)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range f.Shares {
		if s.Thumbprint != Thumbprint(officerCerts[i]) {
			t.Errorf("share %d is for %s, want officer %d", i, s.Thumbprint, i)
		}
		if x, err := f.CheckShare(officer(i)); err != nil || x != i+1 {
			t.Errorf("CheckShare(officer %d) = %d, %v; want x = %d", i, x, err, i+1)
		}
	}
}

// TestOpenEverySubset opens a 3-of-5 file with every set of officers: every set of at
// least 3 recovers the datums, every smaller set is refused.
func TestOpenEverySubset(t *testing.T) {
	datums := sampleDatums()
	b, err := NewFile(certs(t, 5), 3, datums)
	if err != nil {
		t.Fatal(err)
	}
	f, err := ParseFile(b)
	if err != nil {
		t.Fatal(err)
	}
	for mask := 1; mask < 1<<5; mask++ {
		var keys []OfficerKey
		for i := range 5 {
			if mask&(1<<i) != 0 {
				keys = append(keys, officer(i))
			}
		}
		got, err := f.Open(keys)
		if len(keys) < 3 {
			if !errors.Is(err, ErrTooFewKeys) {
				t.Errorf("officers %05b: err = %v, want ErrTooFewKeys", mask, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("officers %05b: %v", mask, err)
			continue
		}
		sameDatums(t, got, datums)
	}
}

func TestOpenRefusals(t *testing.T) {
	datums := sampleDatums()
	b, err := NewFile(certs(t, 3), 2, datums)
	if err != nil {
		t.Fatal(err)
	}
	f, _ := ParseFile(b)
	testOfficers(t, 5)
	t.Run("key of an officer not in the file", func(t *testing.T) {
		if _, err := f.Open([]OfficerKey{officer(0), officer(4)}); !errors.Is(err, ErrNoShare) {
			t.Errorf("err = %v, want ErrNoShare", err)
		}
	})
	t.Run("certificate with another officer's key", func(t *testing.T) {
		bad := OfficerKey{Cert: officerCerts[1], Key: officerKeys[2]}
		if _, err := f.Open([]OfficerKey{officer(0), bad}); !errors.Is(err, ErrKeyMismatch) {
			t.Errorf("err = %v, want ErrKeyMismatch", err)
		}
		if _, err := f.CheckShare(bad); !errors.Is(err, ErrKeyMismatch) {
			t.Errorf("CheckShare: err = %v, want ErrKeyMismatch", err)
		}
	})
	t.Run("the same officer twice", func(t *testing.T) {
		if _, err := f.Open([]OfficerKey{officer(1), officer(1)}); !errors.Is(err, ErrTooFewKeys) {
			t.Errorf("err = %v, want ErrTooFewKeys", err)
		}
	})
	t.Run("tampered datum", func(t *testing.T) {
		g := *f
		g.Data = append([]EncryptedDatum(nil), f.Data...)
		g.Data[1].JWE = flipInPart(g.Data[1].JWE, 3)
		if _, err := g.Open([]OfficerKey{officer(0), officer(1)}); !errors.Is(err, ErrIntegrity) {
			t.Errorf("err = %v, want ErrIntegrity", err)
		}
	})
	t.Run("datum removed", func(t *testing.T) {
		// Documented limit: the set of datums is not authenticated; callers check their tags.
		g := *f
		g.Data = f.Data[:1]
		got, err := g.Open([]OfficerKey{officer(0), officer(1)})
		if err != nil || len(got) != 1 || got[0].Tag != datums[0].Tag {
			t.Errorf("Open of a file with one datum left = %d datums, %v", len(got), err)
		}
	})
	t.Run("share swapped for another file's share", func(t *testing.T) {
		other, _ := NewFile(certs(t, 3), 2, sampleDatums())
		o, _ := ParseFile(other)
		g := *f
		g.Shares = append([]EncryptedShare(nil), f.Shares...)
		g.Shares[1] = o.Shares[1] // decrypts fine, but is a share of another master key
		if _, err := g.Open([]OfficerKey{officer(0), officer(1)}); !errors.Is(err, ErrIntegrity) {
			t.Errorf("err = %v, want ErrIntegrity", err)
		}
	})
	t.Run("tampered share ciphertext", func(t *testing.T) {
		g := *f
		g.Shares = append([]EncryptedShare(nil), f.Shares...)
		g.Shares[0].JWE = flipInPart(g.Shares[0].JWE, 3)
		if _, err := g.Open([]OfficerKey{officer(0), officer(1)}); !errors.Is(err, ErrKeyMismatch) {
			t.Errorf("err = %v, want ErrKeyMismatch (the share JWE does not authenticate)", err)
		}
	})
}

// flipInPart changes one character in the middle of part i of a compact JWE.
func flipInPart(jwe string, i int) string {
	parts := strings.Split(jwe, ".")
	p := []byte(parts[i])
	j := len(p) / 2
	if p[j] == 'A' {
		p[j] = 'B'
	} else {
		p[j] = 'A'
	}
	parts[i] = string(p)
	return strings.Join(parts, ".")
}

func TestNewFileRefusals(t *testing.T) {
	cs := certs(t, 4)
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	tests := []struct {
		name    string
		certs   []*x509.Certificate
		quorum  int
		datums  []Datum
		message string
	}{
		{"two officers", cs[:2], 2, sampleDatums(), "3 to 10"},
		{"quorum above N", cs[:3], 4, sampleDatums(), "quorum 4"},
		{"quorum 1", cs[:3], 1, sampleDatums(), "quorum 1"},
		{"duplicate certificate", []*x509.Certificate{cs[0], cs[1], cs[0]}, 2, sampleDatums(), "same"},
		{"small RSA key", []*x509.Certificate{cs[0], cs[1], selfSigned(small, "weak")}, 2, sampleDatums(), "RSA-1024"},
		{"no datums", cs[:3], 2, nil, "at least one datum"},
		{"repeated tag", cs[:3], 2, []Datum{{Tag: "a"}, {Tag: "a"}}, `"a"`},
		// The Azure CLI decodes JWE headers as ASCII and fails on such a file (test/azcli_test.go found it).
		{"non-ASCII tag", cs[:3], 2, []Datum{{Tag: "clé"}}, "printable ASCII"},
		{"control character in tag", cs[:3], 2, []Datum{{Tag: "a\nb"}}, "printable ASCII"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewFile(tc.certs, tc.quorum, tc.datums)
			if err == nil || !strings.Contains(err.Error(), tc.message) {
				t.Errorf("err = %v, want one saying %q", err, tc.message)
			}
		})
	}
}

func TestParseFileRefusals(t *testing.T) {
	good, err := NewFile(certs(t, 3), 2, sampleDatums())
	if err != nil {
		t.Fatal(err)
	}
	edit := func(f func(m map[string]any)) []byte {
		var m map[string]any
		json.Unmarshal(good, &m)
		f(m)
		b, _ := json.Marshal(m)
		return b
	}
	sk := func(m map[string]any) map[string]any { return m["SharedKeys"].(map[string]any) }
	for name, b := range map[string][]byte{
		"not JSON":            []byte("{"),
		"no SharedKeys":       edit(func(m map[string]any) { delete(m, "SharedKeys") }),
		"no EncData":          edit(func(m map[string]any) { delete(m, "EncData") }),
		"required as string":  edit(func(m map[string]any) { sk(m)["required"] = "2" }),
		"required 11":         edit(func(m map[string]any) { sk(m)["required"] = 11 }),
		"required above N":    edit(func(m map[string]any) { sk(m)["required"] = 4 }),
		"other key algorithm": edit(func(m map[string]any) { sk(m)["key_algorithm"] = "xor" }),
		"padded thumbprint": edit(func(m map[string]any) {
			s := sk(m)["enc_shares"].([]any)[0].(map[string]any)
			s["x5t_256"] = s["x5t_256"].(string) + "="
		}),
		"no datums":   edit(func(m map[string]any) { m["EncData"].(map[string]any)["data"] = []any{} }),
		"another KDF": edit(func(m map[string]any) { m["EncData"].(map[string]any)["kdf"] = "hkdf" }),
		"two shares for one certificate": edit(func(m map[string]any) {
			s := sk(m)["enc_shares"].([]any)
			s[1].(map[string]any)["x5t_256"] = s[0].(map[string]any)["x5t_256"]
		}),
	} {
		if _, err := ParseFile(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
	// Members the Azure CLI ignores are ignored here too.
	extra := edit(func(m map[string]any) { m["extra"] = map[string]any{}; m["version"] = 7 })
	if _, err := ParseFile(extra); err != nil {
		t.Errorf("extra members: %v", err)
	}
}

func TestRestoreBlobRoundTrip(t *testing.T) {
	datums := sampleDatums()
	file, err := NewFile(certs(t, 4), 3, datums)
	if err != nil {
		t.Fatal(err)
	}
	ex := exchange(t)
	blob, err := RestoreBlob(file, ex.Cert, []OfficerKey{officer(3), officer(1), officer(0)})
	if err != nil {
		t.Fatal(err)
	}
	got, err := OpenRestoreBlob(blob, ex)
	if err != nil {
		t.Fatal(err)
	}
	sameDatums(t, got, datums)

	if _, err := RestoreBlob(file, ex.Cert, []OfficerKey{officer(3), officer(1)}); !errors.Is(err, ErrTooFewKeys) {
		t.Errorf("two keys for a quorum of three: err = %v", err)
	}
	other := Exchange{Cert: officerCerts[0], Key: officerKeys[0]}
	if _, err := OpenRestoreBlob(blob, other); !errors.Is(err, ErrWrongExchangeKey) {
		t.Errorf("another exchange key: err = %v, want ErrWrongExchangeKey", err)
	}
	if _, err := OpenRestoreBlob(blob, Exchange{Cert: ex.Cert, Key: officerKeys[0]}); !errors.Is(err, ErrKeyMismatch) {
		t.Errorf("right certificate, wrong private key: err = %v, want ErrKeyMismatch", err)
	}
	var m blobJSON
	json.Unmarshal(blob, &m)
	m.EncData.Data[2].CompactJWE = flipInPart(m.EncData.Data[2].CompactJWE, 3)
	tampered, _ := json.Marshal(m)
	if _, err := OpenRestoreBlob(tampered, ex); !errors.Is(err, ErrIntegrity) {
		t.Errorf("tampered datum: err = %v, want ErrIntegrity", err)
	}
	if _, err := OpenRestoreBlob([]byte(`{"EncData":{"data":[]}}`), ex); !errors.Is(err, ErrMalformed) {
		t.Errorf("empty blob: err = %v, want ErrMalformed", err)
	}
}

// TestAzureCLIBlobShape: a blob written with Python's json.dumps separators, as the Azure
// CLI writes it, and with the doubly encoded JWEs of old preview CLIs, opens too.
func TestAzureCLIBlobShape(t *testing.T) {
	datums := sampleDatums()
	file, _ := NewFile(certs(t, 3), 2, datums)
	ex := exchange(t)
	blob, err := RestoreBlob(file, ex.Cert, []OfficerKey{officer(0), officer(2)})
	if err != nil {
		t.Fatal(err)
	}
	spaced := bytes.ReplaceAll(bytes.ReplaceAll(blob, []byte(`":`), []byte(`": `)), []byte(`,"`), []byte(`, "`))
	got, err := OpenRestoreBlob(spaced, ex)
	if err != nil {
		t.Fatal(err)
	}
	sameDatums(t, got, datums)
}

// TestShamirProperties: for random secrets and any M-of-N, any M shares recover the secret
// and any M-1 do not.
func TestShamirProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(MinOfficers, MaxOfficers).Draw(t, "n")
		m := rapid.IntRange(MinQuorum, n).Draw(t, "m")
		secretBytes := rapid.SliceOfN(rapid.Byte(), 1, 64).Draw(t, "secret")
		shares, err := split(secretBytes, n, m, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range shares { // the wire encoding round-trips
			d, err := decodeShare(s.encode())
			if err != nil || d.x != s.x || fmt.Sprint(d.v) != fmt.Sprint(s.v) {
				t.Fatalf("share x=%d does not round-trip: %v", s.x, err)
			}
		}
		perm := rapid.Permutation(shares).Draw(t, "order")
		got, err := combine(perm[:m])
		if err != nil || !bytes.Equal(got, secretBytes) {
			t.Fatalf("%d of %d shares: got %x, %v; want %x", m, n, got, err, secretBytes)
		}
		if len(secretBytes) >= 8 && m > 2 {
			fewer, err := combine(perm[:m-1])
			if err == nil && bytes.Equal(fewer, secretBytes) {
				t.Fatalf("%d shares recovered a %d-of-%d secret", m-1, m, n)
			}
		}
	})
}

func FuzzParseFile(f *testing.F) {
	good, err := NewFile(certs(f, 3), 2, sampleDatums())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(`{"EncData":{"data":[{"compact_jwe":"a.b.c.d.e","tag":"t"}]},"SharedKeys":{"enc_shares":[],"key_algorithm":"shamir_share","required":2}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		file, err := ParseFile(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error not marked ErrMalformed: %v", err)
			}
			return
		}
		if file.Required < MinQuorum || len(file.Shares) < file.Required || len(file.Data) == 0 {
			t.Fatalf("accepted an impossible file: %+v", file)
		}
		// Opening must fail cleanly, never panic: the fuzzer has no officer keys.
		_, _ = file.Open([]OfficerKey{officer(0), officer(1)})
	})
}

func FuzzDecodeShare(f *testing.F) {
	s, _ := split([]byte{1, 2, 3}, 3, 2, rand.Reader)
	f.Add(s[0].encode())
	f.Add([]byte{0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := decodeShare(b)
		if err != nil {
			return
		}
		if !bytes.Equal(d.encode(), b) {
			t.Fatalf("decoded share does not re-encode to its input")
		}
	})
}

func FuzzRestoreBlob(f *testing.F) {
	file, _ := NewFile(certs(f, 3), 2, sampleDatums())
	ex := exchange(f)
	blob, err := RestoreBlob(file, ex.Cert, []OfficerKey{officer(0), officer(1)})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(blob)
	f.Fuzz(func(t *testing.T, b []byte) {
		datums, err := OpenRestoreBlob(b, ex)
		if err != nil {
			return
		}
		if len(datums) == 0 {
			t.Fatal("opened a blob with no datums")
		}
	})
}
