package awsjson

import (
	"testing"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server"
	"github.com/cofferhq/coffer/test/testkit"
)

// TestPanicIsAudited: a request whose operation panics still leaves its
// record, and the caller gets InternalServiceError.
func TestPanicIsAudited(t *testing.T) {
	log := &testkit.RecordingAuditor[server.AuditRecord]{}
	stub := &stubService{fn: func() (*cofferv1.GetRandomPasswordResponse, error) { panic("bug") }}
	ts := startHandler(t, &Handler{Service: stub, Auth: allowAll{}, Logger: discardLogger(), Gate: &server.Gate{Audit: log, Node: "n1"}})
	r := post(t, ts.URL, "secretsmanager.GetRandomPassword", `{}`)
	r.wantError(t, 500, server.TypeInternalServiceError, "An error occurred on the server side.")
	recs := log.Records()
	if len(recs) != 1 {
		t.Fatalf("%d records for one panicking request: %+v", len(recs), recs)
	}
	if rec := recs[0]; rec.Operation != "GetRandomPassword" || rec.Principal != "test-principal" || rec.Protocol != "aws" ||
		rec.Outcome != "error" || rec.ErrorType != server.TypeInternalServiceError || rec.RequestID != r.header.Get(RequestIDHeader) {
		t.Errorf("record of the panicking request: %+v", rec)
	}
}
