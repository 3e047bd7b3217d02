package server

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"

	"github.com/cofferhq/coffer/replication"
	"github.com/cofferhq/coffer/server/awserr"
	"github.com/cofferhq/coffer/storage"
	"github.com/cofferhq/coffer/storage/kms"
)

// The AWS error types Coffer answers with, under the names server's callers
// have always used. awserr defines them, with their HTTP statuses and gRPC
// codes.
const (
	TypeResourceNotFound      = awserr.ResourceNotFound
	TypeResourceExists        = awserr.ResourceExists
	TypeInvalidParameter      = awserr.InvalidParameter
	TypeInvalidRequest        = awserr.InvalidRequest
	TypeValidation            = awserr.Validation
	TypeLimitExceeded         = awserr.LimitExceeded
	TypeInvalidNextToken      = awserr.InvalidNextToken
	TypeMalformedPolicy       = awserr.MalformedPolicy
	TypePublicPolicy          = awserr.PublicPolicy
	TypeEncryptionFailure     = awserr.EncryptionFailure
	TypeDecryptionFailure     = awserr.DecryptionFailure
	TypeInternalServiceError  = awserr.InternalServiceError
	TypeServiceUnavailable    = awserr.ServiceUnavailable
	TypeUnsupportedOperation  = awserr.UnsupportedOperation
	TypePreconditionNotMet    = awserr.PreconditionNotMet
	TypeAccessDeniedException = awserr.AccessDeniedException
	TypeUnrecognizedClient    = awserr.UnrecognizedClient
	TypeInvalidSignature      = awserr.InvalidSignature
	TypeIncompleteSignature   = awserr.IncompleteSignature
	TypeMissingAuthToken      = awserr.MissingAuthToken
	TypeExpiredToken          = awserr.ExpiredToken
	TypeThrottling            = awserr.Throttling

	TypeKMSNotFound           = awserr.KMSNotFound
	TypeKMSAlreadyExists      = awserr.KMSAlreadyExists
	TypeKMSDisabled           = awserr.KMSDisabled
	TypeKMSInvalidState       = awserr.KMSInvalidState
	TypeKMSInvalidArn         = awserr.KMSInvalidArn
	TypeKMSInvalidAliasName   = awserr.KMSInvalidAliasName
	TypeKMSInvalidMarker      = awserr.KMSInvalidMarker
	TypeKMSUnsupported        = awserr.KMSUnsupported
	TypeInvalidIdentityToken  = awserr.InvalidIdentityToken
	TypeExpiredIdentityToken  = awserr.ExpiredIdentityToken
	TypeIDPCommunicationError = awserr.IDPCommunicationError
)

// ErrorDomain is the ErrorInfo domain of Coffer's gRPC errors.
const ErrorDomain = "coffer.v1"

// APIError is a failure as an API caller sees it: an AWS error type and a
// message. It is the one error shape both protocols render: gRPC as a status
// with ErrorInfo{Reason: Type}, the AWS JSON protocol as {"__type", "message"}.
// Messages never contain a secret value.
type APIError struct {
	Type    string
	Message string
	// Metadata, when set, travels in the gRPC ErrorInfo (a follower names
	// the leader's address this way); the AWS JSON protocol drops it.
	Metadata map[string]string
	// cause is kept for logs; it is never shown to the caller.
	cause error
}

func (e *APIError) Error() string { return e.Type + ": " + e.Message }

func (e *APIError) Unwrap() error { return e.cause }

func apiErr(typ, format string, args ...any) *APIError {
	return &APIError{Type: typ, Message: fmt.Sprintf(format, args...)}
}

// validationErr renders a model-constraint violation the way AWS does.
// validationValueErr is validationErr naming the value, as AWS does for a
// member that is not sensitive: "Value '0' at 'rotationRules...'".
func validationValueErr(field string, value any, constraint string) *APIError {
	return apiErr(TypeValidation, "1 validation error detected: Value '%s' at '%s' failed to satisfy constraint: %s",
		truncateValue(fmt.Sprint(value)), field, constraint)
}

func validationErr(field, constraint string) *APIError {
	return apiErr(TypeValidation, "1 validation error detected: Value at '%s' failed to satisfy constraint: %s", field, constraint)
}

