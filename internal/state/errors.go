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

// builtInNameText is Azure's message for a custom role that takes a built-in role's GUID.
const builtInNameText = "Cannot re-use the name/GUID matching that of a built-in role. Please use a unique role ID."

// errRoleDefinitionNotFound is the 404 for a role definition GUID that names no role.
func errRoleDefinitionNotFound(name string) error {
	return rpcerr.New(fault.NotFound, "RoleDefinitionNotFound", "the role definition %s does not exist", name)
}

// errRoleAssignmentNotFound is the 404 for a role assignment name that names no assignment.
func errRoleAssignmentNotFound(name string) error {
	return rpcerr.New(fault.NotFound, "RoleAssignmentNotFound", "the role assignment %s does not exist", name)
}

// errRoleAssignmentExists is the 409 for an assignment whose name is taken, or which grants
// what another one already grants.
func errRoleAssignmentExists(format string, args ...any) error {
	e := rpcerr.New(fault.Conflict, "Conflict", format, args...)
	e.Inner = "RoleAssignmentExists"
	return e
}

// errPrincipalNotFound is the 404 for an object ID that names no principal of the pool.
func errPrincipalNotFound(objectID string) error {
	return rpcerr.New(fault.NotFound, "NotFound", "the principal %s does not exist", objectID)
}

// errLimit refuses a command that would pass one of the pool's limits (Managed HSM's, where it
// has one). It is a BadParameter, as Azure's RoleAssignmentLimitExceeded is a 400.
func errLimit(inner, format string, args ...any) error {
	e := rpcerr.New(fault.BadParameter, "BadParameter", format, args...)
	e.Inner = inner
	return e
}

// errCredentialNotFound is the 404 for a credential ID that a principal does not have.
func errCredentialNotFound(objectID, id string) error {
	return rpcerr.New(fault.NotFound, "NotFound", "principal %s has no credential %s", objectID, id)
}
