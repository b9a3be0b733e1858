package test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azadmin/rbac"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"github.com/google/uuid"

	"github.com/hsmpool/hsmpool/pkg/client"
)

// actor is a principal of the pool with its own credential and clients.
type actor struct {
	oid, clientID string
	cred          azcore.TokenCredential
	keys          *azkeys.Client
	rbac          *rbac.Client
	p             *testPool
}

// token returns an access token of the actor for the data plane.
func (a actor) token() string {
	a.p.t.Helper()
	return tokenOf(a.p, a.cred)
}

// newActor creates a principal through the pool's /principals API (as the dev administrator) and
// builds unmodified Azure SDK clients on its client secret.
func (p *testPool) newActor(name string) actor {
	p.t.Helper()
	res := p.do("POST", "/principals?api-version=2025-07-01", p.token(), strings.NewReader(`{"displayName":"`+name+`"}`))
	if res.status != http.StatusCreated {
		p.t.Fatalf("create principal %s: %d %s", name, res.status, res.body)
	}
	var out struct {
		ObjectID string `json:"objectId"`
		ClientID string `json:"clientId"`
		Secret   string `json:"secret"`
	}
	if err := json.Unmarshal(res.body, &out); err != nil || out.Secret == "" {
		p.t.Fatalf("create principal: %v %s", err, res.body)
	}
	cred, err := azidentity.NewClientSecretCredential(p.client.TenantID, out.ClientID, out.Secret,
		&azidentity.ClientSecretCredentialOptions{
			ClientOptions:            azcore.ClientOptions{Cloud: cloud.Configuration{ActiveDirectoryAuthorityHost: p.client.AuthorityHost + "/"}, Transport: p.http},
			DisableInstanceDiscovery: true,
		})
	if err != nil {
		p.t.Fatal(err)
	}
	return p.actorFor(out.ObjectID, out.ClientID, cred)
}

func (p *testPool) actorFor(oid, clientID string, cred azcore.TokenCredential) actor {
	p.t.Helper()
	opts := azcore.ClientOptions{Transport: p.http}
	kc, err := azkeys.NewClient(p.client.URL, cred, &azkeys.ClientOptions{ClientOptions: opts})
	if err != nil {
		p.t.Fatal(err)
	}
	rc, err := rbac.NewClient(p.client.URL, cred, &rbac.ClientOptions{ClientOptions: opts})
	if err != nil {
		p.t.Fatal(err)
	}
	return actor{oid: oid, clientID: clientID, cred: cred, keys: kc, rbac: rc, p: p}
}

// admin is the dev principal (Administrator, Crypto Officer and Crypto User at "/").
func (p *testPool) admin() actor {
	p.t.Helper()
	return p.actorFor("", p.client.ClientID, p.cred)
}

// assign gives oid the role at scope, through azadmin/rbac as a, and returns the assignment's name.
func (a actor) assign(scope rbac.RoleScope, roleID, oid string) string {
	a.p.t.Helper()
	name := uuid.NewString()
	_, err := a.rbac.CreateRoleAssignment(context.Background(), scope, name, rbac.RoleAssignmentCreateParameters{
		Properties: &rbac.RoleAssignmentProperties{PrincipalID: to.Ptr(oid),
			RoleDefinitionID: to.Ptr("Microsoft.KeyVault/providers/Microsoft.Authorization/roleDefinitions/" + roleID)}}, nil)
	if err != nil {
		a.p.t.Fatalf("assign %s at %s to %s: %v", roleID, scope, oid, err)
	}
	return name
}

// forbidden tells whether err is the 403 of a missing data action.
func forbidden(err error) bool {
	var re *azcore.ResponseError
	return errors.As(err, &re) && re.StatusCode == http.StatusForbidden && re.ErrorCode == "Forbidden"
}

