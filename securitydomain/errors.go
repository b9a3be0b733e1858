package securitydomain

import "errors"

// Sentinel errors; each is returned wrapped with what was being done.
var (
	// ErrMalformed: the file or blob is not a well-formed security-domain document.
	ErrMalformed = errors.New("malformed security domain")
	// ErrNoShare: an officer key whose certificate matches no share in the file.
	ErrNoShare = errors.New("no share for this certificate")
	// ErrKeyMismatch: a share does not decrypt with the key given for it.
	ErrKeyMismatch = errors.New("share does not decrypt with this key")
	// ErrTooFewKeys: fewer distinct officers' keys than the quorum.
	ErrTooFewKeys = errors.New("too few officer keys for the quorum")
	// ErrIntegrity: the shares combine to a key under which the datums do not
	// authenticate, or a datum or blob was tampered with.
	ErrIntegrity = errors.New("security domain does not authenticate")
	// ErrWrongExchangeKey: the restore blob was made for another exchange key.
	ErrWrongExchangeKey = errors.New("restore blob is for another exchange key")
)
