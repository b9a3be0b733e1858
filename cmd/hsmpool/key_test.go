package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"github.com/hsmpool/hsmpool/pkg/client"
)

// errNoClientFile is the error of a pool command whose flags are all valid, when there is no client file: the
// tests below reach it to show that the flags passed validation without a pool.
const errNoClientFile = "no client file: give --client-file FILE, or set $HSMPOOL_CLIENT_FILE"

// TestPoolFlags runs pool commands with flag mistakes: each fails with an error that names the flag, before it
// looks for a client file. Valid flags get as far as the missing client file.
func TestPoolFlags(t *testing.T) {
	t.Setenv(client.EnvFile, "")
	dir := t.TempDir()
	existing := filepath.Join(dir, "exists")
	data := filepath.Join(dir, "data")
	cert := filepath.Join(dir, "o.cer")
	for _, f := range []string{existing, data} {
		if err := os.WriteFile(f, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(cert, []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args []string
		err  string
	}{
		// Key names.
		{[]string{"key", "get"}, "want one key name: hsmpool key get NAME [--version V] [flags]"},
		{[]string{"key", "get", "a", "b"}, "want one key name: hsmpool key get NAME [--version V] [flags]"},
		{[]string{"key", "get", "bad_name"}, `key name "bad_name": use 1 to 127 letters, digits and dashes`},
		{[]string{"key", "get", strings.Repeat("k", 128)}, "use 1 to 127 letters"},
		{[]string{"key", "get", "k1"}, errNoClientFile},
		{[]string{"key", "get", "k1", "-o", "yaml"}, `-o "yaml": want table or json`},
		{[]string{"key", "list", "extra"}, `unknown command "extra" for "hsmpool key list"`},

		// create
		{[]string{"key", "create", "k1"}, "--kty is required: RSA-HSM, EC-HSM or oct-HSM"},
		{[]string{"key", "create", "k1", "--kty", "RSA"}, `--kty "RSA": want RSA-HSM, EC-HSM or oct-HSM`},
		{[]string{"key", "create", "k1", "--kty", "RSA-HSM", "--size", "1024"}, "--size 1024: RSA-HSM keys have 2048, 3072 or 4096 bits"},
		{[]string{"key", "create", "k1", "--kty", "oct-HSM", "--size", "512"}, "--size 512: oct-HSM keys have 128, 192 or 256 bits"},
		{[]string{"key", "create", "k1", "--kty", "RSA-HSM", "--curve", "P-256"}, "--curve: only EC-HSM keys have one, not RSA-HSM keys"},
		{[]string{"key", "create", "k1", "--kty", "EC-HSM", "--size", "256"}, "--size: an EC-HSM key's size is its --curve"},
		{[]string{"key", "create", "k1", "--kty", "EC-HSM", "--curve", "P-224"}, `--curve "P-224": want P-256, P-256K, P-384 or P-521`},
		{[]string{"key", "create", "k1", "--kty", "EC-HSM", "--ops", "sign,frob"}, `--ops "frob": want decrypt, encrypt, import, sign, unwrapKey, verify or wrapKey`},
		{[]string{"key", "create", "k1", "--kty", "EC-HSM", "--tag", "novalue"}, `--tag "novalue": want KEY=VALUE`},
		{[]string{"key", "create", "k1", "--kty", "EC-HSM", "--tag", "=v"}, `--tag "=v": want KEY=VALUE`},
		{[]string{"key", "create", "k1", "--kty", "EC-HSM", "--tag", "a=1", "--tag", "a=2"}, `--tag "a=2": tag "a" is given twice`},
		{[]string{"key", "create", "k1", "--kty", "EC-HSM", "--nbf", "tomorrow"}, `invalid argument "tomorrow" for "--nbf" flag: want an RFC 3339 time, such as 2027-01-31T00:00:00Z`},
		{[]string{"key", "create", "k1", "--kty", "EC-HSM", "--nbf", "2027-01-01T00:00:00Z", "--exp", "2026-01-01T00:00:00Z"}, "--exp 2026-01-01T00:00:00Z is not after --nbf 2027-01-01T00:00:00Z"},
		{[]string{"key", "create", "k1", "--kty", "EC-HSM", "--curve", "P-384", "--ops", "sign,verify", "--tag", "a=b=c", "--disabled",
			"--nbf", "2026-01-01T00:00:00+02:00", "--exp", "2027-01-01T00:00:00Z"}, errNoClientFile},
		{[]string{"key", "create", "k1", "--kty", "oct-HSM", "--size", "256"}, errNoClientFile},

		// import
		{[]string{"key", "import", "k1"}, "give --jwk FILE or --pem FILE, one of them"},
		{[]string{"key", "import", "k1", "--jwk", data, "--pem", data}, "give --jwk FILE or --pem FILE, one of them"},
		{[]string{"key", "import", "k1", "--pem", data}, data + ": no PEM private key in it"},
		{[]string{"key", "import", "k1", "--jwk", data}, data + ": not a JSON Web Key"},
		{[]string{"key", "import", "k1", "--jwk", filepath.Join(dir, "nope")}, "no such file or directory"},

		// update
		{[]string{"key", "update", "k1"}, "nothing to change: give --enable, --disable, --ops, --tag, --nbf or --exp"},
		{[]string{"key", "update", "k1", "--enable", "--disable"}, "--enable and --disable: give one or the other"},
		{[]string{"key", "update", "k1", "--disable"}, errNoClientFile},
		{[]string{"key", "update", "k1", "--tag", "a=b", "--version", "0123"}, errNoClientFile},

		// backup, restore
		{[]string{"key", "backup", "k1"}, "-o is required: the file to write the backup to"},
		{[]string{"key", "backup", "k1", "-o", existing}, existing + " already exists; refusing to overwrite it"},
		{[]string{"key", "backup", "k1", "-o", filepath.Join(dir, "new")}, errNoClientFile},
		{[]string{"key", "restore"}, "-i is required: the backup file"},
		{[]string{"key", "restore", "k1", "-i", data}, `unknown command "k1" for "hsmpool key restore"`},
		{[]string{"key", "restore", "-i", filepath.Join(dir, "nope")}, "no such file or directory"},

		// rotation policy
		{[]string{"key", "rotation-policy", "set", "k1"}, "give --after-create or --before-expiry, one of them: when the key rotates"},
		{[]string{"key", "rotation-policy", "set", "k1", "--after-create", "90d"}, `--after-create "90d": want an ISO 8601 duration, such as P90D, P3M, P1Y or PT48H`},
		{[]string{"key", "rotation-policy", "set", "k1", "--after-create", "P"}, `--after-create "P": want an ISO 8601 duration`},
		{[]string{"key", "rotation-policy", "set", "k1", "--after-create", "P1DT"}, `--after-create "P1DT": want an ISO 8601 duration`},
		{[]string{"key", "rotation-policy", "set", "k1", "--before-expiry", "P30D"}, "--before-expiry needs --expiry: how long a new version is valid"},
		{[]string{"key", "rotation-policy", "set", "k1", "--before-expiry", "P30D", "--expiry", "2y"}, `--expiry "2y": want an ISO 8601 duration`},
		{[]string{"key", "rotation-policy", "set", "k1", "--after-create", "P90D", "--expiry", "P2Y"}, errNoClientFile},
		{[]string{"key", "rotation-policy", "set", "k1", "--after-create", "PT48H"}, errNoClientFile},

		// sign, verify
		{[]string{"key", "sign", "k1", "--digest", "AA"}, "--alg is required: ES256, ES256K"},
		{[]string{"key", "sign", "k1", "--alg", "es256", "--digest", "AA"}, `--alg "es256": want ES256, ES256K, ES384, ES512, HS256, HS384, HS512, PS256, PS384, PS512, RS256, RS384 or RS512`},
		{[]string{"key", "sign", "k1", "--alg", "ES256"}, "give --digest B64URL or --data-file FILE, one of them"},
		{[]string{"key", "sign", "k1", "--alg", "ES256", "--digest", "AA", "--data-file", data}, "give --digest B64URL or --data-file FILE, one of them"},
		{[]string{"key", "sign", "k1", "--alg", "ES256", "--digest", "a+b/"}, `invalid argument "a+b/" for "--digest" flag: not base64url: illegal base64 data at input byte 1`},
		{[]string{"key", "sign", "k1", "--alg", "ES256", "--data-file", filepath.Join(dir, "nope")}, "no such file or directory"},
		{[]string{"key", "sign", "k1", "--alg", "ES256", "--digest", "LPJNul-wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ="}, errNoClientFile},
		{[]string{"key", "verify", "k1", "--alg", "PS384", "--data-file", data}, "--signature is required: the signature to verify, base64url"},
		{[]string{"key", "verify", "k1", "--alg", "PS384", "--data-file", data, "--signature", "AQID"}, errNoClientFile},

		// encrypt, decrypt, wrap, unwrap
		{[]string{"key", "encrypt", "k1", "--value", "AA"}, "--alg is required: A128CBC"},
		{[]string{"key", "encrypt", "k1", "--alg", "AES", "--value", "AA"}, `--alg "AES": want A128CBC`},
		{[]string{"key", "encrypt", "k1", "--alg", "A256GCM"}, "give --in FILE or --value B64URL, one of them"},
		{[]string{"key", "encrypt", "k1", "--alg", "A256GCM", "--in", data, "--value", "AA"}, "give --in FILE or --value B64URL, one of them"},
		{[]string{"key", "encrypt", "k1", "--alg", "A256GCM", "--in", data, "--tag", "AA"}, "unknown flag: --tag"},
		{[]string{"key", "encrypt", "k1", "--alg", "A256GCM", "--value", "", "--aad", "YWFk"}, errNoClientFile},
		{[]string{"key", "decrypt", "k1", "--alg", "A256GCM", "--value", "AA", "--iv", "AA", "--tag", "AA", "--aad", "AA"}, errNoClientFile},
		{[]string{"key", "wrap", "k1", "--alg", "A256KW", "--in", data, "--iv", "AA"}, "unknown flag: --iv"},
		{[]string{"key", "unwrap", "k1", "--alg", "RSA-OAEP-256", "--value", "AA"}, errNoClientFile},

		// random
		{[]string{"random"}, "--count 0: want 1 to 128 bytes"},
		{[]string{"random", "--count", "129"}, "--count 129: want 1 to 128 bytes"},
		{[]string{"random", "--count", "32", "-o", "json"}, errNoClientFile},

		// sd download, status
		{[]string{"sd", "download", "--cert", cert, "--cert", cert, "--quorum", "2", "-o", "sd.json"}, "--cert: 2 given; want 3 to 10 officers' certificates"},
		{[]string{"sd", "download", "--cert", cert, "--cert", cert, "--cert", cert, "-o", "sd.json"}, "--quorum is required: how many of the 3 officers must take part in a recovery (2 to 3)"},
		{[]string{"sd", "download", "--cert", cert, "--cert", cert, "--cert", cert, "--quorum", "4", "-o", "sd.json"}, "--quorum 4: want 2 to 3, the number of certificates"},
		{[]string{"sd", "download", "--cert", cert, "--cert", cert, "--cert", cert, "--quorum", "1", "-o", "sd.json"}, "--quorum 1: want 2 to 3"},
		{[]string{"sd", "download", "--cert", cert, "--cert", cert, "--cert", cert, "--quorum", "2"}, "-o is required: the security-domain file to write"},
		{[]string{"sd", "download", "--cert", cert, "--cert", cert, "--cert", cert, "--quorum", "2", "-o", existing}, existing + " already exists"},
		{[]string{"sd", "download", "--cert", cert, "--cert", cert, "--cert", cert, "--quorum", "2", "-o", filepath.Join(dir, "sd.json")}, cert + ": not a certificate"},
		{[]string{"sd", "status", "extra"}, `unknown command "extra" for "hsmpool sd status"`},
		{[]string{"sd", "status"}, errNoClientFile},
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

// TestSDDownloadCertChecks checks that the certificates are checked, with the rules of package securitydomain,
// before the pool is asked.
func TestSDDownloadCertChecks(t *testing.T) {
	t.Setenv(client.EnvFile, "")
	dir := t.TempDir()
	var certs []string
	for _, name := range []string{"o1", "o2", "o3"} {
		path := filepath.Join(dir, name)
		if _, err := execute(t, "sd", "officer-keygen", "--out", path, "--bits", "2048", "--no-passphrase"); err != nil {
			t.Fatal(err)
		}
		certs = append(certs, path+".cer")
	}
	out := filepath.Join(dir, "sd.json")
	_, err := execute(t, "sd", "download", "--cert", certs[0], "--cert", certs[1], "--cert", certs[0], "--quorum", "2", "-o", out)
	if err == nil || !strings.Contains(err.Error(), "--cert: certificates 1 and 3 hold the same key or are the same certificate") {
		t.Errorf("download with a certificate twice: %v", err)
	}
	// PEM and DER both do.
	der := filepath.Join(dir, "o3.der")
	c, err := readCertificate(certs[2])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(der, c.Raw, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = execute(t, "sd", "download", "--cert", certs[0], "--cert", certs[1], "--cert", der, "--quorum", "2", "-o", out)
	if err == nil || err.Error() != errNoClientFile {
		t.Errorf("download with valid flags: %v; want %q", err, errNoClientFile)
	}
}

func TestClientFileErrors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "client.json")
	if err := os.WriteFile(path, []byte(`{"url":"https://p.managedhsm.localhost:1","tenant_id":"t","authority_host":"https://127.0.0.1:1",`+
		`"client_id":"c","client_secret":"top-secret-value"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"key", "list", "--client-file", path}, &out, &errOut); code == 0 {
		t.Fatalf("key list with a readable client file: exit code 0")
	}
	want := "hsmpool: client file " + path + ": its group or others may access it (mode 0644), and it holds a client secret; make it private with: chmod 600 " + path + "\n"
	if errOut.String() != want {
		t.Errorf("stderr %q\nwant %q", errOut.String(), want)
	}

	// From the environment too; and a pool that does not answer is named, with a hint, and never the secret.
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(client.EnvFile, path)
	errOut.Reset()
	if code := run([]string{"random", "--count", "8"}, &out, &errOut); code == 0 {
		t.Fatalf("random with no pool: exit code 0")
	}
	if !strings.HasPrefix(errOut.String(), "hsmpool: cannot reach the pool at https://p.managedhsm.localhost:1: ") ||
		!strings.Contains(errOut.String(), "\nhsmpool: hint: is hsmpoold running, and listening there?\n") ||
		strings.Contains(errOut.String(), "top-secret-value") {
		t.Errorf("stderr %q", errOut.String())
	}
	if out.Len() != 0 {
		t.Errorf("stdout %q", out.String())
	}

	t.Setenv(client.EnvFile, "")
	errOut.Reset()
	run([]string{"key", "list"}, &out, &errOut)
	if want := "hsmpool: " + errNoClientFile + "\nhsmpool: hint: \"hsmpoold dev\" writes one as DATA_DIR/client.json; an administrator gets one per principal\n"; errOut.String() != want {
		t.Errorf("stderr %q\nwant %q", errOut.String(), want)
	}
}

func TestExplainPoolError(t *testing.T) {
	const url = "https://contoso.managedhsm.localhost:8443"
	sdkErr := &azcore.ResponseError{ErrorCode: "KeyNotFound", StatusCode: 404, RawResponse: &http.Response{StatusCode: 404,
		Header: http.Header{}, Body: ioNopCloser(`{"error":{"code":"KeyNotFound","message":"A key with (name/id) k9 was not found in this key vault."}}`)}}
	tests := []struct {
		name string
		err  error
		want string
		hint string
	}{
		{"nil", nil, "", ""},
		{"SDK error", sdkErr, "KeyNotFound (HTTP 404 Not Found): A key with (name/id) k9 was not found in this key vault.", ""},
		{"client error keeps its context", fmt.Errorf("security-domain download: %w", &client.Error{StatusCode: 409, Code: "Conflict", Message: "Already active."}),
			"security-domain download: Conflict (HTTP 409 Conflict): Already active.", ""},
		{"401", &client.Error{StatusCode: 401, Code: "Unauthorized", Message: "The token has expired."},
			"Unauthorized (HTTP 401 Unauthorized): The token has expired.", "the pool did not accept the client file's credentials"},
		{"invalid_client", &client.Error{StatusCode: 400, Code: "invalid_client"}, "invalid_client (HTTP 400 Bad Request)", "the pool did not accept"},
		{"403", &client.Error{StatusCode: 403, Code: "Forbidden", Message: "Operation sign is not permitted on this key."},
			"Forbidden (HTTP 403 Forbidden): Operation sign is not permitted on this key.", "the principal may not do this"},
		{"refused", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)},
			"cannot reach the pool at " + url + ": dial tcp: connect: connection refused", "is hsmpoold running"},
		{"DNS", &net.DNSError{Err: "no such host", Name: "x.invalid"}, "cannot reach the pool at " + url + ": lookup x.invalid: no such host", `check the client file's "url"`},
		{"unknown CA", fmt.Errorf("get: %w", x509.UnknownAuthorityError{}), "the pool at " + url + ": get: x509: certificate signed by unknown authority", `"ca_file"`},
		{"other", errBadSignature, errBadSignature.Error(), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := explainPoolError(tt.err, url)
			if tt.err == nil {
				if err != nil {
					t.Errorf("explainPoolError(nil) = %v", err)
				}
				return
			}
			if err.Error() != tt.want {
				t.Errorf("error %q\nwant  %q", err, tt.want)
			}
			var h *hintedError
			gotHint := ""
			if errors.As(err, &h) {
				gotHint = strings.Join(h.hints, "\n")
			}
			if (tt.hint == "") != (gotHint == "") || !strings.Contains(gotHint, tt.hint) {
				t.Errorf("hints %q, want one with %q", gotHint, tt.hint)
			}
			if !errors.Is(err, tt.err) && !errors.As(err, new(*azcore.ResponseError)) {
				t.Errorf("the original error is lost")
			}
		})
	}
}

func TestHashFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data")
	if err := os.WriteFile(path, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	s256, s384, s512 := sha256.Sum256([]byte("hello")), sha512.Sum384([]byte("hello")), sha512.Sum512([]byte("hello"))
	for alg, want := range map[azkeys.SignatureAlgorithm][]byte{
		"ES256": s256[:], "ES256K": s256[:], "RS256": s256[:], "PS256": s256[:], "HS256": s256[:],
		"ES384": s384[:], "PS384": s384[:], "RS384": s384[:], "HS384": s384[:],
		"ES512": s512[:], "PS512": s512[:], "RS512": s512[:], "HS512": s512[:],
	} {
		got, err := hashFile(path, alg)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("hashFile %s = %x, %v; want %x", alg, got, err, want)
		}
	}
	if _, err := hashFile(path, "RSNULL"); err == nil || !strings.Contains(err.Error(), "give --digest") {
		t.Errorf("hashFile RSNULL: %v", err)
	}
}

// testKey is a key bundle as the pool returns it.
func testKey(t *testing.T) azkeys.KeyBundle {
	t.Helper()
	var k azkeys.KeyBundle
	err := json.Unmarshal([]byte(`{"key":{"kid":"https://contoso.managedhsm.localhost:8443/keys/k1/0123456789abcdef0123456789abcdef",
		"kty":"EC-HSM","crv":"P-256","key_ops":["sign","verify"],"x":"AQ","y":"Ag"},
		"attributes":{"enabled":true,"created":1700000000,"updated":1700000060,"exp":1800000000,"recoverableDays":7,
		"recoveryLevel":"CustomizedRecoverable+Purgeable"},"tags":{"team":"payments","env":"prod"}}`), &k)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestPrintKey(t *testing.T) {
	var b bytes.Buffer
	if err := printKey(&b, testKey(t)); err != nil {
		t.Fatal(err)
	}
	want := `name:             k1
version:          0123456789abcdef0123456789abcdef
kid:              https://contoso.managedhsm.localhost:8443/keys/k1/0123456789abcdef0123456789abcdef
kty:              EC-HSM
curve:            P-256
ops:              sign,verify
enabled:          true
expires:          2027-01-15T08:00:00Z
created:          2023-11-14T22:13:20Z
updated:          2023-11-14T22:14:20Z
recoverable days: 7
recovery level:   CustomizedRecoverable+Purgeable
tags:             env=prod,team=payments
`
	if b.String() != want {
		t.Errorf("printKey:\n%s\nwant:\n%s", b.String(), want)
	}

	// An RSA key shows its size; a deleted key when it goes.
	var d azkeys.DeletedKey
	_ = json.Unmarshal([]byte(`{"key":{"kid":"https://h/keys/r1/00","kty":"RSA-HSM","n":"`+b64(testRSAKey.N.Bytes())+`","e":"AQAB"},
		"recoveryId":"https://h/deletedkeys/r1","deletedDate":1700000000,"scheduledPurgeDate":1700604800}`), &d)
	b.Reset()
	if err := printDeletedKey(&b, d); err != nil {
		t.Fatal(err)
	}
	want = `name:         r1
version:      00
kid:          https://h/keys/r1/00
kty:          RSA-HSM
size:         2048
deleted:      2023-11-14T22:13:20Z
purged after: 2023-11-21T22:13:20Z
recovery id:  https://h/deletedkeys/r1
`
	if b.String() != want {
		t.Errorf("printDeletedKey:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestPrintKeyRows(t *testing.T) {
	var b bytes.Buffer
	err := printKeyRows(&b, []keyRow{
		{name: "k1", kty: "EC-HSM", enabled: "true", version: "0123456789abcdef0123456789abcdef", created: "2023-11-14T22:13:20Z"},
		{name: "a-long-key-name", kty: "?", enabled: "false", version: "?", created: ""},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `NAME             KTY     ENABLED  VERSION                           CREATED
k1               EC-HSM  true     0123456789abcdef0123456789abcdef  2023-11-14T22:13:20Z
a-long-key-name  ?       false    ?                                 
`
	if b.String() != want {
		t.Errorf("printKeyRows:\n%q\nwant:\n%q", b.String(), want)
	}
}

func TestPrintRotationPolicy(t *testing.T) {
	for _, tt := range []struct{ json, want string }{
		{`{"id":"https://h/keys/k1/rotationpolicy","lifetimeActions":[{"trigger":{"timeAfterCreate":"P90D"},"action":{"type":"Rotate"}},` +
			`{"trigger":{"timeBeforeExpiry":"P30D"},"action":{"type":"Notify"}}],"attributes":{"expiryTime":"P2Y","created":1700000000}}`,
			"id:      https://h/keys/k1/rotationpolicy\nexpiry:  P2Y\ncreated: 2023-11-14T22:13:20Z\nrotate:  after create P90D\nnotify:  before expiry P30D\n"},
		{`{"id":"https://h/keys/k1/rotationpolicy","lifetimeActions":[],"attributes":{}}`,
			"id:     https://h/keys/k1/rotationpolicy\nrotate: never (no policy)\n"},
	} {
		var p azkeys.KeyRotationPolicy
		if err := json.Unmarshal([]byte(tt.json), &p); err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		if err := printRotationPolicy(&b, p); err != nil {
			t.Fatal(err)
		}
		if b.String() != tt.want {
			t.Errorf("printRotationPolicy:\n%s\nwant:\n%s", b.String(), tt.want)
		}
	}
}

func TestPrintCipherResult(t *testing.T) {
	kid := azkeys.ID("https://h/keys/aes1/00")
	r := azkeys.KeyOperationResult{KID: &kid, Result: []byte{1, 2, 3}, IV: []byte{4}, AuthenticationTag: []byte{5, 6}}
	var b bytes.Buffer
	if err := printCipherResult(&b, true, r); err != nil {
		t.Fatal(err)
	}
	if want := "value: AQID\niv:    BA\ntag:   BQY\nkid:   https://h/keys/aes1/00\n"; b.String() != want {
		t.Errorf("encrypt:\n%s\nwant:\n%s", b.String(), want)
	}
	b.Reset()
	if err := printCipherResult(&b, false, r); err != nil {
		t.Fatal(err)
	}
	if b.String() != "AQID\n" {
		t.Errorf("decrypt: %q", b.String())
	}
}

// TestJSONOutput checks that -o json prints the REST API's JSON of the SDK's model: unix times, base64url bytes.
func TestJSONOutput(t *testing.T) {
	var b bytes.Buffer
	s := &session{ctx: context.Background(), out: &b, json: true}
	if err := s.printKey(testKey(t), nil); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, b.String())
	}
	key, _ := got["key"].(map[string]any)
	attrs, _ := got["attributes"].(map[string]any)
	if key["x"] != "AQ" || key["kid"] == nil || attrs["created"] != float64(1700000000) || attrs["enabled"] != true {
		t.Errorf("JSON output:\n%s", b.String())
	}
	if err := s.printKey(azkeys.KeyBundle{}, errBadSignature); err != errBadSignature {
		t.Errorf("printKey with an error: %v", err)
	}
}

func TestSmallParsers(t *testing.T) {
	if orList([]string{"a"}) != "a" || orList([]string{"a", "b"}) != "a or b" || orList([]string{"a", "b", "c"}) != "a, b or c" {
		t.Errorf("orList")
	}
	for _, d := range []string{"P90D", "P3M", "P1Y10D", "PT48H", "P2W", "P1DT12H", "PT1S"} {
		if err := checkDuration("--x", d); err != nil {
			t.Errorf("checkDuration(%q): %v", d, err)
		}
	}
	for _, d := range []string{"", "P", "PT", "90D", "P1.5D", "P1H", "p90d", "P1DT"} {
		if err := checkDuration("--x", d); err == nil {
			t.Errorf("checkDuration(%q): no error", d)
		}
	}
	tags, err := parseTags([]string{"a=1", "b=", "c=x=y"})
	if err != nil || *tags["a"] != "1" || *tags["b"] != "" || *tags["c"] != "x=y" {
		t.Errorf("parseTags: %v, %v", tags, err)
	}
	if b, err := decodeB64("AQID"); err != nil || !bytes.Equal(b, []byte{1, 2, 3}) {
		t.Errorf("decodeB64: %x, %v", b, err)
	}
	if b, err := decodeB64("AQ=="); err != nil || !bytes.Equal(b, []byte{1}) {
		t.Errorf("decodeB64 padded: %x, %v", b, err)
	}
	var tp *time.Time
	if err := (timeFlag{&tp}).Set("2027-01-01T01:00:00+01:00"); err != nil || tp.Format(time.RFC3339) != "2027-01-01T00:00:00Z" {
		t.Errorf("timeFlag: %v, %v", tp, err)
	}
}

func ioNopCloser(s string) io.ReadCloser { return io.NopCloser(strings.NewReader(s)) }
