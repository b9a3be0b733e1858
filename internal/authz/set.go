package authz

import (
	"strings"

	"github.com/hsmpool/hsmpool/internal/fault"
	"github.com/hsmpool/hsmpool/internal/rpcerr"
	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

// Set is a set of data actions: what a role grants. The zero value is the empty set.
type Set struct{ bits uint64 }

// SetOf returns the set of the actions given; invalid actions are left out.
func SetOf(actions ...Action) Set {
	var s Set
	for _, a := range actions {
		if a.Valid() {
			s.bits |= 1 << a
		}
	}
	return s
}

// Has tells whether s holds a. It is false for invalid actions.
func (s Set) Has(a Action) bool { return a.Valid() && s.bits&(1<<a) != 0 }

// Actions returns the actions of s in the order of the constants.
func (s Set) Actions() []Action {
	var all []Action
	for a := Action(1); a < numActions; a++ {
		if s.Has(a) {
			all = append(all, a)
		}
	}
	return all
}

// Compile returns what def grants: for each of its permissions the data actions that match one of
// dataActions and none of notDataActions, and the union of those over the permissions. Patterns
// follow Azure: "*" matches any run of characters, "/" included, and matching ignores case. actions
// and notActions are control-plane permissions and grant nothing here; patterns that match no
// known action are ignored ([ValidatePermissions] refuses them in custom roles). A nil def grants
// nothing.
func Compile(def *pb.RoleDefinition) Set {
	var s Set
	for _, p := range def.GetPermissions() {
		s.bits |= matchAll(p.GetDataActions()) &^ matchAll(p.GetNotDataActions())
	}
	return s
}

// matchAll returns the bits of the actions that match one of patterns.
func matchAll(patterns []string) uint64 {
	var bits uint64
	for _, p := range patterns {
		bits |= matchBits(p)
	}
	return bits
}

// matchBits returns the bits of the actions that pattern matches.
func matchBits(pattern string) uint64 {
	p := strings.ToLower(pattern)
	if !strings.Contains(p, "*") {
		if a, ok := byLowerName[p]; ok {
			return 1 << a
		}
		return 0
	}
	var bits uint64
	for a := Action(1); a < numActions; a++ {
		if glob(p, lowerNames[a]) {
			bits |= 1 << a
		}
	}
	return bits
}

// glob reports whether name matches pattern, where "*" in pattern matches any run of characters
// (possibly empty, "/" included) and every other byte matches itself.
func glob(pattern, name string) bool {
	// The classic linear algorithm: on a mismatch, let the last "*" swallow one more byte.
	p, n := 0, 0
	star, mark := -1, 0
	for n < len(name) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, n
			p++
		case p < len(pattern) && pattern[p] == name[n]:
			p++
			n++
		case star >= 0:
			p = star + 1
			mark++
			n = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// ValidatePermissions checks the permissions of a custom role before it is stored. Managed HSM
// custom roles are data-plane only, so actions and notActions must be empty; every entry of
// dataActions and notDataActions must be a data action or a wildcard that matches at least one.
// The error is a BadParameter *rpcerr.Error naming the first bad entry.
func ValidatePermissions(perms []*pb.Permission) error {
	for i, p := range perms {
		if len(p.GetActions()) > 0 || len(p.GetNotActions()) > 0 {
			return badParameter("permissions[%d]: Managed HSM custom roles grant data actions only: actions and notActions must be empty.", i)
		}
		for _, list := range []struct {
			field    string
			patterns []string
		}{{"dataActions", p.GetDataActions()}, {"notDataActions", p.GetNotDataActions()}} {
			for j, pat := range list.patterns {
				if matchBits(pat) != 0 {
					continue
				}
				if strings.Contains(pat, "*") {
					return badParameter("permissions[%d].%s[%d]: the wildcard %q matches no Managed HSM data action.", i, list.field, j, pat)
				}
				return badParameter("permissions[%d].%s[%d]: %q is not a Managed HSM data action.", i, list.field, j, pat)
			}
		}
	}
	return nil
}

func badParameter(format string, args ...any) error {
	return rpcerr.New(fault.BadParameter, "BadParameter", format, args...)
}
