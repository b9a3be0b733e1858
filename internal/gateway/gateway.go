package gateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/hsmpool/hsmpool/internal/audit"
	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

// Config is what the gateway needs; the daemon fills it in.
type Config struct {
	Keys           pb.KeysClient
	SecurityDomain pb.SecurityDomainClient
	Pool           pb.PoolClient
	Access         pb.AccessClient
	Principals     pb.PrincipalsClient
	// Backup serves full backup and restore; nil: those paths answer that the pool has none.
	Backup pb.BackupClient
	// Cluster makes join tokens; nil: POST /cluster/join-tokens answers that the pool has none.
	Cluster pb.ClusterClient
	// Identity serves the identity provider's endpoints (OIDC discovery, JWKS, token); it and
	// OwnsIdentity are both set or both nil.
	Identity http.Handler
	// OwnsIdentity reports whether a URL path belongs to Identity; those paths get no challenge.
	OwnsIdentity func(path string) bool
	// Challenge returns the WWW-Authenticate value of a 401 for the resource. New calls it once.
	Challenge func(resource string) string
	// Resource is the data plane's resource, "https://<dns-suffix>[:port]" without a trailing
	// slash (the Go SDK would ask for a token of scope "<resource>//.default").
	Resource string
	// MaxBodyBytes bounds request bodies; 0 means 256 KiB.
	MaxBodyBytes int64
	// Logger gets one Debug line per request; nil discards.
	Logger *slog.Logger
	// Audit, when set, records the requests the gateway refuses before they reach the core
	// (no token, no such path, bad query); the core audits every other.
	Audit Auditor
}

// Auditor records audit entries (internal/audit.Log).
type Auditor interface {
	Record(e audit.Entry) error
}

const defaultMaxBody = 256 << 10

// latestAPIVersion is the newest stable api-version, named in the error for an unknown one.
const latestAPIVersion = "2025-07-01"

// apiVersions are those the SDKs and CLIs send (client-compat.md §3); the gateway serves them all
// as one superset.
var apiVersions = map[string]bool{
	"7.0": true, "7.1": true, "7.2": true, "7.3": true, "7.4": true, "7.5": true, "7.6": true,
	"7.2-preview": true, "7.3-preview": true, "7.4-preview.1": true, "7.6-preview.1": true, "7.6-preview.2": true,
	"2025-06-01-preview": true, "2025-07-01": true, "2026-01-01-preview": true,
}

// Gateway is the http.Handler of the Azure REST surface.
type Gateway struct {
	keys         pb.KeysClient
	sd           pb.SecurityDomainClient
	pool         pb.PoolClient
	access       pb.AccessClient
	principals   pb.PrincipalsClient
	backup       pb.BackupClient
	cluster      pb.ClusterClient
	identity     http.Handler
	ownsIdentity func(string) bool
	challenge    string
	maxBody      int64
	log          *slog.Logger
	audit        Auditor
}

// New checks cfg and returns the gateway.
func New(cfg Config) (*Gateway, error) {
	switch {
	case cfg.Keys == nil:
		return nil, errors.New("gateway config: Keys is required")
	case cfg.SecurityDomain == nil:
		return nil, errors.New("gateway config: SecurityDomain is required")
	case cfg.Pool == nil:
		return nil, errors.New("gateway config: Pool is required")
	case cfg.Access == nil || cfg.Principals == nil:
		return nil, errors.New("gateway config: Access and Principals are required")
	case (cfg.Identity == nil) != (cfg.OwnsIdentity == nil):
		return nil, errors.New("gateway config: Identity and OwnsIdentity must be set together")
	case cfg.Challenge == nil:
		return nil, errors.New("gateway config: Challenge is required")
	case cfg.MaxBodyBytes < 0:
		return nil, fmt.Errorf("gateway config: MaxBodyBytes %d is negative", cfg.MaxBodyBytes)
	}
	u, err := url.Parse(cfg.Resource)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.Path != "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("gateway config: Resource %q is not https://host[:port] without a path", cfg.Resource)
	}
	g := &Gateway{
		keys:         cfg.Keys,
		sd:           cfg.SecurityDomain,
		pool:         cfg.Pool,
		access:       cfg.Access,
		principals:   cfg.Principals,
		backup:       cfg.Backup,
		cluster:      cfg.Cluster,
		identity:     cfg.Identity,
		ownsIdentity: cfg.OwnsIdentity,
		challenge:    cfg.Challenge(cfg.Resource),
		maxBody:      cfg.MaxBodyBytes,
		log:          cfg.Logger,
		audit:        cfg.Audit,
	}
	if g.challenge == "" {
		return nil, errors.New("gateway config: Challenge returned an empty challenge")
	}
	if g.maxBody == 0 {
		g.maxBody = defaultMaxBody
	}
	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
	}
	return g, nil
}

