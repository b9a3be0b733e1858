// Package rpcerr carries the pool's errors across the gRPC boundary between the core and the gateway:
// the core turns an error into a gRPC status whose details hold the Azure error code
// (hsmpoolv1.ErrorInfo), and the gateway turns the status back into an HTTP status and the Azure error
// envelope. The table from fault kinds to gRPC codes to HTTP statuses lives here and nowhere else.
package rpcerr

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hsmpool/hsmpool/internal/fault"
	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

// Error is an error the client should see: a kind, the Azure error code and inner code, and a message
// that is safe to return (it never holds key material, secrets or tokens).
type Error struct {
	Kind  fault.Kind
	Code  string // Azure error.code; empty: the kind's default
	Inner string // Azure error.innererror.code; optional
	Msg   string
	// RetryAfter, in seconds, is sent as Retry-After (the SDKs retry 429 and 503 only with it).
	RetryAfter int
}

func (e *Error) Error() string { return e.Msg }

// Unwrap makes errors.Is(err, fault.NotFound) and fault.Of work.
func (e *Error) Unwrap() error { return e.Kind }

// New returns an *Error of kind k with Azure code code (empty: the kind's default).
func New(k fault.Kind, code, format string, args ...any) *Error {
	return &Error{Kind: k, Code: code, Msg: fmt.Sprintf(format, args...)}
}

type kindInfo struct {
	grpc codes.Code
	http int
	code string
}

var kinds = map[fault.Kind]kindInfo{
	fault.NotFound:      {codes.NotFound, http.StatusNotFound, "NotFound"},
	fault.AlreadyExists: {codes.AlreadyExists, http.StatusConflict, "Conflict"},
	fault.BadParameter:  {codes.InvalidArgument, http.StatusBadRequest, "BadParameter"},
	fault.Unsupported:   {codes.InvalidArgument, http.StatusBadRequest, "BadParameter"},
	fault.Unauthorized:  {codes.Unauthenticated, http.StatusUnauthorized, "Unauthorized"},
	fault.Forbidden:     {codes.PermissionDenied, http.StatusForbidden, "Forbidden"},
	fault.Conflict:      {codes.FailedPrecondition, http.StatusConflict, "Conflict"},
	fault.NotLeader:     {codes.Unavailable, http.StatusServiceUnavailable, "ServiceUnavailable"},
	fault.Unavailable:   {codes.Unavailable, http.StatusServiceUnavailable, "ServiceUnavailable"},
	fault.HSMFailure:    {codes.Internal, http.StatusInternalServerError, "InternalServerError"},
	fault.Internal:      {codes.Internal, http.StatusInternalServerError, "InternalServerError"},
}

// grpcToHTTP is for statuses that did not come from Status (a transport failure, a deadline).
var grpcToHTTP = map[codes.Code]kindInfo{
	codes.InvalidArgument:    kinds[fault.BadParameter],
	codes.NotFound:           kinds[fault.NotFound],
	codes.AlreadyExists:      kinds[fault.AlreadyExists],
	codes.FailedPrecondition: kinds[fault.Conflict],
	codes.PermissionDenied:   kinds[fault.Forbidden],
	codes.Unauthenticated:    kinds[fault.Unauthorized],
	codes.Unavailable:        kinds[fault.Unavailable],
	codes.DeadlineExceeded:   {codes.DeadlineExceeded, http.StatusGatewayTimeout, "GatewayTimeout"},
	codes.Canceled:           {codes.Canceled, 499, "Canceled"},
	codes.ResourceExhausted:  {codes.ResourceExhausted, http.StatusTooManyRequests, "Throttled"},
}

// Status converts err for the wire. An *Error keeps its code and message; a bare fault kind gets the
// kind's default code and its wrapped message; anything else (and Internal, HSMFailure) becomes a
// generic internal error so that no detail of the host leaks: the caller logs the original.
func Status(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok && !isOurs(err) {
		return err
	}
	e := From(err)
	info := kinds[e.Kind]
	st := status.New(info.grpc, e.Msg)
	code := e.Code
	if code == "" {
		code = info.code
	}
	if d, derr := st.WithDetails(&pb.ErrorInfo{Code: code, InnerCode: e.Inner, RetryAfterSeconds: int32(e.RetryAfter)}); derr == nil {
		st = d
	}
	return st.Err()
}

