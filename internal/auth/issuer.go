package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/cryptosigner"
	"github.com/go-jose/go-jose/v4/jwt"
	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/hsmpool/hsmpool/internal/fault"
)

const (
	// DefaultLifetime is the lifetime of access tokens when IssuerConfig.Lifetime is zero.
	DefaultLifetime = time.Hour
	// MinLifetime is the shortest lifetime allowed: MSAL treats a token that expires within
	// 5 minutes as stale and would ask for a new one on every request.
	MinLifetime = 10 * time.Minute
	// MaxLifetime is the longest lifetime allowed.
	MaxLifetime = 24 * time.Hour

	// skew is the clock difference Validate tolerates on exp, nbf and iat.
	skew = time.Minute
	// maxTokenLen bounds the tokens Validate parses; the pool's are well under 1 KiB.
	maxTokenLen = 8 << 10
)

// IssuerConfig configures an Issuer.
type IssuerConfig struct {
	// AuthorityHost is the scheme, host and port of the pool as the credentials are told it
	// ("https://127.0.0.1:8443"), with no path. Tokens' issuer is AuthorityHost/<tenant>/v2.0.
	// MSAL compares the issuer's host:port with the authority string literally, so clients
	// must use exactly this host and port (an explicit ":443" counts as different).
	AuthorityHost string
	// TenantID is the pool's tenant, a UUID; it is stored in lowercase.
	TenantID string
	// Signer signs the access tokens: ECDSA P-256 (ES256). The daemon owns its storage.
	Signer crypto.Signer
	// KeyID is the "kid" of the signing key; empty means its RFC 7638 JWK thumbprint.
	KeyID string
	// Lifetime of access tokens; zero means DefaultLifetime. MinLifetime..MaxLifetime.
	Lifetime time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives one record per token issued or refused (never the secret or token);
	// nil discards them.
	Logger *slog.Logger
	// External are the OpenID Connect issuers whose access tokens Validate accepts besides
	// the pool's; see ExternalIssuer.
	External []ExternalIssuer
}

// Issuer issues and validates the pool's access tokens. See the package doc.
type Issuer struct {
	authority string // AuthorityHost without a trailing slash
	tenant    string
	issuer    string // authority/tenant/v2.0
	keyID     string
	signer    jose.Signer
	public    jose.JSONWebKey // public key with kid, alg and use, as published
	lifetime  time.Duration
	now       func() time.Time
	log       *slog.Logger
	dir       Directory
	valid     *lru.Cache[[sha256.Size]byte, validToken] // tokens that passed validate
	external  map[string]*external                      // trusted external issuers by iss
	algs      []jose.SignatureAlgorithm                 // of tokens Validate parses
	replay    *replayCache                              // jtis of client assertions
}