// call is one request on its way through the gateway.
type call struct {
	w     http.ResponseWriter
	r     *http.Request
	ctx   context.Context // the request's context with the outgoing gRPC metadata
	id    string          // x-ms-request-id
	route string
	// status is the success status a handler answers with (200 unless it says otherwise); after
	// the answer, the status sent.
	status        int
	apiVersion    string
	query         url.Values
	name, version string        // path parameters
	bodyBuf       *bytes.Buffer // the request body, in a buffer from bufPool
	err           error
	errCode       string // the Azure code answered with err
	// open tells whether the route needs no token; reached, whether the request was handed to a
	// handler. The core audits what it sees; the gateway audits the rest: requests refused before
	// a handler, and by a handler before the core (errors of type *apiError).
	open, reached bool
}

// Header values every answer carries. They are shared, so never modified in place (Header.Set
// and Add replace or extend a value slice; they do not write into it).
var (
	hdrLocal   = []string{"local"}
	hdrNoCache = []string{"no-cache"}
	hdrNoSniff = []string{"nosniff"}
	hdrJSON    = []string{"application/json; charset=utf-8"}
)

// ServeHTTP serves one request, checking it in the order the package documentation gives.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if g.ownsIdentity != nil && g.ownsIdentity(r.URL.Path) {
		g.identity.ServeHTTP(w, r)
		return
	}
	c := &call{w: w, r: r, id: newRequestID(), route: "-", status: http.StatusOK}
	// Set by their canonical names, without Header.Set's canonicalization and allocations: these
	// headers are on every answer.
	h := w.Header()
	h["X-Ms-Request-Id"] = []string{c.id}
	h["X-Ms-Keyvault-Region"] = hdrLocal
	h["Cache-Control"] = hdrNoCache
	h["X-Content-Type-Options"] = hdrNoSniff
	if id := r.Header["X-Ms-Client-Request-Id"]; len(id) > 0 && id[0] != "" && len(id[0]) <= 256 {
		h["X-Ms-Client-Request-Id"] = []string{id[0]}
	}
	start := time.Now()
	g.serve(c)
	if c.bodyBuf != nil {
		putBuffer(c.bodyBuf) // wipes the body
	}
	if g.audit != nil && !c.open && (!c.reached || errors.As(c.err, new(*apiError))) {
		g.auditRefusal(c, start)
	}
	if !g.log.Enabled(r.Context(), slog.LevelDebug) {
		return
	}
	attrs := []slog.Attr{
		slog.String("method", r.Method), slog.String("route", c.route), slog.Int("status", c.status),
		slog.Duration("duration", time.Since(start)), slog.String("request_id", c.id),
	}
	if c.err != nil {
		attrs = append(attrs, slog.String("error", c.err.Error()))
	}
	g.log.LogAttrs(r.Context(), slog.LevelDebug, "request", attrs...)
}

