package gateway

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/hsmpool/hsmpool/internal/fault"
	"github.com/hsmpool/hsmpool/internal/rpcerr"
	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestChallengeComesFirst(t *testing.T) {
	e := newEnv(t).withDefaults()
	const want = `{"error":{"code":"Unauthorized","message":"AKV10000: Request is missing a Bearer or PoP token."}}` + "\n"
	for _, tc := range []struct {
		name string
		req  request
	}{
		// The SDKs' first request: the body stripped, no Content-Type (Go) or one (JS).
		{"empty-body POST", request{method: "POST", target: "/keys/k1/create" + v, auth: ptr("")}},
		{"JS empty POST", request{method: "POST", target: "/keys/k1//sign?api%2Dversion=2025-07-01", auth: ptr(""), header: map[string]string{"Content-Type": "application/json"}}},
		{"unknown path", request{method: "GET", target: "/no/such/thing", auth: ptr("")}},
		{"no api-version", request{method: "GET", target: "/keys", auth: ptr("")}},
		{"unknown api-version", request{method: "GET", target: "/keys?api-version=1999", auth: ptr("")}},
		{"wrong method", request{method: "GET", target: "/keys/k1/create" + v, auth: ptr("")}},
		{"malformed body", request{method: "POST", target: "/keys/k1/create" + v, body: "{", auth: ptr("")}},
		{"basic auth", request{method: "GET", target: "/keys" + v, auth: ptr("Basic dXNlcjpwYXNz")}},
		{"bearer without token", request{method: "GET", target: "/keys" + v, auth: ptr("Bearer ")}},
		{"two tokens", request{method: "GET", target: "/keys" + v, auth: ptr("Bearer a b")}},
		{"non-ASCII token", request{method: "GET", target: "/keys" + v, auth: ptr("Bearer tök")}},
		{"security domain", request{method: "POST", target: "/securitydomain/download?api-version=7.2", auth: ptr("")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := e.send(tc.req)
			calls := e.core.reset()
			if res.status != http.StatusUnauthorized {
				t.Fatalf("status %d, want 401; body %s", res.status, res.body)
			}
			if got := res.header.Get("WWW-Authenticate"); got != testChallenge {
				t.Errorf("WWW-Authenticate = %q, want %q", got, testChallenge)
			}
			if string(res.body) != want {
				t.Errorf("body %q, want %q", res.body, want)
			}
			if !uuidRE.MatchString(res.header.Get("x-ms-request-id")) {
				t.Errorf("x-ms-request-id %q is not a UUID", res.header.Get("x-ms-request-id"))
			}
			if len(calls) != 0 {
				t.Errorf("the core was called: %v", calls[0].method)
			}
		})
	}
	// A scheme in another case is still Bearer (RFC 7235 schemes are case-insensitive).
	if res := e.send(request{method: "GET", target: "/keys" + v, auth: ptr("bearer " + testToken)}); res.status != http.StatusOK {
		t.Errorf("lowercase bearer: status %d, body %s", res.status, res.body)
	}
}

func TestIdentityAndHealth(t *testing.T) {
	e := newEnv(t)
	res := e.send(request{method: "POST", target: "/tenant-1/oauth2/v2.0/token", auth: ptr("")})
	if res.status != http.StatusOK || string(res.body) != "identity:/tenant-1/oauth2/v2.0/token" {
		t.Errorf("identity path: %d %q", res.status, res.body)
	}
	if res.header.Get("WWW-Authenticate") != "" || res.header.Get("x-ms-request-id") != "" {
		t.Errorf("identity path got data-plane headers: %v", res.header)
	}

	res = e.send(request{method: "GET", target: "/healthz", auth: ptr("")})
	if res.status != http.StatusOK || string(res.body) != `{"status":"ok"}`+"\n" {
		t.Errorf("healthz: %d %q", res.status, res.body)
	}

	for _, tc := range []struct {
		state  string
		err    error
		status int
	}{
		{"Leader", nil, 200},
		{"Follower", nil, 200},
		{"Candidate", nil, 503},
		{"", rpcerr.Status(fmt.Errorf("closing: %w", fault.Unavailable)), 503},
	} {
		e.core.on("Pool/GetStatus", func(proto.Message) (proto.Message, error) {
			if tc.err != nil {
				return nil, tc.err
			}
			return &pb.PoolStatus{Name: "pool1", Activated: true, RaftState: tc.state, AppliedIndex: 12, Keys: 3}, nil
		})
		res := e.send(request{method: "GET", target: "/readyz", auth: ptr("")})
		if res.status != tc.status {
			t.Errorf("readyz %q: status %d, want %d; %s", tc.state, res.status, tc.status, res.body)
		}
		if tc.err == nil {
			want := fmt.Sprintf(`{"ready":%t,"name":"pool1","activated":true,"raftState":%q,"appliedIndex":12,"keys":3}`+"\n", tc.status == 200, tc.state)
			if string(res.body) != want {
				t.Errorf("readyz body %s, want %s", res.body, want)
			}
		}
		calls := e.core.reset()
		if len(calls) != 1 || calls[0].method != "Pool/GetStatus" {
			t.Fatalf("calls %v", calls)
		}
		if md := calls[0].md; len(md.Get("authorization")) != 0 || md.Get("x-ms-request-id")[0] != res.header.Get("x-ms-request-id") {
			t.Errorf("readyz metadata %v", md)
		}
	}
}

