package awsjson

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/cofferhq/coffer/server"
)

// refuseAuth fails the test if the handler authenticates anything.
type refuseAuth struct{ t *testing.T }

func (r refuseAuth) Authenticate(context.Context, *http.Request, []byte) (string, error) {
	r.t.Error("a request was authenticated before the node was ready")
	return "", &server.APIError{Type: server.TypeUnrecognizedClient, Message: "The security token included in the request is invalid."}
}

// Before the node is ready, every request is answered 503
// ServiceUnavailable with Retry-After: 1, before authentication: the SDK
// sees a retryable server error, never UnrecognizedClientException.
func TestNotReadyAnswers503(t *testing.T) {
	h := &Handler{Service: newService(t), Auth: refuseAuth{t}, Logger: discardLogger(),
		Gate: &server.Gate{Ready: func() error { return errors.New("catching up with the leader's log") }}}
	ts := startHandler(t, h)
	_, err := sdkClient(ts.URL).ListSecrets(t.Context(), &secretsmanager.ListSecretsInput{})
	var ae smithy.APIError
	var re *smithyhttp.ResponseError
	if !errors.As(err, &ae) || ae.ErrorCode() != "ServiceUnavailable" || !errors.As(err, &re) || re.HTTPStatusCode() != http.StatusServiceUnavailable {
		t.Fatalf("ListSecrets before ready: %v; want 503 ServiceUnavailable", err)
	}
	if !strings.Contains(ae.ErrorMessage(), "catching up with the leader's log") {
		t.Fatalf("message %q does not say why", ae.ErrorMessage())
	}
	if got := re.Response.Header.Get("Retry-After"); got != "1" {
		t.Fatalf("Retry-After %q, want 1", got)
	}
}
