// Package client connects Go programs to an hsmpool pool: it reads a client file, builds the Azure SDK clients
// that talk to the pool as they talk to Azure Managed HSM, and covers the endpoints the Azure SDK for Go does not.
//
// A client file is the JSON that "hsmpoold dev" writes as DIR/client.json (and "hsmpoold init" for each
// administrator):
//
//	{"url": "https://contoso.managedhsm.localhost:8443", "name": "contoso",
//	 "tenant_id": "…", "authority_host": "https://127.0.0.1:8443",
//	 "client_id": "…", "client_secret": "…", "ca_file": "/…/tls/ca.pem"}
//
// [Load] finds and reads one (the path given, else $HSMPOOL_CLIENT_FILE); [New] turns it into a [Client], which
// holds:
//
//   - an *http.Client ([NewHTTPClient]) that trusts only the pool's CA, speaks TLS 1.2 or later, and dials
//     127.0.0.1 for "localhost" and every name under ".localhost" (RFC 6761), which Go's resolver does not do;
//   - an *azidentity.ClientSecretCredential that gets tokens from the pool's own token endpoint;
//   - an *azkeys.Client for the keys API;
//   - a [SecurityDomainClient] for the security-domain download and its status, which no Azure SDK for Go
//     covers;
//   - a [PrincipalsClient] for the pool's own service principals and their credentials (Azure has no such API:
//     Entra ID manages principals there);
//   - an *rbac.Client (azadmin) for local RBAC: role definitions and role assignments;
//   - a [ClusterClient] ([Client.Cluster]) for the pool's own cluster API: join tokens, the status of every node,
//     and the removal of a node.
//
// A pool of several nodes is reached through any of them with the same client file: set [File.URL] to the node's
// URL before [New] (hsmpool's --url does that).
//
// [WriteFile] writes a client file, for instance for a principal just made ([File.ForPrincipal]).
//
// Errors from the pool have the Azure shape {"error":{"code","message"}}; [AsError] turns the SDKs' errors, and
// those of this package, into an [*Error] that shows the code, the HTTP status and the message.
//
// # Security
//
// The client file holds a client secret, so [ReadFile] refuses a file that its group or other users may read or
// write, as ssh does for private keys (not on Windows, whose permissions it cannot judge). The secret is kept in a
// [Secret], which prints, logs and marshals as "[REDACTED]"; [Secret.Reveal] is the one way to read it. Tokens are
// asked for the resource that the pool's 401 challenge names, and only when that resource is the host of the
// request or a domain above it (as the Azure SDKs check), so a token is never sent to a host it was not made for.
//
// # Concurrency
//
// A [Client], a [SecurityDomainClient], a [PrincipalsClient] and a [ClusterClient] are safe for concurrent use; the token is shared
// and cached.
package client
