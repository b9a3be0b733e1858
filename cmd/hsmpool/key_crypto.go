package main

import (
	"context"
	"crypto"
	_ "crypto/sha256" // hashes of --data-file
	_ "crypto/sha512"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// signOptions are the flags of "hsmpool key sign" and "hsmpool key verify".
type signOptions struct {
	Version   string
	Alg       string
	Digest    []byte
	DataFile  string
	Signature []byte // verify only

	alg    azkeys.SignatureAlgorithm // made by validate
	digest []byte
}

// bind defines the flags; verify adds --signature.
func (o *signOptions) bind(f *pflag.FlagSet, verify bool) {
	f.StringVar(&o.Version, "version", o.Version, "the key version to use (default the newest)")
	f.StringVar(&o.Alg, "alg", o.Alg, "signature algorithm: "+strings.Join(names(azkeys.PossibleSignatureAlgorithmValues()), ", ")+" (required)")
	bytesVar(f, &o.Digest, "digest", "the digest, base64url")
	f.StringVar(&o.DataFile, "data-file", o.DataFile, "hash this file with the algorithm's hash and use that digest")
	if verify {
		bytesVar(f, &o.Signature, "signature", "the signature, base64url (required)")
	}
}

// validate checks the flags and finds the digest; errors name the flag.
func (o *signOptions) validate(f *pflag.FlagSet, verify bool) error {
	if o.Alg == "" {
		return errors.New("--alg is required: " + orList(names(azkeys.PossibleSignatureAlgorithmValues())))
	}
	alg, err := choice("--alg", o.Alg, azkeys.PossibleSignatureAlgorithmValues())
	if err != nil {
		return err
	}
	o.alg = alg
	if f.Changed("digest") == (o.DataFile != "") {
		return errors.New("give --digest B64URL or --data-file FILE, one of them")
	}
	if verify && !f.Changed("signature") {
		return errors.New("--signature is required: the signature to verify, base64url")
	}
	if o.DataFile == "" {
		o.digest = o.Digest
		return nil
	}
	o.digest, err = hashFile(o.DataFile, alg)
	return err
}

// hashFile returns the digest of the file at path with the hash of alg: SHA-256 for *256 and ES256K, SHA-384 for
// *384, SHA-512 for *512. For HS* the pool MACs that digest.
func hashFile(path string, alg azkeys.SignatureAlgorithm) ([]byte, error) {
	var h crypto.Hash
	switch a := string(alg); {
	case strings.HasSuffix(a, "256"), a == string(azkeys.SignatureAlgorithmES256K):
		h = crypto.SHA256
	case strings.HasSuffix(a, "384"):
		h = crypto.SHA384
	case strings.HasSuffix(a, "512"):
		h = crypto.SHA512
	default:
		return nil, fmt.Errorf("--alg %s: no hash to use with --data-file; give --digest", alg)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	d := h.New()
	if _, err := io.Copy(d, f); err != nil {
		return nil, err
	}
	return d.Sum(nil), nil
}

// names lists values as strings.
func names[T ~string](values []T) []string {
	s := make([]string, len(values))
	for i, v := range values {
		s[i] = string(v)
	}
	return s
}

// newSignCmd builds "hsmpool key sign".
func newSignCmd(opts *signOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sign NAME --alg ALG (--digest B64URL | --data-file FILE) [--version V]",
		Short: "Sign a digest with a key",
		Long: `sign signs a digest with a key and prints the signature, base64url: for ES* the raw
r||s form, as JWS has it. Give the digest, or a file to hash with the algorithm's hash
(SHA-256 for *256 and ES256K, SHA-384 for *384, SHA-512 for *512).

Algorithms: RS256/384/512 (PKCS#1 v1.5) and PS256/384/512 (PSS) with RSA keys, ES256
(P-256), ES256K (P-256K), ES384 (P-384) and ES512 (P-521) with EC keys, HS256 with
256-bit oct keys.`,
		Example: `  hsmpool key sign k1 --alg ES256 --data-file release.tar.gz
  hsmpool key sign k1 --alg PS256 --digest LPJNul-wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ`,
		Args: keyNameArg,
	}
	opts.bind(cmd.Flags(), false)
	return defaultPoolOptions().command(cmd, true, func([]string) error { return opts.validate(cmd.Flags(), false) }, func(s *session, args []string) error {
		r, err := s.client.Keys().Sign(s.ctx, args[0], opts.Version, azkeys.SignParameters{Algorithm: &opts.alg, Value: opts.digest}, nil)
		if err != nil {
			return err
		}
		return s.print(r.KeyOperationResult, func(w io.Writer) error { _, err := fmt.Fprintln(w, b64(r.Result)); return err })
	})
}

// errBadSignature is returned by "key verify" when the signature does not verify.
var errBadSignature = errors.New("the signature does not verify")

// newVerifyCmd builds "hsmpool key verify".
func newVerifyCmd(opts *signOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "verify NAME --alg ALG (--digest B64URL | --data-file FILE) --signature B64URL [--version V]",
		Short: "Verify a signature with a key",
		Long: `verify asks the pool whether a signature of a digest verifies with a key. It prints
"ok" and exits 0 if it does; otherwise it says so and exits 1 (with -o json it prints
{"value": false} first). The digest is given as for "key sign".`,
		Example: `  hsmpool key verify k1 --alg ES256 --data-file release.tar.gz --signature "$(cat release.sig)"`,
		Args:    keyNameArg,
	}
	opts.bind(cmd.Flags(), true)
	return defaultPoolOptions().command(cmd, true, func([]string) error { return opts.validate(cmd.Flags(), true) }, func(s *session, args []string) error {
		r, err := s.client.Keys().Verify(s.ctx, args[0], opts.Version,
			azkeys.VerifyParameters{Algorithm: &opts.alg, Digest: opts.digest, Signature: opts.Signature}, nil)
		if err != nil {
			return err
		}
		ok := deref(r.Value)
		err = s.print(r.KeyVerifyResult, func(w io.Writer) error {
			if !ok {
				return nil
			}
			_, err := fmt.Fprintln(w, "ok")
			return err
		})
		if err == nil && !ok {
			err = errBadSignature
		}
		return err
	})
}

