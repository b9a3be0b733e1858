package gateway

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

func TestSecurityDomainDownload(t *testing.T) {
	e := newEnv(t)
	// The file is JSON with characters that HTML-escaping JSON encoders would mangle.
	const file = `{"EncData":{"data":[{"tag":"mhsm_key_<&>"}],"kdf":"sp108_kdf"},"SharedKeys":{"required":2}}`
	e.core.on("SecurityDomain/Download", func(proto.Message) (proto.Message, error) {
		return &pb.DownloadResult{File: []byte(file)}, nil
	})
	ders := [][]byte{{0x30, 0x82, 0x01}, {0x30, 0x82, 0x02, 0xfb}, {0x30, 0x82, 0x03, 0xff, 0xfe}}
	jwk := func(i int, enc *base64.Encoding) string {
		return `{"kty":"RSA","key_ops":["verify","encrypt","wrapKey"],"n":"AQAB","e":"AQAB","x5c":["` + enc.EncodeToString(ders[i]) +
			`"],"x5t#S256":"AA","alg":"RSA-OAEP-256"}`
	}
	for _, tc := range []struct {
		name, body string
		quorum     int32
	}{
		// az CLI 2.45: bare JWKs, x5c in standard base64 with padding.
		{"cli", `{"certificates": [` + jwk(0, base64.StdEncoding) + `, ` + jwk(1, base64.StdEncoding) + `, ` + jwk(2, base64.StdEncoding) + `], "required": 3}`, 3},
		// The 7.2 spec example's {"value": jwk} items, unpadded, and no "required" (default 2).
		{"wrapped", `{"certificates":[{"value":` + jwk(0, base64.RawStdEncoding) + `},{"value":` + jwk(1, base64.StdEncoding) + `},` + jwk(2, base64.RawURLEncoding) + `]}`, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := e.do("POST", "/securitydomain/download?api-version=7.2", tc.body)
			if res.status != http.StatusAccepted {
				t.Fatalf("status %d, want 202: %s", res.status, res.body)
			}
			if got, want := res.header.Get("Azure-AsyncOperation"), "https://"+testHost+"/securitydomain/download/pending?api-version=7.2"; got != want {
				t.Errorf("Azure-AsyncOperation %q, want %q", got, want)
			}
			if got := res.header.Get("Retry-After"); got != "5" {
				t.Errorf("Retry-After %q", got)
			}
			var body map[string]json.RawMessage
			if err := json.Unmarshal(res.body, &body); err != nil || len(body) != 1 {
				t.Fatalf("body %s: %v", res.body, err)
			}
			var value string // a string, not an embedded object: the CLI writes it verbatim
			if err := json.Unmarshal(body["value"], &value); err != nil || value != file {
				t.Errorf("value %s (%v), want the file as a string", body["value"], err)
			}
			calls := e.core.reset()
			want := &pb.DownloadRequest{Certificates: ders, Quorum: tc.quorum}
			if len(calls) != 1 || !proto.Equal(calls[0].req, want) {
				t.Errorf("core got %v, want %v", calls, want)
			}
		})
	}
}

func TestSecurityDomainStatus(t *testing.T) {
	e := newEnv(t)
	e.core.on("SecurityDomain/GetStatus", func(proto.Message) (proto.Message, error) {
		return &pb.SecurityDomainStatus{Activated: true, Status: "Success", StatusDetails: "The resource is active."}, nil
	})
	e.core.on("SecurityDomain/GetUploadStatus", func(proto.Message) (proto.Message, error) {
		return &pb.SecurityDomainStatus{Activated: true, Status: "Success", StatusDetails: "The resource is active."}, nil
	})
	for _, path := range []string{"/securitydomain/download/pending", "/securitydomain/upload/pending", "/securitydomain/upload/pending/"} {
		res := e.do("GET", path+"?api-version=7.2", "")
		if want := `{"status":"Success","status_details":"The resource is active."}` + "\n"; res.status != 200 || string(res.body) != want {
			t.Errorf("%s: %d %s, want %s", path, res.status, res.body, want)
		}
	}
	// status_details is there even when empty: the CLI's model reads it.
	e.core.on("SecurityDomain/GetStatus", func(proto.Message) (proto.Message, error) {
		return &pb.SecurityDomainStatus{Status: "InProgress"}, nil
	})
	if res := e.do("GET", "/securitydomain/download/pending?api-version=7.2", ""); string(res.body) != `{"status":"InProgress","status_details":""}`+"\n" {
		t.Errorf("in progress: %s", res.body)
	}
}