func TestAPIVersion(t *testing.T) {
	e := newEnv(t).withDefaults()
	for version := range apiVersions {
		if res := e.do("GET", "/keys/k1/?api-version="+version, ""); res.status != http.StatusOK {
			t.Errorf("api-version %s: status %d", version, res.status)
		}
	}
	// JS encodes the parameter's name.
	if res := e.do("GET", "/keys/k1/?api%2Dversion=2025-07-01", ""); res.status != http.StatusOK {
		t.Errorf("api%%2Dversion: status %d %s", res.status, res.body)
	}
	e.core.reset()
	for _, tc := range []struct{ target, msg string }{
		{"/keys/k1/?api-version=2099-01-01", "The specified version (2099-01-01) is not recognized. Consider using the latest supported version (2025-07-01)."},
		{"/keys/k1/", "The api-version query parameter is required. Consider using the latest supported version (2025-07-01)."},
		{"/keys/k1/?api-version=", "The api-version query parameter is required. Consider using the latest supported version (2025-07-01)."},
		{"/no/such/path?api-version=7", "The specified version (7) is not recognized. Consider using the latest supported version (2025-07-01)."},
		{"/keys/k1/?api-version=7.6;x=1", "The query string is malformed."},
	} {
		res := e.do("GET", tc.target, "")
		code, msg, _ := res.errorOf(t)
		want := tc.msg + " (Activity ID: " + res.header.Get("x-ms-request-id") + ")"
		if res.status != http.StatusBadRequest || code != "BadParameter" || msg != want {
			t.Errorf("%s: %d %s %q, want 400 BadParameter %q", tc.target, res.status, code, msg, want)
		}
	}
	if calls := e.core.reset(); len(calls) != 0 {
		t.Errorf("the core was called for a bad api-version")
	}
}

