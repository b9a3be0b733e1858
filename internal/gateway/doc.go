// Package gateway is the pool's Azure REST surface: an http.Handler that unmodified Azure Key
// Vault / Managed HSM clients (Go azkeys, JS keyvault-keys, Python, az CLI) talk to. It turns
// each request into one call of the core's gRPC API (proto/hsmpool/v1) and the answer back into
// Azure JSON, following spec/azure-mhsm-api.md §1, §3, §4 and §5.1 and
// spec/security-domain-format.md §2.
//
// A request goes through these steps, in this order, because the SDKs depend on it:
//
//  1. Paths the identity provider owns (Config.OwnsIdentity) go to Config.Identity untouched.
//  2. GET /healthz and GET /readyz answer without a token.
//  3. Without "Authorization: Bearer <token>" the answer is 401 with the WWW-Authenticate
//     challenge, before the path, the api-version or the body is looked at: the SDKs' first
//     request carries no body (client-compat.md §0.2).
//  4. The api-version query parameter must be one the clients send (client-compat.md §3).
//  5. The path is routed by the one route table (routes.go) on its escaped form split on "/",
//     empty segments dropped, so "/keys/k1/", "/keys/k1//sign" and "/keys/k1/sign" all work;
//     http.ServeMux would redirect them.
//  6. The body, where the operation has one, is read up to Config.MaxBodyBytes and decoded.
//
// The gateway does not check tokens and makes no authorization decision: it forwards the token
// as the gRPC metadata "authorization" ("Bearer <token>") and the request ID as
// "x-ms-request-id", and the core decides. It builds every URL it returns (kid, recoveryId,
// nextLink, Azure-AsyncOperation) from the request's Host, as clients parse them back.
//
// # Concurrency
//
// A Gateway is immutable after [New] and safe for concurrent use. Each request uses its own
// context for its gRPC call, so a client that goes away cancels the call.
//
// # Security
//
//   - The bearer token is never logged, echoed or put in an error; a token that is not printable
//     ASCII is refused with the same 401 as a missing one.
//   - Request bodies are never logged or echoed; errors name the offending field only. The raw
//     body buffer is cleared after the call (best effort: strings decoded from it and the
//     protobuf messages built from it cannot be wiped).
//   - Error messages from the core are passed on as they are: the core guarantees they hold no
//     key material or secret (internal/rpcerr). The gateway never sends x-ms-error-code, so the
//     body's error.code is the one clients see.
package gateway
