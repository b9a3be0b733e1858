package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
)

// apiVersion is the api-version every request carries: the newest stable one.
const apiVersion = "2025-07-01"

// opKind is an operation hsmpool-load measures. The zero value is invalid.
type opKind int

const (
	opInvalid opKind = iota
	opSignP256
	opSignRSA2048
	opEncryptAES256GCM
	opCreate
	opCreateAES256
)

// opNames are the --op names, indexed by opKind.
var opNames = []string{
	opInvalid:          "",
	opSignP256:         "sign-p256",
	opSignRSA2048:      "sign-rsa2048",
	opEncryptAES256GCM: "encrypt-aes256gcm",
	opCreate:           "create",
	opCreateAES256:     "create-aes256",
}

func (o opKind) String() string {
	if o <= opInvalid || int(o) >= len(opNames) {
		return "op(" + strconv.Itoa(int(o)) + ")"
	}
	return opNames[o]
}

// parseOp returns the operation named s.
func parseOp(s string) (opKind, error) {
	for i, n := range opNames {
		if i > 0 && n == s {
			return opKind(i), nil
		}
	}
	return opInvalid, fmt.Errorf("unknown operation %q: want one of %s", s, strings.Join(opNames[1:], ", "))
}

// createParams is the body of POST /keys/{name}/create.
type createParams struct {
	Kty     string   `json:"kty"`
	KeySize int      `json:"key_size,omitempty"`
	Crv     string   `json:"crv,omitempty"`
	KeyOps  []string `json:"key_ops,omitempty"`
}

// opSpec is what an operation needs from the pool.
type opSpec struct {
	key    string       // the key it uses, made if missing; for opCreate, the prefix of the keys it makes
	create createParams // how to make that key
	action string       // the path's last segment: sign, encrypt or create
	alg    string       // the request's "alg"
	size   int          // bytes in the request's "value"
}

// specs are the operations' needs, indexed by opKind.
var specs = []opSpec{
	opSignP256: {key: "load-p256", action: "sign", alg: "ES256", size: 32,
		create: createParams{Kty: "EC-HSM", Crv: "P-256", KeyOps: []string{"sign", "verify"}}},
	opSignRSA2048: {key: "load-rsa2048", action: "sign", alg: "RS256", size: 32,
		create: createParams{Kty: "RSA-HSM", KeySize: 2048, KeyOps: []string{"sign", "verify"}}},
	opEncryptAES256GCM: {key: "load-aes256", action: "encrypt", alg: "A256GCM", size: 4096,
		create: createParams{Kty: "oct-HSM", KeySize: 256, KeyOps: []string{"encrypt", "decrypt"}}},
	opCreate: {key: "load-c", action: "create", create: createParams{Kty: "EC-HSM", Crv: "P-256"}},
	// AES-256, as OpenBao transit's default key type (aes256-gcm96), for comparing replicated creates.
	opCreateAES256: {key: "load-ca", action: "create", create: createParams{Kty: "oct-HSM", KeySize: 256}},
}

// isCreate reports whether op makes a new key with every request.
func (o opKind) isCreate() bool { return o == opCreate || o == opCreateAES256 }

// keyOpParams is the body of sign, encrypt and decrypt; keyOpResult is their answer.
type keyOpParams struct {
	Alg   string `json:"alg"`
	Value string `json:"value"`
	IV    string `json:"iv,omitempty"`
	Tag   string `json:"tag,omitempty"`
}

type keyOpResult struct {
	KID   string `json:"kid"`
	Value string `json:"value"`
	IV    string `json:"iv"`
	Tag   string `json:"tag"`
}

