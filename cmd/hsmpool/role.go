package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azadmin/rbac"
	"github.com/google/uuid"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/hsmpool/hsmpool/pkg/client"
)

// This file holds "hsmpool role": local RBAC (azure-mhsm-api.md §5.2) through the Azure SDK's azadmin/rbac.

// dataActionPrefix starts every Managed HSM data action; the commands add it to actions given without it, and the
// tables leave it out.
const dataActionPrefix = "Microsoft.KeyVault/managedHsm/"

// customRole is the type of the role definitions that "role definition create" makes.
const customRole = rbac.RoleTypeCustomRole

// guidPattern is a GUID in its usual form, as role definitions and assignments are named.
var guidPattern = regexp.MustCompile(`^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$`)

// isGUID reports whether s is a GUID.
func isGUID(s string) bool { return guidPattern.MatchString(s) }

// guidArg checks that args is one GUID, what it names.
func guidArg(what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != 1 {
			return fmt.Errorf("want one %s GUID: %s", what, cmd.UseLine())
		}
		if !isGUID(args[0]) {
			return fmt.Errorf("%s %q: want a GUID, such as 21dbd100-6940-42c2-9190-5d6cb909625b", what, args[0])
		}
		return nil
	}
}

// parseScope checks value, the value of flag, as a role scope: "/" or "/keys", and "/keys/NAME" when keyScope.
func parseScope(flag, value string, keyScope bool) (rbac.RoleScope, error) {
	switch name, isKey := strings.CutPrefix(value, "/keys/"); {
	case value == "/" || value == "/keys":
		return rbac.RoleScope(value), nil
	case isKey && keyScope:
		if !keyNamePattern.MatchString(name) {
			return "", fmt.Errorf("%s %q: key name %q: use 1 to 127 letters, digits and dashes", flag, value, name)
		}
		return rbac.RoleScope(value), nil
	case keyScope:
		return "", fmt.Errorf("%s %q: want /, /keys or /keys/NAME", flag, value)
	}
	return "", fmt.Errorf("%s %q: want / or /keys", flag, value)
}

// dataAction returns the data action a, with dataActionPrefix added unless it has it; errors name flag.
func dataAction(flag, a string) (rbac.DataAction, error) {
	a = strings.TrimSpace(a)
	if a == "" || strings.ContainsAny(a, " \t'\"") {
		return "", fmt.Errorf("%s %q: want a data action, such as keys/sign/action", flag, a)
	}
	if !strings.HasPrefix(strings.ToLower(a), strings.ToLower(dataActionPrefix)) {
		a = dataActionPrefix + strings.TrimPrefix(a, "/")
	}
	return rbac.DataAction(a), nil
}

// dataActions applies dataAction to each of actions; nil for none.
func dataActions(flag string, actions []string) ([]*rbac.DataAction, error) {
	var out []*rbac.DataAction
	for _, a := range actions {
		d, err := dataAction(flag, a)
		if err != nil {
			return nil, err
		}
		out = append(out, &d)
	}
	return out, nil
}

// shortAction is a data action without dataActionPrefix, for tables.
func shortAction(a string) string {
	if len(a) >= len(dataActionPrefix) && strings.EqualFold(a[:len(dataActionPrefix)], dataActionPrefix) {
		return a[len(dataActionPrefix):]
	}
	return a
}

// quoteFilter checks that value, of flag, can go between the quotes of a $filter term.
func quoteFilter(flag, value string) (string, error) {
	if value == "" || strings.Contains(value, "'") {
		return "", fmt.Errorf("%s %q: want a value without quotes", flag, value)
	}
	return "'" + value + "'", nil
}