func TestRouting(t *testing.T) {
	e := newEnv(t).withDefaults()
	notRecovery := func(proto.Message) (proto.Message, error) {
		return nil, rpcerr.Status(rpcerr.New(fault.BadParameter, "BadParameter", "This pool is not in recovery mode."))
	}
	e.core.on("SecurityDomain/GetTransferKey", notRecovery)
	e.core.on("SecurityDomain/Upload", notRecovery)
	e.core.on("SecurityDomain/GetUploadStatus", func(proto.Message) (proto.Message, error) {
		return &pb.SecurityDomainStatus{Status: "Success"}, nil
	})
	const op = `{"alg":"ES256","value":"AQID"}`
	for _, tc := range []struct {
		method, path, body string
		status             int
		rpc                string // the core's method, "" for none
		name, version      string
	}{
		{"GET", "/keys/k1/", "", 200, "Keys/GetKey", "k1", ""},
		{"GET", "/keys/k1", "", 200, "Keys/GetKey", "k1", ""},
		{"GET", "//keys//k1//", "", 200, "Keys/GetKey", "k1", ""},
		{"GET", "/keys/k%31/", "", 200, "Keys/GetKey", "k1", ""},
		{"GET", "/keys/k1/" + ver1, "", 200, "Keys/GetKey", "k1", ver1},
		{"GET", "/keys/k1/not-a-version", "", 200, "Keys/GetKey", "k1", "not-a-version"},
		{"GET", "/keys/restore", "", 200, "Keys/GetKey", "restore", ""},
		{"POST", "/keys/k1/sign", op, 200, "Keys/Sign", "k1", ""},
		{"POST", "/keys/k1//sign", op, 200, "Keys/Sign", "k1", ""},
		{"POST", "/keys/k1/" + ver1 + "/sign", op, 200, "Keys/Sign", "k1", ver1},
		{"POST", "/keys/k1/" + ver1 + "/sign/", op, 200, "Keys/Sign", "k1", ver1},
		{"POST", "/keys/k1/Sign", op, 200, "Keys/Sign", "k1", ""},
		{"POST", "/keys/k1/encrypt", op, 200, "Keys/Encrypt", "k1", ""},
		{"POST", "/keys/k1/" + ver2 + "/encrypt", op, 200, "Keys/Encrypt", "k1", ver2},
		{"POST", "/keys/k1/decrypt", op, 200, "Keys/Decrypt", "k1", ""},
		{"POST", "/keys/k1/" + ver1 + "/decrypt", op, 200, "Keys/Decrypt", "k1", ver1},
		{"POST", "/keys/k1/wrapkey", op, 200, "Keys/WrapKey", "k1", ""},
		{"POST", "/keys/k1/" + ver1 + "/wrapkey", op, 200, "Keys/WrapKey", "k1", ver1},
		{"POST", "/keys/k1//unwrapkey", op, 200, "Keys/UnwrapKey", "k1", ""},
		{"POST", "/keys/k1/" + ver1 + "/unwrapkey", op, 200, "Keys/UnwrapKey", "k1", ver1},
		{"POST", "/keys/k1/verify", `{"alg":"ES256","digest":"AQID","value":"AQID"}`, 200, "Keys/Verify", "k1", ""},
		{"POST", "/keys/k1/" + ver1 + "/verify", `{"alg":"ES256","digest":"AQID","value":"AQID"}`, 200, "Keys/Verify", "k1", ver1},
		{"POST", "/keys/k1/create", `{"kty":"EC-HSM","crv":"P-256"}`, 200, "Keys/CreateKey", "k1", ""},
		{"PUT", "/keys/k1", `{"Hsm":true,"key":{"kty":"oct-HSM","k":"AQID"}}`, 200, "Keys/ImportKey", "k1", ""},
		{"PATCH", "/keys/k1/", `{"attributes":{"enabled":false}}`, 200, "Keys/UpdateKey", "k1", ""},
		{"PATCH", "/keys/k1/" + ver1, `{}`, 200, "Keys/UpdateKey", "k1", ver1},
		{"DELETE", "/keys/k1", "", 200, "Keys/DeleteKey", "k1", ""},
		{"GET", "/keys", "", 200, "Keys/ListKeys", "", ""},
		{"GET", "/keys/", "", 200, "Keys/ListKeys", "", ""},
		{"GET", "/keys/k1/versions", "", 200, "Keys/ListKeyVersions", "k1", ""},
		{"POST", "/keys/k1/backup", "", 200, "Keys/BackupKey", "k1", ""},
		{"POST", "/keys/restore", `{"value":"AQID"}`, 200, "Keys/RestoreKey", "", ""},
		{"POST", "/keys/k1/rotate", "", 200, "Keys/RotateKey", "k1", ""},
		{"GET", "/keys/k1/rotationpolicy", "", 200, "Keys/GetRotationPolicy", "k1", ""},
		{"PUT", "/keys/k1/rotationpolicy", `{"lifetimeActions":[]}`, 200, "Keys/SetRotationPolicy", "k1", ""},
		{"GET", "/deletedkeys", "", 200, "Keys/ListDeletedKeys", "", ""},
		{"GET", "/deletedkeys/k1", "", 200, "Keys/GetDeletedKey", "k1", ""},
		{"DELETE", "/deletedkeys/k1", "", 204, "Keys/PurgeDeletedKey", "k1", ""},
		{"POST", "/deletedkeys/k1/recover", "", 200, "Keys/RecoverDeletedKey", "k1", ""},
		{"POST", "/rng", `{"count":2}`, 200, "Keys/GetRandomBytes", "", ""},

		{"POST", "/keys/k1/release", `{"target":"x"}`, 400, "", "", ""},
		{"POST", "/keys/k1/" + ver1 + "/release", `{"target":"x"}`, 400, "", "", ""},
		{"GET", "/keys/k1/attestation", "", 400, "", "", ""},
		{"GET", "/keys/k1/" + ver1 + "/attestation", "", 400, "", "", ""},
		{"PUT", "/keys/k1/restore", `{}`, 400, "", "", ""},
		{"GET", "/securitydomain/upload", "", 400, "SecurityDomain/GetTransferKey", "", ""},
		{"POST", "/securitydomain/upload", `{"value":"x"}`, 400, "SecurityDomain/Upload", "", ""},
		{"GET", "/securitydomain/upload/pending", "", 200, "SecurityDomain/GetUploadStatus", "", ""},

		{"GET", "/keys/k1/create", "", 405, "", "", ""},
		{"POST", "/keys/k1", "", 405, "", "", ""},
		{"GET", "/nothing", "", 404, "", "", ""},
		{"GET", "/keys/k1/" + ver1 + "/sign/extra", "", 404, "", "", ""},
		{"GET", "/keys/k1/" + ver1 + "/" + ver2, "", 404, "", "", ""},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			res := e.do(tc.method, tc.path+v, tc.body)
			calls := e.core.reset()
			if res.status != tc.status {
				t.Fatalf("status %d, want %d; body %s", res.status, tc.status, res.body)
			}
			if tc.rpc == "" {
				if len(calls) != 0 {
					t.Fatalf("the core was called: %s", calls[0].method)
				}
				return
			}
			if len(calls) != 1 || calls[0].method != tc.rpc {
				t.Fatalf("calls %v, want one %s", calls, tc.rpc)
			}
			c := calls[0]
			if n, ok := c.req.(named); ok && n.GetName() != tc.name {
				t.Errorf("name %q, want %q", n.GetName(), tc.name)
			}
			if vv, ok := c.req.(versioned); ok && vv.GetVersion() != tc.version {
				t.Errorf("version %q, want %q", vv.GetVersion(), tc.version)
			}
			if got := c.md.Get("authorization"); len(got) != 1 || got[0] != "Bearer "+testToken {
				t.Errorf("authorization metadata %q", got)
			}
			if got := c.md.Get("x-ms-request-id"); len(got) != 1 || got[0] != res.header.Get("x-ms-request-id") {
				t.Errorf("x-ms-request-id metadata %q, header %q", got, res.header.Get("x-ms-request-id"))
			}
		})
	}

	res := e.do("POST", "/keys/k1"+v, "")
	if got := res.header.Get("Allow"); got != "PUT, GET, PATCH, DELETE" {
		t.Errorf("Allow %q", got)
	}
	if code, _, _ := res.errorOf(t); code != "BadParameter" {
		t.Errorf("405 code %q", code)
	}
	res = e.do("GET", "/nothing"+v, "")
	if code, _, _ := res.errorOf(t); code != "NotFound" {
		t.Errorf("404 code %q", code)
	}
}

