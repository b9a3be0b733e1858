package test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"
	"io/fs"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
)

var ctx = context.Background()

func respErr(t *testing.T, err error, status int, code string) {
	t.Helper()
	var re *azcore.ResponseError
	if !errors.As(err, &re) {
		t.Fatalf("err = %v, want an HTTP %d %s", err, status, code)
	}
	if re.StatusCode != status || (code != "" && re.ErrorCode != code) {
		t.Fatalf("err = %d %s, want %d %s (%v)", re.StatusCode, re.ErrorCode, status, code, err)
	}
}

func TestPoolBeforeActivation(t *testing.T) {
	p := startPool(t)

	// The challenge comes before routing and before the body is read.
	r := p.do("POST", "/keys/k1/create?api-version=2025-07-01", "", nil)
	if r.status != http.StatusUnauthorized || !strings.HasPrefix(r.header.Get("WWW-Authenticate"), `Bearer authorization="`+p.client.AuthorityHost+"/"+p.client.TenantID+`"`) {
		t.Fatalf("unauthenticated create: %d %q", r.status, r.header.Get("WWW-Authenticate"))
	}
	for _, tok := range []string{"not-a-jwt", p.token() + "x"} {
		if r := p.do("GET", "/keys?api-version=7.5", tok, nil); r.status != http.StatusUnauthorized {
			t.Errorf("forged token: %d %s", r.status, r.body)
		}
	}

	_, err := p.keys.CreateKey(ctx, "k1", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeECHSM)}, nil)
	respErr(t, err, http.StatusConflict, "Conflict")
	if !strings.Contains(err.Error(), "not activated") {
		t.Errorf("create before activation: %v, want it to say the pool is not activated", err)
	}
	r = p.do("GET", "/securitydomain/download/pending?api-version=7.5", p.token(), nil)
	if r.status != 200 || !bytes.Contains(r.body, []byte(`"status":"Success"`)) {
		t.Errorf("download/pending: %d %s", r.status, r.body)
	}

	file := p.activate()
	if !bytes.Contains(file, []byte(`"EncData"`)) {
		t.Fatalf("the security domain file does not look like one: %.100s", file)
	}
	if _, err := p.keys.CreateKey(ctx, "k1", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeECHSM)}, nil); err != nil {
		t.Fatalf("create after activation: %v", err)
	}
}

// sig describes one signature algorithm for the test.
type sigAlg struct {
	alg  azkeys.SignatureAlgorithm
	hash func() hash.Hash
	h    crypto.Hash
}

var rsaSigs = []sigAlg{
	{azkeys.SignatureAlgorithmRS256, sha256.New, crypto.SHA256}, {azkeys.SignatureAlgorithmRS384, sha512.New384, crypto.SHA384},
	{azkeys.SignatureAlgorithmRS512, sha512.New, crypto.SHA512}, {azkeys.SignatureAlgorithmPS256, sha256.New, crypto.SHA256},
	{azkeys.SignatureAlgorithmPS384, sha512.New384, crypto.SHA384}, {azkeys.SignatureAlgorithmPS512, sha512.New, crypto.SHA512},
}

func digest(h func() hash.Hash, msg string) []byte {
	d := h()
	d.Write([]byte(msg))
	return d.Sum(nil)
}

func rsaPub(t *testing.T, k *azkeys.JSONWebKey) *rsa.PublicKey {
	t.Helper()
	if len(k.N) == 0 || len(k.E) == 0 {
		t.Fatalf("RSA key without n/e: %+v", k)
	}
	return &rsa.PublicKey{N: new(big.Int).SetBytes(k.N), E: int(new(big.Int).SetBytes(k.E).Int64())}
}

