package authz

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/hsmpool/hsmpool/internal/fault"
	"github.com/hsmpool/hsmpool/internal/rpcerr"
	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

func TestActionNames(t *testing.T) {
	seen := map[string]bool{}
	for _, a := range Actions() {
		s := a.String()
		if !strings.HasPrefix(s, ActionPrefix) || len(s) == len(ActionPrefix) {
			t.Errorf("action %d: name %q", a, s)
		}
		if seen[strings.ToLower(s)] {
			t.Errorf("action %q twice", s)
		}
		seen[strings.ToLower(s)] = true
		for _, v := range []string{s, strings.ToUpper(s), strings.ToLower(s)} {
			if got, ok := ParseAction(v); !ok || got != a {
				t.Errorf("ParseAction(%q) = %v, %v; want %v", v, got, ok, a)
			}
		}
	}
	// The DataAction enum of the spec, plus keys/rotate/action.
	if len(seen) != 34+1 {
		t.Errorf("%d actions, want 35", len(seen))
	}
	for _, bad := range []string{"", "keys/read/action", ActionPrefix, ActionPrefix + "keys/read", ActionPrefix + "keys/*"} {
		if a, ok := ParseAction(bad); ok {
			t.Errorf("ParseAction(%q) = %v, want none", bad, a)
		}
	}
	if Action(0).Valid() || Action(0).String() != "" || numActions.Valid() || SetOf(0, numActions) != (Set{}) {
		t.Error("the zero action and out-of-range actions must be invalid")
	}
}

func TestGlob(t *testing.T) {
	tests := []struct {
		pattern, name string
		want          bool
	}{
		{"a", "a", true},
		{"a", "b", false},
		{"*", "", true},
		{"*", "any/thing", true},
		{"a*", "a", true},
		{"a*", "abc/def", true},
		{"*c", "abc", true},
		{"*c", "abd", false},
		{"a*c", "a/b/c", true},
		{"a*c", "a/b/cd", false},
		{"a*b*c", "a-b-b-c", true},
		{"a*b*c", "a-c-b", false},
		{"a**", "a", true},
		{"ab", "a", false},
		{"a", "ab", false},
	}
	for _, tc := range tests {
		if got := glob(tc.pattern, tc.name); got != tc.want {
			t.Errorf("glob(%q, %q) = %v, want %v", tc.pattern, tc.name, got, tc.want)
		}
	}
}

func perm(data, notData []string) *pb.Permission {
	return &pb.Permission{DataActions: data, NotDataActions: notData}
}