func isOurs(err error) bool {
	var e *Error
	var k fault.Kind
	return errors.As(err, &e) || errors.As(err, &k) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// From returns err as an *Error, filling in the kind's defaults. Messages of Internal and HSMFailure
// errors that are not *Error are replaced by a generic one.
func From(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		if e.Kind == 0 {
			c := *e
			c.Kind = fault.Internal
			return &c
		}
		return e
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return &Error{Kind: fault.Unavailable, Code: "ServiceUnavailable", Msg: "the request timed out", RetryAfter: 1}
	case errors.Is(err, context.Canceled):
		return &Error{Kind: fault.Unavailable, Code: "ServiceUnavailable", Msg: "the request was canceled"}
	}
	k := fault.Of(err)
	switch k {
	case fault.Internal, fault.HSMFailure:
		return &Error{Kind: k, Msg: "the pool could not complete the request; see its log"}
	case fault.NotLeader, fault.Unavailable:
		return &Error{Kind: k, Msg: err.Error(), RetryAfter: 1}
	}
	return &Error{Kind: k, Msg: err.Error()}
}

// statusKinds gives the kind of a status that Status made, by its gRPC code, for FromStatus.
// Where two kinds share a code (NotLeader and Unavailable, Unsupported and BadParameter,
// HSMFailure and Internal) it gives the one a caller acts on the same way.
var statusKinds = map[codes.Code]fault.Kind{
	codes.NotFound:           fault.NotFound,
	codes.AlreadyExists:      fault.AlreadyExists,
	codes.InvalidArgument:    fault.BadParameter,
	codes.Unauthenticated:    fault.Unauthorized,
	codes.PermissionDenied:   fault.Forbidden,
	codes.FailedPrecondition: fault.Conflict,
	codes.Unavailable:        fault.Unavailable,
	codes.Internal:           fault.Internal,
}

// FromStatus turns the error of a gRPC call whose server answered with Status back into an
// *Error with the same kind, Azure code, inner code, message and Retry-After, so that passing
// it on (Status again, or ToHTTP) gives the client what the server meant. context.Canceled and
// DeadlineExceeded pass through untouched, and so does an error that is not a status. A status
// with another code (a transport failure) becomes Unavailable when its code is Unavailable,
// else Internal.
func FromStatus(err error) error {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	switch st.Code() {
	case codes.Canceled:
		return context.Canceled
	case codes.DeadlineExceeded:
		return context.DeadlineExceeded
	}
	k, known := statusKinds[st.Code()]
	if !known {
		k = fault.Internal
	}
	e := &Error{Kind: k, Msg: st.Message()}
	for _, d := range st.Details() {
		if ei, ok := d.(*pb.ErrorInfo); ok {
			e.Code, e.Inner, e.RetryAfter = ei.Code, ei.InnerCode, int(ei.RetryAfterSeconds)
		}
	}
	if k == fault.Unavailable && e.RetryAfter == 0 {
		e.RetryAfter = 1
	}
	return e
}

// HTTP is what the gateway sends for an error returned by a gRPC call: the HTTP status, the Azure
// code and inner code, the message, and Retry-After seconds (0: none).
type HTTP struct {
	Status     int
	Code       string
	Inner      string
	Message    string
	RetryAfter int
}

// ToHTTP maps an error from a gRPC client call to its HTTP form.
func ToHTTP(err error) HTTP {
	st, ok := status.FromError(err)
	if !ok {
		e := From(err)
		info := kinds[e.Kind]
		code := e.Code
		if code == "" {
			code = info.code
		}
		return HTTP{Status: info.http, Code: code, Inner: e.Inner, Message: e.Msg, RetryAfter: e.RetryAfter}
	}
	info, known := grpcToHTTP[st.Code()]
	if !known {
		info = kinds[fault.Internal]
	}
	h := HTTP{Status: info.http, Code: info.code, Message: st.Message()}
	for _, d := range st.Details() {
		if ei, ok := d.(*pb.ErrorInfo); ok {
			if ei.Code != "" {
				h.Code = ei.Code
			}
			h.Inner = ei.InnerCode
			h.RetryAfter = int(ei.RetryAfterSeconds)
		}
	}
	if !known {
		h.Message = "the pool could not complete the request; see its log"
	}
	if h.Status == http.StatusServiceUnavailable && h.RetryAfter == 0 {
		h.RetryAfter = 1
	}
	return h
}
