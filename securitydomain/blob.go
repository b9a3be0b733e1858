package securitydomain

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"fmt"
)

// Exchange is the recovering pool's exchange (transfer) key: the certificate it publishes
// at GET /securitydomain/upload and a decrypter for its private key, which in the daemon
// stays in the HSM.
type Exchange struct {
	Cert *x509.Certificate
	Key  crypto.Decrypter
}

// The restore blob's JSON (spec §7): the datums re-encrypted under a fresh master key, and
// that key wrapped to the exchange certificate.
type blobJSON struct {
	EncData    *encDataJSON    `json:"EncData"`
	WrappedKey *wrappedKeyJSON `json:"WrappedKey"`
}

type wrappedKeyJSON struct {
	EncKey     string `json:"enc_key"`
	Thumbprint string `json:"x5t_256"`
}

// RestoreBlob builds the restore blob offline, as `az keyvault security-domain
// restore-blob` does: it opens the file with the officers' keys, authenticates every datum,
// and re-encrypts them under a fresh master key wrapped to the exchange certificate.
func RestoreBlob(file []byte, exchangeCert *x509.Certificate, keys []OfficerKey) ([]byte, error) {
	if err := checkRSA(exchangeCert, "exchange"); err != nil {
		return nil, err
	}
	f, err := ParseFile(file)
	if err != nil {
		return nil, err
	}
	datums, err := f.Open(keys)
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, d := range datums {
			d.Data.Wipe()
		}
	}()
	master, data, err := sealFresh(datums)
	if err != nil {
		return nil, err
	}
	defer clear(master)
	wrapped, err := sealRSA(exchangeCert.PublicKey.(*rsa.PublicKey), master)
	if err != nil {
		return nil, fmt.Errorf("wrap master key to the exchange key: %w", err)
	}
	return json.Marshal(blobJSON{
		EncData:    &encDataJSON{Data: data, KDF: kdfName},
		WrappedKey: &wrappedKeyJSON{EncKey: wrapped, Thumbprint: Thumbprint(exchangeCert)},
	})
}

// parseBlob checks the structure of a restore blob.
func parseBlob(b []byte) (*wrappedKeyJSON, []EncryptedDatum, error) {
	if len(b) > MaxSize {
		return nil, nil, fmt.Errorf("restore blob of %d bytes is over the %d-byte limit: %w", len(b), MaxSize, ErrMalformed)
	}
	var bl blobJSON
	if err := json.Unmarshal(bytes.TrimSpace(b), &bl); err != nil {
		return nil, nil, fmt.Errorf("not JSON of a restore blob: %w: %v", ErrMalformed, err)
	}
	if bl.EncData == nil || bl.WrappedKey == nil || bl.WrappedKey.EncKey == "" {
		return nil, nil, fmt.Errorf("EncData or WrappedKey missing: %w", ErrMalformed)
	}
	data, err := parseData(bl.EncData)
	if err != nil {
		return nil, nil, err
	}
	return bl.WrappedKey, data, nil
}

// OpenRestoreBlob checks that the blob was made for ex.Cert, unwraps its master key with
// ex.Key and returns the datums, every one authenticated. It accepts the blobs of the Azure
// CLI and of RestoreBlob.
//
// Authenticated here means "under the blob's own master key", which the blob's author
// chose: anyone holding the exchange certificate, which is public, can make a blob of any
// datums. A blob proves nothing about which security domain it came from; the pool that
// opens it must check the datums against something it trusts (a backup made under the
// domain, a KEK check record) and that every tag it needs is there, and only authorised
// callers may upload one.
func OpenRestoreBlob(blob []byte, ex Exchange) ([]Datum, error) {
	wk, data, err := parseBlob(blob)
	if err != nil {
		return nil, err
	}
	if want := Thumbprint(ex.Cert); wk.Thumbprint != want {
		return nil, fmt.Errorf("blob is for exchange certificate %q, this pool's is %q: %w", wk.Thumbprint, want, ErrWrongExchangeKey)
	}
	master, err := openRSA(wk.EncKey, ex.Key)
	if err != nil {
		return nil, fmt.Errorf("unwrap the master key: %w", err)
	}
	defer clear(master)
	if len(master) != MasterKeySize {
		return nil, fmt.Errorf("wrapped master key is %d bytes, want %d: %w", len(master), MasterKeySize, ErrMalformed)
	}
	return openDatums(master, data)
}
