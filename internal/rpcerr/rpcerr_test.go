package rpcerr

import (
	"context"
	"errors"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hsmpool/hsmpool/internal/fault"
)

// TestFromStatus: an error that crossed a gRPC call (Status, then FromStatus) and is passed
// on (Status again, then ToHTTP) reaches the client as the first server meant it.
func TestFromStatus(t *testing.T) {
	tests := []struct {
		name       string
		err        error
		kind       fault.Kind
		http       int
		code       string
		inner      string
		retryAfter int
	}{
		{"business 409", &Error{Kind: fault.Conflict, Code: "Conflict", Inner: "RoleAssignmentExists", Msg: "taken"}, fault.Conflict, 409, "Conflict", "RoleAssignmentExists", 0},
		{"already exists", New(fault.AlreadyExists, "", "Key k already exists"), fault.AlreadyExists, 409, "Conflict", "", 0},
		{"not found", New(fault.NotFound, "KeyNotFound", "no key"), fault.NotFound, 404, "KeyNotFound", "", 0},
		{"no leader", &Error{Kind: fault.Unavailable, Msg: "no leader", RetryAfter: 1}, fault.Unavailable, 503, "ServiceUnavailable", "", 1},
		{"not leader", fault.NotLeader, fault.Unavailable, 503, "ServiceUnavailable", "", 1},
		{"internal", errors.New("disk on fire"), fault.Internal, 500, "InternalServerError", "", 0},
		{"transport", status.Error(codes.Unavailable, "connection refused"), fault.Unavailable, 503, "ServiceUnavailable", "", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := FromStatus(Status(tt.err))
			if k := fault.Of(got); k != tt.kind {
				t.Errorf("kind %v, want %v", k, tt.kind)
			}
			h := ToHTTP(Status(got))
			if h.Status != tt.http || h.Code != tt.code || h.Inner != tt.inner || h.RetryAfter != tt.retryAfter {
				t.Errorf("HTTP %+v, want %d %s/%s Retry-After %d", h, tt.http, tt.code, tt.inner, tt.retryAfter)
			}
		})
	}
	for _, err := range []error{nil, context.Canceled, context.DeadlineExceeded} {
		if got := FromStatus(err); got != err {
			t.Errorf("FromStatus(%v) = %v, want it untouched", err, got)
		}
	}
	if got := FromStatus(status.Error(codes.DeadlineExceeded, "late")); got != context.DeadlineExceeded {
		t.Errorf("a DeadlineExceeded status: %v, want context.DeadlineExceeded", got)
	}
}
