package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"github.com/spf13/cobra"
)

// newKeyCmd builds "hsmpool key", the keys of a pool through the Azure SDK for Go.
func newKeyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "key",
		Short: "Create, manage and use the keys of a pool",
		Long: `key manages the keys of a pool and uses them, through the Azure Key Vault keys API
that the pool serves (the Azure SDK for Go, azkeys). Every key lives in the pool's
HSMs: RSA-HSM (2048, 3072, 4096 bits), EC-HSM (P-256, P-256K, P-384, P-521) and
oct-HSM (AES 128, 192, 256 bits).

The pool and the credentials come from a client file, --client-file FILE or
$HSMPOOL_CLIENT_FILE ("hsmpoold dev" writes DATA_DIR/client.json). Binary values are
base64url, in flags and in output. Output is a short human form, or with -o json the
REST API's JSON of the result, for scripts. Errors show the pool's error code, HTTP
status and message.`,
		Example: `  export HSMPOOL_CLIENT_FILE=.data/client.json
  hsmpool key create k1 --kty EC-HSM --curve P-256 --ops sign,verify
  hsmpool key sign k1 --alg ES256 --data-file msg.txt
  hsmpool key list -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(
		newKeyCreateCmd(&keyCreateOptions{}),
		newKeyImportCmd(&keyImportOptions{}),
		newKeyGetCmd(),
		newKeyListCmd(),
		newKeyVersionsCmd(),
		newKeyUpdateCmd(&keyUpdateOptions{}),
		newNameCmd("delete", "Delete a key (it can be recovered until it is purged)",
			`delete deletes a key, every version of it. The key stays recoverable with "key
recover" for the pool's retention period, after which the pool purges it; "key purge"
purges it at once. A deleted key's name cannot be used again until it is purged.`,
			func(s *session, name string) error {
				r, err := s.client.Keys().DeleteKey(s.ctx, name, nil)
				if err != nil {
					return err
				}
				return s.print(r.DeletedKey, func(w io.Writer) error { return printDeletedKey(w, r.DeletedKey) })
			}),
		newNameCmd("recover", "Recover a deleted key", `recover brings back a deleted key that is not purged yet, with all its versions.`,
			func(s *session, name string) error {
				r, err := s.client.Keys().RecoverDeletedKey(s.ctx, name, nil)
				return s.printKey(r.KeyBundle, err)
			}),
		newNameCmd("purge", "Purge a deleted key, for good", `purge destroys a deleted key for good: it cannot be recovered afterwards, and its name
can be used again. It prints nothing.`,
			func(s *session, name string) error {
				r, err := s.client.Keys().PurgeDeletedKey(s.ctx, name, nil)
				if err != nil || !s.json {
					return err
				}
				return writeJSON(s.out, r)
			}),
		newNameCmd("rotate", "Make a new version of a key", `rotate makes a new version of a key, of the same type and size, with the
same operations and tags, and prints it. The pool needs a rotation policy for the key
first ("key rotation-policy set").`,
			func(s *session, name string) error {
				r, err := s.client.Keys().RotateKey(s.ctx, name, nil)
				return s.printKey(r.KeyBundle, err)
			}),
		newKeyBackupCmd(&keyBackupOptions{}),
		newKeyRestoreCmd(&keyRestoreOptions{}),
		newRotationPolicyCmd(),
		newSignCmd(&signOptions{}),
		newVerifyCmd(&signOptions{}),
		newCipherCmd(encryptOp),
		newCipherCmd(decryptOp),
		newCipherCmd(wrapOp),
		newCipherCmd(unwrapOp),
	)
	return cmd
}

// printKey prints a key, unless err is not nil; it returns err then.
func (s *session) printKey(k azkeys.KeyBundle, err error) error {
	if err != nil {
		return err
	}
	return s.print(k, func(w io.Writer) error { return printKey(w, k) })
}

// newNameCmd builds "hsmpool key VERB NAME" for a verb that takes nothing but the key's name.
func newNameCmd(verb, short, long string, run func(s *session, name string) error) *cobra.Command {
	cmd := &cobra.Command{
		Use:     verb + " NAME",
		Short:   short,
		Long:    long,
		Example: "  hsmpool key " + verb + " k1",
		Args:    keyNameArg,
	}
	return defaultPoolOptions().command(cmd, true, nil, func(s *session, args []string) error { return run(s, args[0]) })
}