// newRoleCmd builds "hsmpool role", local RBAC.
func newRoleCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "role",
		Short: "Manage role definitions and role assignments (local RBAC)",
		Long: `role manages who may do what in the pool, as Azure Managed HSM's local RBAC does: a
role definition lists data actions (keys/sign/action, roleAssignments/write/action...);
a role assignment gives a role to a principal, by its object ID, at a scope: the whole
pool "/", every key "/keys", or one key "/keys/NAME".

The built-in roles are Azure's: Managed HSM Administrator, Crypto Officer, Crypto
User, Policy Administrator, Crypto Auditor... Custom roles may be defined. Data
actions may be given without their "Microsoft.KeyVault/managedHsm/" prefix; the
tables leave it out, -o json prints the Azure SDK's models whole.`,
		Example: `  hsmpool role definition list
  hsmpool role definition create --name "Key Reader" --data-action keys/read/action
  hsmpool role assignment create --role "Managed HSM Crypto User" --principal OBJECT_ID --scope /keys/k1
  hsmpool role assignment list --principal OBJECT_ID`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	def := &cobra.Command{
		Use:   "definition",
		Short: "List, show, create and delete role definitions",
		Long: `definition manages role definitions: the built-in roles, which cannot change, and
custom roles. Role definitions live at "/" (and "/keys").`,
		Example: `  hsmpool role definition list --name "Managed HSM Crypto User"
  hsmpool role definition show 21dbd100-6940-42c2-9190-5d6cb909625b`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	def.AddCommand(
		newRoleDefinitionListCmd(&roleDefinitionListOptions{Scope: "/"}),
		newRoleDefinitionShowCmd("show", "Show a role definition",
			`show prints a role definition: its name, type, description, scopes and data actions.`),
		newRoleDefinitionShowCmd("delete", "Delete a custom role definition",
			`delete deletes a custom role definition and prints it. Built-in roles cannot be deleted,
nor a role that is still assigned.`),
		newRoleDefinitionCreateCmd(&roleDefinitionCreateOptions{Scope: "/"}),
	)
	asg := &cobra.Command{
		Use:   "assignment",
		Short: "List, create and delete role assignments",
		Long: `assignment manages role assignments: which principal holds which role, at which scope
("/", "/keys" or "/keys/NAME").`,
		Example: `  hsmpool role assignment list --scope /keys/k1
  hsmpool role assignment delete 7a8f0b6e-1c2d-4e3f-8a9b-0c1d2e3f4a5b --scope /keys/k1`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	asg.AddCommand(
		newRoleAssignmentListCmd(&roleAssignmentListOptions{Scope: "/"}),
		newRoleAssignmentCreateCmd(&roleAssignmentCreateOptions{Scope: "/"}),
		newRoleAssignmentDeleteCmd(),
	)
	cmd.AddCommand(def, asg)
	return cmd
}

// roleDefinitionListOptions are the flags of "hsmpool role definition list".
type roleDefinitionListOptions struct {
	Scope string
	Name  string

	scope  rbac.RoleScope // made by validate
	filter *string
}

func (o *roleDefinitionListOptions) validate() error {
	var err error
	if o.scope, err = parseScope("--scope", o.Scope, false); err != nil {
		return err
	}
	o.filter = nil
	if o.Name != "" {
		q, err := quoteFilter("--name", o.Name)
		if err != nil {
			return err
		}
		o.filter = to.Ptr("roleName eq " + q)
	}
	return nil
}

// newRoleDefinitionListCmd builds "hsmpool role definition list".
func newRoleDefinitionListCmd(opts *roleDefinitionListOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "list [--scope /|/keys] [--name ROLENAME]",
		Short: "List role definitions",
		Long: `list prints one line per role definition at the scope (default "/"): its GUID, its
type (AKVBuiltInRole or CustomRole), how many data actions it allows, and its name.
--name keeps only the role of that name.`,
		Example: `  hsmpool role definition list
  hsmpool role definition list --name "Managed HSM Crypto User" -o json`,
		Args: cobra.NoArgs,
	}
	f := cmd.Flags()
	f.StringVar(&opts.Scope, "scope", opts.Scope, "scope: / or /keys")
	f.StringVar(&opts.Name, "name", opts.Name, "only the role of this name")
	return defaultPoolOptions().command(cmd, true, func([]string) error { return opts.validate() }, func(s *session, _ []string) error {
		defs, err := s.listRoleDefinitions(opts.scope, opts.filter)
		if err != nil {
			return err
		}
		return s.print(defs, func(w io.Writer) error { return printRoleDefinitionRows(w, defs) })
	})
}

