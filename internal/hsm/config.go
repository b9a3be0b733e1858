package hsm

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/hsmpool/hsmpool/internal/fault"
	"github.com/hsmpool/hsmpool/internal/secret"
)

// DefaultModule is where Debian's softhsm2 package installs the SoftHSM2 PKCS#11 module.
const DefaultModule = "/usr/lib/softhsm/libsofthsm2.so"

// Config says which token to use and how. Field names in errors are the configuration
// keys (module, token_label, ...) so that the daemon's config errors name the setting.
type Config struct {
	// Module is the path of the PKCS#11 shared library.
	Module string `json:"module"`
	// TokenLabel selects the slot whose token has this label. Exactly one of TokenLabel
	// and SlotID is set.
	TokenLabel string `json:"token_label,omitempty"`
	// SlotID selects the slot by its PKCS#11 slot ID.
	SlotID *uint `json:"slot_id,omitempty"`
	// PINFile is a file holding the user PIN (one trailing newline is ignored). The PIN
	// never comes from a flag, so that it does not show in ps or shell history.
	PINFile string `json:"pin_file,omitempty"`
	// PINEnv names an environment variable holding the user PIN. Exactly one of PINFile
	// and PINEnv is set.
	PINEnv string `json:"pin_env,omitempty"`
	// Sessions bounds the number of PKCS#11 sessions, and so the number of HSM calls in
	// flight at once.
	Sessions int `json:"sessions"`
}

// Default returns a Config with the SoftHSM2 module and a session pool sized for the
// machine; the caller sets the token and the PIN source.
func Default() Config {
	return Config{
		Module:   DefaultModule,
		Sessions: max(4, 2*runtime.GOMAXPROCS(0)),
	}
}

// MaxSessions caps Config.Sessions: more sessions than this only add lock contention in
// the module.
const MaxSessions = 256

// Validate checks the Config without touching the HSM.
func (c Config) Validate() error {
	var errs []error
	if c.Module == "" {
		errs = append(errs, errors.New("module: the PKCS#11 module path is required"))
	}
	switch {
	case c.TokenLabel == "" && c.SlotID == nil:
		errs = append(errs, errors.New("token_label, slot_id: set one to choose the slot"))
	case c.TokenLabel != "" && c.SlotID != nil:
		errs = append(errs, errors.New("token_label, slot_id: set only one"))
	case len(c.TokenLabel) > 32:
		errs = append(errs, fmt.Errorf("token_label: %q is longer than the 32 bytes PKCS#11 allows", c.TokenLabel))
	}
	switch {
	case c.PINFile == "" && c.PINEnv == "":
		errs = append(errs, errors.New("pin_file, pin_env: set one to give the user PIN"))
	case c.PINFile != "" && c.PINEnv != "":
		errs = append(errs, errors.New("pin_file, pin_env: set only one"))
	}
	if c.Sessions < 1 || c.Sessions > MaxSessions {
		errs = append(errs, fmt.Errorf("sessions: %d is outside 1..%d", c.Sessions, MaxSessions))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("hsm config: %w: %w", fault.BadParameter, err)
	}
	return nil
}

// pin reads the user PIN from the configured source.
func (c Config) pin() (secret.Bytes, error) {
	if c.PINFile != "" {
		pin, err := secret.ReadFile(c.PINFile)
		if err != nil {
			return secret.Bytes{}, fmt.Errorf("pin_file: %w: %w", fault.BadParameter, err)
		}
		return pin, nil
	}
	pin, ok := secret.FromEnv(c.PINEnv)
	if !ok {
		return secret.Bytes{}, fmt.Errorf("pin_env: environment variable %s is not set: %w", c.PINEnv, fault.BadParameter)
	}
	return pin, nil
}
