package awsjson

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/smithy-go"
	smithytraits "github.com/aws/smithy-go/traits"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server"
	"github.com/cofferhq/coffer/server/awserr"
)

// sdkErrors are the error structures of the SDK's Secrets Manager model,
// with their fault ("client" or "server").
func sdkErrors(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for id, e := range secretsmanager.TypeRegistry.Entries {
		tr, ok := smithy.SchemaTrait[*smithytraits.Error](e.Schema)
		if !ok {
			continue
		}
		if e.Schema.Member("Message") == nil {
			t.Errorf("%s: the model's error has no Message member", id)
		}
		out[e.Schema.ID().Name] = tr.Type
	}
	if len(out) < 10 {
		t.Fatalf("only %d error structures in the SDK's model", len(out))
	}
	return out
}

// TestErrorEnvelopeMatchesModel derives, from the SDK's service model, the
// HTTP status and the message member of every error the model declares,
// and checks them on the raw HTTP response: awsJson1_1 sends a client
// fault as 400 and the server fault as 500, with the body member named as
// the model's structure names it ("Message"). Every other type Coffer
// answers is one of AWS's common errors, sent with "message".
func TestErrorEnvelopeMatchesModel(t *testing.T) {
	model := sdkErrors(t)
	for name := range model {
		if !awserr.Modeled(name) {
			t.Errorf("%s: declared by the SDK's model, not marked modeled in awserr", name)
		}
	}
	types := awserr.Types()
	slices.Sort(types)
	for _, typ := range types {
		fault, inModel := model[typ]
		if awserr.Modeled(typ) != inModel {
			t.Errorf("%s: awserr says modeled=%v, the SDK's model %v", typ, awserr.Modeled(typ), inModel)
		}
		want := http.StatusBadRequest
		switch {
		case fault == "server":
			want = http.StatusInternalServerError
		case inModel:
		default:
			// Common errors: AWS's Secrets Manager Common Errors page.
			want = commonErrorStatus(typ)
		}
		if got := awserr.JSONStatus(typ); got != want {
			t.Errorf("%s: JSON status %d, want %d", typ, got, want)
		}
		stub := &stubService{fn: func() (*cofferv1.GetRandomPasswordResponse, error) {
			return nil, &server.APIError{Type: typ, Message: "m-" + typ}
		}}
		ts := startHandler(t, &Handler{Service: stub, Auth: allowAll{}, Logger: discardLogger()})
		r := post(t, ts.URL, "secretsmanager.GetRandomPassword", `{}`)
		if typ == server.TypeInternalServiceError {
			// The cause of an internal error is never sent.
			r.wantError(t, want, typ, "")
			continue
		}
		r.wantError(t, want, typ, "m-"+typ)
		if inModel && !strings.Contains(r.raw, `"Message":`) {
			t.Errorf("%s: body %s", typ, r.raw)
		}
	}
}

// commonErrorStatus is the status AWS documents for an error outside the
// service model (docs.aws.amazon.com/secretsmanager/latest/apireference/
// CommonErrors.html, and the protocol's own faults).
func commonErrorStatus(typ string) int {
	switch typ {
	case awserr.ServiceUnavailable:
		return http.StatusServiceUnavailable
	case awserr.UnrecognizedClient, awserr.InvalidSignature, awserr.MissingAuthToken:
		return http.StatusForbidden
	case awserr.RequestTooLarge:
		return http.StatusRequestEntityTooLarge
	}
	return http.StatusBadRequest
}
