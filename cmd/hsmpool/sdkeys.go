package main

import (
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/youmark/pkcs8"
	"golang.org/x/term"

	"github.com/hsmpool/hsmpool/internal/secret"
	"github.com/hsmpool/hsmpool/securitydomain"
)

// This file reads what officers bring to a security-domain command: certificates, private keys in the formats
// openssl and "hsmpool sd officer-keygen" write, and the passphrases of those keys.

// minPassphraseLen is the shortest passphrase officer-keygen accepts for a new key. Keys made elsewhere are opened
// whatever their passphrase.
const minPassphraseLen = 8

// terminal reads passphrases without echoing them.
type terminal interface {
	// ReadPassphrase shows prompt and reads one line without echo; the line ending is not part of the result.
	ReadPassphrase(prompt string) ([]byte, error)
	Close() error
}

// errNoTerminal means there is no terminal to ask for a passphrase on.
var errNoTerminal = errors.New("no terminal to ask for a passphrase on")

// openTerminal opens the terminal to prompt on. It is a variable so that tests can give a scripted one; the real one
// is openTTY.
var openTerminal = openTTY

// openTTY opens the controlling terminal, /dev/tty, or else uses stdin if it is a terminal (prompting on stderr). It
// returns errNoTerminal when there is neither, as under cron, CI or a pipe with no terminal.
func openTTY() (terminal, error) {
	if f, err := os.OpenFile("/dev/tty", os.O_RDWR, 0); err == nil {
		if term.IsTerminal(int(f.Fd())) {
			return &ttyTerminal{in: f, out: f, closer: f}, nil
		}
		_ = f.Close()
	}
	if term.IsTerminal(int(os.Stdin.Fd())) {
		return &ttyTerminal{in: os.Stdin, out: os.Stderr}, nil
	}
	return nil, errNoTerminal
}

// ttyTerminal is a real terminal: in is a terminal, out is where prompts go.
type ttyTerminal struct {
	in     *os.File
	out    io.Writer
	closer io.Closer // nil when in is stdin, which is not ours to close
}

func (t *ttyTerminal) ReadPassphrase(prompt string) ([]byte, error) {
	if _, err := io.WriteString(t.out, prompt); err != nil {
		return nil, err
	}
	b, err := term.ReadPassword(int(t.in.Fd()))
	_, _ = io.WriteString(t.out, "\n") // the user's Enter was not echoed
	if err != nil {
		return nil, fmt.Errorf("read passphrase from terminal: %w", err)
	}
	return b, nil
}

func (t *ttyTerminal) Close() error {
	if t.closer == nil {
		return nil
	}
	return t.closer.Close()
}

// passphrases finds the passphrases of officer keys being opened. For the i-th key it uses, in order: the i-th
// --passphrase-file (an empty one, "", stands for none), $HSMPOOL_SD_PASSPHRASE, a prompt on the terminal. It is asked
// only for keys that are encrypted.
type passphrases struct {
	// files are the --passphrase-file paths, matched to the --key flags by index.
	files []string
	// term is opened on the first prompt; termErr remembers that it could not be.
	term    terminal
	termErr error
}

// forKey returns the passphrase of the i-th key, found at keyPath. The caller wipes it.
func (p *passphrases) forKey(i int, keyPath string) (secret.Bytes, error) {
	if i < len(p.files) && p.files[i] != "" {
		return secret.ReadFile(p.files[i])
	}
	if pass, ok := passphraseFromEnv(); ok {
		return pass, nil
	}
	if p.term == nil && p.termErr == nil {
		p.term, p.termErr = openTerminal()
	}
	if p.termErr != nil {
		return secret.Bytes{}, withHints(fmt.Errorf("%s is encrypted, and there is %w", keyPath, p.termErr),
			fmt.Sprintf("give its passphrase in a file with --passphrase-file FILE (the %s --passphrase-file goes with the %[1]s --key), or in $%s",
				ordinal(i+1), envPassphrase))
	}
	b, err := p.term.ReadPassphrase(fmt.Sprintf("Passphrase for %s: ", keyPath))
	return secret.New(b), err
}

// close closes the terminal, if one was opened.
func (p *passphrases) close() {
	if p.term != nil {
		_ = p.term.Close()
	}
}

// passphraseFromEnv returns $HSMPOOL_SD_PASSPHRASE if it is set and not empty: set to "" it counts as unset, so
// that a script can clear it with "export HSMPOOL_SD_PASSPHRASE=".
func passphraseFromEnv() (secret.Bytes, bool) {
	pass, ok := secret.FromEnv(envPassphrase)
	return pass, ok && pass.Len() > 0
}

