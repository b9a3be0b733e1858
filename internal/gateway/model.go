package gateway

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"reflect"
	"strings"

	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

// The Azure JSON models (azure-mhsm-api.md §3.2, §3.3, §5.1) and their mapping to the protobuf
// messages of the core. Field names are Azure's exactly; absent fields are omitted, never null,
// and times are integer Unix seconds.

// b64 is a "format: base64url" field. It is written unpadded, which Go's azcore requires, and
// read padded or not, in the URL or the standard alphabet, as clients differ.
type b64 []byte

var b64Type = reflect.TypeFor[b64]()

func (b b64) MarshalJSON() ([]byte, error) {
	out := make([]byte, 0, base64.RawURLEncoding.EncodedLen(len(b))+2)
	out = append(out, '"')
	out = base64.RawURLEncoding.AppendEncode(out, b)
	return append(out, '"'), nil
}

// UnmarshalJSON reports errors as *json.UnmarshalTypeError so that encoding/json fills in the
// field's path, which decodeJSON names in the answer.
func (b *b64) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		return nil
	}
	// Fast path for the plain quoted string every SDK sends: decode in place, without a
	// string copy (4 KiB payloads spent a fifth of their time in JSON and base64).
	if n := len(data); n >= 2 && data[0] == '"' && data[n-1] == '"' && bytes.IndexByte(data[1:n-1], '\\') < 0 {
		v, err := decodeBase64Bytes(data[1 : n-1])
		if err != nil {
			return &json.UnmarshalTypeError{Value: "string", Type: b64Type}
		}
		*b = v
		return nil
	}
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return &json.UnmarshalTypeError{Value: jsonKind(data), Type: b64Type}
	}
	v, err := decodeBase64(s)
	if err != nil {
		return &json.UnmarshalTypeError{Value: "string", Type: b64Type}
	}
	*b = v
	return nil
}

// decodeBase64 accepts base64 and base64url, padded or not.
func decodeBase64(s string) ([]byte, error) { return decodeBase64Bytes([]byte(s)) }

func decodeBase64Bytes(in []byte) ([]byte, error) {
	in = bytes.TrimRight(in, "=")
	if bytes.ContainsAny(in, "+/") {
		in = bytes.Map(func(r rune) rune {
			switch r {
			case '+':
				return '-'
			case '/':
				return '_'
			}
			return r
		}, in)
	}
	out := make([]byte, base64.RawURLEncoding.DecodedLen(len(in)))
	n, err := base64.RawURLEncoding.Decode(out, in)
	return out[:n], err
}

// jsonKind names the JSON type of a value as encoding/json does in UnmarshalTypeError.Value.
func jsonKind(data []byte) string {
	switch data[0] {
	case '"':
		return "string"
	case '{':
		return "object"
	case '[':
		return "array"
	case 't', 'f':
		return "bool"
	}
	return "number"
}

// jsonTypeName says what JSON a Go type of a request model expects.
func jsonTypeName(t reflect.Type) string {
	if t == b64Type {
		return "a base64url string"
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int32:
		return "a 32-bit integer"
	case reflect.Int, reflect.Int64:
		return "an integer"
	case reflect.Slice, reflect.Array:
		return "an array"
	}
	return "an object"
}

// keyAttributes is KeyAttributes. In requests only enabled, nbf, exp and exportable are used.
type keyAttributes struct {
	Enabled         *bool  `json:"enabled,omitempty"`
	NotBefore       *int64 `json:"nbf,omitempty"`
	Expires         *int64 `json:"exp,omitempty"`
	Created         int64  `json:"created,omitempty"`
	Updated         int64  `json:"updated,omitempty"`
	RecoverableDays int32  `json:"recoverableDays,omitempty"`
	RecoveryLevel   string `json:"recoveryLevel,omitempty"`
	Exportable      *bool  `json:"exportable,omitempty"`
}

func (a *keyAttributes) proto() *pb.KeyAttributes {
	if a == nil {
		return nil
	}
	return &pb.KeyAttributes{Enabled: a.Enabled, NotBefore: a.NotBefore, Expires: a.Expires, Exportable: a.Exportable}
}

