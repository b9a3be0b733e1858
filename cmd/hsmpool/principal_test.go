package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hsmpool/hsmpool/pkg/client"
)

// TestPrincipalFlags runs principal commands with flag mistakes: each fails with an error that names the flag or
// argument, before it looks for a client file. Valid flags get as far as the missing client file.
func TestPrincipalFlags(t *testing.T) {
	t.Setenv(client.EnvFile, "")
	dir := t.TempDir()
	existing := filepath.Join(dir, "exists.json")
	notCert := filepath.Join(dir, "not.pem")
	keyPEM := filepath.Join(dir, "key.pem")
	cert := filepath.Join(dir, "app.pem")
	for name, content := range map[string]string{
		existing: "{}",
		notCert:  "hello",
		keyPEM:   "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
		cert:     string(pemOf("CERTIFICATE", testCertDER(t))),
	} {
		if err := os.WriteFile(name, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	der := filepath.Join(dir, "app.cer")
	if err := os.WriteFile(der, testCertDER(t), 0o600); err != nil {
		t.Fatal(err)
	}
	const oid = "3f2b8c1e-5a0d-4c5e-9d1a-6b7e8f9a0b1c"
	tests := []struct {
		args []string
		err  string
	}{
		{[]string{"principal", "create"}, "--name is required: the principal's display name"},
		{[]string{"principal", "create", "--name", " "}, "--name is required"},
		{[]string{"principal", "create", "--name", "a", "extra"}, `unknown command "extra" for "hsmpool principal create"`},
		{[]string{"principal", "create", "--name", "a", "--no-secret", "--secret-expires", "30d"}, "--secret-expires: --no-secret makes no secret"},
		{[]string{"principal", "create", "--name", "a", "--no-secret", "--client-file-out", filepath.Join(dir, "new.json")}, "--client-file-out: --no-secret makes no secret to put in a client file"},
		{[]string{"principal", "create", "--name", "a", "--client-file-out", existing}, "--client-file-out " + existing + ": the file exists; it is never overwritten"},
		{[]string{"principal", "create", "--name", "a", "--client-file-out", filepath.Join(dir, "no", "new.json")}, "no directory " + filepath.Join(dir, "no")},
		{[]string{"principal", "create", "--name", "a", "--secret-expires", "soon"}, `--secret-expires "soon": want a positive duration, such as 90d, 720h or 1h30m`},
		{[]string{"principal", "create", "--name", "a", "--secret-expires", "-5d"}, `--secret-expires "-5d": want a positive duration`},
		{[]string{"principal", "create", "--name", "a", "--secret-expires", "10s"}, `--secret-expires "10s": want at least a minute`},
		{[]string{"principal", "create", "--name", "a", "-o", "yaml"}, `-o "yaml": want table or json`},
		{[]string{"principal", "create", "--name", "a", "--secret-expires", "90d", "--client-file-out", filepath.Join(dir, "new.json")}, errNoClientFile},
		{[]string{"principal", "create", "--name", "a", "--no-secret", "-o", "json"}, errNoClientFile},

		{[]string{"principal", "list", "x"}, `unknown command "x" for "hsmpool principal list"`},
		{[]string{"principal", "list"}, errNoClientFile},
		{[]string{"principal", "show"}, "want a principal's object ID or client ID: hsmpool principal show ID [flags]"},
		{[]string{"principal", "show", "a/b"}, `a principal's object ID or client ID "a/b": want an ID`},
		{[]string{"principal", "show", oid}, errNoClientFile},
		{[]string{"principal", "delete", oid, oid}, "want a principal's object ID or client ID"},
		{[]string{"principal", "delete", oid}, errNoClientFile},

		{[]string{"principal", "secret", "add"}, "want a principal's object ID or client ID"},
		{[]string{"principal", "secret", "add", oid, "--expires", "1y"}, `--expires "1y": want a positive duration`},
		{[]string{"principal", "secret", "add", oid, "--expires", "720h"}, errNoClientFile},
		{[]string{"principal", "secret", "add", oid}, errNoClientFile},

		{[]string{"principal", "cert", "add", oid}, "--cert is required: a certificate, PEM or DER"},
		{[]string{"principal", "cert", "add", oid, "--cert", filepath.Join(dir, "nope")}, "--cert: open " + filepath.Join(dir, "nope")},
		{[]string{"principal", "cert", "add", oid, "--cert", notCert}, "--cert " + notCert + ": not a certificate, PEM or DER"},
		{[]string{"principal", "cert", "add", oid, "--cert", keyPEM}, `--cert ` + keyPEM + `: a PEM "PRIVATE KEY" block, not a CERTIFICATE`},
		{[]string{"principal", "cert", "add", oid, "--cert", cert}, errNoClientFile},
		{[]string{"principal", "cert", "add", oid, "--cert", der}, errNoClientFile},

		{[]string{"principal", "credential", "remove", oid}, "want a principal's object ID or client ID and a credential ID: hsmpool principal credential remove ID CREDENTIAL_ID"},
		{[]string{"principal", "credential", "remove", oid, "../x"}, `a credential ID "../x": want an ID`},
		{[]string{"principal", "credential", "remove", oid, "c1"}, errNoClientFile},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, err := execute(t, tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("error %v\nwant one with %q", err, tt.err)
			}
		})
	}
}

