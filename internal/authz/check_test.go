package authz

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hsmpool/hsmpool/internal/fault"
	"github.com/hsmpool/hsmpool/internal/rpcerr"
	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

// fakeRoles is a RoleLookup over a map of custom roles.
type fakeRoles map[string]*pb.RoleDefinition

func (f fakeRoles) RoleDefinition(name string) (*pb.RoleDefinition, bool) {
	d, ok := f[name]
	return d, ok
}

func custom(name string, data, notData []string) *pb.RoleDefinition {
	return &pb.RoleDefinition{Name: name, RoleType: CustomType, Permissions: []*pb.Permission{perm(data, notData)}}
}

func assign(scope, role string) *pb.RoleAssignment {
	return &pb.RoleAssignment{Name: "a-" + role + scope, Scope: scope, RoleDefinitionId: role, PrincipalId: "p1"}
}

func TestApplies(t *testing.T) {
	tests := []struct {
		assignment, request string
		want                bool
	}{
		{"/", "/", true},
		{"/", "/keys", true},
		{"/", "/keys/k1", true},
		{"/keys", "/", false},
		{"/keys", "/keys", true},
		{"/keys", "/keys/k1", true},
		{"/keys/k1", "/", false},
		{"/keys/k1", "/keys", false},
		{"/keys/k1", "/keys/k1", true},
		{"/keys/k1", "/keys/k2", false},
		{"/keys/k1", "/keys/k10", false},
		{"/keys/k1", "/keys/K1", false}, // key names are case-sensitive in the pool
		{"/keys/", "/keys/k1", false},
		{"/Keys", "/keys/k1", false},
		{"", "/", false},
		{"", "", false},
		{"/keysx", "/keys/k1", false},
	}
	for _, tc := range tests {
		if got := Applies(tc.assignment, tc.request); got != tc.want {
			t.Errorf("Applies(%q, %q) = %v, want %v", tc.assignment, tc.request, got, tc.want)
		}
	}
}

func TestCheck(t *testing.T) {
	const signer, noSign, fuzzy = "11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222", "33333333-3333-3333-3333-333333333333"
	roles := fakeRoles{
		signer: custom(signer, []string{ActionPrefix + "keys/sign/action"}, nil),
		noSign: custom(noSign, []string{ActionPrefix + "keys/*"}, []string{ActionPrefix + "keys/sign/action"}),
		fuzzy:  custom(fuzzy, []string{"MICROSOFT.KEYVAULT/managedhsm/KEYS/*/ACTION"}, nil),
	}
	tests := []struct {
		name        string
		roles       RoleLookup
		assignments []*pb.RoleAssignment
		action      Action
		scope       string
		allow       bool
	}{
		{"no assignments", roles, nil, KeysSign, "/keys/k1", false},
		{"crypto user at /", nil, []*pb.RoleAssignment{assign("/", CryptoUserRoleID)}, KeysSign, "/keys/k1", true},
		{"crypto user at /keys", nil, []*pb.RoleAssignment{assign("/keys", CryptoUserRoleID)}, KeysSign, "/keys/k1", true},
		{"crypto user at /keys, rng at /keys", nil, []*pb.RoleAssignment{assign("/keys", CryptoUserRoleID)}, RNG, "/keys", true},
		{"crypto user at the key", nil, []*pb.RoleAssignment{assign("/keys/k1", CryptoUserRoleID)}, KeysSign, "/keys/k1", true},
		{"crypto user at another key", nil, []*pb.RoleAssignment{assign("/keys/k2", CryptoUserRoleID)}, KeysSign, "/keys/k1", false},
		{"crypto user at a key, listing", nil, []*pb.RoleAssignment{assign("/keys/k1", CryptoUserRoleID)}, KeysRead, "/keys", false},
		{"crypto user at /keys, role read at /", nil, []*pb.RoleAssignment{assign("/keys", CryptoUserRoleID)}, RoleDefinitionsRead, "/", false},
		{"administrator cannot sign", nil, []*pb.RoleAssignment{assign("/", AdministratorRoleID)}, KeysSign, "/keys/k1", false},
		{"administrator downloads the security domain", nil, []*pb.RoleAssignment{assign("/", AdministratorRoleID)}, SecurityDomainDownload, "/", true},
		{"second assignment grants", nil, []*pb.RoleAssignment{assign("/", AdministratorRoleID), assign("/keys/k1", CryptoUserRoleID)}, KeysSign, "/keys/k1", true},
		{"custom role", roles, []*pb.RoleAssignment{assign("/", signer)}, KeysSign, "/keys/k1", true},
		{"custom role, other action", roles, []*pb.RoleAssignment{assign("/", signer)}, KeysVerify, "/keys/k1", false},
		{"custom role without lookup", nil, []*pb.RoleAssignment{assign("/", signer)}, KeysSign, "/keys/k1", false},
		{"notDataActions", roles, []*pb.RoleAssignment{assign("/", noSign)}, KeysSign, "/keys/k1", false},
		{"notDataActions leave the rest", roles, []*pb.RoleAssignment{assign("/", noSign)}, KeysVerify, "/keys/k1", true},
		{"notDataActions of one role do not deny another's", roles, []*pb.RoleAssignment{assign("/", noSign), assign("/", signer)}, KeysSign, "/keys/k1", true},
		{"case-insensitive wildcard", roles, []*pb.RoleAssignment{assign("/", fuzzy)}, DeletedKeysRecover, "/keys/k1", true},
		{"wildcard does not match keys/create", roles, []*pb.RoleAssignment{assign("/", fuzzy)}, KeysCreate, "/keys/k1", false},
		{"unknown role", roles, []*pb.RoleAssignment{assign("/", "44444444-4444-4444-4444-444444444444")}, KeysSign, "/keys/k1", false},
		{"nil assignment", roles, []*pb.RoleAssignment{nil}, KeysSign, "/keys/k1", false},
		{"role found but nil", fakeRoles{signer: nil}, []*pb.RoleAssignment{assign("/", signer)}, KeysSign, "/keys/k1", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Check(tc.roles, tc.assignments, tc.action, tc.scope)
			if tc.allow {
				if err != nil {
					t.Fatalf("Check = %v, want allowed", err)
				}
				return
			}
			checkDenial(t, err, tc.action, tc.scope)
		})
	}
}

