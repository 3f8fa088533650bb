package kato

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// RequestIDHeader is the trailing metadata key of the server's request id.
const RequestIDHeader = "x-request-id"

// FieldViolation is one bad field of a rejected request (google.rpc.BadRequest).
type FieldViolation struct {
	Field       string // a path such as config.recall_threshold or observations[2].strings[0]
	Description string
}

// Error is a failed call with what the server said, decoded. Every error the
// client returns for a call is an *Error; errors.As finds it, and
// status.Convert still works on it.
type Error struct {
	Code            codes.Code
	Message         string
	Reason          string            // google.rpc.ErrorInfo reason, e.g. SESSION_NOT_FOUND
	Metadata        map[string]string // google.rpc.ErrorInfo metadata
	FieldViolations []FieldViolation  // google.rpc.BadRequest
	RetryDelay      time.Duration     // google.rpc.RetryInfo, 0 when absent
	RequestID       string            // the server's x-request-id: find the call in its logs
	Details         []any             // every detail, decoded where the type is known
	status          *status.Status
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "kato: %s: %s", e.Code, e.Message)
	if e.Reason != "" {
		fmt.Fprintf(&b, " [%s]", e.Reason)
	}
	for _, v := range e.FieldViolations {
		fmt.Fprintf(&b, "; %s: %s", v.Field, v.Description)
	}
	if e.RequestID != "" {
		fmt.Fprintf(&b, " (request %s)", e.RequestID)
	}
	return b.String()
}

// GRPCStatus lets status.FromError and status.Code read the original status.
func (e *Error) GRPCStatus() *status.Status { return e.status }

// Violation is the description of the violation of field, and whether there is one.
func (e *Error) Violation(field string) (string, bool) {
	for _, v := range e.FieldViolations {
		if v.Field == field {
			return v.Description, true
		}
	}
	return "", false
}

// AsError is the *Error in err's chain, if any.
func AsError(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}

// FromError decodes a gRPC error (and the call's trailing metadata, which
// may be nil) into an *Error. An *Error is returned as it is.
func FromError(err error, trailer metadata.MD) *Error {
	if e, ok := AsError(err); ok {
		return e
	}
	return fromStatus(status.Convert(err), trailer)
}

// StatusError is the *Error of a google.rpc.Status carried in a message (a
// rejected stream step).
func StatusError(s *spb.Status) *Error { return fromStatus(status.FromProto(s), nil) }

func fromStatus(st *status.Status, trailer metadata.MD) *Error {
	e := &Error{Code: st.Code(), Message: st.Message(), Details: st.Details(), status: st}
	if ids := trailer.Get(RequestIDHeader); len(ids) > 0 {
		e.RequestID = ids[0]
	}
	for _, d := range e.Details {
		switch d := d.(type) {
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				e.FieldViolations = append(e.FieldViolations, FieldViolation{v.GetField(), v.GetDescription()})
			}
		case *errdetails.ErrorInfo:
			e.Reason, e.Metadata = d.GetReason(), d.GetMetadata()
		case *errdetails.RetryInfo:
			e.RetryDelay = d.GetRetryDelay().AsDuration()
		}
	}
	return e
}