func attributesJSON(a *pb.KeyAttributes) *keyAttributes {
	if a == nil {
		return nil
	}
	return &keyAttributes{
		Enabled: a.Enabled, NotBefore: a.NotBefore, Expires: a.Expires, Created: a.Created, Updated: a.Updated,
		RecoverableDays: a.RecoverableDays, RecoveryLevel: a.RecoveryLevel, Exportable: a.Exportable,
	}
}

// releasePolicy is KeyReleasePolicy.
type releasePolicy struct {
	ContentType string `json:"contentType,omitempty"`
	Immutable   bool   `json:"immutable,omitempty"`
	Data        b64    `json:"data,omitempty"`
}

func (p *releasePolicy) proto() *pb.ReleasePolicy {
	if p == nil {
		return nil
	}
	return &pb.ReleasePolicy{ContentType: p.ContentType, Immutable: p.Immutable, Data: p.Data}
}

func releasePolicyJSON(p *pb.ReleasePolicy) *releasePolicy {
	if p == nil {
		return nil
	}
	return &releasePolicy{ContentType: p.ContentType, Immutable: p.Immutable, Data: p.Data}
}

// jsonWebKey is JsonWebKey: with private parts in an import, public parts only in answers.
type jsonWebKey struct {
	KID    string   `json:"kid,omitempty"`
	Kty    string   `json:"kty,omitempty"`
	KeyOps []string `json:"key_ops,omitempty"`
	N      b64      `json:"n,omitempty"`
	E      b64      `json:"e,omitempty"`
	D      b64      `json:"d,omitempty"`
	DP     b64      `json:"dp,omitempty"`
	DQ     b64      `json:"dq,omitempty"`
	QI     b64      `json:"qi,omitempty"`
	P      b64      `json:"p,omitempty"`
	Q      b64      `json:"q,omitempty"`
	K      b64      `json:"k,omitempty"`
	KeyHSM b64      `json:"key_hsm,omitempty"`
	Crv    string   `json:"crv,omitempty"`
	X      b64      `json:"x,omitempty"`
	Y      b64      `json:"y,omitempty"`
}

func (k *jsonWebKey) proto() *pb.JsonWebKey {
	if k == nil {
		return nil
	}
	return &pb.JsonWebKey{
		Kty: k.Kty, KeyOps: k.KeyOps, N: k.N, E: k.E, D: k.D, Dp: k.DP, Dq: k.DQ, Qi: k.QI, P: k.P, Q: k.Q,
		K: k.K, KeyHsm: k.KeyHSM, Crv: k.Crv, X: k.X, Y: k.Y,
	}
}

// wipe clears the private parts, and with them the protobuf message that shares their arrays
// (best effort: gRPC has made its own copy on the wire).
func (k *jsonWebKey) wipe() {
	if k == nil {
		return
	}
	for _, b := range []b64{k.D, k.DP, k.DQ, k.QI, k.P, k.Q, k.K, k.KeyHSM} {
		clear(b)
	}
}

// deletedInfo is what DeletedKeyBundle and DeletedKeyItem add.
type deletedInfo struct {
	RecoveryID         string `json:"recoveryId,omitempty"`
	DeletedDate        int64  `json:"deletedDate,omitempty"`
	ScheduledPurgeDate int64  `json:"scheduledPurgeDate,omitempty"`
}

// keyBundle is KeyBundle, and DeletedKeyBundle when deletedInfo is set.
type keyBundle struct {
	Key           jsonWebKey        `json:"key"`
	Attributes    *keyAttributes    `json:"attributes,omitempty"`
	Tags          map[string]string `json:"tags,omitempty"`
	Managed       bool              `json:"managed,omitempty"`
	ReleasePolicy *releasePolicy    `json:"release_policy,omitempty"`
	deletedInfo
}

// keyItem is KeyItem, and DeletedKeyItem when deletedInfo is set.
type keyItem struct {
	KID        string            `json:"kid"`
	Attributes *keyAttributes    `json:"attributes,omitempty"`
	Tags       map[string]string `json:"tags,omitempty"`
	Managed    bool              `json:"managed,omitempty"`
	deletedInfo
}

// keyList is KeyListResult and DeletedKeyListResult. Value is never null: some clients range
// over it without a check.
type keyList struct {
	Value    []keyItem `json:"value"`
	NextLink string    `json:"nextLink,omitempty"`
}

