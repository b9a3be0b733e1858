package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// Error is an error answer of the pool: an HTTP status and the code and message of the Azure error envelope
// {"error":{"code","message"}}, or of an OAuth error {"error","error_description"} from the token endpoint.
type Error struct {
	// StatusCode is the HTTP status.
	StatusCode int
	// Code is the Azure error code (BadParameter, KeyNotFound, Forbidden...), or the OAuth error
	// (invalid_client...); "" when the answer had none.
	Code string
	// Message is the error's message; "" when the answer had none.
	Message string
	// RequestID is the x-ms-request-id header of the answer, if it had one.
	RequestID string

	err error // the SDK's error, for errors.As
}

// Error returns "CODE (HTTP STATUS): MESSAGE", leaving out what is missing.
func (e *Error) Error() string {
	var b strings.Builder
	if e.Code != "" {
		b.WriteString(e.Code + " ")
	}
	fmt.Fprintf(&b, "(HTTP %d %s)", e.StatusCode, http.StatusText(e.StatusCode))
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	return b.String()
}

// Unwrap returns the SDK's own error (an *azcore.ResponseError or *azidentity.AuthenticationFailedError), if any.
func (e *Error) Unwrap() error { return e.err }

// AsError finds in err's chain an error answer of the pool and returns it as an *Error: an *Error itself, an
// *azcore.ResponseError (the Azure SDK clients' errors) or an *azidentity.AuthenticationFailedError that carries a
// response. It returns nil, false when there is none, as for a network error.
func AsError(err error) (*Error, bool) {
	var e *Error
	if errors.As(err, &e) {
		return e, true
	}
	var re *azcore.ResponseError
	if errors.As(err, &re) && re.RawResponse != nil {
		e := errorFromResponse(re.RawResponse, re)
		if re.ErrorCode != "" {
			e.Code = re.ErrorCode // the SDK prefers x-ms-error-code; so do we
		}
		return e, true
	}
	var ae *azidentity.AuthenticationFailedError
	if errors.As(err, &ae) && ae.RawResponse != nil {
		return errorFromResponse(ae.RawResponse, ae), true
	}
	return nil, false
}

// newResponseError returns the *Error of resp, an answer with an unexpected status; its Unwrap is the
// *azcore.ResponseError that the Azure SDKs would return.
func newResponseError(resp *http.Response) error {
	var re *azcore.ResponseError
	err := runtime.NewResponseError(resp)
	if !errors.As(err, &re) {
		return err // the body could not be read
	}
	e, _ := AsError(re)
	return e
}

// errorFromResponse reads the error envelope from resp's body.
func errorFromResponse(resp *http.Response, sdkErr error) *Error {
	e := &Error{StatusCode: resp.StatusCode, RequestID: resp.Header.Get("x-ms-request-id"), err: sdkErr}
	body, _ := runtime.Payload(resp) // keeps the body readable again, for the SDK's own Error
	var env struct {
		Error json.RawMessage `json:"error"`
		// OAuth's error_description, beside "error" as a string.
		Description string `json:"error_description"`
	}
	if json.Unmarshal(body, &env) != nil || len(env.Error) == 0 {
		return e
	}
	var azure struct{ Code, Message string }
	var oauth string
	switch {
	case json.Unmarshal(env.Error, &azure) == nil:
		e.Code, e.Message = azure.Code, azure.Message
	case json.Unmarshal(env.Error, &oauth) == nil:
		e.Code, e.Message = oauth, env.Description
	}
	return e
}
