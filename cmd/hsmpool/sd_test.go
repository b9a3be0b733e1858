package main

import (
	"bufio"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/hsmpool/hsmpool/internal/secret"
	"github.com/hsmpool/hsmpool/securitydomain"
)

// TestSD runs the scripts in testdata/sd: "hsmpool sd ..." as an officer runs it, with these helpers beside it
// (registered in TestMain):
//
//	mksd [-quorum M] [-o FILE] CERT...    a security-domain file for CERTs, with the datums of testDatums
//	mkexchange [-bits N] NAME             an exchange key: NAME.pem as init-recovery writes it, NAME.key
//	openblob BLOB NAME                    open a restore blob with exchange key NAME; print tag=value lines
//	sdedit swap-shares|flip-datum IN OUT  damage a security-domain file
//	certinfo [-thumbprint] CERT           print what officer-keygen put in a certificate
//	perm FILE MODE                        fail unless FILE's permission bits are MODE (octal)
//
// In the scripts there is no terminal unless $TEST_TTY names a file of answers (see scriptedTerminal).
func TestSD(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata/sd",
		Setup: func(env *testscript.Env) error {
			// Under -race every process sleeps a second on exit (atexit_sleep_ms); the scripts start a hundred.
			env.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
			return nil
		},
	})
}

// testDatums are the datums mksd puts in a security domain, in order.
var testDatums = []struct{ tag, value string }{
	{"hsm_backup", "the pool's keys, wrapped"},
	{"base_enclave_backup", "base enclave state"},
	{"kmsp_enclave_backup", "kmsp enclave state"},
}