// builtInGrants is Managed HSM's built-in roles with the data actions each grants, written out
// here from spec/azure-mhsm-api.md §5.2 rather than taken from internal/authz, so that the test
// checks the code against the specification.
var builtInGrants = map[string][]string{
	"a290e904-7015-4bba-90c8-60543313cdb4": {"roleAssignments/delete/action", "roleAssignments/read/action", "roleAssignments/write/action",
		"roleDefinitions/read/action", "roleDefinitions/write/action", "roleDefinitions/delete/action",
		"securitydomain/download/action", "securitydomain/download/read", "securitydomain/upload/action", "securitydomain/upload/read",
		"securitydomain/transferkey/read", "backup/start/action", "restore/start/action", "backup/status/action", "restore/status/action"},
	"515eb02d-2335-4d2d-92f2-b1cbdf9c3778": {"roleAssignments/delete/action", "roleAssignments/read/action", "roleAssignments/write/action",
		"roleDefinitions/read/action", "roleDefinitions/write/action", "roleDefinitions/delete/action",
		"keys/deletedKeys/read/action", "keys/deletedKeys/delete", "keys/deletedKeys/recover/action", "keys/export/action"},
	"21dbd100-6940-42c2-9190-5d6cb909625b": {"roleDefinitions/read/action", "roleAssignments/read/action", "keys/read/action",
		"keys/write/action", "keys/delete", "keys/create", "keys/import/action", "keys/release/action", "keys/backup/action",
		"keys/restore/action", "keys/encrypt/action", "keys/decrypt/action", "keys/wrap/action", "keys/unwrap/action",
		"keys/sign/action", "keys/verify/action", "rng/action", "keys/rotate/action"},
	"4bd23610-cdcf-4971-bdee-bdc562cc28e4": {"roleDefinitions/read/action", "roleDefinitions/write/action", "roleDefinitions/delete/action",
		"roleAssignments/read/action", "roleAssignments/write/action", "roleAssignments/delete/action"},
	"2c18b078-7c48-4d3a-af88-5a3a1b3f82b3": {"roleAssignments/read/action", "roleDefinitions/read/action", "keys/read/action",
		"keys/deletedKeys/read/action"},
	"33413926-3206-4cdd-b39a-83574fe37a17": {"keys/read/action", "keys/wrap/action", "keys/unwrap/action"},
	"21dbd100-6940-42c2-9190-5d6cb909625c": {"keys/release/action"},
	"7b127d3c-77bd-4e3e-bbe0-dbb8971fa7f8": {"backup/start/action", "backup/status/action", "keys/backup/action"},
	"6efe6056-5259-49d2-8b3d-d3d73544b20b": {"keys/restore/action", "restore/start/action", "restore/status/action"},
}

// matrixFixture is what the administrator prepares for one role's run of the matrix: keys in
// every state an operation needs, so that each operation can succeed when it is allowed.
type matrixFixture struct {
	suffix     string
	ecVersion  string
	signature  []byte
	digest     []byte
	gcm        azkeys.KeyOperationResult
	wrapped    []byte
	backup     []byte
	customRole string
	assignment string
	otherOID   string
}

