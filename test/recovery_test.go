package test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"github.com/hsmpool/hsmpool/pkg/client"
	"github.com/hsmpool/hsmpool/securitydomain"
)

// startRecoveryPool starts "hsmpoold dev --recovery" in a new data directory.
func startRecoveryPool(t *testing.T) *testPool {
	t.Helper()
	requireSoftHSM(t)
	p := &testPool{t: t, dir: filepath.Join(t.TempDir(), "pool"), listen: freeListen(t)}
	p.args = []string{"dev", "--data-dir", p.dir, "--listen", p.listen, "--recovery"}
	p.start()
	t.Cleanup(func() { p.stop() })
	return p
}

func (p *testPool) sdClient() *client.SecurityDomainClient {
	p.t.Helper()
	sd, err := client.NewSecurityDomainClient(p.client.URL, p.cred, &client.SecurityDomainClientOptions{ClientOptions: azcore.ClientOptions{Transport: p.http}})
	if err != nil {
		p.t.Fatal(err)
	}
	return sd
}

// writeOfficers writes the pool's officers' keys (PKCS#8) and certificates beside them, officerN.key and
// officerN.cer, as the Azure CLI finds them.
func (p *testPool) writeOfficers(dir string) []officer {
	p.t.Helper()
	var out []officer
	for i, der := range p.officers {
		kder, err := x509.MarshalPKCS8PrivateKey(p.officerKeys[i])
		if err != nil {
			p.t.Fatal(err)
		}
		cert, _ := x509.ParseCertificate(der)
		o := officer{name: fmt.Sprintf("officer%d", i), keyPath: filepath.Join(dir, fmt.Sprintf("officer%d.key", i)),
			certPath: filepath.Join(dir, fmt.Sprintf("officer%d.cer", i)), cert: cert}
		if err := os.WriteFile(o.keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
			p.t.Fatal(err)
		}
		if err := os.WriteFile(o.certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
			p.t.Fatal(err)
		}
		out = append(out, o)
	}
	return out
}

// wantHTTPError checks that err is the pool's error answer with status and a message containing msg.
func wantHTTPError(t *testing.T, what string, err error, status int, msg string) {
	t.Helper()
	var e *client.Error
	if !errors.As(err, &e) || e.StatusCode != status || !strings.Contains(e.Message, msg) {
		t.Errorf("%s: %v, want %d with %q", what, err, status, msg)
	}
}

// checkRecovered proves that pool b holds a's domain KEK: a key backup made on a restores into b and signs there.
func checkRecovered(t *testing.T, a, b *testPool, name string, backup []byte, pub *ecdsa.PublicKey) {
	t.Helper()
	ctx := context.Background()
	if _, err := b.keys.RestoreKey(ctx, azkeys.RestoreKeyParameters{KeyBackup: backup}, nil); err != nil {
		t.Fatalf("restore %s's backup into the recovered pool: %v", name, err)
	}
	digest := sha256.Sum256([]byte("after recovery"))
	sig, err := b.keys.Sign(ctx, name, "", azkeys.SignParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmES256), Value: digest[:]}, nil)
	if err != nil {
		t.Fatalf("sign in the recovered pool: %v", err)
	}
	r, s := new(big.Int).SetBytes(sig.Result[:32]), new(big.Int).SetBytes(sig.Result[32:])
	if !ecdsa.Verify(pub, digest[:], r, s) {
		t.Error("the recovered pool's signature does not verify with the key made in the first pool")
	}
}

