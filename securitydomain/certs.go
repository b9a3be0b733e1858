package securitydomain

import (
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
)

// Limits of a security domain, as the Azure CLI and service enforce them.
const (
	MinOfficers   = 3
	MaxOfficers   = 10
	MinQuorum     = 2
	MaxQuorum     = 10
	MasterKeySize = 32
	// MinRSABits is the smallest officer or exchange key accepted.
	MinRSABits = 2048
)

// Thumbprint is the certificate's x5t#S256: base64url, without padding, of SHA-256 over
// its DER. The file names each share's officer by it, and the Azure CLI compares it as a
// string.
func Thumbprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// CheckOfficerCerts validates the officers' certificates of a download: 3 to 10 of them,
// RSA keys of at least 2048 bits, no certificate or key twice. Messages number the
// certificates from 1, in the order given.
func CheckOfficerCerts(certs []*x509.Certificate) error {
	if len(certs) < MinOfficers || len(certs) > MaxOfficers {
		return fmt.Errorf("%d officer certificates: a security domain needs %d to %d", len(certs), MinOfficers, MaxOfficers)
	}
	var errs []error
	seen := map[string]int{}
	for i, c := range certs {
		if c == nil {
			errs = append(errs, fmt.Errorf("certificate %d is missing", i+1))
			continue
		}
		if err := checkRSA(c, "certificate"); err != nil {
			errs = append(errs, fmt.Errorf("certificate %d (%s): %w", i+1, Thumbprint(c), err))
			continue
		}
		for _, id := range []string{Thumbprint(c), "key:" + string(c.RawSubjectPublicKeyInfo)} {
			if j, dup := seen[id]; dup {
				errs = append(errs, fmt.Errorf("certificates %d and %d hold the same key or are the same certificate (%s)", j+1, i+1, Thumbprint(c)))
				break
			}
			seen[id] = i
		}
	}
	return errors.Join(errs...)
}

func checkRSA(c *x509.Certificate, what string) error {
	pub, ok := c.PublicKey.(*rsa.PublicKey)
	if !ok {
		return fmt.Errorf("%s key is %T, only RSA >= %d is supported", what, c.PublicKey, MinRSABits)
	}
	if pub.N.BitLen() < MinRSABits {
		return fmt.Errorf("%s key is RSA-%d, only RSA >= %d is supported", what, pub.N.BitLen(), MinRSABits)
	}
	return nil
}
