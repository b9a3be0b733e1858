package gateway

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

func TestKeyBundleJSON(t *testing.T) {
	e := newEnv(t).withDefaults()
	x := base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{0xfb}, 32))
	y := base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{0x01}, 32))
	res := e.send(request{method: "POST", target: "/keys/k1/create" + v, body: `{"kty":"EC-HSM","crv":"P-256"}`,
		header: map[string]string{"x-ms-client-request-id": "client-7"}})
	want := `{"key":{"kid":"https://myhsm.managedhsm.localhost:8443/keys/k1/` + ver1 + `","kty":"EC-HSM","key_ops":["sign","verify"],` +
		`"crv":"P-256","x":"` + x + `","y":"` + y + `"},` +
		`"attributes":{"enabled":true,"created":1700000000,"updated":1700000001,"recoverableDays":7,` +
		`"recoveryLevel":"CustomizedRecoverable+Purgeable","exportable":false}}` + "\n"
	if res.status != 200 || string(res.body) != want {
		t.Fatalf("got %d\n%s\nwant\n%s", res.status, res.body, want)
	}
	if strings.ContainsAny(x, "=+/") || len(x) != 43 {
		t.Fatalf("x %q is not unpadded base64url", x)
	}
	for h, want := range map[string]string{
		"Content-Type":           "application/json; charset=utf-8",
		"x-ms-keyvault-region":   "local",
		"Cache-Control":          "no-cache",
		"X-Content-Type-Options": "nosniff",
		"x-ms-client-request-id": "client-7",
	} {
		if got := res.header.Get(h); got != want {
			t.Errorf("%s: %q, want %q", h, got, want)
		}
	}

	// RSA public parts, tags, managed and the release policy; kid follows the request's Host.
	e.core.on("Keys/GetKey", func(proto.Message) (proto.Message, error) {
		return &pb.Key{Name: "r1", Version: ver2, Kty: "RSA-HSM", Public: &pb.PublicKey{N: []byte{0xff, 0xee}, E: []byte{1, 0, 1}},
			Tags: map[string]string{"env": "dev"}, Managed: true,
			ReleasePolicy: &pb.ReleasePolicy{ContentType: "application/json; charset=utf-8", Data: []byte("{}")}}, nil
	})
	res = e.send(request{method: "GET", target: "/keys/r1/" + v, host: "127.0.0.1:9443"})
	want = `{"key":{"kid":"https://127.0.0.1:9443/keys/r1/` + ver2 + `","kty":"RSA-HSM","n":"_-4","e":"AQAB"},` +
		`"tags":{"env":"dev"},"managed":true,"release_policy":{"contentType":"application/json; charset=utf-8","data":"e30"}}` + "\n"
	if string(res.body) != want {
		t.Errorf("got\n%s\nwant\n%s", res.body, want)
	}

	// Delete and the deleted key carry recoveryId and the dates; a recovered key does not.
	deleted := func(proto.Message) (proto.Message, error) {
		k := sampleKey("k1", ver1)
		k.Attributes = nil
		k.Deletion = &pb.Deletion{DeletedDate: 1700000100, ScheduledPurgeDate: 1700604900}
		return k, nil
	}
	e.core.on("Keys/DeleteKey", deleted)
	e.core.on("Keys/GetDeletedKey", deleted)
	for _, method := range []string{"DELETE", "GET"} {
		path := "/keys/k1"
		if method == "GET" {
			path = "/deletedkeys/k1"
		}
		m := e.do(method, path+v, "").json(t)
		if m["recoveryId"] != "https://"+testHost+"/deletedkeys/k1" || m["deletedDate"].(interface{ String() string }).String() != "1700000100" ||
			m["scheduledPurgeDate"].(interface{ String() string }).String() != "1700604900" {
			t.Errorf("%s %s: %v", method, path, m)
		}
		if _, ok := m["attributes"]; ok {
			t.Errorf("absent attributes emitted: %v", m)
		}
	}
	m := e.do("POST", "/deletedkeys/k1/recover"+v, "").json(t)
	if _, ok := m["recoveryId"]; ok {
		t.Errorf("recovered key has recoveryId: %v", m)
	}
}

