package authz

import "strings"

// Action is a Managed HSM data action. The zero value is no action and is never granted.
type Action uint8

// The data actions: Managed HSM's DataAction enum (spec/azure-mhsm-api.md §5.2) plus
// keys/rotate/action, which the documentation's role matrix gives to Crypto User. [Action.String]
// returns the full name, ActionPrefix included.
const (
	_ Action = iota

	KeysRead           // keys/read/action
	KeysWrite          // keys/write/action
	KeysCreate         // keys/create
	KeysDelete         // keys/delete
	KeysImport         // keys/import/action
	KeysExport         // keys/export/action
	KeysRelease        // keys/release/action
	KeysBackup         // keys/backup/action
	KeysRestore        // keys/restore/action
	KeysRotate         // keys/rotate/action
	KeysEncrypt        // keys/encrypt/action
	KeysDecrypt        // keys/decrypt/action
	KeysWrap           // keys/wrap/action
	KeysUnwrap         // keys/unwrap/action
	KeysSign           // keys/sign/action
	KeysVerify         // keys/verify/action
	DeletedKeysRead    // keys/deletedKeys/read/action
	DeletedKeysRecover // keys/deletedKeys/recover/action
	DeletedKeysDelete  // keys/deletedKeys/delete
	RNG                // rng/action

	RoleDefinitionsRead   // roleDefinitions/read/action
	RoleDefinitionsWrite  // roleDefinitions/write/action
	RoleDefinitionsDelete // roleDefinitions/delete/action
	RoleAssignmentsRead   // roleAssignments/read/action
	RoleAssignmentsWrite  // roleAssignments/write/action
	RoleAssignmentsDelete // roleAssignments/delete/action

	SecurityDomainDownload        // securitydomain/download/action
	SecurityDomainDownloadRead    // securitydomain/download/read
	SecurityDomainUpload          // securitydomain/upload/action
	SecurityDomainUploadRead      // securitydomain/upload/read
	SecurityDomainTransferKeyRead // securitydomain/transferkey/read

	BackupStart   // backup/start/action
	BackupStatus  // backup/status/action
	RestoreStart  // restore/start/action
	RestoreStatus // restore/status/action

	numActions // one past the last action
)

// actionNames are the actions' names without ActionPrefix, as Azure spells them.
var actionNames = [numActions]string{
	KeysRead:           "keys/read/action",
	KeysWrite:          "keys/write/action",
	KeysCreate:         "keys/create",
	KeysDelete:         "keys/delete",
	KeysImport:         "keys/import/action",
	KeysExport:         "keys/export/action",
	KeysRelease:        "keys/release/action",
	KeysBackup:         "keys/backup/action",
	KeysRestore:        "keys/restore/action",
	KeysRotate:         "keys/rotate/action",
	KeysEncrypt:        "keys/encrypt/action",
	KeysDecrypt:        "keys/decrypt/action",
	KeysWrap:           "keys/wrap/action",
	KeysUnwrap:         "keys/unwrap/action",
	KeysSign:           "keys/sign/action",
	KeysVerify:         "keys/verify/action",
	DeletedKeysRead:    "keys/deletedKeys/read/action",
	DeletedKeysRecover: "keys/deletedKeys/recover/action",
	DeletedKeysDelete:  "keys/deletedKeys/delete",
	RNG:                "rng/action",

	RoleDefinitionsRead:   "roleDefinitions/read/action",
	RoleDefinitionsWrite:  "roleDefinitions/write/action",
	RoleDefinitionsDelete: "roleDefinitions/delete/action",
	RoleAssignmentsRead:   "roleAssignments/read/action",
	RoleAssignmentsWrite:  "roleAssignments/write/action",
	RoleAssignmentsDelete: "roleAssignments/delete/action",

	SecurityDomainDownload:        "securitydomain/download/action",
	SecurityDomainDownloadRead:    "securitydomain/download/read",
	SecurityDomainUpload:          "securitydomain/upload/action",
	SecurityDomainUploadRead:      "securitydomain/upload/read",
	SecurityDomainTransferKeyRead: "securitydomain/transferkey/read",

	BackupStart:   "backup/start/action",
	BackupStatus:  "backup/status/action",
	RestoreStart:  "restore/start/action",
	RestoreStatus: "restore/status/action",
}

// A Set holds at most 64 actions; this fails to compile when there are more.
const _ = uint64(1) << (numActions - 1)

// fullNames are the actions' full names (fullNames[0] is empty), lowerNames the same in lower
// case for case-insensitive matching, and byLowerName finds an action by its lower-case full
// name. They are variables initialised by a function, not in init, so that the package's other
// variables (the built-in roles' sets) can use them.
var fullNames, lowerNames, byLowerName = actionTables()

func actionTables() (full, lower [numActions]string, byLower map[string]Action) {
	byLower = make(map[string]Action, numActions)
	for a := Action(1); a < numActions; a++ {
		full[a] = ActionPrefix + actionNames[a]
		lower[a] = strings.ToLower(full[a])
		byLower[lower[a]] = a
	}
	return full, lower, byLower
}

// String returns the action's full name ("Microsoft.KeyVault/managedHsm/keys/sign/action"), or
// "" for the zero value and other invalid actions.
func (a Action) String() string {
	if !a.Valid() {
		return ""
	}
	return fullNames[a]
}

// Valid tells whether a is one of the constants above.
func (a Action) Valid() bool { return a > 0 && a < numActions }

// Actions returns every data action, in the order of the constants.
func Actions() []Action {
	all := make([]Action, 0, numActions-1)
	for a := Action(1); a < numActions; a++ {
		all = append(all, a)
	}
	return all
}

// ParseAction returns the action whose full name is s, compared case-insensitively as Azure does.
// Wildcards are not actions: use [Compile] or [ValidatePermissions] for them.
func ParseAction(s string) (Action, bool) {
	a, ok := byLowerName[strings.ToLower(s)]
	return a, ok
}
