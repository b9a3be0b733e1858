package main

import (
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// This file holds the flag types and parsers that the pool commands share. Binary values are base64url on the
// command line and in the output, as in the REST API.

// b64 is the base64url form of b, unpadded, as the REST API writes it.
func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// decodeB64 decodes base64url, with or without padding.
func decodeB64(s string) ([]byte, error) {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil {
		return nil, fmt.Errorf("not base64url: %w", err)
	}
	return b, nil
}

// bytesFlag is a flag whose value is bytes, given in base64url.
type bytesFlag struct{ b *[]byte }

func (v bytesFlag) Set(s string) error {
	b, err := decodeB64(s)
	if err != nil {
		return err
	}
	*v.b = b
	return nil
}

func (v bytesFlag) String() string {
	if v.b == nil {
		return ""
	}
	return b64(*v.b)
}

func (bytesFlag) Type() string { return "B64URL" }

// bytesVar defines a base64url flag that stores into p.
func bytesVar(f *pflag.FlagSet, p *[]byte, name, usage string) {
	f.Var(bytesFlag{p}, name, usage)
}

// timeFlag is a flag whose value is an RFC 3339 time, such as 2027-01-31T00:00:00Z.
type timeFlag struct{ t **time.Time }

func (v timeFlag) Set(s string) error {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return errors.New("want an RFC 3339 time, such as 2027-01-31T00:00:00Z")
	}
	t = t.UTC()
	*v.t = &t
	return nil
}

func (v timeFlag) String() string {
	if v.t == nil || *v.t == nil {
		return ""
	}
	return (*v.t).Format(time.RFC3339)
}

func (timeFlag) Type() string { return "RFC3339" }

// timeVar defines an RFC 3339 time flag that stores into p; p stays nil when the flag is not given.
func timeVar(f *pflag.FlagSet, p **time.Time, name, usage string) {
	f.Var(timeFlag{p}, name, usage)
}

// choice returns value as a T if it is one of allowed; the error names the flag and lists allowed.
func choice[T ~string](flag, value string, allowed []T) (T, error) {
	if i := slices.Index(allowed, T(value)); i >= 0 {
		return allowed[i], nil
	}
	names := make([]string, len(allowed))
	for i, a := range allowed {
		names[i] = string(a)
	}
	return "", fmt.Errorf("%s %q: want %s", flag, value, orList(names))
}

// orList joins items as "a, b or c".
func orList(items []string) string {
	if len(items) < 2 {
		return strings.Join(items, "")
	}
	return strings.Join(items[:len(items)-1], ", ") + " or " + items[len(items)-1]
}

// keyNamePattern is what the REST API accepts as a key name (azure-mhsm-api.md §1.1).
var keyNamePattern = regexp.MustCompile(`^[0-9A-Za-z-]{1,127}$`)

// keyNameArg checks that args is one key name.
func keyNameArg(cmd *cobra.Command, args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("want one key name: %s", cmd.UseLine())
	}
	if !keyNamePattern.MatchString(args[0]) {
		return fmt.Errorf("key name %q: use 1 to 127 letters, digits and dashes", args[0])
	}
	return nil
}

// attributeOptions are the flags that set a key's operations, tags and attributes, shared by create, import and
// update.
type attributeOptions struct {
	// Ops are the permitted operations; empty leaves the pool's default (create, import) or the key's (update).
	Ops []string
	// Tags are KEY=VALUE pairs.
	Tags []string
	// NotBefore and Expires are the validity dates; nil leaves them unset.
	NotBefore, Expires *time.Time
}

// bind defines the flags.
func (o *attributeOptions) bind(f *pflag.FlagSet) {
	f.StringSliceVar(&o.Ops, "ops", o.Ops, "permitted operations, comma-separated: "+strings.Join(opNames(), ","))
	f.StringArrayVar(&o.Tags, "tag", o.Tags, "a tag KEY=VALUE; repeatable")
	timeVar(f, &o.NotBefore, "nbf", "not valid before this time")
	timeVar(f, &o.Expires, "exp", "not valid after this time")
}

// parse checks the flags and returns them as the Azure SDK takes them. enabled is put in the attributes as it is.
// Errors name the flag.
func (o *attributeOptions) parse(enabled *bool) (ops []*azkeys.KeyOperation, tags map[string]*string, attrs *azkeys.KeyAttributes, err error) {
	for _, op := range o.Ops {
		k, err := choice("--ops", op, azkeys.PossibleKeyOperationValues())
		if err != nil {
			return nil, nil, nil, err
		}
		ops = append(ops, &k)
	}
	if tags, err = parseTags(o.Tags); err != nil {
		return nil, nil, nil, err
	}
	if o.NotBefore != nil && o.Expires != nil && !o.Expires.After(*o.NotBefore) {
		return nil, nil, nil, fmt.Errorf("--exp %s is not after --nbf %s", o.Expires.Format(time.RFC3339), o.NotBefore.Format(time.RFC3339))
	}
	if enabled != nil || o.NotBefore != nil || o.Expires != nil {
		attrs = &azkeys.KeyAttributes{Enabled: enabled, NotBefore: o.NotBefore, Expires: o.Expires}
	}
	return ops, tags, attrs, nil
}

// opNames lists the key operations.
func opNames() []string {
	var names []string
	for _, op := range azkeys.PossibleKeyOperationValues() {
		names = append(names, string(op))
	}
	return names
}

// parseTags turns --tag KEY=VALUE flags into tags; nil when there are none.
func parseTags(flags []string) (map[string]*string, error) {
	if len(flags) == 0 {
		return nil, nil
	}
	tags := map[string]*string{}
	for _, kv := range flags {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--tag %q: want KEY=VALUE", kv)
		}
		if _, dup := tags[k]; dup {
			return nil, fmt.Errorf("--tag %q: tag %q is given twice", kv, k)
		}
		tags[k] = &v
	}
	return tags, nil
}

// inputOptions are the flags that give the bytes an operation works on: a file, or a base64url value.
type inputOptions struct {
	In    string
	Value []byte
	given bool // Value was given
}

// bind defines --in and --value; what says what the bytes are, for the help.
func (o *inputOptions) bind(f *pflag.FlagSet, what string) {
	f.StringVar(&o.In, "in", o.In, "read the "+what+" from this file, as raw bytes")
	bytesVar(f, &o.Value, "value", "the "+what+", base64url")
}

// validate checks that exactly one of --in and --value is given.
func (o *inputOptions) validate(f *pflag.FlagSet) error {
	o.given = f.Changed("value")
	if (o.In != "") == o.given {
		return errors.New("give --in FILE or --value B64URL, one of them")
	}
	return nil
}

// bytes returns the input.
func (o *inputOptions) bytes() ([]byte, error) {
	if o.given {
		return o.Value, nil
	}
	return os.ReadFile(o.In)
}

// isoDuration is an ISO 8601 duration as the rotation policy takes it: P90D, P3M, P1Y10D, PT48H...
var isoDuration = regexp.MustCompile(`^P(?:\d+Y)?(?:\d+M)?(?:\d+W)?(?:\d+D)?(?:T(?:\d+H)?(?:\d+M)?(?:\d+S)?)?$`)

// checkDuration checks that value, the value of flag, is an ISO 8601 duration.
func checkDuration(flag, value string) error {
	if !isoDuration.MatchString(value) || value == "P" || strings.HasSuffix(value, "T") {
		return fmt.Errorf("%s %q: want an ISO 8601 duration, such as P90D, P3M, P1Y or PT48H", flag, value)
	}
	return nil
}