// AsAPIError turns any error from the layers below into the APIError a
// caller should see. Unknown errors become InternalServiceError with a
// generic message: their text may name internals and is only logged.
func AsAPIError(err error) *APIError {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae
	}
	var se *storage.Error
	if errors.As(err, &se) {
		return &APIError{Type: storageType(se.Kind), Message: se.Msg, cause: err}
	}
	switch {
	case errors.Is(err, replication.ErrNoLeader), errors.Is(err, replication.ErrNotLeader), errors.Is(err, replication.ErrShutdown):
		return &APIError{Type: TypeServiceUnavailable, Message: "The region has no leader to accept the request; retry shortly.", cause: err}
	case errors.Is(err, replication.ErrLowDiskSpace):
		return &APIError{Type: TypeServiceUnavailable, Message: "Writes are refused while a node of the region is low on disk space (storage.min_free_bytes); reads still work. An operator must free space.", cause: err}
	case errors.Is(err, errKeyringNotReady):
		return &APIError{Type: TypeServiceUnavailable, Message: "The region's keyring is not initialised yet; retry shortly.", cause: err}
	case errors.Is(err, kms.ErrDecryption), errors.Is(err, kms.ErrSealed):
		return &APIError{Type: TypeDecryptionFailure, Message: "Secrets Manager can't decrypt the protected secret text using the provided KMS key.", cause: err}
	case errors.Is(err, kms.ErrEncryption):
		return &APIError{Type: TypeEncryptionFailure, Message: "Secrets Manager can't encrypt the protected secret text using the provided KMS key.", cause: err}
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return &APIError{Type: TypeServiceUnavailable, Message: "The request timed out before it could be committed.", cause: err}
	}
	return &APIError{Type: TypeInternalServiceError, Message: "An error occurred on the server side.", cause: err}
}

func storageType(kind error) string {
	switch kind {
	case storage.ErrSecretNotFound, storage.ErrVersionNotFound, storage.ErrStageNotFound,
		storage.ErrPrincipalNotFound, storage.ErrAccessKeyNotFound, storage.ErrPolicyNotFound, storage.ErrFunctionNotFound:
		return TypeResourceNotFound
	case storage.ErrSecretExists, storage.ErrTokenInUse, storage.ErrPrincipalExists:
		return TypeResourceExists
	case storage.ErrMarkedForDeletion, storage.ErrStageMismatch, storage.ErrPolicyInUse, storage.ErrRotationInProgress, storage.ErrNoRotationFunction:
		return TypeInvalidRequest
	case storage.ErrInvalidParameter, storage.ErrReplicaReadOnly, storage.ErrInvalidShipment:
		return TypeInvalidParameter
	case storage.ErrLimitExceeded:
		return TypeLimitExceeded
	case storage.ErrRegionFenced, storage.ErrSwitchingOver:
		// Retryable: the write succeeds once the fence is lifted or the
		// switchover completes (in the region the message names).
		return TypeServiceUnavailable
	case storage.ErrInvalidNextToken:
		return TypeInvalidNextToken
	case storage.ErrKMSKeyNotFound, storage.ErrKMSAliasNotFound:
		return TypeKMSNotFound
	case storage.ErrKMSAliasExists:
		return TypeKMSAlreadyExists
	case storage.ErrKMSKeyDisabled:
		return TypeKMSDisabled
	case storage.ErrKMSInvalidState:
		return TypeKMSInvalidState
	}
	return TypeInternalServiceError
}

// GRPCStatus renders an APIError as a gRPC status carrying the AWS type in
// an ErrorInfo detail.
func (e *APIError) GRPCStatus() *status.Status {
	st := status.New(awserr.GRPCCode(e.Type), e.Message)
	if withInfo, err := st.WithDetails(&errdetails.ErrorInfo{Reason: e.Type, Domain: ErrorDomain, Metadata: e.Metadata}); err == nil {
		return withInfo
	}
	return st
}

// TypeOf returns the AWS error type carried by a gRPC error, or "".
func TypeOf(err error) string {
	st, ok := status.FromError(err)
	if !ok {
		return ""
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == ErrorDomain {
			return info.GetReason()
		}
	}
	return ""
}

// ErrorMetadata returns the ErrorInfo metadata of a gRPC error from
// Coffer, or nil.
func ErrorMetadata(err error) map[string]string {
	st, ok := status.FromError(err)
	if !ok {
		return nil
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == ErrorDomain {
			return info.GetMetadata()
		}
	}
	return nil
}