// ordinal spells n as "1st", "2nd", "3rd", "4th"...
func ordinal(n int) string {
	suffix := "th"
	switch {
	case n%100 >= 11 && n%100 <= 13:
	case n%10 == 1:
		suffix = "st"
	case n%10 == 2:
		suffix = "nd"
	case n%10 == 3:
		suffix = "rd"
	}
	return fmt.Sprintf("%d%s", n, suffix)
}

// newPassphrase gets the passphrase for a new key written to keyPath: from file if it is not empty, else from
// $HSMPOOL_SD_PASSPHRASE, else asked twice on the terminal. It refuses passphrases shorter than minPassphraseLen. The
// caller wipes the result.
func newPassphrase(file, keyPath string) (secret.Bytes, error) {
	var pass secret.Bytes
	var source string
	switch env, inEnv := passphraseFromEnv(); {
	case file != "":
		p, err := secret.ReadFile(file)
		if err != nil {
			return secret.Bytes{}, err
		}
		pass, source = p, "--passphrase-file "+file
	case inEnv:
		pass, source = env, "$"+envPassphrase
	default:
		t, err := openTerminal()
		if err != nil {
			return secret.Bytes{}, withHints(fmt.Errorf("no passphrase for %s: %w", keyPath, err),
				"give it in a file with --passphrase-file FILE, or in $"+envPassphrase)
		}
		defer t.Close()
		p, err := askTwice(t, keyPath)
		if err != nil {
			return secret.Bytes{}, err
		}
		pass, source = p, "the passphrase"
	}
	if pass.Len() < minPassphraseLen {
		n := pass.Len()
		pass.Wipe()
		return secret.Bytes{}, fmt.Errorf("%s: passphrase too short: %d bytes; want at least %d", source, n, minPassphraseLen)
	}
	return pass, nil
}

// askTwice reads a new passphrase for keyPath on t, then again to confirm it.
func askTwice(t terminal, keyPath string) (secret.Bytes, error) {
	b, err := t.ReadPassphrase(fmt.Sprintf("New passphrase for %s: ", keyPath))
	if err != nil {
		return secret.Bytes{}, err
	}
	first := secret.New(b)
	b, err = t.ReadPassphrase("Same passphrase again: ")
	if err != nil {
		first.Wipe()
		return secret.Bytes{}, err
	}
	again := secret.New(b)
	defer again.Wipe()
	if !first.Equal(again) {
		first.Wipe()
		return secret.Bytes{}, errors.New("the two passphrases differ")
	}
	return first, nil
}

// errWrongPassphrase is wrapped by parsePrivateKey when an encrypted key does not decrypt with its passphrase.
var errWrongPassphrase = errors.New("wrong passphrase (or not an encrypted key)")

// parsePrivateKey decodes an officer's RSA private key from the PEM text of the file at path: PKCS#8
// ("PRIVATE KEY"), encrypted PKCS#8 ("ENCRYPTED PRIVATE KEY", PBES2), PKCS#1 ("RSA PRIVATE KEY"), or PKCS#1
// encrypted the way older openssl did ("Proc-Type: 4,ENCRYPTED"). It calls passphrase only for an encrypted key,
// and wipes what it returns. Errors start with path.
func parsePrivateKey(path string, pemText []byte, passphrase func() (secret.Bytes, error)) (*rsa.PrivateKey, error) {
	block := findPEM(pemText, func(typ string) bool { return strings.HasSuffix(typ, "PRIVATE KEY") })
	if block == nil {
		return nil, fmt.Errorf("%s: no PEM private key in it", path)
	}
	var key any
	var err error
	var decrypt func(pass []byte) (any, error) // for an encrypted key
	switch {
	case block.Type == "ENCRYPTED PRIVATE KEY":
		decrypt = func(pass []byte) (any, error) { return decryptPKCS8(block.Bytes, pass) }
	case block.Type == "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case block.Type == "RSA PRIVATE KEY" && strings.Contains(block.Headers["Proc-Type"], "ENCRYPTED"):
		decrypt = func(pass []byte) (any, error) { return decryptLegacyPEM(block, pass) }
	case block.Type == "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("%s: a %q is not an RSA private key", path, block.Type)
	}
	if decrypt != nil {
		pass, perr := passphrase()
		if perr != nil {
			return nil, perr // it names the key or the passphrase file
		}
		if pass.Len() == 0 {
			err = errWrongPassphrase // pkcs8 would read the key as unencrypted and fail less clearly
		} else {
			key, err = decrypt(pass.Reveal())
		}
		pass.Wipe()
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	rsaKey, ok := key.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: a %T is not an RSA private key", path, key)
	}
	return rsaKey, nil
}

