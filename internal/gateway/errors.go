package gateway

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/hsmpool/hsmpool/internal/rpcerr"
)

// apiError is an error the gateway itself answers with (routing, query and body problems); errors
// of gRPC calls are mapped by rpcerr.ToHTTP instead.
type apiError struct{ rpcerr.HTTP }

func (e *apiError) Error() string { return e.Message }

func newError(status int, code, format string, args ...any) *apiError {
	return &apiError{rpcerr.HTTP{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}}
}

func badParameter(format string, args ...any) *apiError {
	return newError(http.StatusBadRequest, "BadParameter", format, args...)
}

// errNoToken is the vault's exact answer to a request without a token (azure-mhsm-api.md §2.1).
var errNoToken = newError(http.StatusUnauthorized, "Unauthorized", "AKV10000: Request is missing a Bearer or PoP token.")

// envelope is the Azure error body (azure-mhsm-api.md §4).
type envelope struct {
	Error errorBody `json:"error"`
}

type errorBody struct {
	Code       string      `json:"code"`
	Message    string      `json:"message"`
	InnerError *innerError `json:"innererror,omitempty"`
}

type innerError struct {
	Code string `json:"code"`
}

// writeError answers with err in the Azure envelope. Only the body carries the code: Go's azcore
// would prefer an x-ms-error-code header over it.
func (g *Gateway) writeError(c *call, err error) {
	var h rpcerr.HTTP
	if ae := (*apiError)(nil); errors.As(err, &ae) {
		h = ae.HTTP
	} else {
		h = rpcerr.ToHTTP(err)
	}
	c.err, c.errCode = err, h.Code
	hdr := c.w.Header()
	if h.Status == http.StatusUnauthorized {
		// The SDKs fetch a token only in answer to a challenge, so an expired or rejected token
		// needs one as much as a missing token does.
		hdr.Set("WWW-Authenticate", g.challenge)
	}
	if h.RetryAfter > 0 {
		hdr.Set("Retry-After", strconv.Itoa(h.RetryAfter))
	}
	msg := h.Message
	if err != errNoToken { // the challenge's body is the vault's, word for word
		msg += " (Activity ID: " + c.id + ")"
	}
	body := errorBody{Code: h.Code, Message: msg}
	if h.Inner != "" {
		body.InnerError = &innerError{Code: h.Inner}
	}
	g.writeJSON(c, h.Status, envelope{body})
}