// jwk is the part of a key bundle's "key" that hsmpool-load reads; binary fields stay base64url.
type jwk struct {
	KID string `json:"kid"`
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	N   string `json:"n"`
	E   string `json:"e"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

var b64 = base64.RawURLEncoding

// target is a prepared operation: the requests its clients send.
type target struct {
	op opKind
	// path returns the path and query of request seq of client worker, below the pool's URL.
	path func(worker, seq int) string
	body []byte
	// field names the string member every good answer has, not empty: the signature or ciphertext ("value"), or
	// the new key's "kid".
	field string
	// probe sends one request of the operation through s and checks its answer: the signature verifies, the
	// ciphertext decrypts, the new key has the key type asked for.
	probe func(ctx context.Context, s *session) error
}

// session sends single requests to a pool, for setup and checks.
type session struct {
	base  string // the pool's URL without a trailing slash
	hc    *http.Client
	token string
}

// call sends a request with body (nil: none) and decodes a 200 answer into out (nil: ignore it). Any other
// answer is an *answerError.
func (s *session) call(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+s.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("%s %s: read the answer: %w", method, stripQuery(path), err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %w", method, stripQuery(path), newAnswerError(resp.StatusCode, b))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: the answer is not the JSON expected: %w", method, stripQuery(path), err)
		}
	}
	return nil
}

// keyPath returns the escaped path of a key's operation with the api-version, e.g.
// /keys/k1/0123.../sign?api-version=2025-07-01. Empty segments are left out.
func keyPath(segments ...string) string {
	var sb strings.Builder
	sb.WriteString("/keys")
	for _, s := range segments {
		if s != "" {
			sb.WriteByte('/')
			sb.WriteString(url.PathEscape(s))
		}
	}
	sb.WriteString("?api-version=" + apiVersion)
	return sb.String()
}

func stripQuery(path string) string {
	p, _, _ := strings.Cut(path, "?")
	return p
}

// prepare makes what op needs (its key, if the pool lacks it), checks one answer of it, and returns its target.
// runID makes the names of the keys a create operation makes unique.
func (s *session) prepare(ctx context.Context, op opKind, runID string) (target, error) {
	spec := specs[op]
	if op.isCreate() {
		body, err := json.Marshal(spec.create)
		if err != nil {
			return target{}, err
		}
		prefix := spec.key + "-" + runID + "-"
		var checks atomic.Int64
		t := target{op: op, body: body, field: "kid",
			path: func(worker, seq int) string {
				return keyPath(prefix+strconv.Itoa(worker)+"-"+strconv.Itoa(seq), "create")
			},
			probe: func(ctx context.Context, s *session) error {
				var bundle struct{ Key jwk }
				name := prefix + "check-" + strconv.FormatInt(checks.Add(1), 10)
				if err := s.call(ctx, http.MethodPost, keyPath(name, "create"), spec.create, &bundle); err != nil {
					return err
				}
				if bundle.Key.Kty != spec.create.Kty || bundle.Key.Crv != spec.create.Crv {
					return fmt.Errorf("%s: the pool made a key of kty %q, crv %q; want kty %q, crv %q",
						op, bundle.Key.Kty, bundle.Key.Crv, spec.create.Kty, spec.create.Crv)
				}
				return nil
			}}
		if err := t.probe(ctx, s); err != nil {
			return target{}, explainSetup(err)
		}
		return t, nil
	}

	key, err := s.ensureKey(ctx, spec)
	if err != nil {
		return target{}, explainSetup(err)
	}
	version := key.KID[strings.LastIndexByte(key.KID, '/')+1:]
	value := make([]byte, spec.size)
	_, _ = rand.Read(value)
	params := keyOpParams{Alg: spec.alg, Value: b64.EncodeToString(value)}
	path := keyPath(spec.key, version, spec.action)
	probe := func(ctx context.Context, s *session) error {
		var res keyOpResult
		if err := s.call(ctx, http.MethodPost, path, params, &res); err != nil {
			return err
		}
		if err := s.check(ctx, spec, key, version, value, res); err != nil {
			return fmt.Errorf("%s: the pool's answer is wrong: %w", op, err)
		}
		return nil
	}
	if err := probe(ctx, s); err != nil {
		return target{}, explainSetup(err)
	}
	body, err := json.Marshal(params)
	if err != nil {
		return target{}, err
	}
	return target{op: op, body: body, field: "value", path: func(int, int) string { return path }, probe: probe}, nil
}

// ensureKey returns the public part of spec's key, making the key if the pool has none of that name.
func (s *session) ensureKey(ctx context.Context, spec opSpec) (jwk, error) {
	var bundle struct{ Key jwk }
	err := s.call(ctx, http.MethodGet, keyPath(spec.key), nil, &bundle)
	var ae *answerError
	if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
		err = s.call(ctx, http.MethodPost, keyPath(spec.key, "create"), spec.create, &bundle)
	}
	if err != nil {
		return jwk{}, err
	}
	k := bundle.Key
	if k.Kty != spec.create.Kty || k.Crv != spec.create.Crv || !strings.Contains(k.KID, "/keys/"+spec.key+"/") {
		return jwk{}, fmt.Errorf("key %q: the pool has it as kty %q, crv %q, kid %q; want kty %q, crv %q: delete and purge it, or use another pool",
			spec.key, k.Kty, k.Crv, k.KID, spec.create.Kty, spec.create.Crv)
	}
	return k, nil
}

// check verifies one answer: a signature against the key's public key, an encryption by decrypting it.
func (s *session) check(ctx context.Context, spec opSpec, key jwk, version string, value []byte, res keyOpResult) error {
	out, err := b64.DecodeString(res.Value)
	if err != nil {
		return fmt.Errorf("value is not base64url: %w", err)
	}
	switch spec.alg {
	case "ES256":
		pub, err := ecPublicKey(key)
		if err != nil {
			return err
		}
		if len(out) != 64 {
			return fmt.Errorf("ES256 signature of %d bytes, want 64", len(out))
		}
		r, ss := new(big.Int).SetBytes(out[:32]), new(big.Int).SetBytes(out[32:])
		if !ecdsa.Verify(pub, value, r, ss) {
			return errors.New("the ES256 signature does not verify")
		}
	case "RS256":
		pub, err := rsaPublicKey(key)
		if err != nil {
			return err
		}
		if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, value, out); err != nil {
			return fmt.Errorf("the RS256 signature does not verify: %w", err)
		}
	case "A256GCM":
		if len(out) != len(value) {
			return fmt.Errorf("A256GCM ciphertext of %d bytes for %d bytes of plaintext", len(out), len(value))
		}
		var plain keyOpResult
		if err := s.call(ctx, http.MethodPost, keyPath(spec.key, version, "decrypt"),
			keyOpParams{Alg: spec.alg, Value: res.Value, IV: res.IV, Tag: res.Tag}, &plain); err != nil {
			return fmt.Errorf("decrypt it: %w", err)
		}
		if got, err := b64.DecodeString(plain.Value); err != nil || !bytes.Equal(got, value) {
			return errors.New("decrypting the ciphertext does not give the plaintext back")
		}
	default:
		return fmt.Errorf("no check for %s", spec.alg)
	}
	return nil
}

func ecPublicKey(k jwk) (*ecdsa.PublicKey, error) {
	x, errX := b64.DecodeString(k.X)
	y, errY := b64.DecodeString(k.Y)
	if errX != nil || errY != nil || len(x) != 32 || len(y) != 32 {
		return nil, fmt.Errorf("key %s: x and y are not 32 bytes of base64url", k.KID)
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
	if err != nil {
		return nil, fmt.Errorf("key %s: %w", k.KID, err)
	}
	return pub, nil
}

func rsaPublicKey(k jwk) (*rsa.PublicKey, error) {
	n, errN := b64.DecodeString(k.N)
	e, errE := b64.DecodeString(k.E)
	if errN != nil || errE != nil || len(e) == 0 || len(e) > 4 {
		return nil, fmt.Errorf("key %s: n and e are not base64url", k.KID)
	}
	return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}, nil
}

// newRunID returns 8 random hex digits that name one run's keys.
func newRunID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// answerError is an answer of the pool other than 200: its status and the code and message of the Azure error
// envelope {"error":{"code","message"}}, when it has one.
type answerError struct {
	Status  int
	Code    string
	Message string
}

func newAnswerError(status int, body []byte) *answerError {
	e := &answerError{Status: status}
	var env struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &env) == nil {
		e.Code, e.Message = env.Error.Code, env.Error.Message
	}
	if len(e.Message) > 300 {
		e.Message = e.Message[:300] + "..."
	}
	return e
}

func (e *answerError) Error() string {
	s := fmt.Sprintf("HTTP %d %s", e.Status, http.StatusText(e.Status))
	if e.Code != "" {
		s += ": " + e.Code
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// explainSetup adds hints to an error of the setup that the user can do something about.
func explainSetup(err error) error {
	var ae *answerError
	if !errors.As(err, &ae) {
		return err
	}
	switch {
	case ae.Status == http.StatusConflict && strings.Contains(ae.Message, "not activated"):
		return withHints(err, "the pool is not activated: download its security domain first, with "+
			`"hsmpool sd download", "az keyvault security-domain download" or "hsmpool-load activate"`)
	case ae.Status == http.StatusUnauthorized:
		return withHints(err, "the pool did not accept the token: is the client file this pool's?")
	case ae.Status == http.StatusForbidden:
		return withHints(err, "the client file's principal may not use keys; use the administrator's (DATA_DIR/client.json of hsmpoold dev)")
	}
	return err
}
