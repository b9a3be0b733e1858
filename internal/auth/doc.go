// Package auth makes the pool its own single-tenant identity provider, enough for the stock
// Azure credentials (Go azidentity and JS @azure/identity ClientSecretCredential) to obtain
// access tokens from it, and for the data plane to check those tokens.
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
// kind of credential the request carries. Only client secrets exist today; a client_assertion
// (certificate, private_key_jwt) branch slots in there, and trusting an external OIDC issuer
// slots into (*Issuer).verificationKey, which Validate asks for the key of a token's issuer.
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
//
// # Concurrency
//
// An Issuer is immutable after [NewIssuer] and safe for concurrent use, including its
// handler. The [Directory], the signer and the logger it is given must be safe for concurrent
// use too.
package auth