// decryptPKCS8 decrypts an EncryptedPrivateKeyInfo (PBES2) with pass.
func decryptPKCS8(der, pass []byte) (key any, err error) {
	if err := checkKDFCost(der); err != nil {
		return nil, err
	}
	// pkcs8 panics on a damaged file (an IV that is not one block, a ciphertext that is not whole blocks). A key file
	// is the user's own, but a crash is no way to say that it is damaged.
	defer func() {
		if r := recover(); r != nil {
			key, err = nil, fmt.Errorf("damaged encrypted key: %v", r)
		}
	}()
	key, _, err = pkcs8.ParsePrivateKey(der, pass)
	// The library does not check the padding: a wrong passphrase shows as plaintext that is not a PKCS#8 key, which it
	// reports with exactly this text. Its other errors are about the file: an unsupported cipher or KDF, bad ASN.1.
	if err != nil && err.Error() == "pkcs8: incorrect password" {
		return nil, errWrongPassphrase
	} else if err != nil {
		return nil, withHints(fmt.Errorf("cannot decrypt: %w", err),
			"re-encrypt the key in a form this reads: openssl pkcs8 -topk8 -v2 aes-256-cbc -v2prf hmacWithSHA256 -in OLD.key -out NEW.key")
	}
	return key, nil
}

// Bounds on the key-derivation cost written in an encrypted key, far above what openssl, Python's cryptography and
// officer-keygen (PBKDF2 x 600,000) write. The pkcs8 library runs whatever the file says, so a damaged iteration
// count could hang the command, or a damaged scrypt cost exhaust memory.
const (
	maxPBKDF2Iterations = 10_000_000
	maxScryptN          = 1 << 20 // 1 GiB with r = 8
	maxScryptRP         = 64      // r*p
)

var (
	oidPBKDF2 = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 12}
	oidScrypt = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 11591, 4, 11}
)

// checkKDFCost refuses an EncryptedPrivateKeyInfo whose PBKDF2 or scrypt parameters exceed the bounds above. It
// reads only those parameters; anything else wrong with der is left for the pkcs8 library to report.
func checkKDFCost(der []byte) error {
	var info struct {
		Algorithm pkix.AlgorithmIdentifier
		Data      []byte
	}
	var pbes2 struct {
		KDF, Cipher pkix.AlgorithmIdentifier
	}
	if _, err := asn1.Unmarshal(der, &info); err != nil {
		return nil
	}
	if _, err := asn1.Unmarshal(info.Algorithm.Parameters.FullBytes, &pbes2); err != nil {
		return nil
	}
	switch kdf := pbes2.KDF; {
	case kdf.Algorithm.Equal(oidPBKDF2):
		var p struct {
			Salt       []byte
			Iterations int
		}
		if _, err := asn1.Unmarshal(kdf.Parameters.FullBytes, &p); err == nil && p.Iterations > maxPBKDF2Iterations {
			return fmt.Errorf("encrypted with %d PBKDF2 iterations; at most %d are accepted", p.Iterations, maxPBKDF2Iterations)
		}
	case kdf.Algorithm.Equal(oidScrypt):
		var p struct {
			Salt    []byte
			N, R, P int
		}
		if _, err := asn1.Unmarshal(kdf.Parameters.FullBytes, &p); err == nil && (p.N > maxScryptN || p.R*p.P > maxScryptRP || p.R < 0 || p.P < 0) {
			return fmt.Errorf("encrypted with scrypt N=%d r=%d p=%d; at most N=%d and r*p=%d are accepted", p.N, p.R, p.P, maxScryptN, maxScryptRP)
		}
	}
	return nil
}

// decryptLegacyPEM decrypts a PKCS#1 key encrypted with openssl's legacy PEM encryption (MD5-based key derivation).
func decryptLegacyPEM(block *pem.Block, pass []byte) (any, error) {
	//lint:ignore SA1019 legacy PEM encryption is weak, but keys from older openssl (genrsa -aes256) come this way
	der, err := x509.DecryptPEMBlock(block, pass)
	if errors.Is(err, x509.IncorrectPasswordError) {
		return nil, errWrongPassphrase
	} else if err != nil {
		return nil, err
	}
	defer clear(der)
	key, err := x509.ParsePKCS1PrivateKey(der)
	if err != nil {
		// The padding check lets about one wrong passphrase in 256 through; what comes out is not a key.
		return nil, errWrongPassphrase
	}
	return key, nil
}