func (g *Gateway) serve(c *call) {
	rt, allow, found := match(c, c.r.Method, c.r.URL.EscapedPath())
	if rt != nil {
		c.route, c.open = rt.name, rt.open
	}
	md := metadata.MD{"x-ms-request-id": {c.id}, "x-client-ip": {clientIP(c.r.RemoteAddr)}}
	if rt == nil || !rt.open {
		h := c.r.Header.Get("Authorization")
		tok, ok := bearer(h)
		if !ok {
			g.writeError(c, errNoToken)
			return
		}
		if len(h) != len("Bearer ")+len(tok) || !strings.HasPrefix(h, "Bearer ") {
			h = "Bearer " + tok // the usual header is already that: no copy of the token then
		}
		md["authorization"] = []string{h}
		if err := c.parseQuery(); err != nil {
			g.writeError(c, err)
			return
		}
	}
	switch {
	case !found:
		g.writeError(c, newError(http.StatusNotFound, "NotFound", "There is no %s operation at this path.", c.r.Method))
		return
	case rt == nil:
		c.w.Header().Set("Allow", strings.Join(allow, ", "))
		g.writeError(c, newError(http.StatusMethodNotAllowed, "BadParameter", "Method %s is not allowed here; use %s.", c.r.Method, strings.Join(allow, " or ")))
		return
	}
	c.reached = !rt.open
	c.ctx = metadata.NewOutgoingContext(c.r.Context(), md)
	body, err := rt.serve(g, c)
	if err != nil {
		g.writeError(c, err)
		return
	}
	g.writeJSON(c, c.status, body)
}

// auditRefusal records a request refused before it reached the core. Nothing identifies the
// caller yet: the token, if any, was not checked.
func (g *Gateway) auditRefusal(c *call, start time.Time) {
	op := c.route
	if op == "-" {
		op = "Unrouted"
	}
	e := audit.Entry{Time: start, RequestID: c.id, ClientIP: clientIP(c.r.RemoteAddr), Operation: op, Key: c.name,
		Outcome: audit.OutcomeFailed, Status: c.status, ErrorCode: c.errCode, Duration: time.Since(start).Microseconds()}
	if c.status == http.StatusUnauthorized {
		e.Outcome = audit.OutcomeDenied
	}
	if err := g.audit.Record(e); err != nil {
		g.log.LogAttrs(c.r.Context(), slog.LevelError, "audit record failed", slog.String("request_id", c.id), slog.String("error", err.Error()))
	}
}

// clientIP is the host part of a request's remote address, for the audit log.
func clientIP(remote string) string {
	if h, _, err := net.SplitHostPort(remote); err == nil {
		return h
	}
	return remote
}

// parseQuery reads the query and checks api-version. url.ParseQuery decodes names too, which JS
// needs (it sends "api%2Dversion").
func (c *call) parseQuery() error {
	if v, ok := onlyAPIVersion(c.r.URL.RawQuery); ok {
		c.apiVersion = v // c.query stays nil, which reads as empty
	} else {
		q, err := url.ParseQuery(c.r.URL.RawQuery)
		if err != nil {
			return badParameter("The query string is malformed.")
		}
		c.query = q
		c.apiVersion = q.Get("api-version")
	}
	switch {
	case c.apiVersion == "":
		return badParameter("The api-version query parameter is required. Consider using the latest supported version (%s).", latestAPIVersion)
	case !apiVersions[c.apiVersion]:
		shown := c.apiVersion
		if len(shown) > 40 { // it is echoed: keep a garbage value from filling the answer
			shown = shown[:40] + "..."
		}
		return badParameter("The specified version (%s) is not recognized. Consider using the latest supported version (%s).", shown, latestAPIVersion)
	}
	return nil
}

// onlyAPIVersion returns the value of a query that is "api-version=VALUE" and nothing else, with
// nothing in VALUE that url.ParseQuery would decode or refuse: the query of most requests, read
// without building url.Values.
func onlyAPIVersion(q string) (string, bool) {
	v, ok := strings.CutPrefix(q, "api-version=")
	if !ok || strings.ContainsAny(v, "%+&;") {
		return "", false
	}
	return v, true
}

// bearer returns the token of an "Authorization: Bearer <token>" value. It refuses tokens that
// gRPC metadata cannot carry, which would otherwise fail later as an internal error.
func bearer(h string) (string, bool) {
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	for i := 0; i < len(tok); i++ {
		if tok[i] <= ' ' || tok[i] > '~' {
			return "", false
		}
	}
	return tok, tok != ""
}

// decode reads the body into v, which must be a pointer to a struct. Unknown fields are ignored,
// as Azure does; a known field of the wrong type is an error that names it.
func (g *Gateway) decode(c *call, v any) error {
	body, err := g.readBody(c)
	if err != nil {
		return err
	}
	return decodeJSON(body, v)
}