func TestKeyRequests(t *testing.T) {
	e := newEnv(t).withDefaults()
	cmpReq := func(t *testing.T, want proto.Message) {
		t.Helper()
		calls := e.core.reset()
		if len(calls) != 1 {
			t.Fatalf("%d calls", len(calls))
		}
		if !proto.Equal(want, calls[0].req) {
			t.Errorf("request\n%v\nwant\n%v", calls[0].req, want)
		}
	}
	post := func(t *testing.T, method, path, body string) {
		t.Helper()
		e.core.reset() // whatever an earlier failed subtest left
		if res := e.do(method, path+v, body); res.status/100 != 2 {
			t.Fatalf("status %d: %s", res.status, res.body)
		}
	}
	t.Run("create, nothing optional", func(t *testing.T) {
		post(t, "POST", "/keys/k1/create", `{"kty":"RSA-HSM","key_size":2048,"public_exponent":65537}`)
		cmpReq(t, &pb.CreateKeyRequest{Name: "k1", Kty: "RSA-HSM", KeySize: 2048, PublicExponent: 65537})
	})
	t.Run("create, everything", func(t *testing.T) {
		post(t, "POST", "/keys/k1/create", `{"attributes":{"enabled":true,"exp":1800000000,"nbf":1700000000,"exportable":false,"created":5},`+
			`"crv":"P-256","key_ops":["sign","wrapKey"],"kty":"EC-HSM","tags":{"a":"b"},`+
			`"release_policy":{"contentType":"application/json","immutable":true,"data":"e30="}}`)
		cmpReq(t, &pb.CreateKeyRequest{
			Name: "k1", Kty: "EC-HSM", Crv: "P-256", KeyOps: &pb.KeyOps{Ops: []string{"sign", "wrapKey"}},
			Attributes:    &pb.KeyAttributes{Enabled: ptr(true), Expires: ptr[int64](1800000000), NotBefore: ptr[int64](1700000000), Exportable: ptr(false)},
			Tags:          map[string]string{"a": "b"},
			ReleasePolicy: &pb.ReleasePolicy{ContentType: "application/json", Immutable: true, Data: []byte("{}")},
		})
	})
	t.Run("create, empty key_ops and attributes are not absent", func(t *testing.T) {
		post(t, "POST", "/keys/k1/create", `{"kty":"oct-HSM","key_size":256,"attributes":{},"key_ops":[]}`)
		cmpReq(t, &pb.CreateKeyRequest{Name: "k1", Kty: "oct-HSM", KeySize: 256, KeyOps: &pb.KeyOps{}, Attributes: &pb.KeyAttributes{}})
	})
	t.Run("import, base64 variants", func(t *testing.T) {
		// k padded, e standard alphabet, n unpadded URL alphabet.
		post(t, "PUT", "/keys/k1", `{"Hsm":true,"key":{"kty":"RSA","n":"_-4","e":"AQAB","d":"+/8=","key_ops":["sign"]},"tags":{}}`)
		cmpReq(t, &pb.ImportKeyRequest{Name: "k1", Hsm: true, Tags: map[string]string{},
			Key: &pb.JsonWebKey{Kty: "RSA", N: []byte{0xff, 0xee}, E: []byte{1, 0, 1}, D: []byte{0xfb, 0xff}, KeyOps: []string{"sign"}}})
	})
	t.Run("update, tags present but empty", func(t *testing.T) {
		post(t, "PATCH", "/keys/k1/"+ver1, `{"tags":{}}`)
		cmpReq(t, &pb.UpdateKeyRequest{Name: "k1", Version: ver1, Tags: &pb.Tags{}})
	})
	t.Run("update, tags absent", func(t *testing.T) {
		post(t, "PATCH", "/keys/k1/", `{"attributes":{"enabled":false},"key_ops":["verify"]}`)
		cmpReq(t, &pb.UpdateKeyRequest{Name: "k1", Attributes: &pb.KeyAttributes{Enabled: ptr(false)}, KeyOps: &pb.KeyOps{Ops: []string{"verify"}}})
	})
	t.Run("encrypt", func(t *testing.T) {
		post(t, "POST", "/keys/k1/"+ver1+"/encrypt", `{"aad":"YWFk","alg":"A256GCM","value":"aGVsbG8","iv":"AAEC","tag":"AwQ="}`)
		cmpReq(t, &pb.KeyOperationRequest{Name: "k1", Version: ver1, Alg: "A256GCM", Value: []byte("hello"), Aad: []byte("aad"), Iv: []byte{0, 1, 2}, Tag: []byte{3, 4}})
	})
	t.Run("verify", func(t *testing.T) {
		post(t, "POST", "/keys/k1/verify", `{"alg":"ES256","digest":"AQID","value":"BAUG"}`)
		cmpReq(t, &pb.VerifyRequest{Name: "k1", Alg: "ES256", Digest: []byte{1, 2, 3}, Signature: []byte{4, 5, 6}})
	})
	t.Run("restore", func(t *testing.T) {
		post(t, "POST", "/keys/restore", `{"value":"AQID"}`)
		cmpReq(t, &pb.Blob{Value: []byte{1, 2, 3}})
	})
	t.Run("rng", func(t *testing.T) {
		post(t, "POST", "/rng", `{"count":16}`)
		cmpReq(t, &pb.RandomRequest{Count: 16})
	})
	t.Run("rotation policy", func(t *testing.T) {
		post(t, "PUT", "/keys/k1/rotationpolicy", `{"attributes":{"expiryTime":"P2Y"},"lifetimeActions":[`+
			`{"action":{"type":"rotate"},"trigger":{"timeAfterCreate":"P90D"}},{"action":{"type":"NOTIFY"},"trigger":{"timeBeforeExpiry":"P30D"}}]}`)
		cmpReq(t, &pb.SetRotationPolicyRequest{Name: "k1", Policy: &pb.RotationPolicy{ExpiryTime: "P2Y", LifetimeActions: []*pb.LifetimeAction{
			{TimeAfterCreate: "P90D", Action: "Rotate"}, {TimeBeforeExpiry: "P30D", Action: "Notify"},
		}}})
	})
}

