package test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azadmin/backup"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azadmin/rbac"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/sas"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/service"
	"github.com/google/uuid"
)

// The full backup tests run the real daemon and the unmodified azadmin/backup client against two
// destinations: a local directory (file://) and the Azure Storage emulator, Azurite (pinned in
// test/azurite/package-lock.json, installed with npm ci and started here on a free loopback port).

// Azurite's well-known development account.
const (
	azuriteAccount = "devstoreaccount1"
	azuriteKey     = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

// backupLocation is where a test's backups go: a container or directory URI and its SAS token.
type backupLocation struct {
	uri, token string
	// files lists the bytes of every object under the location, for the plaintext scan.
	files func(t *testing.T) map[string][]byte
}

func (l backupLocation) sas() *backup.SASTokenParameters {
	p := &backup.SASTokenParameters{StorageResourceURI: to.Ptr(l.uri)}
	if l.token != "" {
		p.Token = to.Ptr(l.token)
	}
	return p
}

func dirLocation(t *testing.T) backupLocation {
	dir := t.TempDir()
	return backupLocation{uri: "file://" + dir, files: func(t *testing.T) map[string][]byte {
		out := map[string][]byte{}
		err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
			if err != nil || !e.Type().IsRegular() {
				return err
			}
			b, err := os.ReadFile(p)
			out[p] = b
			if fi, _ := e.Info(); fi != nil && fi.Mode().Perm() != 0o600 {
				t.Errorf("%s has mode %v, want 0600", p, fi.Mode().Perm())
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}}
}

var azuriteInstall sync.Once

// startAzurite installs (npm ci in test/azurite) and starts azurite-blob on a free loopback
// port, creates a container and returns its location with a SAS token made with the dev key.
func startAzurite(t *testing.T) backupLocation {
	t.Helper()
	requireTool(t, "node", "nodejs")
	npm := requireTool(t, "npm", "npm")
	const dir = "azurite"
	bin := filepath.Join(dir, "node_modules", ".bin", "azurite-blob")
	azuriteInstall.Do(func() {
		if _, err := os.Stat(bin); err == nil {
			return
		}
		c, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(c, npm, "ci", "--no-audit", "--no-fund")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("npm ci in test/azurite: %v\n%s", err, out)
		}
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	abs, err := filepath.Abs(bin)
	if err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	var logs bytes.Buffer
	cmd := exec.Command(abs, "--blobHost", "127.0.0.1", "--blobPort", fmt.Sprint(port), "--location", data, "--skipApiVersionCheck", "--loose")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	account := fmt.Sprintf("http://127.0.0.1:%d/%s", port, azuriteAccount)
	cred, err := service.NewSharedKeyCredential(azuriteAccount, azuriteKey)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := service.NewClientWithSharedKeyCredential(account+"/", cred, nil)
	if err != nil {
		t.Fatal(err)
	}
	name := "backups"
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err = svc.CreateContainer(ctx, name, nil)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("azurite did not take a container within 30 s: %v\n%s", err, logs.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	perms := sas.ContainerPermissions{Read: true, Add: true, Create: true, Write: true, Delete: true, List: true}
	qp, err := sas.BlobSignatureValues{Protocol: sas.ProtocolHTTPSandHTTP, ExpiryTime: time.Now().Add(time.Hour).UTC(),
		Permissions: perms.String(), ContainerName: name}.SignWithSharedKey(cred)
	if err != nil {
		t.Fatal(err)
	}
	cc := svc.NewContainerClient(name)
	return backupLocation{uri: account + "/" + name, token: qp.Encode(), files: func(t *testing.T) map[string][]byte {
		out := map[string][]byte{}
		pager := cc.NewListBlobsFlatPager(&container.ListBlobsFlatOptions{})
		for pager.More() {
			page, err := pager.NextPage(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, b := range page.Segment.BlobItems {
				r, err := cc.NewBlobClient(*b.Name).DownloadStream(ctx, nil)
				if err != nil {
					t.Fatal(err)
				}
				var buf bytes.Buffer
				_, err = buf.ReadFrom(r.Body)
				r.Body.Close()
				if err != nil {
					t.Fatal(err)
				}
				out[*b.Name] = buf.Bytes()
			}
		}
		return out
	}}
}

func (p *testPool) backupClient() *backup.Client {
	p.t.Helper()
	c, err := backup.NewClient(p.client.URL, p.cred, &backup.ClientOptions{ClientOptions: azcore.ClientOptions{Transport: p.http}})
	if err != nil {
		p.t.Fatal(err)
	}
	return c
}

var fastPoll = &runtime.PollUntilDoneOptions{Frequency: 100 * time.Millisecond}

// fullBackup backs p up to loc through azadmin/backup and returns the folder's name.
func (p *testPool) fullBackup(loc backupLocation) (folderURI, folder string) {
	p.t.Helper()
	for range 20 {
		poller, err := p.backupClient().BeginFullBackup(ctx, *loc.sas(), nil)
		var re *azcore.ResponseError
		if errors.As(err, &re) && re.StatusCode == http.StatusConflict {
			time.Sleep(200 * time.Millisecond) // another job (of the conflict test) still runs
			continue
		}
		if err != nil {
			p.t.Fatalf("begin full backup: %v", err)
		}
		res, err := poller.PollUntilDone(ctx, fastPoll)
		if err != nil {
			p.t.Fatalf("full backup: %v", err)
		}
		if res.Status == nil || *res.Status != "Succeeded" || res.AzureStorageBlobContainerURI == nil || res.EndTime == nil {
			p.t.Fatalf("full backup result %+v", res)
		}
		u := *res.AzureStorageBlobContainerURI
		if !strings.HasPrefix(u, loc.uri+"/mhsm-"+p.client.Name+"-") {
			p.t.Fatalf("folder URI %s is not under %s", u, loc.uri)
		}
		return u, path.Base(u)
	}
	p.t.Fatal("full backup: 409 Conflict for 4 s")
	return "", ""
}

// backupFixture is what a test pool holds before its backup.
type backupFixture struct {
	rsaKey   *rsa.PrivateKey
	ecKey    *ecdsa.PrivateKey
	aesKey   []byte
	versions map[string]string // key name → current version
	roleID   string
	asg      string // role assignment name
	actorOID string
}

// populate makes keys of every type (three imported from known bytes), a rotation policy, a
// deleted key, a custom role and an assignment of it to a new principal.
func populate(t *testing.T, p *testPool) backupFixture {
	t.Helper()
	f := backupFixture{versions: map[string]string{}}
	f.rsaKey, _ = rsa.GenerateKey(rand.Reader, 2048)
	f.ecKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	f.aesKey = make([]byte, 32)
	rand.Read(f.aesKey)
	ecPub, _ := f.ecKey.PublicKey.Bytes()
	ecD, _ := f.ecKey.Bytes()
	k := f.rsaKey
	imports := map[string]*azkeys.JSONWebKey{
		"rsa-known": {Kty: to.Ptr(azkeys.KeyTypeRSA), N: k.N.Bytes(), E: big.NewInt(int64(k.E)).Bytes(), D: k.D.Bytes(),
			P: k.Primes[0].Bytes(), Q: k.Primes[1].Bytes(), DP: k.Precomputed.Dp.Bytes(), DQ: k.Precomputed.Dq.Bytes(), QI: k.Precomputed.Qinv.Bytes()},
		"ec-known":  {Kty: to.Ptr(azkeys.KeyTypeEC), Crv: to.Ptr(azkeys.CurveNameP256), D: ecD, X: ecPub[1:33], Y: ecPub[33:]},
		"aes-known": {Kty: to.Ptr(azkeys.KeyTypeOctHSM), K: f.aesKey},
	}
	for name, jwk := range imports {
		r, err := p.keys.ImportKey(ctx, name, azkeys.ImportKeyParameters{HSM: to.Ptr(true), Key: jwk}, nil)
		if err != nil {
			t.Fatalf("import %s: %v", name, err)
		}
		f.versions[name] = r.Key.KID.Version()
	}
	for name, kty := range map[string]azkeys.KeyType{"rsa-made": azkeys.KeyTypeRSAHSM, "ec-made": azkeys.KeyTypeECHSM, "oct-made": azkeys.KeyTypeOctHSM} {
		r, err := p.keys.CreateKey(ctx, name, azkeys.CreateKeyParameters{Kty: to.Ptr(kty)}, nil)
		if err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
		f.versions[name] = r.Key.KID.Version()
	}
	// A second version, so that the restored key must bring both.
	r, err := p.keys.RotateKey(ctx, "ec-made", nil)
	if err == nil {
		t.Fatal("rotation without a policy succeeded")
	}
	if _, err := p.keys.UpdateKeyRotationPolicy(ctx, "ec-made", rotationPolicy(), nil); err != nil {
		t.Fatal(err)
	}
	if r, err = p.keys.RotateKey(ctx, "ec-made", nil); err != nil {
		t.Fatal(err)
	}
	f.versions["ec-made"] = r.Key.KID.Version()
	if _, err := p.keys.CreateKey(ctx, "gone", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeECHSM)}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := p.keys.DeleteKey(ctx, "gone", nil); err != nil {
		t.Fatal(err)
	}

	admin := p.admin()
	f.roleID = uuid.NewString()
	_, err = admin.rbac.CreateOrUpdateRoleDefinition(ctx, rbac.RoleScopeGlobal, f.roleID, rbac.RoleDefinitionCreateParameters{
		Properties: &rbac.RoleDefinitionProperties{RoleName: to.Ptr("backup signer"), RoleType: to.Ptr(rbac.RoleTypeCustomRole),
			AssignableScopes: []*rbac.RoleScope{to.Ptr(rbac.RoleScopeGlobal)},
			Permissions:      []*rbac.Permission{{DataActions: []*rbac.DataAction{to.Ptr(rbac.DataActionSignHsmKey), to.Ptr(rbac.DataActionReadHsmKey)}}}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := p.newActor("backup-signer")
	f.actorOID = a.oid
	f.asg = admin.assign(rbac.RoleScopeGlobal, f.roleID, a.oid)
	return f
}

// check fails unless p holds f's keys at the same versions and they work with the known key
// material, and the assignment holds.
func (f backupFixture) check(t *testing.T, p *testPool, keys ...string) {
	t.Helper()
	d := digest(sha256.New, "after restore")
	for _, name := range keys {
		k, err := p.keys.GetKey(ctx, name, "", nil)
		if err != nil {
			t.Errorf("get %s after restore: %v", name, err)
			continue
		}
		if got := k.Key.KID.Version(); got != f.versions[name] {
			t.Errorf("%s: current version %s, want %s", name, got, f.versions[name])
		}
		switch name {
		case "rsa-known":
			s, err := p.keys.Sign(ctx, name, "", azkeys.SignParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmRS256), Value: d}, nil)
			if err != nil || rsa.VerifyPKCS1v15(&f.rsaKey.PublicKey, crypto.SHA256, d, s.Result) != nil {
				t.Errorf("restored rsa-known does not sign as the imported key: %v", err)
			}
			ct, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, &f.rsaKey.PublicKey, []byte("secret"), nil)
			if err != nil {
				t.Fatal(err)
			}
			pt, err := p.keys.Decrypt(ctx, name, "", azkeys.KeyOperationParameters{Algorithm: to.Ptr(azkeys.EncryptionAlgorithmRSAOAEP256), Value: ct}, nil)
			if err != nil || string(pt.Result) != "secret" {
				t.Errorf("restored rsa-known does not decrypt: %v", err)
			}
		case "ec-known":
			s, err := p.keys.Sign(ctx, name, "", azkeys.SignParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmES256), Value: d}, nil)
			if err != nil || !ecdsa.Verify(&f.ecKey.PublicKey, d, new(big.Int).SetBytes(s.Result[:32]), new(big.Int).SetBytes(s.Result[32:])) {
				t.Errorf("restored ec-known does not sign as the imported key: %v", err)
			}
		case "aes-known", "oct-made":
			w, err := p.keys.WrapKey(ctx, name, "", azkeys.KeyOperationParameters{Algorithm: to.Ptr(azkeys.EncryptionAlgorithmA256KW), Value: d}, nil)
			if err != nil {
				t.Errorf("wrap with %s: %v", name, err)
				continue
			}
			u, err := p.keys.UnwrapKey(ctx, name, "", azkeys.KeyOperationParameters{Algorithm: to.Ptr(azkeys.EncryptionAlgorithmA256KW), Value: w.Result}, nil)
			if err != nil || !bytes.Equal(u.Result, d) {
				t.Errorf("unwrap with %s: %v", name, err)
			}
		default:
			alg := azkeys.SignatureAlgorithmES256
			if strings.HasPrefix(name, "rsa") {
				alg = azkeys.SignatureAlgorithmPS256
			}
			s, err := p.keys.Sign(ctx, name, "", azkeys.SignParameters{Algorithm: to.Ptr(alg), Value: d}, nil)
			if err != nil {
				t.Errorf("sign with %s: %v", name, err)
				continue
			}
			v, err := p.keys.Verify(ctx, name, "", azkeys.VerifyParameters{Algorithm: to.Ptr(alg), Digest: d, Signature: s.Result}, nil)
			if err != nil || v.Value == nil || !*v.Value {
				t.Errorf("verify with %s: %v", name, err)
			}
		}
	}
}

// scanPlaintext fails if any object of loc holds a 16-byte window of the known key material.
func (f backupFixture) scanPlaintext(t *testing.T, loc backupLocation) {
	t.Helper()
	ecD, _ := f.ecKey.Bytes()
	secrets := map[string][]byte{"RSA d": f.rsaKey.D.Bytes(), "RSA p": f.rsaKey.Primes[0].Bytes(), "EC d": ecD, "AES k": f.aesKey}
	files := loc.files(t)
	if len(files) < 2 {
		t.Fatalf("the backup location holds %d objects", len(files))
	}
	for name, b := range files {
		for what, s := range secrets {
			for i := 0; i+16 <= len(s); i += 8 {
				if bytes.Contains(b, s[i:i+16]) || bytes.Contains(b, []byte(hex.EncodeToString(s[i:i+16]))) {
					t.Errorf("%s holds bytes of the %s", name, what)
					break
				}
			}
		}
	}
}

func purge(t *testing.T, p *testPool, name string) {
	t.Helper()
	if _, err := p.keys.DeleteKey(ctx, name, nil); err != nil {
		t.Fatalf("delete %s: %v", name, err)
	}
	if _, err := p.keys.PurgeDeletedKey(ctx, name, nil); err != nil {
		t.Fatalf("purge %s: %v", name, err)
	}
}

func TestFullBackupRestoreFile(t *testing.T) {
	testFullBackupRestore(t, dirLocation)
}

func TestFullBackupRestoreAzurite(t *testing.T) {
	testFullBackupRestore(t, startAzurite)
}

func testFullBackupRestore(t *testing.T, newLocation func(*testing.T) backupLocation) {
	p := startPool(t)
	p.activate()
	f := populate(t, p)
	loc := newLocation(t)
	bc := p.backupClient()
	all := []string{"rsa-known", "ec-known", "aes-known", "rsa-made", "ec-made", "oct-made"}

	// The prebackup check writes nothing that stays.
	pre, err := bc.BeginPreFullBackup(ctx, backup.PreBackupOperationParameters{StorageResourceURI: to.Ptr(loc.uri), Token: loc.sas().Token}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pre.PollUntilDone(ctx, fastPoll); err != nil {
		t.Fatalf("prebackup: %v", err)
	}
	if n := len(loc.files(t)); n != 0 {
		t.Fatalf("the prebackup check left %d objects", n)
	}

	folderURI, folder := p.fullBackup(loc)
	t.Logf("backup folder %s", folderURI)
	f.scanPlaintext(t, loc)

	// The prerestore check opens the folder.
	prr, err := bc.BeginPreFullRestore(ctx, backup.PreRestoreOperationParameters{FolderToRestore: to.Ptr(folder), SASTokenParameters: loc.sas()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := prr.PollUntilDone(ctx, fastPoll); err != nil {
		t.Fatalf("prerestore: %v", err)
	}

	// Lose keys and the assignment.
	for _, name := range []string{"rsa-known", "aes-known", "ec-made"} {
		purge(t, p, name)
	}
	if _, err := p.keys.PurgeDeletedKey(ctx, "gone", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := p.admin().rbac.DeleteRoleAssignment(ctx, rbac.RoleScopeGlobal, f.asg, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := p.keys.CreateKey(ctx, "after-backup", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeECHSM)}, nil); err != nil {
		t.Fatal(err)
	}

	rp, err := bc.BeginFullRestore(ctx, backup.RestoreOperationParameters{FolderToRestore: to.Ptr(folder), SASTokenParameters: loc.sas()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rp.PollUntilDone(ctx, fastPoll); err != nil {
		t.Fatalf("full restore: %v", err)
	}
	f.check(t, p, all...)
	if _, err := p.keys.GetKey(ctx, "after-backup", "", nil); err == nil {
		t.Error("a key made after the backup survived the full restore")
	}
	if _, err := p.keys.GetDeletedKey(ctx, "gone", nil); err != nil {
		t.Errorf("the deleted key was not restored as deleted: %v", err)
	}
	if pol, err := p.keys.GetKeyRotationPolicy(ctx, "ec-made", nil); err != nil || len(pol.LifetimeActions) == 0 {
		t.Errorf("the rotation policy was not restored: %v", err)
	}
	got, err := p.admin().rbac.GetRoleAssignment(ctx, rbac.RoleScopeGlobal, f.asg, nil)
	if err != nil || *got.Properties.PrincipalID != f.actorOID {
		t.Errorf("the role assignment was not restored: %v", err)
	}
	// The pool's own administrator still administers.
	if _, err := p.admin().rbac.GetRoleDefinition(ctx, rbac.RoleScopeGlobal, f.roleID, nil); err != nil {
		t.Errorf("the custom role was not restored: %v", err)
	}

	// Selective restore of one key with all its versions.
	purge(t, p, "ec-made")
	sp, err := bc.BeginSelectiveKeyRestore(ctx, "ec-made", backup.SelectiveKeyRestoreOperationParameters{Folder: to.Ptr(folder), SASTokenParameters: loc.sas()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sp.PollUntilDone(ctx, fastPoll); err != nil {
		t.Fatalf("selective restore: %v", err)
	}
	f.check(t, p, "ec-made")
	n := 0
	for pager := p.keys.NewListKeyPropertiesVersionsPager("ec-made", nil); pager.More(); {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		n += len(page.Value)
	}
	if n != 2 {
		t.Errorf("ec-made has %d versions after the selective restore, want 2", n)
	}
	// A name in use: 409 at once.
	_, err = bc.BeginSelectiveKeyRestore(ctx, "ec-made", backup.SelectiveKeyRestoreOperationParameters{Folder: to.Ptr(folder), SASTokenParameters: loc.sas()}, nil)
	respErr(t, err, http.StatusConflict, "Conflict")
}

// TestFullBackupConflictAndForeignDomain: a second job while one runs is 409; a backup of another
// pool (another security domain) fails to restore, with the state unchanged.
func TestFullBackupConflictAndForeignDomain(t *testing.T) {
	p := startPool(t)
	p.activate()
	for i := range 20 {
		if _, err := p.keys.CreateKey(ctx, fmt.Sprintf("k%d", i), azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeECHSM)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	loc := dirLocation(t)

	// Start backups concurrently until one start meets a running job.
	body := `{"storageResourceUri":"` + loc.uri + `"}`
	conflict := false
	for attempt := 0; attempt < 20 && !conflict; attempt++ {
		var wg sync.WaitGroup
		codes := make([]int, 4)
		tok := p.token()
		for i := range codes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res := p.do("POST", "/backup?api-version=2025-07-01", tok, strings.NewReader(body))
				codes[i] = res.status
				if res.status == http.StatusConflict && !strings.Contains(string(res.body), "another backup or restore is running") {
					t.Errorf("409 body %s", res.body)
				}
			}()
		}
		wg.Wait()
		accepted := 0
		for _, c := range codes {
			switch c {
			case http.StatusConflict:
				conflict = true
			case http.StatusAccepted:
				accepted++
			default:
				t.Fatalf("start codes %v", codes)
			}
		}
		if accepted == 0 {
			t.Fatalf("no start was accepted: %v", codes)
		}
		time.Sleep(1100 * time.Millisecond) // let the jobs end; the next backups get another folder
	}
	if !conflict {
		t.Fatal("no concurrent start met 409 Conflict in 20 attempts")
	}

	// Another pool, another security domain.
	other := startPool(t)
	other.activate()
	if _, err := other.keys.CreateKey(ctx, "foreign", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeECHSM)}, nil); err != nil {
		t.Fatal(err)
	}
	otherLoc := dirLocation(t)
	_, folder := other.fullBackup(otherLoc)

	before := listNames(t, p)
	rp, err := p.backupClient().BeginFullRestore(ctx, backup.RestoreOperationParameters{FolderToRestore: to.Ptr(folder), SASTokenParameters: otherLoc.sas()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = rp.PollUntilDone(ctx, fastPoll)
	var re *azcore.ResponseError
	if !errors.As(err, &re) || !strings.Contains(err.Error(), "another security domain") {
		t.Fatalf("restore of another domain's backup: %v, want a failed job naming the security domain", err)
	}
	if after := listNames(t, p); strings.Join(after, ",") != strings.Join(before, ",") {
		t.Errorf("the failed restore changed the keys: %v, was %v", after, before)
	}
	// The raw poll says Failed with the code and message.
	res := p.do("PUT", "/restore?api-version=2025-07-01", p.token(), strings.NewReader(
		`{"sasTokenParameters":{"storageResourceUri":"`+otherLoc.uri+`"},"folderToRestore":"`+folder+`"}`))
	if res.status != http.StatusAccepted {
		t.Fatalf("restore start %d %s", res.status, res.body)
	}
	if res.header.Get("Azure-AsyncOperation") == "" || res.header.Get("Retry-After") != "1" {
		t.Errorf("restore start headers %v", res.header)
	}
}

func listNames(t *testing.T, p *testPool) []string {
	t.Helper()
	var names []string
	for pager := p.keys.NewListKeyPropertiesPager(nil); pager.More(); {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range page.Value {
			names = append(names, k.KID.Name())
		}
	}
	return names
}
