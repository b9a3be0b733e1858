package securitydomain

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/hsmpool/hsmpool/internal/secret"
)

// Datum is one named secret the security domain carries (an EncData entry). Its bytes are
// the pool's own; the format does not look inside.
type Datum struct {
	Tag  string
	Data secret.Bytes
}

// OfficerKey is a security officer's private key with the certificate it belongs to.
type OfficerKey struct {
	Cert *x509.Certificate
	Key  crypto.Decrypter
}

// MaxSize bounds the size of a file or restore blob this package reads.
const MaxSize = 16 << 20

const (
	keyAlgorithm = "shamir_share"
	kdfName      = "sp108_kdf"
	fileVersion  = 2
)

// The JSON of the file, in the key order the service writes (spec §3). Pointers mark the
// members that must be present.
type fileJSON struct {
	EncData    *encDataJSON    `json:"EncData"`
	SharedKeys *sharedKeysJSON `json:"SharedKeys"`
	Version    int             `json:"version"`
}

type encDataJSON struct {
	Data []datumJSON `json:"data"`
	KDF  string      `json:"kdf"`
}

type datumJSON struct {
	CompactJWE string `json:"compact_jwe"`
	Tag        string `json:"tag"`
}

type sharedKeysJSON struct {
	EncShares    []shareJSON `json:"enc_shares"`
	KeyAlgorithm string      `json:"key_algorithm"`
	Required     int         `json:"required"`
}

type shareJSON struct {
	EncKey     string `json:"enc_key"`
	Thumbprint string `json:"x5t_256"`
}

// File is a parsed security-domain file. Messages number shares and datums from 1, in file order.
type File struct {
	Required int // the quorum M
	Shares   []EncryptedShare
	Data     []EncryptedDatum
	Version  int
}

// EncryptedShare is one officer's share: the thumbprint of the officer's certificate and
// the share encrypted to it.
type EncryptedShare struct {
	Thumbprint string
	JWE        string
}

// EncryptedDatum is one datum encrypted under the key derived from the master key.
type EncryptedDatum struct {
	Tag string
	JWE string
}

// NewFile builds the security-domain file, the JSON text that POST /securitydomain/download
// returns as "value": a fresh master key split quorum-of-len(officers), one share encrypted
// to each officer's certificate (share i has x = i+1), and every datum encrypted under a key
// derived from the master key.
func NewFile(officers []*x509.Certificate, quorum int, datums []Datum) ([]byte, error) {
	if err := CheckOfficerCerts(officers); err != nil {
		return nil, err
	}
	if quorum < MinQuorum || quorum > MaxQuorum || quorum > len(officers) {
		return nil, fmt.Errorf("quorum %d: want %d to %d and at most the %d officers", quorum, MinQuorum, MaxQuorum, len(officers))
	}
	if err := checkDatums(datums); err != nil {
		return nil, err
	}
	master, data, err := sealFresh(datums)
	if err != nil {
		return nil, err
	}
	defer clear(master)
	shares, err := split(master, len(officers), quorum, rand.Reader)
	if err != nil {
		return nil, err
	}
	f := fileJSON{
		EncData:    &encDataJSON{Data: data, KDF: kdfName},
		SharedKeys: &sharedKeysJSON{KeyAlgorithm: keyAlgorithm, Required: quorum},
		Version:    fileVersion,
	}
	for i, s := range shares {
		pt := s.encode()
		jwe, err := sealRSA(officers[i].PublicKey.(*rsa.PublicKey), pt)
		clear(pt)
		s.wipe()
		if err != nil {
			return nil, fmt.Errorf("encrypt share %d: %w", i+1, err)
		}
		f.SharedKeys.EncShares = append(f.SharedKeys.EncShares, shareJSON{EncKey: jwe, Thumbprint: Thumbprint(officers[i])})
	}
	return json.Marshal(f)
}

func checkDatums(datums []Datum) error {
	if len(datums) == 0 {
		return errors.New("a security domain needs at least one datum: it is what authenticates the master key")
	}
	seen := map[string]bool{}
	for _, d := range datums {
		if !printableASCII(d.Tag) || seen[d.Tag] {
			return fmt.Errorf("datum tag %q: tags must be unique, non-empty printable ASCII (the Azure CLI reads JWE headers as ASCII)", d.Tag)
		}
		seen[d.Tag] = true
	}
	return nil
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return s != ""
}