func checkDenial(t *testing.T, err error, action Action, scope string) {
	t.Helper()
	var e *rpcerr.Error
	if !errors.As(err, &e) {
		t.Fatalf("Check = %v, want an *rpcerr.Error", err)
	}
	if e.Kind != fault.Forbidden || e.Code != "Forbidden" || e.Inner != "ForbiddenByRbac" || !errors.Is(err, fault.Forbidden) {
		t.Errorf("denial %+v: want kind Forbidden, code Forbidden, inner ForbiddenByRbac", e)
	}
	for _, want := range []string{"Caller is not authorized to perform action on resource.", "Action: '" + action.String() + "'", "Resource: '" + scope + "'"} {
		if !strings.Contains(e.Msg, want) {
			t.Errorf("denial %q does not say %q", e.Msg, want)
		}
	}
}

func TestDenialOnTheWire(t *testing.T) {
	err := Check(nil, nil, KeysSign, "/keys/k1")
	st, _ := status.FromError(rpcerr.Status(err))
	if st.Code() != codes.PermissionDenied {
		t.Errorf("gRPC code %v, want PermissionDenied", st.Code())
	}
	h := rpcerr.ToHTTP(rpcerr.Status(err))
	if h.Status != http.StatusForbidden || h.Code != "Forbidden" || h.Inner != "ForbiddenByRbac" ||
		!strings.Contains(h.Message, "Action: 'Microsoft.KeyVault/managedHsm/keys/sign/action' Resource: '/keys/k1'") {
		t.Errorf("HTTP form %+v", h)
	}
}

func TestCheckInvalidAction(t *testing.T) {
	all := []*pb.RoleAssignment{assign("/", CryptoUserRoleID), assign("/", AdministratorRoleID)}
	for _, a := range []Action{0, numActions, 255} {
		err := Check(nil, all, a, "/")
		if fault.Of(err) != fault.Internal {
			t.Errorf("Check(action %d) = %v, want an internal error", a, err)
		}
	}
}

