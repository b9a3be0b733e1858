package test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hsmpool/hsmpool/internal/secret"
	"github.com/hsmpool/hsmpool/securitydomain"
)

// This file checks security-domain interoperability with the real Azure CLI (Debian's azure-cli 2.45.0, whose
// offline "az keyvault security-domain restore-blob" is the only security-domain command that runs there; see
// spec/security-domain-format.md §2.6). Officer keys are made by the real openssl binary in the three PEM forms an
// officer may hold; the security-domain file is made by package securitydomain; az turns it into a restore blob,
// which package securitydomain must open. The hsmpool CLI builds a restore blob from the same inputs, and both blobs
// must open to the same data and have the same shape.

// azTimeout bounds one az or hsmpool run. az needs 1 to 4 s; the bound only stops a hung process.
const azTimeout = 2 * time.Minute

// interopQuorum is the quorum of the test's security domain: 2 of the 3 officers.
const interopQuorum = 2

// requireTool returns the path of an external program the test needs. When it is missing the test fails on CI,
// where make deps has installed it, and is skipped elsewhere.
func requireTool(t *testing.T, name, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is not on PATH (Debian package %s); make deps installs it (scripts/deps.sh): %v", name, pkg, err)
	}
	t.Skipf("skipping: %s is not on PATH (Debian package %s); make deps installs it", name, pkg)
	return ""
}

// officer is one security officer of the test: a private key and its certificate, both made by openssl.
type officer struct {
	name     string // officer0, officer1, ...
	keyPath  string // officerN.key
	certPath string // officerN.cer: the Azure CLI finds it by replacing the key's extension
	cert     *x509.Certificate
	// password encrypts the key; it is empty for an unencrypted key. passPath holds it followed by a newline, as
	// openssl's file: source and hsmpool's --passphrase-file read it.
	password, passPath string
}

// encrypted reports whether the officer's key file is encrypted.
func (o officer) encrypted() bool { return o.password != "" }

// privateKey parses the officer's unencrypted key file (PKCS#8 or PKCS#1) with the standard library, which cannot
// decrypt an encrypted PKCS#8 key.
func (o officer) privateKey(t *testing.T) securitydomain.OfficerKey {
	t.Helper()
	if o.encrypted() {
		t.Fatalf("%s: the test parses only unencrypted keys in Go", o.keyPath)
	}
	block := readPEM(t, o.keyPath)
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		t.Fatalf("%s: unexpected PEM block %q", o.keyPath, block.Type)
	}
	if err != nil {
		t.Fatalf("%s: %v", o.keyPath, err)
	}
	rsaKey, ok := key.(*rsa.PrivateKey)
	if !ok {
		t.Fatalf("%s: a %T, want an RSA key", o.keyPath, key)
	}
	return securitydomain.OfficerKey{Cert: o.cert, Key: rsaKey}
}

// readPEM returns the first PEM block of a file.
func readPEM(t *testing.T, path string) *pem.Block {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatalf("%s: no PEM block", path)
	}
	return block
}