// validToken is a token that passed validate, as its cache keeps it.
type validToken struct {
	claims   Claims
	external *external // nil for the pool's own tokens
}

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// NewIssuer checks cfg and returns an issuer that finds principals in dir. It signs a probe
// once to prove that the signer works and matches its public key.
func NewIssuer(cfg IssuerConfig, dir Directory) (*Issuer, error) {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("new issuer: %s: %s: %w", field, fmt.Sprintf(format, args...), fault.BadParameter)
	}
	if dir == nil {
		return nil, bad("Directory", "missing")
	}
	authority, err := parseAuthorityHost(cfg.AuthorityHost)
	if err != nil {
		return nil, bad("AuthorityHost", "%v", err)
	}
	if !uuidRE.MatchString(cfg.TenantID) {
		return nil, bad("TenantID", "%q is not a UUID", cfg.TenantID)
	}
	if cfg.Signer == nil {
		return nil, bad("Signer", "missing")
	}
	pub, ok := cfg.Signer.Public().(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, bad("Signer", "key is %T, want an ECDSA P-256 key", cfg.Signer.Public())
	}
	lifetime := cfg.Lifetime
	if lifetime == 0 {
		lifetime = DefaultLifetime
	}
	if lifetime < MinLifetime || lifetime > MaxLifetime {
		return nil, bad("Lifetime", "%v is outside %v..%v", lifetime, MinLifetime, MaxLifetime)
	}
	keyID := cfg.KeyID
	if keyID == "" {
		tp, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
		if err != nil {
			return nil, bad("Signer", "thumbprint of the public key: %v", err)
		}
		keyID = base64.RawURLEncoding.EncodeToString(tp)
	} else if len(keyID) > 128 || strings.ContainsFunc(keyID, func(r rune) bool { return r <= ' ' || r > '~' }) {
		return nil, bad("KeyID", "must be at most 128 printable ASCII characters without spaces")
	}
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.ES256, Key: cryptosigner.Opaque(cfg.Signer)},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader(jose.HeaderKey("kid"), keyID),
	)
	if err != nil {
		return nil, bad("Signer", "%v", err)
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tenant := strings.ToLower(cfg.TenantID)
	i := &Issuer{
		authority: authority,
		tenant:    tenant,
		issuer:    authority + "/" + tenant + "/v2.0",
		keyID:     keyID,
		signer:    signer,
		public:    jose.JSONWebKey{Key: pub, KeyID: keyID, Algorithm: string(jose.ES256), Use: "sig"},
		lifetime:  lifetime,
		now:       now,
		log:       log,
		dir:       dir,
		algs:      []jose.SignatureAlgorithm{jose.ES256},
		replay:    newReplayCache(replayCacheSize),
	}
	i.valid, _ = lru.New[[sha256.Size]byte, validToken](validCacheSize) // fails only for a size < 1
	for k, e := range cfg.External {
		x, err := newExternal(e, i.issuer, now)
		if err != nil {
			return nil, bad(fmt.Sprintf("External[%d]", k), "%v", err)
		}
		if _, dup := i.external[x.issuer]; dup {
			return nil, bad(fmt.Sprintf("External[%d]", k), "issuer %q is listed twice", x.issuer)
		}
		if i.external == nil {
			i.external = map[string]*external{}
			i.algs = append(i.algs, jose.RS256, jose.PS256)
		}
		i.external[x.issuer] = x
	}
	if err := i.probe(); err != nil {
		return nil, fmt.Errorf("new issuer: %w", err)
	}
	return i, nil
}

// parseAuthorityHost accepts https://host[:port] with at most a trailing slash.
func parseAuthorityHost(s string) (string, error) {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return "", fmt.Errorf("%q is not a URL", s)
	case u.Scheme != "https":
		return "", fmt.Errorf("%q must be https://host[:port] (the Azure credentials refuse plain http)", s)
	case u.Host == "" || u.Hostname() == "" || u.User != nil || u.Opaque != "" || (u.Path != "" && u.Path != "/") ||
		u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return "", fmt.Errorf("%q must be https://host[:port] with no path, query or fragment", s)
	}
	return "https://" + u.Host, nil
}

// probe signs a token with the signer and validates it, so that a broken signer or one whose
// Public() does not match its private key is found at start rather than by the first client.
func (i *Issuer) probe() error {
	const aud = "urn:hsmpool:probe"
	tok, _, err := i.issue(Principal{ObjectID: "probe", ClientID: "probe"}, aud, "")
	if err != nil {
		return fmt.Errorf("signer: %w", err)
	}
	if _, err := i.Validate(context.Background(), tok, aud); err != nil {
		return fmt.Errorf("signer does not match its public key: %w", err)
	}
	return nil
}

// Issuer returns the "iss" of the pool's tokens: AuthorityHost/<tenant>/v2.0.
func (i *Issuer) Issuer() string { return i.issuer }

// TenantID returns the pool's tenant, in lowercase.
func (i *Issuer) TenantID() string { return i.tenant }

// Challenge is the WWW-Authenticate value of the 401 the data plane sends before anything
// else (client-compat §2): Bearer authorization="<AuthorityHost>/<tenant>", resource="<resource>".
// resource is the data plane's "https://<dns-suffix>[:port]" (without ":443"); the Go and
// Python SDKs require the vault host to end with "."+its host:port.
func (i *Issuer) Challenge(resource string) string {
	return `Bearer authorization="` + i.authority + "/" + i.tenant + `", resource="` + resource + `"`
}

// tokenClaims are the claims of the pool's access tokens beyond the registered ones, named as
// in Entra ID v2.0 access tokens.
type tokenClaims struct {
	TenantID        string `json:"tid"`
	ObjectID        string `json:"oid"`
	AuthorizedParty string `json:"azp"`
	AppID           string `json:"appid"`
	AuthMethod      string `json:"azpacr,omitempty"`
	IDType          string `json:"idtyp"`
	Version         string `json:"ver"`
}

