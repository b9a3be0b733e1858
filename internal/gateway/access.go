package gateway

import (
	"encoding/base64"
	"encoding/pem"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

// Local RBAC (azure-mhsm-api.md §5.2) and the pool's own principal management. Scopes come from
// the path: "/providers/..." is "/", "/keys/providers/..." is "/keys", and
// "/keys/{name}/providers/..." is "/keys/{name}".

const (
	roleDefinitionType = "Microsoft.Authorization/roleDefinitions"
	roleAssignmentType = "Microsoft.Authorization/roleAssignments"
	// roleDefinitionIDPrefix is how the live service spells role definition ids: no leading slash.
	roleDefinitionIDPrefix = "Microsoft.KeyVault/providers/Microsoft.Authorization/roleDefinitions/"
)

// roleScope is the scope named by the path of c's route.
func (c *call) roleScope() string {
	p := strings.ToLower(c.r.URL.Path)
	switch {
	case c.name != "":
		return "/keys/" + c.name
	case strings.Contains(p, "/keys/providers/"):
		return "/keys"
	}
	return "/"
}

type permission struct {
	Actions        []string `json:"actions"`
	NotActions     []string `json:"notActions"`
	DataActions    []string `json:"dataActions"`
	NotDataActions []string `json:"notDataActions"`
}

type roleDefinitionProperties struct {
	RoleName         string       `json:"roleName"`
	Description      string       `json:"description"`
	Type             string       `json:"type"`
	Permissions      []permission `json:"permissions"`
	AssignableScopes []string     `json:"assignableScopes"`
}

type roleDefinition struct {
	ID         string                   `json:"id"`
	Name       string                   `json:"name"`
	Type       string                   `json:"type"`
	Properties roleDefinitionProperties `json:"properties"`
}

type roleDefinitionList struct {
	Value    []roleDefinition `json:"value"`
	NextLink *string          `json:"nextLink"`
}

// nonNil keeps JSON arrays arrays: the JS client maps over every permission list.
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func toRoleDefinition(d *pb.RoleDefinition) roleDefinition {
	out := roleDefinition{ID: roleDefinitionIDPrefix + d.Name, Name: d.Name, Type: roleDefinitionType,
		Properties: roleDefinitionProperties{RoleName: d.RoleName, Description: d.Description, Type: d.RoleType,
			Permissions: []permission{}, AssignableScopes: nonNil(d.AssignableScopes)}}
	for _, p := range d.Permissions {
		out.Properties.Permissions = append(out.Properties.Permissions, permission{Actions: nonNil(p.Actions),
			NotActions: nonNil(p.NotActions), DataActions: nonNil(p.DataActions), NotDataActions: nonNil(p.NotDataActions)})
	}
	return out
}

type roleDefinitionParams struct {
	Properties *struct {
		RoleName         string       `json:"roleName"`
		Description      string       `json:"description"`
		Type             string       `json:"type"`
		Permissions      []permission `json:"permissions"`
		AssignableScopes []string     `json:"assignableScopes"`
	} `json:"properties"`
}

type roleAssignmentProperties struct {
	Scope            string `json:"scope"`
	RoleDefinitionID string `json:"roleDefinitionId"`
	PrincipalID      string `json:"principalId"`
}

type roleAssignment struct {
	ID         string                   `json:"id"`
	Name       string                   `json:"name"`
	Type       string                   `json:"type"`
	Properties roleAssignmentProperties `json:"properties"`
}

type roleAssignmentList struct {
	Value    []roleAssignment `json:"value"`
	NextLink *string          `json:"nextLink"`
}

type roleAssignmentParams struct {
	Properties *struct {
		RoleDefinitionID string `json:"roleDefinitionId"`
		PrincipalID      string `json:"principalId"`
	} `json:"properties"`
}

func toRoleAssignment(a *pb.RoleAssignment) roleAssignment {
	prefix := a.Scope
	if prefix == "/" {
		prefix = ""
	}
	return roleAssignment{ID: prefix + "/providers/Microsoft.Authorization/roleAssignments/" + a.Name, Name: a.Name,
		Type: roleAssignmentType, Properties: roleAssignmentProperties{Scope: a.Scope,
			RoleDefinitionID: roleDefinitionIDPrefix + a.RoleDefinitionId, PrincipalID: a.PrincipalId}}
}

// roleDefinitionGUID takes a roleDefinitionId in any of the forms clients send: the full id with or
// without a leading slash, or the bare GUID. The core checks the GUID.
func roleDefinitionGUID(id string) string {
	return id[strings.LastIndexByte(id, '/')+1:]
}

var (
	roleNameFilter    = regexp.MustCompile(`^\s*roleName\s+eq\s+'([^']*)'\s*$`)
	principalIDFilter = regexp.MustCompile(`(?i)^principalId\s+eq\s+'([^']*)'$`)
)

func (g *Gateway) listRoleDefinitions(c *call) (any, error) {
	req := &pb.ListRoleDefinitionsRequest{Scope: c.roleScope()}
	if f := c.query.Get("$filter"); f != "" {
		m := roleNameFilter.FindStringSubmatch(f)
		if m == nil {
			return nil, badParameter("The $filter %q is not supported: use roleName eq '<name>'.", short(f))
		}
		req.RoleName = m[1]
	}
	l, err := g.access.ListRoleDefinitions(c.ctx, req)
	if err != nil {
		return nil, err
	}
	out := roleDefinitionList{Value: make([]roleDefinition, 0, len(l.Definitions))}
	for _, d := range l.Definitions {
		out.Value = append(out.Value, toRoleDefinition(d))
	}
	return out, nil
}

func (g *Gateway) getRoleDefinition(c *call) (any, error) {
	d, err := g.access.GetRoleDefinition(c.ctx, &pb.RoleDefinitionRef{Name: c.version})
	if err != nil {
		return nil, err
	}
	return toRoleDefinition(d), nil
}

// putRoleDefinition answers 201 even when it replaces a role: the Go client accepts nothing else.
func (g *Gateway) putRoleDefinition(c *call) (any, error) {
	var p roleDefinitionParams
	if err := g.decode(c, &p); err != nil {
		return nil, err
	}
	if p.Properties == nil {
		return nil, badParameter("The properties of the role definition are required.")
	}
	def := &pb.RoleDefinition{Name: c.version, RoleName: p.Properties.RoleName, Description: p.Properties.Description,
		RoleType: p.Properties.Type, AssignableScopes: p.Properties.AssignableScopes}
	for _, q := range p.Properties.Permissions {
		def.Permissions = append(def.Permissions, &pb.Permission{Actions: q.Actions, NotActions: q.NotActions,
			DataActions: q.DataActions, NotDataActions: q.NotDataActions})
	}
	d, err := g.access.PutRoleDefinition(c.ctx, &pb.PutRoleDefinitionRequest{Scope: c.roleScope(), Definition: def})
	if err != nil {
		return nil, err
	}
	c.status = http.StatusCreated
	return toRoleDefinition(d), nil
}

func (g *Gateway) deleteRoleDefinition(c *call) (any, error) {
	d, err := g.access.DeleteRoleDefinition(c.ctx, &pb.RoleDefinitionRef{Name: c.version})
	if err != nil {
		return nil, err
	}
	return toRoleDefinition(d), nil
}

// listRoleAssignments takes the $filter forms the clients send: atScope(), principalId eq '<id>',
// and both joined by "and".
func (g *Gateway) listRoleAssignments(c *call) (any, error) {
	req := &pb.ListRoleAssignmentsRequest{Scope: c.roleScope(), PageToken: c.query.Get("$skiptoken")}
	if f := strings.TrimSpace(c.query.Get("$filter")); f != "" {
		for _, term := range regexp.MustCompile(`(?i)\s+and\s+`).Split(f, -1) {
			term = strings.TrimSpace(term)
			if strings.EqualFold(strings.ReplaceAll(term, " ", ""), "atScope()") {
				req.AtScope = true
				continue
			}
			m := principalIDFilter.FindStringSubmatch(term)
			if m == nil {
				return nil, badParameter("The $filter %q is not supported: use atScope(), principalId eq '<id>', or both joined by and.", short(f))
			}
			req.PrincipalId = m[1]
		}
	}
	l, err := g.access.ListRoleAssignments(c.ctx, req)
	if err != nil {
		return nil, err
	}
	out := roleAssignmentList{Value: make([]roleAssignment, 0, len(l.Assignments))}
	for _, a := range l.Assignments {
		out.Value = append(out.Value, toRoleAssignment(a))
	}
	if l.NextPageToken != "" {
		next := c.url() + strings.TrimSuffix(c.r.URL.EscapedPath(), "/") + "?api-version=" + url.QueryEscape(c.apiVersion) +
			"&$skiptoken=" + url.QueryEscape(l.NextPageToken)
		if f := c.query.Get("$filter"); f != "" {
			next += "&$filter=" + url.QueryEscape(f)
		}
		out.NextLink = &next
	}
	return out, nil
}

func (g *Gateway) getRoleAssignment(c *call) (any, error) {
	a, err := g.access.GetRoleAssignment(c.ctx, &pb.RoleAssignmentRef{Scope: c.roleScope(), Name: c.version})
	if err != nil {
		return nil, err
	}
	return toRoleAssignment(a), nil
}

func (g *Gateway) createRoleAssignment(c *call) (any, error) {
	var p roleAssignmentParams
	if err := g.decode(c, &p); err != nil {
		return nil, err
	}
	if p.Properties == nil {
		return nil, badParameter("The properties of the role assignment are required.")
	}
	a, err := g.access.CreateRoleAssignment(c.ctx, &pb.CreateRoleAssignmentRequest{Assignment: &pb.RoleAssignment{
		Name: c.version, Scope: c.roleScope(), RoleDefinitionId: roleDefinitionGUID(p.Properties.RoleDefinitionID),
		PrincipalId: p.Properties.PrincipalID}})
	if err != nil {
		return nil, err
	}
	c.status = http.StatusCreated
	return toRoleAssignment(a), nil
}

func (g *Gateway) deleteRoleAssignment(c *call) (any, error) {
	a, err := g.access.DeleteRoleAssignment(c.ctx, &pb.RoleAssignmentRef{Scope: c.roleScope(), Name: c.version})
	if err != nil {
		return nil, err
	}
	return toRoleAssignment(a), nil
}

// short keeps an echoed query value short.
func short(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// Principals: the pool's own API, not Azure's (Entra ID manages principals there). pkg/client
// and "hsmpool principal" use it.

type credential struct {
	ID         string `json:"id"`
	Type       string `json:"type"`
	Expires    int64  `json:"expires,omitempty"`
	Thumbprint string `json:"thumbprint,omitempty"`
	Subject    string `json:"subject,omitempty"`
	Created    int64  `json:"created,omitempty"`
}

type principal struct {
	ObjectID    string       `json:"objectId"`
	ClientID    string       `json:"clientId"`
	DisplayName string       `json:"displayName"`
	Created     int64        `json:"created,omitempty"`
	Credentials []credential `json:"credentials"`
	// SecretID and Secret are set once, in the answer that made the secret.
	SecretID string `json:"secretId,omitempty"`
	Secret   string `json:"secret,omitempty"`
}

func toPrincipal(p *pb.Principal) principal {
	out := principal{ObjectID: p.ObjectId, ClientID: p.ClientId, DisplayName: p.DisplayName, Created: p.Created,
		Credentials: make([]credential, 0, len(p.Credentials))}
	for _, cr := range p.Credentials {
		out.Credentials = append(out.Credentials, credential{ID: cr.Id, Type: cr.Type, Expires: cr.Expires,
			Thumbprint: cr.Thumbprint, Subject: cr.Subject, Created: cr.Created})
	}
	return out
}

func withSecret(p *pb.PrincipalWithSecret, err error) (principal, error) {
	if err != nil {
		return principal{}, err
	}
	out := toPrincipal(p.Principal)
	out.SecretID, out.Secret = p.SecretId, p.Secret
	return out, nil
}

func (g *Gateway) createPrincipal(c *call) (any, error) {
	var p struct {
		DisplayName   string `json:"displayName"`
		NoSecret      bool   `json:"noSecret"`
		SecretExpires int64  `json:"secretExpires"`
	}
	if err := g.decode(c, &p); err != nil {
		return nil, err
	}
	out, err := withSecret(g.principals.CreatePrincipal(c.ctx, &pb.CreatePrincipalRequest{DisplayName: p.DisplayName,
		NoSecret: p.NoSecret, SecretExpires: p.SecretExpires}))
	if err != nil {
		return nil, err
	}
	c.status = http.StatusCreated
	return out, nil
}

func (g *Gateway) listPrincipals(c *call) (any, error) {
	l, err := g.principals.ListPrincipals(c.ctx, &pb.ListPrincipalsRequest{})
	if err != nil {
		return nil, err
	}
	out := struct {
		Value []principal `json:"value"`
	}{Value: make([]principal, 0, len(l.Principals))}
	for _, p := range l.Principals {
		out.Value = append(out.Value, toPrincipal(p))
	}
	return out, nil
}

func (g *Gateway) getPrincipal(c *call) (any, error) {
	p, err := g.principals.GetPrincipal(c.ctx, &pb.PrincipalRef{ObjectId: c.name})
	if err != nil {
		return nil, err
	}
	return toPrincipal(p), nil
}

func (g *Gateway) deletePrincipal(c *call) (any, error) {
	p, err := g.principals.DeletePrincipal(c.ctx, &pb.PrincipalRef{ObjectId: c.name})
	if err != nil {
		return nil, err
	}
	return toPrincipal(p), nil
}

func (g *Gateway) addSecret(c *call) (any, error) {
	var p struct {
		Expires int64 `json:"expires"`
	}
	if err := g.decode(c, &p); err != nil {
		return nil, err
	}
	out, err := withSecret(g.principals.AddSecret(c.ctx, &pb.AddSecretRequest{ObjectId: c.name, Expires: p.Expires}))
	if err != nil {
		return nil, err
	}
	c.status = http.StatusCreated
	return out, nil
}

// addCertificate takes the certificate as PEM or as standard base64 of its DER.
func (g *Gateway) addCertificate(c *call) (any, error) {
	var p struct {
		Certificate string `json:"certificate"`
	}
	if err := g.decode(c, &p); err != nil {
		return nil, err
	}
	der, ok := certificateDER(p.Certificate)
	if !ok {
		return nil, badParameter("The certificate must be PEM or base64 DER.")
	}
	pr, err := g.principals.AddCertificate(c.ctx, &pb.AddCertificateRequest{ObjectId: c.name, Certificate: der})
	if err != nil {
		return nil, err
	}
	c.status = http.StatusCreated
	return toPrincipal(pr), nil
}

func certificateDER(s string) ([]byte, bool) {
	if b, _ := pem.Decode([]byte(s)); b != nil {
		return b.Bytes, b.Type == "CERTIFICATE"
	}
	der, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	return der, err == nil && len(der) > 0
}

func (g *Gateway) removeCredential(c *call) (any, error) {
	p, err := g.principals.RemoveCredential(c.ctx, &pb.RemoveCredentialRequest{ObjectId: c.name, CredentialId: c.version})
	if err != nil {
		return nil, err
	}
	return toPrincipal(p), nil
}