func prepareMatrix(t *testing.T, p *testPool, admin actor, suffix string) matrixFixture {
	t.Helper()
	ctx := context.Background()
	f := matrixFixture{suffix: suffix, digest: sha256.New().Sum(nil), otherOID: uuid.NewString()}
	kc := admin.keys
	for _, n := range []string{"del-", "delread-", "recover-", "restore-"} {
		if _, err := kc.CreateKey(ctx, n+suffix, azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeECHSM), Curve: to.Ptr(azkeys.CurveNameP256)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []string{"delread-", "recover-"} {
		if _, err := kc.DeleteKey(ctx, n+suffix, nil); err != nil {
			t.Fatal(err)
		}
	}
	b, err := kc.BackupKey(ctx, "restore-"+suffix, nil)
	if err != nil {
		t.Fatal(err)
	}
	f.backup = b.Value
	if _, err := kc.DeleteKey(ctx, "restore-"+suffix, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := kc.PurgeDeletedKey(ctx, "restore-"+suffix, nil); err != nil {
		t.Fatal(err)
	}
	sig, err := kc.Sign(ctx, "m-ec", "", azkeys.SignParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmES256), Value: f.digest}, nil)
	if err != nil {
		t.Fatal(err)
	}
	f.signature, f.ecVersion = sig.Result, sig.KID.Version()
	enc, err := kc.Encrypt(ctx, "m-aes", "", azkeys.KeyOperationParameters{Algorithm: to.Ptr(azkeys.EncryptionAlgorithmA256GCM), Value: []byte("plain")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	f.gcm = enc.KeyOperationResult
	w, err := kc.WrapKey(ctx, "m-aes", "", azkeys.KeyOperationParameters{Algorithm: to.Ptr(azkeys.EncryptionAlgorithmA256KW), Value: bytes.Repeat([]byte{7}, 32)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	f.wrapped = w.Result
	f.customRole = uuid.NewString()
	if _, err := admin.rbac.CreateOrUpdateRoleDefinition(ctx, rbac.RoleScopeGlobal, f.customRole, rbac.RoleDefinitionCreateParameters{
		Properties: &rbac.RoleDefinitionProperties{RoleName: to.Ptr("matrix " + suffix), RoleType: to.Ptr(rbac.RoleTypeCustomRole),
			Permissions: []*rbac.Permission{{DataActions: []*rbac.DataAction{to.Ptr(rbac.DataActionReadHsmKey)}}}}}, nil); err != nil {
		t.Fatal(err)
	}
	f.assignment = admin.assign(rbac.RoleScopeKeys, "2c18b078-7c48-4d3a-af88-5a3a1b3f82b3", f.otherOID)
	return f
}

// matrixOp is one operation of the pool, the data action it needs, and a call of it as an actor.
type matrixOp struct {
	name   string
	action string
	call   func(a actor, f matrixFixture) error
}

func matrixOps(p *testPool) []matrixOp {
	ctx := context.Background()
	raw := func(a actor, method, path, body string) error {
		res := p.do(method, path, a.token(), strings.NewReader(body))
		if res.status >= 300 {
			return &azcore.ResponseError{StatusCode: res.status, ErrorCode: res.errorCode(),
				RawResponse: &http.Response{StatusCode: res.status, Body: io.NopCloser(bytes.NewReader(res.body))}}
		}
		return nil
	}
	ecJWK := func() azkeys.JSONWebKey {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		d, _ := k.Bytes()
		pub, _ := k.PublicKey.Bytes()
		return azkeys.JSONWebKey{Kty: to.Ptr(azkeys.KeyTypeECHSM), Crv: to.Ptr(azkeys.CurveNameP256), D: d, X: pub[1:33], Y: pub[33:]}
	}
	return []matrixOp{
		{"GetKey", "keys/read/action", func(a actor, f matrixFixture) error { _, err := a.keys.GetKey(ctx, "m-ec", "", nil); return err }},
		{"ListKeys", "keys/read/action", func(a actor, f matrixFixture) error {
			_, err := a.keys.NewListKeyPropertiesPager(nil).NextPage(ctx)
			return err
		}},
		{"ListKeyVersions", "keys/read/action", func(a actor, f matrixFixture) error {
			_, err := a.keys.NewListKeyPropertiesVersionsPager("m-ec", nil).NextPage(ctx)
			return err
		}},
		{"GetRotationPolicy", "keys/read/action", func(a actor, f matrixFixture) error {
			_, err := a.keys.GetKeyRotationPolicy(ctx, "m-ec", nil)
			return err
		}},
		{"UpdateKey", "keys/write/action", func(a actor, f matrixFixture) error {
			_, err := a.keys.UpdateKey(ctx, "m-ec", "", azkeys.UpdateKeyParameters{Tags: map[string]*string{"by": to.Ptr(f.suffix)}}, nil)
			return err
		}},
		{"SetRotationPolicy", "keys/write/action", func(a actor, f matrixFixture) error {
			_, err := a.keys.UpdateKeyRotationPolicy(ctx, "m-ec", rotationPolicy(), nil)
			return err
		}},
		{"CreateKey", "keys/create", func(a actor, f matrixFixture) error {
			_, err := a.keys.CreateKey(ctx, "new-"+f.suffix, azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeEC), Curve: to.Ptr(azkeys.CurveNameP256)}, nil)
			return err
		}},
		{"ImportKey", "keys/import/action", func(a actor, f matrixFixture) error {
			_, err := a.keys.ImportKey(ctx, "imp-"+f.suffix, azkeys.ImportKeyParameters{HSM: to.Ptr(true), Key: to.Ptr(ecJWK())}, nil)
			return err
		}},
		{"RotateKey", "keys/rotate/action", func(a actor, f matrixFixture) error { _, err := a.keys.RotateKey(ctx, "m-ec", nil); return err }},
		{"DeleteKey", "keys/delete", func(a actor, f matrixFixture) error {
			_, err := a.keys.DeleteKey(ctx, "del-"+f.suffix, nil)
			return err
		}},
		{"GetDeletedKey", "keys/deletedKeys/read/action", func(a actor, f matrixFixture) error {
			_, err := a.keys.GetDeletedKey(ctx, "delread-"+f.suffix, nil)
			return err
		}},
		{"ListDeletedKeys", "keys/deletedKeys/read/action", func(a actor, f matrixFixture) error {
			_, err := a.keys.NewListDeletedKeyPropertiesPager(nil).NextPage(ctx)
			return err
		}},
		{"RecoverDeletedKey", "keys/deletedKeys/recover/action", func(a actor, f matrixFixture) error {
			_, err := a.keys.RecoverDeletedKey(ctx, "recover-"+f.suffix, nil)
			return err
		}},
		{"PurgeDeletedKey", "keys/deletedKeys/delete", func(a actor, f matrixFixture) error {
			_, err := a.keys.PurgeDeletedKey(ctx, "delread-"+f.suffix, nil)
			return err
		}},
		{"BackupKey", "keys/backup/action", func(a actor, f matrixFixture) error { _, err := a.keys.BackupKey(ctx, "m-ec", nil); return err }},
		{"RestoreKey", "keys/restore/action", func(a actor, f matrixFixture) error {
			_, err := a.keys.RestoreKey(ctx, azkeys.RestoreKeyParameters{KeyBackup: f.backup}, nil)
			return err
		}},
		{"Sign", "keys/sign/action", func(a actor, f matrixFixture) error {
			_, err := a.keys.Sign(ctx, "m-ec", "", azkeys.SignParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmES256), Value: f.digest}, nil)
			return err
		}},
		{"Verify", "keys/verify/action", func(a actor, f matrixFixture) error {
			r, err := a.keys.Verify(ctx, "m-ec", f.ecVersion, azkeys.VerifyParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmES256), Digest: f.digest, Signature: f.signature}, nil)
			if err == nil && !*r.Value {
				return errors.New("the signature did not verify")
			}
			return err
		}},
		{"Encrypt", "keys/encrypt/action", func(a actor, f matrixFixture) error {
			_, err := a.keys.Encrypt(ctx, "m-aes", "", azkeys.KeyOperationParameters{Algorithm: to.Ptr(azkeys.EncryptionAlgorithmA256GCM), Value: []byte("x")}, nil)
			return err
		}},
		{"Decrypt", "keys/decrypt/action", func(a actor, f matrixFixture) error {
			r, err := a.keys.Decrypt(ctx, "m-aes", "", azkeys.KeyOperationParameters{Algorithm: to.Ptr(azkeys.EncryptionAlgorithmA256GCM),
				Value: f.gcm.Result, IV: f.gcm.IV, AuthenticationTag: f.gcm.AuthenticationTag}, nil)
			if err == nil && string(r.Result) != "plain" {
				return errors.New("wrong plaintext")
			}
			return err
		}},
		{"WrapKey", "keys/wrap/action", func(a actor, f matrixFixture) error {
			_, err := a.keys.WrapKey(ctx, "m-aes", "", azkeys.KeyOperationParameters{Algorithm: to.Ptr(azkeys.EncryptionAlgorithmA256KW), Value: bytes.Repeat([]byte{1}, 32)}, nil)
			return err
		}},
		{"UnwrapKey", "keys/unwrap/action", func(a actor, f matrixFixture) error {
			r, err := a.keys.UnwrapKey(ctx, "m-aes", "", azkeys.KeyOperationParameters{Algorithm: to.Ptr(azkeys.EncryptionAlgorithmA256KW), Value: f.wrapped}, nil)
			if err == nil && !bytes.Equal(r.Result, bytes.Repeat([]byte{7}, 32)) {
				return errors.New("wrong unwrapped key")
			}
			return err
		}},
		{"GetRandomBytes", "rng/action", func(a actor, f matrixFixture) error {
			_, err := a.keys.GetRandomBytes(ctx, azkeys.GetRandomBytesParameters{Count: to.Ptr[int32](16)}, nil)
			return err
		}},
		{"ListRoleDefinitions", "roleDefinitions/read/action", func(a actor, f matrixFixture) error {
			_, err := a.rbac.NewListRoleDefinitionsPager(rbac.RoleScopeGlobal, nil).NextPage(ctx)
			return err
		}},
		{"GetRoleDefinition", "roleDefinitions/read/action", func(a actor, f matrixFixture) error {
			_, err := a.rbac.GetRoleDefinition(ctx, rbac.RoleScopeGlobal, f.customRole, nil)
			return err
		}},
		{"CreateOrUpdateRoleDefinition", "roleDefinitions/write/action", func(a actor, f matrixFixture) error {
			_, err := a.rbac.CreateOrUpdateRoleDefinition(ctx, rbac.RoleScopeGlobal, uuid.NewString(), rbac.RoleDefinitionCreateParameters{
				Properties: &rbac.RoleDefinitionProperties{RoleName: to.Ptr("by " + f.suffix), RoleType: to.Ptr(rbac.RoleTypeCustomRole),
					Permissions: []*rbac.Permission{{DataActions: []*rbac.DataAction{to.Ptr(rbac.DataActionSignHsmKey)}}}}}, nil)
			return err
		}},
		{"DeleteRoleDefinition", "roleDefinitions/delete/action", func(a actor, f matrixFixture) error {
			_, err := a.rbac.DeleteRoleDefinition(ctx, rbac.RoleScopeGlobal, f.customRole, nil)
			return err
		}},
		{"ListRoleAssignments", "roleAssignments/read/action", func(a actor, f matrixFixture) error {
			_, err := a.rbac.NewListRoleAssignmentsPager(rbac.RoleScopeGlobal, nil).NextPage(ctx)
			return err
		}},
		{"GetRoleAssignment", "roleAssignments/read/action", func(a actor, f matrixFixture) error {
			_, err := a.rbac.GetRoleAssignment(ctx, rbac.RoleScopeKeys, f.assignment, nil)
			return err
		}},
		{"CreateRoleAssignment", "roleAssignments/write/action", func(a actor, f matrixFixture) error {
			_, err := a.rbac.CreateRoleAssignment(ctx, rbac.RoleScopeKeys, uuid.NewString(), rbac.RoleAssignmentCreateParameters{
				Properties: &rbac.RoleAssignmentProperties{PrincipalID: to.Ptr(f.otherOID),
					RoleDefinitionID: to.Ptr("Microsoft.KeyVault/providers/Microsoft.Authorization/roleDefinitions/33413926-3206-4cdd-b39a-83574fe37a17")}}, nil)
			return err
		}},
		{"DeleteRoleAssignment", "roleAssignments/delete/action", func(a actor, f matrixFixture) error {
			_, err := a.rbac.DeleteRoleAssignment(ctx, rbac.RoleScopeKeys, f.assignment, nil)
			return err
		}},
		{"ListPrincipals", "roleAssignments/read/action", func(a actor, f matrixFixture) error {
			return raw(a, "GET", "/principals?api-version=2025-07-01", "")
		}},
		{"SecurityDomainStatus", "securitydomain/download/read", func(a actor, f matrixFixture) error {
			return raw(a, "GET", "/securitydomain/download/pending?api-version=2025-07-01", "")
		}},
		{"GetClusterStatus", "securitydomain/download/read", func(a actor, f matrixFixture) error {
			st, err := clusterOf(p, a).Status(ctx)
			if err == nil && (len(st.Nodes) != 1 || st.Nodes[0].NodeID != st.AnsweredBy || !st.Nodes[0].Reachable) {
				return fmt.Errorf("the dev pool's status is not its one node: %+v", st)
			}
			return err
		}},
		// The dev pool has one node and no other to remove: whatever the daemon answers a granted
		// caller, it is an Azure error that is not a 403.
		{"RemoveNode", "securitydomain/download/action", func(a actor, f matrixFixture) error {
			err := clusterOf(p, a).RemoveNode(ctx, "node-absent-"+f.suffix)
			e, ok := client.AsError(err)
			switch {
			case err == nil:
				return errors.New("removed a node that does not exist")
			case !ok:
				return err
			case e.StatusCode == http.StatusForbidden:
				return err // its chain holds the SDK's *azcore.ResponseError
			case e.Code == "" || e.Message == "" || e.StatusCode < 400:
				return fmt.Errorf("not an Azure error: %v", err)
			}
			return nil
		}},
		{"SecurityDomainDownload", "securitydomain/download/action", func(a actor, f matrixFixture) error {
			sd, err := client.NewSecurityDomainClient(p.client.URL, a.cred, &client.SecurityDomainClientOptions{ClientOptions: azcore.ClientOptions{Transport: p.http}})
			if err != nil {
				return err
			}
			_, err = sd.Download(ctx, p.officers, 2)
			return err
		}},
	}
}