// listRoleDefinitions returns every role definition at scope that filter (nil for none) keeps.
func (s *session) listRoleDefinitions(scope rbac.RoleScope, filter *string) ([]*rbac.RoleDefinition, error) {
	defs, err := allPages(s.ctx, s.client.RBAC().NewListRoleDefinitionsPager(scope, &rbac.ListRoleDefinitionsOptions{Filter: filter}),
		func(r rbac.ListRoleDefinitionsResponse) []*rbac.RoleDefinition { return r.Value })
	if defs == nil && err == nil {
		defs = []*rbac.RoleDefinition{}
	}
	return defs, err
}

// printRoleDefinitionRows writes a table of role definitions.
func printRoleDefinitionRows(w io.Writer, defs []*rbac.RoleDefinition) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "GUID\tTYPE\tDATA ACTIONS\tROLE NAME")
	for _, d := range defs {
		p := deref(d.Properties)
		n := 0
		for _, perm := range p.Permissions {
			if perm != nil {
				n += len(perm.DataActions)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", deref(d.Name), deref(p.RoleType), n, deref(p.RoleName))
	}
	return tw.Flush()
}

// details is a list of "name: value" lines where a name may have several values, one per line.
type details struct {
	names  []string
	values [][]string
}

// add appends the name with values, unless there are none or all are empty.
func (d *details) add(name string, values ...string) {
	values = slices.DeleteFunc(slices.Clone(values), func(v string) bool { return v == "" })
	if len(values) > 0 {
		d.names, d.values = append(d.names, name), append(d.values, values)
	}
}

// write writes the lines to w, aligned.
func (d *details) write(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	for i, name := range d.names {
		for j, v := range d.values[i] {
			if j == 0 {
				fmt.Fprintf(tw, "%s:\t%s\n", name, v)
			} else {
				fmt.Fprintf(tw, "\t%s\n", v)
			}
		}
	}
	return tw.Flush()
}

// printRoleDefinition writes a role definition's human form; the data actions without dataActionPrefix.
func printRoleDefinition(w io.Writer, d *rbac.RoleDefinition) error {
	var l details
	p := deref(d.Properties)
	l.add("guid", deref(d.Name))
	l.add("role name", deref(p.RoleName))
	l.add("type", string(deref(p.RoleType)))
	l.add("description", deref(p.Description))
	var scopes []string
	for _, sc := range p.AssignableScopes {
		scopes = append(scopes, string(deref(sc)))
	}
	l.add("scopes", strings.Join(scopes, ", "))
	var actions, notActions []string
	for _, perm := range p.Permissions {
		if perm == nil {
			continue
		}
		for _, a := range perm.DataActions {
			actions = append(actions, shortAction(string(deref(a))))
		}
		for _, a := range perm.NotDataActions {
			notActions = append(notActions, shortAction(string(deref(a))))
		}
	}
	l.add("data actions", actions...)
	l.add("not data actions", notActions...)
	l.add("id", deref(d.ID))
	return l.write(w)
}

// newRoleDefinitionShowCmd builds "hsmpool role definition show" or "delete", which take a GUID and print a role
// definition.
func newRoleDefinitionShowCmd(verb, short, long string) *cobra.Command {
	cmd := &cobra.Command{
		Use:     verb + " GUID",
		Short:   short,
		Long:    long,
		Example: "  hsmpool role definition " + verb + " 0f3c8e2a-4b5d-4e6f-8a9b-1c2d3e4f5a6b",
		Args:    guidArg("role definition"),
	}
	return defaultPoolOptions().command(cmd, true, nil, func(s *session, args []string) error {
		var d rbac.RoleDefinition
		if verb == "delete" {
			r, err := s.client.RBAC().DeleteRoleDefinition(s.ctx, rbac.RoleScopeGlobal, args[0], nil)
			if err != nil {
				return err
			}
			d = r.RoleDefinition
		} else {
			r, err := s.client.RBAC().GetRoleDefinition(s.ctx, rbac.RoleScopeGlobal, args[0], nil)
			if err != nil {
				return err
			}
			d = r.RoleDefinition
		}
		return s.print(d, func(w io.Writer) error { return printRoleDefinition(w, &d) })
	})
}

// roleDefinitionCreateOptions are the flags of "hsmpool role definition create".
type roleDefinitionCreateOptions struct {
	Name           string
	ID             string
	DataActions    []string
	NotDataActions []string
	Description    string
	Scope          string
	File           string

	scope  rbac.RoleScope // made by validate
	params rbac.RoleDefinitionCreateParameters
}

// maxRoleFile bounds what --file reads.
const maxRoleFile = 1 << 20

// validate checks the flags and makes the request; errors name the flag. f tells which flags were given.
func (o *roleDefinitionCreateOptions) validate(f *pflag.FlagSet) error {
	var err error
	if o.scope, err = parseScope("--scope", o.Scope, false); err != nil {
		return err
	}
	if o.ID == "" {
		o.ID = uuid.NewString()
	} else if !isGUID(o.ID) {
		return fmt.Errorf("--id %q: want a GUID", o.ID)
	}
	if o.File != "" {
		for _, flag := range []string{"name", "data-action", "not-data-action", "description"} {
			if f.Changed(flag) {
				return fmt.Errorf("--%s: the role comes from --file; give one or the other", flag)
			}
		}
		return o.readFile()
	}
	if strings.TrimSpace(o.Name) == "" {
		return errors.New("--name is required: the role's name (or give the whole role in --file)")
	}
	if len(o.DataActions) == 0 {
		return errors.New("--data-action is required: at least one, such as keys/sign/action")
	}
	perm := &rbac.Permission{Actions: []*string{}, NotActions: []*string{}}
	if perm.DataActions, err = dataActions("--data-action", o.DataActions); err != nil {
		return err
	}
	if perm.NotDataActions, err = dataActions("--not-data-action", o.NotDataActions); err != nil {
		return err
	}
	if perm.NotDataActions == nil {
		perm.NotDataActions = []*rbac.DataAction{}
	}
	o.params = rbac.RoleDefinitionCreateParameters{Properties: &rbac.RoleDefinitionProperties{
		RoleName: to.Ptr(o.Name), Description: to.Ptr(o.Description), RoleType: to.Ptr(customRole),
		Permissions: []*rbac.Permission{perm}, AssignableScopes: []*rbac.RoleScope{to.Ptr(o.scope)}}}
	return nil
}

// readFile reads --file, Azure's RoleDefinitionCreateParameters JSON. It adds the prefix to data actions that lack
// it, and fills in the type (CustomRole) and the assignable scopes (--scope) when the file leaves them out.
func (o *roleDefinitionCreateOptions) readFile() error {
	b, err := readSmallFile(o.File, maxRoleFile)
	if err != nil {
		return fmt.Errorf("--file: %w", err)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return fmt.Errorf("--file %s: not JSON: %w", o.File, err)
	}
	if _, ok := raw["properties"]; !ok {
		return fmt.Errorf(`--file %s: want a RoleDefinitionCreateParameters object, {"properties": {"roleName": ..., "permissions": [...]}}`, o.File)
	}
	var params rbac.RoleDefinitionCreateParameters
	if err := json.Unmarshal(b, &params); err != nil {
		return fmt.Errorf("--file %s: %w", o.File, err)
	}
	p := params.Properties
	if p == nil || strings.TrimSpace(deref(p.RoleName)) == "" {
		return fmt.Errorf(`--file %s: "properties.roleName" is missing`, o.File)
	}
	if len(p.Permissions) == 0 {
		return fmt.Errorf(`--file %s: "properties.permissions" is missing`, o.File)
	}
	for i, perm := range p.Permissions {
		if perm == nil {
			return fmt.Errorf(`--file %s: "properties.permissions[%d]" is null`, o.File, i)
		}
		for _, list := range []struct {
			name    string
			actions []*rbac.DataAction
		}{{"dataActions", perm.DataActions}, {"notDataActions", perm.NotDataActions}} {
			for j, a := range list.actions {
				where := fmt.Sprintf("--file %s: properties.permissions[%d].%s[%d]", o.File, i, list.name, j)
				if a == nil {
					return fmt.Errorf("%s is null", where)
				}
				d, err := dataAction(where, string(*a))
				if err != nil {
					return err
				}
				*a = d
			}
		}
	}
	if p.RoleType == nil {
		p.RoleType = to.Ptr(customRole)
	}
	if len(p.AssignableScopes) == 0 {
		p.AssignableScopes = []*rbac.RoleScope{to.Ptr(o.scope)}
	}
	o.params = params
	return nil
}

// newRoleDefinitionCreateCmd builds "hsmpool role definition create".
func newRoleDefinitionCreateCmd(opts *roleDefinitionCreateOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "create --name ROLENAME [--id GUID] --data-action A... [--not-data-action A...] [--description D] [--scope /] | --file ROLE.json",
		Short: "Create or replace a custom role definition",
		Long: `create defines a custom role, and prints it. The role is named by a GUID: a new one,
or --id GUID, which replaces the custom role of that GUID if there is one.

--data-action (repeatable, or comma-separated) lists what the role allows, such as
keys/sign/action or keys/*; --not-data-action what it takes out of that. The prefix
"Microsoft.KeyVault/managedHsm/" may be left out. Instead of these flags, --file gives
the whole role as Azure's RoleDefinitionCreateParameters JSON:

  {"properties": {"roleName": "Key Signer", "description": "...",
    "permissions": [{"dataActions": ["keys/sign/action", "keys/read/action"]}]}}`,
		Example: `  hsmpool role definition create --name "Key Signer" --data-action keys/sign/action,keys/read/action
  hsmpool role definition create --id 0f3c8e2a-4b5d-4e6f-8a9b-1c2d3e4f5a6b --file signer.json`,
		Args: cobra.NoArgs,
	}
	f := cmd.Flags()
	f.StringVar(&opts.Name, "name", opts.Name, "the role's name (required without --file)")
	f.StringVar(&opts.ID, "id", opts.ID, "the role's GUID (default a new one)")
	f.StringSliceVar(&opts.DataActions, "data-action", opts.DataActions, "a data action the role allows; repeatable")
	f.StringSliceVar(&opts.NotDataActions, "not-data-action", opts.NotDataActions, "a data action taken out of those; repeatable")
	f.StringVar(&opts.Description, "description", opts.Description, "what the role is for")
	f.StringVar(&opts.Scope, "scope", opts.Scope, "where the role may be assigned: / or /keys")
	f.StringVar(&opts.File, "file", opts.File, "the role as RoleDefinitionCreateParameters JSON, instead of the flags above")
	return defaultPoolOptions().command(cmd, true, func([]string) error { return opts.validate(cmd.Flags()) }, func(s *session, _ []string) error {
		r, err := s.client.RBAC().CreateOrUpdateRoleDefinition(s.ctx, opts.scope, opts.ID, opts.params, nil)
		if err != nil {
			return err
		}
		return s.print(r.RoleDefinition, func(w io.Writer) error { return printRoleDefinition(w, &r.RoleDefinition) })
	})
}