func TestErrorMapping(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		name          string
		err           error
		status        int
		code, inner   string
		msg           string
		retryAfter    string
		wwwAuthHeader bool
	}{
		{"not found", rpcerr.Status(rpcerr.New(fault.NotFound, "KeyNotFound", "Key not found: k1")), 404, "KeyNotFound", "", "Key not found: k1", "", false},
		{"already exists", rpcerr.Status(rpcerr.New(fault.AlreadyExists, "", "exists")), 409, "Conflict", "", "exists", "", false},
		{"bad parameter", rpcerr.Status(rpcerr.New(fault.BadParameter, "", "bad alg")), 400, "BadParameter", "", "bad alg", "", false},
		{"unsupported", rpcerr.Status(rpcerr.New(fault.Unsupported, "", "no such curve")), 400, "BadParameter", "", "no such curve", "", false},
		{"unauthorized", rpcerr.Status(rpcerr.New(fault.Unauthorized, "", "token expired")), 401, "Unauthorized", "", "token expired", "", true},
		{"forbidden", rpcerr.Status(rpcerr.New(fault.Forbidden, "", "denied")), 403, "Forbidden", "", "denied", "", false},
		{"deleted name", rpcerr.Status(&rpcerr.Error{Kind: fault.Conflict, Code: "Conflict", Inner: "ObjectIsDeletedButRecoverable", Msg: "Key k1 is deleted"}), 409, "Conflict", "ObjectIsDeletedButRecoverable", "Key k1 is deleted", "", false},
		{"not leader", rpcerr.Status(fmt.Errorf("propose: %w", fault.NotLeader)), 503, "ServiceUnavailable", "", "propose: not leader", "1", false},
		{"unavailable", rpcerr.Status(&rpcerr.Error{Kind: fault.Unavailable, Msg: "busy", RetryAfter: 7}), 503, "ServiceUnavailable", "", "busy", "7", false},
		{"hsm failure", rpcerr.Status(fmt.Errorf("CKR_DEVICE_ERROR slot 3 pin 1234: %w", fault.HSMFailure)), 500, "InternalServerError", "", "the pool could not complete the request; see its log", "", false},
		{"throttled", status.Error(codes.ResourceExhausted, "slow down"), 429, "Throttled", "", "slow down", "", false},
		{"unknown code", status.Error(codes.DataLoss, "disk /dev/sda3 gone"), 500, "InternalServerError", "", "the pool could not complete the request; see its log", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.core.on("Keys/GetKey", func(proto.Message) (proto.Message, error) { return nil, tc.err })
			res := e.do("GET", "/keys/k1/"+v, "")
			if res.status != tc.status {
				t.Fatalf("status %d, want %d", res.status, tc.status)
			}
			code, msg, inner := res.errorOf(t)
			wantMsg := tc.msg + " (Activity ID: " + res.header.Get("x-ms-request-id") + ")"
			if code != tc.code || inner != tc.inner || msg != wantMsg {
				t.Errorf("got %s/%s %q, want %s/%s %q", code, inner, msg, tc.code, tc.inner, wantMsg)
			}
			if tc.inner == "" && strings.Contains(string(res.body), "innererror") {
				t.Errorf("innererror present: %s", res.body)
			}
			if got := res.header.Get("Retry-After"); got != tc.retryAfter {
				t.Errorf("Retry-After %q, want %q", got, tc.retryAfter)
			}
			if got := res.header.Get("WWW-Authenticate"); (got == testChallenge) != tc.wwwAuthHeader || (!tc.wwwAuthHeader && got != "") {
				t.Errorf("WWW-Authenticate %q", got)
			}
			if res.header.Get("x-ms-error-code") != "" {
				t.Errorf("x-ms-error-code sent; Go would prefer it over the body")
			}
			if ct := res.header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
				t.Errorf("Content-Type %q", ct)
			}
		})
	}
}

