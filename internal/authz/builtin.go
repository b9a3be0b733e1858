package authz

import (
	"slices"

	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

// The role types of RoleDefinition.role_type.
const (
	BuiltInType = "AKVBuiltInRole"
	CustomType  = "CustomRole"
)

// IDs of the built-in roles that the pool itself refers to.
const (
	AdministratorRoleID = "a290e904-7015-4bba-90c8-60543313cdb4"
	CryptoOfficerRoleID = "515eb02d-2335-4d2d-92f2-b1cbdf9c3778"
	CryptoUserRoleID    = "21dbd100-6940-42c2-9190-5d6cb909625b"
)

// builtIn are Managed HSM's built-in roles with the IDs, names and data actions of the live service
// (spec/azure-mhsm-api.md §5.2): the 2021 recorded list, plus keys/rotate/action for Crypto User as
// the documentation's matrix has it, and "Managed HSM Restore" from the documentation.
var builtIn = []*pb.RoleDefinition{
	role(AdministratorRoleID, "Managed HSM Administrator",
		"roleAssignments/delete/action", "roleAssignments/read/action", "roleAssignments/write/action",
		"roleDefinitions/read/action", "roleDefinitions/write/action", "roleDefinitions/delete/action",
		"securitydomain/download/action", "securitydomain/download/read", "securitydomain/upload/action",
		"securitydomain/upload/read", "securitydomain/transferkey/read",
		"backup/start/action", "restore/start/action", "backup/status/action", "restore/status/action"),
	role(CryptoOfficerRoleID, "Managed HSM Crypto Officer",
		"roleAssignments/delete/action", "roleAssignments/read/action", "roleAssignments/write/action",
		"roleDefinitions/read/action", "roleDefinitions/write/action", "roleDefinitions/delete/action",
		"keys/deletedKeys/read/action", "keys/deletedKeys/delete", "keys/deletedKeys/recover/action",
		"keys/export/action"),
	role(CryptoUserRoleID, "Managed HSM Crypto User",
		"roleDefinitions/read/action", "roleAssignments/read/action",
		"keys/read/action", "keys/write/action", "keys/delete", "keys/create", "keys/import/action",
		"keys/release/action", "keys/backup/action", "keys/restore/action",
		"keys/encrypt/action", "keys/decrypt/action", "keys/wrap/action", "keys/unwrap/action",
		"keys/sign/action", "keys/verify/action", "rng/action", "keys/rotate/action"),
	role("4bd23610-cdcf-4971-bdee-bdc562cc28e4", "Managed HSM Policy Administrator",
		"roleDefinitions/read/action", "roleDefinitions/write/action", "roleDefinitions/delete/action",
		"roleAssignments/read/action", "roleAssignments/write/action", "roleAssignments/delete/action"),
	role("2c18b078-7c48-4d3a-af88-5a3a1b3f82b3", "Managed HSM Crypto Auditor",
		"roleAssignments/read/action", "roleDefinitions/read/action", "keys/read/action",
		"keys/deletedKeys/read/action"),
	role("33413926-3206-4cdd-b39a-83574fe37a17", "Managed HSM Crypto Service Encryption User",
		"keys/read/action", "keys/wrap/action", "keys/unwrap/action"),
	role("21dbd100-6940-42c2-9190-5d6cb909625c", "Managed HSM Crypto Service Release User",
		"keys/release/action"),
	role("7b127d3c-77bd-4e3e-bbe0-dbb8971fa7f8", "Managed HSM Backup User",
		"backup/start/action", "backup/status/action", "keys/backup/action"),
	role("6efe6056-5259-49d2-8b3d-d3d73544b20b", "Managed HSM Restore",
		"keys/restore/action", "restore/start/action", "restore/status/action"),
}

// ActionPrefix begins every data action of Managed HSM.
const ActionPrefix = "Microsoft.KeyVault/managedHsm/"

func role(id, name string, actions ...string) *pb.RoleDefinition {
	full := make([]string, len(actions))
	for i, a := range actions {
		full[i] = ActionPrefix + a
	}
	return &pb.RoleDefinition{
		Name: id, RoleName: name, Description: "", RoleType: BuiltInType,
		Permissions:      []*pb.Permission{{DataActions: full}},
		AssignableScopes: []string{"/"},
	}
}

// BuiltInRoles returns the built-in roles in a fixed order. They are shared: do not modify them.
func BuiltInRoles() []*pb.RoleDefinition { return slices.Clone(builtIn) }

// BuiltInRole returns the built-in role whose GUID is id (lowercase), if there is one. It is shared:
// do not modify it.
func BuiltInRole(id string) (*pb.RoleDefinition, bool) {
	for _, r := range builtIn {
		if r.Name == id {
			return r, true
		}
	}
	return nil, false
}
