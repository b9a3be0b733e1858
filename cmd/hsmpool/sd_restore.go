package main

import (
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/hsmpool/hsmpool/internal/secret"
	"github.com/hsmpool/hsmpool/securitydomain"
)

// restoreBlobOptions are the flags of "hsmpool sd restore-blob".
type restoreBlobOptions struct {
	// SDFile is the security-domain file, as downloaded.
	SDFile string
	// ExchangeKey is the recovering pool's exchange-key certificate, PEM, as "init-recovery" writes it.
	ExchangeKey string
	// Keys are the officers' keys, each "KEY" or "KEY:CERT" (see parseKeyArg).
	Keys []string
	// PassphraseFiles hold the passphrases of Keys, by index.
	PassphraseFiles []string
	// Out is the restore blob to write, or "-" for stdout.
	Out string
}

// validate checks the options; errors name the flag at fault.
func (o *restoreBlobOptions) validate() error {
	switch {
	case o.SDFile == "":
		return errors.New("--sd-file is required: the security-domain file")
	case o.ExchangeKey == "":
		return errors.New("--exchange-key is required: the recovering pool's exchange-key certificate (PEM)")
	case len(o.Keys) == 0:
		return errors.New("--key is required: give one for each officer taking part")
	case len(o.PassphraseFiles) > len(o.Keys):
		return fmt.Errorf("%d --passphrase-file for %d --key: the i-th file goes with the i-th key", len(o.PassphraseFiles), len(o.Keys))
	case o.Out == "":
		return errors.New("-o is required: the restore blob to write, or - for stdout")
	}
	return nil
}

