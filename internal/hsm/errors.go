package hsm

import (
	"errors"
	"fmt"
	"strings"

	"github.com/miekg/pkcs11"

	"github.com/hsmpool/hsmpool/internal/fault"
)

// ckrActionProhibited is CKR_ACTION_PROHIBITED (PKCS#11 v2.40), which miekg/pkcs11 does
// not name. SoftHSM2 returns it for C_SetAttributeValue or C_CopyObject on a key created
// with CKA_MODIFIABLE=false or CKA_COPYABLE=false.
const ckrActionProhibited = 0x1B

// ckrKinds is the one table from CKR_* return values to error kinds. A code not listed is
// an HSMFailure: the HSM failed in a way the caller cannot fix.
var ckrKinds = map[uint]fault.Kind{
	pkcs11.CKR_SLOT_ID_INVALID:       fault.NotFound,
	pkcs11.CKR_TOKEN_NOT_PRESENT:     fault.NotFound,
	pkcs11.CKR_OBJECT_HANDLE_INVALID: fault.NotFound,
	pkcs11.CKR_KEY_HANDLE_INVALID:    fault.NotFound,

	pkcs11.CKR_PIN_INCORRECT:            fault.Unauthorized,
	pkcs11.CKR_PIN_INVALID:              fault.Unauthorized,
	pkcs11.CKR_PIN_LEN_RANGE:            fault.Unauthorized,
	pkcs11.CKR_PIN_EXPIRED:              fault.Unauthorized,
	pkcs11.CKR_USER_PIN_NOT_INITIALIZED: fault.Unauthorized,

	pkcs11.CKR_PIN_LOCKED:                 fault.Forbidden,
	pkcs11.CKR_KEY_FUNCTION_NOT_PERMITTED: fault.Forbidden,
	pkcs11.CKR_KEY_UNEXTRACTABLE:          fault.Forbidden,
	pkcs11.CKR_KEY_NOT_WRAPPABLE:          fault.Forbidden,
	pkcs11.CKR_ATTRIBUTE_SENSITIVE:        fault.Forbidden,
	ckrActionProhibited:                   fault.Forbidden,

	pkcs11.CKR_MECHANISM_INVALID:      fault.Unsupported,
	pkcs11.CKR_FUNCTION_NOT_SUPPORTED: fault.Unsupported,
	pkcs11.CKR_CURVE_NOT_SUPPORTED:    fault.Unsupported,

	pkcs11.CKR_ARGUMENTS_BAD:                    fault.BadParameter,
	pkcs11.CKR_MECHANISM_PARAM_INVALID:          fault.BadParameter,
	pkcs11.CKR_KEY_TYPE_INCONSISTENT:            fault.BadParameter,
	pkcs11.CKR_KEY_SIZE_RANGE:                   fault.BadParameter,
	pkcs11.CKR_DATA_INVALID:                     fault.BadParameter,
	pkcs11.CKR_DATA_LEN_RANGE:                   fault.BadParameter,
	pkcs11.CKR_ENCRYPTED_DATA_INVALID:           fault.BadParameter,
	pkcs11.CKR_ENCRYPTED_DATA_LEN_RANGE:         fault.BadParameter,
	pkcs11.CKR_WRAPPED_KEY_INVALID:              fault.BadParameter,
	pkcs11.CKR_WRAPPED_KEY_LEN_RANGE:            fault.BadParameter,
	pkcs11.CKR_SIGNATURE_INVALID:                fault.BadParameter,
	pkcs11.CKR_SIGNATURE_LEN_RANGE:              fault.BadParameter,
	pkcs11.CKR_WRAPPING_KEY_TYPE_INCONSISTENT:   fault.BadParameter,
	pkcs11.CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT: fault.BadParameter,
	pkcs11.CKR_DOMAIN_PARAMS_INVALID:            fault.BadParameter,

	// The layer builds every template, so a template the token refuses is our bug.
	pkcs11.CKR_TEMPLATE_INCONSISTENT:   fault.Internal,
	pkcs11.CKR_TEMPLATE_INCOMPLETE:     fault.Internal,
	pkcs11.CKR_ATTRIBUTE_VALUE_INVALID: fault.Internal,
	pkcs11.CKR_ATTRIBUTE_TYPE_INVALID:  fault.Internal,
	pkcs11.CKR_ATTRIBUTE_READ_ONLY:     fault.Internal,

	// The pool's own login was lost: not the caller's fault, and a retry may work.
	pkcs11.CKR_USER_NOT_LOGGED_IN:       fault.Unavailable,
	pkcs11.CKR_DEVICE_MEMORY:            fault.Unavailable,
	pkcs11.CKR_DEVICE_REMOVED:           fault.Unavailable,
	pkcs11.CKR_HOST_MEMORY:              fault.Unavailable,
	pkcs11.CKR_SESSION_COUNT:            fault.Unavailable,
	pkcs11.CKR_TOKEN_NOT_RECOGNIZED:     fault.Unavailable,
	pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED: fault.Unavailable,
}

// ckrError is a CKR_* value. It prints the names miekg/pkcs11 lacks and matches
// pkcs11.Error with errors.Is, so callers may test for a specific code.
type ckrError uint

func (e ckrError) Error() string {
	if e == ckrActionProhibited {
		return "CKR_ACTION_PROHIBITED"
	}
	s := pkcs11.Error(e).Error() // "pkcs11: 0x63: CKR_KEY_TYPE_INCONSISTENT"
	if i := strings.LastIndex(s, ": "); i >= 0 && strings.HasPrefix(s[i+2:], "CKR_") {
		return s[i+2:]
	}
	return fmt.Sprintf("CKR 0x%X", uint(e))
}

func (e ckrError) Is(target error) bool {
	t, ok := target.(pkcs11.Error)
	return ok && uint(t) == uint(e)
}

// p11err wraps err from a PKCS#11 call with what was being done and the error kind of its
// CKR_* code. Errors that are not PKCS#11 errors keep their own kinds.
func p11err(op string, err error) error {
	var rv pkcs11.Error
	if !errors.As(err, &rv) {
		return fmt.Errorf("%s: %w", op, err)
	}
	k, ok := ckrKinds[uint(rv)]
	if !ok {
		k = fault.HSMFailure
	}
	return fmt.Errorf("%s: %w: %w", op, k, ckrError(rv))
}

// isCKR reports whether err carries the PKCS#11 return value rv.
func isCKR(err error, rv uint) bool {
	var e pkcs11.Error
	if errors.As(err, &e) && uint(e) == rv {
		return true
	}
	var c ckrError
	return errors.As(err, &c) && uint(c) == rv
}

// errf makes an error of kind k with a message that names what was wrong.
func errf(k fault.Kind, format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), k)
}