// roleAssignmentListOptions are the flags of "hsmpool role assignment list".
type roleAssignmentListOptions struct {
	Scope     string
	Principal string
	AtScope   bool

	scope  rbac.RoleScope // made by validate
	filter *string
}

func (o *roleAssignmentListOptions) validate() error {
	var err error
	if o.scope, err = parseScope("--scope", o.Scope, true); err != nil {
		return err
	}
	var terms []string
	if o.AtScope {
		terms = append(terms, "atScope()")
	}
	if o.Principal != "" {
		q, err := quoteFilter("--principal", o.Principal)
		if err != nil {
			return err
		}
		terms = append(terms, "principalId eq "+q)
	}
	o.filter = nil
	if len(terms) > 0 {
		o.filter = to.Ptr(strings.Join(terms, " and "))
	}
	return nil
}

// newRoleAssignmentListCmd builds "hsmpool role assignment list".
func newRoleAssignmentListCmd(opts *roleAssignmentListOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "list [--scope /|/keys|/keys/NAME] [--principal OBJECT_ID] [--at-scope]",
		Short: "List role assignments",
		Long: `list prints one line per role assignment at the scope (default "/") and below it: its
GUID, scope, principal (object ID) and role. --at-scope keeps only those at the scope
or above it; --principal only those of one principal, by object ID.`,
		Example: `  hsmpool role assignment list
  hsmpool role assignment list --scope /keys/k1 --at-scope
  hsmpool role assignment list --principal 3f2b8c1e-5a0d-4c5e-9d1a-6b7e8f9a0b1c -o json`,
		Args: cobra.NoArgs,
	}
	f := cmd.Flags()
	f.StringVar(&opts.Scope, "scope", opts.Scope, "scope: /, /keys or /keys/NAME")
	f.StringVar(&opts.Principal, "principal", opts.Principal, "only the assignments of this principal (object ID)")
	f.BoolVar(&opts.AtScope, "at-scope", opts.AtScope, "only the assignments at the scope or above it")
	return defaultPoolOptions().command(cmd, true, func([]string) error { return opts.validate() }, func(s *session, _ []string) error {
		as, err := allPages(s.ctx, s.client.RBAC().NewListRoleAssignmentsPager(opts.scope, &rbac.ListRoleAssignmentsOptions{Filter: opts.filter}),
			func(r rbac.ListRoleAssignmentsResponse) []*rbac.RoleAssignment { return r.Value })
		if err != nil {
			return err
		}
		if as == nil {
			as = []*rbac.RoleAssignment{}
		}
		if s.json {
			return writeJSON(s.out, as)
		}
		return printRoleAssignmentRows(s.out, as, s.roleNames())
	})
}

