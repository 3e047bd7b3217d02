package sts

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server"
	"github.com/cofferhq/coffer/test/testkit"
)

type asApp struct{}

func (asApp) AuthenticateSTS(context.Context, *http.Request, []byte) (server.Identity, error) {
	return server.Identity{Principal: "app", AccessKeyID: "AKIAEXAMPLE"}, nil
}

type fakeIAM struct{}

func (fakeIAM) GetSessionToken(context.Context, *cofferv1.GetSessionTokenRequest) (*cofferv1.GetSessionTokenResponse, error) {
	return &cofferv1.GetSessionTokenResponse{}, nil
}

func (fakeIAM) GetCallerIdentity(ctx context.Context, _ *cofferv1.GetCallerIdentityRequest) (*cofferv1.GetCallerIdentityResponse, error) {
	return &cofferv1.GetCallerIdentityResponse{Principal: "app"}, nil
}

func (fakeIAM) AssumeRole(context.Context, *cofferv1.AssumeRoleRequest) (*cofferv1.AssumeRoleResponse, error) {
	return &cofferv1.AssumeRoleResponse{}, nil
}

func (fakeIAM) AssumeRoleWithWebIdentity(context.Context, *cofferv1.AssumeRoleWithWebIdentityRequest) (*cofferv1.AssumeRoleResponse, error) {
	return &cofferv1.AssumeRoleResponse{}, nil
}

func TestOperationName(t *testing.T) {
	for in, want := range map[string]string{
		"GetCallerIdentity":       "GetCallerIdentity",
		"AssumeRole":              "AssumeRole",
		"":                        "",
		"Get Caller":              "",
		"Get\nCaller":             "",
		"9Lives":                  "",
		"Ab9":                     "Ab9",
		strings.Repeat("A", 64):   strings.Repeat("A", 64),
		strings.Repeat("A", 65):   "",
		"GetCallerIdentity\u00e9": "",
	} {
		if got := operationName(in); got != want {
			t.Errorf("operationName(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestRawActionNeverReachesTheAuditRecord: whatever a caller puts in Action,
// the record's operation is a bounded name or empty.
func TestRawActionNeverReachesTheAuditRecord(t *testing.T) {
	log := &testkit.RecordingAuditor[server.AuditRecord]{}
	h := &Handler{IAM: fakeIAM{}, Auth: asApp{}, Gate: &server.Gate{Audit: log, Node: "n1"}}
	for _, action := range []string{"GetCallerIdentity", "AssumeRole", strings.Repeat("X", 5000), "Get\n{\"forged\":true}"} {
		form := url.Values{"Action": {action}, "Version": {Version}}
		req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		h.ServeHTTP(httptest.NewRecorder(), req)
	}
	var ops []string
	for _, r := range log.Records() {
		ops = append(ops, r.Operation)
	}
	if want := []string{"GetCallerIdentity", "AssumeRole", "", ""}; strings.Join(ops, "|") != strings.Join(want, "|") {
		t.Errorf("recorded operations %q, want %q", ops, want)
	}
}

// refuseAll fails the test if the handler authenticates anything.
type refuseAll struct{ t *testing.T }

func (r refuseAll) AuthenticateSTS(context.Context, *http.Request, []byte) (server.Identity, error) {
	r.t.Error("a request was authenticated before the node was ready")
	return server.Identity{}, &server.APIError{Type: server.TypeUnrecognizedClient, Message: "unknown"}
}

// Before the node is ready, STS answers 503 ServiceUnavailable (a Receiver
// fault, which SDKs retry) with Retry-After, without authenticating.
func TestNotReadyAnswers503(t *testing.T) {
	h := &Handler{IAM: fakeIAM{}, Auth: refuseAll{t}, Gate: &server.Gate{Ready: func() error { return errNotReady }}}
	form := url.Values{"Action": {"GetCallerIdentity"}, "Version": {Version}}
	req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	body := w.Body.String()
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") != "1" ||
		!strings.Contains(body, "<Code>ServiceUnavailable</Code>") || !strings.Contains(body, "<Type>Receiver</Type>") {
		t.Fatalf("status %d, Retry-After %q, body %s; want 503 ServiceUnavailable with Retry-After: 1", w.Code, w.Header().Get("Retry-After"), body)
	}
}

var errNotReady = errors.New("waiting for a leader")