// clusterOf is the pool's cluster client with a's credential.
func clusterOf(p *testPool, a actor) *client.ClusterClient {
	p.t.Helper()
	cc, err := client.NewClusterClient(p.client.URL, a.cred, &client.ClusterClientOptions{ClientOptions: azcore.ClientOptions{Transport: p.http}})
	if err != nil {
		p.t.Fatal(err)
	}
	return cc
}

func rotationPolicy() azkeys.KeyRotationPolicy {
	return azkeys.KeyRotationPolicy{LifetimeActions: []*azkeys.LifetimeAction{{
		Action:  &azkeys.LifetimeActionType{Type: to.Ptr(azkeys.KeyRotationPolicyActionRotate)},
		Trigger: &azkeys.LifetimeActionTrigger{TimeAfterCreate: to.Ptr("P90D")}}}}
}

// TestRBACMatrix runs every operation of the pool as a principal holding one built-in role at "/",
// for every built-in role, through the real daemon with real tokens: what the role grants
// succeeds, everything else gets 403 Forbidden naming the missing action.
func TestRBACMatrix(t *testing.T) {
	p := startPool(t)
	p.activate()
	admin := p.admin()
	ctx := context.Background()
	if _, err := admin.keys.CreateKey(ctx, "m-ec", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeECHSM), Curve: to.Ptr(azkeys.CurveNameP256)}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.keys.CreateKey(ctx, "m-aes", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeOctHSM), KeySize: to.Ptr[int32](256)}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.keys.UpdateKeyRotationPolicy(ctx, "m-ec", rotationPolicy(), nil); err != nil {
		t.Fatal(err)
	}
	ops := matrixOps(p)
	roles := make([]string, 0, len(builtInGrants))
	for id := range builtInGrants {
		roles = append(roles, id)
	}
	slices.Sort(roles)
	for i, role := range roles {
		t.Run(role, func(t *testing.T) {
			suffix := "r" + string(rune('a'+i))
			f := prepareMatrix(t, p, admin, suffix)
			a := p.newActor("matrix " + suffix)
			admin.assign(rbac.RoleScopeGlobal, role, a.oid)
			for _, op := range ops {
				allowed := slices.Contains(builtInGrants[role], op.action)
				err := op.call(a, f)
				switch {
				case allowed && err != nil:
					t.Errorf("%s (%s) is granted but failed: %v", op.name, op.action, err)
				case !allowed && !forbidden(err):
					t.Errorf("%s (%s) is not granted but answered %v, want 403 Forbidden", op.name, op.action, err)
				case !allowed:
					var re *azcore.ResponseError
					errors.As(err, &re)
					if msg := responseMessage(re); !strings.Contains(msg, "Microsoft.KeyVault/managedHsm/"+op.action) {
						t.Errorf("%s: the 403 does not name the missing action: %s", op.name, msg)
					}
				}
			}
		})
	}
}