// runOpenSSL runs openssl in dir and fails the test, with openssl's output, when it fails.
func runOpenSSL(t *testing.T, openssl, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command(openssl, args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// makeOfficers makes three officers with openssl, one per PEM form an officer's key may take:
//
//	officer0: encrypted PKCS#8 (AES-256-CBC), RSA-2048, the Azure CLI's --passwords case;
//	officer1: unencrypted PKCS#8, RSA-2048;
//	officer2: unencrypted PKCS#1 ("traditional"), RSA-3072.
//
// Each has a self-signed certificate, officerN.cer, beside officerN.key.
func makeOfficers(t *testing.T, openssl, dir string) []officer {
	t.Helper()
	// OpenSSL 3 writes PKCS#8 from genrsa unless told -traditional; OpenSSL 1.1 has no such flag and writes PKCS#1.
	help, _ := exec.Command(openssl, "genrsa", "-help").CombinedOutput()
	pkcs1 := []string{"genrsa", "-out", "officer2.key"}
	if bytes.Contains(help, []byte("-traditional")) {
		pkcs1 = append(pkcs1, "-traditional")
	}
	pkcs1 = append(pkcs1, "3072")

	officers := make([]officer, 3)
	for i := range officers {
		o := &officers[i]
		o.name = fmt.Sprintf("officer%d", i)
		o.keyPath = filepath.Join(dir, o.name+".key")
		o.certPath = filepath.Join(dir, o.name+".cer")
	}
	officers[0].password = "officer0-" + randomHex(t, 12)
	officers[0].passPath = filepath.Join(dir, "officer0.pass")
	if err := os.WriteFile(officers[0].passPath, []byte(officers[0].password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	keygen := [][]string{
		{"genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-aes-256-cbc", "-pass", "file:officer0.pass", "-out", "officer0.key"},
		{"genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "officer1.key"},
		pkcs1,
	}
	wantBlock := []string{"ENCRYPTED PRIVATE KEY", "PRIVATE KEY", "RSA PRIVATE KEY"}
	for i, o := range officers {
		runOpenSSL(t, openssl, dir, keygen[i]...)
		req := []string{"req", "-new", "-x509", "-key", o.name + ".key", "-subj", "/CN=" + o.name, "-days", "30", "-out", o.name + ".cer"}
		if o.encrypted() {
			req = append(req, "-passin", "file:"+o.name+".pass")
		}
		runOpenSSL(t, openssl, dir, req...)

		// The test is only worth its name if openssl wrote the forms it claims to test.
		if got := readPEM(t, o.keyPath).Type; got != wantBlock[i] {
			t.Fatalf("%s: openssl wrote a %q PEM block, want %q", o.keyPath, got, wantBlock[i])
		}
		block := readPEM(t, o.certPath)
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatalf("%s: %v", o.certPath, err)
		}
		officers[i].cert = cert
	}
	return officers
}

// exchange is the recovering pool's exchange key: made in Go, its certificate written the way the Azure CLI's
// init-recovery writes it.
type exchange struct {
	path string // ex.pem
	securitydomain.Exchange
}

// makeExchange makes an RSA-2048 exchange key with a self-signed certificate and writes the certificate to ex.pem.
func makeExchange(t *testing.T, dir string) exchange {
	t.Helper()
	key, cert := selfSigned(t, "hsmpool test exchange key")
	path := filepath.Join(dir, "ex.pem")
	if err := os.WriteFile(path, []byte(initRecoveryPEM(cert.Raw)), 0o644); err != nil {
		t.Fatal(err)
	}
	return exchange{path: path, Exchange: securitydomain.Exchange{Cert: cert, Key: key}}
}

// initRecoveryPEM encodes a certificate exactly as "az keyvault security-domain init-recovery" writes x5c[0]
// (spec §2.3): standard base64 in 65-character lines, and no newline after the END line.
func initRecoveryPEM(der []byte) string {
	b64 := base64.StdEncoding.EncodeToString(der)
	var lines []string
	for i := 0; i < len(b64); i += 65 {
		lines = append(lines, b64[i:min(i+65, len(b64))])
	}
	return "-----BEGIN CERTIFICATE-----\n" + strings.Join(lines, "\n") + "\n-----END CERTIFICATE-----"
}

// TestInitRecoveryPEM pins initRecoveryPEM to the Azure CLI's output on a DER whose base64 is exactly four lines.
func TestInitRecoveryPEM(t *testing.T) {
	der := bytes.Repeat([]byte{0xfb, 0xef, 0xbe}, 65) // 195 bytes: 260 base64 characters, all "+"
	line := strings.Repeat("+", 65)
	want := "-----BEGIN CERTIFICATE-----\n" + strings.Repeat(line+"\n", 4) + "-----END CERTIFICATE-----"
	if got := initRecoveryPEM(der); got != want {
		t.Errorf("initRecoveryPEM(195 bytes) =\n%s\nwant\n%s", got, want)
	}
	// A last line shorter than 65 characters, with padding, read back by encoding/pem.
	block, rest := pem.Decode([]byte(initRecoveryPEM(der[:100])))
	if block == nil || !bytes.Equal(block.Bytes, der[:100]) || len(rest) != 0 {
		t.Errorf("pem.Decode does not read initRecoveryPEM's output back")
	}
}

// randomHex returns n random bytes in hex.
func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// randomDatums returns the test's domain secrets: three tags with random data of different sizes, one not a
// multiple of the AES block size.
func randomDatums(t *testing.T) []securitydomain.Datum {
	t.Helper()
	sizes := []struct {
		tag string
		n   int
	}{{"hsm_backup", 4099}, {"domain_kek", 32}, {"backup_key", 1000}}
	var ds []securitydomain.Datum
	for _, s := range sizes {
		b := make([]byte, s.n)
		if _, err := rand.Read(b); err != nil {
			t.Fatal(err)
		}
		ds = append(ds, securitydomain.Datum{Tag: s.tag, Data: secret.New(b)})
	}
	return ds
}

// checkDatums fails the test unless got holds exactly want: the same tags with the same bytes, in the same order.
func checkDatums(t *testing.T, what string, got, want []securitydomain.Datum) {
	t.Helper()
	tags := func(ds []securitydomain.Datum) []string {
		var s []string
		for _, d := range ds {
			s = append(s, d.Tag)
		}
		return s
	}
	if !slices.Equal(tags(got), tags(want)) {
		t.Fatalf("%s: tags %q, want %q", what, tags(got), tags(want))
	}
	for i := range want {
		if !got[i].Data.Equal(want[i].Data) {
			t.Errorf("%s: datum %q: %d bytes that differ from the original %d bytes", what, want[i].Tag, got[i].Data.Len(), want[i].Data.Len())
		}
	}
}

// azCLI runs the Azure CLI with a private configuration directory, no telemetry and only errors on stderr. It needs
// no login and no network: restore-blob runs offline.
type azCLI struct {
	path      string
	configDir string
}

// run runs az with args and returns its stderr, and an error when it exits non-zero.
func (az azCLI) run(t *testing.T, args ...string) (stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), azTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, az.path, args...)
	cmd.Env = append(os.Environ(),
		"AZURE_CONFIG_DIR="+az.configDir,
		"AZURE_CORE_COLLECT_TELEMETRY=false",
		"AZURE_CORE_ONLY_SHOW_ERRORS=true",
		"AZURE_CORE_NO_COLOR=true",
	)
	var out, errOut bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &errOut
	start := time.Now()
	err = cmd.Run()
	result := "ok"
	if err != nil {
		result = err.Error()
	}
	t.Logf("az %s ... %s: %s in %s", strings.Join(args[:min(3, len(args))], " "), filepath.Base(args[len(args)-1]), result, time.Since(start).Round(time.Millisecond))
	if err != nil && out.Len() > 0 {
		errOut.WriteString("\n[stdout]\n" + out.String())
	}
	return errOut.String(), err
}

// cliErrorRE finds the Azure CLI's own error in its stderr. Debian's 2.45.0 hides every keyvault error behind a
// TypeError from its exception handler (spec §2.6), and the real one is left in the traceback above it.
var cliErrorRE = regexp.MustCompile(`(?m)^(?:knack\.util\.CLIError|azure\.cli\.core\.azclierror\.\w+): (.*)$`)

// azError returns the Azure CLI's own error message from its stderr, or "" when there is none.
func azError(stderr string) string {
	if m := cliErrorRE.FindStringSubmatch(stderr); m != nil {
		return m[1]
	}
	return ""
}

// restoreBlob runs "az keyvault security-domain restore-blob" and returns the blob it wrote. The encrypted officer key
// must come first in keys: az matches --passwords to keys by index and fails on an empty password (spec §4).
func (az azCLI) restoreBlob(t *testing.T, sdFile, exchangeCert, out string, keys []officer) ([]byte, string, error) {
	t.Helper()
	args := []string{"keyvault", "security-domain", "restore-blob", "--sd-file", sdFile, "--sd-exchange-key", exchangeCert, "--sd-wrapping-keys"}
	var passwords []string
	for i, o := range keys {
		args = append(args, o.keyPath)
		if o.encrypted() {
			if i != len(passwords) {
				t.Fatalf("the encrypted key %s must come before the unencrypted ones", o.keyPath)
			}
			passwords = append(passwords, o.password)
		}
	}
	if len(passwords) > 0 {
		args = append(args, "--passwords")
		args = append(args, passwords...)
	}
	args = append(args, "--sd-file-restore-blob", out)
	stderr, err := az.run(t, args...)
	if err != nil {
		return nil, stderr, err
	}
	blob, err := os.ReadFile(out)
	if err != nil {
		return nil, stderr, fmt.Errorf("az exited 0 but wrote no blob: %w", err)
	}
	return blob, stderr, nil
}

// hsmpoolBinary builds cmd/hsmpool once, in the background, while az runs.
type hsmpoolBinary struct {
	done chan struct{}
	path string
	err  error
}

// buildHsmpool starts building cmd/hsmpool into a temporary directory. The build stops when the test ends.
func buildHsmpool(t *testing.T) *hsmpoolBinary {
	b := &hsmpoolBinary{done: make(chan struct{}), path: filepath.Join(t.TempDir(), "hsmpool")}
	ctx := t.Context()
	// Registered after TempDir's cleanup, so it runs first: the directory is removed after the build has stopped.
	t.Cleanup(func() { <-b.done })
	go func() {
		defer close(b.done)
		goTool, err := exec.LookPath("go")
		if err != nil {
			b.err = fmt.Errorf("the hsmpool CLI is built with the go command, which is not on PATH: %w", err)
			return
		}
		gomod, err := exec.CommandContext(ctx, goTool, "env", "GOMOD").Output()
		if err != nil {
			b.err = fmt.Errorf("go env GOMOD: %w", err)
			return
		}
		cmd := exec.CommandContext(ctx, goTool, "build", "-o", b.path, "./cmd/hsmpool")
		cmd.Dir = filepath.Dir(strings.TrimSpace(string(gomod)))
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build ./cmd/hsmpool: %w\n%s", err, out)
		}
	}()
	return b
}

// restoreBlob runs "hsmpool sd restore-blob" and returns the blob it wrote.
func (b *hsmpoolBinary) restoreBlob(t *testing.T, sdFile, exchangeCert, out string, keys []officer) []byte {
	t.Helper()
	<-b.done
	if b.err != nil {
		t.Fatal(b.err)
	}
	args := []string{"sd", "restore-blob", "--sd-file", sdFile, "--exchange-key", exchangeCert}
	// --passphrase-file is matched to --key by position; '' stands for "no file" for an
	// unencrypted key, so the order of the keys does not matter.
	for _, o := range keys {
		pass := ""
		if o.encrypted() {
			pass = o.passPath
		}
		args = append(args, "--key", o.keyPath, "--passphrase-file", pass)
	}
	args = append(args, "-o", out)

	ctx, cancel := context.WithTimeout(t.Context(), azTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, b.path, args...)
	// Only --passphrase-file may supply a passphrase; stdin is not a terminal (it is /dev/null).
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "HSMPOOL_SD_PASSPHRASE=") })
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("hsmpool %s: %v\nstderr:\n%s\nstdout:\n%s", strings.Join(args, " "), err, stderr.Bytes(), stdout.Bytes())
	}
	blob, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("hsmpool sd restore-blob exited 0 but wrote no blob: %v", err)
	}
	return blob
}

