package test

import (
	"crypto/sha256"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azadmin/rbac"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"github.com/hsmpool/hsmpool/internal/softhsm"
)

// TestInitAndServe creates a pool with "hsmpoold init" on a token made with softhsm2-util, as an
// operator would on their own PKCS#11 slot, serves it with "hsmpoold serve", and uses it.
func TestInitAndServe(t *testing.T) {
	requireSoftHSM(t)
	util := requireTool(t, "softhsm2-util", "softhsm2")
	dir := t.TempDir()
	conf, err := softhsm.WriteConfig(filepath.Join(dir, "softhsm"))
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"SOFTHSM2_CONF=" + conf}
	run := func(name string, args ...string) (string, error) {
		cmd := exec.Command(name, args...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := run(util, "--init-token", "--free", "--label", "ops-token", "--so-pin", "so-secret-1", "--pin", "user-secret-1"); err != nil {
		t.Fatalf("softhsm2-util: %v\n%s", err, out)
	}
	pin := filepath.Join(dir, "pin")
	if err := os.WriteFile(pin, []byte("user-secret-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	listen := freeListen(t)
	host, port, _ := net.SplitHostPort(listen)
	var p0 int
	fmt.Sscan(port, &p0)
	data, client := filepath.Join(dir, "data"), filepath.Join(dir, "admin.json")
	initArgs := []string{"init", "--name", "fabrikam", "--data-dir", data, "--pin-file", pin, "--token-label", "ops-token",
		"--listen", listen, "--raft-addr", net.JoinHostPort(host, fmt.Sprint(p0+1)), "--recoverable-days", "7", "--client-file", client}
	out, err := run(hsmpooldBinary(t), initArgs...)
	if err != nil || !strings.Contains(out, "hsmpoold serve --config") {
		t.Fatalf("hsmpoold init: %v\n%s", err, out)
	}
	if fi, err := os.Stat(client); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("client file: %v %v", fi, err)
	}
	// A second init on the same directory is refused, and the credentials are not overwritten.
	before, _ := os.ReadFile(client)
	if out, err := run(hsmpooldBinary(t), initArgs...); err == nil || !strings.Contains(out, "already holds a pool") {
		t.Errorf("second init: %v\n%s", err, out)
	}
	if after, _ := os.ReadFile(client); sha256.Sum256(before) != sha256.Sum256(after) {
		t.Error("the second init changed the client file")
	}

	p := &testPool{t: t, dir: data, listen: listen, env: env, clientPath: client,
		args: []string{"serve", "--config", filepath.Join(data, "hsmpoold.json")}}
	p.start()
	t.Cleanup(p.stop)
	if !strings.HasPrefix(p.client.URL, "https://fabrikam.managedhsm.localhost:") {
		t.Fatalf("client URL %q", p.client.URL)
	}
	p.activate()
	// init's administrator holds only Managed HSM Administrator, which grants no key operation:
	// it makes an application principal and gives it Crypto User (separation of duties).
	if _, err := p.keys.CreateKey(ctx, "k0", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeECHSM)}, nil); !forbidden(err) {
		t.Fatalf("the administrator created a key: %v, want 403", err)
	}
	app := p.newActor("app")
	p.admin().assign(rbac.RoleScopeGlobal, cryptoUser, app.oid)
	p.keys = app.keys
	k, err := p.keys.CreateKey(ctx, "k1", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSAHSM)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if *k.Attributes.RecoverableDays != 7 || *k.Attributes.RecoveryLevel != "CustomizedRecoverable+Purgeable" {
		t.Errorf("recoverable days %d, level %s; want 7 from --recoverable-days", *k.Attributes.RecoverableDays, *k.Attributes.RecoveryLevel)
	}
	if _, err := p.keys.Sign(ctx, "k1", "", azkeys.SignParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmPS256), Value: make([]byte, 32)}, nil); err != nil {
		t.Fatal(err)
	}
	p.restart()
	p.keys = app.keys
	if _, err := p.keys.Sign(ctx, "k1", "", azkeys.SignParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmPS256), Value: make([]byte, 32)}, nil); err != nil {
		t.Fatalf("after a restart of serve: %v", err)
	}
}
