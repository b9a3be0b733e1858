package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/hsmpool/hsmpool/internal/fault"
)

// maxBodyLen bounds token request bodies (an azidentity request is about 300 bytes).
const maxBodyLen = 64 << 10

// endpoint is one of the identity endpoints under /{tenant}/.
type endpoint int

const (
	epDiscovery endpoint = iota + 1
	epKeys
	epToken
	epAuthorize
)

// endpoints maps the path below /{tenant}/ to its endpoint.
var endpoints = map[string]endpoint{
	"v2.0/.well-known/openid-configuration": epDiscovery,
	"discovery/v2.0/keys":                   epKeys,
	"oauth2/v2.0/token":                     epToken,
	"oauth2/v2.0/authorize":                 epAuthorize,
}

// route splits an identity path into its tenant and endpoint.
func route(path string) (tenant string, ep endpoint, ok bool) {
	rest, ok := strings.CutPrefix(path, "/")
	if !ok {
		return "", 0, false
	}
	tenant, rest, ok = strings.Cut(rest, "/")
	if !ok || tenant == "" {
		return "", 0, false
	}
	ep, ok = endpoints[rest]
	return tenant, ep, ok
}

// Owns reports whether the URL path is one of the identity endpoints the handler serves, for
// any tenant: /{tenant}/v2.0/.well-known/openid-configuration, /{tenant}/discovery/v2.0/keys,
// /{tenant}/oauth2/v2.0/token and /{tenant}/oauth2/v2.0/authorize. The daemon sends these to
// the handler without the data plane's 401 challenge.
func (i *Issuer) Owns(path string) bool {
	_, _, ok := route(path)
	return ok
}

// Handler serves the identity endpoints (see Owns) and answers 404 to every other path. It
// uses no http.ServeMux, so it never redirects (client-compat §0.5).
//
//   - GET /{tenant}/v2.0/.well-known/openid-configuration: the OpenID discovery document.
//   - GET /{tenant}/discovery/v2.0/keys: the JWKS with the signing key (kid, alg ES256, use sig).
//   - POST /{tenant}/oauth2/v2.0/token: the client-credentials grant, with client_id and
//     either client_secret (in the form or in HTTP Basic) or a client_assertion of type
//     jwt-bearer signed with one of the principal's certificates (private_key_jwt, as
//     azidentity's ClientCertificateCredential sends it); scope "<resource>/.default",
//     optionally followed by "openid offline_access profile"; the token's aud is <resource>.
//     Other parameters (claims, client_info, x-client-*) are ignored.
//   - /{tenant}/oauth2/v2.0/authorize: 400, there is no interactive sign-in; it exists because
//     MSAL requires an authorization_endpoint in the discovery document.
//
// A tenant other than the pool's gets 400 with an Entra-style error naming it. Errors have the
// OAuth2 shape {"error","error_description","error_codes"} with the statuses Entra ID uses.
func (i *Issuer) Handler() http.Handler { return handler{i} }

type handler struct{ i *Issuer }

func (h handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	i := h.i
	tenant, ep, ok := route(r.URL.Path)
	if !ok {
		writeError(w, &oauthError{status: http.StatusNotFound, code: "invalid_request", desc: "no such identity endpoint"})
		return
	}
	switch ep {
	case epDiscovery, epKeys:
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeError(w, &oauthError{status: http.StatusMethodNotAllowed, code: "invalid_request", desc: "use GET"})
			return
		}
	case epToken:
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST")
			writeError(w, &oauthError{status: http.StatusMethodNotAllowed, code: "invalid_request", aad: 900561,
				desc: "the token endpoint only accepts POST requests"})
			return
		}
	}
	if !strings.EqualFold(tenant, i.tenant) {
		code := "invalid_tenant"
		if ep == epToken {
			code = "invalid_request"
		}
		writeError(w, &oauthError{status: http.StatusBadRequest, code: code, aad: 90002,
			desc: fmt.Sprintf("Tenant %s not found; this pool's tenant is %s", quoteTenant(tenant), i.tenant)})
		return
	}
	switch ep {
	case epDiscovery:
		writeJSON(w, http.StatusOK, i.discovery())
	case epKeys:
		writeJSON(w, http.StatusOK, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{i.public}})
	case epToken:
		i.serveToken(w, r)
	case epAuthorize:
		writeError(w, &oauthError{status: http.StatusBadRequest, code: "unsupported_response_type",
			desc: "this pool has no interactive sign-in; use a client credential (client_credentials grant)"})
	}
}

