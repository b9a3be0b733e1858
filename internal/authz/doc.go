// Package authz decides whether a caller may call a method of the core: Managed HSM local RBAC
// (spec/azure-mhsm-api.md §5.2). A request is allowed when one of the caller's role assignments
// applies at the request's scope and its role grants the method's data action.
//
// The pieces, each used by the core's interceptor in this order:
//
//   - [RuleFor] maps a full gRPC method name to its [Rule]: the data action it needs and how its
//     scope ("/", "/keys" or "/keys/{name}") is read from the request. Every method of every
//     service has exactly one rule; a test keeps it so.
//   - [Check] takes the caller's assignments, the rule's action and the scope, and returns nil or a
//     403 Forbidden *rpcerr.Error that names the missing action and the scope.
//   - [Compile] turns a role definition into a [Set] of actions (dataActions minus notDataActions,
//     with Azure's wildcards); [Check] caches the result per definition.
//   - [ValidatePermissions] checks a custom role's permissions before it is stored.
//
// The package does no I/O: role definitions come from a [RoleLookup] (the replicated state), the
// built-in roles from this package.
//
// # Concurrency
//
// Everything here is safe for concurrent use. [Check] keeps a bounded cache of compiled roles keyed
// by the *pb.RoleDefinition pointer; that is correct only because stored definitions are
// immutable records: a replaced custom role is a new pointer, so a stale entry is never consulted
// again and ages out of the cache.
//
// # Security
//
// The decision fails closed: an unknown role, an assignment at an unknown scope, an unknown data
// action in a definition, or a request of an unexpected type never grants anything. Managed HSM
// Administrator grants no key operation; key use needs a crypto role.
package authz
