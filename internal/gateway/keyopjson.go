package gateway

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
)

// The key operations (sign, encrypt and the rest) are most of a pool's traffic, and their
// bodies are small flat objects of strings. Decoding and encoding them with reflection cost
// about a tenth of the daemon's CPU per ES256 signature, so they have a fast path here. It
// takes only the plain shape every SDK sends and leaves everything else, errors included, to
// encoding/json, so that what is accepted and how a refusal is worded do not change.

// parseKeyOp decodes body into p if it is a JSON object whose members are all plain strings
// (no escapes, ASCII) named exactly as keyOpParams names them, and its base64 values decode.
// It reports false, and leaves p untouched, for anything else.
func parseKeyOp(body []byte, p *keyOpParams) bool {
	var out keyOpParams
	i := skipSpace(body, 0)
	if i == len(body) || body[i] != '{' {
		return false
	}
	for i++; ; {
		name, j, ok := plainString(body, skipSpace(body, i))
		if !ok {
			return false
		}
		j = skipSpace(body, j)
		if j == len(body) || body[j] != ':' {
			return false
		}
		val, j, ok := plainString(body, skipSpace(body, j+1))
		if !ok {
			return false
		}
		var dst *b64
		switch string(name) {
		case "alg":
			out.Alg = string(val)
		case "value":
			dst = &out.Value
		case "iv":
			dst = &out.IV
		case "aad":
			dst = &out.AAD
		case "tag":
			dst = &out.Tag
		case "digest":
			dst = &out.Digest
		default:
			return false
		}
		if dst != nil {
			b, err := decodeBase64Bytes(val)
			if err != nil {
				return false
			}
			*dst = b
		}
		i = skipSpace(body, j)
		if i == len(body) {
			return false
		}
		if body[i] == '}' {
			break
		}
		if body[i] != ',' {
			return false
		}
		i++
	}
	if skipSpace(body, i+1) != len(body) {
		return false
	}
	*p = out
	return true
}

// skipSpace returns the index of the first byte at or after i that is not JSON whitespace.
func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// plainString reads the JSON string at b[i:] if it needs no unescaping: printable ASCII without
// a backslash. It returns its contents and the index after its closing quote.
func plainString(b []byte, i int) (s []byte, next int, ok bool) {
	if i == len(b) || b[i] != '"' {
		return nil, 0, false
	}
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return b[i+1 : j], j + 1, true
		case c < 0x20 || c >= 0x7f || c == '\\':
			return nil, 0, false
		}
	}
	return nil, 0, false
}

// appendJSON appends r as json.Encoder (SetEscapeHTML(false)) encodes it, newline included.
func (r *keyOpResult) appendJSON(b []byte) []byte {
	b = append(b, `{"kid":`...)
	b = appendString(b, r.KID)
	b = appendB64(append(b, `,"value":`...), r.Value)
	if len(r.IV) > 0 {
		b = appendB64(append(b, `,"iv":`...), r.IV)
	}
	if len(r.Tag) > 0 {
		b = appendB64(append(b, `,"tag":`...), r.Tag)
	}
	if len(r.AAD) > 0 {
		b = appendB64(append(b, `,"aad":`...), r.AAD)
	}
	return append(b, "}\n"...)
}

func appendB64(b []byte, v []byte) []byte {
	b = append(b, '"')
	b = base64.RawURLEncoding.AppendEncode(b, v)
	return append(b, '"')
}

// appendString appends s as a JSON string the way json.Encoder with SetEscapeHTML(false) does.
// A kid is printable ASCII (its host and path are escaped), so the slow path is for safety only.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			var buf bytes.Buffer
			enc := json.NewEncoder(&buf)
			enc.SetEscapeHTML(false)
			_ = enc.Encode(s) // a string always encodes
			return append(b, bytes.TrimSuffix(buf.Bytes(), []byte("\n"))...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
