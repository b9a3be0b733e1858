package client

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// writeClientFile writes the JSON of fields to a client file with mode perm and returns its path.
func writeClientFile(t *testing.T, fields map[string]any, perm os.FileMode) string {
	t.Helper()
	b, err := json.Marshal(fields)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "client.json")
	if err := os.WriteFile(path, b, perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, perm); err != nil { // whatever the umask
		t.Fatal(err)
	}
	return path
}

func goodFields() map[string]any {
	return map[string]any{
		"url": "https://contoso.managedhsm.localhost:8443", "name": "contoso", "tenant_id": testTenant,
		"authority_host": "https://127.0.0.1:8443", "client_id": testClientID, "client_secret": testSecret,
		"ca_file": "/data/tls/ca.pem",
	}
}

func TestReadFile(t *testing.T) {
	path := writeClientFile(t, goodFields(), 0o600)
	f, err := ReadFile(path)
	if err != nil {
		t.Fatalf("ReadFile: %v", err)
	}
	want := File{URL: "https://contoso.managedhsm.localhost:8443", Name: "contoso", TenantID: testTenant,
		AuthorityHost: "https://127.0.0.1:8443", ClientID: testClientID, ClientSecret: NewSecret(testSecret), CAFile: "/data/tls/ca.pem"}
	if *f != want || f.ClientSecret.Reveal() != testSecret {
		t.Errorf("ReadFile = %+v, want %+v", *f, want)
	}

	// A relative ca_file is relative to the client file.
	fields := goodFields()
	fields["ca_file"] = "tls/ca.pem"
	path = writeClientFile(t, fields, 0o600)
	if f, err := ReadFile(path); err != nil || f.CAFile != filepath.Join(filepath.Dir(path), "tls/ca.pem") {
		t.Errorf("ReadFile with a relative ca_file: %+v, %v", f, err)
	}

	// Fields the daemon may add later are ignored.
	fields = goodFields()
	fields["future"] = true
	if _, err := ReadFile(writeClientFile(t, fields, 0o600)); err != nil {
		t.Errorf("ReadFile with an unknown field: %v", err)
	}
}

func TestReadFileRefuses(t *testing.T) {
	with := func(key string, value any) map[string]any {
		f := goodFields()
		if value == nil {
			delete(f, key)
		} else {
			f[key] = value
		}
		return f
	}
	tests := []struct {
		name   string
		fields map[string]any
		err    string
	}{
		{"no url", with("url", nil), `"url" is missing`},
		{"http url", with("url", "http://contoso.managedhsm.localhost"), `"url" "http://contoso.managedhsm.localhost": want an https URL`},
		{"url with a query", with("url", "https://contoso?x=1"), `want scheme, host and port only`},
		{"url without host", with("url", "https:///keys"), `no host`},
		{"no authority", with("authority_host", nil), `"authority_host" is missing`},
		{"http authority", with("authority_host", "http://127.0.0.1:8443"), `"authority_host" "http://127.0.0.1:8443": want an https URL`},
		{"no tenant", with("tenant_id", nil), `"tenant_id" is missing`},
		{"tenant with a slash", with("tenant_id", "a/b"), `"tenant_id" "a/b": want a tenant ID, not a path`},
		{"no client id", with("client_id", ""), `"client_id" is missing`},
		{"no secret", with("client_secret", nil), `"client_secret" is missing`},
		{"secret not a string", with("client_secret", 12345678), `"client_secret": want a string`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeClientFile(t, tt.fields, 0o600)
			_, err := ReadFile(path)
			if err == nil || !strings.Contains(err.Error(), tt.err) || !strings.HasPrefix(err.Error(), "client file "+path+": ") {
				t.Errorf("ReadFile: %v; want an error naming the file, with %q", err, tt.err)
			}
			if err != nil {
				mustContainNone(t, "the error", err.Error())
			}
		})
	}

	notJSON := filepath.Join(t.TempDir(), "client.json")
	_ = os.WriteFile(notJSON, []byte(`{"client_secret": "`+testSecret), 0o600)
	if _, err := ReadFile(notJSON); err == nil || !strings.Contains(err.Error(), "not JSON of a client file") {
		t.Errorf("ReadFile of broken JSON: %v", err)
	} else {
		mustContainNone(t, "the error", err.Error())
	}
	big := filepath.Join(t.TempDir(), "client.json")
	_ = os.WriteFile(big, bytes.Repeat([]byte(" "), maxFileSize+1), 0o600)
	if _, err := ReadFile(big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("ReadFile of a large file: %v", err)
	}
	if _, err := ReadFile(t.TempDir()); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("ReadFile of a directory: %v", err)
	}
	if _, err := ReadFile(filepath.Join(t.TempDir(), "nope.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ReadFile of a missing file: %v", err)
	}
}