// roleNames returns the names of the role definitions by GUID, for tables; a principal that may not read them
// gets an empty map, and the tables show GUIDs.
func (s *session) roleNames() map[string]string {
	names := map[string]string{}
	for _, scope := range []rbac.RoleScope{rbac.RoleScopeGlobal, rbac.RoleScopeKeys} {
		defs, err := s.listRoleDefinitions(scope, nil)
		if err != nil {
			break
		}
		for _, d := range defs {
			if d.Name != nil && d.Properties != nil && d.Properties.RoleName != nil {
				names[strings.ToLower(*d.Name)] = *d.Properties.RoleName
			}
		}
	}
	return names
}

// roleGUID is the GUID at the end of a role definition ID.
func roleGUID(id string) string { return id[strings.LastIndexByte(id, '/')+1:] }

// roleName is the name of the role definition id in names, or its GUID.
func roleName(id string, names map[string]string) string {
	g := roleGUID(id)
	if n, ok := names[strings.ToLower(g)]; ok {
		return n
	}
	return g
}

// printRoleAssignmentRows writes a table of role assignments; names maps role GUIDs to names.
func printRoleAssignmentRows(w io.Writer, as []*rbac.RoleAssignment, names map[string]string) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "GUID\tSCOPE\tPRINCIPAL\tROLE")
	for _, a := range as {
		p := deref(a.Properties)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", deref(a.Name), deref(p.Scope), deref(p.PrincipalID), roleName(deref(p.RoleDefinitionID), names))
	}
	return tw.Flush()
}