func TestSecurityDomainRecovery(t *testing.T) {
	az := azCLI{path: requireTool(t, "az", "azure-cli"), configDir: t.TempDir()}
	hsmpool := buildHsmpool(t)
	ctx := context.Background()
	dir := t.TempDir()

	// Pool A: activated by a download; a key, a signature and its backup.
	a := startPool(t)
	sdFile := filepath.Join(dir, "sd.json")
	if err := os.WriteFile(sdFile, a.activate(), 0o600); err != nil {
		t.Fatal(err)
	}
	officers := a.writeOfficers(dir)
	created, err := a.keys.CreateKey(ctx, "k1", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeECHSM), Curve: to.Ptr(azkeys.CurveNameP256)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	point := make([]byte, 65)
	point[0] = 4
	copy(point[33-len(created.Key.X):33], created.Key.X)
	copy(point[65-len(created.Key.Y):], created.Key.Y)
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point)
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("before"))
	if _, err := a.keys.Sign(ctx, "k1", "", azkeys.SignParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmES256), Value: digest[:]}, nil); err != nil {
		t.Fatal(err)
	}
	backup, err := a.keys.BackupKey(ctx, "k1", nil)
	if err != nil {
		t.Fatal(err)
	}

	// Pool B in recovery mode: identity and SD calls work, key calls do not, a download is refused.
	b := startRecoveryPool(t)
	sdB := b.sdClient()
	if _, err := b.keys.CreateKey(ctx, "x", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeECHSM)}, nil); err == nil {
		t.Error("a key was created on a pool in recovery mode")
	}
	_, err = sdB.Download(ctx, a.officers, 2)
	wantHTTPError(t, "download on a recovery pool", err, http.StatusConflict, "Upload a restore blob instead")
	if st, err := sdB.UploadStatus(ctx); err != nil || st.Status != client.StatusSuccess {
		t.Errorf("upload status before any upload: %+v, %v", st, err)
	}
	exDER, err := sdB.TransferKey(ctx)
	if err != nil {
		t.Fatalf("transfer key: %v", err)
	}
	exCert, err := x509.ParseCertificate(exDER)
	if err != nil {
		t.Fatal(err)
	}
	if exCert.Subject.CommonName != "contoso exchange key" || exCert.NotAfter.Sub(exCert.NotBefore).Hours() < 364*24 {
		t.Errorf("exchange certificate CN %q", exCert.Subject.CommonName)
	}
	exPEM := filepath.Join(dir, "ex.pem")
	if err := os.WriteFile(exPEM, []byte(initRecoveryPEM(exDER)), 0o644); err != nil {
		t.Fatal(err)
	}

	// Wrong blobs: for pool C's exchange key, tampered, garbage. Each is a 400; B stays in recovery.
	c := startRecoveryPool(t)
	cDER, err := c.sdClient().TransferKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cCert, _ := x509.ParseCertificate(cDER)
	quorum := []securitydomain.OfficerKey{officers[0].privateKey(t), officers[2].privateKey(t)}
	forC, err := securitydomain.RestoreBlob(mustRead(t, sdFile), cCert, quorum)
	if err != nil {
		t.Fatal(err)
	}
	good, stderr, err := az.restoreBlob(t, sdFile, exPEM, filepath.Join(dir, "blob.json"), []officer{officers[0], officers[2]})
	if err != nil {
		t.Fatalf("az restore-blob: %v\n%s", err, stderr)
	}
	for _, tc := range []struct {
		name string
		blob []byte
		msg  string
	}{
		{"blob for another exchange key", forC, "another exchange key"},
		{"tampered datum", tamperBlob(t, good), "does not decrypt and authenticate"},
		{"garbage", []byte("garbage"), "not a well-formed restore blob"},
	} {
		_, err := sdB.Upload(ctx, tc.blob)
		wantHTTPError(t, tc.name, err, http.StatusBadRequest, tc.msg)
		st, err := sdB.UploadStatus(ctx)
		if err != nil || st.Status != client.StatusFailed || !strings.Contains(st.Details, tc.msg) {
			t.Errorf("%s: upload status %+v, %v", tc.name, st, err)
		}
		if _, err := sdB.TransferKey(ctx); err != nil {
			t.Errorf("%s: the pool left recovery mode: %v", tc.name, err)
		}
	}

	// The blob az made with 2 of the 3 officers' keys activates B with A's domain.
	st, err := sdB.Upload(ctx, good)
	if err != nil || st.Status != client.StatusSuccess {
		t.Fatalf("upload: %+v, %v\n%s", st, err, b.stderr)
	}
	if st, err := sdB.UploadStatus(ctx); err != nil || st.Status != client.StatusSuccess {
		t.Errorf("upload status after the upload: %+v, %v", st, err)
	}
	_, err = sdB.TransferKey(ctx)
	wantHTTPError(t, "transfer key after recovery", err, http.StatusConflict, "already activated")
	_, err = sdB.Upload(ctx, good)
	wantHTTPError(t, "second upload", err, http.StatusConflict, "already activated")
	checkRecovered(t, a, b, "k1", backup.Value, pub)

	// The recovered pool survives a restart: its KEK is found and checked at start-up.
	b.restart()
	if _, err := b.keys.GetKey(ctx, "k1", "", nil); err != nil {
		t.Errorf("after restart: %v", err)
	}

	// Pool D, recovered with "hsmpool sd upload --sd-file --key --key", which makes the blob itself.
	d := startRecoveryPool(t)
	<-hsmpool.done
	if hsmpool.err != nil {
		t.Fatal(hsmpool.err)
	}
	cmd := exec.CommandContext(t.Context(), hsmpool.path, "sd", "upload", "--client-file", filepath.Join(d.dir, "client.json"),
		"--sd-file", sdFile, "--key", officers[1].keyPath, "--key", officers[2].keyPath)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("hsmpool sd upload: %v\n%s%s", err, out.String(), errOut.String())
	}
	if !strings.Contains(out.String(), "activated") {
		t.Errorf("hsmpool sd upload said %q", out.String())
	}
	checkRecovered(t, a, d, "k1", backup.Value, pub)

	// "hsmpool sd exchange-key" writes the certificate as az init-recovery does.
	e := startRecoveryPool(t)
	exOut := filepath.Join(dir, "e.cer")
	cmd = exec.CommandContext(t.Context(), hsmpool.path, "sd", "exchange-key", "--client-file", filepath.Join(e.dir, "client.json"), "-o", exOut)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("hsmpool sd exchange-key: %v\n%s", err, msg)
	}
	eDER, err := e.sdClient().TransferKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(mustRead(t, exOut)); got != initRecoveryPEM(eDER) {
		t.Errorf("hsmpool sd exchange-key wrote\n%s\nwant\n%s", got, initRecoveryPEM(eDER))
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// tamperBlob flips one character of the first datum's ciphertext.
func tamperBlob(t *testing.T, blob []byte) []byte {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal(blob, &v); err != nil {
		t.Fatal(err)
	}
	d := v["EncData"].(map[string]any)["data"].([]any)[0].(map[string]any)
	parts := strings.Split(d["compact_jwe"].(string), ".")
	ct := []byte(parts[3])
	if ct[5] == 'A' {
		ct[5] = 'B'
	} else {
		ct[5] = 'A'
	}
	parts[3] = string(ct)
	d["compact_jwe"] = strings.Join(parts, ".")
	out, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