func TestBodyValidation(t *testing.T) {
	e := newEnv(t).withDefaults()
	for _, tc := range []struct {
		name, method, path, body string
		msg                      string // what the message must contain
	}{
		{"empty", "POST", "/keys/k1/create", "", "The request body is required"},
		{"null", "POST", "/keys/k1/create", "null", "must be a JSON object"},
		{"array", "POST", "/keys/k1/create", `[{"kty":"EC"}]`, "must be a JSON object"},
		{"truncated", "POST", "/keys/k1/create", `{"kty":`, "not valid JSON"},
		{"trailing data", "POST", "/keys/k1/create", `{"kty":"EC"} {}`, "not valid JSON"},
		{"string for string field", "POST", "/keys/k1/create", `{"kty":5}`, `"kty" has a JSON number where a string is expected`},
		{"string for int", "POST", "/keys/k1/create", `{"kty":"RSA","key_size":"2048"}`, `"key_size" has a JSON string where a 32-bit integer is expected`},
		{"fraction for int", "POST", "/keys/k1/create", `{"kty":"RSA","key_size":2048.5}`, `"key_size" has a JSON number 2048.5 where a 32-bit integer is expected`},
		{"int32 overflow", "POST", "/keys/k1/create", `{"kty":"RSA","public_exponent":4294967297}`, `"public_exponent"`},
		{"nested bool", "POST", "/keys/k1/create", `{"kty":"EC","attributes":{"enabled":"yes"}}`, `"attributes.enabled" has a JSON string where a boolean is expected`},
		{"time as float", "POST", "/keys/k1/create", `{"kty":"EC","attributes":{"exp":1.5}}`, `"attributes.exp" has a JSON number 1.5 where an integer is expected`},
		{"key_ops not array", "POST", "/keys/k1/create", `{"kty":"EC","key_ops":"sign"}`, `"key_ops" has a JSON string where an array is expected`},
		{"tag value", "PATCH", "/keys/k1", `{"tags":{"a":1}}`, `"tags" has a JSON number where a string is expected`},
		{"bad base64 k", "PUT", "/keys/k1", `{"key":{"kty":"oct","k":"!!"}}`, `"key.k" is not valid base64url`},
		{"number for base64", "POST", "/keys/k1/sign", `{"alg":"ES256","value":12}`, `"value" has a JSON number where a base64url string is expected`},
		{"bad base64 value", "POST", "/keys/k1/sign", `{"alg":"ES256","value":"a$b"}`, `"value" is not valid base64url`},
		{"bad base64 iv", "POST", "/keys/k1/decrypt", `{"alg":"A256GCM","value":"AQID","iv":"A"}`, `"iv" is not valid base64url`},
		{"bad base64 digest", "POST", "/keys/k1/verify", `{"alg":"ES256","digest":"*","value":"AQID"}`, `"digest" is not valid base64url`},
		{"bad restore blob", "POST", "/keys/restore", `{"value":"###"}`, `"value" is not valid base64url`},
		{"count as string", "POST", "/rng", `{"count":"4"}`, `"count" has a JSON string where a 32-bit integer is expected`},
		{"policy actions", "PUT", "/keys/k1/rotationpolicy", `{"lifetimeActions":{}}`, `"lifetimeActions" has a JSON object where an array is expected`},
		{"release policy data", "POST", "/keys/k1/create", `{"kty":"RSA","release_policy":{"data":"%%"}}`, `"release_policy.data" is not valid base64url`},
		{"sd no certificates type", "POST", "/securitydomain/download", `{"certificates":{},"required":2}`, `"certificates" has a JSON object where an array is expected`},
		{"sd missing x5c", "POST", "/securitydomain/download", `{"certificates":[{"kty":"RSA"}],"required":2}`, "certificates[0].x5c must hold"},
		{"sd bad x5c", "POST", "/securitydomain/download", `{"certificates":[{"x5c":["AQID"]},{"x5c":["no!"]}],"required":2}`, "certificates[1].x5c[0] is not valid base64"},
		{"sd required type", "POST", "/securitydomain/download", `{"certificates":[],"required":"2"}`, `"required" has a JSON string where a 32-bit integer is expected`},
		{"maxresults zero", "GET", "/keys?maxresults=0&x=", "", "maxresults must be an integer from 1 to 25"},
		{"maxresults 26", "GET", "/keys?maxresults=26&x=", "", "maxresults must be an integer from 1 to 25"},
		{"maxresults word", "GET", "/deletedkeys?maxresults=ten&x=", "", "maxresults must be an integer from 1 to 25"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := tc.path + v
			if strings.Contains(tc.path, "?") {
				target = tc.path + "&api-version=2025-07-01"
			}
			res := e.do(tc.method, target, tc.body)
			calls := e.core.reset()
			if res.status != http.StatusBadRequest {
				t.Fatalf("status %d, want 400; body %s", res.status, res.body)
			}
			code, msg, _ := res.errorOf(t)
			if code != "BadParameter" || !strings.Contains(msg, tc.msg) {
				t.Errorf("got %s %q, want BadParameter containing %q", code, msg, tc.msg)
			}
			if len(calls) != 0 {
				t.Errorf("the core was called: %s", calls[0].method)
			}
		})
	}

	// Unknown fields are ignored, as Azure does.
	if res := e.do("POST", "/keys/k1/create"+v, `{"kty":"EC","whatever":{"x":[1,"y"]},"hsmPlatform":"2"}`); res.status != 200 {
		t.Errorf("unknown fields: %d %s", res.status, res.body)
	}
	e.core.reset()
}