// kid is the key's identifier as clients parse it: versionless when version is empty.
func (c *call) kid(name, version string) string {
	if version == "" {
		return c.url("keys", name)
	}
	return c.url("keys", name, version)
}

func (c *call) deletion(k *pb.Key) deletedInfo {
	d := deletedInfo{RecoveryID: c.url("deletedkeys", k.Name)}
	if k.Deletion != nil {
		d.DeletedDate, d.ScheduledPurgeDate = k.Deletion.DeletedDate, k.Deletion.ScheduledPurgeDate
	}
	return d
}

func (c *call) bundle(k *pb.Key, deleted bool) keyBundle {
	b := keyBundle{
		Key:        jsonWebKey{KID: c.kid(k.Name, k.Version), Kty: k.Kty, KeyOps: k.KeyOps},
		Attributes: attributesJSON(k.Attributes), Tags: k.Tags, Managed: k.Managed,
		ReleasePolicy: releasePolicyJSON(k.ReleasePolicy),
	}
	if p := k.Public; p != nil {
		b.Key.N, b.Key.E, b.Key.Crv, b.Key.X, b.Key.Y = p.N, p.E, p.Crv, p.X, p.Y
	}
	if deleted {
		b.deletedInfo = c.deletion(k)
	}
	return b
}

func (c *call) item(k *pb.Key, versioned, deleted bool) keyItem {
	it := keyItem{KID: c.kid(k.Name, ""), Attributes: attributesJSON(k.Attributes), Tags: k.Tags, Managed: k.Managed}
	if versioned {
		it.KID = c.kid(k.Name, k.Version)
	}
	if deleted {
		it.deletedInfo = c.deletion(k)
	}
	return it
}

// keyParams is KeyCreateParameters and KeyUpdateParameters; update ignores the create-only
// fields. Absent key_ops, attributes and tags stay nil, so the core can tell them from empty.
type keyParams struct {
	Kty            string            `json:"kty"`
	KeySize        int32             `json:"key_size"`
	PublicExponent int32             `json:"public_exponent"`
	Crv            string            `json:"crv"`
	KeyOps         []string          `json:"key_ops"`
	Attributes     *keyAttributes    `json:"attributes"`
	Tags           map[string]string `json:"tags"`
	ReleasePolicy  *releasePolicy    `json:"release_policy"`
}

func keyOps(ops []string) *pb.KeyOps {
	if ops == nil {
		return nil
	}
	return &pb.KeyOps{Ops: ops}
}

// importParams is KeyImportParameters; "Hsm" is capitalised on the wire.
type importParams struct {
	HSM           bool              `json:"Hsm"`
	Key           *jsonWebKey       `json:"key"`
	Attributes    *keyAttributes    `json:"attributes"`
	Tags          map[string]string `json:"tags"`
	ReleasePolicy *releasePolicy    `json:"release_policy"`
}

// keyOpParams is KeyOperationsParameters, KeySignParameters and KeyVerifyParameters (whose
// value is the signature).
type keyOpParams struct {
	Alg    string `json:"alg"`
	Value  b64    `json:"value"`
	IV     b64    `json:"iv"`
	AAD    b64    `json:"aad"`
	Tag    b64    `json:"tag"`
	Digest b64    `json:"digest"`
}

type keyOpResult struct {
	KID   string `json:"kid"`
	Value b64    `json:"value"`
	IV    b64    `json:"iv,omitempty"`
	Tag   b64    `json:"tag,omitempty"`
	AAD   b64    `json:"aad,omitempty"`
}

type verifyResult struct {
	Value bool `json:"value"`
}

// blob is {"value": <base64url>}: BackupKeyResult, RandomBytes, KeyRestoreParameters.
type blob struct {
	Value b64 `json:"value"`
}

type randomParams struct {
	Count int32 `json:"count"`
}

// rotationPolicy is KeyRotationPolicy. Answers always carry lifetimeActions and attributes,
// empty when no policy is set.
type rotationPolicy struct {
	ID              string             `json:"id,omitempty"`
	LifetimeActions []lifetimeAction   `json:"lifetimeActions"`
	Attributes      rotationAttributes `json:"attributes"`
}

