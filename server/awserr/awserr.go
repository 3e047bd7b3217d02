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

	// AWS KMS's own error types (TrentService), for the key operations.
	KMSNotFound         = "NotFoundException"
	KMSAlreadyExists    = "AlreadyExistsException"
	KMSDisabled         = "DisabledException"
	KMSInvalidState     = "KMSInvalidStateException"
	KMSInvalidArn       = "InvalidArnException"
	KMSInvalidAliasName = "InvalidAliasNameException"
	KMSInvalidMarker    = "InvalidMarkerException"
	KMSUnsupported      = "UnsupportedOperationException"
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
	// json is the awsJson status, when Secrets Manager answers the type
	// with another status than the Query protocol (0: the same).
	json int
	// modeled marks the types Secrets Manager's service model declares:
	// their JSON body names the message member "Message", as the model's
	// structures do; AWS's common (unmodeled) errors spell it "message".
	modeled bool
}

// answers holds every type above. A type not listed is answered as a
// client fault over HTTP (400) and as Internal over gRPC.
var answers = map[string]answer{
	ResourceNotFound:     {http.StatusBadRequest, codes.NotFound, "", 0, true},
	ResourceExists:       {http.StatusBadRequest, codes.AlreadyExists, "", 0, true},
	InvalidParameter:     {http.StatusBadRequest, codes.InvalidArgument, "", 0, true},
	Validation:           {http.StatusBadRequest, codes.InvalidArgument, "ValidationError", 0, false},
	InvalidNextToken:     {http.StatusBadRequest, codes.InvalidArgument, "", 0, true},
	MalformedPolicy:      {http.StatusBadRequest, codes.InvalidArgument, "", 0, true},
	InvalidRequest:       {http.StatusBadRequest, codes.FailedPrecondition, "", 0, true},
	PublicPolicy:         {http.StatusBadRequest, codes.FailedPrecondition, "", 0, true},
	PreconditionNotMet:   {http.StatusBadRequest, codes.FailedPrecondition, "", 0, true},
	EncryptionFailure:    {http.StatusBadRequest, codes.FailedPrecondition, "", 0, true},
	DecryptionFailure:    {http.StatusBadRequest, codes.FailedPrecondition, "", 0, true},
	LimitExceeded:        {http.StatusBadRequest, codes.ResourceExhausted, "", 0, true},
	InternalServiceError: {http.StatusInternalServerError, codes.Internal, "", 0, true},
	ServiceUnavailable:   {http.StatusServiceUnavailable, codes.Unavailable, "", 0, false},
	UnsupportedOperation: {http.StatusBadRequest, codes.Unimplemented, "", 0, false},
	// Secrets Manager's Common Errors page gives AccessDeniedException and
	// ThrottlingException HTTP 400; the Query protocol (STS) sends 403 and
	// 429 (400 for Throttling in STS's docs, 429 kept for its SDK retries).
	AccessDeniedException: {http.StatusForbidden, codes.PermissionDenied, "AccessDenied", http.StatusBadRequest, false},
	Throttling:            {http.StatusTooManyRequests, codes.ResourceExhausted, "Throttling", http.StatusBadRequest, false},
	UnrecognizedClient:    {http.StatusForbidden, codes.Unauthenticated, "InvalidClientTokenId", 0, false},
	InvalidSignature:      {http.StatusForbidden, codes.Unauthenticated, "SignatureDoesNotMatch", 0, false},
	IncompleteSignature:   {http.StatusBadRequest, codes.Unauthenticated, "", 0, false},
	MissingAuthToken:      {http.StatusForbidden, codes.Unauthenticated, "MissingAuthenticationToken", 0, false},
	// An expired token is a 400, as AWS sends it, though the other
	// authentication failures are 403s.
	ExpiredToken: {http.StatusBadRequest, codes.Unauthenticated, "ExpiredToken", 0, false},
	// The protocol-level types never travel over gRPC: one that did would
	// be Coffer's own fault, hence Internal.
	UnknownOperation: {http.StatusBadRequest, codes.Internal, "", 0, false},
	Serialization:    {http.StatusBadRequest, codes.Internal, "", 0, false},
	RequestTooLarge:  {http.StatusRequestEntityTooLarge, codes.Internal, "", 0, false},
	InvalidAction:    {http.StatusBadRequest, codes.Internal, "", 0, false},

	KMSNotFound:         {http.StatusBadRequest, codes.NotFound, "", 0, false},
	KMSAlreadyExists:    {http.StatusBadRequest, codes.AlreadyExists, "", 0, false},
	KMSDisabled:         {http.StatusBadRequest, codes.FailedPrecondition, "", 0, false},
	KMSInvalidState:     {http.StatusBadRequest, codes.FailedPrecondition, "", 0, false},
	KMSInvalidArn:       {http.StatusBadRequest, codes.InvalidArgument, "", 0, false},
	KMSInvalidAliasName: {http.StatusBadRequest, codes.InvalidArgument, "", 0, false},
	KMSInvalidMarker:    {http.StatusBadRequest, codes.InvalidArgument, "", 0, false},
	KMSUnsupported:      {http.StatusBadRequest, codes.Unimplemented, "", 0, false},
	// STS answers these three only over the Query protocol.
	InvalidIdentityToken:  {http.StatusBadRequest, codes.Unauthenticated, "InvalidIdentityToken", 0, false},
	ExpiredIdentityToken:  {http.StatusBadRequest, codes.Unauthenticated, "ExpiredTokenException", 0, false},
	IDPCommunicationError: {http.StatusBadRequest, codes.Unavailable, "IDPCommunicationError", 0, false},
}

// HTTPStatus is the HTTP status the AWS protocols answer typ with.
func HTTPStatus(typ string) int {
	if a, ok := answers[typ]; ok {
		return a.status
	}
	return http.StatusBadRequest
}

// JSONStatus is the HTTP status Secrets Manager's awsJson1_1 protocol
// answers typ with: 400 for every client fault of the service model and
// AWS's Common Errors page, 500 for the model's one server fault.
func JSONStatus(typ string) int {
	if a, ok := answers[typ]; ok && a.json != 0 {
		return a.json
	}
	return HTTPStatus(typ)
}

// MessageMember is the JSON member an awsJson error body carries its
// message in: "Message" for the errors Secrets Manager's model declares
// (their structures name the member so), "message" for AWS's common
// errors, which the front end answers before the service.
func MessageMember(typ string) string {
	if a, ok := answers[typ]; ok && a.modeled {
		return "Message"
	}
	return "message"
}

// Modeled reports whether Secrets Manager's service model declares typ.
func Modeled(typ string) bool { return answers[typ].modeled }

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

// Types lists every type the table holds, for tests that check it against
// AWS's models.
func Types() []string {
	out := make([]string, 0, len(answers))
	for t := range answers {
		out = append(out, t)
	}
	return out
}