// printRoleAssignment writes a role assignment's human form; names maps role GUIDs to names.
func printRoleAssignment(w io.Writer, a *rbac.RoleAssignment, names map[string]string) error {
	var l details
	p := deref(a.Properties)
	l.add("guid", deref(a.Name))
	l.add("scope", string(deref(p.Scope)))
	l.add("principal", deref(p.PrincipalID))
	l.add("role", roleName(deref(p.RoleDefinitionID), names))
	l.add("role definition", deref(p.RoleDefinitionID))
	l.add("id", deref(a.ID))
	return l.write(w)
}

// roleAssignmentCreateOptions are the flags of "hsmpool role assignment create".
type roleAssignmentCreateOptions struct {
	Role      string
	Principal string
	Scope     string
	ID        string

	scope rbac.RoleScope // made by validate
}

func (o *roleAssignmentCreateOptions) validate() error {
	switch {
	case strings.TrimSpace(o.Role) == "":
		return errors.New("--role is required: a role's name or GUID")
	case o.Principal == "":
		return errors.New("--principal is required: a principal's object ID or client ID")
	case strings.ContainsAny(o.Principal, "/\\?# '"):
		return fmt.Errorf("--principal %q: want an object ID or a client ID", o.Principal)
	}
	if strings.Contains(o.Role, "'") {
		return fmt.Errorf("--role %q: want a role's name or GUID, without quotes", o.Role)
	}
	if o.ID == "" {
		o.ID = uuid.NewString()
	} else if !isGUID(o.ID) {
		return fmt.Errorf("--id %q: want a GUID", o.ID)
	}
	var err error
	o.scope, err = parseScope("--scope", o.Scope, true)
	return err
}

