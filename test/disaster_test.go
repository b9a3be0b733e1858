package test

import (
	"crypto/sha256"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azadmin/backup"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"github.com/hsmpool/hsmpool/pkg/client"
)

// app is a principal made on pool A whose client secret the test keeps, to show after the disaster
// that A's principals and role assignments came back with the backup.
type app struct {
	objectID, clientID, secret string
}

func newApp(t *testing.T, p *testPool, name string) app {
	t.Helper()
	res := p.do("POST", "/principals?api-version=2025-07-01", p.token(), strings.NewReader(`{"displayName":"`+name+`"}`))
	var out struct{ ObjectID, ClientID, Secret string }
	if res.status != http.StatusCreated || json.Unmarshal(res.body, &out) != nil || out.Secret == "" {
		t.Fatalf("create principal: %d %s", res.status, res.body)
	}
	return app{out.ObjectID, out.ClientID, out.Secret}
}

// keys returns a keys client of the app on pool p (whose tenant it asks its tokens from).
func (a app) keys(t *testing.T, p *testPool) *azkeys.Client {
	t.Helper()
	cred, err := azidentity.NewClientSecretCredential(p.client.TenantID, a.clientID, a.secret, &azidentity.ClientSecretCredentialOptions{
		ClientOptions:            azcore.ClientOptions{Cloud: cloud.Configuration{ActiveDirectoryAuthorityHost: p.client.AuthorityHost + "/"}, Transport: p.http},
		DisableInstanceDiscovery: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	return p.actorFor(a.objectID, a.clientID, cred).keys
}

// recover makes a pool in recovery mode, uploads blob (made by build for the new pool's exchange
// key) and waits until the pool is active.
func recoverPool(t *testing.T, dir string, build func(exchangePEM string) []byte) *testPool {
	t.Helper()
	p := startRecoveryPool(t)
	sd := p.sdClient()
	der, err := sd.TransferKey(ctx)
	if err != nil {
		t.Fatalf("transfer key: %v", err)
	}
	exPEM := filepath.Join(dir, "exchange-"+filepath.Base(filepath.Dir(p.dir))+".pem")
	if err := os.WriteFile(exPEM, []byte(initRecoveryPEM(der)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := sd.Upload(ctx, build(exPEM)); err != nil {
		t.Fatalf("upload the restore blob: %v", err)
	}
	if st, err := sd.UploadStatus(ctx); err != nil || st.Status != client.StatusSuccess {
		t.Fatalf("upload status: %+v %v", st, err)
	}
	return p
}

// fullRestore restores folder from loc into p through azadmin/backup.
func fullRestore(t *testing.T, p *testPool, loc backupLocation, folder string) {
	t.Helper()
	rp, err := p.backupClient().BeginFullRestore(ctx, backup.RestoreOperationParameters{FolderToRestore: to.Ptr(folder), SASTokenParameters: loc.sas()}, nil)
	if err != nil {
		t.Fatalf("begin full restore: %v", err)
	}
	if _, err := rp.PollUntilDone(ctx, fastPoll); err != nil {
		t.Fatalf("full restore: %v", err)
	}
}

// TestDisasterRecovery is the promise of the security domain, end to end: pool A is activated with
// three officers (quorum 2), holds keys of every type, roles and principals, signs and encrypts,
// and is backed up to Azurite and to a directory; then A is destroyed, data directory and token.
// Pool B, on a fresh token in recovery mode, takes A's security domain from a restore blob the
// real Azure CLI makes with 2 of the 3 officers' keys, and A's backup from Azurite: every key
// works at the same name and version, A's signatures verify and A's ciphertexts decrypt, and A's
// role assignments hold. Pool C does the same with our own CLI's restore blob and the directory.
func TestDisasterRecovery(t *testing.T) {
	az := azCLI{path: requireTool(t, "az", "azure-cli"), configDir: t.TempDir()}
	hsmpool := buildHsmpool(t)
	dir := t.TempDir()
	all := []string{"rsa-known", "ec-known", "aes-known", "rsa-made", "ec-made", "oct-made"}

	// Pool A.
	a := startPool(t)
	sdFile := filepath.Join(dir, "sd.json")
	if err := os.WriteFile(sdFile, a.activate(), 0o600); err != nil {
		t.Fatal(err)
	}
	officers := a.writeOfficers(dir)
	f := populate(t, a)
	signer := newApp(t, a, "payments")
	a.admin().assign("/keys/ec-made", cryptoUser, signer.objectID)

	msg := sha256.Sum256([]byte("signed by pool A"))
	ecSig, err := a.keys.Sign(ctx, "ec-made", "", azkeys.SignParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmES256), Value: msg[:]}, nil)
	if err != nil {
		t.Fatal(err)
	}
	rsaSig, err := a.keys.Sign(ctx, "rsa-made", "", azkeys.SignParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmPS256), Value: msg[:]}, nil)
	if err != nil {
		t.Fatal(err)
	}
	gcm, err := a.keys.Encrypt(ctx, "oct-made", "", azkeys.KeyOperationParameters{Algorithm: to.Ptr(azkeys.EncryptionAlgorithmA256GCM), Value: []byte("encrypted by pool A")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	oaep, err := a.keys.Encrypt(ctx, "rsa-made", "", azkeys.KeyOperationParameters{Algorithm: to.Ptr(azkeys.EncryptionAlgorithmRSAOAEP256), Value: []byte("wrapped by pool A")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	azurite, files := startAzurite(t), dirLocation(t)
	_, azFolder := a.fullBackup(azurite)
	_, dirFolder := a.fullBackup(files)

	// The disaster: A's process, data directory and SoftHSM2 token are gone.
	a.stop()
	if err := os.RemoveAll(a.dir); err != nil {
		t.Fatal(err)
	}

	// checkPool is what "the pool came back" means.
	checkPool := func(t *testing.T, p *testPool) {
		f.check(t, p, all...)
		ec, err := p.keys.Verify(ctx, "ec-made", ecSig.KID.Version(), azkeys.VerifyParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmES256), Digest: msg[:], Signature: ecSig.Result}, nil)
		if err != nil || !*ec.Value {
			t.Errorf("A's ES256 signature does not verify: %v", err)
		}
		rs, err := p.keys.Verify(ctx, "rsa-made", rsaSig.KID.Version(), azkeys.VerifyParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmPS256), Digest: msg[:], Signature: rsaSig.Result}, nil)
		if err != nil || !*rs.Value {
			t.Errorf("A's PS256 signature does not verify: %v", err)
		}
		pt, err := p.keys.Decrypt(ctx, "oct-made", gcm.KID.Version(), azkeys.KeyOperationParameters{Algorithm: to.Ptr(azkeys.EncryptionAlgorithmA256GCM),
			Value: gcm.Result, IV: gcm.IV, AuthenticationTag: gcm.AuthenticationTag}, nil)
		if err != nil || string(pt.Result) != "encrypted by pool A" {
			t.Errorf("A's A256GCM ciphertext does not decrypt: %v", err)
		}
		pt, err = p.keys.Decrypt(ctx, "rsa-made", oaep.KID.Version(), azkeys.KeyOperationParameters{Algorithm: to.Ptr(azkeys.EncryptionAlgorithmRSAOAEP256), Value: oaep.Result}, nil)
		if err != nil || string(pt.Result) != "wrapped by pool A" {
			t.Errorf("A's RSA-OAEP-256 ciphertext does not decrypt: %v", err)
		}
		// A's kid, on this pool's host: same name and version.
		k, err := p.keys.GetKey(ctx, "ec-made", ecSig.KID.Version(), nil)
		if err != nil || k.Key.KID.Name() != "ec-made" || k.Key.KID.Version() != ecSig.KID.Version() {
			t.Errorf("A's kid %s: %v", *ecSig.KID, err)
		}
		// A's application principal and its key-scoped assignment hold.
		ak := signer.keys(t, p)
		if _, err := ak.Sign(ctx, "ec-made", "", azkeys.SignParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmES256), Value: msg[:]}, nil); err != nil {
			t.Errorf("A's principal signs with its key: %v", err)
		}
		if _, err := ak.Sign(ctx, "ec-known", "", azkeys.SignParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmES256), Value: msg[:]}, nil); !forbidden(err) {
			t.Errorf("A's principal signs with a key outside its assignment: %v, want 403", err)
		}
	}

	t.Run("AzureCLI+Azurite", func(t *testing.T) {
		b := recoverPool(t, dir, func(exPEM string) []byte {
			blob, stderr, err := az.restoreBlob(t, sdFile, exPEM, filepath.Join(dir, "blob-az.json"), []officer{officers[0], officers[2]})
			if err != nil {
				t.Fatalf("az keyvault security-domain restore-blob: %v\n%s", err, stderr)
			}
			return blob
		})
		fullRestore(t, b, azurite, azFolder)
		checkPool(t, b)
	})
	t.Run("hsmpool+directory", func(t *testing.T) {
		c := recoverPool(t, dir, func(exPEM string) []byte {
			return hsmpool.restoreBlob(t, sdFile, exPEM, filepath.Join(dir, "blob-hsmpool.json"), []officer{officers[1], officers[2]})
		})
		fullRestore(t, c, files, dirFolder)
		checkPool(t, c)
	})
}
