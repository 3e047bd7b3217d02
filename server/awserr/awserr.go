package awserr

import (
	"net/http"

	"google.golang.org/grpc/codes"
)

// The AWS error types. They are the strings AWS SDKs switch on, so they
// never change.
const (
	ResourceNotFound      = "ResourceNotFoundException"
	ResourceExists        = "ResourceExistsException"
	InvalidParameter      = "InvalidParameterException"
	InvalidRequest        = "InvalidRequestException"
	Validation            = "ValidationException"
	LimitExceeded         = "LimitExceededException"
	InvalidNextToken      = "InvalidNextTokenException"
	MalformedPolicy       = "MalformedPolicyDocumentException"
	PublicPolicy          = "PublicPolicyException"
	EncryptionFailure     = "EncryptionFailure"
	DecryptionFailure     = "DecryptionFailure"
	InternalServiceError  = "InternalServiceError"
	ServiceUnavailable    = "ServiceUnavailable"
	UnsupportedOperation  = "UnsupportedOperation"
	PreconditionNotMet    = "PreconditionNotMetException"
	AccessDeniedException = "AccessDeniedException"
	// Throttling is AWS's answer to a request over a rate limit; SDKs
	// retry it with backoff. Coffer sends it to a source whose requests
	// keep failing to authenticate.
	Throttling = "ThrottlingException"

	// Authentication failures. They are the types of AWS's JSON-protocol
	// services; the Query protocol spells some differently (QueryCode).
	UnrecognizedClient = "UnrecognizedClientException"
	InvalidSignature   = "InvalidSignatureException"
	// IncompleteSignature follows AWS's documented common errors; some
	// JSON-protocol services are seen answering
	// "IncompleteSignatureException" for the same fault. SDKs treat both as
	// a non-retryable client error.
	IncompleteSignature = "IncompleteSignature"
	MissingAuthToken    = "MissingAuthenticationTokenException"
	ExpiredToken        = "ExpiredTokenException"

	// Failures of the AWS JSON protocol itself, answered before a request
	// reaches the service.
	UnknownOperation = "UnknownOperationException"
	Serialization    = "SerializationException"
	RequestTooLarge  = "RequestEntityTooLargeException"

	// InvalidAction is the STS Query protocol's answer to an Action it does
	// not serve.
	InvalidAction = "InvalidAction"

	// Failures of STS AssumeRoleWithWebIdentity: a token that does not
	// verify (or whose audience is not the issuer's client id), a token
	// past its exp, and an issuer whose keys could not be fetched (SDKs
	// retry IDPCommunicationError).
	InvalidIdentityToken  = "InvalidIdentityTokenException"
	ExpiredIdentityToken  = "ExpiredIdentityTokenException"
	IDPCommunicationError = "IDPCommunicationErrorException"
)

// answer is how one type goes on the wire.
type answer struct {
	// status is the HTTP status of the AWS protocols (JSON and Query alike).
	status int
	// code is the gRPC code of Coffer's own API.
	code codes.Code
	// query is the STS Query protocol's code, when it differs from the type.
	query string
}

// answers holds every type above. A type not listed is answered as a
// client fault over HTTP (400) and as Internal over gRPC.
var answers = map[string]answer{
	ResourceNotFound:      {http.StatusBadRequest, codes.NotFound, ""},
	ResourceExists:        {http.StatusBadRequest, codes.AlreadyExists, ""},
	InvalidParameter:      {http.StatusBadRequest, codes.InvalidArgument, ""},
	Validation:            {http.StatusBadRequest, codes.InvalidArgument, "ValidationError"},
	InvalidNextToken:      {http.StatusBadRequest, codes.InvalidArgument, ""},
	MalformedPolicy:       {http.StatusBadRequest, codes.InvalidArgument, ""},
	InvalidRequest:        {http.StatusBadRequest, codes.FailedPrecondition, ""},
	PublicPolicy:          {http.StatusBadRequest, codes.FailedPrecondition, ""},
	PreconditionNotMet:    {http.StatusBadRequest, codes.FailedPrecondition, ""},
	EncryptionFailure:     {http.StatusBadRequest, codes.FailedPrecondition, ""},
	DecryptionFailure:     {http.StatusBadRequest, codes.FailedPrecondition, ""},
	LimitExceeded:         {http.StatusBadRequest, codes.ResourceExhausted, ""},
	InternalServiceError:  {http.StatusInternalServerError, codes.Internal, ""},
	ServiceUnavailable:    {http.StatusServiceUnavailable, codes.Unavailable, ""},
	UnsupportedOperation:  {http.StatusBadRequest, codes.Unimplemented, ""},
	AccessDeniedException: {http.StatusForbidden, codes.PermissionDenied, "AccessDenied"},
	Throttling:            {http.StatusTooManyRequests, codes.ResourceExhausted, "Throttling"},
	UnrecognizedClient:    {http.StatusForbidden, codes.Unauthenticated, "InvalidClientTokenId"},
	InvalidSignature:      {http.StatusForbidden, codes.Unauthenticated, "SignatureDoesNotMatch"},
	IncompleteSignature:   {http.StatusBadRequest, codes.Unauthenticated, ""},
	MissingAuthToken:      {http.StatusForbidden, codes.Unauthenticated, "MissingAuthenticationToken"},
	// An expired token is a 400, as AWS sends it, though the other
	// authentication failures are 403s.
	ExpiredToken: {http.StatusBadRequest, codes.Unauthenticated, "ExpiredToken"},
	// The protocol-level types never travel over gRPC: one that did would
	// be Coffer's own fault, hence Internal.
	UnknownOperation: {http.StatusBadRequest, codes.Internal, ""},
	Serialization:    {http.StatusBadRequest, codes.Internal, ""},
	RequestTooLarge:  {http.StatusRequestEntityTooLarge, codes.Internal, ""},
	InvalidAction:    {http.StatusBadRequest, codes.Internal, ""},
	// STS answers these three only over the Query protocol.
	InvalidIdentityToken:  {http.StatusBadRequest, codes.Unauthenticated, "InvalidIdentityToken"},
	ExpiredIdentityToken:  {http.StatusBadRequest, codes.Unauthenticated, "ExpiredTokenException"},
	IDPCommunicationError: {http.StatusBadRequest, codes.Unavailable, "IDPCommunicationError"},
}

// HTTPStatus is the HTTP status the AWS protocols answer typ with.
func HTTPStatus(typ string) int {
	if a, ok := answers[typ]; ok {
		return a.status
	}
	return http.StatusBadRequest
}

// GRPCCode is the gRPC code Coffer's API answers typ with.
func GRPCCode(typ string) codes.Code {
	if a, ok := answers[typ]; ok {
		return a.code
	}
	return codes.Internal
}

// QueryCode is the code the STS Query protocol answers typ with: AWS's
// Query services drop the "Exception" suffix and name some faults
// differently.
func QueryCode(typ string) string {
	if a, ok := answers[typ]; ok && a.query != "" {
		return a.query
	}
	return typ
}