// newRoleAssignmentCreateCmd builds "hsmpool role assignment create".
func newRoleAssignmentCreateCmd(opts *roleAssignmentCreateOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "create --role ROLENAME|GUID --principal OBJECT_ID|CLIENT_ID [--scope /|/keys|/keys/NAME] [--id GUID]",
		Short: "Assign a role to a principal",
		Long: `create gives a principal a role at a scope (default "/", the whole pool) and prints
the assignment. The assignment is named by a GUID: a new one, or --id GUID.

--role is a role's name, such as "Managed HSM Crypto User", or its GUID. --principal
is one of the pool's principals, by object ID or client ID (the object ID is what the
assignment holds); an object ID the pool does not know, such as an external
principal's, is used as it is.`,
		Example: `  hsmpool role assignment create --role "Managed HSM Crypto User" --principal 3f2b8c1e-5a0d-4c5e-9d1a-6b7e8f9a0b1c --scope /keys/k1
  hsmpool role assignment create --role 21dbd100-6940-42c2-9190-5d6cb909625b --principal CLIENT_ID --scope /keys`,
		Args: cobra.NoArgs,
	}
	f := cmd.Flags()
	f.StringVar(&opts.Role, "role", opts.Role, "the role: its name or GUID (required)")
	f.StringVar(&opts.Principal, "principal", opts.Principal, "the principal: object ID or client ID (required)")
	f.StringVar(&opts.Scope, "scope", opts.Scope, "scope: /, /keys or /keys/NAME")
	f.StringVar(&opts.ID, "id", opts.ID, "the assignment's GUID (default a new one)")
	return defaultPoolOptions().command(cmd, true, func([]string) error { return opts.validate() }, func(s *session, _ []string) error {
		def, err := s.resolveRole(opts.Role)
		if err != nil {
			return err
		}
		objectID, err := s.resolvePrincipal(opts.Principal)
		if err != nil {
			return err
		}
		r, err := s.client.RBAC().CreateRoleAssignment(s.ctx, opts.scope, opts.ID, rbac.RoleAssignmentCreateParameters{
			Properties: &rbac.RoleAssignmentProperties{PrincipalID: &objectID, RoleDefinitionID: def.ID}}, nil)
		if err != nil {
			return err
		}
		names := map[string]string{strings.ToLower(deref(def.Name)): deref(deref(def.Properties).RoleName)}
		return s.print(r.RoleAssignment, func(w io.Writer) error { return printRoleAssignment(w, &r.RoleAssignment, names) })
	})
}

