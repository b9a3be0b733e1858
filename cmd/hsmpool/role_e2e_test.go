//go:build cgo

package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hsmpool/hsmpool/pkg/client"
)

// TestAccessEndToEnd runs the principal and role commands against a real pool ("hsmpoold dev" in this process, as
// TestPoolEndToEnd does): the administrator makes a principal with a client file, gives it Managed HSM Crypto User
// on one key, and the principal, with its own client file, signs with that key and is refused the other; then the
// assignment and the principal go, and with them the principal's access.
func TestAccessEndToEnd(t *testing.T) {
	requireSoftHSM(t)
	dir := t.TempDir()
	adminFile := startDevPool(t, filepath.Join(dir, "pool"))
	t.Setenv(client.EnvFile, adminFile)
	c := &cli{t: t, dir: dir}

	// Activation: three officers' keys, and the security domain.
	for _, o := range []string{"o1", "o2", "o3"} {
		c.ok("sd", "officer-keygen", "--out", c.path(o), "--bits", "2048", "--no-passphrase")
	}
	c.ok("sd", "download", "--cert", c.path("o1.cer"), "--cert", c.path("o2.cer"), "--cert", c.path("o3.cer"), "--quorum", "2", "-o", c.path("sd.json"))

	// Two keys, made by the administrator.
	c.ok("key", "create", "k1", "--kty", "EC-HSM", "--curve", "P-256")
	c.ok("key", "create", "k2", "--kty", "EC-HSM", "--curve", "P-256")
	c.write("msg", "pay 10 to bob")

	// A principal, its secret straight into a client file: not on stdout, the file 0600 and never overwritten.
	appFile := c.path("app.json")
	out := c.ok("principal", "create", "--name", "payments-app", "--secret-expires", "30d", "--client-file-out", appFile)
	objectID, clientID := c.field(out, "object id"), c.field(out, "client id")
	c.match(out, `(?m)^name: +payments-app$`, `(?m)^secret expires: +20\d\d-`)
	c.match(c.lastStderr, `(?m)^hsmpool: wrote \S+app.json, a client file for payments-app`)
	if strings.Contains(out, "secret: ") {
		t.Errorf("principal create --client-file-out printed the secret:\n%s", out)
	}
	c.mode("app.json", 0o600)
	app, err := client.ReadFile(appFile)
	if err != nil {
		t.Fatalf("the new client file: %v", err)
	}
	admin, _ := client.ReadFile(adminFile)
	if app.ClientID != clientID || app.URL != admin.URL || app.TenantID != admin.TenantID || app.CAFile != admin.CAFile || app.ClientSecret.Len() == 0 {
		t.Errorf("the new client file %+v, from %+v", app, admin)
	}
	c.failsWith("the file exists", "principal", "create", "--name", "again", "--client-file-out", appFile)

	// The administrator sees it, by either ID; its one credential is the secret.
	c.match(c.ok("principal", "list"), `(?m)^OBJECT ID +CLIENT ID +CREATED +CREDENTIALS +NAME$`, `(?m)^`+objectID+` +`+clientID+` +20\S+ +1 secret +payments-app$`)
	c.match(c.ok("principal", "show", clientID), `(?m)^object id: +`+objectID+`$`, `(?m)^\S+ +secret +20\S+ +20\S+ +- +-$`)
	var shown client.Principal
	if err := json.Unmarshal([]byte(c.ok("principal", "show", objectID, "-o", "json")), &shown); err != nil || shown.ClientID != clientID || len(shown.Credentials) != 1 {
		t.Errorf("principal show -o json: %+v, %v", shown, err)
	}

	// Without a role, it may not sign.
	c.failsWith("(HTTP 403 Forbidden)", "key", "sign", "k1", "--alg", "ES256", "--data-file", c.path("msg"), "--client-file", appFile)

	// Crypto User on /keys/k1, the principal given by its client ID and the role by its name.
	c.match(c.ok("role", "definition", "list", "--name", "Managed HSM Crypto User"), `(?m)^21dbd100-6940-42c2-9190-5d6cb909625b +AKVBuiltInRole +\d+ +Managed HSM Crypto User$`)
	out = c.ok("role", "assignment", "create", "--role", "Managed HSM Crypto User", "--principal", clientID, "--scope", "/keys/k1")
	c.match(out, `(?m)^scope: +/keys/k1$`, `(?m)^principal: +`+objectID+`$`, `(?m)^role: +Managed HSM Crypto User$`)
	assignment := c.field(out, "guid")
	c.match(c.ok("role", "assignment", "list", "--scope", "/keys/k1", "--principal", objectID),
		`(?m)^`+assignment+` +/keys/k1 +`+objectID+` +Managed HSM Crypto User$`)
	var listed []struct {
		Name       string `json:"name"`
		Properties struct {
			Scope, PrincipalID string
		} `json:"properties"`
	}
	if err := json.Unmarshal([]byte(c.ok("role", "assignment", "list", "--principal", objectID, "-o", "json")), &listed); err != nil ||
		len(listed) != 1 || listed[0].Name != assignment || listed[0].Properties.Scope != "/keys/k1" {
		t.Errorf("role assignment list -o json: %+v, %v", listed, err)
	}

	// The principal, with its own client file, signs with k1 and is refused k2.
	sig := strings.TrimSpace(c.ok("key", "sign", "k1", "--alg", "ES256", "--data-file", c.path("msg"), "--client-file", appFile))
	c.match(c.ok("key", "verify", "k1", "--alg", "ES256", "--data-file", c.path("msg"), "--signature", sig, "--client-file", appFile), `^ok\n$`)
	c.failsWith("(HTTP 403 Forbidden)", "key", "sign", "k2", "--alg", "ES256", "--data-file", c.path("msg"), "--client-file", appFile)
	c.match(c.lastStderr, `(?m)^hsmpool: hint: the principal may not do this`)
	c.failsWith("(HTTP 403 Forbidden)", "role", "assignment", "create", "--role", "Managed HSM Administrator", "--principal", objectID, "--client-file", appFile)

	// A second secret, then the first removed: the file's secret no longer works.
	out = c.ok("principal", "secret", "add", objectID, "--expires", "1d")
	c.match(out, `(?m)^secret: +\S{16,}$`)
	app2File := c.path("app2.json")
	if err := client.WriteFile(app2File, app.ForPrincipal(clientID, client.NewSecret(c.field(out, "secret")))); err != nil {
		t.Fatal(err)
	}
	c.match(c.lastStderr, `(?m)^hsmpool: the pool shows this secret only once`)
	first := shown.Credentials[0].ID
	c.match(c.ok("principal", "credential", "remove", objectID, first), `(?m)^credentials: +1 secret$`)
	c.failsWith("the pool did not accept the client file's credentials", "key", "sign", "k1", "--alg", "ES256", "--data-file", c.path("msg"), "--client-file", appFile)
	c.failsWith("(HTTP 404 Not Found)", "principal", "credential", "remove", objectID, first)
	c.ok("key", "sign", "k1", "--alg", "ES256", "--data-file", c.path("msg"), "--client-file", app2File)

	// A certificate, for client assertions.
	c.write("app.pem", string(pemOf("CERTIFICATE", testCertDER(t))))
	c.match(c.ok("principal", "cert", "add", clientID, "--cert", c.path("app.pem")), `(?m)^credentials: +1 secret, 1 certificate$`,
		`(?m)^\S+ +certificate +20\S+ +20\S+ +\S+ +CN=app$`)

	// A custom role: made from flags, shown, refused while assigned, deleted.
	role := "0f3c8e2a-4b5d-4e6f-8a9b-1c2d3e4f5a6b"
	c.match(c.ok("role", "definition", "create", "--id", role, "--name", "Key Signer", "--data-action", "keys/sign/action,keys/read/action"),
		`(?m)^type: +CustomRole$`, `(?m)^data actions: +keys/sign/action$`, `(?m)^ +keys/read/action$`)
	c.match(c.ok("role", "definition", "show", role, "-o", "json"), `"dataActions": \[\s+"Microsoft.KeyVault/managedHsm/keys/sign/action"`)
	out = c.ok("role", "assignment", "create", "--role", "Key Signer", "--principal", objectID, "--scope", "/keys")
	c.match(out, `(?m)^role: +Key Signer$`)
	signer := c.field(out, "guid")
	c.fails("role", "definition", "delete", role)
	c.ok("role", "assignment", "delete", signer, "--scope", "/keys")
	c.match(c.ok("role", "definition", "delete", role), `(?m)^role name: +Key Signer$`)
	c.failsWith("--role \"Key Signer\": the pool has no role of that name", "role", "assignment", "create", "--role", "Key Signer", "--principal", objectID)

	// The assignment goes, then the principal.
	c.match(c.ok("role", "assignment", "delete", assignment, "--scope", "/keys/k1"), `(?m)^guid: +`+assignment+`$`, `(?m)^role: +Managed HSM Crypto User$`)
	c.match(c.ok("role", "assignment", "list", "--principal", objectID), `^GUID +SCOPE +PRINCIPAL +ROLE\n$`)
	c.failsWith("(HTTP 403 Forbidden)", "key", "sign", "k1", "--alg", "ES256", "--data-file", c.path("msg"), "--client-file", app2File)
	c.match(c.ok("principal", "delete", objectID), `(?m)^object id: +`+objectID+`$`)
	c.failsWith("the pool did not accept the client file's credentials", "key", "sign", "k1", "--alg", "ES256", "--data-file", c.path("msg"), "--client-file", app2File)
	c.failsWith("(HTTP 404 Not Found)", "principal", "show", objectID)
	if strings.Contains(c.ok("principal", "list"), objectID) {
		t.Errorf("principal list still lists the deleted principal")
	}
}