func TestResultJSON(t *testing.T) {
	e := newEnv(t).withDefaults()
	e.core.on("Keys/Encrypt", func(proto.Message) (proto.Message, error) {
		return &pb.KeyOperationResult{Name: "k1", Version: ver2, Value: []byte{0xfb, 0xff}, Iv: []byte{1}, Tag: []byte{2, 3}}, nil
	})
	for _, tc := range []struct{ method, path, body, want string }{
		{"POST", "/keys/k1//encrypt", `{"alg":"A256GCM","value":"AQID"}`,
			`{"kid":"https://` + testHost + `/keys/k1/` + ver2 + `","value":"-_8","iv":"AQ","tag":"AgM"}`},
		{"POST", "/keys/k1/sign", `{"alg":"ES256","value":"AQID"}`, `{"kid":"https://` + testHost + `/keys/k1/` + ver1 + `","value":"cmVzdWx0"}`},
		{"POST", "/keys/k1/verify", `{"alg":"ES256","digest":"AQID","value":"AQID"}`, `{"value":true}`},
		{"POST", "/keys/k1/backup", "", `{"value":"AQID"}`},
		{"POST", "/rng", `{"count":2}`, `{"value":"CQk"}`},
		{"GET", "/keys/k1/rotationpolicy", "", `{"id":"https://` + testHost + `/keys/k1/rotationpolicy","lifetimeActions":[],"attributes":{}}`},
	} {
		res := e.do(tc.method, tc.path+v, tc.body)
		if res.status != 200 || string(res.body) != tc.want+"\n" {
			t.Errorf("%s %s: %d\n%s\nwant\n%s", tc.method, tc.path, res.status, res.body, tc.want)
		}
	}

	e.core.on("Keys/GetRotationPolicy", func(proto.Message) (proto.Message, error) {
		return &pb.RotationPolicy{ExpiryTime: "P2Y", Created: 1700000000, Updated: 1700000002,
			LifetimeActions: []*pb.LifetimeAction{{TimeAfterCreate: "P90D", Action: "rotate"}}}, nil
	})
	want := `{"id":"https://` + testHost + `/keys/k1/rotationpolicy","lifetimeActions":[{"trigger":{"timeAfterCreate":"P90D"},"action":{"type":"Rotate"}}],` +
		`"attributes":{"expiryTime":"P2Y","created":1700000000,"updated":1700000002}}` + "\n"
	if res := e.do("GET", "/keys/k1/rotationpolicy"+v, ""); string(res.body) != want {
		t.Errorf("policy\n%s\nwant\n%s", res.body, want)
	}

	res := e.do("DELETE", "/deletedkeys/k1"+v, "")
	if res.status != http.StatusNoContent || len(res.body) != 0 || res.header.Get("Content-Type") != "" {
		t.Errorf("purge: %d %q %q", res.status, res.body, res.header.Get("Content-Type"))
	}
}

