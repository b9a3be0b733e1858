package authz

import pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"

// scopeKind says where a request's scope comes from.
type scopeKind uint8

const (
	_         scopeKind = iota
	scopeRoot           // "/"
	scopeKeys           // "/keys"
	scopeKey            // "/keys/" + the request's GetName()
)

// Rule is what one gRPC method of the core needs: a data action at a scope. A public rule needs
// neither a token nor an action.
type Rule struct {
	// Method is the full gRPC method name, "/hsmpool.v1.Keys/Sign".
	Method string
	// Action is the data action the caller needs; zero for a public method.
	Action Action
	scope  scopeKind
}

// Public tells whether the method is answered without a token or an authorization check.
func (r Rule) Public() bool { return r.Action == 0 && r.scope == 0 }

// Scope returns the scope req is checked at: "/", "/keys", or "/keys/<name>" for a method on a
// named key (req's GetName(); "/keys" when the name is empty). A req of a type without GetName
// gives "/", the scope that the fewest assignments apply to. Scope does not allocate except to
// join "/keys/" and the name.
func (r Rule) Scope(req any) string {
	switch r.scope {
	case scopeKeys:
		return "/keys"
	case scopeKey:
		n, ok := req.(interface{ GetName() string })
		if !ok {
			return "/"
		}
		if name := n.GetName(); name != "" {
			return "/keys/" + name
		}
		return "/keys"
	}
	return "/"
}

// ScopeKind describes where the scope comes from, for documentation: "/", "/keys",
// "/keys/{name}", or "" for a public method.
func (r Rule) ScopeKind() string {
	switch r.scope {
	case scopeRoot:
		return "/"
	case scopeKeys:
		return "/keys"
	case scopeKey:
		return "/keys/{name}"
	}
	return ""
}

