// Package fault defines the small set of error kinds that cross package and process
// boundaries. Each boundary maps kinds once: the HSM layer maps CKR_* codes to kinds, the
// gRPC layer maps kinds to status codes, and the gateway maps them to the Azure error
// envelope and HTTP status.
//
// A Kind is itself an error, so code marks an error with a kind by wrapping it:
//
//	return fmt.Errorf("sign with %s: %w: %w", alg, fault.BadParameter, err)
//
// and tests it with errors.Is(err, fault.BadParameter) or [Of].
package fault

import "errors"

// Kind classifies an error by what the caller can do about it. The zero value is not a
// valid kind, so an unset kind is never mistaken for one.
type Kind uint8

const (
	_ Kind = iota
	// NotFound: the named object (key, slot, token, handle) does not exist.
	NotFound
	// AlreadyExists: the object exists and the call would create it again.
	AlreadyExists
	// BadParameter: the request is malformed or inconsistent (wrong algorithm for the key,
	// wrong digest length, corrupt ciphertext). Retrying the same request fails again.
	BadParameter
	// Unsupported: the request is well formed but this pool or its HSM cannot do it.
	Unsupported
	// Unauthorized: the caller (or the process, towards the HSM) is not authenticated.
	Unauthorized
	// Forbidden: authenticated, but the operation is not permitted on this object.
	Forbidden
	// Conflict: the request conflicts with the current state; it may succeed later.
	Conflict
	// NotLeader: the node cannot accept the write; it must go to the Raft leader.
	NotLeader
	// Unavailable: a transient failure (pool closed, HSM busy, no quorum); retry later.
	Unavailable
	// HSMFailure: the HSM failed in a way that is not the caller's fault.
	HSMFailure
	// Internal: a bug or an invariant broken inside the pool.
	Internal
)

var names = [...]string{
	NotFound:      "not found",
	AlreadyExists: "already exists",
	BadParameter:  "bad parameter",
	Unsupported:   "unsupported",
	Unauthorized:  "unauthorized",
	Forbidden:     "forbidden",
	Conflict:      "conflict",
	NotLeader:     "not leader",
	Unavailable:   "unavailable",
	HSMFailure:    "hsm failure",
	Internal:      "internal error",
}

func (k Kind) Error() string {
	if int(k) < len(names) && names[k] != "" {
		return names[k]
	}
	return "invalid fault kind"
}

// String is the same as Error so that kinds read well in logs.
func (k Kind) String() string { return k.Error() }

// Of returns the first kind found in err's chain, or Internal when err carries none, so
// that an unclassified error is never reported to a client as its own fault. Of(nil) is 0.
func Of(err error) Kind {
	if err == nil {
		return 0
	}
	var k Kind
	if errors.As(err, &k) {
		return k
	}
	return Internal
}