// scriptedTerminal stands in for the terminal in the scripts. With $TEST_TTY naming a file, each prompt is written to
// stderr and answered with the file's next line; without it there is no terminal, as under CI, so that a script
// never waits on the terminal of the developer running it.
func scriptedTerminal() (terminal, error) {
	path := os.Getenv("TEST_TTY")
	if path == "" {
		return nil, errNoTerminal
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	return &fakeTerminal{f: f, lines: bufio.NewScanner(f)}, nil
}

type fakeTerminal struct {
	f     *os.File
	lines *bufio.Scanner
}

func (t *fakeTerminal) ReadPassphrase(prompt string) ([]byte, error) {
	fmt.Fprint(os.Stderr, prompt+"\n")
	if !t.lines.Scan() {
		return nil, fmt.Errorf("read passphrase from terminal: %w", io.EOF)
	}
	return []byte(t.lines.Text()), nil
}

func (t *fakeTerminal) Close() error { return t.f.Close() }

// helperMain runs a helper command: it exits 1 with the error on stderr, or 0.
func helperMain(name string, f func(args []string) error) {
	if err := f(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
	os.Exit(0)
}

func mksdMain() {
	helperMain("mksd", func(args []string) error {
		fs := flag.NewFlagSet("mksd", flag.ContinueOnError)
		quorum := fs.Int("quorum", 2, "quorum")
		out := fs.String("o", "sd.json", "output file")
		if err := fs.Parse(args); err != nil {
			return err
		}
		var certs []*x509.Certificate
		for _, p := range fs.Args() {
			c, err := readCertificate(p)
			if err != nil {
				return err
			}
			certs = append(certs, c)
		}
		var datums []securitydomain.Datum
		for _, d := range testDatums {
			datums = append(datums, securitydomain.Datum{Tag: d.tag, Data: secret.Copy([]byte(d.value))})
		}
		file, err := securitydomain.NewFile(certs, *quorum, datums)
		if err != nil {
			return err
		}
		return os.WriteFile(*out, file, 0o600)
	})
}

func mkexchangeMain() {
	helperMain("mkexchange", func(args []string) error {
		fs := flag.NewFlagSet("mkexchange", flag.ContinueOnError)
		bits := fs.Int("bits", 2048, "RSA key size")
		if err := fs.Parse(args); err != nil {
			return err
		}
		if fs.NArg() != 1 {
			return errors.New("usage: mkexchange [-bits N] NAME")
		}
		name := fs.Arg(0)
		key, err := rsa.GenerateKey(rand.Reader, *bits)
		if err != nil {
			return err
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(1),
			Subject:      pkix.Name{CommonName: "exchange key"},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(24 * time.Hour),
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			return err
		}
		// As the Azure CLI writes x5c[0] (spec §2.3): 65-character lines and no final newline.
		b64 := base64.StdEncoding.EncodeToString(der)
		var lines []string
		for len(b64) > 65 {
			lines, b64 = append(lines, b64[:65]), b64[65:]
		}
		lines = append(lines, b64)
		certPEM := "-----BEGIN CERTIFICATE-----\n" + strings.Join(lines, "\n") + "\n-----END CERTIFICATE-----"
		if err := os.WriteFile(name+".pem", []byte(certPEM), 0o644); err != nil {
			return err
		}
		keyDER, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return err
		}
		return os.WriteFile(name+".key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
	})
}

func openblobMain() {
	helperMain("openblob", func(args []string) error {
		if len(args) != 2 {
			return errors.New("usage: openblob BLOB NAME")
		}
		blob, err := os.ReadFile(args[0])
		if err != nil {
			return err
		}
		cert, err := readCertificate(args[1] + ".pem")
		if err != nil {
			return err
		}
		keyPEM, err := os.ReadFile(args[1] + ".key")
		if err != nil {
			return err
		}
		key, err := parsePrivateKey(args[1]+".key", keyPEM, nil)
		if err != nil {
			return err
		}
		datums, err := securitydomain.OpenRestoreBlob(blob, securitydomain.Exchange{Cert: cert, Key: key})
		if err != nil {
			return err
		}
		for _, d := range datums {
			fmt.Printf("%s=%s\n", d.Tag, d.Data.Reveal())
		}
		return nil
	})
}

func sdeditMain() {
	helperMain("sdedit", func(args []string) error {
		if len(args) != 3 {
			return errors.New("usage: sdedit swap-shares|flip-datum IN OUT")
		}
		b, err := os.ReadFile(args[1])
		if err != nil {
			return err
		}
		var doc struct {
			EncData struct {
				Data []map[string]any `json:"data"`
				KDF  string           `json:"kdf"`
			}
			SharedKeys struct {
				EncShares    []map[string]any `json:"enc_shares"`
				KeyAlgorithm string           `json:"key_algorithm"`
				Required     int              `json:"required"`
			}
			Version int `json:"version"`
		}
		if err := json.Unmarshal(b, &doc); err != nil {
			return err
		}
		switch args[0] {
		case "swap-shares": // the first officer's share becomes the second's and the other way round
			s := doc.SharedKeys.EncShares
			s[0]["enc_key"], s[1]["enc_key"] = s[1]["enc_key"], s[0]["enc_key"]
		case "flip-datum": // one character of the first datum's ciphertext changes
			parts := strings.Split(doc.EncData.Data[0]["compact_jwe"].(string), ".")
			ct := []byte(parts[3])
			if ct[len(ct)/2] == 'A' {
				ct[len(ct)/2] = 'B'
			} else {
				ct[len(ct)/2] = 'A'
			}
			parts[3] = string(ct)
			doc.EncData.Data[0]["compact_jwe"] = strings.Join(parts, ".")
		default:
			return fmt.Errorf("unknown edit %q", args[0])
		}
		out, err := json.Marshal(doc)
		if err != nil {
			return err
		}
		return os.WriteFile(args[2], out, 0o600)
	})
}

func certinfoMain() {
	helperMain("certinfo", func(args []string) error {
		fs := flag.NewFlagSet("certinfo", flag.ContinueOnError)
		thumbprintOnly := fs.Bool("thumbprint", false, "print the thumbprint only")
		if err := fs.Parse(args); err != nil {
			return err
		}
		if fs.NArg() != 1 {
			return errors.New("usage: certinfo [-thumbprint] CERT")
		}
		c, err := readCertificate(fs.Arg(0))
		if err != nil {
			return err
		}
		if *thumbprintOnly {
			fmt.Println(securitydomain.Thumbprint(c))
			return nil
		}
		if err := c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature); err != nil {
			return fmt.Errorf("not self-signed: %w", err)
		}
		fmt.Printf("subject: %s\n", c.Subject)
		fmt.Printf("issuer: %s\n", c.Issuer)
		fmt.Printf("key: RSA-%d\n", c.PublicKey.(*rsa.PublicKey).N.BitLen())
		var usage []string
		for _, u := range []struct {
			bit  x509.KeyUsage
			name string
		}{
			{x509.KeyUsageDigitalSignature, "digitalSignature"}, {x509.KeyUsageKeyEncipherment, "keyEncipherment"},
			{x509.KeyUsageDataEncipherment, "dataEncipherment"}, {x509.KeyUsageCertSign, "keyCertSign"},
		} {
			if c.KeyUsage&u.bit != 0 {
				usage = append(usage, u.name)
			}
		}
		fmt.Printf("keyusage: %s\n", strings.Join(usage, " "))
		fmt.Printf("ca: %v\n", c.IsCA)
		fmt.Printf("valid now: %v\n", time.Now().After(c.NotBefore) && time.Now().Before(c.NotAfter))
		fmt.Printf("years: %d\n", c.NotAfter.Year()-time.Now().UTC().Year())
		// Random 128-bit: positive, at most 128 bits, and (but once in 2^28) more than 100.
		bits := c.SerialNumber.BitLen()
		fmt.Printf("serial random 128-bit: %v\n", c.SerialNumber.Sign() > 0 && bits <= 128 && bits > 100)
		return nil
	})
}

func permMain() {
	helperMain("perm", func(args []string) error {
		if len(args) != 2 {
			return errors.New("usage: perm FILE MODE")
		}
		want, err := strconv.ParseUint(args[1], 8, 32)
		if err != nil {
			return err
		}
		fi, err := os.Stat(args[0])
		if err != nil {
			return err
		}
		if got := fi.Mode().Perm(); got != os.FileMode(want) {
			return fmt.Errorf("%s has mode %#o, want %#o", args[0], got, want)
		}
		return nil
	})
}