// rules is every method of the core's services (keys.proto, pool.proto, access.proto) with its
// data action and scope, after spec/azure-mhsm-api.md §5.2. TestRulesCoverEveryMethod fails when a
// service gains a method that is not here.
var rules = []Rule{
	// Keys.
	{pb.Keys_CreateKey_FullMethodName, KeysCreate, scopeKey},
	{pb.Keys_ImportKey_FullMethodName, KeysImport, scopeKey},
	{pb.Keys_GetKey_FullMethodName, KeysRead, scopeKey},
	{pb.Keys_ListKeys_FullMethodName, KeysRead, scopeKeys},
	{pb.Keys_ListKeyVersions_FullMethodName, KeysRead, scopeKey},
	{pb.Keys_UpdateKey_FullMethodName, KeysWrite, scopeKey},
	{pb.Keys_DeleteKey_FullMethodName, KeysDelete, scopeKey},
	{pb.Keys_GetDeletedKey_FullMethodName, DeletedKeysRead, scopeKey},
	{pb.Keys_ListDeletedKeys_FullMethodName, DeletedKeysRead, scopeKeys},
	{pb.Keys_RecoverDeletedKey_FullMethodName, DeletedKeysRecover, scopeKey},
	{pb.Keys_PurgeDeletedKey_FullMethodName, DeletedKeysDelete, scopeKey},
	{pb.Keys_BackupKey_FullMethodName, KeysBackup, scopeKey},
	{pb.Keys_RestoreKey_FullMethodName, KeysRestore, scopeKeys}, // the name is inside the blob
	{pb.Keys_RotateKey_FullMethodName, KeysRotate, scopeKey},
	{pb.Keys_GetRotationPolicy_FullMethodName, KeysRead, scopeKey},
	{pb.Keys_SetRotationPolicy_FullMethodName, KeysWrite, scopeKey},
	{pb.Keys_GetRandomBytes_FullMethodName, RNG, scopeKeys},
	{pb.Keys_Encrypt_FullMethodName, KeysEncrypt, scopeKey},
	{pb.Keys_Decrypt_FullMethodName, KeysDecrypt, scopeKey},
	{pb.Keys_WrapKey_FullMethodName, KeysWrap, scopeKey},
	{pb.Keys_UnwrapKey_FullMethodName, KeysUnwrap, scopeKey},
	{pb.Keys_Sign_FullMethodName, KeysSign, scopeKey},
	{pb.Keys_Verify_FullMethodName, KeysVerify, scopeKey},

	// SecurityDomain.
	{pb.SecurityDomain_Download_FullMethodName, SecurityDomainDownload, scopeRoot},
	{pb.SecurityDomain_GetStatus_FullMethodName, SecurityDomainDownloadRead, scopeRoot},
	{pb.SecurityDomain_GetTransferKey_FullMethodName, SecurityDomainTransferKeyRead, scopeRoot},
	{pb.SecurityDomain_Upload_FullMethodName, SecurityDomainUpload, scopeRoot},
	{pb.SecurityDomain_GetUploadStatus_FullMethodName, SecurityDomainUploadRead, scopeRoot},

	// Backup: at "/"; a selective key restore reads a full backup, so it is a restore like a full one
	// (and the same role can poll it).
	{pb.Backup_StartBackup_FullMethodName, BackupStart, scopeRoot},
	{pb.Backup_GetBackupStatus_FullMethodName, BackupStatus, scopeRoot},
	{pb.Backup_StartRestore_FullMethodName, RestoreStart, scopeRoot},
	{pb.Backup_StartKeyRestore_FullMethodName, RestoreStart, scopeRoot},
	{pb.Backup_GetRestoreStatus_FullMethodName, RestoreStatus, scopeRoot},

	// Cluster: a join token admits a node that receives the domain KEK, which is what a
	// security-domain download hands out; so it needs the same action (docs/authz.md).
	{pb.Cluster_CreateJoinToken_FullMethodName, SecurityDomainDownload, scopeRoot},
	// Removing a node is the other half of membership; reading the status is reading the
	// security domain's state (which nodes hold the KEK).
	{pb.Cluster_RemoveNode_FullMethodName, SecurityDomainDownload, scopeRoot},
	{pb.Cluster_GetStatus_FullMethodName, SecurityDomainDownloadRead, scopeRoot},

	// Pool: health and status, public.
	{Method: pb.Pool_GetStatus_FullMethodName},

	// Access: role definitions exist only at "/"; assignments are managed at "/".
	{pb.Access_ListRoleDefinitions_FullMethodName, RoleDefinitionsRead, scopeRoot},
	{pb.Access_GetRoleDefinition_FullMethodName, RoleDefinitionsRead, scopeRoot},
	{pb.Access_PutRoleDefinition_FullMethodName, RoleDefinitionsWrite, scopeRoot},
	{pb.Access_DeleteRoleDefinition_FullMethodName, RoleDefinitionsDelete, scopeRoot},
	{pb.Access_ListRoleAssignments_FullMethodName, RoleAssignmentsRead, scopeRoot},
	{pb.Access_GetRoleAssignment_FullMethodName, RoleAssignmentsRead, scopeRoot},
	{pb.Access_CreateRoleAssignment_FullMethodName, RoleAssignmentsWrite, scopeRoot},
	{pb.Access_DeleteRoleAssignment_FullMethodName, RoleAssignmentsDelete, scopeRoot},

	// Principals: whoever may assign roles may grant themselves any role already, so managing
	// identities needs the role-assignment actions and gives nothing more.
	{pb.Principals_CreatePrincipal_FullMethodName, RoleAssignmentsWrite, scopeRoot},
	{pb.Principals_ListPrincipals_FullMethodName, RoleAssignmentsRead, scopeRoot},
	{pb.Principals_GetPrincipal_FullMethodName, RoleAssignmentsRead, scopeRoot},
	{pb.Principals_DeletePrincipal_FullMethodName, RoleAssignmentsWrite, scopeRoot},
	{pb.Principals_AddSecret_FullMethodName, RoleAssignmentsWrite, scopeRoot},
	{pb.Principals_AddCertificate_FullMethodName, RoleAssignmentsWrite, scopeRoot},
	{pb.Principals_RemoveCredential_FullMethodName, RoleAssignmentsWrite, scopeRoot},
}

var byMethod = func() map[string]Rule {
	m := make(map[string]Rule, len(rules))
	for _, r := range rules {
		if _, dup := m[r.Method]; dup {
			panic("authz: two rules for " + r.Method)
		}
		m[r.Method] = r
	}
	return m
}()

// RuleFor returns the rule of the full gRPC method name fullMethod (grpc.UnaryServerInfo.FullMethod).
// A method without a rule must be refused.
func RuleFor(fullMethod string) (Rule, bool) {
	r, ok := byMethod[fullMethod]
	return r, ok
}

// Rules returns every rule, in the order of the services' definitions.
func Rules() []Rule {
	out := make([]Rule, len(rules))
	copy(out, rules)
	return out
}
