package state

import (
	"github.com/hsmpool/hsmpool/internal/fault"
	"github.com/hsmpool/hsmpool/internal/rpcerr"
)

// The errors of this package are replicated outcomes: every node returns the same one for the
// same command, and the core hands it to the client as it is. So they are *rpcerr.Error values
// with the Azure code, inner code and, where Azure's wording is known (spec/azure-mhsm-api.md
// §3.6 and §4), Azure's exact text. They are built here and nowhere else so that the texts stay
// in one place.

// keyNotFoundText is Azure's current KeyNotFound message; %s is the name, or name/version.
const keyNotFoundText = "A key with (name/id) %s was not found in this key vault. If you recently deleted this key " +
	"you may be able to recover it using the correct recovery command. For help resolving this issue, please see " +
	"https://go.microsoft.com/fwlink/?linkid=2125182"

// errKeyNotFound is the 404 for a name (or name/version) that has no live key.
func errKeyNotFound(id string) error {
	return rpcerr.New(fault.NotFound, "KeyNotFound", keyNotFoundText, id)
}

// errDeletedKeyNotFound is the 404 for a name that has no soft-deleted key (get deleted key,
// recover, purge).
func errDeletedKeyNotFound(name string) error {
	return rpcerr.New(fault.NotFound, "KeyNotFound", "Deleted Key not found: %s", name)
}

// errDeletedButRecoverable is the 409 for reusing the name of a soft-deleted key.
func errDeletedButRecoverable(name string) error {
	return &rpcerr.Error{
		Kind:  fault.Conflict,
		Code:  "Conflict",
		Inner: "ObjectIsDeletedButRecoverable",
		Msg: "Key " + name + " is currently in a deleted but recoverable state, and its name cannot be reused; " +
			"in this state, the key can only be recovered or purged.",
	}
}

// errNotActivated refuses key commands before the first security-domain download: until then
// the pool has no domain KEK, so no key could have been wrapped.
func errNotActivated() error {
	return &rpcerr.Error{Kind: fault.Conflict, Code: "Conflict", Inner: "PoolNotActivated", Msg: "the pool is not activated"}
}

// errNotInitialized refuses Activate before InitPool.
func errNotInitialized() error {
	return &rpcerr.Error{Kind: fault.Conflict, Code: "Conflict", Inner: "PoolNotInitialized", Msg: "the pool is not initialized"}
}

func errConflict(format string, args ...any) error {
	return rpcerr.New(fault.Conflict, "Conflict", format, args...)
}

func errBadParameter(format string, args ...any) error {
	return rpcerr.New(fault.BadParameter, "BadParameter", format, args...)
}