func TestCompile(t *testing.T) {
	var keys, all []Action
	for _, a := range Actions() {
		all = append(all, a)
		if strings.HasPrefix(actionNames[a], "keys/") {
			keys = append(keys, a)
		}
	}
	except := func(from []Action, out ...Action) []Action {
		return slices.DeleteFunc(slices.Clone(from), func(a Action) bool { return slices.Contains(out, a) })
	}
	p := ActionPrefix
	tests := []struct {
		name  string
		perms []*pb.Permission
		want  []Action
	}{
		{"nothing", nil, nil},
		{"one action", []*pb.Permission{perm([]string{p + "keys/sign/action"}, nil)}, []Action{KeysSign}},
		{"case-insensitive", []*pb.Permission{perm([]string{"microsoft.keyvault/MANAGEDHSM/Keys/Sign/Action"}, nil)}, []Action{KeysSign}},
		{"keys wildcard spans segments", []*pb.Permission{perm([]string{p + "keys/*"}, nil)}, keys},
		{"everything", []*pb.Permission{perm([]string{p + "*"}, nil)}, all},
		{"bare star", []*pb.Permission{perm([]string{"*"}, nil)}, all},
		{"wildcard inside a segment", []*pb.Permission{perm([]string{p + "keys/*crypt/action"}, nil)}, []Action{KeysEncrypt, KeysDecrypt}},
		{"deleted keys", []*pb.Permission{perm([]string{p + "keys/deletedKeys/*"}, nil)}, []Action{DeletedKeysRead, DeletedKeysRecover, DeletedKeysDelete}},
		{"suffix wildcard", []*pb.Permission{perm([]string{"*/read/action"}, nil)},
			[]Action{KeysRead, DeletedKeysRead, RoleDefinitionsRead, RoleAssignmentsRead}},
		{"notDataActions subtract", []*pb.Permission{perm([]string{p + "keys/*"}, []string{p + "keys/deletedKeys/*", p + "keys/export/action"})},
			except(keys, DeletedKeysRead, DeletedKeysRecover, DeletedKeysDelete, KeysExport)},
		{"notDataActions wildcard is case-insensitive", []*pb.Permission{perm([]string{p + "*"}, []string{"MICROSOFT.KEYVAULT/MANAGEDHSM/KEYS/*"})},
			except(all, keys...)},
		{"notDataActions only", []*pb.Permission{perm(nil, []string{p + "keys/sign/action"})}, nil},
		{"unknown entries grant nothing", []*pb.Permission{perm([]string{p + "keys/read", "Microsoft.KeyVault/vaults/keys/*", ""}, nil)}, nil},
		{"actions grant nothing", []*pb.Permission{{Actions: []string{"*"}}}, nil},
		{"permissions are subtracted one by one", []*pb.Permission{
			perm([]string{p + "keys/sign/action"}, nil),
			perm([]string{p + "keys/verify/action"}, []string{p + "keys/sign/action"}),
		}, []Action{KeysSign, KeysVerify}},
		{"nil permission", []*pb.Permission{nil, perm([]string{p + "rng/action"}, nil)}, []Action{RNG}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Compile(&pb.RoleDefinition{Permissions: tc.perms})
			if want := SetOf(tc.want...); got != want {
				t.Errorf("Compile = %v,\nwant %v", got.Actions(), want.Actions())
			}
		})
	}
	if Compile(nil) != (Set{}) {
		t.Error("Compile(nil) grants something")
	}
}

func TestValidatePermissions(t *testing.T) {
	p := ActionPrefix
	tests := []struct {
		name  string
		perms []*pb.Permission
		bad   string // a substring of the error; "" for valid
	}{
		{"none", nil, ""},
		{"empty permission", []*pb.Permission{{}}, ""},
		{"actions and wildcards", []*pb.Permission{perm([]string{p + "keys/read/action", p + "keys/*", p + "*", "microsoft.keyvault/managedhsm/RNG/action"}, []string{p + "keys/deletedKeys/*"})}, ""},
		{"unknown data action", []*pb.Permission{perm([]string{p + "keys/read/action", p + "keys/read"}, nil)}, `permissions[0].dataActions[1]: "Microsoft.KeyVault/managedHsm/keys/read" is not a Managed HSM data action`},
		{"vault action", []*pb.Permission{perm([]string{"Microsoft.KeyVault/vaults/keys/read/action"}, nil)}, "is not a Managed HSM data action"},
		{"empty entry", []*pb.Permission{perm([]string{""}, nil)}, `dataActions[0]: "" is not`},
		{"wildcard matching nothing", []*pb.Permission{perm(nil, []string{p + "secrets/*"})}, `permissions[0].notDataActions[0]: the wildcard "Microsoft.KeyVault/managedHsm/secrets/*" matches no Managed HSM data action`},
		{"second permission", []*pb.Permission{{}, perm([]string{"nope"}, nil)}, "permissions[1].dataActions[0]"},
		{"actions", []*pb.Permission{{Actions: []string{"Microsoft.KeyVault/managedHSMs/read"}}}, "permissions[0]: Managed HSM custom roles grant data actions only"},
		{"notActions", []*pb.Permission{{NotActions: []string{"*"}}}, "actions and notActions must be empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidatePermissions(tc.perms)
			if tc.bad == "" {
				if err != nil {
					t.Fatalf("ValidatePermissions: %v", err)
				}
				return
			}
			var e *rpcerr.Error
			if !errors.As(err, &e) || e.Kind != fault.BadParameter || e.Code != "BadParameter" || !strings.Contains(e.Msg, tc.bad) {
				t.Fatalf("ValidatePermissions = %#v, want BadParameter containing %q", err, tc.bad)
			}
		})
	}
	for _, r := range BuiltInRoles() {
		if err := ValidatePermissions(r.Permissions); err != nil {
			t.Errorf("built-in %s: %v", r.RoleName, err)
		}
	}
}