func TestCheckReplacedRole(t *testing.T) {
	const id = "55555555-5555-5555-5555-555555555555"
	roles := fakeRoles{id: custom(id, []string{ActionPrefix + "keys/sign/action"}, nil)}
	as := []*pb.RoleAssignment{assign("/", id)}
	if err := Check(roles, as, KeysSign, "/keys/k1"); err != nil {
		t.Fatalf("before: %v", err)
	}
	// The state replaces a role with a new record; the cached set of the old one is not used.
	roles[id] = custom(id, []string{ActionPrefix + "keys/verify/action"}, nil)
	if err := Check(roles, as, KeysSign, "/keys/k1"); err == nil {
		t.Error("after the replacement the old role still grants sign")
	}
	if err := Check(roles, as, KeysVerify, "/keys/k1"); err != nil {
		t.Errorf("after the replacement: %v", err)
	}
}

func TestCacheBounded(t *testing.T) {
	var c setCache
	keep := custom("k", []string{ActionPrefix + "rng/action"}, nil)
	for i := range 3 * maxCached {
		def := custom(fmt.Sprint(i), []string{ActionPrefix + "keys/sign/action"}, nil)
		if !c.get(def).Has(KeysSign) || !c.get(keep).Has(RNG) {
			t.Fatal("wrong set from the cache")
		}
	}
	n := 0
	c.m.Range(func(any, any) bool { n++; return true })
	if n > maxCached || int(c.n.Load()) != n {
		t.Errorf("cache holds %d entries (counted %d), bound %d", n, c.n.Load(), maxCached)
	}
}

func TestCheckConcurrent(t *testing.T) {
	// Readers check while definitions are replaced, beyond the cache bound; run with -race.
	var mu sync.RWMutex
	const id = "66666666-6666-6666-6666-666666666666"
	def := custom(id, []string{ActionPrefix + "keys/*"}, nil)
	lookup := lockedRoles{mu: &mu, def: &def}
	as := []*pb.RoleAssignment{assign("/keys", id)}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 2000 {
				if err := Check(lookup, as, KeysSign, "/keys/k1"); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Go(func() {
		for range 2 * maxCached {
			d := custom(id, []string{ActionPrefix + "keys/*"}, nil)
			mu.Lock()
			def = d
			mu.Unlock()
		}
	})
	wg.Wait()
}

type lockedRoles struct {
	mu  *sync.RWMutex
	def **pb.RoleDefinition
}

func (l lockedRoles) RoleDefinition(string) (*pb.RoleDefinition, bool) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return *l.def, true
}

// benchCase is a caller with three assignments, the last of which grants: a custom role at another
// key, Crypto Auditor at "/", and a custom crypto role at "/keys".
func benchCase() (RoleLookup, []*pb.RoleAssignment) {
	const other, crypto = "77777777-7777-7777-7777-777777777777", "88888888-8888-8888-8888-888888888888"
	roles := fakeRoles{
		other:  custom(other, []string{ActionPrefix + "keys/*"}, nil),
		crypto: custom(crypto, []string{ActionPrefix + "keys/*"}, []string{ActionPrefix + "keys/deletedKeys/*"}),
	}
	return roles, []*pb.RoleAssignment{
		assign("/keys/k2", other),
		assign("/", "2c18b078-7c48-4d3a-af88-5a3a1b3f82b3"),
		assign("/keys", crypto),
	}
}

func TestCheckDoesNotAllocate(t *testing.T) {
	roles, as := benchCase()
	rule, _ := RuleFor(pb.Keys_Sign_FullMethodName)
	req := &pb.KeyOperationRequest{Name: "k1"}
	scope := rule.Scope(req)
	allocs := testing.AllocsPerRun(1000, func() {
		if err := Check(roles, as, rule.Action, scope); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("Check allocates %v times per allowed call", allocs)
	}
}

func BenchmarkCheck(b *testing.B) {
	roles, as := benchCase()
	b.ReportAllocs()
	for b.Loop() {
		if err := Check(roles, as, KeysSign, "/keys/k1"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCheckParallel(b *testing.B) {
	roles, as := benchCase()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := Check(roles, as, KeysSign, "/keys/k1"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
