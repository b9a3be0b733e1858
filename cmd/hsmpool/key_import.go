package main

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"github.com/spf13/cobra"
)

// keyImportOptions are the flags of "hsmpool key import".
type keyImportOptions struct {
	JWK, PEM string
	Disabled bool
	attributeOptions

	params azkeys.ImportKeyParameters // made by validate; holds the private key until wiped
}

// validate checks the flags, reads the key and makes the request; errors name the flag or the file.
func (o *keyImportOptions) validate() error {
	if (o.JWK == "") == (o.PEM == "") {
		return errors.New("give --jwk FILE or --pem FILE, one of them")
	}
	ops, tags, attrs, err := o.parse(disabledFlag(o.Disabled))
	if err != nil {
		return err
	}
	var key *azkeys.JSONWebKey
	if o.JWK != "" {
		key, err = readKeyFile(o.JWK, parseJWK)
	} else {
		key, err = readKeyFile(o.PEM, pemToJWK)
	}
	if err != nil {
		return err
	}
	if ops != nil {
		key.KeyOps = ops
	}
	o.params = azkeys.ImportKeyParameters{Key: key, HSM: new(true), Tags: tags, KeyAttributes: attrs}
	return nil
}

// newKeyImportCmd builds "hsmpool key import".
func newKeyImportCmd(opts *keyImportOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "import NAME (--jwk FILE | --pem FILE) [--ops OPS] [--tag K=V]... [--disabled] [--nbf T] [--exp T]",
		Short: "Import a private key into the pool's HSMs",
		Long: `import puts an existing private key into the pool's HSMs, as a new key or as the
newest version of a key of that name, and prints it.

--jwk FILE reads a JSON Web Key with its private parts: kty RSA (n, e, d and
preferably p, q, dp, dq, qi), EC (crv, x, y, d) or oct (k); base64url, padded or not.
--pem FILE reads an unencrypted PEM private key: PKCS#8 ("PRIVATE KEY"), PKCS#1
("RSA PRIVATE KEY") or SEC 1 ("EC PRIVATE KEY"); RSA, or EC on P-256, P-384 or
P-521. The key travels to the pool over TLS; the pool keeps it only inside its HSMs
and wrapped under its security domain.

--ops sets the permitted operations (default: the JWK's key_ops, else everything the
type can do).`,
		Example: `  hsmpool key import legacy-signer --pem signer.pem --ops sign,verify
  hsmpool key import aes1 --jwk aes1.jwk`,
		Args: keyNameArg,
	}
	f := cmd.Flags()
	f.StringVar(&opts.JWK, "jwk", opts.JWK, "JSON Web Key file with the private key")
	f.StringVar(&opts.PEM, "pem", opts.PEM, "PEM file with the private key, unencrypted")
	f.BoolVar(&opts.Disabled, "disabled", opts.Disabled, "import the key disabled")
	opts.bind(f)
	return defaultPoolOptions().command(cmd, true, func([]string) error { return opts.validate() }, func(s *session, args []string) error {
		defer wipeJWK(opts.params.Key)
		r, err := s.client.Keys().ImportKey(s.ctx, args[0], opts.params, nil)
		return s.printKey(r.KeyBundle, err)
	})
}

// jwkJSON is a JSON Web Key as a file holds it, with every member a string.
type jwkJSON struct {
	Kty    string   `json:"kty"`
	Crv    string   `json:"crv"`
	KeyOps []string `json:"key_ops"`
	N      string   `json:"n"`
	E      string   `json:"e"`
	D      string   `json:"d"`
	P      string   `json:"p"`
	Q      string   `json:"q"`
	DP     string   `json:"dp"`
	DQ     string   `json:"dq"`
	QI     string   `json:"qi"`
	K      string   `json:"k"`
	X      string   `json:"x"`
	Y      string   `json:"y"`
}

// hsmKeyTypes maps JWK key types to the pool's.
var hsmKeyTypes = map[string]azkeys.KeyType{
	"RSA": azkeys.KeyTypeRSAHSM, "RSA-HSM": azkeys.KeyTypeRSAHSM,
	"EC": azkeys.KeyTypeECHSM, "EC-HSM": azkeys.KeyTypeECHSM,
	"oct": azkeys.KeyTypeOctHSM, "oct-HSM": azkeys.KeyTypeOctHSM,
}

// required are the members each key type must have: the private parts, since only private keys are imported.
var required = map[azkeys.KeyType][]string{
	azkeys.KeyTypeRSAHSM: {"n", "e", "d"},
	azkeys.KeyTypeECHSM:  {"crv", "x", "y", "d"},
	azkeys.KeyTypeOctHSM: {"k"},
}

// readKeyFile reads the private key in the file at path with parse (parseJWK or pemToJWK), and wipes what it read.
// Errors start with path.
func readKeyFile(path string, parse func([]byte) (*azkeys.JSONWebKey, error)) (*azkeys.JSONWebKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err // os errors name the path
	}
	defer clear(b)
	key, err := parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return key, nil
}