// responseMessage is error.message of an Azure error response, when the SDK kept the body.
func responseMessage(re *azcore.ResponseError) string {
	if re == nil || re.RawResponse == nil {
		return ""
	}
	var e struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	body := &bytes.Buffer{}
	if re.RawResponse.Body != nil {
		_, _ = body.ReadFrom(re.RawResponse.Body)
	}
	_ = json.Unmarshal(body.Bytes(), &e)
	return e.Error.Message
}

// TestKeyScopedAssignment checks that an assignment at /keys/{name} grants only that key.
func TestKeyScopedAssignment(t *testing.T) {
	p := startPool(t)
	p.activate()
	admin := p.admin()
	ctx := context.Background()
	for _, n := range []string{"mine", "theirs"} {
		if _, err := admin.keys.CreateKey(ctx, n, azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeECHSM), Curve: to.Ptr(azkeys.CurveNameP256)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	a := p.newActor("scoped")
	admin.assign("/keys/mine", "21dbd100-6940-42c2-9190-5d6cb909625b", a.oid)
	digest := sha256.New().Sum(nil)
	sign := func(name string) error {
		_, err := a.keys.Sign(ctx, name, "", azkeys.SignParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmES256), Value: digest}, nil)
		return err
	}
	if err := sign("mine"); err != nil {
		t.Fatalf("sign with the assigned key: %v", err)
	}
	if err := sign("theirs"); !forbidden(err) {
		t.Fatalf("sign with another key: %v, want 403", err)
	}
	if _, err := a.keys.NewListKeyPropertiesPager(nil).NextPage(ctx); !forbidden(err) {
		t.Fatalf("list keys with a key-scoped role: %v, want 403", err)
	}
	if _, err := a.keys.CreateKey(ctx, "new", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeEC)}, nil); !forbidden(err) {
		t.Fatalf("create another key: %v, want 403", err)
	}
	// The same principal at /keys may use every key.
	admin.assign(rbac.RoleScopeKeys, "21dbd100-6940-42c2-9190-5d6cb909625b", a.oid)
	if err := sign("theirs"); err != nil {
		t.Fatalf("sign after an assignment at /keys: %v", err)
	}
}