// cipherOp describes one of encrypt, decrypt, wrap and unwrap, which take the same parameters.
type cipherOp struct {
	verb, what, short, long, example string
	// iv, tag and aad say which of --iv, --tag and --aad the operation takes.
	iv, tag, aad bool
	// call makes the request.
	call func(kc *azkeys.Client, ctx context.Context, name, version string, p azkeys.KeyOperationParameters) (azkeys.KeyOperationResult, error)
}

var (
	encryptOp = cipherOp{verb: "encrypt", what: "plaintext", iv: true, aad: true,
		short: "Encrypt data with a key",
		long: `encrypt encrypts data with a key. It prints the ciphertext ("value"), and for AES the
IV and, for GCM, the authentication tag, all base64url: keep them for "key decrypt".

Algorithms: RSA-OAEP-256, RSA-OAEP and RSA1_5 with RSA keys (at most about the key's
size less 66 bytes); A128GCM, A192GCM, A256GCM (the pool makes the IV; --aad adds
authenticated data), A128CBC... (data a multiple of 16 bytes) and A128CBCPAD...
with oct keys of that size (--iv gives a 16-byte IV; by default the pool makes one).`,
		example: `  hsmpool key encrypt aes1 --alg A256GCM --in secret.txt --aad "$(printf ctx | basenc --base64url)"
  hsmpool key encrypt rsa1 --alg RSA-OAEP-256 --value aGVsbG8`,
		call: func(kc *azkeys.Client, ctx context.Context, name, version string, p azkeys.KeyOperationParameters) (azkeys.KeyOperationResult, error) {
			r, err := kc.Encrypt(ctx, name, version, p, nil)
			return r.KeyOperationResult, err
		}}
	decryptOp = cipherOp{verb: "decrypt", what: "ciphertext", iv: true, tag: true, aad: true,
		short: "Decrypt data with a key",
		long: `decrypt decrypts what "key encrypt" made, with the same algorithm, and prints the
plaintext, base64url. AES-GCM needs the --iv and --tag that encrypt printed, and the
same --aad; AES-CBC needs the --iv.`,
		example: `  hsmpool key decrypt aes1 --alg A256GCM --value CT --iv IV --tag TAG --aad AAD`,
		call: func(kc *azkeys.Client, ctx context.Context, name, version string, p azkeys.KeyOperationParameters) (azkeys.KeyOperationResult, error) {
			r, err := kc.Decrypt(ctx, name, version, p, nil)
			return r.KeyOperationResult, err
		}}
	wrapOp = cipherOp{verb: "wrap", what: "key to wrap",
		short: "Wrap a key (bytes) with a key",
		long: `wrap encrypts key material with a key and prints the wrapped key, base64url.

Algorithms: RSA-OAEP-256, RSA-OAEP and RSA1_5 with RSA keys; A128KW, A192KW, A256KW
and CKM_AES_KEY_WRAP (RFC 3394: 16 bytes or more, a multiple of 8) and
CKM_AES_KEY_WRAP_PAD (RFC 5649, any length) with oct keys.`,
		example: `  hsmpool key wrap kek --alg RSA-OAEP-256 --in dek.bin`,
		call: func(kc *azkeys.Client, ctx context.Context, name, version string, p azkeys.KeyOperationParameters) (azkeys.KeyOperationResult, error) {
			r, err := kc.WrapKey(ctx, name, version, p, nil)
			return r.KeyOperationResult, err
		}}
	unwrapOp = cipherOp{verb: "unwrap", what: "wrapped key",
		short:   "Unwrap a key that \"key wrap\" wrapped",
		long:    `unwrap decrypts what "key wrap" made, with the same algorithm, and prints the key material, base64url.`,
		example: `  hsmpool key unwrap kek --alg RSA-OAEP-256 --value WRAPPED`,
		call: func(kc *azkeys.Client, ctx context.Context, name, version string, p azkeys.KeyOperationParameters) (azkeys.KeyOperationResult, error) {
			r, err := kc.UnwrapKey(ctx, name, version, p, nil)
			return r.KeyOperationResult, err
		}}
)

