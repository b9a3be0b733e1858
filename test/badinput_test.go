package test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
)

// TestBadInput sends malformed requests through the real stack: each gets a clear error in the
// Azure envelope with the right status, and the pool's keys do not change.
func TestBadInput(t *testing.T) {
	p := startPool(t)
	p.activate()
	k, err := p.keys.CreateKey(ctx, "k1", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeECHSM)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ver := k.Key.KID.Version()
	tok := p.token()
	const v = "?api-version=2025-07-01"

	big := bytes.Repeat([]byte("a"), 2<<20)
	cases := []struct {
		name, method, path, body string
		raw                      []byte
		status                   int
		code, msg                string // msg: a substring of error.message
	}{
		{"malformed JSON", "POST", "/keys/k2/create" + v, `{"kty":"EC-HSM",`, nil, 400, "BadParameter", ""},
		{"not an object", "POST", "/keys/k2/create" + v, `["EC-HSM"]`, nil, 400, "BadParameter", ""},
		{"wrong field type", "POST", "/keys/k2/create" + v, `{"kty":"RSA-HSM","key_size":"2048"}`, nil, 400, "BadParameter", "key_size"},
		{"unknown kty", "POST", "/keys/k2/create" + v, `{"kty":"DSA"}`, nil, 400, "BadParameter", "DSA"},
		{"bad RSA size", "POST", "/keys/k2/create" + v, `{"kty":"RSA-HSM","key_size":1024}`, nil, 400, "BadParameter", "1024"},
		{"bad curve", "POST", "/keys/k2/create" + v, `{"kty":"EC-HSM","crv":"P-192"}`, nil, 400, "BadParameter", "P-192"},
		{"bad key_ops", "POST", "/keys/k2/create" + v, `{"kty":"EC-HSM","key_ops":["encrypt"]}`, nil, 400, "BadParameter", "encrypt"},
		{"invalid name", "POST", "/keys/bad_name/create" + v, `{"kty":"EC-HSM"}`, nil, 400, "BadParameter", "bad_name"},
		{"name too long", "POST", "/keys/" + strings.Repeat("n", 128) + "/create" + v, `{"kty":"EC-HSM"}`, nil, 400, "BadParameter", ""},
		{"bad base64", "POST", "/keys/k1/" + ver + "/sign" + v, `{"alg":"ES256","value":"!!!not base64!!!"}`, nil, 400, "BadParameter", "value"},
		{"wrong alg for the key", "POST", "/keys/k1/sign" + v, `{"alg":"RS256","value":"` + strings.Repeat("A", 43) + `"}`, nil, 400, "BadParameter", "RS256"},
		{"unknown alg", "POST", "/keys/k1/sign" + v, `{"alg":"ES257","value":"` + strings.Repeat("A", 43) + `"}`, nil, 400, "BadParameter", "ES257"},
		{"wrong digest length", "POST", "/keys/k1/sign" + v, `{"alg":"ES256","value":"AAAA"}`, nil, 400, "BadParameter", "digest"},
		{"missing alg", "POST", "/keys/k1/sign" + v, `{"value":"AAAA"}`, nil, 400, "BadParameter", "alg"},
		{"oversized body", "POST", "/keys/k2/create" + v, "", big, 413, "", ""},
		{"unknown api-version", "GET", "/keys?api-version=1999-01-01", "", nil, 400, "BadParameter", "1999-01-01"},
		{"missing api-version", "GET", "/keys", "", nil, 400, "BadParameter", "api-version"},
		{"unknown key", "GET", "/keys/nope/" + v, "", nil, 404, "KeyNotFound", "nope"},
		{"unknown path", "GET", "/secrets/s1" + v, "", nil, 404, "", ""},
		{"random count", "POST", "/rng" + v, `{"count":0}`, nil, 400, "BadParameter", "count"},
		{"short rotation", "PUT", "/keys/k1/rotationpolicy" + v, `{"lifetimeActions":[{"trigger":{"timeAfterCreate":"P7D"},"action":{"type":"Rotate"}}]}`, nil, 400, "BadParameter", "28"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body := tc.raw
			if body == nil {
				body = []byte(tc.body)
			}
			r := p.do(tc.method, tc.path, tok, bytes.NewReader(body))
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			if !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") || !bytes.HasPrefix(r.body, []byte(`{"error":{`)) {
				t.Fatalf("not an Azure error envelope: %s %s", r.header.Get("Content-Type"), r.body)
			}
			if tc.code != "" && r.errorCode() != tc.code {
				t.Errorf("code %q, want %q: %s", r.errorCode(), tc.code, r.body)
			}
			if tc.msg != "" && !bytes.Contains(r.body, []byte(tc.msg)) {
				t.Errorf("message does not mention %q: %s", tc.msg, r.body)
			}
		})
	}

	// Nothing was created, and k1 is as it was.
	var names []string
	for pg := p.keys.NewListKeyPropertiesPager(nil); pg.More(); {
		page, err := pg.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range page.Value {
			names = append(names, it.KID.Name())
		}
	}
	if len(names) != 1 || names[0] != "k1" {
		t.Errorf("keys after the bad requests: %v, want [k1]", names)
	}
	got, err := p.keys.GetKey(ctx, "k1", "", nil)
	if err != nil || got.Key.KID.Version() != ver {
		t.Errorf("k1 changed: %v %v", got.Key.KID, err)
	}
	if _, err := p.keys.GetKeyRotationPolicy(ctx, "k1", nil); err != nil {
		t.Error(err)
	}
	if r := p.do("GET", "/keys/k1/rotationpolicy"+v, tok, nil); !bytes.Contains(r.body, []byte(`"lifetimeActions":[]`)) {
		t.Errorf("the refused rotation policy was stored: %s", r.body)
	}
}