// TestRBACWithAzadmin drives role definitions and assignments with the unmodified Go admin client
// and checks the service's rules: built-in roles listed exactly, built-in IDs not reusable, a role
// in use not deletable, the last administrator assignment not removable.
func TestRBACWithAzadmin(t *testing.T) {
	p := startPool(t)
	p.activate()
	admin := p.admin()
	ctx := context.Background()

	var defs []*rbac.RoleDefinition
	for pg := admin.rbac.NewListRoleDefinitionsPager(rbac.RoleScopeGlobal, nil); pg.More(); {
		page, err := pg.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defs = append(defs, page.Value...)
	}
	if len(defs) != len(builtInGrants) {
		t.Fatalf("%d role definitions, want the %d built-in roles", len(defs), len(builtInGrants))
	}
	for _, d := range defs {
		want, ok := builtInGrants[*d.Name]
		if !ok || *d.Properties.RoleType != rbac.RoleTypeBuiltInRole || *d.ID != "Microsoft.KeyVault/providers/Microsoft.Authorization/roleDefinitions/"+*d.Name {
			t.Errorf("role %s: %+v", *d.Name, d.Properties)
			continue
		}
		var got []string
		for _, a := range d.Properties.Permissions[0].DataActions {
			got = append(got, strings.TrimPrefix(string(*a), "Microsoft.KeyVault/managedHsm/"))
		}
		if !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(want))) {
			t.Errorf("role %s (%s) data actions %v, want %v", *d.Name, *d.Properties.RoleName, got, want)
		}
	}

	// A built-in role's GUID cannot be reused.
	_, err := admin.rbac.CreateOrUpdateRoleDefinition(ctx, rbac.RoleScopeGlobal, "21dbd100-6940-42c2-9190-5d6cb909625b", rbac.RoleDefinitionCreateParameters{
		Properties: &rbac.RoleDefinitionProperties{RoleName: to.Ptr("x"), Permissions: []*rbac.Permission{{DataActions: []*rbac.DataAction{to.Ptr(rbac.DataActionSignHsmKey)}}}}}, nil)
	respErr(t, err, 400, "BadParameter")

	// A custom role, assigned, listed by filter, used, and removed again.
	roleID := uuid.NewString()
	d, err := admin.rbac.CreateOrUpdateRoleDefinition(ctx, rbac.RoleScopeGlobal, roleID, rbac.RoleDefinitionCreateParameters{
		Properties: &rbac.RoleDefinitionProperties{RoleName: to.Ptr("signer"), Description: to.Ptr("signs with every key"),
			RoleType: to.Ptr(rbac.RoleTypeCustomRole), AssignableScopes: []*rbac.RoleScope{to.Ptr(rbac.RoleScopeGlobal)},
			Permissions: []*rbac.Permission{{DataActions: []*rbac.DataAction{to.Ptr(rbac.DataAction("Microsoft.KeyVault/managedHsm/keys/*"))},
				NotDataActions: []*rbac.DataAction{to.Ptr(rbac.DataActionDeleteHsmKey)}}}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if *d.Name != roleID || *d.Properties.RoleType != rbac.RoleTypeCustomRole || *d.Properties.RoleName != "signer" {
		t.Fatalf("created role %+v", d.Properties)
	}
	a := p.newActor("signer")
	asg := admin.assign(rbac.RoleScopeGlobal, roleID, a.oid)
	got, err := admin.rbac.GetRoleAssignment(ctx, rbac.RoleScopeGlobal, asg, nil)
	if err != nil || *got.Properties.PrincipalID != a.oid || *got.Properties.Scope != rbac.RoleScopeGlobal ||
		*got.ID != "/providers/Microsoft.Authorization/roleAssignments/"+asg {
		t.Fatalf("get assignment: %v %+v", err, got)
	}
	filter := "principalId eq '" + a.oid + "'"
	page, err := admin.rbac.NewListRoleAssignmentsPager(rbac.RoleScopeGlobal, &rbac.ListRoleAssignmentsOptions{Filter: &filter}).NextPage(ctx)
	if err != nil || len(page.Value) != 1 || *page.Value[0].Name != asg {
		t.Fatalf("list by principal: %v %v", err, page.Value)
	}
	if _, err := admin.keys.CreateKey(ctx, "k1", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeECHSM)}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := a.keys.Sign(ctx, "k1", "", azkeys.SignParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmES256), Value: sha256.New().Sum(nil)}, nil); err != nil {
		t.Fatalf("sign through a custom role with a wildcard: %v", err)
	}
	if _, err := a.keys.DeleteKey(ctx, "k1", nil); !forbidden(err) {
		t.Fatalf("delete despite notDataActions: %v", err)
	}
	// Not deletable while assigned.
	_, err = admin.rbac.DeleteRoleDefinition(ctx, rbac.RoleScopeGlobal, roleID, nil)
	respErr(t, err, 409, "")
	if _, err := admin.rbac.DeleteRoleAssignment(ctx, rbac.RoleScopeGlobal, asg, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := a.keys.Sign(ctx, "k1", "", azkeys.SignParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmES256), Value: sha256.New().Sum(nil)}, nil); !forbidden(err) {
		t.Fatalf("sign after the assignment was removed: %v", err)
	}
	if _, err := admin.rbac.DeleteRoleDefinition(ctx, rbac.RoleScopeGlobal, roleID, nil); err != nil {
		t.Fatal(err)
	}
	_, err = admin.rbac.GetRoleDefinition(ctx, rbac.RoleScopeGlobal, roleID, nil)
	respErr(t, err, 404, "RoleDefinitionNotFound")

	// The dev principal's Administrator assignment is the last one: it cannot be removed.
	atScope := "atScope()"
	var adminAsg string
	for pg := admin.rbac.NewListRoleAssignmentsPager(rbac.RoleScopeGlobal, &rbac.ListRoleAssignmentsOptions{Filter: &atScope}); pg.More(); {
		page, err := pg.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range page.Value {
			if strings.HasSuffix(*x.Properties.RoleDefinitionID, "/a290e904-7015-4bba-90c8-60543313cdb4") {
				adminAsg = *x.Name
			}
		}
	}
	if adminAsg == "" {
		t.Fatal("no Administrator assignment at /")
	}
	_, err = admin.rbac.DeleteRoleAssignment(ctx, rbac.RoleScopeGlobal, adminAsg, nil)
	respErr(t, err, 409, "")
}