// decodeKeyOp is decode for the key operations' body, through parseKeyOp when it can.
func (g *Gateway) decodeKeyOp(c *call, p *keyOpParams) error {
	body, err := g.readBody(c)
	if err != nil {
		return err
	}
	if parseKeyOp(body, p) {
		return nil
	}
	return decodeJSON(body, p)
}

// readBody reads the body, at most g.maxBody bytes, into a pooled buffer that ServeHTTP wipes
// and returns when the request is answered.
func (g *Gateway) readBody(c *call) ([]byte, error) {
	c.bodyBuf = getBuffer()
	_, err := c.bodyBuf.ReadFrom(http.MaxBytesReader(c.w, c.r.Body, g.maxBody))
	if err != nil {
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			return nil, newError(http.StatusRequestEntityTooLarge, "BadParameter", "The request body is larger than %d bytes.", g.maxBody)
		}
		return nil, badParameter("The request body could not be read.")
	}
	return c.bodyBuf.Bytes(), nil
}

func decodeJSON(body []byte, v any) error {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 {
		return badParameter("The request body is required: a JSON object.")
	}
	if trimmed[0] != '{' {
		return badParameter("The request body must be a JSON object.")
	}
	err := json.Unmarshal(body, v)
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &te) && te.Type == b64Type && te.Value == "string":
		return badParameter("The field %q is not valid base64url.", te.Field)
	case errors.As(err, &te):
		return badParameter("The field %q has a JSON %s where %s is expected.", te.Field, te.Value, jsonTypeName(te.Type))
	case errors.As(err, &se):
		return badParameter("The request body is not valid JSON (at byte %d).", se.Offset)
	}
	return badParameter("The request body is not valid JSON.")
}

// writeJSON answers with status and v as JSON, or with no body when v is nil.
func (g *Gateway) writeJSON(c *call, status int, v any) {
	c.status = status
	if v == nil {
		c.w.WriteHeader(status)
		return
	}
	buf := getBuffer()
	defer putBuffer(buf)
	if a, ok := v.(jsonAppender); ok {
		buf.Write(a.appendJSON(buf.AvailableBuffer()))
	} else {
		enc := json.NewEncoder(buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(v); err != nil {
			// Only a bug gets here (every model marshals); the error writer itself must not recurse.
			c.status, c.err = http.StatusInternalServerError, fmt.Errorf("encode response: %w", err)
			buf.Reset()
			buf.WriteString(`{"error":{"code":"InternalServerError","message":"the response could not be encoded"}}`)
		}
	}
	c.w.Header()["Content-Type"] = hdrJSON
	c.w.WriteHeader(c.status)
	_, _ = c.w.Write(buf.Bytes())
}

// jsonAppender is a model with a hand-written encoding, which must equal encoding/json's.
type jsonAppender interface {
	appendJSON([]byte) []byte
}

// bufPool holds the buffers of request and answer bodies. Both may carry key material
// (an import, a decryption's plaintext), so putBuffer wipes what a buffer held.
var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxPooled keeps the buffer of a rare large body (a backup, a big import) out of the pool.
const maxPooled = 64 << 10

func getBuffer() *bytes.Buffer { return bufPool.Get().(*bytes.Buffer) }

func putBuffer(b *bytes.Buffer) {
	clear(b.Bytes())
	b.Reset()
	if b.Cap() <= maxPooled {
		bufPool.Put(b)
	}
}

// newRequestID returns a random (version 4) UUID. It runs on every request, hence no fmt.
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails: crypto/rand.Read panics instead
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var out [36]byte
	hex.Encode(out[0:8], b[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], b[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], b[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], b[8:10])
	out[23] = '-'
	hex.Encode(out[24:], b[10:])
	return string(out[:])
}

// url returns the absolute URL of a path on this pool, as the client addressed it.
func (c *call) url(segments ...string) string {
	n := len("https://") + len(c.r.Host)
	for _, s := range segments {
		n += 1 + len(s)
	}
	var sb strings.Builder
	sb.Grow(n) // one allocation unless a segment needs escaping
	sb.WriteString("https://")
	sb.WriteString(c.r.Host)
	for _, s := range segments {
		sb.WriteByte('/')
		sb.WriteString(url.PathEscape(s))
	}
	return sb.String()
}