// blobShape is the part of a restore blob that does not change from one run to the next: everything except the
// ciphertexts, which are under a fresh master key each time.
type blobShape struct {
	TopKeys   []string // sorted
	EncKeys   []string // keys of EncData, sorted
	KDF       string
	Tags      []string // in order
	WrapKeys  []string // keys of WrappedKey, sorted
	X5tS256   string
	DatumKeys [][]string // keys of each EncData.data entry, sorted
}

// shapeOf decodes a restore blob into its shape.
func shapeOf(t *testing.T, who string, blob []byte) blobShape {
	t.Helper()
	var top map[string]json.RawMessage
	if err := json.Unmarshal(blob, &top); err != nil {
		t.Fatalf("%s's restore blob is not a JSON object: %v", who, err)
	}
	var enc map[string]json.RawMessage
	var wrapped map[string]json.RawMessage
	var s blobShape
	if err := json.Unmarshal(top["EncData"], &enc); err != nil {
		t.Fatalf("%s's restore blob: EncData: %v", who, err)
	}
	if err := json.Unmarshal(top["WrappedKey"], &wrapped); err != nil {
		t.Fatalf("%s's restore blob: WrappedKey: %v", who, err)
	}
	var data []map[string]json.RawMessage
	if err := json.Unmarshal(enc["data"], &data); err != nil {
		t.Fatalf("%s's restore blob: EncData.data: %v", who, err)
	}
	if err := json.Unmarshal(enc["kdf"], &s.KDF); err != nil {
		t.Fatalf("%s's restore blob: EncData.kdf: %v", who, err)
	}
	if err := json.Unmarshal(wrapped["x5t_256"], &s.X5tS256); err != nil {
		t.Fatalf("%s's restore blob: WrappedKey.x5t_256: %v", who, err)
	}
	sortedKeys := func(m map[string]json.RawMessage) []string {
		var ks []string
		for k := range m {
			ks = append(ks, k)
		}
		slices.Sort(ks)
		return ks
	}
	s.TopKeys, s.EncKeys, s.WrapKeys = sortedKeys(top), sortedKeys(enc), sortedKeys(wrapped)
	for i, d := range data {
		var tag string
		if err := json.Unmarshal(d["tag"], &tag); err != nil {
			t.Fatalf("%s's restore blob: EncData.data[%d].tag: %v", who, i, err)
		}
		s.Tags = append(s.Tags, tag)
		s.DatumKeys = append(s.DatumKeys, sortedKeys(d))
	}
	return s
}