// keyCreateOptions are the flags of "hsmpool key create".
type keyCreateOptions struct {
	Kty      string
	Size     int
	Curve    string
	Disabled bool
	attributeOptions

	params azkeys.CreateKeyParameters // made by validate
}

// keySizes are the sizes a key type can have, in bits.
var keySizes = map[azkeys.KeyType][]int{azkeys.KeyTypeRSAHSM: {2048, 3072, 4096}, azkeys.KeyTypeOctHSM: {128, 192, 256}}

// validate checks the flags and makes the request; errors name the flag.
func (o *keyCreateOptions) validate() error {
	if o.Kty == "" {
		return errors.New("--kty is required: RSA-HSM, EC-HSM or oct-HSM")
	}
	kty, err := choice("--kty", o.Kty, []azkeys.KeyType{azkeys.KeyTypeRSAHSM, azkeys.KeyTypeECHSM, azkeys.KeyTypeOctHSM})
	if err != nil {
		return err
	}
	p := azkeys.CreateKeyParameters{Kty: &kty}
	if kty == azkeys.KeyTypeECHSM {
		if o.Size != 0 {
			return errors.New("--size: an EC-HSM key's size is its --curve")
		}
		if o.Curve == "" {
			o.Curve = string(azkeys.CurveNameP256)
		}
		crv, err := choice("--curve", o.Curve, azkeys.PossibleCurveNameValues())
		if err != nil {
			return err
		}
		p.Curve = &crv
	} else {
		if o.Curve != "" {
			return fmt.Errorf("--curve: only EC-HSM keys have one, not %s keys", kty)
		}
		if o.Size != 0 {
			if !slices.Contains(keySizes[kty], o.Size) {
				return fmt.Errorf("--size %d: %s keys have %s bits", o.Size, kty, orList(intStrings(keySizes[kty])))
			}
			size := int32(o.Size)
			p.KeySize = &size
		}
	}
	p.KeyOps, p.Tags, p.KeyAttributes, err = o.parse(disabledFlag(o.Disabled))
	o.params = p
	return err
}

// disabledFlag is the enabled attribute that --disabled asks for: false when given, else nil (the pool's default).
func disabledFlag(disabled bool) *bool {
	if !disabled {
		return nil
	}
	return new(false)
}

func intStrings(ns []int) []string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = fmt.Sprint(n)
	}
	return s
}

// newKeyCreateCmd builds "hsmpool key create".
func newKeyCreateCmd(opts *keyCreateOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "create NAME --kty RSA-HSM|EC-HSM|oct-HSM [--size N] [--curve P-256] [--ops OPS] [--tag K=V]... [--disabled] [--nbf T] [--exp T]",
		Short: "Create a key in the pool's HSMs",
		Long: `create generates a key inside the pool's HSMs and prints it. If a key of that name
exists, the new key becomes its newest version.

  --kty RSA-HSM  --size 2048 (the pool's default), 3072 or 4096
  --kty EC-HSM   --curve P-256 (the default), P-256K, P-384 or P-521
  --kty oct-HSM  --size 128, 192 or 256 (the pool's default): AES

--ops limits what the key may do (the default is everything its type can do);
--disabled creates it disabled; --nbf and --exp bound when it may be used.`,
		Example: `  hsmpool key create signer --kty EC-HSM --curve P-384 --ops sign,verify --tag team=payments
  hsmpool key create kek --kty RSA-HSM --size 3072 --ops wrapKey,unwrapKey --exp 2028-01-01T00:00:00Z`,
		Args: keyNameArg,
	}
	f := cmd.Flags()
	f.StringVar(&opts.Kty, "kty", opts.Kty, "key type: RSA-HSM, EC-HSM or oct-HSM (required)")
	f.IntVar(&opts.Size, "size", opts.Size, "key size in bits: RSA 2048, 3072, 4096; AES 128, 192, 256")
	f.StringVar(&opts.Curve, "curve", opts.Curve, "EC curve: P-256, P-256K, P-384 or P-521 (default P-256)")
	f.BoolVar(&opts.Disabled, "disabled", opts.Disabled, "create the key disabled")
	opts.bind(f)
	return defaultPoolOptions().command(cmd, true, func([]string) error { return opts.validate() }, func(s *session, args []string) error {
		r, err := s.client.Keys().CreateKey(s.ctx, args[0], opts.params, nil)
		return s.printKey(r.KeyBundle, err)
	})
}