// newRestoreBlobCmd builds "hsmpool sd restore-blob".
func newRestoreBlobCmd(opts *restoreBlobOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "restore-blob --sd-file FILE --exchange-key PEM --key KEY[:CERT]... -o OUT",
		Short: "Build a restore blob offline from the security domain and a quorum of officer keys",
		Long: `restore-blob is the offline step of a recovery, like "az keyvault security-domain
restore-blob". With at least a quorum of officers' keys it opens the security-domain
file, then encrypts its contents again, under a fresh key, to the recovering pool's
exchange key. The result, the restore blob, is what the recovering pool takes
("az keyvault security-domain upload --restore-blob"). The officers' keys never
leave this machine.

--exchange-key is the certificate that "az keyvault security-domain init-recovery
--sd-exchange-key ex.pem" wrote (GET /securitydomain/upload on the recovering pool).

Each --key KEY has its certificate beside it, KEY with its extension replaced by
".cer" (officer1.key, officer1.cer), as the Azure CLI finds it; --key KEY:CERT names
the certificate. Keys may be PEM PKCS#8 (encrypted or not), PKCS#1, or PKCS#1
encrypted by older openssl. Before any key is decrypted, every certificate must match
a share of the file, and the keys must be at least the quorum.

The passphrase of the i-th key, if it is encrypted, comes from the i-th
--passphrase-file ("" stands for none), else from $HSMPOOL_SD_PASSPHRASE if it is not
empty, else from the terminal. A key that is not encrypted ignores its file.

The blob is written to -o with mode 0600; restore-blob never overwrites a file.
-o - writes it to stdout.`,
		Example: `  # Two officers of a 2-of-3 security domain, each asked for their passphrase.
  hsmpool sd restore-blob --sd-file sd.json --exchange-key ex.pem \
      --key officer1.key --key officer3.key -o blob.json

  # Passphrases in files, a certificate kept elsewhere.
  hsmpool sd restore-blob --sd-file sd.json --exchange-key ex.pem \
      --key officer1.key --passphrase-file officer1.pass \
      --key officer3.key:certs/officer3.cer --passphrase-file officer3.pass \
      -o blob.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := opts.validate(); err != nil {
				return err
			}
			return restoreBlob(cmd, opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.SDFile, "sd-file", opts.SDFile, "security-domain file, as downloaded (required)")
	f.StringVar(&opts.ExchangeKey, "exchange-key", opts.ExchangeKey, "exchange-key certificate of the recovering pool, PEM (required)")
	f.StringArrayVar(&opts.Keys, "key", opts.Keys, "an officer's private key, KEY or KEY:CERT; repeat for each officer (required)")
	f.StringArrayVar(&opts.PassphraseFiles, "passphrase-file", opts.PassphraseFiles, "file holding the passphrase of the key at the same position (\"\" for none); repeatable")
	f.StringVarP(&opts.Out, "out", "o", opts.Out, "write the restore blob to this new file, or - for stdout (required)")
	return cmd
}

// restoreBlob does the work of "hsmpool sd restore-blob" once the options are valid. It checks everything it can
// before it asks for a passphrase: the output is absent, the file parses, enough keys were given, every certificate
// matches a share and no officer is counted twice.
func restoreBlob(cmd *cobra.Command, opts *restoreBlobOptions) error {
	toStdout := opts.Out == "-"
	if !toStdout {
		if err := checkAbsent(opts.Out); err != nil {
			return err
		}
	}
	blob, err := buildRestoreBlob(opts, func() (*x509.Certificate, error) {
		exchange, err := readCertificate(opts.ExchangeKey)
		if err != nil {
			return nil, err
		}
		return exchange, checkExchangeCert(opts.ExchangeKey, exchange)
	})
	if err != nil {
		return err
	}
	if toStdout {
		_, err = cmd.OutOrStdout().Write(blob)
		return err
	}
	return writeNewFile(opts.Out, blob, 0o600)
}

// buildRestoreBlob opens opts.SDFile with opts.Keys and makes the restore blob for the exchange certificate that
// exchangeCert returns; it is called once the file and the number of keys are checked, before any key is read.
// "hsmpool sd restore-blob" and "hsmpool sd upload --sd-file" share it.
func buildRestoreBlob(opts *restoreBlobOptions, exchangeCert func() (*x509.Certificate, error)) ([]byte, error) {
	sdText, err := os.ReadFile(opts.SDFile)
	if err != nil {
		return nil, err
	}
	scope := sdScope{sdFile: opts.SDFile, given: len(opts.Keys)}
	file, err := securitydomain.ParseFile(sdText)
	if err != nil {
		return nil, scope.explain(err)
	}
	scope.file = file
	if len(opts.Keys) < file.Required {
		return nil, scope.explain(securitydomain.ErrTooFewKeys)
	}
	exchange, err := exchangeCert()
	if err != nil {
		return nil, err
	}

	keys := make([]*officerKey, len(opts.Keys))
	byThumbprint := make(map[string]*officerKey)
	for i, a := range opts.Keys {
		arg, err := parseKeyArg(a)
		if err != nil {
			return nil, err
		}
		k, err := readOfficerCert(arg)
		if err != nil {
			return nil, err
		}
		if file.ShareFor(k.cert) < 0 {
			return nil, scope.withKey(k).explain(securitydomain.ErrNoShare)
		}
		tp := securitydomain.Thumbprint(k.cert)
		if other := byThumbprint[tp]; other != nil {
			return nil, withHints(fmt.Errorf("%s and %s have the same certificate (thumbprint %s): an officer counts once", other.keyPath, k.keyPath, tp),
				"give each officer's key once")
		}
		byThumbprint[tp] = k
		keys[i] = k
	}

	pp := &passphrases{files: opts.PassphraseFiles}
	defer pp.close()
	sdKeys := make([]securitydomain.OfficerKey, len(keys))
	for i, k := range keys {
		if err := k.readKey(func() (secret.Bytes, error) { return pp.forKey(i, k.keyPath) }); err != nil {
			return nil, err
		}
		// Open each share on its own first, so that a failure names the officer's key.
		if _, err := file.CheckShare(k.sd()); err != nil {
			return nil, scope.withKey(k).explain(err)
		}
		sdKeys[i] = k.sd()
	}

	blob, err := securitydomain.RestoreBlob(sdText, exchange, sdKeys)
	if err != nil {
		return nil, scope.explain(err)
	}
	return blob, nil
}

// checkExchangeCert checks the exchange certificate before any officer key is opened, so that the error names its
// file; RestoreBlob checks it again.
func checkExchangeCert(path string, cert *x509.Certificate) error {
	if pub, ok := cert.PublicKey.(*rsa.PublicKey); !ok {
		return fmt.Errorf("%s: the exchange key is %s, not RSA", path, cert.PublicKeyAlgorithm)
	} else if bits := pub.N.BitLen(); bits < securitydomain.MinRSABits {
		return fmt.Errorf("%s: the exchange key is RSA-%d; want at least RSA-%d", path, bits, securitydomain.MinRSABits)
	}
	return nil
}

// withKey returns s about officer key k.
func (s sdScope) withKey(k *officerKey) sdScope {
	s.key = k
	return s
}