// tamperShare returns a copy of the security-domain file in which the share encrypted to cert has one character
// changed in the middle of its JWE ciphertext, so that its authentication tag no longer matches.
func tamperShare(t *testing.T, sd []byte, cert *x509.Certificate) []byte {
	t.Helper()
	f, err := securitydomain.ParseFile(sd)
	if err != nil {
		t.Fatal(err)
	}
	i := f.ShareFor(cert)
	if i < 0 {
		t.Fatalf("no share for %s in the file", cert.Subject)
	}
	old := f.Shares[i].JWE
	parts := strings.Split(old, ".")
	if len(parts) != 5 {
		t.Fatalf("share %d: %d JWE parts, want 5", i, len(parts))
	}
	ct := []byte(parts[3])
	mid := len(ct) / 2 // not the last character, so every change of it changes the decoded bytes
	if ct[mid] == 'A' {
		ct[mid] = 'B'
	} else {
		ct[mid] = 'A'
	}
	parts[3] = string(ct)
	tampered := strings.Join(parts, ".")
	if bytes.Count(sd, []byte(old)) != 1 {
		t.Fatalf("share %d's JWE does not occur exactly once in the file", i)
	}
	return bytes.Replace(sd, []byte(old), []byte(tampered), 1)
}

// TestAzureCLIRestoreBlob checks that the real Azure CLI builds a restore blob from a security-domain file made by
// package securitydomain for officer keys made by openssl, that package securitydomain opens that blob to the
// original data, that the hsmpool CLI builds an equivalent blob, and that a tampered share is refused.
func TestAzureCLIRestoreBlob(t *testing.T) {
	azPath := requireTool(t, "az", "azure-cli")
	openssl := requireTool(t, "openssl", "openssl")

	dir := t.TempDir()
	hsmpool := buildHsmpool(t)
	// One private configuration directory for every az run, so that az builds its command index once (a fresh
	// directory costs about 1.5 s per run). A first run fills it, while openssl makes the keys, before the parallel
	// runs share it; it also checks that this az has the command at all.
	az := azCLI{path: azPath, configDir: t.TempDir()}
	var warmStderr string
	var warmErr error
	warm := make(chan struct{})
	go func() {
		defer close(warm)
		warmStderr, warmErr = az.run(t, "keyvault", "security-domain", "restore-blob", "--help")
	}()
	t.Cleanup(func() { <-warm }) // when the test fails before it waits below

	officers := makeOfficers(t, openssl, dir)
	ex := makeExchange(t, dir)
	datums := randomDatums(t)
	certs := []*x509.Certificate{officers[0].cert, officers[1].cert, officers[2].cert}
	sd, err := securitydomain.NewFile(certs, interopQuorum, datums)
	if err != nil {
		t.Fatalf("NewFile: %v", err)
	}
	sdPath := filepath.Join(dir, "sd.json")
	if err := os.WriteFile(sdPath, sd, 0o600); err != nil {
		t.Fatal(err)
	}

	<-warm
	if warmErr != nil {
		t.Fatalf("az keyvault security-domain restore-blob --help: %v\n%s", warmErr, warmStderr)
	}

	// Key subsets in the order az is given them: the encrypted key first when it takes part (spec §4). With all
	// three, az stops reading keys once it has the quorum.
	subsets := []struct {
		name string
		keys []int
	}{
		{"encrypted PKCS#8 and PKCS#8", []int{0, 1}},
		{"PKCS#8 and PKCS#1", []int{1, 2}},
		{"encrypted PKCS#8 and PKCS#1", []int{0, 2}},
		{"all three", []int{0, 1, 2}},
	}
	for _, tc := range subsets {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var keys []officer
			var names []string
			for _, i := range tc.keys {
				keys = append(keys, officers[i])
				names = append(names, officers[i].name)
			}
			id := strings.Join(names, "+")

			azBlob, stderr, err := az.restoreBlob(t, sdPath, ex.path, filepath.Join(dir, "az-"+id+".json"), keys)
			if err != nil {
				t.Fatalf("az restore-blob with %s failed: %v\naz error: %s\nstderr:\n%s", id, err, azError(stderr), stderr)
			}
			got, err := securitydomain.OpenRestoreBlob(azBlob, ex.Exchange)
			if err != nil {
				t.Fatalf("OpenRestoreBlob(az's blob for %s): %v", id, err)
			}
			checkDatums(t, "az's blob for "+id, got, datums)

			ourBlob := hsmpool.restoreBlob(t, sdPath, ex.path, filepath.Join(dir, "hsmpool-"+id+".json"), keys)
			got, err = securitydomain.OpenRestoreBlob(ourBlob, ex.Exchange)
			if err != nil {
				t.Fatalf("OpenRestoreBlob(hsmpool's blob for %s): %v", id, err)
			}
			checkDatums(t, "hsmpool's blob for "+id, got, datums)

			azShape, ourShape := shapeOf(t, "az", azBlob), shapeOf(t, "hsmpool", ourBlob)
			if want := []string{"EncData", "WrappedKey"}; !slices.Equal(azShape.TopKeys, want) {
				t.Errorf("az's blob has top-level keys %q, want %q", azShape.TopKeys, want)
			}
			if azShape.X5tS256 != securitydomain.Thumbprint(ex.Cert) {
				t.Errorf("az's blob: WrappedKey.x5t_256 %q, want the exchange certificate's %q", azShape.X5tS256, securitydomain.Thumbprint(ex.Cert))
			}
			if !reflect.DeepEqual(ourShape, azShape) {
				t.Errorf("hsmpool's blob and az's differ in shape:\nhsmpool %+v\naz      %+v", ourShape, azShape)
			}
		})
	}

	t.Run("tampered share", func(t *testing.T) {
		t.Parallel()
		tampered := tamperShare(t, sd, officers[1].cert)
		path := filepath.Join(dir, "sd-tampered.json")
		if err := os.WriteFile(path, tampered, 0o600); err != nil {
			t.Fatal(err)
		}

		// Package securitydomain refuses the tampered share, whether it is checked alone or used to open the file.
		f, err := securitydomain.ParseFile(tampered)
		if err != nil {
			t.Fatalf("ParseFile(tampered): %v", err)
		}
		k1, k2 := officers[1].privateKey(t), officers[2].privateKey(t)
		if _, err := f.CheckShare(k1); !errors.Is(err, securitydomain.ErrKeyMismatch) {
			t.Errorf("CheckShare(officer1) on the tampered file: %v, want ErrKeyMismatch", err)
		}
		if x, err := f.CheckShare(k2); err != nil {
			t.Errorf("CheckShare(officer2) on the tampered file: %v, want its intact share", err)
		} else if x < 1 || x > len(officers) {
			t.Errorf("CheckShare(officer2) = x %d, want 1..%d", x, len(officers))
		}
		refused := func(err error) bool {
			return errors.Is(err, securitydomain.ErrKeyMismatch) || errors.Is(err, securitydomain.ErrIntegrity)
		}
		if ds, err := f.Open([]securitydomain.OfficerKey{k1, k2}); !refused(err) {
			t.Errorf("Open(officer1, officer2) on the tampered file: %d datums, error %v; want ErrKeyMismatch or ErrIntegrity", len(ds), err)
		}
		if blob, err := securitydomain.RestoreBlob(tampered, ex.Cert, []securitydomain.OfficerKey{k1, k2}); !refused(err) {
			t.Errorf("RestoreBlob(officer1, officer2) on the tampered file: %d bytes, error %v; want ErrKeyMismatch or ErrIntegrity", len(blob), err)
		}

		// az skips a share whose tag does not verify and goes on to the next key (spec §4, §5). So with only
		// officer1 and officer2 it has too few shares...
		keys := []officer{officers[1], officers[2]}
		blob, stderr, err := az.restoreBlob(t, path, ex.path, filepath.Join(dir, "az-tampered-1-2.json"), keys)
		if err == nil {
			t.Errorf("az restore-blob accepted the tampered share of officer1 (a %d-byte blob)", len(blob))
		} else if got, want := azError(stderr), "Insufficient shares available."; got != want {
			t.Errorf("az restore-blob on the tampered share: error %q, want %q\nstderr:\n%s", got, want, stderr)
		}

		// ...while with all three it uses officer0's and officer2's intact shares and succeeds, where hsmpool
		// refuses the whole set (above: Open and RestoreBlob refuse a tampered share even when the others would
		// make the quorum).
		blob, stderr, err = az.restoreBlob(t, path, ex.path, filepath.Join(dir, "az-tampered-all.json"), officers)
		if err != nil {
			t.Fatalf("az restore-blob with all three officers on the file with officer1's share tampered: %v\naz error: %s\nstderr:\n%s", err, azError(stderr), stderr)
		}
		got, err := securitydomain.OpenRestoreBlob(blob, ex.Exchange)
		if err != nil {
			t.Fatalf("OpenRestoreBlob(az's blob from the tampered file): %v", err)
		}
		checkDatums(t, "az's blob from the tampered file", got, datums)
	})
}