// quoteTenant quotes a tenant taken from a path for an error message only if it is a
// tenant ID or one of the well-known tenant names: a credential with its arguments swapped
// sends its secret as the tenant, and clients log error bodies.
func quoteTenant(t string) string {
	switch strings.ToLower(t) {
	case "common", "organizations", "consumers", "adfs":
		return "'" + t + "'"
	}
	if uuidRE.MatchString(t) {
		return "'" + t + "'"
	}
	return "(not a tenant ID)"
}

// discovery is the OpenID discovery document. MSAL requires issuer (same scheme and
// host:port as the authority), authorization_endpoint and token_endpoint; msal-node also
// requires jwks_uri.
func (i *Issuer) discovery() map[string]any {
	base := i.authority + "/" + i.tenant
	return map[string]any{
		"issuer":                                i.issuer,
		"authorization_endpoint":                base + "/oauth2/v2.0/authorize",
		"token_endpoint":                        base + "/oauth2/v2.0/token",
		"jwks_uri":                              base + "/discovery/v2.0/keys",
		"token_endpoint_auth_methods_supported": []string{"client_secret_post", "client_secret_basic", "private_key_jwt"},
		"token_endpoint_auth_signing_alg_values_supported": []string{string(jose.PS256), string(jose.RS256), string(jose.ES256)},
		"grant_types_supported":                            []string{"client_credentials"},
		"response_types_supported":                         []string{},
		"subject_types_supported":                          []string{"public"},
		"id_token_signing_alg_values_supported":            []string{string(jose.ES256)},
		"scopes_supported":                                 []string{"openid", "profile", "offline_access"},
		"claims_supported": []string{"iss", "sub", "aud", "exp", "nbf", "iat", "jti",
			"tid", "oid", "azp", "appid", "azpacr", "idtyp", "ver"},
	}
}

// oauthError is an error response of the token endpoint (RFC 6749 §5.2, with Entra ID's
// AADSTS codes where one fits).
type oauthError struct {
	status int
	code   string // "error"
	aad    int    // AADSTS number, 0 for none
	desc   string // "error_description" without the AADSTS prefix; never a credential
}

func (e *oauthError) description() string {
	if e.aad == 0 {
		return e.desc
	}
	return fmt.Sprintf("AADSTS%d: %s", e.aad, e.desc)
}