func TestBodyLimit(t *testing.T) {
	for _, tc := range []struct {
		name  string
		limit int64
		size  int
	}{
		{"configured", 1024, 1025},
		{"default", 0, 256<<10 + 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(c *Config) { c.MaxBodyBytes = tc.limit }).withDefaults()
			pad := tc.size - len(`{"kty":"EC","x":""}`)
			body := `{"kty":"EC","x":"` + strings.Repeat("a", pad) + `"}`
			res := e.do("POST", "/keys/k1/create"+v, body)
			if res.status != http.StatusRequestEntityTooLarge {
				t.Fatalf("status %d, want 413", res.status)
			}
			if code, msg, _ := res.errorOf(t); code != "BadParameter" || !strings.Contains(msg, "larger than") {
				t.Errorf("%s %q", code, msg)
			}
			if calls := e.core.reset(); len(calls) != 0 {
				t.Errorf("the core was called")
			}
			// One byte less fits.
			res = e.do("POST", "/keys/k1/create"+v, body[:len(body)-len(`a"}`)]+`"}`)
			if res.status != http.StatusOK {
				t.Errorf("body at the limit: status %d %s", res.status, res.body)
			}
		})
	}
}

func TestLogging(t *testing.T) {
	e := newEnv(t).withDefaults()
	res := e.send(request{method: "PUT", target: "/keys/k1" + v, body: `{"key":{"kty":"oct","k":"c2VjcmV0LWtleS1ieXRlcw"}}`})
	if res.status != 200 {
		t.Fatalf("status %d", res.status)
	}
	e.send(request{method: "GET", target: "/keys/k1" + v, auth: ptr("")})
	logs := e.log.String()
	for _, secret := range []string{"secret-part", testToken, "c2VjcmV0LWtleS1ieXRlcw", "secret-key-bytes"} {
		if strings.Contains(logs, secret) {
			t.Errorf("log holds %q:\n%s", secret, logs)
		}
	}
	lines := strings.Split(strings.TrimSpace(logs), "\n")
	if len(lines) != 2 {
		t.Fatalf("want one line per request, got:\n%s", logs)
	}
	for _, want := range []string{"msg=request", "method=PUT", "route=ImportKey", "status=200", "request_id=" + res.header.Get("x-ms-request-id"), "duration="} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("log line %q lacks %q", lines[0], want)
		}
	}
	if !strings.Contains(lines[1], "status=401") || !strings.Contains(lines[1], "level=DEBUG") {
		t.Errorf("log line %q", lines[1])
	}
}