// newKeyGetCmd builds "hsmpool key get".
func newKeyGetCmd() *cobra.Command {
	var version string
	cmd := &cobra.Command{
		Use:   "get NAME [--version V]",
		Short: "Show a key's public part and attributes",
		Long: `get prints a key: its identifier, type, size or curve, permitted operations,
attributes and tags. The newest version unless --version names another. With -o json
the JSON includes the public key (n and e, or crv, x and y) as a JWK.`,
		Example: `  hsmpool key get k1
  hsmpool key get k1 --version 0123456789abcdef0123456789abcdef -o json`,
		Args: keyNameArg,
	}
	cmd.Flags().StringVar(&version, "version", "", "the version to show (default the newest)")
	return defaultPoolOptions().command(cmd, true, nil, func(s *session, args []string) error {
		r, err := s.client.Keys().GetKey(s.ctx, args[0], version, nil)
		return s.printKey(r.KeyBundle, err)
	})
}

// listKeys prints listed keys: the items as JSON, or a table of rows.
func (s *session) listKeys(items []*azkeys.KeyProperties, err error) error {
	if err != nil {
		return err
	}
	if items == nil {
		items = []*azkeys.KeyProperties{} // JSON [], not null
	}
	return s.print(items, func(w io.Writer) error { return printKeyRows(w, keyRows(s.ctx, s.client.Keys(), items)) })
}

func keyItems(r azkeys.ListKeyPropertiesResponse) []*azkeys.KeyProperties { return r.Value }

func versionItems(r azkeys.ListKeyPropertiesVersionsResponse) []*azkeys.KeyProperties { return r.Value }

// newKeyListCmd builds "hsmpool key list".
func newKeyListCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the keys of the pool",
		Long: `list prints one line per key: its name, type, whether it is enabled, its newest
version and when that was created. With -o json it prints the list as the pool
returns it (identifiers without versions, attributes and tags).`,
		Example: `  hsmpool key list
  hsmpool key list -o json`,
		Args: cobra.NoArgs,
	}
	return defaultPoolOptions().command(cmd, true, nil, func(s *session, _ []string) error {
		return s.listKeys(allPages(s.ctx, s.client.Keys().NewListKeyPropertiesPager(nil), keyItems))
	})
}

// newKeyVersionsCmd builds "hsmpool key versions".
func newKeyVersionsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "versions NAME",
		Short: "List the versions of a key",
		Long:  `versions prints one line per version of a key, as "list" does for keys.`,
		Example: `  hsmpool key versions k1
  hsmpool key versions k1 -o json`,
		Args: keyNameArg,
	}
	return defaultPoolOptions().command(cmd, true, nil, func(s *session, args []string) error {
		return s.listKeys(allPages(s.ctx, s.client.Keys().NewListKeyPropertiesVersionsPager(args[0], nil), versionItems))
	})
}

// keyUpdateOptions are the flags of "hsmpool key update".
type keyUpdateOptions struct {
	Version         string
	Enable, Disable bool
	attributeOptions

	params azkeys.UpdateKeyParameters // made by validate
}

// validate checks the flags and makes the request; errors name the flag.
func (o *keyUpdateOptions) validate() error {
	var enabled *bool
	switch {
	case o.Enable && o.Disable:
		return errors.New("--enable and --disable: give one or the other")
	case o.Enable || o.Disable:
		enabled = new(o.Enable)
	}
	var err error
	o.params.KeyOps, o.params.Tags, o.params.KeyAttributes, err = o.parse(enabled)
	if err != nil {
		return err
	}
	if o.params.KeyOps == nil && o.params.Tags == nil && o.params.KeyAttributes == nil {
		return errors.New("nothing to change: give --enable, --disable, --ops, --tag, --nbf or --exp")
	}
	return nil
}

