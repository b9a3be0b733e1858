package main

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/youmark/pkcs8"

	"github.com/hsmpool/hsmpool/internal/secret"
	"github.com/hsmpool/hsmpool/securitydomain"
)

// officerKeygenOptions are the flags of "hsmpool sd officer-keygen".
type officerKeygenOptions struct {
	// Out is the name of the files written: Out.key and Out.cer.
	Out string
	// Bits is the RSA modulus size: 2048, 3072 or 4096.
	Bits int
	// Subject is the common name of the certificate.
	Subject string
	// PassphraseFile holds the passphrase that encrypts Out.key; see newPassphrase for the other sources.
	PassphraseFile string
	// NoPassphrase writes Out.key unencrypted.
	NoPassphrase bool
}

// defaultOfficerKeygenOptions returns the defaults of "hsmpool sd officer-keygen".
func defaultOfficerKeygenOptions() *officerKeygenOptions {
	return &officerKeygenOptions{Bits: 3072, Subject: "hsmpool security officer"}
}

// officerCertValidity is how long an officer certificate is valid. Nothing checks it (the Azure CLI does not), but a
// security domain outlives most keys, so it is long.
const officerCertValidity = 10 // years

// pkcs8Options encrypt officer keys: PBES2 with PBKDF2-HMAC-SHA256 (600,000 iterations, OWASP's 2023 figure) and
// AES-256-CBC, which openssl 1.1 and later, and Python's cryptography (the Azure CLI), read.
var pkcs8Options = &pkcs8.Opts{
	Cipher: pkcs8.AES256CBC,
	KDFOpts: pkcs8.PBKDF2Opts{
		SaltSize:       16,
		IterationCount: 600_000,
		HMACHash:       crypto.SHA256,
	},
}

// validate checks the options; errors name the flag at fault.
func (o *officerKeygenOptions) validate() error {
	if o.Out == "" {
		return fmt.Errorf("--out is required: the name of the files to write, NAME.key and NAME.cer")
	}
	if ext := filepath.Ext(o.Out); ext == ".key" || ext == ".cer" {
		return fmt.Errorf("--out %q: give the name without %s; officer-keygen writes %[3]s.key and %[3]s.cer", o.Out, ext, strings.TrimSuffix(o.Out, ext))
	}
	switch o.Bits {
	case 2048, 3072, 4096:
	default:
		return fmt.Errorf("--bits %d: want 2048, 3072 or 4096", o.Bits)
	}
	if o.Subject == "" {
		return fmt.Errorf("--subject: want a common name, not an empty one")
	}
	if o.NoPassphrase && o.PassphraseFile != "" {
		return fmt.Errorf("--no-passphrase and --passphrase-file: give one or the other")
	}
	return nil
}

// newOfficerKeygenCmd builds "hsmpool sd officer-keygen".
func newOfficerKeygenCmd(opts *officerKeygenOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "officer-keygen --out NAME [--bits 3072] [--subject CN] [--passphrase-file FILE | --no-passphrase]",
		Short: "Make a security officer's RSA key pair and certificate",
		Long: `officer-keygen makes one security officer's RSA key pair and a self-signed X.509
certificate for it, and writes:

  NAME.key  the private key, PEM encrypted PKCS#8 ("ENCRYPTED PRIVATE KEY": PBES2,
            PBKDF2-HMAC-SHA256 with 600,000 iterations, AES-256-CBC), mode 0600;
  NAME.cer  the certificate, PEM, mode 0644.

It prints the certificate's thumbprint (base64url SHA-256 of its DER, the x5t#S256
that a security-domain file names each share by) on stdout.

The certificate is an encryption certificate: key usage keyEncipherment and
dataEncipherment, a random 128-bit serial number, valid for 10 years. Give NAME.cer
to the pool administrator for the security-domain download; keep NAME.key and its
passphrase to yourself. The names follow the Azure CLI: "--sd-wrapping-keys NAME.key"
finds NAME.cer beside the key.

The passphrase comes from --passphrase-file FILE (one trailing newline is removed),
else from $HSMPOOL_SD_PASSPHRASE if it is not empty, else from the terminal, asked
twice. It must be at least 8 bytes. --no-passphrase writes the key unencrypted, for keys that will be kept
encrypted some other way.

officer-keygen never overwrites a file: if NAME.key or NAME.cer exists it writes
nothing.`,
		Example: `  # Asks for the passphrase on the terminal; writes officer1.key and officer1.cer.
  hsmpool sd officer-keygen --out officer1

  # A 4096-bit key with the passphrase in a file and the officer's name in the certificate.
  hsmpool sd officer-keygen --out alice --bits 4096 --subject "Alice Martin" --passphrase-file alice.pass`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := opts.validate(); err != nil {
				return err
			}
			return officerKeygen(cmd, opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Out, "out", opts.Out, "write NAME.key and NAME.cer (required)")
	f.IntVar(&opts.Bits, "bits", opts.Bits, "RSA key size: 2048, 3072 or 4096")
	f.StringVar(&opts.Subject, "subject", opts.Subject, "common name (CN) of the certificate")
	f.StringVar(&opts.PassphraseFile, "passphrase-file", opts.PassphraseFile, "read the passphrase of NAME.key from this file")
	f.BoolVar(&opts.NoPassphrase, "no-passphrase", opts.NoPassphrase, "write NAME.key unencrypted (not recommended)")
	return cmd
}