func TestKeysEveryTypeAndAlgorithm(t *testing.T) {
	p := startPool(t)
	p.activate()
	c := p.keys

	for _, bits := range []int32{2048, 3072, 4096} {
		name := fmt.Sprintf("rsa%d", bits)
		k, err := c.CreateKey(ctx, name, azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSAHSM), KeySize: to.Ptr(bits)}, nil)
		if err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
		if *k.Key.Kty != azkeys.KeyTypeRSAHSM || k.Key.KID.Name() != name || len(k.Key.KID.Version()) != 32 {
			t.Fatalf("create %s: %+v", name, k.Key)
		}
		pub := rsaPub(t, k.Key)
		if pub.N.BitLen() != int(bits) {
			t.Fatalf("%s: modulus of %d bits", name, pub.N.BitLen())
		}
		for _, s := range rsaSigs {
			d := digest(s.hash, "hello "+name)
			res, err := c.Sign(ctx, name, "", azkeys.SignParameters{Algorithm: to.Ptr(s.alg), Value: d}, nil)
			if err != nil {
				t.Fatalf("%s %s: %v", name, s.alg, err)
			}
			if strings.HasPrefix(string(s.alg), "RS") {
				err = rsa.VerifyPKCS1v15(pub, s.h, d, res.Result)
			} else {
				err = rsa.VerifyPSS(pub, s.h, d, res.Result, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
			}
			if err != nil {
				t.Errorf("%s %s: Go does not verify the signature: %v", name, s.alg, err)
			}
			v, err := c.Verify(ctx, name, "", azkeys.VerifyParameters{Algorithm: to.Ptr(s.alg), Digest: d, Signature: res.Result}, nil)
			if err != nil || !*v.Value {
				t.Errorf("%s %s: pool verify = %v, %v", name, s.alg, v.Value, err)
			}
			res.Result[0] ^= 1
			v, err = c.Verify(ctx, name, "", azkeys.VerifyParameters{Algorithm: to.Ptr(s.alg), Digest: d, Signature: res.Result}, nil)
			if err != nil || *v.Value {
				t.Errorf("%s %s: pool verify of a bad signature = %v, %v", name, s.alg, v.Value, err)
			}
		}
		msg := []byte("secret message for " + name)
		for _, alg := range []azkeys.EncryptionAlgorithm{azkeys.EncryptionAlgorithmRSAOAEP, azkeys.EncryptionAlgorithmRSAOAEP256, azkeys.EncryptionAlgorithmRSA15} {
			// Encrypt in Go with the public key, as the JS CryptographyClient does, and through the pool.
			var local []byte
			switch alg {
			case azkeys.EncryptionAlgorithmRSAOAEP:
				local, err = rsa.EncryptOAEP(crypto.SHA1.New(), rand.Reader, pub, msg, nil)
			case azkeys.EncryptionAlgorithmRSAOAEP256:
				local, err = rsa.EncryptOAEP(sha256.New(), rand.Reader, pub, msg, nil)
			default:
				//lint:ignore SA1019 RSA1_5 is an Azure algorithm the pool must serve; this checks interoperability.
				local, err = rsa.EncryptPKCS1v15(rand.Reader, pub, msg)
			}
			if err != nil {
				t.Fatal(err)
			}
			remote, err := c.Encrypt(ctx, name, "", azkeys.KeyOperationParameters{Algorithm: to.Ptr(alg), Value: msg}, nil)
			if err != nil {
				t.Fatalf("%s encrypt %s: %v", name, alg, err)
			}
			for _, ct := range [][]byte{local, remote.Result} {
				pt, err := c.Decrypt(ctx, name, "", azkeys.KeyOperationParameters{Algorithm: to.Ptr(alg), Value: ct}, nil)
				if err != nil || !bytes.Equal(pt.Result, msg) {
					t.Errorf("%s decrypt %s: %q, %v", name, alg, pt.Result, err)
				}
			}
			w, err := c.WrapKey(ctx, name, "", azkeys.KeyOperationParameters{Algorithm: to.Ptr(alg), Value: msg[:16]}, nil)
			if err != nil {
				t.Fatalf("%s wrap %s: %v", name, alg, err)
			}
			u, err := c.UnwrapKey(ctx, name, "", azkeys.KeyOperationParameters{Algorithm: to.Ptr(alg), Value: w.Result}, nil)
			if err != nil || !bytes.Equal(u.Result, msg[:16]) {
				t.Errorf("%s unwrap %s: %v", name, alg, err)
			}
		}
		// An EC algorithm on an RSA key, and a digest of the wrong length, are 400s.
		_, err = c.Sign(ctx, name, "", azkeys.SignParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmES256), Value: make([]byte, 32)}, nil)
		respErr(t, err, http.StatusBadRequest, "BadParameter")
		_, err = c.Sign(ctx, name, "", azkeys.SignParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmRS256), Value: make([]byte, 31)}, nil)
		respErr(t, err, http.StatusBadRequest, "BadParameter")
	}

	curves := []struct {
		crv  azkeys.CurveName
		alg  azkeys.SignatureAlgorithm
		hash func() hash.Hash
		go_  elliptic.Curve
	}{
		{azkeys.CurveNameP256, azkeys.SignatureAlgorithmES256, sha256.New, elliptic.P256()},
		{azkeys.CurveNameP384, azkeys.SignatureAlgorithmES384, sha512.New384, elliptic.P384()},
		{azkeys.CurveNameP521, azkeys.SignatureAlgorithmES512, sha512.New, elliptic.P521()},
		{azkeys.CurveNameP256K, azkeys.SignatureAlgorithmES256K, sha256.New, nil},
	}
	for _, cv := range curves {
		name := "ec-" + strings.ToLower(strings.ReplaceAll(string(cv.crv), "-", ""))
		k, err := c.CreateKey(ctx, name, azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeECHSM), Curve: to.Ptr(cv.crv)}, nil)
		if err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
		if *k.Key.Crv != cv.crv || len(k.Key.X) == 0 || len(k.Key.Y) == 0 {
			t.Fatalf("%s: %+v", name, k.Key)
		}
		d := digest(cv.hash, "hello "+name)
		res, err := c.Sign(ctx, name, "", azkeys.SignParameters{Algorithm: to.Ptr(cv.alg), Value: d}, nil)
		if err != nil {
			t.Fatalf("%s sign: %v", name, err)
		}
		if cv.go_ != nil {
			pub, err := ecdsa.ParseUncompressedPublicKey(cv.go_, append(append([]byte{4}, k.Key.X...), k.Key.Y...))
			if err != nil {
				t.Fatalf("%s: the returned x, y: %v", name, err)
			}
			half := len(res.Result) / 2
			if !ecdsa.Verify(pub, d, new(big.Int).SetBytes(res.Result[:half]), new(big.Int).SetBytes(res.Result[half:])) {
				t.Errorf("%s: Go does not verify the signature", name)
			}
		}
		v, err := c.Verify(ctx, name, "", azkeys.VerifyParameters{Algorithm: to.Ptr(cv.alg), Digest: d, Signature: res.Result}, nil)
		if err != nil || !*v.Value {
			t.Errorf("%s verify: %v %v", name, v.Value, err)
		}
		d[0] ^= 1
		v, err = c.Verify(ctx, name, "", azkeys.VerifyParameters{Algorithm: to.Ptr(cv.alg), Digest: d, Signature: res.Result}, nil)
		if err != nil || *v.Value {
			t.Errorf("%s verify of another digest: %v %v", name, v.Value, err)
		}
		_, err = c.Encrypt(ctx, name, "", azkeys.KeyOperationParameters{Algorithm: to.Ptr(azkeys.EncryptionAlgorithmRSAOAEP), Value: d}, nil)
		respErr(t, err, http.StatusForbidden, "Forbidden") // EC keys carry no encrypt in key_ops
	}

	for _, bits := range []int32{128, 192, 256} {
		name := fmt.Sprintf("aes%d", bits)
		k, err := c.CreateKey(ctx, name, azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeOctHSM), KeySize: to.Ptr(bits)}, nil)
		if err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
		if len(k.Key.K) != 0 {
			t.Fatalf("%s: the response carries k", name)
		}
		msg := []byte("attack at dawn, with 4 KiB of friends")
		prefix := fmt.Sprintf("A%d", bits)
		for _, mode := range []string{"GCM", "CBC", "CBCPAD"} {
			alg := azkeys.EncryptionAlgorithm(prefix + mode)
			in := msg
			if mode == "CBC" {
				in = msg[:32]
			}
			params := azkeys.KeyOperationParameters{Algorithm: to.Ptr(alg), Value: in}
			if mode == "GCM" {
				params.AdditionalAuthenticatedData = []byte("aad")
			}
			ct, err := c.Encrypt(ctx, name, "", params, nil)
			if err != nil {
				t.Fatalf("%s %s: %v", name, alg, err)
			}
			dp := azkeys.KeyOperationParameters{Algorithm: to.Ptr(alg), Value: ct.Result, IV: ct.IV, AuthenticationTag: ct.AuthenticationTag, AdditionalAuthenticatedData: params.AdditionalAuthenticatedData}
			pt, err := c.Decrypt(ctx, name, "", dp, nil)
			if err != nil || !bytes.Equal(pt.Result, in) {
				t.Errorf("%s %s decrypt: %q %v", name, alg, pt.Result, err)
			}
			if mode == "GCM" {
				if len(ct.IV) != 12 || len(ct.AuthenticationTag) != 16 {
					t.Errorf("%s: iv %d bytes, tag %d bytes", alg, len(ct.IV), len(ct.AuthenticationTag))
				}
				dp.AuthenticationTag = append([]byte{}, ct.AuthenticationTag...)
				dp.AuthenticationTag[0] ^= 1
				if _, err := c.Decrypt(ctx, name, "", dp, nil); err == nil {
					t.Errorf("%s: a forged tag decrypted", alg)
				}
			}
		}
		kw := azkeys.EncryptionAlgorithm(prefix + "KW")
		cek := make([]byte, 32)
		rand.Read(cek)
		w, err := c.WrapKey(ctx, name, "", azkeys.KeyOperationParameters{Algorithm: to.Ptr(kw), Value: cek}, nil)
		if err != nil {
			t.Fatalf("%s %s: %v", name, kw, err)
		}
		u, err := c.UnwrapKey(ctx, name, "", azkeys.KeyOperationParameters{Algorithm: to.Ptr(kw), Value: w.Result}, nil)
		if err != nil || !bytes.Equal(u.Result, cek) {
			t.Errorf("%s %s unwrap: %v", name, kw, err)
		}
		// A KW algorithm of another size is a 400.
		other := "A128KW"
		if bits == 128 {
			other = "A256KW"
		}
		_, err = c.WrapKey(ctx, name, "", azkeys.KeyOperationParameters{Algorithm: to.Ptr(azkeys.EncryptionAlgorithm(other)), Value: cek}, nil)
		respErr(t, err, http.StatusBadRequest, "BadParameter")
		for _, alg := range []azkeys.EncryptionAlgorithm{azkeys.EncryptionAlgorithmCKMAESKEYWRAP, azkeys.EncryptionAlgorithmCKMAESKEYWRAPPAD} {
			in := cek
			if alg == azkeys.EncryptionAlgorithmCKMAESKEYWRAPPAD {
				in = cek[:20] // not a multiple of 8: RFC 5649 padding
			}
			w, err := c.WrapKey(ctx, name, "", azkeys.KeyOperationParameters{Algorithm: to.Ptr(alg), Value: in}, nil)
			if err != nil {
				t.Fatalf("%s %s: %v", name, alg, err)
			}
			u, err := c.UnwrapKey(ctx, name, "", azkeys.KeyOperationParameters{Algorithm: to.Ptr(alg), Value: w.Result}, nil)
			if err != nil || !bytes.Equal(u.Result, in) {
				t.Errorf("%s %s unwrap: %v", name, alg, err)
			}
		}
		if bits == 256 {
			res, err := c.Sign(ctx, name, "", azkeys.SignParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithm("HS256")), Value: msg}, nil)
			if err != nil {
				t.Fatalf("HS256: %v", err)
			}
			v, err := c.Verify(ctx, name, "", azkeys.VerifyParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithm("HS256")), Digest: msg, Signature: res.Result}, nil)
			if err != nil || !*v.Value {
				t.Errorf("HS256 verify: %v %v", v.Value, err)
			}
		}
	}
	// AES-GCM checked against Go with an imported key of known bytes.
	raw := make([]byte, 32)
	rand.Read(raw)
	if _, err := c.ImportKey(ctx, "aes-known", azkeys.ImportKeyParameters{HSM: to.Ptr(true), Key: &azkeys.JSONWebKey{Kty: to.Ptr(azkeys.KeyTypeOct), K: raw}}, nil); err != nil {
		t.Fatalf("import oct: %v", err)
	}
	ct, err := c.Encrypt(ctx, "aes-known", "", azkeys.KeyOperationParameters{Algorithm: to.Ptr(azkeys.EncryptionAlgorithmA256GCM), Value: []byte("known")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := aes.NewCipher(raw)
	gcm, _ := cipher.NewGCM(blk)
	pt, err := gcm.Open(nil, ct.IV, append(ct.Result, ct.AuthenticationTag...), nil)
	if err != nil || string(pt) != "known" {
		t.Errorf("Go cannot open the pool's A256GCM ciphertext: %v", err)
	}
}

func TestKeyLifecycle(t *testing.T) {
	p := startPool(t)
	p.activate()
	c := p.keys

	exp := time.Now().Add(48 * time.Hour).Truncate(time.Second)
	k1, err := c.CreateKey(ctx, "life", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeEC), Curve: to.Ptr(azkeys.CurveNameP256),
		KeyOps: []*azkeys.KeyOperation{to.Ptr(azkeys.KeyOperationSign)}, Tags: map[string]*string{"team": to.Ptr("a")},
		KeyAttributes: &azkeys.KeyAttributes{Expires: &exp}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if *k1.Key.Kty != azkeys.KeyTypeECHSM || *k1.Tags["team"] != "a" || !k1.Attributes.Expires.Equal(exp) || *k1.Attributes.RecoverableDays != 90 {
		t.Fatalf("create: %+v %+v", k1.Key, k1.Attributes)
	}
	if len(k1.Key.KeyOps) != 1 || *k1.Key.KeyOps[0] != azkeys.KeyOperationSign {
		t.Errorf("key_ops = %v", k1.Key.KeyOps)
	}
	// verify is not in key_ops: refused.
	_, err = c.Verify(ctx, "life", "", azkeys.VerifyParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmES256), Digest: make([]byte, 32), Signature: make([]byte, 64)}, nil)
	respErr(t, err, http.StatusForbidden, "Forbidden")

	k2, err := c.CreateKey(ctx, "life", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeECHSM)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if k2.Key.KID.Version() == k1.Key.KID.Version() {
		t.Fatal("a second create made no new version")
	}
	got, err := c.GetKey(ctx, "life", "", nil)
	if err != nil || got.Key.KID.Version() != k2.Key.KID.Version() {
		t.Fatalf("get latest: %v %v", got.Key.KID, err)
	}
	got, err = c.GetKey(ctx, "life", k1.Key.KID.Version(), nil)
	if err != nil || got.Key.KID.Version() != k1.Key.KID.Version() {
		t.Fatalf("get by version: %v", err)
	}
	if !strings.HasPrefix(string(*got.Key.KID), p.client.URL+"/keys/life/") {
		t.Errorf("kid %s does not start with the pool URL %s", *got.Key.KID, p.client.URL)
	}
	_, err = c.GetKey(ctx, "life", "0123456789abcdef0123456789abcdef", nil)
	respErr(t, err, http.StatusNotFound, "KeyNotFound")

	// Versions pager.
	var versions int
	for pg := c.NewListKeyPropertiesVersionsPager("life", nil); pg.More(); {
		page, err := pg.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		versions += len(page.Value)
	}
	if versions != 2 {
		t.Errorf("%d versions listed, want 2", versions)
	}

	// Update: disable, then every operation is refused; enable again.
	_, err = c.UpdateKey(ctx, "life", "", azkeys.UpdateKeyParameters{KeyAttributes: &azkeys.KeyAttributes{Enabled: to.Ptr(false)}, Tags: map[string]*string{"x": to.Ptr("y")}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Sign(ctx, "life", "", azkeys.SignParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmES256), Value: make([]byte, 32)}, nil)
	respErr(t, err, http.StatusForbidden, "Forbidden")
	up, err := c.UpdateKey(ctx, "life", "", azkeys.UpdateKeyParameters{KeyAttributes: &azkeys.KeyAttributes{Enabled: to.Ptr(true)}}, nil)
	if err != nil || !*up.Attributes.Enabled || *up.Tags["x"] != "y" {
		t.Fatalf("enable: %v %+v", err, up.Tags)
	}
	// nbf in the future and exp in the past are enforced.
	future := time.Now().Add(time.Hour)
	if _, err := c.UpdateKey(ctx, "life", "", azkeys.UpdateKeyParameters{KeyAttributes: &azkeys.KeyAttributes{NotBefore: &future}}, nil); err != nil {
		t.Fatal(err)
	}
	_, err = c.Sign(ctx, "life", "", azkeys.SignParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmES256), Value: make([]byte, 32)}, nil)
	respErr(t, err, http.StatusForbidden, "Forbidden")
	past := time.Now().Add(-time.Hour)
	_, err = c.Sign(ctx, "life", k1.Key.KID.Version(), azkeys.SignParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmES256), Value: make([]byte, 32)}, nil)
	if err != nil {
		t.Fatalf("sign with version 1: %v", err)
	}
	if _, err := c.UpdateKey(ctx, "life", k1.Key.KID.Version(), azkeys.UpdateKeyParameters{KeyAttributes: &azkeys.KeyAttributes{Expires: &past}}, nil); err != nil {
		t.Fatal(err)
	}
	_, err = c.Sign(ctx, "life", k1.Key.KID.Version(), azkeys.SignParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmES256), Value: make([]byte, 32)}, nil)
	respErr(t, err, http.StatusForbidden, "Forbidden")

	// Rotation needs a policy; the policy is validated.
	_, err = c.RotateKey(ctx, "life", nil)
	respErr(t, err, http.StatusBadRequest, "BadParameter")
	_, err = c.UpdateKeyRotationPolicy(ctx, "life", azkeys.KeyRotationPolicy{LifetimeActions: []*azkeys.LifetimeAction{{
		Action: &azkeys.LifetimeActionType{Type: to.Ptr(azkeys.KeyRotationPolicyActionRotate)}, Trigger: &azkeys.LifetimeActionTrigger{TimeAfterCreate: to.Ptr("P1D")}}}}, nil)
	respErr(t, err, http.StatusBadRequest, "BadParameter")
	pol, err := c.UpdateKeyRotationPolicy(ctx, "life", azkeys.KeyRotationPolicy{Attributes: &azkeys.KeyRotationPolicyAttributes{ExpiryTime: to.Ptr("P2Y")},
		LifetimeActions: []*azkeys.LifetimeAction{{Action: &azkeys.LifetimeActionType{Type: to.Ptr(azkeys.KeyRotationPolicyAction("rotate"))}, Trigger: &azkeys.LifetimeActionTrigger{TimeAfterCreate: to.Ptr("P90D")}}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if *pol.LifetimeActions[0].Action.Type != azkeys.KeyRotationPolicyActionRotate || *pol.Attributes.ExpiryTime != "P2Y" {
		t.Errorf("policy: %+v", pol)
	}
	gotPol, err := c.GetKeyRotationPolicy(ctx, "life", nil)
	if err != nil || *gotPol.LifetimeActions[0].Trigger.TimeAfterCreate != "P90D" {
		t.Fatalf("get policy: %v", err)
	}
	rot, err := c.RotateKey(ctx, "life", nil)
	if err != nil {
		t.Fatal(err)
	}
	if rot.Attributes.Expires == nil || rot.Attributes.Expires.Before(time.Now().Add(700*24*time.Hour)) {
		t.Errorf("rotated version expires %v, want about 2 years from now", rot.Attributes.Expires)
	}

	// Backup, delete, purge, restore: the same versions come back.
	bk, err := c.BackupKey(ctx, "life", nil)
	if err != nil {
		t.Fatal(err)
	}
	del, err := c.DeleteKey(ctx, "life", nil)
	if err != nil {
		t.Fatal(err)
	}
	if del.RecoveryID == nil || del.ScheduledPurgeDate == nil || del.ScheduledPurgeDate.Sub(*del.DeletedDate) != 90*24*time.Hour {
		t.Fatalf("deleted bundle: %+v", del)
	}
	_, err = c.GetKey(ctx, "life", "", nil)
	respErr(t, err, http.StatusNotFound, "KeyNotFound")
	_, err = c.CreateKey(ctx, "life", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeECHSM)}, nil)
	respErr(t, err, http.StatusConflict, "Conflict")
	if _, err := c.GetDeletedKey(ctx, "life", nil); err != nil {
		t.Fatal(err)
	}
	var deleted int
	for pg := c.NewListDeletedKeyPropertiesPager(nil); pg.More(); {
		page, err := pg.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		deleted += len(page.Value)
	}
	if deleted != 1 {
		t.Errorf("%d deleted keys listed, want 1", deleted)
	}
	if _, err := c.RecoverDeletedKey(ctx, "life", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetKey(ctx, "life", "", nil); err != nil {
		t.Fatalf("get after recover: %v", err)
	}
	if _, err := c.DeleteKey(ctx, "life", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PurgeDeletedKey(ctx, "life", nil); err != nil {
		t.Fatal(err)
	}
	_, err = c.GetDeletedKey(ctx, "life", nil)
	respErr(t, err, http.StatusNotFound, "KeyNotFound")
	_, err = c.PurgeDeletedKey(ctx, "life", nil)
	respErr(t, err, http.StatusNotFound, "KeyNotFound")
	restored, err := c.RestoreKey(ctx, azkeys.RestoreKeyParameters{KeyBackup: bk.Value}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if restored.Key.KID.Version() != rot.Key.KID.Version() {
		t.Errorf("restored latest version %s, want %s", restored.Key.KID.Version(), rot.Key.KID.Version())
	}
	if _, err := c.GetKey(ctx, "life", k1.Key.KID.Version(), nil); err != nil {
		t.Errorf("the first version did not come back: %v", err)
	}
	_, err = c.RestoreKey(ctx, azkeys.RestoreKeyParameters{KeyBackup: bk.Value}, nil)
	respErr(t, err, http.StatusConflict, "Conflict")
	bad := append([]byte{}, bk.Value...)
	bad[len(bad)-1] ^= 1
	_, err = c.RestoreKey(ctx, azkeys.RestoreKeyParameters{KeyBackup: bad}, nil)
	respErr(t, err, http.StatusBadRequest, "BadParameter")

	// Paging over more than one page of 25.
	for i := range 27 {
		if _, err := c.CreateKey(ctx, fmt.Sprintf("page-%02d", i), azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeOctHSM), KeySize: to.Ptr[int32](128)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	var names []string
	pages := 0
	for pg := c.NewListKeyPropertiesPager(nil); pg.More(); {
		page, err := pg.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, it := range page.Value {
			if it.KID.Version() != "" {
				t.Errorf("list item kid %s has a version", *it.KID)
			}
			names = append(names, it.KID.Name())
		}
	}
	if len(names) != 28 || pages != 2 {
		t.Errorf("listed %d keys in %d pages, want 28 in 2", len(names), pages)
	}

	rb, err := c.GetRandomBytes(ctx, azkeys.GetRandomBytesParameters{Count: to.Ptr[int32](48)}, nil)
	if err != nil || len(rb.Value) != 48 {
		t.Fatalf("random: %d bytes, %v", len(rb.Value), err)
	}
	_, err = c.GetRandomBytes(ctx, azkeys.GetRandomBytesParameters{Count: to.Ptr[int32](129)}, nil)
	respErr(t, err, http.StatusBadRequest, "BadParameter")
}

// TestRestartAndNoPlaintextOnDisk imports keys of known bytes, restarts the daemon, uses them, and
// scans the data directory for those bytes.
func TestRestartAndNoPlaintextOnDisk(t *testing.T) {
	p := startPool(t)
	p.activate()
	c := p.keys

	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	aesKey := make([]byte, 32)
	rand.Read(aesKey)
	ecPub, err := ecKey.PublicKey.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	ecD, err := ecKey.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	imports := map[string]*azkeys.JSONWebKey{
		"rsa-known": {Kty: to.Ptr(azkeys.KeyTypeRSA), N: rsaKey.N.Bytes(), E: big.NewInt(int64(rsaKey.E)).Bytes(), D: rsaKey.D.Bytes(),
			P: rsaKey.Primes[0].Bytes(), Q: rsaKey.Primes[1].Bytes(), DP: rsaKey.Precomputed.Dp.Bytes(), DQ: rsaKey.Precomputed.Dq.Bytes(), QI: rsaKey.Precomputed.Qinv.Bytes()},
		"ec-known":  {Kty: to.Ptr(azkeys.KeyTypeEC), Crv: to.Ptr(azkeys.CurveNameP256), D: ecD, X: ecPub[1:33], Y: ecPub[33:]},
		"aes-known": {Kty: to.Ptr(azkeys.KeyTypeOctHSM), K: aesKey},
	}
	for name, jwk := range imports {
		if _, err := c.ImportKey(ctx, name, azkeys.ImportKeyParameters{HSM: to.Ptr(true), Key: jwk}, nil); err != nil {
			t.Fatalf("import %s: %v", name, err)
		}
	}
	generated, err := c.CreateKey(ctx, "made-here", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeECHSM)}, nil)
	if err != nil {
		t.Fatal(err)
	}

	p.restart()
	c = p.keys
	d := digest(sha256.New, "after restart")
	s, err := c.Sign(ctx, "rsa-known", "", azkeys.SignParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmRS256), Value: d}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := rsa.VerifyPKCS1v15(&rsaKey.PublicKey, crypto.SHA256, d, s.Result); err != nil {
		t.Errorf("the imported RSA key signs differently after a restart: %v", err)
	}
	s, err = c.Sign(ctx, "ec-known", "", azkeys.SignParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmES256), Value: d}, nil)
	if err != nil || !ecdsa.Verify(&ecKey.PublicKey, d, new(big.Int).SetBytes(s.Result[:32]), new(big.Int).SetBytes(s.Result[32:])) {
		t.Errorf("the imported EC key after a restart: %v", err)
	}
	if _, err := c.Sign(ctx, "made-here", generated.Key.KID.Version(), azkeys.SignParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmES256), Value: d}, nil); err != nil {
		t.Errorf("a generated key after a restart: %v", err)
	}
	w, err := c.WrapKey(ctx, "aes-known", "", azkeys.KeyOperationParameters{Algorithm: to.Ptr(azkeys.EncryptionAlgorithmA256KW), Value: d}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if u, err := c.UnwrapKey(ctx, "aes-known", "", azkeys.KeyOperationParameters{Algorithm: to.Ptr(azkeys.EncryptionAlgorithmA256KW), Value: w.Result}, nil); err != nil || !bytes.Equal(u.Result, d) {
		t.Errorf("the imported AES key after a restart: %v", err)
	}

	p.stop()
	secrets := map[string][]byte{"RSA d": rsaKey.D.Bytes(), "RSA p": rsaKey.Primes[0].Bytes(), "RSA q": rsaKey.Primes[1].Bytes(),
		"EC d": ecD, "AES k": aesKey}
	scanned := 0
	err = filepath.WalkDir(p.dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil || !e.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		scanned++
		for what, s := range secrets {
			// Any 16-byte window of the secret counts as a leak.
			for i := 0; i+16 <= len(s); i += 8 {
				if bytes.Contains(b, s[i:i+16]) {
					t.Errorf("%s holds bytes of the %s", path, what)
					break
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if scanned < 5 {
		t.Fatalf("scanned only %d files", scanned)
	}
}
