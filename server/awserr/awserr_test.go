package awserr

import (
	"net/http"
	"testing"

	"google.golang.org/grpc/codes"
)

func TestAnswers(t *testing.T) {
	for _, c := range []struct {
		typ    string
		status int
		code   codes.Code
		query  string
	}{
		{ResourceNotFound, http.StatusBadRequest, codes.NotFound, ResourceNotFound},
		{Validation, http.StatusBadRequest, codes.InvalidArgument, "ValidationError"},
		{InternalServiceError, http.StatusInternalServerError, codes.Internal, InternalServiceError},
		{ServiceUnavailable, http.StatusServiceUnavailable, codes.Unavailable, ServiceUnavailable},
		{AccessDeniedException, http.StatusForbidden, codes.PermissionDenied, "AccessDenied"},
		{UnrecognizedClient, http.StatusForbidden, codes.Unauthenticated, "InvalidClientTokenId"},
		{InvalidSignature, http.StatusForbidden, codes.Unauthenticated, "SignatureDoesNotMatch"},
		{IncompleteSignature, http.StatusBadRequest, codes.Unauthenticated, IncompleteSignature},
		{MissingAuthToken, http.StatusForbidden, codes.Unauthenticated, "MissingAuthenticationToken"},
		{ExpiredToken, http.StatusBadRequest, codes.Unauthenticated, "ExpiredToken"},
		{RequestTooLarge, http.StatusRequestEntityTooLarge, codes.Internal, RequestTooLarge},
		{Throttling, http.StatusTooManyRequests, codes.ResourceExhausted, "Throttling"},
		// A type Coffer does not know is a client fault over HTTP and
		// Coffer's fault over gRPC.
		{"IncompleteSignatureException", http.StatusBadRequest, codes.Internal, "IncompleteSignatureException"},
	} {
		if got := HTTPStatus(c.typ); got != c.status {
			t.Errorf("HTTPStatus(%s) = %d, want %d", c.typ, got, c.status)
		}
		if got := GRPCCode(c.typ); got != c.code {
			t.Errorf("GRPCCode(%s) = %s, want %s", c.typ, got, c.code)
		}
		if got := QueryCode(c.typ); got != c.query {
			t.Errorf("QueryCode(%s) = %s, want %s", c.typ, got, c.query)
		}
	}
}

// TestJSONStatusAndMember: Secrets Manager's JSON protocol answers
// AccessDenied and Throttling with 400 (its Common Errors page), and names
// the message member as its model does.
func TestJSONStatusAndMember(t *testing.T) {
	for typ, want := range map[string]int{
		AccessDeniedException: http.StatusBadRequest, Throttling: http.StatusBadRequest,
		InvalidSignature: http.StatusForbidden, InternalServiceError: http.StatusInternalServerError,
		ResourceNotFound: http.StatusBadRequest, ServiceUnavailable: http.StatusServiceUnavailable,
	} {
		if got := JSONStatus(typ); got != want {
			t.Errorf("JSONStatus(%s) = %d, want %d", typ, got, want)
		}
	}
	if MessageMember(ResourceNotFound) != "Message" || MessageMember(Validation) != "message" || MessageMember(AccessDeniedException) != "message" {
		t.Error("message members")
	}
}
