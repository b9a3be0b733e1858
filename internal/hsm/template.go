package hsm

/*
#include <stdlib.h>
#include <string.h>

// hp_attr has the layout of CK_ATTRIBUTE on the platforms PKCS#11 modules use: an
// unsigned long type, a pointer, an unsigned long length.
typedef struct {
	unsigned long type;
	void *pValue;
	unsigned long ulValueLen;
} hp_attr;

static size_t hp_attr_size(void) { return sizeof(hp_attr); }

static void hp_set(hp_attr *a, size_t i, unsigned long type, void *p, unsigned long n) {
	a[i].type = type;
	a[i].pValue = p;
	a[i].ulValueLen = n;
}
*/
import "C"

import (
	"encoding/binary"
	"unsafe"

	"github.com/miekg/pkcs11"
)

// nestedTemplate encodes attrs as the value of an array attribute such as
// CKA_UNWRAP_TEMPLATE. miekg/pkcs11 copies an attribute's value into C memory as plain
// bytes, so the value must be a CK_ATTRIBUTE array whose pValue pointers already point to C
// memory: that memory is allocated here and released by the returned function, which the
// caller defers until the PKCS#11 call that uses the template has returned.
func nestedTemplate(attrs []*pkcs11.Attribute) ([]byte, func()) {
	n := len(attrs)
	arr := (*C.hp_attr)(C.calloc(C.size_t(n), C.hp_attr_size()))
	values := make([]unsafe.Pointer, 0, n)
	for i, a := range attrs {
		var p unsafe.Pointer
		if len(a.Value) > 0 {
			p = C.CBytes(a.Value)
			values = append(values, p)
		}
		C.hp_set(arr, C.size_t(i), C.ulong(a.Type), p, C.ulong(len(a.Value)))
	}
	b := C.GoBytes(unsafe.Pointer(arr), C.int(C.size_t(n)*C.hp_attr_size()))
	free := func() {
		for _, p := range values {
			C.free(p)
		}
		C.free(unsafe.Pointer(arr))
	}
	return b, free
}

// ulongs encodes CK_ULONG values (such as mechanism types for CKA_ALLOWED_MECHANISMS) in
// the native layout of a C array.
func ulongs(vs ...uint) []byte {
	size := int(unsafe.Sizeof(C.ulong(0)))
	b := make([]byte, size*len(vs))
	for i, v := range vs {
		if size == 8 {
			binary.NativeEndian.PutUint64(b[i*8:], uint64(v))
		} else {
			binary.NativeEndian.PutUint32(b[i*4:], uint32(v))
		}
	}
	return b
}

func attr(t uint, v any) *pkcs11.Attribute { return pkcs11.NewAttribute(t, v) }