// sealFresh makes a fresh master key and encrypts the datums under keys derived from it.
// The caller wipes the master key.
func sealFresh(datums []Datum) ([]byte, []datumJSON, error) {
	master := make([]byte, MasterKeySize)
	if _, err := rand.Read(master); err != nil {
		return nil, nil, fmt.Errorf("make master key: %w", err)
	}
	data, err := sealDatums(master, datums)
	if err != nil {
		clear(master)
		return nil, nil, err
	}
	return master, data, nil
}

func sealDatums(master []byte, datums []Datum) ([]datumJSON, error) {
	var out []datumJSON
	for _, d := range datums {
		key := datumKey(master, d.Tag)
		jwe, err := sealDir(key, d.Tag, d.Data.Reveal())
		clear(key)
		if err != nil {
			return nil, fmt.Errorf("encrypt datum %q: %w", d.Tag, err)
		}
		out = append(out, datumJSON{CompactJWE: jwe, Tag: d.Tag})
	}
	return out, nil
}

// ParseFile parses and checks the structure of a security-domain file; nothing is
// decrypted. Unknown members are ignored, as the Azure CLI ignores them.
func ParseFile(b []byte) (*File, error) {
	if len(b) > MaxSize {
		return nil, fmt.Errorf("file of %d bytes is over the %d-byte limit: %w", len(b), MaxSize, ErrMalformed)
	}
	var f fileJSON
	if err := json.Unmarshal(bytes.TrimSpace(b), &f); err != nil {
		return nil, fmt.Errorf("not JSON of a security-domain file: %w: %v", ErrMalformed, err)
	}
	if f.EncData == nil || f.SharedKeys == nil {
		return nil, fmt.Errorf("EncData or SharedKeys missing: %w", ErrMalformed)
	}
	sk := f.SharedKeys
	if sk.KeyAlgorithm != keyAlgorithm {
		return nil, fmt.Errorf("SharedKeys.key_algorithm %q: only %q is supported: %w", sk.KeyAlgorithm, keyAlgorithm, ErrMalformed)
	}
	if sk.Required < MinQuorum || sk.Required > MaxQuorum {
		return nil, fmt.Errorf("SharedKeys.required %d is outside %d..%d: %w", sk.Required, MinQuorum, MaxQuorum, ErrMalformed)
	}
	if len(sk.EncShares) < sk.Required || len(sk.EncShares) > maxX {
		return nil, fmt.Errorf("%d shares for a quorum of %d: %w", len(sk.EncShares), sk.Required, ErrMalformed)
	}
	file := &File{Required: sk.Required, Version: f.Version}
	seen := map[string]bool{}
	for i, s := range sk.EncShares {
		if s.EncKey == "" || len(s.Thumbprint) != 43 {
			return nil, fmt.Errorf("share %d: enc_key empty or x5t_256 not a SHA-256 thumbprint: %w", i+1, ErrMalformed)
		}
		if seen[s.Thumbprint] {
			return nil, fmt.Errorf("share %d: a second share for certificate %s: %w", i+1, s.Thumbprint, ErrMalformed)
		}
		seen[s.Thumbprint] = true
		file.Shares = append(file.Shares, EncryptedShare{Thumbprint: s.Thumbprint, JWE: s.EncKey})
	}
	data, err := parseData(f.EncData)
	if err != nil {
		return nil, err
	}
	file.Data = data
	return file, nil
}

func parseData(e *encDataJSON) ([]EncryptedDatum, error) {
	if len(e.Data) == 0 {
		return nil, fmt.Errorf("EncData.data is empty: %w", ErrMalformed)
	}
	if e.KDF != "" && e.KDF != kdfName {
		return nil, fmt.Errorf("EncData.kdf %q: only %q is supported: %w", e.KDF, kdfName, ErrMalformed)
	}
	seen := map[string]bool{}
	var out []EncryptedDatum
	for i, d := range e.Data {
		if d.Tag == "" || d.CompactJWE == "" || seen[d.Tag] {
			return nil, fmt.Errorf("datum %d: empty or repeated tag %q, or no compact_jwe: %w", i+1, d.Tag, ErrMalformed)
		}
		seen[d.Tag] = true
		out = append(out, EncryptedDatum{Tag: d.Tag, JWE: d.CompactJWE})
	}
	return out, nil
}

