package gateway

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/hsmpool/hsmpool/internal/fault"
	"github.com/hsmpool/hsmpool/internal/rpcerr"
	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

// The transfer key's JSON is exactly what az CLI's init-recovery decodes (spec §2.3).
func TestSecurityDomainTransferKey(t *testing.T) {
	e := newEnv(t)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "contoso exchange key"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	e.core.on("SecurityDomain/GetTransferKey", func(proto.Message) (proto.Message, error) {
		return &pb.TransferKey{Certificate: der}, nil
	})
	res := e.do("GET", "/securitydomain/upload?api-version=7.2", "")
	if res.status != http.StatusOK {
		t.Fatalf("status %d: %s", res.status, res.body)
	}
	var body map[string]any
	if err := json.Unmarshal(res.body, &body); err != nil || len(body) != 2 || body["key_format"] != "jwk" {
		t.Fatalf("body %s: %v", res.body, err)
	}
	tk, ok := body["transfer_key"].(string) // a string holding the JWK, decoded a second time
	if !ok {
		t.Fatalf("transfer_key is %T, want a string", body["transfer_key"])
	}
	var jwk map[string]any
	if err := json.Unmarshal([]byte(tk), &jwk); err != nil {
		t.Fatalf("transfer_key %q: %v", tk, err)
	}
	sum := sha256.Sum256(der)
	want := map[string]any{
		"kty": "RSA", "key_ops": []any{"encrypt"}, "alg": "RSA-OAEP-256", "kid": "https://" + testHost + "/transfer_key",
		"n": base64.RawURLEncoding.EncodeToString(key.N.Bytes()), "e": "AQAB",
		"x5c":      []any{base64.StdEncoding.EncodeToString(der)},
		"x5t#S256": base64.RawURLEncoding.EncodeToString(sum[:]),
	}
	got, _ := json.Marshal(jwk)
	wantJSON, _ := json.Marshal(want)
	if string(got) != string(wantJSON) {
		t.Errorf("JWK\n got %s\nwant %s", got, wantJSON)
	}

	e.core.on("SecurityDomain/GetTransferKey", func(proto.Message) (proto.Message, error) {
		return nil, rpcerr.Status(rpcerr.New(fault.BadParameter, "BadParameter", "This pool is not in recovery mode."))
	})
	res = e.do("GET", "/securitydomain/upload?api-version=7.2", "")
	if code, msg, _ := res.errorOf(t); res.status != 400 || code != "BadParameter" || !strings.Contains(msg, "recovery mode") {
		t.Errorf("not recovery: %d %s %s", res.status, code, msg)
	}
}

func TestSecurityDomainUpload(t *testing.T) {
	e := newEnv(t)
	const blob = `{"EncData": {"data": [{"compact_jwe": "a.b.c.d.e", "tag": "t<&>"}], "kdf": "sp108_kdf"}, "WrappedKey": {"enc_key": "x", "x5t_256": "y"}}`
	e.core.on("SecurityDomain/Upload", func(m proto.Message) (proto.Message, error) {
		if string(m.(*pb.UploadRequest).Blob) != blob {
			return nil, rpcerr.Status(rpcerr.New(fault.BadParameter, "BadParameter", "The restore blob was refused: it was made for another exchange key."))
		}
		return &pb.SecurityDomainStatus{Activated: true, Status: "Success", StatusDetails: "restored"}, nil
	})
	value, _ := json.Marshal(map[string]string{"value": blob})
	res := e.do("POST", "/securitydomain/upload?api-version=7.2", string(value))
	if res.status != http.StatusAccepted {
		t.Fatalf("status %d, want 202: %s", res.status, res.body)
	}
	if got, want := res.header.Get("Azure-AsyncOperation"), "https://"+testHost+"/securitydomain/upload/pending?api-version=7.2"; got != want {
		t.Errorf("Azure-AsyncOperation %q, want %q", got, want)
	}
	if res.header.Get("Retry-After") == "" {
		t.Error("no Retry-After")
	}
	if want := `{"status":"Success","status_details":"restored"}` + "\n"; string(res.body) != want {
		t.Errorf("body %s, want %s", res.body, want)
	}
	if calls := e.core.reset(); len(calls) != 1 || !proto.Equal(calls[0].req, &pb.UploadRequest{Blob: []byte(blob)}) {
		t.Errorf("core got %v", calls)
	}

	for _, tc := range []struct{ name, body, msg string }{
		{"wrong blob", `{"value": "{\"EncData\": {}}"}`, "another exchange key"},
		{"empty value", `{"value": ""}`, "value must hold the restore blob"},
		{"no value", `{}`, "value must hold the restore blob"},
		{"not JSON", `garbage`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := e.do("POST", "/securitydomain/upload?api-version=7.2", tc.body)
			code, msg, _ := res.errorOf(t)
			if res.status != 400 || code != "BadParameter" || !strings.Contains(msg, tc.msg) {
				t.Errorf("%d %s %q", res.status, code, msg)
			}
		})
	}

	e.core.on("SecurityDomain/GetUploadStatus", func(proto.Message) (proto.Message, error) {
		return &pb.SecurityDomainStatus{Status: "Failed", StatusDetails: "The restore blob was refused."}, nil
	})
	res = e.do("GET", "/securitydomain/upload/pending?api-version=7.2", "")
	if want := `{"status":"Failed","status_details":"The restore blob was refused."}` + "\n"; res.status != 200 || string(res.body) != want {
		t.Errorf("pending: %d %s", res.status, res.body)
	}
}
