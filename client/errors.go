package client

import (
	"errors"
	"fmt"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Errors a caller tests for with errors.Is. An *Error from the server is
// one of them when its AWS type says so.
var (
	// ErrNotFound: no such secret, version or stage (ResourceNotFoundException).
	ErrNotFound = errors.New("secret not found")
	// ErrAccessDenied: the credentials may not do this (AccessDeniedException).
	ErrAccessDenied = errors.New("access denied")
	// ErrInvalidRequest: the request is malformed or the secret is in a state
	// that refuses it (InvalidParameter, InvalidRequest, Validation).
	ErrInvalidRequest = errors.New("invalid request")
	// ErrUnavailable: no endpoint answered within the retries.
	ErrUnavailable = errors.New("coffer unavailable")
	// ErrUnauthenticated: the credentials were refused.
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrClosed: the Client was closed.
	ErrClosed = errors.New("client closed")
)

// errorDomain is the ErrorInfo domain of Coffer's gRPC errors (server.ErrorDomain).
const errorDomain = "coffer.v1"

// Error is an answer from Coffer: its AWS error type (such as
// "ResourceNotFoundException"), gRPC code and message.
type Error struct {
	Type     string
	Code     codes.Code
	Message  string
	Metadata map[string]string
}

func (e *Error) Error() string {
	if e.Type == "" {
		return fmt.Sprintf("coffer: %s: %s", e.Code, e.Message)
	}
	return fmt.Sprintf("coffer: %s: %s", e.Type, e.Message)
}

// Is matches the package's sentinel errors by type.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.Type == "ResourceNotFoundException"
	case ErrAccessDenied:
		return e.Type == "AccessDeniedException" || e.Code == codes.PermissionDenied
	case ErrInvalidRequest:
		return e.Code == codes.InvalidArgument || e.Type == "InvalidRequestException"
	case ErrUnauthenticated:
		return e.Code == codes.Unauthenticated
	case ErrUnavailable:
		return e.Code == codes.Unavailable
	}
	return false
}

// asError turns a gRPC error into an *Error (nil stays nil; other errors
// are returned as they are).
func asError(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	e := &Error{Code: st.Code(), Message: st.Message()}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == errorDomain {
			e.Type, e.Metadata = info.GetReason(), info.GetMetadata()
		}
	}
	return e
}

// retryable reports whether another attempt (on another endpoint) may
// succeed: the node or region is unavailable (no leader, starting,
// shutting down, unreachable), the call timed out, or it was throttled.
func retryable(err error) bool {
	var e *Error
	if !errors.As(err, &e) {
		return false
	}
	switch e.Code {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted:
		return true
	case codes.ResourceExhausted:
		return e.Type == "ThrottlingException"
	}
	return false
}