// officerKeygen does the work of "hsmpool sd officer-keygen" once the options are valid.
func officerKeygen(cmd *cobra.Command, opts *officerKeygenOptions) error {
	keyPath, certPath := opts.Out+".key", opts.Out+".cer"
	// Refuse before asking for a passphrase.
	if err := checkAbsent(keyPath, certPath); err != nil {
		return err
	}

	// And ask for the passphrase before spending seconds on a key.
	var pass secret.Bytes
	if !opts.NoPassphrase {
		var err error
		if pass, err = newPassphrase(opts.PassphraseFile, keyPath); err != nil {
			return err
		}
		defer pass.Wipe()
	}

	key, err := rsa.GenerateKey(rand.Reader, opts.Bits)
	if err != nil {
		return fmt.Errorf("generate RSA-%d key: %w", opts.Bits, err)
	}
	certDER, err := officerCertificate(key, opts.Subject, time.Now())
	if err != nil {
		return err
	}

	var keyPEM *pem.Block
	if opts.NoPassphrase {
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return fmt.Errorf("encode private key: %w", err)
		}
		keyPEM = &pem.Block{Type: "PRIVATE KEY", Bytes: der}
		fmt.Fprintf(cmd.ErrOrStderr(), "hsmpool: warning: %s is not encrypted: anyone who can read the file can open your share\n", keyPath)
	} else {
		der, err := pkcs8.MarshalPrivateKey(key, pass.Reveal(), pkcs8Options)
		pass.Wipe()
		if err != nil {
			return fmt.Errorf("encrypt private key: %w", err)
		}
		keyPEM = &pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: der}
	}
	keyText := pem.EncodeToMemory(keyPEM)
	clear(keyPEM.Bytes)
	defer clear(keyText)

	if err := writeNewFile(keyPath, keyText, 0o600); err != nil {
		return err
	}
	if err := writeNewFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: certDER}), 0o644); err != nil {
		_ = os.Remove(keyPath) // created by this command a moment ago, with O_EXCL
		return err
	}

	cert, err := x509.ParseCertificate(certDER)
	if err != nil {
		return fmt.Errorf("parse the certificate just made: %w", err)
	}
	_, err = fmt.Fprintln(cmd.OutOrStdout(), securitydomain.Thumbprint(cert))
	return err
}

// officerCertificate makes the self-signed encryption certificate of an officer's key, valid from now (less an hour,
// for clocks behind ours) for officerCertValidity years.
func officerCertificate(key *rsa.PrivateKey, commonName string, now time.Time) ([]byte, error) {
	serial := new(big.Int)
	for serial.Sign() == 0 { // RFC 5280 wants a positive serial; 0 comes once in 2^128
		b := make([]byte, 16)
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
		serial.SetBytes(b)
	}
	name := pkix.Name{CommonName: commonName}
	template := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               name,
		Issuer:                name,
		NotBefore:             now.Add(-time.Hour).UTC().Truncate(time.Second),
		NotAfter:              now.AddDate(officerCertValidity, 0, 0).UTC().Truncate(time.Second),
		KeyUsage:              x509.KeyUsageKeyEncipherment | x509.KeyUsageDataEncipherment,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("make certificate: %w", err)
	}
	return der, nil
}