// findPEM returns the first PEM block in text whose type satisfies want, or nil.
func findPEM(text []byte, want func(string) bool) *pem.Block {
	for {
		var block *pem.Block
		block, text = pem.Decode(text)
		if block == nil {
			return nil
		}
		if want(block.Type) {
			return block
		}
	}
}

// readCertificate reads an X.509 certificate from a PEM file (the first CERTIFICATE block), or from a DER file.
// It accepts the PEM that "az keyvault security-domain init-recovery" writes: 65-character lines and no final newline.
func readCertificate(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err // os errors name the path
	}
	der := b
	if block := findPEM(b, func(typ string) bool { return typ == "CERTIFICATE" }); block != nil {
		der = block.Bytes
	} else if strings.Contains(string(b), "-----BEGIN") {
		return nil, fmt.Errorf("%s: no PEM certificate in it", path)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("%s: not a certificate: %w", path, err)
	}
	return cert, nil
}

// keyArg is one --key argument: an officer's private-key file and the certificate that goes with it.
type keyArg struct {
	keyPath, certPath string
	// certGiven says that certPath was given as KEY:CERT, not derived from keyPath.
	certGiven bool
}

// parseKeyArg parses "KEY" or "KEY:CERT". Without CERT, the certificate is KEY with its extension replaced by
// ".cer", as the Azure CLI finds it. A Windows drive letter ("C:\...") in KEY is not a separator.
func parseKeyArg(s string) (keyArg, error) {
	vol := filepath.VolumeName(s) // "C:" on Windows; always "" elsewhere
	keyPath, certPath, explicit := strings.Cut(s[len(vol):], ":")
	keyPath = vol + keyPath
	if keyPath == "" {
		return keyArg{}, fmt.Errorf("--key %q: no key file", s)
	}
	if !explicit {
		certPath = strings.TrimSuffix(keyPath, filepath.Ext(keyPath)) + ".cer"
	} else if certPath == "" {
		return keyArg{}, fmt.Errorf("--key %q: no certificate file after the colon; want KEY or KEY:CERT", s)
	}
	return keyArg{keyPath: keyPath, certPath: certPath, certGiven: explicit}, nil
}

// officerKey is an officer's key as given on the command line: paths, certificate, and the private key once read.
type officerKey struct {
	keyPath, certPath string
	cert              *x509.Certificate
	key               *rsa.PrivateKey // nil until readKey
}

// readOfficerCert reads the certificate of arg. A missing certificate gets a hint on where it is looked for.
func readOfficerCert(arg keyArg) (*officerKey, error) {
	cert, err := readCertificate(arg.certPath)
	switch {
	case errors.Is(err, fs.ErrNotExist) && arg.certGiven:
		return nil, fmt.Errorf("%s: its certificate %s does not exist", arg.keyPath, arg.certPath)
	case errors.Is(err, fs.ErrNotExist):
		return nil, withHints(fmt.Errorf("%s: no certificate %s beside it", arg.keyPath, arg.certPath),
			"the certificate of KEY.key is read from KEY.cer, as the Azure CLI does; give another with --key KEY:CERT")
	case err != nil:
		return nil, err
	}
	return &officerKey{keyPath: arg.keyPath, certPath: arg.certPath, cert: cert}, nil
}

// readKey reads k's private key, asking passphrase if it is encrypted, and checks that it belongs to k's
// certificate.
func (k *officerKey) readKey(passphrase func() (secret.Bytes, error)) error {
	b, err := os.ReadFile(k.keyPath)
	if err != nil {
		return err // os errors name the path
	}
	key, err := parsePrivateKey(k.keyPath, b, passphrase)
	clear(b)
	if err != nil {
		return err
	}
	if !key.PublicKey.Equal(k.cert.PublicKey) {
		return withHints(fmt.Errorf("%s does not belong to its certificate %s: their public keys differ", k.keyPath, k.certPath),
			"give each key with its own certificate, as --key KEY:CERT if it is not KEY.cer")
	}
	k.key = key
	return nil
}

// sd returns k as package securitydomain takes it; readKey must have succeeded.
func (k *officerKey) sd() securitydomain.OfficerKey {
	return securitydomain.OfficerKey{Cert: k.cert, Key: k.key}
}