// resolveRole finds the role definition that role names: a GUID, or a role name.
func (s *session) resolveRole(role string) (*rbac.RoleDefinition, error) {
	if isGUID(role) {
		r, err := s.client.RBAC().GetRoleDefinition(s.ctx, rbac.RoleScopeGlobal, role, nil)
		if err != nil {
			return nil, fmt.Errorf("role %s: %w", role, err)
		}
		return &r.RoleDefinition, nil
	}
	var found []*rbac.RoleDefinition
	for _, scope := range []rbac.RoleScope{rbac.RoleScopeGlobal, rbac.RoleScopeKeys} {
		defs, err := s.listRoleDefinitions(scope, to.Ptr("roleName eq '"+role+"'"))
		if err != nil {
			return nil, fmt.Errorf("find the role %q: %w", role, err)
		}
		for _, d := range defs {
			if d.ID != nil && !slices.ContainsFunc(found, func(f *rbac.RoleDefinition) bool { return deref(f.Name) == deref(d.Name) }) {
				found = append(found, d)
			}
		}
	}
	switch len(found) {
	case 0:
		return nil, withHints(fmt.Errorf("--role %q: the pool has no role of that name", role),
			`"hsmpool role definition list" lists the roles; names are exact, such as "Managed HSM Crypto User"`)
	case 1:
		return found[0], nil
	}
	var guids []string
	for _, d := range found {
		guids = append(guids, deref(d.Name))
	}
	return nil, fmt.Errorf("--role %q: %d roles have that name (%s): give the GUID", role, len(found), strings.Join(guids, ", "))
}

// resolvePrincipal returns the object ID of the principal id, an object ID or client ID of the pool's principals.
// An ID the pool does not know that is a GUID is taken as the object ID of a principal from elsewhere, with a note
// on stderr.
func (s *session) resolvePrincipal(id string) (string, error) {
	p, err := s.client.Principals().Get(s.ctx, id)
	if err == nil {
		return p.ObjectID, nil
	}
	if e, ok := client.AsError(err); ok && e.StatusCode == http.StatusNotFound && isGUID(id) {
		fmt.Fprintf(s.errOut, "hsmpool: note: %s is not one of the pool's principals; assigning to it as an object ID\n", id)
		return id, nil
	}
	return "", fmt.Errorf("find the principal %s: %w", id, err)
}

// newRoleAssignmentDeleteCmd builds "hsmpool role assignment delete".
func newRoleAssignmentDeleteCmd() *cobra.Command {
	scope := "/"
	var roleScope rbac.RoleScope
	cmd := &cobra.Command{
		Use:   "delete GUID [--scope /|/keys|/keys/NAME]",
		Short: "Delete a role assignment",
		Long: `delete deletes the role assignment GUID at the scope (default "/"; an assignment is
found only at its own scope) and prints it. The principal loses the role at once.`,
		Example: `  hsmpool role assignment delete 7a8f0b6e-1c2d-4e3f-8a9b-0c1d2e3f4a5b --scope /keys/k1`,
		Args:    guidArg("role assignment"),
	}
	cmd.Flags().StringVar(&scope, "scope", scope, "the assignment's scope: /, /keys or /keys/NAME")
	validate := func([]string) (err error) {
		roleScope, err = parseScope("--scope", scope, true)
		return err
	}
	return defaultPoolOptions().command(cmd, true, validate, func(s *session, args []string) error {
		r, err := s.client.RBAC().DeleteRoleAssignment(s.ctx, roleScope, args[0], nil)
		if err != nil {
			return err
		}
		return s.print(r.RoleAssignment, func(w io.Writer) error { return printRoleAssignment(w, &r.RoleAssignment, s.roleNames()) })
	})
}