// issue mints an access token for p with audience aud. authMethod is the azpacr value.
func (i *Issuer) issue(p Principal, aud, authMethod string) (string, time.Time, error) {
	now := i.now().Truncate(time.Second)
	exp := now.Add(i.lifetime)
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", time.Time{}, fmt.Errorf("issue token: %w", err)
	}
	reg := jwt.Claims{
		Issuer:    i.issuer,
		Subject:   p.ObjectID,
		Audience:  jwt.Audience{aud},
		Expiry:    jwt.NewNumericDate(exp),
		NotBefore: jwt.NewNumericDate(now),
		IssuedAt:  jwt.NewNumericDate(now),
		ID:        base64.RawURLEncoding.EncodeToString(jti[:]),
	}
	ext := tokenClaims{
		TenantID:        i.tenant,
		ObjectID:        p.ObjectID,
		AuthorizedParty: p.ClientID,
		AppID:           p.ClientID,
		AuthMethod:      authMethod,
		IDType:          "app",
		Version:         "2.0",
	}
	tok, err := jwt.Signed(i.signer).Claims(reg).Claims(ext).Serialize()
	if err != nil {
		return "", time.Time{}, fmt.Errorf("issue token: sign: %w", err)
	}
	return tok, exp, nil
}

// Claims of a validated access token.
type Claims struct {
	Issuer string // iss: the pool's (Issuer.Issuer) or a trusted external issuer's
	// External is true for a token of a trusted external issuer (IssuerConfig.External):
	// its ObjectID is that issuer's oid, not necessarily a principal of the pool.
	External bool
	ObjectID string // oid: the principal, as in role assignments
	ClientID string // azp/appid; may be empty for an external issuer's token
	TenantID string // tid; may be empty for an external issuer's token
	Audience string // aud: the resource the token was issued for
	Expiry   time.Time
	// NotBefore is nbf (zero if an external token has none); Validate checks it again when it
	// answers from its cache.
	NotBefore time.Time
}

// Validate checks an access token: a compact JWS with alg ES256 and the pool's key ID, a valid
// signature, the pool's issuer and tenant, exactly one audience which is one of audiences,
// and exp/nbf/iat present and within one minute of skew. Every failure is fault.Unauthorized
// with a message that says what was wrong and never contains the token.
//
// A token whose iss is a trusted external issuer's (IssuerConfig.External) is checked
// against that issuer instead, see ExternalIssuer: its audiences replace audiences. ctx
// bounds the fetch of an external issuer's JWKS; the pool's own key is at hand.
func (i *Issuer) Validate(ctx context.Context, token string, audiences ...string) (Claims, error) {
	// A valid token's signature, issuer, tenant and type never change, so a token seen before
	// needs only its times and audience checked again: the ECDSA verification and JSON
	// parsing cost more than a P-256 signature in the HSM. Only valid tokens are cached,
	// keyed by their SHA-256, and the cache is bounded.
	sum := sha256.Sum256([]byte(token))
	if v, ok := i.valid.Get(sum); ok {
		now := i.now()
		c, accept := v.claims, audiences
		if v.external != nil {
			accept = v.external.audiences
		}
		if len(audiences) > 0 && slices.Contains(accept, c.Audience) && !now.Before(c.NotBefore.Add(-skew)) && now.Before(c.Expiry.Add(skew)) {
			return c, nil
		}
		i.valid.Remove(sum)
	}
	v, err := i.validate(ctx, token, audiences)
	if err != nil {
		return Claims{}, err
	}
	i.valid.Add(sum, v)
	return v.claims, nil
}

// validCacheSize bounds the cache of valid tokens (about 200 bytes each).
const validCacheSize = 8192