func writeError(w http.ResponseWriter, e *oauthError) {
	body := map[string]any{
		"error":             e.code,
		"error_description": e.description(),
		"timestamp":         time.Now().UTC().Format("2006-01-02 15:04:05Z"),
	}
	if e.aad != 0 {
		body["error_codes"] = []int{e.aad}
	}
	writeJSON(w, e.status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil { // only our own types are marshalled
		status, b = http.StatusInternalServerError, []byte(`{"error":"server_error"}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// tokenResponse is the client-credentials response; MSAL Go requires expires_in (or
// expires_on) and access_token.
type tokenResponse struct {
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	ExtExpiresIn int64  `json:"ext_expires_in"`
	AccessToken  string `json:"access_token"`
}

func (i *Issuer) serveToken(w http.ResponseWriter, r *http.Request) {
	req, oe := parseTokenRequest(w, r)
	defer clear(req.client.secret)
	var resp tokenResponse
	if oe == nil {
		resp, oe = i.grant(r.Context(), req)
	}
	if oe != nil {
		i.log.Warn("token request refused", "client_id", req.client.shownID(), "error", oe.code, "reason", oe.description())
		if oe.status == http.StatusUnauthorized && req.client.basic {
			w.Header().Set("WWW-Authenticate", `Basic realm="`+i.tenant+`"`)
		}
		writeError(w, oe)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// grant authenticates the client of a well-formed request and issues its token.
func (i *Issuer) grant(ctx context.Context, req tokenRequest) (tokenResponse, *oauthError) {
	p, oe := i.authenticate(ctx, req.client)
	if oe != nil {
		return tokenResponse{}, oe
	}
	tok, exp, err := i.issue(p, req.resource, req.client.kind.azpacr())
	if err != nil {
		i.log.Error("token not issued", "client_id", req.client.shownID(), "error", err)
		return tokenResponse{}, &oauthError{status: http.StatusInternalServerError, code: "server_error", desc: "the token could not be signed"}
	}
	i.log.Info("token issued", "client_id", req.client.shownID(), "oid", p.ObjectID, "aud", req.resource, "exp", exp)
	secs := int64(i.lifetime / time.Second) // exp is iat+lifetime
	return tokenResponse{TokenType: "Bearer", ExpiresIn: secs, ExtExpiresIn: secs, AccessToken: tok}, nil
}

// credentialKind is the kind of credential a token request authenticates its client with.
type credentialKind int

const (
	credNone      credentialKind = iota // no credential at all
	credSecret                          // client_secret, in the form or in HTTP Basic
	credAssertion                       // client_assertion of type jwt-bearer (private_key_jwt)
)

// azpacr is the token claim that says how the client authenticated, as Entra ID sets it:
// "1" a client secret, "2" a certificate (client assertion).
func (k credentialKind) azpacr() string {
	switch k {
	case credSecret:
		return "1"
	case credAssertion:
		return "2"
	default:
		return ""
	}
}

// clientCredential is how a token request authenticates its client: one credential of one kind.
type clientCredential struct {
	id        string // client_id; "" until known to be well formed
	kind      credentialKind
	basic     bool   // the secret came in HTTP Basic
	secret    []byte // credSecret: the client secret
	assertion string // credAssertion: the JWT
}

// shownID is the client ID as logs and error messages show it: only a UUID (the form of
// Entra application IDs and of the pool's) is shown, so that a secret pasted into client_id
// is not echoed.
func (c clientCredential) shownID() string {
	switch {
	case c.id == "":
		return ""
	case uuidRE.MatchString(c.id):
		return c.id
	default:
		return "(not a UUID)"
	}
}

// tokenRequest is a parsed client-credentials request.
type tokenRequest struct {
	client   clientCredential
	resource string // the scope without "/.default": the token's audience
}

const assertionTypeJWT = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// singleParams are the parameters that must not repeat (RFC 6749 §3.2).
var singleParams = []string{"grant_type", "client_id", "client_secret", "scope", "client_assertion", "client_assertion_type"}

// parseTokenRequest reads and checks the form of a token request. On error, the returned
// request still carries the client ID when it was well formed, for the log.
func parseTokenRequest(w http.ResponseWriter, r *http.Request) (tokenRequest, *oauthError) {
	var req tokenRequest
	invalid := func(aad int, format string, args ...any) (tokenRequest, *oauthError) {
		return req, &oauthError{status: http.StatusBadRequest, code: "invalid_request", aad: aad, desc: fmt.Sprintf(format, args...)}
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/x-www-form-urlencoded" {
		return invalid(900144, "the request body must be application/x-www-form-urlencoded")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyLen))
	defer clear(body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			req, oe := invalid(0, "the request body is larger than %d bytes", maxBodyLen)
			oe.status = http.StatusRequestEntityTooLarge
			return req, oe
		}
		return invalid(0, "the request body could not be read")
	}
	// Parameters come from the body only: a secret in the query string is not accepted.
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return invalid(900144, "the request body is not a valid form")
	}
	for _, name := range singleParams {
		if len(form[name]) > 1 {
			return invalid(90014, "the parameter '%s' is included more than once", name)
		}
	}

	// Client identification: client_id in the form and/or HTTP Basic.
	id := form.Get("client_id")
	basicUser, basicPass, hasBasic := r.BasicAuth()
	if hasBasic {
		// RFC 6749 §2.3.1: both are form-urlencoded before Basic encoding.
		u, err1 := url.QueryUnescape(basicUser)
		p, err2 := url.QueryUnescape(basicPass)
		if err1 != nil || err2 != nil {
			return invalid(0, "the HTTP Basic credentials are not form-urlencoded")
		}
		if id != "" && id != u {
			return invalid(0, "client_id in the body and in HTTP Basic differ")
		}
		id = u
		req.client.kind, req.client.basic, req.client.secret = credSecret, true, []byte(p)
	}
	if id == "" {
		return invalid(900144, "the request body must contain the parameter 'client_id'")
	}
	if len(id) > 128 || strings.ContainsFunc(id, func(r rune) bool { return r <= ' ' || r > '~' }) {
		return invalid(700038, "client_id is not a valid application identifier")
	}
	req.client.id = id

	// Client authentication: exactly one method.
	sec, hasSecret := form["client_secret"]
	assertion := form.Get("client_assertion")
	assertionType, hasAssertionType := form["client_assertion_type"]
	methods := 0
	for _, has := range []bool{hasBasic, hasSecret, assertion != "" || hasAssertionType} {
		if has {
			methods++
		}
	}
	switch {
	case methods > 1:
		return invalid(0, "the request uses more than one client authentication method")
	case hasSecret:
		req.client.kind, req.client.secret = credSecret, []byte(sec[0])
	case assertion != "" || hasAssertionType:
		if len(assertionType) != 1 || assertionType[0] != assertionTypeJWT {
			return invalid(0, "client_assertion_type must be '%s'", assertionTypeJWT)
		}
		if assertion == "" {
			return invalid(900144, "the request body must contain the parameter 'client_assertion'")
		}
		req.client.kind, req.client.assertion = credAssertion, assertion
	}

	switch gt, ok := form["grant_type"]; {
	case !ok || gt[0] == "":
		return invalid(900144, "the request body must contain the parameter 'grant_type'")
	case gt[0] != "client_credentials":
		req, oe := invalid(70003, "the grant type is not supported; this pool supports only client_credentials")
		oe.code = "unsupported_grant_type"
		return req, oe
	}

	resource, oe := parseScope(form.Get("scope"))
	if oe != nil {
		return req, oe
	}
	req.resource = resource
	return req, nil
}

// oidcScopes may follow the .default scope; MSAL adds them to every request.
var oidcScopes = map[string]bool{"openid": true, "offline_access": true, "profile": true}

// parseScope returns the resource of "<resource>/.default [openid offline_access profile]".
// The resource must be an https URL with a host (the data plane's "https://<dns-suffix>[:port]").
func parseScope(scope string) (string, *oauthError) {
	bad := func(format string, args ...any) (string, *oauthError) {
		return "", &oauthError{status: http.StatusBadRequest, code: "invalid_scope", aad: 70011, desc: fmt.Sprintf(format, args...)}
	}
	if scope == "" {
		return bad("the request body must contain the parameter 'scope'")
	}
	var resource string
	for _, s := range strings.Fields(scope) {
		if oidcScopes[s] {
			continue
		}
		r, ok := strings.CutSuffix(s, "/.default")
		if !ok {
			return bad("a client_credentials scope must be '<resource>/.default', optionally followed by 'openid offline_access profile'")
		}
		if resource != "" {
			return bad("the scope names more than one resource")
		}
		if len(r) > 256 {
			return bad("the resource is longer than 256 bytes")
		}
		u, err := url.Parse(r)
		if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
			return bad("the resource of the scope must be an https URL without query or fragment")
		}
		resource = r
	}
	if resource == "" {
		return bad("the scope must contain '<resource>/.default'")
	}
	return resource, nil
}

// authenticate finds the client and checks its credential. It is the one place that decides
// whether a client is who it says it is; each kind of credential is one case.
func (i *Issuer) authenticate(ctx context.Context, c clientCredential) (Principal, *oauthError) {
	invalidClient := func(aad int, format string, args ...any) (Principal, *oauthError) {
		return Principal{}, &oauthError{status: http.StatusUnauthorized, code: "invalid_client", aad: aad, desc: fmt.Sprintf(format, args...)}
	}
	if uuidRE.MatchString(c.id) { // GUIDs are case-insensitive; the directory stores them lowercase
		c.id = strings.ToLower(c.id)
	}
	p, err := i.dir.PrincipalByClientID(ctx, c.id)
	switch {
	case fault.Of(err) == fault.NotFound:
		return invalidClient(700016, "Application with identifier '%s' was not found in the directory '%s'", c.shownID(), i.tenant)
	case err != nil:
		i.log.Error("principal lookup failed", "client_id", c.shownID(), "error", err)
		return Principal{}, &oauthError{status: http.StatusServiceUnavailable, code: "temporarily_unavailable",
			desc: "the directory of service principals is not available; retry later"}
	case p.ClientID != c.id || p.ObjectID == "":
		i.log.Error("directory returned an inconsistent principal", "client_id", c.shownID())
		return Principal{}, &oauthError{status: http.StatusInternalServerError, code: "server_error",
			desc: "the directory returned an inconsistent principal"}
	}
	switch c.kind {
	case credAssertion:
		if len(p.Certificates) == 0 {
			return invalidClient(700027, "the application '%s' has no certificate credential; use a client secret", c.shownID())
		}
		if oe := i.checkAssertion(p, c.id, c.assertion); oe != nil {
			return Principal{}, oe
		}
		return p, nil
	case credSecret:
		switch checkSecret(p, c.secret, i.now()) {
		case secretValid:
			return p, nil
		case secretExpired:
			return invalidClient(7000222, "The provided client secret keys for app '%s' are expired", c.shownID())
		default:
			return invalidClient(7000215, "Invalid client secret provided")
		}
	default:
		return invalidClient(7000218, "The request body must contain the following parameter: 'client_assertion' or 'client_secret'")
	}
}
