package gateway

import (
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// FuzzDecodeJSON feeds request bodies to every request model: decoding never panics, fails only
// with a 400 in the Azure envelope, and what decodes re-encodes.
func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{
		`{"kty":"EC-HSM","crv":"P-256","key_ops":["sign"],"attributes":{"enabled":true,"exp":1800000000},"tags":{"a":"b"}}`,
		`{"Hsm":true,"key":{"kty":"RSA","n":"_-4","e":"AQAB","d":"+/8="}}`,
		`{"alg":"A256GCM","value":"aGVsbG8","iv":"AAEC","aad":"YWFk","tag":"AwQ="}`,
		`{"lifetimeActions":[{"action":{"type":"rotate"},"trigger":{"timeAfterCreate":"P90D"}}],"attributes":{"expiryTime":"P2Y"}}`,
		`{"certificates":[{"x5c":["MIIB"]},{"value":{"x5c":["MIIC"]}}],"required":2}`,
		`{"storageResourceUri":"https://a.blob.core.windows.net/c","token":"sv=1","useManagedIdentity":false}`,
		`{"sasTokenParameters":{"storageResourceUri":"file:///tmp"},"folderToRestore":"f","folder":"g"}`,
		`{"count":16}`, `{"value":null}`, `{"tags":{"a":1}}`, `{`, `[]`, `null`, ``, "\x00",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, v := range []any{
			&keyParams{}, &importParams{}, &keyOpParams{}, &blob{}, &randomParams{}, &rotationPolicy{}, &sdDownloadParams{},
			&sasParams{}, &restoreParams{}, &keyRestoreParams{},
		} {
			err := decodeJSON(body, v)
			if err != nil {
				var ae *apiError
				if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest || ae.Code != "BadParameter" {
					t.Fatalf("%T: error %v is not a 400 BadParameter", v, err)
				}
				continue
			}
			if _, err := json.Marshal(v); err != nil {
				t.Fatalf("%T: decoded but does not encode: %v", v, err)
			}
		}
	})
}

// FuzzMatch routes arbitrary paths: no panic, a match has the path's shape, and a version is
// never an operation word.
func FuzzMatch(f *testing.F) {
	for _, s := range []string{"/keys/k1/", "/keys/k1//sign", "/keys/k1/" + ver1 + "/sign", "//keys/%2F/x", "/keys/restore", "/%zz", "/deletedkeys/a/recover"} {
		f.Add("POST", s)
		f.Add("GET", s)
	}
	f.Fuzz(func(t *testing.T, method, path string) {
		c := &call{}
		rt, allow, found := match(c, method, path)
		if rt != nil {
			if !found || rt.method != method || len(allow) != 0 {
				t.Fatalf("match %q %q: route %s found=%t allow=%v", method, path, rt.name, found, allow)
			}
			if reservedOps[strings.ToLower(c.version)] {
				t.Fatalf("match %q: version %q is an operation", path, c.version)
			}
		} else if found && len(allow) == 0 {
			t.Fatalf("match %q %q: found without a method", method, path)
		}
	})
}

// FuzzParseKeyOp checks the fast path of the key operations against encoding/json: whatever
// parseKeyOp takes, decodeJSON takes too, with the same result.
func FuzzParseKeyOp(f *testing.F) {
	for _, s := range []string{
		`{"alg":"ES256","value":"47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"}`,
		` { "alg" : "A256GCM" , "value" : "aGVsbG8=", "iv":"AAEC","aad":"YWFk","tag":"AwQ" } `,
		`{"alg":"RS256","digest":"+/8=","value":""}`, `{"alg":"ES256","alg":"ES384"}`, `{"ALG":"ES256"}`,
		`{"alg":"E\u0053256"}`, `{"value":"!!"}`, `{"alg":"ES256",}`, `{"alg":"ES256"} x`, `{}`, `{"alg":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var fast keyOpParams
		if !parseKeyOp(body, &fast) {
			if !reflect.DeepEqual(fast, keyOpParams{}) {
				t.Fatalf("parseKeyOp(%q) failed but set %+v", body, fast)
			}
			return
		}
		var slow keyOpParams
		if err := decodeJSON(body, &slow); err != nil {
			t.Fatalf("parseKeyOp took %q, encoding/json refuses it: %v", body, err)
		}
		if !reflect.DeepEqual(fast, slow) {
			t.Fatalf("%q: parseKeyOp gives %+v, encoding/json %+v", body, fast, slow)
		}
	})
}