type lifetimeAction struct {
	Trigger struct {
		TimeAfterCreate  string `json:"timeAfterCreate,omitempty"`
		TimeBeforeExpiry string `json:"timeBeforeExpiry,omitempty"`
	} `json:"trigger"`
	Action struct {
		Type string `json:"type"`
	} `json:"action"`
}

type rotationAttributes struct {
	ExpiryTime string `json:"expiryTime,omitempty"`
	Created    int64  `json:"created,omitempty"`
	Updated    int64  `json:"updated,omitempty"`
}

// actionType spells Rotate and Notify as Azure does; the spec asks servers to compare them
// case-insensitively. Other values go to the core as they are, for it to refuse.
func actionType(s string) string {
	for _, a := range [...]string{"Rotate", "Notify"} {
		if strings.EqualFold(s, a) {
			return a
		}
	}
	return s
}

func (p *rotationPolicy) proto() *pb.RotationPolicy {
	out := &pb.RotationPolicy{ExpiryTime: p.Attributes.ExpiryTime}
	for _, a := range p.LifetimeActions {
		out.LifetimeActions = append(out.LifetimeActions, &pb.LifetimeAction{
			TimeAfterCreate: a.Trigger.TimeAfterCreate, TimeBeforeExpiry: a.Trigger.TimeBeforeExpiry,
			Action: actionType(a.Action.Type),
		})
	}
	return out
}

func (c *call) rotationPolicy(p *pb.RotationPolicy) rotationPolicy {
	out := rotationPolicy{
		ID:              c.url("keys", c.name, "rotationpolicy"),
		LifetimeActions: make([]lifetimeAction, 0, len(p.LifetimeActions)),
		Attributes:      rotationAttributes{ExpiryTime: p.ExpiryTime, Created: p.Created, Updated: p.Updated},
	}
	for _, a := range p.LifetimeActions {
		var la lifetimeAction
		la.Trigger.TimeAfterCreate, la.Trigger.TimeBeforeExpiry = a.TimeAfterCreate, a.TimeBeforeExpiry
		la.Action.Type = actionType(a.Action)
		out.LifetimeActions = append(out.LifetimeActions, la)
	}
	return out
}

// sdDownloadParams is CertificateInfoObject. Each certificate is a JWK; the 7.2 spec example
// wraps it as {"value": jwk}, which is accepted too.
type sdDownloadParams struct {
	Certificates []struct {
		X5c   []string `json:"x5c"`
		Value *struct {
			X5c []string `json:"x5c"`
		} `json:"value"`
	} `json:"certificates"`
	Required *int32 `json:"required"`
}

// sdValue is SecurityDomainObject: the security-domain file as a JSON string, which the CLI
// writes to disk verbatim.
type sdValue struct {
	Value string `json:"value"`
}

// sdTransferKey is TransferKey of GET /securitydomain/upload: transfer_key is the JWK's JSON
// text as a string, not an object (spec §2.3).
type sdTransferKey struct {
	KeyFormat   string `json:"key_format"`
	TransferKey string `json:"transfer_key"`
}

// transferJWK is the exchange key as the CLI's init-recovery reads it; only x5c[0] is used.
type transferJWK struct {
	Kty     string   `json:"kty"`
	KeyOps  []string `json:"key_ops"`
	Alg     string   `json:"alg"`
	Kid     string   `json:"kid"`
	N       string   `json:"n"`
	E       string   `json:"e"`
	X5c     []string `json:"x5c"`
	X5tS256 string   `json:"x5t#S256"`
}

// sdStatus is SecurityDomainOperationStatus; note the snake_case status_details.
type sdStatus struct {
	Status        string `json:"status"`
	StatusDetails string `json:"status_details"`
}

// poolStatus answers /readyz.
type poolStatus struct {
	Ready        bool   `json:"ready"`
	Name         string `json:"name"`
	TenantID     string `json:"tenantId,omitempty"`
	Activated    bool   `json:"activated"`
	NodeID       string `json:"nodeId,omitempty"`
	RaftState    string `json:"raftState,omitempty"`
	AppliedIndex uint64 `json:"appliedIndex"`
	Keys         int32  `json:"keys"`
}
