package gateway

import (
	"net/http"
	"net/url"
	"slices"
	"strings"

	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

// handler serves one operation. It returns the body to answer with (nil: none) and sets
// c.status when success is not 200.
type handler func(g *Gateway, c *call) (any, error)

// route is one operation. In path, "{name}" matches any segment, "{version}" any segment but
// an operation word (see reservedOps), and "{id}" any segment (into call.version); other segments
// match case-insensitively.
type route struct {
	method string
	path   string
	name   string // the Azure operationId, for the log
	serve  handler
	open   bool // answered without a token or api-version
	segs   []string
}

const (
	get, put, post, patch, del = http.MethodGet, http.MethodPut, http.MethodPost, http.MethodPatch, http.MethodDelete
)

// routeTable is every path the gateway serves (azure-mhsm-api.md §3.1 and §5.1). Operations
// that take a key version are listed twice: the SDKs drop the version segment for "latest".
var routeTable = []route{
	{method: get, path: "healthz", name: "Healthz", serve: (*Gateway).healthz, open: true},
	{method: get, path: "readyz", name: "Readyz", serve: (*Gateway).readyz, open: true},

	{method: get, path: "keys", name: "GetKeys", serve: (*Gateway).getKeys},
	{method: post, path: "keys/restore", name: "RestoreKey", serve: (*Gateway).restoreKey},
	{method: put, path: "keys/{name}", name: "ImportKey", serve: (*Gateway).importKey},
	{method: get, path: "keys/{name}", name: "GetKey", serve: (*Gateway).getKey},
	{method: patch, path: "keys/{name}", name: "UpdateKey", serve: (*Gateway).updateKey},
	{method: del, path: "keys/{name}", name: "DeleteKey", serve: (*Gateway).deleteKey},
	{method: get, path: "keys/{name}/{version}", name: "GetKey", serve: (*Gateway).getKey},
	{method: patch, path: "keys/{name}/{version}", name: "UpdateKey", serve: (*Gateway).updateKey},
	{method: post, path: "keys/{name}/create", name: "CreateKey", serve: (*Gateway).createKey},
	{method: get, path: "keys/{name}/versions", name: "GetKeyVersions", serve: (*Gateway).getKeyVersions},
	{method: post, path: "keys/{name}/backup", name: "BackupKey", serve: (*Gateway).backupKey},
	{method: post, path: "keys/{name}/rotate", name: "RotateKey", serve: (*Gateway).rotateKey},
	{method: get, path: "keys/{name}/rotationpolicy", name: "GetKeyRotationPolicy", serve: (*Gateway).getRotationPolicy},
	{method: put, path: "keys/{name}/rotationpolicy", name: "UpdateKeyRotationPolicy", serve: (*Gateway).setRotationPolicy},
	{method: put, path: "keys/{name}/restore", name: "SelectiveKeyRestoreOperation", serve: (*Gateway).keyRestore},

	{method: post, path: "keys/{name}/encrypt", name: "Encrypt", serve: keyOp(pb.KeysClient.Encrypt)},
	{method: post, path: "keys/{name}/{version}/encrypt", name: "Encrypt", serve: keyOp(pb.KeysClient.Encrypt)},
	{method: post, path: "keys/{name}/decrypt", name: "Decrypt", serve: keyOp(pb.KeysClient.Decrypt)},
	{method: post, path: "keys/{name}/{version}/decrypt", name: "Decrypt", serve: keyOp(pb.KeysClient.Decrypt)},
	{method: post, path: "keys/{name}/wrapkey", name: "WrapKey", serve: keyOp(pb.KeysClient.WrapKey)},
	{method: post, path: "keys/{name}/{version}/wrapkey", name: "WrapKey", serve: keyOp(pb.KeysClient.WrapKey)},
	{method: post, path: "keys/{name}/unwrapkey", name: "UnwrapKey", serve: keyOp(pb.KeysClient.UnwrapKey)},
	{method: post, path: "keys/{name}/{version}/unwrapkey", name: "UnwrapKey", serve: keyOp(pb.KeysClient.UnwrapKey)},
	{method: post, path: "keys/{name}/sign", name: "Sign", serve: keyOp(pb.KeysClient.Sign)},
	{method: post, path: "keys/{name}/{version}/sign", name: "Sign", serve: keyOp(pb.KeysClient.Sign)},
	{method: post, path: "keys/{name}/verify", name: "Verify", serve: (*Gateway).verify},
	{method: post, path: "keys/{name}/{version}/verify", name: "Verify", serve: (*Gateway).verify},
	{method: post, path: "keys/{name}/release", name: "Release", serve: refuse("Key release is not supported by this pool yet.")},
	{method: post, path: "keys/{name}/{version}/release", name: "Release", serve: refuse("Key release is not supported by this pool yet.")},
	{method: get, path: "keys/{name}/attestation", name: "GetKeyAttestation", serve: refuse("Key attestation is not supported by this pool yet.")},
	{method: get, path: "keys/{name}/{version}/attestation", name: "GetKeyAttestation", serve: refuse("Key attestation is not supported by this pool yet.")},

	{method: get, path: "deletedkeys", name: "GetDeletedKeys", serve: (*Gateway).getDeletedKeys},
	{method: get, path: "deletedkeys/{name}", name: "GetDeletedKey", serve: (*Gateway).getDeletedKey},
	{method: del, path: "deletedkeys/{name}", name: "PurgeDeletedKey", serve: (*Gateway).purgeDeletedKey},
	{method: post, path: "deletedkeys/{name}/recover", name: "RecoverDeletedKey", serve: (*Gateway).recoverDeletedKey},
	{method: post, path: "rng", name: "GetRandomBytes", serve: (*Gateway).getRandomBytes},

	{method: post, path: "securitydomain/download", name: "SecurityDomainDownload", serve: (*Gateway).downloadSecurityDomain},
	{method: get, path: "securitydomain/download/pending", name: "SecurityDomainDownloadPending", serve: (*Gateway).securityDomainStatus},
	{method: get, path: "securitydomain/upload/pending", name: "SecurityDomainUploadPending", serve: (*Gateway).uploadStatus},
	{method: get, path: "securitydomain/upload", name: "SecurityDomainTransferKey", serve: (*Gateway).transferKey},
	{method: post, path: "securitydomain/upload", name: "SecurityDomainUpload", serve: (*Gateway).uploadSecurityDomain},

	{method: post, path: "backup", name: "FullBackup", serve: (*Gateway).fullBackup},
	{method: post, path: "prebackup", name: "PreFullBackup", serve: (*Gateway).preBackup},
	{method: get, path: "backup/{id}/pending", name: "FullBackupStatus", serve: (*Gateway).backupPending},
	{method: put, path: "restore", name: "FullRestoreOperation", serve: (*Gateway).fullRestore},
	{method: put, path: "prerestore", name: "PreFullRestoreOperation", serve: (*Gateway).preRestore},
	{method: get, path: "restore/{id}/pending", name: "RestoreStatus", serve: (*Gateway).restorePending},
}

// rbacRoutes are local RBAC's paths at each scope (azure-mhsm-api.md §5.2): "" is "/", "keys/" is
// "/keys" and "keys/{name}/" a key; role definitions exist at "/" and "/keys" only.
func rbacRoutes() []route {
	var rs []route
	for _, scope := range []string{"", "keys/", "keys/{name}/"} {
		defs := scope + "providers/Microsoft.Authorization/roleDefinitions"
		asgs := scope + "providers/Microsoft.Authorization/roleAssignments"
		if scope != "keys/{name}/" {
			rs = append(rs,
				route{method: get, path: defs, name: "RoleDefinitions_List", serve: (*Gateway).listRoleDefinitions},
				route{method: get, path: defs + "/{id}", name: "RoleDefinitions_Get", serve: (*Gateway).getRoleDefinition},
				route{method: put, path: defs + "/{id}", name: "RoleDefinitions_CreateOrUpdate", serve: (*Gateway).putRoleDefinition},
				route{method: del, path: defs + "/{id}", name: "RoleDefinitions_Delete", serve: (*Gateway).deleteRoleDefinition})
		}
		rs = append(rs,
			route{method: get, path: asgs, name: "RoleAssignments_ListForScope", serve: (*Gateway).listRoleAssignments},
			route{method: get, path: asgs + "/{id}", name: "RoleAssignments_Get", serve: (*Gateway).getRoleAssignment},
			route{method: put, path: asgs + "/{id}", name: "RoleAssignments_Create", serve: (*Gateway).createRoleAssignment},
			route{method: del, path: asgs + "/{id}", name: "RoleAssignments_Delete", serve: (*Gateway).deleteRoleAssignment})
	}
	return rs
}

// clusterRoutes are the pool's own API for its nodes ({id} is a node ID).
var clusterRoutes = []route{
	{method: post, path: "cluster/join-tokens", name: "CreateJoinToken", serve: (*Gateway).createJoinToken},
	{method: get, path: "cluster/status", name: "GetClusterStatus", serve: (*Gateway).getClusterStatus},
	{method: del, path: "cluster/nodes/{id}", name: "RemoveNode", serve: (*Gateway).removeNode},
}

// principalRoutes are the pool's own API for its service principals ({name} is an object or
// client ID, {id} a credential ID).
var principalRoutes = []route{
	{method: post, path: "principals", name: "CreatePrincipal", serve: (*Gateway).createPrincipal},
	{method: get, path: "principals", name: "ListPrincipals", serve: (*Gateway).listPrincipals},
	{method: get, path: "principals/{name}", name: "GetPrincipal", serve: (*Gateway).getPrincipal},
	{method: del, path: "principals/{name}", name: "DeletePrincipal", serve: (*Gateway).deletePrincipal},
	{method: post, path: "principals/{name}/secrets", name: "AddSecret", serve: (*Gateway).addSecret},
	{method: post, path: "principals/{name}/certificates", name: "AddCertificate", serve: (*Gateway).addCertificate},
	{method: del, path: "principals/{name}/credentials/{id}", name: "RemoveCredential", serve: (*Gateway).removeCredential},
}

// reservedOps are the words that follow /keys/{name}/ in routeTable. Such a segment is that
// operation, never a version (versions are 32 hex digits, so nothing is lost).
var reservedOps = map[string]bool{}

func init() {
	routeTable = append(routeTable, rbacRoutes()...)
	routeTable = append(routeTable, principalRoutes...)
	routeTable = append(routeTable, clusterRoutes...)
	for i := range routeTable {
		r := &routeTable[i]
		r.segs = strings.Split(r.path, "/")
		if len(r.segs) >= 3 && r.segs[0] == "keys" && r.segs[1] == "{name}" && !strings.HasPrefix(r.segs[2], "{") {
			reservedOps[r.segs[2]] = true
		}
	}
}

// refuse answers an operation this pool does not offer with a clear 400.
func refuse(msg string) handler {
	return func(*Gateway, *call) (any, error) { return nil, badParameter("%s", msg) }
}

// match finds the route for method and the escaped path and puts its parameters in c. found
// tells whether any route has the path; allow lists the methods it has when method is not one.
func match(c *call, method, escaped string) (rt *route, allow []string, found bool) {
	var segs []string
	// Splitting the escaped path keeps an encoded "/" inside its segment; empty segments come
	// from "/keys/k1/" (latest version) and "/keys/k1//sign" (JS, versionless kid).
	for _, s := range strings.Split(escaped, "/") {
		if s == "" {
			continue
		}
		d, err := url.PathUnescape(s)
		if err != nil {
			return nil, nil, false
		}
		segs = append(segs, d)
	}
	for i := range routeTable {
		r := &routeTable[i]
		name, version, ok := r.match(segs)
		if !ok {
			continue
		}
		found = true
		if r.method == method {
			c.name, c.version = name, version
			return r, nil, true
		}
		if !slices.Contains(allow, r.method) {
			allow = append(allow, r.method)
		}
	}
	return nil, allow, found
}

func (r *route) match(segs []string) (name, version string, ok bool) {
	if len(segs) != len(r.segs) {
		return "", "", false
	}
	for i, p := range r.segs {
		switch p {
		case "{name}":
			name = segs[i]
		case "{version}":
			if reservedOps[strings.ToLower(segs[i])] {
				return "", "", false
			}
			version = segs[i]
		case "{id}": // a route's second parameter: role or credential GUIDs
			version = segs[i]
		default:
			if !strings.EqualFold(p, segs[i]) {
				return "", "", false
			}
		}
	}
	return name, version, true
}