func TestLists(t *testing.T) {
	e := newEnv(t)
	page := func(token string, keys ...*pb.Key) replyFunc {
		return func(proto.Message) (proto.Message, error) { return &pb.KeyList{Keys: keys, NextPageToken: token}, nil }
	}
	deletedKey := sampleKey("d1", ver2)
	deletedKey.Deletion = &pb.Deletion{DeletedDate: 10, ScheduledPurgeDate: 20}
	deletedKey.Attributes = nil
	e.core.on("Keys/ListKeys", page("p2/x y&z", sampleKey("k1", ver1), sampleKey("k2", ver2)))
	e.core.on("Keys/ListKeyVersions", page("", sampleKey("k1", ver1)))
	e.core.on("Keys/ListDeletedKeys", page("", deletedKey))

	// Names in the query are decoded: JS sends api%2Dversion, Go re-encodes $skiptoken.
	res := e.do("GET", "/keys?api%2Dversion=7.6&maxresults=2&%24skiptoken=abc", "")
	var got struct {
		Value []map[string]any `json:"value"`
		Next  string           `json:"nextLink"`
	}
	m := res.json(t)
	if len(m) != 2 {
		t.Errorf("unexpected members: %v", m)
	}
	if err := json.Unmarshal(res.body, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Value) != 2 || got.Value[0]["kid"] != "https://"+testHost+"/keys/k1" || got.Value[1]["kid"] != "https://"+testHost+"/keys/k2" {
		t.Errorf("items %v", got.Value)
	}
	if _, ok := got.Value[0]["key"]; ok {
		t.Errorf("KeyItem has key material member: %v", got.Value[0])
	}
	wantNext := "https://" + testHost + "/keys?api-version=7.6&$skiptoken=p2%2Fx+y%26z&maxresults=2"
	if got.Next != wantNext {
		t.Errorf("nextLink %q, want %q", got.Next, wantNext)
	}
	calls := e.core.reset()
	if want := (&pb.ListRequest{MaxResults: 2, PageToken: "abc"}); !proto.Equal(want, calls[0].req) {
		t.Errorf("list request %v, want %v", calls[0].req, want)
	}
	// The nextLink, as Go re-encodes it, brings the token back unchanged.
	u, err := url.Parse(wantNext)
	if err != nil {
		t.Fatal(err)
	}
	u.RawQuery = u.Query().Encode()
	e.do("GET", u.RequestURI(), "")
	if calls := e.core.reset(); calls[0].req.(*pb.ListRequest).PageToken != "p2/x y&z" {
		t.Errorf("token round trip: %v", calls[0].req)
	}

	res = e.do("GET", "/keys/k1/versions"+v, "")
	want := `{"value":[{"kid":"https://` + testHost + `/keys/k1/` + ver1 + `","attributes":{"enabled":true,"created":1700000000,"updated":1700000001,` +
		`"recoverableDays":7,"recoveryLevel":"CustomizedRecoverable+Purgeable","exportable":false}}]}` + "\n"
	if string(res.body) != want {
		t.Errorf("versions\n%s\nwant\n%s", res.body, want)
	}
	res = e.do("GET", "/deletedkeys"+v, "")
	want = `{"value":[{"kid":"https://` + testHost + `/keys/d1","recoveryId":"https://` + testHost + `/deletedkeys/d1","deletedDate":10,"scheduledPurgeDate":20}]}` + "\n"
	if string(res.body) != want {
		t.Errorf("deleted\n%s\nwant\n%s", res.body, want)
	}
	e.core.on("Keys/ListKeys", page(""))
	if res := e.do("GET", "/keys"+v, ""); string(res.body) != `{"value":[]}`+"\n" {
		t.Errorf("empty list %s", res.body)
	}
}

// TestKeyOpResultAppendJSON checks the hand-written encoding of a key operation's answer against
// encoding/json's, byte for byte.
func TestKeyOpResultAppendJSON(t *testing.T) {
	for _, r := range []keyOpResult{
		{KID: "https://" + testHost + "/keys/k1/" + ver1, Value: []byte{0xfb, 0xff, 1}},
		{KID: "https://h/keys/k1", Value: nil, IV: []byte{1}, Tag: []byte{2, 3}, AAD: []byte("aad")},
		{KID: "https://h/keys/k1", Value: []byte{}, IV: []byte{}, Tag: nil},
		{KID: "https://h\"\\/<&>\u2028\x01\x7f/é\xff", Value: []byte("v")},
		{},
	} {
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(r); err != nil {
			t.Fatal(err)
		}
		if got := r.appendJSON([]byte("x")); string(got) != "x"+want.String() {
			t.Errorf("appendJSON(%+v) = %q, want %q", r, got[1:], want.String())
		}
	}
}