// newKeyUpdateCmd builds "hsmpool key update".
func newKeyUpdateCmd(opts *keyUpdateOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "update NAME [--version V] [--enable|--disable] [--ops OPS] [--tag K=V]... [--nbf T] [--exp T]",
		Short: "Change a key's attributes, operations or tags",
		Long: `update changes what is given and leaves the rest: whether the key is enabled, its
permitted operations, its validity dates, its tags (--tag replaces all of them). It
changes the newest version unless --version names another, and prints the result.`,
		Example: `  hsmpool key update k1 --disable
  hsmpool key update k1 --tag owner=alice --tag env=prod --exp 2028-01-01T00:00:00Z`,
		Args: keyNameArg,
	}
	f := cmd.Flags()
	f.StringVar(&opts.Version, "version", opts.Version, "the version to change (default the newest)")
	f.BoolVar(&opts.Enable, "enable", opts.Enable, "enable the key")
	f.BoolVar(&opts.Disable, "disable", opts.Disable, "disable the key")
	opts.bind(f)
	return defaultPoolOptions().command(cmd, true, func([]string) error { return opts.validate() }, func(s *session, args []string) error {
		r, err := s.client.Keys().UpdateKey(s.ctx, args[0], opts.Version, opts.params, nil)
		return s.printKey(r.KeyBundle, err)
	})
}

// keyBackupOptions are the flags of "hsmpool key backup".
type keyBackupOptions struct {
	Out string
}

// newKeyBackupCmd builds "hsmpool key backup".
func newKeyBackupCmd(opts *keyBackupOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "backup NAME -o FILE",
		Short: "Write a key's backup blob to a file",
		Long: `backup writes the backup of a key, every version of it, to a new file (mode 0600);
it never overwrites one. The blob is encrypted under the pool's security domain:
only this pool, or one recovered from its security domain, can restore it.`,
		Example: `  hsmpool key backup k1 -o k1.backup`,
		Args:    keyNameArg,
	}
	cmd.Flags().StringVarP(&opts.Out, "out", "o", opts.Out, "write the backup to this new file (required)")
	validate := func([]string) error {
		if opts.Out == "" {
			return errors.New("-o is required: the file to write the backup to")
		}
		return checkAbsent(opts.Out)
	}
	return defaultPoolOptions().command(cmd, false, validate, func(s *session, args []string) error {
		r, err := s.client.Keys().BackupKey(s.ctx, args[0], nil)
		if err != nil {
			return err
		}
		if err := writeNewFile(opts.Out, r.Value, 0o600); err != nil {
			return err
		}
		_, err = fmt.Fprintf(s.errOut, "hsmpool: wrote the backup of %s to %s (%d bytes)\n", args[0], opts.Out, len(r.Value))
		return err
	})
}

// keyRestoreOptions are the flags of "hsmpool key restore".
type keyRestoreOptions struct {
	In string

	blob []byte // read by validate
}

// newKeyRestoreCmd builds "hsmpool key restore".
func newKeyRestoreCmd(opts *keyRestoreOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "restore -i FILE",
		Short: "Restore a key from a backup file",
		Long: `restore restores a key, with all its versions and their identifiers, from a file
that "key backup" wrote, and prints it. A key of that name must not exist, not even
deleted.`,
		Example: `  hsmpool key restore -i k1.backup`,
		Args:    cobra.NoArgs,
	}
	cmd.Flags().StringVarP(&opts.In, "in", "i", opts.In, "the backup file (required)")
	validate := func([]string) (err error) {
		if opts.In == "" {
			return errors.New("-i is required: the backup file")
		}
		opts.blob, err = os.ReadFile(opts.In)
		return err
	}
	return defaultPoolOptions().command(cmd, true, validate, func(s *session, _ []string) error {
		r, err := s.client.Keys().RestoreKey(s.ctx, azkeys.RestoreKeyParameters{KeyBackup: opts.blob}, nil)
		return s.printKey(r.KeyBundle, err)
	})
}
