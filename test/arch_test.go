package test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// modulePath is the path of the hsmpool module.
const modulePath = "github.com/hsmpool/hsmpool"

// importRule says which packages may import a package directly. Imported matches that package and every package
// below it; each entry of Allowed is a package path, or a path ending in "/..." that matches that package and every
// package below it.
type importRule struct {
	Imported string
	Allowed  []string
	Why      string
}

// importRules is the one table of the import rules in DESIGN.md and STYLE.md.
var importRules = []importRule{
	{
		Imported: modulePath + "/internal/core",
		Allowed:  []string{modulePath + "/internal/daemon"},
		Why:      "the gateway reaches the core only through its gRPC API, so it cannot bypass authorization; the daemon wires them",
	},
	{
		Imported: modulePath + "/internal/state",
		Allowed:  []string{modulePath + "/internal/fsm", modulePath + "/internal/daemon"},
		Why:      "the state changes only through Raft (fsm); the core reads it through its own StateReader interface",
	},
	{
		Imported: "github.com/miekg/pkcs11",
		Allowed:  []string{modulePath + "/internal/hsm"},
		Why:      "PKCS#11 is reached only through internal/hsm, which owns sessions, login and CKR_* mapping",
	},
	{
		Imported: "github.com/cloudflare/circl",
		Allowed:  []string{modulePath + "/internal/nodejoin"},
		Why:      "post-quantum crypto is confined to the KEK's join envelope, so its suite and its inputs are reviewed in one place",
	},
	{
		Imported: "github.com/hashicorp/raft",
		Allowed:  []string{modulePath + "/internal/cluster/...", modulePath + "/internal/fsm/..."},
		Why:      "Raft is wrapped by internal/cluster (one Apply) and internal/fsm (the state machine)",
	},
	{
		Imported: "github.com/hashicorp/raft-boltdb",
		Allowed:  []string{modulePath + "/internal/cluster/..."},
		Why:      "the Raft log and stable store on disk belong to internal/cluster",
	},
	{
		Imported: "go.etcd.io/bbolt",
		Allowed:  []string{modulePath + "/internal/cluster/..."},
		Why:      "bbolt is the Raft store's database; state lives in the FSM, not in a side database",
	},
	{
		Imported: "net/http",
		Allowed: []string{modulePath + "/internal/gateway/...", modulePath + "/internal/auth/...", modulePath + "/cmd/...",
			modulePath + "/internal/daemon", modulePath + "/internal/rpcerr", modulePath + "/pkg/..."},
		Why: "HTTP is served only by the gateway and the token endpoint (the daemon runs their server, rpcerr holds the one table " +
			"of error statuses, pkg/ holds clients); the core is reached through gRPC",
	},
}

// goPackage is the part of "go list -json" output the checker reads.
type goPackage struct {
	ImportPath string
	Imports    []string // direct imports of the non-test Go files
	Error      *struct{ Err string }
}

// violation is one import that breaks a rule.
type violation struct {
	Importer, Imported string
	Rule               importRule
}

func (v violation) String() string {
	return fmt.Sprintf("%s imports %s; only %s may (%s)", v.Importer, v.Imported, strings.Join(v.Rule.Allowed, ", "), v.Rule.Why)
}

// matchPattern reports whether path is pattern, or is below it when pattern ends in "/...".
func matchPattern(pattern, path string) bool {
	if prefix, ok := strings.CutSuffix(pattern, "/..."); ok {
		return path == prefix || strings.HasPrefix(path, prefix+"/")
	}
	return path == pattern
}

// checkImports returns every direct import in pkgs that breaks one of rules.
func checkImports(pkgs []goPackage, rules []importRule) []violation {
	var vs []violation
	for _, p := range pkgs {
		for _, imp := range p.Imports {
			for _, r := range rules {
				if !matchPattern(r.Imported+"/...", imp) {
					continue
				}
				if slices.ContainsFunc(r.Allowed, func(a string) bool { return matchPattern(a, p.ImportPath) }) {
					continue
				}
				vs = append(vs, violation{Importer: p.ImportPath, Imported: imp, Rule: r})
			}
		}
	}
	return vs
}

