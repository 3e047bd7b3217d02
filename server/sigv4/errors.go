package sigv4

import (
	"errors"

	"github.com/cofferhq/coffer/server/awserr"
)

// The AWS error types a verification failure carries in Error.Code, as
// awserr defines them. They are the types AWS's JSON-protocol services
// (Secrets Manager among them) answer with; the Query protocol's names
// (IncompleteSignature, SignatureDoesNotMatch) differ. The HTTP status each
// is sent with is awserr's, not this package's.
const (
	// CodeMissingAuthenticationToken: the request has no Authorization header.
	CodeMissingAuthenticationToken = awserr.MissingAuthToken
	// CodeIncompleteSignature: the Authorization header or the date is
	// malformed, incomplete, uses another algorithm, or names a signed header
	// the request lacks.
	CodeIncompleteSignature = awserr.IncompleteSignature
	// CodeInvalidSignature: the signature does not match, the date is outside
	// the allowed skew, the scope names another date or service or an invalid
	// region or terminator, or Host is not signed.
	CodeInvalidSignature = awserr.InvalidSignature
	// CodeUnrecognizedClient: the access key id is unknown, or the session
	// token is missing, unexpected or wrong.
	CodeUnrecognizedClient = awserr.UnrecognizedClient
)

// Error is a verification failure as the caller should see it: an AWS error
// type and AWS's message. Messages never contain a secret access key, a
// session token or a signature.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Is reports whether target is one of the sentinels below (an *Error with no
// Message) with e's Code, so callers can write
// errors.Is(err, sigv4.ErrInvalidSignature).
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Message == "" && t.Code == e.Code
}

// Sentinels for errors.Is, one per Code. Verify never returns them itself.
var (
	ErrMissingAuthenticationToken = &Error{Code: CodeMissingAuthenticationToken}
	ErrIncompleteSignature        = &Error{Code: CodeIncompleteSignature}
	ErrInvalidSignature           = &Error{Code: CodeInvalidSignature}
	ErrUnrecognizedClient         = &Error{Code: CodeUnrecognizedClient}
)

// Errors that are the programmer's, not the caller's: server/ should answer
// them as internal failures.
var (
	// ErrNoLookup means Verify was called on a Verifier without a Lookup.
	ErrNoLookup = errors.New("sigv4: Verifier has no Lookup")
	// ErrSigningInput means Sign was given no access key id, secret access
	// key, region or service.
	ErrSigningInput = errors.New("sigv4: Sign needs an access key id, a secret access key, a region and a service")
)

// AWS's messages, for the failures whose wording does not vary.
const (
	msgMissingToken     = "Request is missing Authentication Token"
	msgSignatureInvalid = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
	msgTokenInvalid     = "The security token included in the request is invalid."
	msgHostNotSigned    = "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization."
	msgBothAuthKinds    = "Found both 'X-Amz-Algorithm' as a query-string param and 'Authorization' as HTTP header."
	msgPayloadMismatch  = "The provided 'x-amz-content-sha256' header does not match what was computed."
	// Coffer's own wording: AWS has no message for these.
	msgPresigned      = "Presigned requests (X-Amz-Algorithm in the query string) are not supported; sign with the Authorization header."
	msgManyAuthHeader = "The request has more than one Authorization header."
	msgMissingEqual   = "The Authorization header has a part that is not a valid key=value pair (missing equal-sign)."
)

func incomplete(msg string) *Error { return &Error{Code: CodeIncompleteSignature, Message: msg} }
func invalid(msg string) *Error    { return &Error{Code: CodeInvalidSignature, Message: msg} }
func unrecognized() *Error         { return &Error{Code: CodeUnrecognizedClient, Message: msgTokenInvalid} }