func TestParseLifetime(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		err  string
	}{
		{"90d", 90 * 24 * time.Hour, ""},
		{"1d", 24 * time.Hour, ""},
		{"720h", 720 * time.Hour, ""},
		{"1h30m", 90 * time.Minute, ""},
		{"1m", time.Minute, ""},
		{"0d", 0, "want a positive duration"},
		{"d", 0, "want a positive duration"},
		{"1.5d", 0, "want a positive duration"},
		{"1y", 0, "want a positive duration"},
		{"", 0, "want a positive duration"},
		{"-1h", 0, "want at least a minute"},
		{"59s", 0, "want at least a minute"},
		{"99999999d", 0, "want a positive duration"},
	}
	for _, tt := range tests {
		got, err := parseLifetime("--x", tt.in)
		if tt.err == "" && (err != nil || got != tt.want) {
			t.Errorf("parseLifetime(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
		if tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err) || !strings.HasPrefix(err.Error(), `--x "`+tt.in+`"`)) {
			t.Errorf("parseLifetime(%q): error %v, want one with %q", tt.in, err, tt.err)
		}
	}
}

// testPrincipalModel is a principal with a secret and a certificate.
func testPrincipalModel() *client.Principal {
	return &client.Principal{ObjectID: "3f2b8c1e-5a0d-4c5e-9d1a-6b7e8f9a0b1c", ClientID: "9d8c7b6a-0000-4000-8000-000000000001",
		DisplayName: "payments app", Created: 1767225600, Credentials: []client.Credential{
			{ID: "s1", Type: client.CredentialSecret, Created: 1767225600},
			{ID: "s2", Type: client.CredentialSecret, Created: 1767229200, Expires: 1798761600},
			{ID: "c1", Type: client.CredentialCertificate, Created: 1767232800, Expires: 1798761600, Thumbprint: "AbC-123", Subject: "CN=app"},
		}}
}

func TestPrintPrincipal(t *testing.T) {
	var b bytes.Buffer
	if err := printPrincipal(&b, testPrincipalModel()); err != nil {
		t.Fatal(err)
	}
	want := `object id:   3f2b8c1e-5a0d-4c5e-9d1a-6b7e8f9a0b1c
client id:   9d8c7b6a-0000-4000-8000-000000000001
name:        payments app
created:     2026-01-01T00:00:00Z
credentials: 2 secrets, 1 certificate

CREDENTIAL  TYPE         CREATED               EXPIRES               THUMBPRINT  SUBJECT
s1          secret       2026-01-01T00:00:00Z  never                 -           -
s2          secret       2026-01-01T01:00:00Z  2027-01-01T00:00:00Z  -           -
c1          certificate  2026-01-01T02:00:00Z  2027-01-01T00:00:00Z  AbC-123     CN=app
`
	if b.String() != want {
		t.Errorf("printPrincipal:\n%s\nwant\n%s", b.String(), want)
	}

	b.Reset()
	if err := printPrincipal(&b, &client.Principal{ObjectID: "o", ClientID: "c", DisplayName: "n"}); err != nil {
		t.Fatal(err)
	}
	if want := "object id:   o\nclient id:   c\nname:        n\ncredentials: none\n"; b.String() != want {
		t.Errorf("printPrincipal without credentials:\n%q\nwant\n%q", b.String(), want)
	}
}