func TestReadFilePermissions(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("Windows has no permission bits to check")
	}
	for _, perm := range []os.FileMode{0o600, 0o400, 0o700} {
		if _, err := ReadFile(writeClientFile(t, goodFields(), perm)); err != nil {
			t.Errorf("mode %#o: %v", perm, err)
		}
	}
	for _, perm := range []os.FileMode{0o644, 0o640, 0o604, 0o660, 0o602, 0o620, 0o610} {
		path := writeClientFile(t, goodFields(), perm)
		_, err := ReadFile(path)
		want := fmt.Sprintf("client file %s: its group or others may access it (mode %#o), and it holds a client secret; make it private with: chmod 600 %s", path, perm, path)
		if err == nil || err.Error() != want {
			t.Errorf("mode %#o: %v\nwant %s", perm, err, want)
		}
	}
	// On Windows only the type is checked.
	if err := checkMode("c.json", 0o644, "windows"); err != nil {
		t.Errorf("checkMode on windows: %v", err)
	}
}

func TestLoad(t *testing.T) {
	path := writeClientFile(t, goodFields(), 0o600)
	t.Setenv(EnvFile, "")
	if _, err := Load(""); !errors.Is(err, ErrNoFile) {
		t.Errorf("Load with nothing: %v; want ErrNoFile", err)
	}
	t.Setenv(EnvFile, path)
	if f, err := Load(""); err != nil || f.Name != "contoso" {
		t.Errorf("Load from $%s: %+v, %v", EnvFile, f, err)
	}
	t.Setenv(EnvFile, filepath.Join(t.TempDir(), "nope"))
	if f, err := Load(path); err != nil || f.Name != "contoso" {
		t.Errorf("Load(path) with $%s set: %+v, %v; the path comes first", EnvFile, f, err)
	}
}

// TestSecretRedacted checks that the secret shows in no form of a File but Reveal.
func TestSecretRedacted(t *testing.T) {
	f, err := ReadFile(writeClientFile(t, goodFields(), 0o600))
	if err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("file", "file", f, "secret", f.ClientSecret)
	var jsonLogged bytes.Buffer
	slog.New(slog.NewJSONHandler(&jsonLogged, nil)).Info("file", "file", f)
	marshalled, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]string{
		"%v": fmt.Sprintf("%v", f), "%+v": fmt.Sprintf("%+v", f), "%#v": fmt.Sprintf("%#v", f), "%s": fmt.Sprintf("%s", f.ClientSecret),
		"%q": fmt.Sprintf("%q", f.ClientSecret), "%x": fmt.Sprintf("%x", f.ClientSecret), "json": string(marshalled),
		"slog text": logged.String(), "slog json": jsonLogged.String(), "String": f.ClientSecret.String(),
	} {
		if strings.Contains(s, testSecret) || !strings.Contains(s, redacted) {
			t.Errorf("%s: %s", name, s)
		}
	}
	if f.ClientSecret.Len() != len(testSecret) {
		t.Errorf("Len = %d", f.ClientSecret.Len())
	}
}