// parseJWK decodes a JSON Web Key with private parts. Errors never show a member's value.
func parseJWK(b []byte) (*azkeys.JSONWebKey, error) {
	var j jwkJSON
	if err := json.Unmarshal(b, &j); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return nil, fmt.Errorf("not a JSON Web Key: %q is not a %s", typeErr.Field, typeErr.Type)
		}
		return nil, errors.New("not a JSON Web Key: not a JSON object")
	}
	kty, ok := hsmKeyTypes[j.Kty]
	if !ok {
		return nil, fmt.Errorf("kty %q: want RSA, EC or oct", j.Kty)
	}
	members := map[string]string{"crv": j.Crv, "n": j.N, "e": j.E, "d": j.D, "p": j.P, "q": j.Q, "dp": j.DP, "dq": j.DQ, "qi": j.QI, "k": j.K, "x": j.X, "y": j.Y}
	for _, m := range required[kty] {
		if members[m] == "" {
			return nil, fmt.Errorf("%s keys need %q: only private keys can be imported", j.Kty, m)
		}
	}
	key := &azkeys.JSONWebKey{Kty: &kty}
	for _, f := range []struct {
		name string
		dst  *[]byte
	}{{"n", &key.N}, {"e", &key.E}, {"d", &key.D}, {"p", &key.P}, {"q", &key.Q}, {"dp", &key.DP}, {"dq", &key.DQ},
		{"qi", &key.QI}, {"k", &key.K}, {"x", &key.X}, {"y", &key.Y}} {
		if members[f.name] == "" {
			continue
		}
		v, err := decodeB64(members[f.name])
		if err != nil {
			wipeJWK(key)
			return nil, fmt.Errorf("%q: %w", f.name, err)
		}
		*f.dst = v
	}
	if j.Crv != "" {
		crv := azkeys.CurveName(j.Crv)
		key.Crv = &crv
	}
	for _, op := range j.KeyOps {
		k, err := choice(`"key_ops"`, op, azkeys.PossibleKeyOperationValues())
		if err != nil {
			wipeJWK(key)
			return nil, err
		}
		key.KeyOps = append(key.KeyOps, &k)
	}
	return key, nil
}

// pemToJWK decodes the first PEM private key in text into a JWK with its private parts.
func pemToJWK(text []byte) (*azkeys.JSONWebKey, error) {
	block := findPEM(text, func(typ string) bool { return strings.HasSuffix(typ, "PRIVATE KEY") })
	if block == nil {
		return nil, errors.New("no PEM private key in it")
	}
	defer clear(block.Bytes)
	var key any
	var err error
	switch {
	case block.Type == "ENCRYPTED PRIVATE KEY" || block.Headers["Proc-Type"] != "":
		return nil, withHints(errors.New("the key is encrypted"),
			"decrypt it to a file only you can read, import that, then delete it: openssl pkey -in KEY.pem -out plain.pem")
	case block.Type == "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case block.Type == "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case block.Type == "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("a %q is not a key this imports", block.Type)
	}
	if err != nil {
		return nil, withHints(fmt.Errorf("not a %s this reads: %w", block.Type, err),
			"for a key on another curve, such as P-256K, give it as a JWK with --jwk")
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		return rsaJWK(k)
	case *ecdsa.PrivateKey:
		return ecJWK(k)
	default:
		return nil, fmt.Errorf("%T: not an RSA or EC key", key)
	}
}

// rsaJWK returns k as a JWK with its private parts.
func rsaJWK(k *rsa.PrivateKey) (*azkeys.JSONWebKey, error) {
	if len(k.Primes) != 2 {
		return nil, fmt.Errorf("an RSA key with %d primes: only two-prime keys can be imported", len(k.Primes))
	}
	k.Precompute()
	kty := azkeys.KeyTypeRSAHSM
	return &azkeys.JSONWebKey{Kty: &kty, N: k.N.Bytes(), E: big.NewInt(int64(k.E)).Bytes(), D: k.D.Bytes(),
		P: k.Primes[0].Bytes(), Q: k.Primes[1].Bytes(), DP: k.Precomputed.Dp.Bytes(), DQ: k.Precomputed.Dq.Bytes(),
		QI: k.Precomputed.Qinv.Bytes()}, nil
}

// ecCurves maps Go's curve names to the pool's.
var ecCurves = map[string]azkeys.CurveName{"P-256": azkeys.CurveNameP256, "P-384": azkeys.CurveNameP384, "P-521": azkeys.CurveNameP521}

// ecJWK returns k as a JWK with its private part: x, y and d as long as the curve's field (RFC 7518 §6.2).
func ecJWK(k *ecdsa.PrivateKey) (*azkeys.JSONWebKey, error) {
	crv, ok := ecCurves[k.Curve.Params().Name]
	if !ok {
		return nil, fmt.Errorf("curve %s: want P-256, P-384 or P-521", k.Curve.Params().Name)
	}
	d, err := k.Bytes()
	if err != nil {
		return nil, err
	}
	pub, err := k.PublicKey.Bytes() // 0x04 || x || y
	if err != nil {
		return nil, err
	}
	n := (len(pub) - 1) / 2
	kty := azkeys.KeyTypeECHSM
	return &azkeys.JSONWebKey{Kty: &kty, Crv: &crv, X: pub[1 : 1+n], Y: pub[1+n:], D: d}, nil
}

// wipeJWK overwrites the private parts of k with zeros, best effort: Go may have copied them.
func wipeJWK(k *azkeys.JSONWebKey) {
	if k == nil {
		return
	}
	for _, b := range [][]byte{k.D, k.P, k.Q, k.DP, k.DQ, k.QI, k.K} {
		clear(b)
	}
}