// listPackages runs "go list -e -json ./..." at the module root and decodes its output.
func listPackages(t *testing.T) []goPackage {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the architecture test needs the go command on PATH: %v", err)
	}
	gomod, err := exec.Command(goTool, "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))

	var stdout, stderr bytes.Buffer
	cmd := exec.Command(goTool, "list", "-e", "-json=ImportPath,Imports,Error", "./...")
	cmd.Dir = root
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("go list in %s: %v\n%s", root, err, stderr.Bytes())
	}
	var pkgs []goPackage
	for dec := json.NewDecoder(&stdout); ; {
		var p goPackage
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// TestImportRules checks the direct imports of every package of the module against importRules.
func TestImportRules(t *testing.T) {
	pkgs := listPackages(t)

	// Guard against a checker that passes because it saw nothing.
	if !slices.ContainsFunc(pkgs, func(p goPackage) bool { return p.ImportPath == modulePath+"/cmd/hsmpoold" }) {
		t.Fatalf("go list did not report %s/cmd/hsmpoold among %d packages", modulePath, len(pkgs))
	}
	for _, p := range pkgs {
		if !matchPattern(modulePath+"/...", p.ImportPath) {
			t.Errorf("go list reported %s, which is outside module %s", p.ImportPath, modulePath)
		}
		// A package go list cannot load may have an incomplete import list, so it cannot be cleared.
		if p.Error != nil {
			t.Errorf("go list could not load %s, so its imports are unchecked: %s", p.ImportPath, p.Error.Err)
		}
	}
	for _, v := range checkImports(pkgs, importRules) {
		t.Error(v)
	}
}

// TestCheckImports shows that checkImports reports a broken rule, on fabricated packages.
func TestCheckImports(t *testing.T) {
	const m = modulePath
	tests := []struct {
		name string
		pkg  goPackage
		want []string // "importer imports imported", in order
	}{
		{
			name: "pkcs11 in internal/hsm",
			pkg:  goPackage{ImportPath: m + "/internal/hsm", Imports: []string{"context", "github.com/miekg/pkcs11"}},
		},
		{
			name: "pkcs11 in core",
			pkg:  goPackage{ImportPath: m + "/internal/core", Imports: []string{"github.com/miekg/pkcs11"}},
			want: []string{m + "/internal/core imports github.com/miekg/pkcs11"},
		},
		{
			name: "pkcs11 below internal/hsm",
			pkg:  goPackage{ImportPath: m + "/internal/hsm/softhsm", Imports: []string{"github.com/miekg/pkcs11"}},
			want: []string{m + "/internal/hsm/softhsm imports github.com/miekg/pkcs11"},
		},
		{
			name: "pkcs11 subpackage",
			pkg:  goPackage{ImportPath: m + "/internal/core", Imports: []string{"github.com/miekg/pkcs11/p11"}},
			want: []string{m + "/internal/core imports github.com/miekg/pkcs11/p11"},
		},
		{
			name: "raft in internal/cluster",
			pkg:  goPackage{ImportPath: m + "/internal/cluster", Imports: []string{"github.com/hashicorp/raft"}},
		},
		{
			name: "raft below internal/fsm",
			pkg:  goPackage{ImportPath: m + "/internal/fsm/codec", Imports: []string{"github.com/hashicorp/raft"}},
		},
		{
			name: "raft in a look-alike of internal/fsm",
			pkg:  goPackage{ImportPath: m + "/internal/fsmtools", Imports: []string{"github.com/hashicorp/raft"}},
			want: []string{m + "/internal/fsmtools imports github.com/hashicorp/raft"},
		},
		{
			name: "raft in state",
			pkg:  goPackage{ImportPath: m + "/internal/state", Imports: []string{"github.com/hashicorp/raft"}},
			want: []string{m + "/internal/state imports github.com/hashicorp/raft"},
		},
		{
			name: "raft-boltdb outside internal/cluster",
			pkg:  goPackage{ImportPath: m + "/internal/state", Imports: []string{"github.com/hashicorp/raft-boltdb/v2"}},
			want: []string{m + "/internal/state imports github.com/hashicorp/raft-boltdb/v2"},
		},
		{
			name: "raft-boltdb in internal/cluster",
			pkg:  goPackage{ImportPath: m + "/internal/cluster", Imports: []string{"github.com/hashicorp/raft-boltdb/v2", "go.etcd.io/bbolt"}},
		},
		{
			name: "net/http in cmd",
			pkg:  goPackage{ImportPath: m + "/cmd/hsmpool", Imports: []string{"net/http"}},
		},
		{
			name: "net/http in auth",
			pkg:  goPackage{ImportPath: m + "/internal/auth/oidc", Imports: []string{"net/http"}},
		},
		{
			name: "net/http and httputil in core",
			pkg:  goPackage{ImportPath: m + "/internal/core", Imports: []string{"net/http", "net/http/httputil", "net/netip"}},
			want: []string{m + "/internal/core imports net/http", m + "/internal/core imports net/http/httputil"},
		},
		{
			name: "net/http in authz, which is not auth",
			pkg:  goPackage{ImportPath: m + "/internal/authz", Imports: []string{"net/http"}},
			want: []string{m + "/internal/authz imports net/http"},
		},
		{
			name: "net/http in securitydomain",
			pkg:  goPackage{ImportPath: m + "/securitydomain", Imports: []string{"net/http"}},
			want: []string{m + "/securitydomain imports net/http"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, v := range checkImports([]goPackage{tt.pkg}, importRules) {
				got = append(got, v.Importer+" imports "+v.Imported)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("checkImports reported %q, want %q", got, tt.want)
			}
		})
	}
}
