// Package softhsm sets up SoftHSM2, the software PKCS#11 token the embedded default and the
// tests use: where its module is, and a private configuration whose tokens live in a
// directory of ours rather than in /var/lib/softhsm.
//
// SoftHSM2 reads the file named by the SOFTHSM2_CONF environment variable when the module
// is initialised, so a process chooses its token directory once, before it first loads the
// module.
package softhsm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// ModuleEnv overrides where the SoftHSM2 module is looked for.
const ModuleEnv = "HSMPOOL_PKCS11_MODULE"

// modulePaths are where distributions install the module.
var modulePaths = []string{
	"/usr/lib/softhsm/libsofthsm2.so",                   // Debian, Ubuntu
	"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",  // Debian multiarch
	"/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so", // Debian multiarch
	"/usr/lib64/pkcs11/libsofthsm2.so",                  // Fedora, RHEL
	"/usr/local/lib/softhsm/libsofthsm2.so",             // built from source
	"/opt/homebrew/lib/softhsm/libsofthsm2.so",          // macOS
}

// ErrNotInstalled says that no SoftHSM2 module was found.
var ErrNotInstalled = errors.New("SoftHSM2 is not installed (install it with: sudo apt-get install softhsm2, or run make deps)")

// Module returns the path of the SoftHSM2 PKCS#11 module.
func Module() (string, error) {
	if p := os.Getenv(ModuleEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s=%s: %w", ModuleEnv, p, err)
		}
		return p, nil
	}
	for _, p := range modulePaths {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", ErrNotInstalled
}

// WriteConfig makes dir/tokens (0700) and writes dir/softhsm2.conf (0600) pointing at it,
// and returns the config's path for SOFTHSM2_CONF. An existing config is left as it is.
func WriteConfig(dir string) (string, error) {
	tokens := filepath.Join(dir, "tokens")
	if err := os.MkdirAll(tokens, 0o700); err != nil {
		return "", fmt.Errorf("make SoftHSM2 token directory: %w", err)
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	body := fmt.Sprintf(`# Written by hsmpool: SoftHSM2 tokens of this data directory.
directories.tokendir = %s
objectstore.backend = file
log.level = ERROR
slots.removable = false
`, tokens)
	f, err := os.OpenFile(conf, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return conf, nil
	}
	if err != nil {
		return "", fmt.Errorf("write SoftHSM2 config: %w", err)
	}
	if _, err := f.WriteString(body); err != nil {
		f.Close()
		return "", fmt.Errorf("write SoftHSM2 config: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("write SoftHSM2 config: %w", err)
	}
	return conf, nil
}
