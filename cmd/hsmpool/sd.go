package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/spf13/cobra"

	"github.com/hsmpool/hsmpool/securitydomain"
)

// newSDCmd builds "hsmpool sd", the security-domain commands: the security officers' offline commands, which run on
// the officers' own machines with their own keys, and the administrator's download and status, which talk to a pool.
func newSDCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sd",
		Short: "Security domain: activate a pool, and the officers' offline tools",
		Long: `sd holds the security officers' offline commands for the security domain, the file
that protects every key of a pool and is the only way to recover a pool on new HSMs.
The file format is Azure Managed HSM's, so these commands and "az keyvault
security-domain" work on each other's files.

A security domain is downloaded encrypted to 3 to 10 officers' certificates with a
quorum M: any M officers together can recover it, fewer cannot. Each officer:

  1. makes a key pair with "hsmpool sd officer-keygen --out NAME", keeps NAME.key
     secret and gives NAME.cer to the pool administrator for the download;
  2. after the download, checks their own share with "hsmpool sd inspect --key";
  3. in a recovery, joins M-1 other officers for "hsmpool sd restore-blob", which
     opens the security domain offline and re-encrypts it to the recovering pool's
     exchange key.

The administrator activates a new pool with "hsmpool sd download", which asks the
pool for its security domain, encrypted to the officers' certificates, and "hsmpool sd
status"; these two talk to the pool (see --client-file). The officers' commands never
open a network connection. Passphrases are read from a file (--passphrase-file), from
$HSMPOOL_SD_PASSPHRASE, or from the terminal; never from a flag value.`,
		Example: `  # Make an officer key pair: officer1.key (encrypted) and officer1.cer.
  hsmpool sd officer-keygen --out officer1

  # The administrator activates the pool with three officers' certificates, quorum 2.
  hsmpool sd download --cert officer1.cer --cert officer2.cer --cert officer3.cer --quorum 2 -o sd.json

  # Check that officer1's share in a downloaded security domain opens.
  hsmpool sd inspect --sd-file sd.json --key officer1.key

  # Recovery, offline step: two officers build the restore blob for the new pool.
  hsmpool sd restore-blob --sd-file sd.json --exchange-key ex.pem \
      --key officer1.key --key officer2.key -o blob.json`,
		Args: cobra.NoArgs, // "hsmpool sd typo" is an unknown command, not a request for help
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cmd.Help()
		},
	}
	cmd.AddCommand(
		newOfficerKeygenCmd(defaultOfficerKeygenOptions()),
		newInspectCmd(defaultInspectOptions()),
		newRestoreBlobCmd(&restoreBlobOptions{}),
		newSDDownloadCmd(&sdDownloadOptions{}),
		newSDStatusCmd(),
		newSDExchangeKeyCmd(),
		newSDUploadCmd(&sdUploadOptions{}),
	)
	return cmd
}

// envPassphrase is the environment variable that holds the passphrase of officer keys, for scripts. A file given with
// --passphrase-file comes first.
const envPassphrase = "HSMPOOL_SD_PASSPHRASE"

// sdScope says what an error from package securitydomain was about, so that explain can name the file at fault.
type sdScope struct {
	// sdFile is the path of the security-domain file, as the user gave it.
	sdFile string
	// file is the parsed security-domain file, once it is parsed.
	file *securitydomain.File
	// key is the officer key the error is about, if it is about one.
	key *officerKey
	// given is how many officer keys the user gave.
	given int
}

// explain is the one place that turns package securitydomain's errors into what an officer reads. Each message
// names the file at fault; some carry hints. Errors the package does not classify keep their text, prefixed with
// the security-domain file.
func (s sdScope) explain(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, securitydomain.ErrMalformed) && s.key != nil:
		return fmt.Errorf("%s: its share in %s is damaged: %w", s.key.keyPath, s.sdFile, err)
	case errors.Is(err, securitydomain.ErrMalformed):
		return withHints(fmt.Errorf("%s: not a security-domain file: %w", s.sdFile, err),
			`give the file that "az keyvault security-domain download" wrote (--security-domain-file)`)
	case errors.Is(err, securitydomain.ErrNoShare) && s.key != nil:
		// err's own text adds nothing to this one, so it is left out; the sentinel is kept for errors.Is.
		return withHints(fmt.Errorf("%s: its certificate %s (thumbprint %s) matches no share in %s%w",
			s.key.keyPath, s.key.certPath, securitydomain.Thumbprint(s.key.cert), s.sdFile, silent{err},
		), `the shares are encrypted to the certificates given at download; "hsmpool sd inspect --sd-file `+s.sdFile+`" lists their thumbprints`)
	case errors.Is(err, securitydomain.ErrKeyMismatch) && s.key != nil:
		return fmt.Errorf("%s: the share in %s for its certificate %s does not decrypt with it: the share is damaged, or the file was tampered with (%w)",
			s.key.keyPath, s.sdFile, s.key.certPath, err)
	case errors.Is(err, securitydomain.ErrTooFewKeys):
		need := "more"
		if s.file != nil {
			need = fmt.Sprint(s.file.Required)
		}
		return withHints(fmt.Errorf("%s needs %s officer keys; %d given", s.sdFile, need, s.given),
			"give one --key for each officer taking part, each officer's own key")
	case errors.Is(err, securitydomain.ErrIntegrity):
		return fmt.Errorf("%s: the officers' shares do not open its data: the file is damaged or was tampered with (%w)", s.sdFile, err)
	case errors.Is(err, securitydomain.ErrWrongExchangeKey):
		return fmt.Errorf("%s: the restore blob was made for another exchange key (%w)", s.sdFile, err)
	default:
		return fmt.Errorf("%s: %w", s.sdFile, err)
	}
}

// silent wraps an error so that it formats as nothing: "%w" with it keeps the error for errors.Is without repeating
// its text.
type silent struct{ err error }

func (silent) Error() string   { return "" }
func (s silent) Unwrap() error { return s.err }

// errExists is returned for an output file that exists already: sd commands never overwrite one.
func errExists(path string) error {
	return withHints(fmt.Errorf("%s already exists; refusing to overwrite it", path),
		"choose another name, or move the old file away first")
}

// checkAbsent fails, naming the first of paths that exists (even as a dangling symlink), so that a command can refuse
// before it asks for a passphrase or computes anything. writeNewFile still creates with O_EXCL: this check is only
// the early, friendly one.
func checkAbsent(paths ...string) error {
	for _, p := range paths {
		if _, err := os.Lstat(p); err == nil {
			return errExists(p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err // os errors name the path
		}
	}
	return nil
}

// writeNewFile creates path, which must not exist, with mode perm, writes data to it and syncs it. On any error it
// removes the file it created; it never touches a file that existed.
func writeNewFile(path string, data []byte, perm os.FileMode) (err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if errors.Is(err, fs.ErrExist) {
		return errExists(path)
	} else if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = cerr
		}
		if err != nil {
			_ = os.Remove(path)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return err
	}
	return f.Sync()
}