func TestPrintPrincipalRows(t *testing.T) {
	var b bytes.Buffer
	p := testPrincipalModel()
	if err := printPrincipalRows(&b, []client.Principal{*p, {ObjectID: "o2", ClientID: "c2", DisplayName: "bare"}}); err != nil {
		t.Fatal(err)
	}
	want := `OBJECT ID                             CLIENT ID                             CREATED               CREDENTIALS               NAME
3f2b8c1e-5a0d-4c5e-9d1a-6b7e8f9a0b1c  9d8c7b6a-0000-4000-8000-000000000001  2026-01-01T00:00:00Z  2 secrets, 1 certificate  payments app
o2                                    c2                                    -                     none                      bare
`
	if b.String() != want {
		t.Errorf("printPrincipalRows:\n%s\nwant\n%s", b.String(), want)
	}
}

// TestPrintNewSecret checks the one place where the CLI shows a secret: in the table and JSON forms when asked,
// nowhere when not (the secret went to a client file), and that the JSON is otherwise the REST API's.
func TestPrintNewSecret(t *testing.T) {
	const secret = "the-new-secret"
	p := testPrincipalModel()
	p.SecretID, p.Secret = "s2", client.NewSecret(secret)
	for _, tt := range []struct {
		json, reveal bool
		want         []string
	}{
		{false, true, []string{"object id:      " + p.ObjectID + "\n", "secret id:      s2\n", "secret expires: 2027-01-01T00:00:00Z\n", "secret:         " + secret + "\n"}},
		{false, false, []string{"client id:      " + p.ClientID + "\n", "secret id:      s2\n"}},
		{true, true, []string{`"secret": "` + secret + `"`, `"secretId": "s2"`, `"objectId": "` + p.ObjectID + `"`, `"type": "certificate"`}},
		{true, false, []string{`"secretId": "s2"`, `"clientId": "` + p.ClientID + `"`}},
	} {
		var out, errOut bytes.Buffer
		s := &session{out: &out, errOut: &errOut, json: tt.json}
		if err := s.printNewSecret(p, tt.reveal); err != nil {
			t.Fatal(err)
		}
		for _, w := range tt.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("json %v reveal %v: output\n%s\nwant it to contain %q", tt.json, tt.reveal, out.String(), w)
			}
		}
		if shown := strings.Contains(out.String(), secret); shown != tt.reveal {
			t.Errorf("json %v reveal %v: secret shown %v:\n%s", tt.json, tt.reveal, shown, out.String())
		}
		if strings.Contains(out.String(), "REDACTED") || strings.Contains(errOut.String(), secret) {
			t.Errorf("json %v reveal %v: stdout\n%s\nstderr\n%s", tt.json, tt.reveal, out.String(), errOut.String())
		}
		if tt.reveal != strings.Contains(errOut.String(), "hsmpool: the pool shows this secret only once") {
			t.Errorf("json %v reveal %v: stderr %q", tt.json, tt.reveal, errOut.String())
		}
		if tt.json {
			var m map[string]any
			if err := json.Unmarshal(out.Bytes(), &m); err != nil || m["displayName"] != "payments app" {
				t.Errorf("JSON %s: %v", out.String(), err)
			}
		}
	}
}

// testCertDER returns a self-signed P-256 certificate, DER, with its key; made once.
func testCertDER(t *testing.T) []byte {
	t.Helper()
	der, _ := testCertAndKey(t)
	return der
}

var testCert struct {
	once sync.Once
	der  []byte
	key  *ecdsa.PrivateKey
	err  error
}

func testCertAndKey(t *testing.T) ([]byte, *ecdsa.PrivateKey) {
	t.Helper()
	testCert.once.Do(func() {
		testCert.key, testCert.err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if testCert.err != nil {
			return
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "app"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
		testCert.der, testCert.err = x509.CreateCertificate(rand.Reader, tmpl, tmpl, &testCert.key.PublicKey, testCert.key)
	})
	if testCert.err != nil {
		t.Fatal(testCert.err)
	}
	return testCert.der, testCert.key
}
