// Package auth makes the pool its own single-tenant identity provider, enough for the stock
// Azure credentials (Go azidentity and JS @azure/identity ClientSecretCredential and
// ClientCertificateCredential) to obtain access tokens from it, and for the data plane to
// check those tokens and, optionally, tokens of trusted external OpenID Connect issuers.
//
// An [Issuer] serves, under /{tenant}/, the OpenID discovery document, the JWKS with its
// public key, and an OAuth2 token endpoint for the client-credentials grant; see
// [Issuer.Handler]. Service principals are found through a [Directory] that the daemon
// implements over the replicated state. [Issuer.Validate] checks an access token and
// [Issuer.Challenge] is the WWW-Authenticate value that makes the Azure SDKs come here for one.
//
// Wire details follow spec/client-compat.md §2 and §4: the issuer is
// AuthorityHost/<tenant>/v2.0 (MSAL compares its scheme and host:port with the authority the
// client was configured with), the token response carries expires_in, and the scope is
// "<resource>/.default", optionally followed by "openid offline_access profile".
//
// Client authentication goes through one step, (*Issuer).authenticate, that switches on the
// kind of credential the request carries: a client secret, or a client_assertion
// (private_key_jwt) signed with the key of one of the principal's [Certificate]s. MSAL Go
// (azidentity ClientCertificateCredential) sends a PS256 JWT whose header names the
// certificate by x5t#S256 (SHA-256 of the DER, in standard base64), with x5c when
// SendCertificateChain is set, and claims aud = the token endpoint of the discovery document,
// iss = sub = client_id, a UUID jti, nbf = now and exp = now+10 min.
//
// [Issuer.Validate] looks at a token's unverified iss only to choose whose rules apply: the
// pool's (ES256, the pool's key) or those of an [ExternalIssuer] named in
// [IssuerConfig.External] (its JWKS, its audiences); everything is then verified.
//
// # Security
//
//   - What is stored: only a keyed SHA-256 (HMAC with a fixed domain-separation key) of each
//     client secret, in [SecretHash]. Secrets are made by [NewSecret] from crypto/rand with 256
//     bits of entropy, so a fast hash is adequate: there is nothing to brute-force. Presented
//     secrets are compared with every stored hash in constant time.
//   - Tokens are JWTs signed ES256 with the pool's P-256 key (the daemon owns that key; the
//     package sees only a crypto.Signer). They live [IssuerConfig.Lifetime] (1 h by default,
//     10 min to 24 h) and name the principal (oid, sub), the client (azp, appid), the tenant
//     (tid) and exactly one audience, the resource of the requested scope.
//   - Validate accepts only compact JWS with alg ES256, the pool's key ID, the pool's issuer,
//     one of the caller's audiences, the pool's tenant, and exp/nbf/iat within one minute of
//     skew; every failure is [fault.Unauthorized]. Nodes of a pool need clocks within a minute.
//     Tokens that pass are kept in a bounded LRU keyed by their SHA-256, with their claims; a
//     later call with the same token re-checks only the audience, nbf and exp, since nothing
//     else about a signed token can change. The cache holds no token, only its hash.
//   - There is no revocation list: deleting a principal or a secret stops new tokens at once,
//     but tokens already issued stay valid until they expire (Lifetime, 1 h by default).
//     The data plane's authorization checks role assignments on every request, so removing
//     a principal's roles takes effect at once.
//   - No secret or token is written to a log, an error or a response other than the token
//     response itself. Error messages name what was wrong, never the credential; a client_id
//     is echoed only if it is a UUID, in case a secret was pasted into it. Strings
//     decoded from a request body cannot be wiped; the body buffer is cleared after parsing
//     (best effort, as for [secret.Bytes]).
//   - Request bodies are limited to 64 KiB; parameters are taken from the body only (never the
//     query string) and must not repeat. The handler never redirects.
//   - Certificate credentials: only the certificate (public) is stored. A client assertion
//     must be a compact JWS (PS256 or RS256 for an RSA key of 2048 bits or more, ES256 for a
//     P-256 key) whose header names a registered certificate by x5t#S256 or x5t (both are
//     accepted, in base64url or standard base64) or by the leaf of x5c; every one present must
//     name the same certificate, and an x5c chain is never trusted beyond that (no subject
//     name/issuer authentication). The certificate must be within its validity period (one
//     minute of skew on NotBefore), the signature must verify with its key, iss and sub must
//     be the client_id, aud the pool's token endpoint (compared as a URL: host and tenant
//     case-insensitive, ":443" optional), exp present, in the future and at most an hour (plus
//     skew) ahead, nbf and iat not in the future, and jti present.
//   - Replay: each accepted assertion's client ID and jti are remembered until its exp (plus
//     skew) and a second use is refused. The memory is per node and in memory only: an
//     assertion could be replayed once on each other node of a pool, and after a restart,
//     within its lifetime (10 minutes as MSAL makes them). It holds at most 65536 entries and
//     fails closed: when it is full of live entries, assertions are refused (503
//     temporarily_unavailable) until some expire. Only assertions that passed every other
//     check are recorded, so a client without a registered key cannot fill it.
//   - External issuers are trusted completely for the tokens they sign with a key of their
//     JWKS: iss must match exactly, the signature must verify (RS256, PS256 or ES256; RSA keys of
//     2048 bits or more, EC P-256), aud must be one of the issuer's configured audiences (never
//     the pool's resource unless configured), exp must be present and exp, nbf and iat (if
//     present) within the skew; oid is required and becomes [Claims.ObjectID], with
//     [Claims.External] set. The pool does not check that an external oid is not also a
//     principal of its own: the core decides what an external identity may do.
//   - A JWKS file is read at start (a bad one stops NewIssuer), then again as a URL is. A
//     JWKS URL must be https; it is fetched when first needed with a 10 s timeout and at most
//     1 MiB, read again when a token names an unknown kid (at most once a minute, whatever the
//     outcome, so tokens with random kids cannot make the pool hammer the issuer) and on the
//     next use after an hour (so a withdrawn key stops working within about an hour; if that
//     read fails, the old set stays).
//
// # Concurrency
//
// An Issuer is safe for concurrent use, including its handler. Its configuration is
// immutable after [NewIssuer]; what changes is guarded inside it: the cache of valid tokens,
// the replay cache of client assertions (a mutex) and the external issuers' key sets (an
// atomic pointer, read again by one caller at a time while the others wait, bounded by their
// contexts). The [Directory], the signer, the logger and any ExternalIssuer.HTTPClient it is
// given must be safe for concurrent use too.
package auth