// ShareFor returns the index of the share encrypted to cert, or -1.
func (f *File) ShareFor(cert *x509.Certificate) int {
	tp := Thumbprint(cert)
	for i, s := range f.Shares {
		if s.Thumbprint == tp {
			return i
		}
	}
	return -1
}

// CheckShare decrypts the share of k's officer and checks that it is a well-formed share
// of the right length; it returns the share's x coordinate. An officer runs it right after
// a ceremony to check their own share without the others.
func (f *File) CheckShare(k OfficerKey) (int, error) {
	s, err := f.openShare(k)
	if err != nil {
		return 0, err
	}
	defer s.wipe()
	return s.x, nil
}

func (f *File) openShare(k OfficerKey) (share, error) {
	i := f.ShareFor(k.Cert)
	if i < 0 {
		return share{}, fmt.Errorf("certificate %s: %w", Thumbprint(k.Cert), ErrNoShare)
	}
	pt, err := openRSA(f.Shares[i].JWE, k.Key)
	if err != nil {
		return share{}, fmt.Errorf("share %d (certificate %s): %w", i+1, Thumbprint(k.Cert), err)
	}
	defer clear(pt)
	s, err := decodeShare(pt)
	if err != nil {
		return share{}, fmt.Errorf("share %d (certificate %s): %w", i+1, Thumbprint(k.Cert), err)
	}
	if len(s.v) != MasterKeySize {
		s.wipe()
		return share{}, fmt.Errorf("share %d holds %d bytes, want %d: %w", i+1, len(s.v), MasterKeySize, ErrMalformed)
	}
	return s, nil
}

// Open recovers the datums with the keys of at least Required officers: it decrypts that
// many shares, combines them, and authenticates every datum before it returns any.
//
// Each datum is authenticated on its own; nothing binds the set. A file from which a
// datum was removed opens to the rest, so the caller checks that the tags it needs are
// there.
func (f *File) Open(keys []OfficerKey) ([]Datum, error) {
	master, err := f.masterKey(keys)
	if err != nil {
		return nil, err
	}
	defer master.Wipe()
	return openDatums(master.Reveal(), f.Data)
}

func (f *File) masterKey(keys []OfficerKey) (secret.Bytes, error) {
	var shares []share
	defer func() {
		for _, s := range shares {
			s.wipe()
		}
	}()
	used := map[int]bool{}
	for _, k := range keys {
		if len(shares) == f.Required {
			break
		}
		i := f.ShareFor(k.Cert)
		if i >= 0 && used[i] {
			continue // the same officer twice counts once
		}
		s, err := f.openShare(k)
		if err != nil {
			return secret.Bytes{}, err
		}
		used[i] = true
		shares = append(shares, s)
	}
	if len(shares) < f.Required {
		return secret.Bytes{}, fmt.Errorf("%d distinct officer keys for a quorum of %d: %w", len(shares), f.Required, ErrTooFewKeys)
	}
	master, err := combine(shares)
	if err != nil {
		return secret.Bytes{}, err
	}
	return secret.New(master), nil
}

// openDatums decrypts every datum under the key derived from master; it returns them only
// if all authenticate.
func openDatums(master []byte, data []EncryptedDatum) ([]Datum, error) {
	out := make([]Datum, 0, len(data))
	for _, d := range data {
		key := datumKey(master, d.Tag)
		pt, err := openDir(d.JWE, key)
		clear(key)
		if err != nil {
			for _, o := range out {
				o.Data.Wipe()
			}
			return nil, fmt.Errorf("datum %q: %w", d.Tag, err)
		}
		out = append(out, Datum{Tag: d.Tag, Data: secret.New(pt)})
	}
	return out, nil
}
