package audit

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// Outcome is how a request ended. The zero value is not valid: Record refuses it.
type Outcome string

// The outcomes of a request.
const (
	// OutcomeSuccess is a request that did what it was asked.
	OutcomeSuccess Outcome = "success"
	// OutcomeDenied is a request refused for want of authentication or permission (401, 403).
	OutcomeDenied Outcome = "denied"
	// OutcomeFailed is any other failure: bad parameters, missing key, HSM failure.
	OutcomeFailed Outcome = "failed"
)

func (o Outcome) valid() bool {
	return o == OutcomeSuccess || o == OutcomeDenied || o == OutcomeFailed
}

// Entry is one request, as the audit log records it. Its fields are the only things an audit line can say: there is
// deliberately no field for a message, a body or a header, where key material or a token could end up.
type Entry struct {
	// Time is when the request arrived; zero means when Record is called. It is written in UTC with nanoseconds.
	Time time.Time
	// RequestID is the request's ID, as returned to the client (x-ms-request-id).
	RequestID string
	// Principal is the object ID of the caller; empty when the caller was not authenticated.
	Principal string
	// PrincipalName is the caller's display name, when known.
	PrincipalName string
	// ClientIP is the caller's address, when known.
	ClientIP string
	// Operation names the request, as the caller of Record decides: the gRPC method's short name ("Sign") or a
	// REST-ish name.
	Operation string
	// Action is the data action the request needed ("Microsoft.KeyVault/managedHsm/keys/sign/action"); empty for
	// public calls.
	Action string
	// Scope is the scope the action was checked on: "/", "/keys" or "/keys/NAME".
	Scope string
	// Key is the key's name, when the request is about one.
	Key string
	// Version is the key's version, when the request names one.
	Version string
	// Outcome is how the request ended; required.
	Outcome Outcome
	// Status is the HTTP-style status code of the answer: 200, 403...
	Status int
	// ErrorCode is the Azure error code of a request that did not succeed ("Forbidden", "KeyNotFound").
	ErrorCode string
	// Duration is how long the request took, in microseconds.
	Duration int64
}

// timeLayout is RFC 3339 with exactly nine digits of fraction, so that lines of one day have the same width and sort
// by time as text.
const timeLayout = "2006-01-02T15:04:05.000000000Z07:00"

// maxLine is the longest line Record writes and Verify reads, newline excluded.
const maxLine = 64 << 10

// appendLine appends the line for e, with seq and prev, to b, without the newline. The field order is fixed, and
// fields that are documented optional are left out when empty.
func appendLine(b []byte, seq uint64, prev *[32]byte, e *Entry) []byte {
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, `,"prev":"`...)
	b = appendHex(b, prev[:])
	b = append(b, `","time":"`...)
	b = e.Time.UTC().AppendFormat(b, timeLayout)
	b = append(b, '"')
	b = appendField(b, "requestId", e.RequestID, false)
	b = appendField(b, "principal", e.Principal, false)
	b = appendField(b, "principalName", e.PrincipalName, true)
	b = appendField(b, "clientIp", e.ClientIP, true)
	b = appendField(b, "operation", e.Operation, false)
	b = appendField(b, "action", e.Action, true)
	b = appendField(b, "scope", e.Scope, false)
	b = appendField(b, "key", e.Key, true)
	b = appendField(b, "version", e.Version, true)
	b = appendField(b, "outcome", string(e.Outcome), false)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(e.Status), 10)
	b = appendField(b, "errorCode", e.ErrorCode, true)
	b = append(b, `,"durationUs":`...)
	b = strconv.AppendInt(b, e.Duration, 10)
	return append(b, '}')
}

// appendField appends ,"name":"value" to b; nothing if omitEmpty and value is empty.
func appendField(b []byte, name, value string, omitEmpty bool) []byte {
	if omitEmpty && value == "" {
		return b
	}
	b = append(b, `,"`...)
	b = append(b, name...)
	b = append(b, `":`...)
	return appendString(b, value)
}

const hexDigits = "0123456789abcdef"

func appendHex(b, src []byte) []byte {
	for _, c := range src {
		b = append(b, hexDigits[c>>4], hexDigits[c&0xf])
	}
	return b
}

// appendString appends s to b as a JSON string. Quotes, backslashes and control characters are escaped, so a value
// can neither end the line nor the field; so are U+2028 and U+2029, as encoding/json does; invalid UTF-8 becomes
// U+FFFD. The result is the one form Verify accepts for the string (see canonical).
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, "\uFFFD"...) // the character itself, as the decoder of Verify gives it back
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