func (i *Issuer) validate(ctx context.Context, token string, audiences []string) (validToken, error) {
	fail := func(format string, args ...any) (validToken, error) {
		return validToken{}, fmt.Errorf("validate token: %s: %w", fmt.Sprintf(format, args...), fault.Unauthorized)
	}
	if len(audiences) == 0 {
		return fail("no accepted audience given")
	}
	switch {
	case token == "":
		return fail("token is empty")
	case len(token) > maxTokenLen:
		return fail("token is longer than %d bytes", maxTokenLen)
	}
	jws, err := jose.ParseSignedCompact(token, i.algs)
	if err != nil {
		return fail("not a compact JWS signed with %s", algNames(i.algs))
	}
	if len(jws.Signatures) != 1 {
		return fail("token has %d signatures, want 1", len(jws.Signatures))
	}
	// The unverified iss only chooses whose rules apply; the external issuer's checks start
	// with its signature.
	if len(i.external) > 0 {
		iss := unverifiedIssuer(jws)
		if e, ok := i.external[iss]; ok {
			c, err := i.validateExternal(ctx, e, jws)
			if err != nil {
				return validToken{}, err
			}
			return validToken{claims: c, external: e}, nil
		}
		if iss != i.issuer {
			return fail("the issuer is neither this pool's nor a trusted external issuer")
		}
	}
	if jws.Signatures[0].Header.Algorithm != string(jose.ES256) {
		return fail("not a compact JWS signed with ES256")
	}
	key, err := i.verificationKey(ctx, jws.Signatures[0].Header.KeyID)
	if err != nil {
		if unverifiedIssuer(jws) != i.issuer {
			return fail("the issuer is neither this pool's nor a trusted external issuer")
		}
		return validToken{}, fmt.Errorf("validate token: %w", err)
	}
	payload, err := jws.Verify(key)
	if err != nil {
		return fail("signature is not valid")
	}
	var reg jwt.Claims
	var ext tokenClaims
	if json.Unmarshal(payload, &reg) != nil || json.Unmarshal(payload, &ext) != nil {
		return fail("claims are malformed")
	}
	// The signature is the pool's from here on, so claim values may be named in errors.
	if reg.Issuer != i.issuer {
		return fail("issuer %q is not %q", reg.Issuer, i.issuer)
	}
	if ext.IDType != "app" || ext.Version != "2.0" {
		// Bind the check to access tokens: a later JWT type signed with the pool's key
		// (attestation statements, say) must not pass as one.
		return fail("not an access token of this pool (idtyp %q, ver %q)", ext.IDType, ext.Version)
	}
	if ext.TenantID != i.tenant {
		return fail("tenant %q is not %q", ext.TenantID, i.tenant)
	}
	if len(reg.Audience) != 1 {
		return fail("token has %d audiences, want 1", len(reg.Audience))
	}
	if reg.Expiry == nil || reg.NotBefore == nil || reg.IssuedAt == nil {
		return fail("token lacks exp, nbf or iat")
	}
	now := i.now()
	err = reg.ValidateWithLeeway(jwt.Expected{AnyAudience: audiences, Time: now}, skew)
	switch {
	case errors.Is(err, jwt.ErrInvalidAudience):
		return fail("audience %q is not one of %q", reg.Audience[0], audiences)
	case errors.Is(err, jwt.ErrExpired):
		return fail("token expired at %s", reg.Expiry.Time().UTC().Format(time.RFC3339))
	case errors.Is(err, jwt.ErrNotValidYet):
		return fail("token is not valid before %s", reg.NotBefore.Time().UTC().Format(time.RFC3339))
	case errors.Is(err, jwt.ErrIssuedInTheFuture):
		return fail("token is issued in the future (%s)", reg.IssuedAt.Time().UTC().Format(time.RFC3339))
	case err != nil:
		return fail("claims are not valid")
	}
	if ext.ObjectID == "" || reg.Subject != ext.ObjectID || ext.AuthorizedParty == "" || ext.AppID != ext.AuthorizedParty {
		return fail("token lacks a consistent oid, sub, azp and appid")
	}
	return validToken{claims: Claims{
		Issuer:    i.issuer,
		ObjectID:  ext.ObjectID,
		ClientID:  ext.AuthorizedParty,
		TenantID:  ext.TenantID,
		Audience:  reg.Audience[0],
		Expiry:    reg.Expiry.Time(),
		NotBefore: reg.NotBefore.Time(),
	}}, nil
}

// unverifiedIssuer is the iss of a token before its signature is checked, or "".
func unverifiedIssuer(jws *jose.JSONWebSignature) string {
	var c struct {
		Issuer string `json:"iss"`
	}
	if json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &c) != nil {
		return ""
	}
	return c.Issuer
}

func algNames(algs []jose.SignatureAlgorithm) string {
	s := make([]string, len(algs))
	for k, a := range algs {
		s[k] = string(a)
	}
	return strings.Join(s, ", ")
}

// verificationKey returns the key that must have signed a pool token with key ID kid. Only
// the pool's own key exists today; key rotation (previous keys) slots in here. External
// issuers' keys come from their JWKS (validateExternal).
func (i *Issuer) verificationKey(_ context.Context, kid string) (crypto.PublicKey, error) {
	if kid != i.keyID {
		return nil, fmt.Errorf("key id is not the pool's signing key: %w", fault.Unauthorized)
	}
	return i.public.Key, nil
}