func TestNew(t *testing.T) {
	ok := func() Config {
		return Config{
			Keys: pb.NewKeysClient(nil), SecurityDomain: pb.NewSecurityDomainClient(nil), Pool: pb.NewPoolClient(nil),
			Access: pb.NewAccessClient(nil), Principals: pb.NewPrincipalsClient(nil),
			Challenge: func(string) string { return testChallenge }, Resource: testResource,
		}
	}
	if _, err := New(ok()); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"no keys", func(c *Config) { c.Keys = nil }, "Keys"},
		{"no security domain", func(c *Config) { c.SecurityDomain = nil }, "SecurityDomain"},
		{"no pool", func(c *Config) { c.Pool = nil }, "Pool"},
		{"identity alone", func(c *Config) { c.Identity = http.NotFoundHandler() }, "OwnsIdentity"},
		{"owns alone", func(c *Config) { c.OwnsIdentity = func(string) bool { return false } }, "OwnsIdentity"},
		{"no challenge", func(c *Config) { c.Challenge = nil }, "Challenge"},
		{"empty challenge", func(c *Config) { c.Challenge = func(string) string { return "" } }, "Challenge"},
		{"negative body", func(c *Config) { c.MaxBodyBytes = -1 }, "MaxBodyBytes"},
		{"trailing slash", func(c *Config) { c.Resource = testResource + "/" }, "Resource"},
		{"http", func(c *Config) { c.Resource = "http://managedhsm.localhost" }, "Resource"},
		{"empty resource", func(c *Config) { c.Resource = "" }, "Resource"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ok()
			tc.mutate(&c)
			_, err := New(c)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %v, want one naming %s", err, tc.want)
			}
		})
	}
}

func TestRequestIDs(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := newRequestID()
		if !uuidRE.MatchString(id) || seen[id] {
			t.Fatalf("bad or repeated request ID %q", id)
		}
		seen[id] = true
	}
}