// cipherOptions are the flags of a cipherOp's command.
type cipherOptions struct {
	Version      string
	Alg          string
	IV, Tag, AAD []byte
	inputOptions

	alg azkeys.EncryptionAlgorithm // made by validate
}

// validate checks the flags; errors name the flag.
func (o *cipherOptions) validate(f *pflag.FlagSet) error {
	if o.Alg == "" {
		return errors.New("--alg is required: " + orList(names(azkeys.PossibleEncryptionAlgorithmValues())))
	}
	alg, err := choice("--alg", o.Alg, azkeys.PossibleEncryptionAlgorithmValues())
	o.alg = alg
	if err != nil {
		return err
	}
	return o.inputOptions.validate(f)
}

// newCipherCmd builds "hsmpool key VERB" for op.
func newCipherCmd(op cipherOp) *cobra.Command {
	opts := &cipherOptions{}
	use := op.verb + " NAME --alg ALG (--in FILE | --value B64URL)"
	cmd := &cobra.Command{Short: op.short, Long: op.long, Example: op.example, Args: keyNameArg}
	f := cmd.Flags()
	f.StringVar(&opts.Version, "version", opts.Version, "the key version to use (default the newest)")
	f.StringVar(&opts.Alg, "alg", opts.Alg, "algorithm (required): "+strings.Join(names(azkeys.PossibleEncryptionAlgorithmValues()), ", "))
	opts.bind(f, op.what)
	for _, b := range []struct {
		on         bool
		p          *[]byte
		name, help string
	}{
		{op.iv, &opts.IV, "iv", "initialization vector, base64url (AES)"},
		{op.tag, &opts.Tag, "tag", "authentication tag, base64url (AES-GCM)"},
		{op.aad, &opts.AAD, "aad", "additional authenticated data, base64url (AES-GCM)"},
	} {
		if b.on {
			bytesVar(f, b.p, b.name, b.help)
			use += " [--" + b.name + " B64URL]"
		}
	}
	cmd.Use = use + " [--version V]"
	return defaultPoolOptions().command(cmd, true, func([]string) error { return opts.validate(f) }, func(s *session, args []string) error {
		in, err := opts.bytes()
		if err != nil {
			return err
		}
		p := azkeys.KeyOperationParameters{Algorithm: &opts.alg, Value: in, IV: opts.IV, AuthenticationTag: opts.Tag, AdditionalAuthenticatedData: opts.AAD}
		r, err := op.call(s.client.Keys(), s.ctx, args[0], opts.Version, p)
		if err != nil {
			return err
		}
		return s.print(r, func(w io.Writer) error { return printCipherResult(w, op.verb == encryptOp.verb, r) })
	})
}

// printCipherResult writes the result of a cipherOp: the value alone, or for encrypt the value, IV and tag that
// decrypt needs.
func printCipherResult(w io.Writer, encrypt bool, r azkeys.KeyOperationResult) error {
	if !encrypt {
		_, err := fmt.Fprintln(w, b64(r.Result))
		return err
	}
	l := fieldList{{"value", b64(r.Result)}}
	l.add("iv", b64(r.IV))
	l.add("tag", b64(r.AuthenticationTag))
	l.add("aad", b64(r.AdditionalAuthenticatedData))
	if r.KID != nil {
		l.add("kid", string(*r.KID))
	}
	return l.write(w)
}
