package core

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hsmpool/hsmpool/internal/fault"
	"github.com/hsmpool/hsmpool/internal/hsm"
	"github.com/hsmpool/hsmpool/internal/rpcerr"
	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

// Limits of the service (spec/azure-mhsm-api.md §3.2, §3.3, §6.1).
const (
	maxNameLen     = 127
	maxTags        = 15
	maxTagKeyLen   = 512
	maxTagValueLen = 256
	maxVersions    = 100 // per key, rotations included
	maxPage        = 25
	minRotation    = 28 * 24 * time.Hour
)

var nameRE = regexp.MustCompile(`^[0-9a-zA-Z-]+$`)

func bad(format string, args ...any) error {
	return rpcerr.New(fault.BadParameter, "BadParameter", format, args...)
}

func checkName(name string) error {
	if name == "" || len(name) > maxNameLen || !nameRE.MatchString(name) {
		return bad("The key name %q is not valid: it must be 1 to %d characters of 0-9, a-z, A-Z and '-'.", trunc(name), maxNameLen)
	}
	return nil
}

// trunc keeps user input in messages short.
func trunc(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// keyType maps a requested kty to the HSM type and the kty the pool stores: a Managed HSM keeps
// every key in the HSM, so "RSA" becomes "RSA-HSM" as the service does.
func keyType(kty string) (hsm.KeyType, string, error) {
	switch kty {
	case "RSA", "RSA-HSM":
		return hsm.RSA, "RSA-HSM", nil
	case "EC", "EC-HSM":
		return hsm.EC, "EC-HSM", nil
	case "oct", "oct-HSM":
		return hsm.AES, "oct-HSM", nil
	case "":
		return 0, "", bad("The parameter kty is required.")
	}
	return 0, "", bad("The key type %q is not supported: use RSA-HSM, EC-HSM or oct-HSM.", trunc(kty))
}

// opsByType are the key_ops each type can carry, in the order the pool reports defaults.
var opsByType = map[hsm.KeyType][]string{
	hsm.RSA: {"encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"},
	hsm.EC:  {"sign", "verify"},
	hsm.AES: {"encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"},
}

var usageOf = map[string]hsm.Usage{
	"encrypt": hsm.UseEncrypt, "decrypt": hsm.UseDecrypt, "sign": hsm.UseSign,
	"verify": hsm.UseVerify, "wrapKey": hsm.UseWrapKey, "unwrapKey": hsm.UseUnwrapKey,
}

// checkOps validates requested key_ops for type t and returns them without duplicates; nil
// means the type's defaults.
func checkOps(t hsm.KeyType, ops *pb.KeyOps) ([]string, error) {
	if ops == nil {
		return slices.Clone(opsByType[t]), nil
	}
	var out []string
	for _, op := range ops.Ops {
		if !slices.Contains(opsByType[t], op) {
			if op == "import" || op == "export" {
				return nil, bad("The key operation %q is not supported by this pool.", op)
			}
			return nil, bad("The key operation %q is not valid for a %s key; valid: %s.", trunc(op), t, strings.Join(opsByType[t], ", "))
		}
		if !slices.Contains(out, op) {
			out = append(out, op)
		}
	}
	return out, nil
}

func usage(ops []string) hsm.Usage {
	var u hsm.Usage
	for _, op := range ops {
		u |= usageOf[op]
	}
	return u
}

func checkTags(tags map[string]string) error {
	if len(tags) > maxTags {
		return bad("A key may have at most %d tags; got %d.", maxTags, len(tags))
	}
	for k, v := range tags {
		if k == "" || len(k) > maxTagKeyLen || len(v) > maxTagValueLen {
			return bad("Tag names must be 1 to %d characters and values at most %d.", maxTagKeyLen, maxTagValueLen)
		}
	}
	return nil
}

// checkAttributes validates the writable attributes of a request.
func checkAttributes(a *pb.KeyAttributes) error {
	if a == nil {
		return nil
	}
	if a.GetExportable() {
		return bad("Exportable keys are not supported by this pool (key release is not available).")
	}
	if a.NotBefore != nil && a.Expires != nil && a.GetExpires() != 0 && a.GetNotBefore() > a.GetExpires() {
		return bad("The key's nbf (%d) is after its exp (%d).", a.GetNotBefore(), a.GetExpires())
	}
	if a.GetNotBefore() < 0 || a.GetExpires() < 0 {
		return bad("nbf and exp must be Unix times.")
	}
	return nil
}

func checkReleasePolicy(p *pb.ReleasePolicy) error {
	if p != nil {
		return bad("Key release policies are not supported by this pool.")
	}
	return nil
}

// validate checks the shape of a request before any work; semantic checks that need the state
// happen in the handlers.
func validate(req any) error {
	switch r := req.(type) {
	case *pb.CreateKeyRequest:
		if err := checkName(r.Name); err != nil {
			return err
		}
		if _, _, err := keyType(r.Kty); err != nil {
			return err
		}
		if err := checkTags(r.Tags); err != nil {
			return err
		}
		if err := checkAttributes(r.Attributes); err != nil {
			return err
		}
		return checkReleasePolicy(r.ReleasePolicy)
	case *pb.ImportKeyRequest:
		if err := checkName(r.Name); err != nil {
			return err
		}
		if r.Key == nil {
			return bad("The parameter key is required.")
		}
		if err := checkTags(r.Tags); err != nil {
			return err
		}
		if err := checkAttributes(r.Attributes); err != nil {
			return err
		}
		return checkReleasePolicy(r.ReleasePolicy)
	case *pb.UpdateKeyRequest:
		if err := checkAttributes(r.Attributes); err != nil {
			return err
		}
		if r.Attributes != nil && r.Attributes.Exportable != nil {
			return bad("exportable cannot be changed after creation.")
		}
		if r.Tags != nil {
			if err := checkTags(r.Tags.Tags); err != nil {
				return err
			}
		}
		return checkReleasePolicy(r.ReleasePolicy)
	case *pb.ListRequest:
		if r.MaxResults < 0 || r.MaxResults > maxPage {
			return bad("maxresults must be 1 to %d.", maxPage)
		}
	case *pb.RandomRequest:
		if r.Count < 1 || r.Count > 128 {
			return bad("count must be 1 to 128; got %d.", r.Count)
		}
	case *pb.KeyOperationRequest:
		if r.Alg == "" {
			return bad("The parameter alg is required.")
		}
	case *pb.VerifyRequest:
		if r.Alg == "" {
			return bad("The parameter alg is required.")
		}
	case *pb.SetRotationPolicyRequest:
		_, err := checkPolicy(r.Policy)
		return err
	}
	return nil
}

// checkPolicy validates a rotation policy (Managed HSM key-rotation.md) and returns it with
// action types normalised.
func checkPolicy(p *pb.RotationPolicy) (*pb.RotationPolicy, error) {
	if p == nil {
		return nil, bad("The rotation policy is required.")
	}
	out := &pb.RotationPolicy{ExpiryTime: p.ExpiryTime}
	var expiry time.Duration
	if p.ExpiryTime != "" {
		d, err := parseDuration(p.ExpiryTime)
		if err != nil {
			return nil, bad("expiryTime %q is not an ISO 8601 duration.", trunc(p.ExpiryTime))
		}
		if d < minRotation {
			return nil, bad("expiryTime must be at least 28 days (P28D).")
		}
		expiry = d
	}
	if len(p.LifetimeActions) > 2 {
		return nil, bad("A rotation policy has at most 2 lifetime actions.")
	}
	for _, a := range p.LifetimeActions {
		var typ string
		switch strings.ToLower(a.GetAction()) {
		case "rotate":
			typ = "Rotate"
		case "notify":
			return nil, bad("The lifetime action Notify is not supported on a Managed HSM; use Rotate.")
		default:
			return nil, bad("The lifetime action type %q is not valid: use Rotate.", trunc(a.GetAction()))
		}
		if (a.TimeAfterCreate == "") == (a.TimeBeforeExpiry == "") {
			return nil, bad("Each lifetime action needs exactly one trigger: timeAfterCreate or timeBeforeExpiry.")
		}
		if a.TimeAfterCreate != "" {
			d, err := parseDuration(a.TimeAfterCreate)
			if err != nil {
				return nil, bad("timeAfterCreate %q is not an ISO 8601 duration.", trunc(a.TimeAfterCreate))
			}
			if d < minRotation {
				return nil, bad("timeAfterCreate must be at least 28 days (P28D).")
			}
		} else {
			d, err := parseDuration(a.TimeBeforeExpiry)
			if err != nil {
				return nil, bad("timeBeforeExpiry %q is not an ISO 8601 duration.", trunc(a.TimeBeforeExpiry))
			}
			if expiry == 0 {
				return nil, bad("timeBeforeExpiry needs an expiryTime in the policy's attributes.")
			}
			if d > expiry-minRotation {
				return nil, bad("timeBeforeExpiry must be at most expiryTime minus 28 days.")
			}
		}
		out.LifetimeActions = append(out.LifetimeActions, &pb.LifetimeAction{TimeAfterCreate: a.TimeAfterCreate, TimeBeforeExpiry: a.TimeBeforeExpiry, Action: typ})
	}
	return out, nil
}

var durationRE = regexp.MustCompile(`^P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$`)

// parseDuration reads the ISO 8601 durations of rotation policies. Years are 365 days and months
// 30, as Key Vault counts them.
func parseDuration(s string) (time.Duration, error) {
	m := durationRE.FindStringSubmatch(s)
	if m == nil || s == "P" || strings.HasSuffix(s, "T") {
		return 0, fmt.Errorf("not an ISO 8601 duration: %q", s)
	}
	units := []time.Duration{365 * 24 * time.Hour, 30 * 24 * time.Hour, 7 * 24 * time.Hour, 24 * time.Hour, time.Hour, time.Minute, time.Second}
	var d time.Duration
	for i, u := range units {
		if m[i+1] == "" {
			continue
		}
		n, err := strconv.ParseInt(m[i+1], 10, 32)
		if err != nil || n > 100000 {
			return 0, fmt.Errorf("duration out of range: %q", s)
		}
		d += time.Duration(n) * u
	}
	return d, nil
}
