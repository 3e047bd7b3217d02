package server

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// fakeAudit records what the gate writes, failing when told to: Write
// when fail is set, Healthy when broken is.
type fakeAudit struct {
	mu      sync.Mutex
	records []AuditRecord
	fail    bool
	broken  error
}

func (f *fakeAudit) Write(r AuditRecord) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail {
		return errors.New("disk full")
	}
	f.records = append(f.records, r)
	return nil
}

func (f *fakeAudit) Healthy() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.broken
}

// set changes the faults.
func (f *fakeAudit) set(fail bool, broken error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail, f.broken = fail, broken
}

// written returns a copy of the records written so far.
func (f *fakeAudit) written() []AuditRecord {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]AuditRecord(nil), f.records...)
}

func (f *fakeAudit) HashValue(v string) string { return "hmac(" + v[:1] + "…)" }

func TestAuditParamsHashWhatCouldBeSecret(t *testing.T) {
	v := "the-canary-value"
	p := auditParams(&cofferv1.PutSecretValueRequest{SecretId: "app/db", SecretString: &v, ClientRequestToken: "tok-123",
		VersionStages: []string{"AWSCURRENT"}}, (&fakeAudit{}).HashValue)
	if p["secret_id"] != "app/db" || p["version_stages.count"] != "1" {
		t.Fatalf("params %v lack the plain ones", p)
	}
	for _, k := range []string{"secret_string", "client_request_token"} {
		if !strings.HasPrefix(p[k], "hmac(") {
			t.Fatalf("%s recorded as %q, want its HMAC", k, p[k])
		}
	}
	for _, val := range p {
		if strings.Contains(val, v) || strings.Contains(val, "tok-123") {
			t.Fatalf("params hold a value: %v", p)
		}
	}
	b := auditParams(&cofferv1.CreateSecretRequest{Name: "x", SecretBinary: []byte("binary-secret")}, (&fakeAudit{}).HashValue)
	if b["secret_binary"] != "hmac(b…)" {
		t.Fatalf("binary secret recorded as %q", b["secret_binary"])
	}
}

func TestGateAuditsDecisionsAndFailsClosed(t *testing.T) {
	svc, store := newTestService(t)
	ctx := context.Background()
	iam := NewIAM(svc, store)
	if _, err := iam.CreatePrincipal(ctx, &cofferv1.CreatePrincipalRequest{Name: "app"}); err != nil {
		t.Fatal(err)
	}
	log := &fakeAudit{}
	g := &Gate{Authz: iam.Authorizer(), Audit: log, Node: "n1"}
	call := Call{Protocol: "grpc", Operation: "GetSecretValue", Action: "secretsmanager:GetSecretValue",
		Caller: Caller{Principal: "app"}, Request: &cofferv1.GetSecretValueRequest{SecretId: "app/db"}}
	_, _, err := g.Begin(WithRequestID(ctx, "req-1"), call)
	if apiType(err) != TypeAccessDeniedException {
		t.Fatalf("Begin for a principal without policies: %v", err)
	}
	want := "User: arn:aws:iam::123456789012:user/app is not authorized to perform: secretsmanager:GetSecretValue on resource: " +
		"arn:aws:secretsmanager:us-east-1:123456789012:secret:app/db because no identity-based policy allows the secretsmanager:GetSecretValue action"
	if AsAPIError(err).Message != want {
		t.Fatalf("message\n got: %s\nwant: %s", AsAPIError(err).Message, want)
	}
	if len(log.records) != 1 || log.records[0].Decision != "deny" || log.records[0].ErrorType != TypeAccessDeniedException ||
		log.records[0].RequestID != "req-1" || log.records[0].Principal != "app" {
		t.Fatalf("audit records %+v", log.records)
	}

	call.Caller.Principal = RootPrincipal
	_, x, err := g.Begin(ctx, call)
	if err != nil {
		t.Fatal(err)
	}
	log.fail = true
	resp := &cofferv1.GetSecretValueResponse{Arn: "arn:x", VersionId: "v1"}
	if err := x.End(resp, nil); apiType(err) != TypeInternalServiceError {
		t.Fatalf("End with a failing audit log = %v, want InternalServiceError", err)
	}
	// A refused authentication is audited too, and its error stands.
	log.fail = false
	authErr := apiErr(TypeUnrecognizedClient, "The security token included in the request is invalid.")
	if err := g.Refused(ctx, Call{Protocol: "aws", Operation: "GetSecretValue"}, authErr); err != authErr {
		t.Fatalf("Refused = %v", err)
	}
	if last := log.records[len(log.records)-1]; last.Decision != "deny" || last.ErrorType != TypeUnrecognizedClient {
		t.Fatalf("refused request audited as %+v", last)
	}
}
