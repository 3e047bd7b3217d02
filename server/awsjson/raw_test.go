package awsjson

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server"
	"github.com/cofferhq/coffer/server/awserr"
)

// rawResponse is one raw HTTP exchange's outcome.
type rawResponse struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

// post sends body to the handler as the given operation, as a raw AWS JSON
// caller (no SDK) would.
func post(t *testing.T, url, target, body string, header ...string) rawResponse {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	if target != "" {
		req.Header.Set("X-Amz-Target", target)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return do(t, req)
}

func do(t *testing.T, req *http.Request) rawResponse {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		t.Fatal(err)
	}
	r := rawResponse{status: resp.StatusCode, header: resp.Header, raw: buf.String()}
	if err := json.Unmarshal(buf.Bytes(), &r.body); err != nil {
		t.Fatalf("response body %q is not a JSON object: %v", buf.String(), err)
	}
	if id := resp.Header.Get(RequestIDHeader); len(id) != 36 {
		t.Fatalf("x-amzn-RequestId %q", id)
	}
	if ct := resp.Header.Get("Content-Type"); ct != ContentType {
		t.Fatalf("Content-Type %q", ct)
	}
	return r
}

// wantError asserts an AWS JSON error response.
func (r rawResponse) wantError(t *testing.T, status int, typ, msg string) {
	t.Helper()
	if r.status != status || r.body["__type"] != typ || r.header.Get(ErrorTypeHeader) != typ {
		t.Fatalf("got %d %s (header %q), want %d %s", r.status, r.raw, r.header.Get(ErrorTypeHeader), status, typ)
	}
	// The member is spelled as AWS spells it for the type: "Message" for
	// the errors of Secrets Manager's model, "message" for common errors,
	// and never both.
	member, other := awserr.MessageMember(typ), "message"
	if member == "message" {
		other = "Message"
	}
	if _, both := r.body[other]; both {
		t.Fatalf("%s: body %s has %q, AWS sends %q", typ, r.raw, other, member)
	}
	if m, _ := r.body[member].(string); !strings.Contains(m, msg) {
		t.Fatalf("%s %q, want it to contain %q", member, m, msg)
	}
}

func TestRawClientRequestToken(t *testing.T) {
	_, ts := startAWS(t)
	const want = "You must provide a ClientRequestToken value. We recommend a UUID-type value."
	post(t, ts.URL, "secretsmanager.CreateSecret", `{"Name":"a","SecretString":"v"}`).wantError(t, 400, server.TypeInvalidRequest, want)
	post(t, ts.URL, "secretsmanager.CreateSecret", `{"Name":"a","SecretBinary":"AAE="}`).wantError(t, 400, server.TypeInvalidRequest, want)

	// Without a value there is no version, so no token is needed.
	ok := post(t, ts.URL, "secretsmanager.CreateSecret", `{"Name":"a"}`)
	if ok.status != 200 || ok.body["Name"] != "a" || ok.body["VersionId"] != nil {
		t.Fatalf("create without value: %d %s", ok.status, ok.raw)
	}
	post(t, ts.URL, "secretsmanager.PutSecretValue", `{"SecretId":"a","SecretString":"v"}`).wantError(t, 400, server.TypeInvalidRequest, want)
	post(t, ts.URL, "secretsmanager.UpdateSecret", `{"SecretId":"a","SecretString":"v"}`).wantError(t, 400, server.TypeInvalidRequest, want)
	post(t, ts.URL, "secretsmanager.RotateSecret", `{"SecretId":"a"}`).wantError(t, 400, server.TypeInvalidParameter, want)
	if r := post(t, ts.URL, "secretsmanager.UpdateSecret", `{"SecretId":"a","Description":"d"}`); r.status != 200 {
		t.Fatalf("update without value: %d %s", r.status, r.raw)
	}

	put := post(t, ts.URL, "secretsmanager.PutSecretValue", `{"SecretId":"a","SecretString":"v","ClientRequestToken":"`+tokA+`"}`)
	if put.status != 200 || put.body["VersionId"] != tokA || fmt.Sprint(put.body["VersionStages"]) != "[AWSCURRENT]" {
		t.Fatalf("put with token: %d %s", put.status, put.raw)
	}
}

// TestRawClientRequestTokenOrder: a raw request without a
// ClientRequestToken that is wrong in another way too gets the answer AWS
// gives. AWS checks the model's constraints in a pass of their own before
// the operation runs, so those come first (ValidationException); then the
// token, before the operation's own checks — a recorded raw PutSecretValue,
// UpdateSecret or RotateSecret for a secret that does not exist is refused
// for its token, not as ResourceNotFoundException.
func TestRawClientRequestTokenOrder(t *testing.T) {
	_, ts := startAWS(t)
	const noToken = "You must provide a ClientRequestToken value."
	long := func(n int) string { return strings.Repeat("a", n) }
	labels := `["` + strings.Repeat(`l","`, 20) + `l"]`
	for _, c := range []struct {
		op, body string
		typ, msg string
	}{
		// The model's constraints first.
		{"CreateSecret", `{"Name":"a","SecretString":""}`, server.TypeValidation, "at 'secretString' failed to satisfy constraint: Member must have length greater than or equal to 1"},
		{"CreateSecret", `{"Name":"` + long(513) + `","SecretString":"v"}`, server.TypeValidation, "at 'name' failed to satisfy constraint"},
		{"CreateSecret", `{"Name":"a","SecretString":"v","Description":"` + long(2049) + `"}`, server.TypeValidation, "at 'description'"},
		{"PutSecretValue", `{"SecretId":"absent","SecretString":"` + long(65537) + `"}`, server.TypeValidation, "at 'secretString'"},
		{"PutSecretValue", `{"SecretId":"absent","SecretString":"v","VersionStages":` + labels + `}`, server.TypeValidation, "at 'versionStages'"},
		{"PutSecretValue", `{"SecretId":"` + long(2049) + `","SecretString":"v"}`, server.TypeValidation, "at 'secretId'"},
		{"UpdateSecret", `{"SecretId":"absent","SecretBinary":""}`, server.TypeValidation, "at 'secretBinary'"},
		{"RotateSecret", `{"SecretId":"absent","RotationRules":{"AutomaticallyAfterDays":0}}`, server.TypeValidation, "at 'rotationRules.automaticallyAfterDays'"},
		// Then the token: before the name's characters, the value's other
		// rules, the schedule and the secret's existence.
		{"CreateSecret", `{"Name":"bad name!","SecretString":"v"}`, server.TypeInvalidRequest, noToken},
		{"CreateSecret", `{"Name":"a","SecretString":"v","SecretBinary":"AAE="}`, server.TypeInvalidRequest, noToken},
		{"PutSecretValue", `{"SecretId":"absent","SecretString":"v"}`, server.TypeInvalidRequest, noToken},
		{"PutSecretValue", `{"SecretId":"bad name!"}`, server.TypeInvalidRequest, noToken},
		{"UpdateSecret", `{"SecretId":"absent","SecretString":"v"}`, server.TypeInvalidRequest, noToken},
		{"RotateSecret", `{"SecretId":"absent"}`, server.TypeInvalidParameter, noToken},
		{"RotateSecret", `{"SecretId":"absent","RotationRules":{"AutomaticallyAfterDays":5,"ScheduleExpression":"rate(10 days)"}}`, server.TypeInvalidParameter, noToken},
	} {
		post(t, ts.URL, "secretsmanager."+c.op, c.body).wantError(t, 400, c.typ, c.msg)
	}
	// With a token, the same requests reach the checks the token hid.
	post(t, ts.URL, "secretsmanager.CreateSecret", `{"Name":"bad name!","SecretString":"v","ClientRequestToken":"`+tokA+`"}`).
		wantError(t, 400, server.TypeValidation, "Invalid name.")
	post(t, ts.URL, "secretsmanager.PutSecretValue", `{"SecretId":"absent","SecretString":"v","ClientRequestToken":"`+tokA+`"}`).
		wantError(t, 400, server.TypeResourceNotFound, "")
	post(t, ts.URL, "secretsmanager.RotateSecret", `{"SecretId":"absent","ClientRequestToken":"`+tokA+`"}`).
		wantError(t, 400, server.TypeResourceNotFound, "")
}

func TestRawRouting(t *testing.T) {
	_, ts := startAWS(t)
	post(t, ts.URL, "", `{}`).wantError(t, 400, TypeUnknownOperation, "X-Amz-Target")
	post(t, ts.URL, "secretsmanager.Frobnicate", `{}`).wantError(t, 400, TypeUnknownOperation, "secretsmanager.Frobnicate")
	post(t, ts.URL, "kms.GetSecretValue", `{}`).wantError(t, 400, TypeUnknownOperation, "kms.GetSecretValue")
	post(t, ts.URL+"/v1/secrets", "secretsmanager.ListSecrets", `{}`).wantError(t, 404, TypeUnknownOperation, "POST /")

	req, _ := http.NewRequest(http.MethodGet, ts.URL, nil)
	r := do(t, req)
	r.wantError(t, 405, TypeUnknownOperation, "GET")
	if r.header.Get("Allow") != http.MethodPost {
		t.Fatalf("Allow %q", r.header.Get("Allow"))
	}

	// Content types: 1.1, 1.0 and none are accepted; anything else is not.
	for _, ct := range []string{"application/x-amz-json-1.0", "application/x-amz-json-1.1; charset=utf-8", ""} {
		req, _ := http.NewRequest(http.MethodPost, ts.URL, strings.NewReader(`{}`))
		req.Header.Set("X-Amz-Target", "secretsmanager.ListSecrets")
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		if r := do(t, req); r.status != 200 {
			t.Fatalf("Content-Type %q: %d %s", ct, r.status, r.raw)
		}
	}
	post(t, ts.URL, "secretsmanager.ListSecrets", `{}`, "Content-Type", "text/plain").wantError(t, 400, TypeSerialization, "Content-Type")

	// An empty body is {} (operations without input).
	if r := post(t, ts.URL, "secretsmanager.GetRandomPassword", ``); r.status != 200 || len(r.body["RandomPassword"].(string)) != 32 {
		t.Fatalf("empty body: %d %s", r.status, r.raw)
	}
}

func TestRawSerializationErrors(t *testing.T) {
	_, ts := startAWS(t)
	for _, c := range []struct{ target, body, msg string }{
		{"DescribeSecret", `{"SecretId":`, "not valid JSON"},
		{"DescribeSecret", `{"SecretId":"a"} {}`, "after its JSON value"},
		{"DescribeSecret", `["a"]`, "must be a JSON object"},
		{"PutSecretValue", "{\"SecretId\":\"a\",\"SecretString\":\"caf\xe9\"}", "not valid UTF-8"},
		{"DescribeSecret", `{"SecretId":5}`, "SecretId: expected a string, got a number"},
		{"GetRandomPassword", `{"PasswordLength":"12"}`, "PasswordLength: expected an integer, got a string"},
		{"GetRandomPassword", `{"PasswordLength":12.5}`, "PasswordLength: 12.5 is not an integer"},
		{"GetRandomPassword", `{"ExcludeNumbers":"true"}`, "ExcludeNumbers: expected a boolean"},
		{"ListSecrets", `{"MaxResults":3000000000}`, "MaxResults: 3000000000 is out of range"},
		{"ListSecrets", `{"Filters":[{"Key":"name","Values":"x"}]}`, "Filters[0].Values: expected a list, got a string"},
		{"ListSecrets", `{"Filters":{"Key":"name"}}`, "Filters: expected a list, got an object"},
		{"ListSecrets", `{"Filters":[null]}`, "Filters[0]: null is not allowed"},
		{"CreateSecret", `{"Name":"b","SecretBinary":"not base64!","ClientRequestToken":"` + tokA + `"}`, "SecretBinary: not valid base64"},
		{"CreateSecret", `{"Name":"b","Tags":[{"Key":1}]}`, "Tags[0].Key: expected a string"},
	} {
		post(t, ts.URL, "secretsmanager."+c.target, c.body).wantError(t, 400, TypeSerialization, c.msg)
	}

	// Unknown members are ignored, null members are absent, and an
	// integral float is an integer.
	r := post(t, ts.URL, "secretsmanager.DescribeSecret", `{"SecretId":"missing","SomeFutureMember":{"x":[1]}}`)
	r.wantError(t, 400, server.TypeResourceNotFound, "")
	if r := post(t, ts.URL, "secretsmanager.GetRandomPassword", `{"PasswordLength":2e1,"ExcludeCharacters":null}`); r.status != 200 || len(r.body["RandomPassword"].(string)) != 20 {
		t.Fatalf("2e1 as a length: %d %s", r.status, r.raw)
	}
}

func TestRawResponseShape(t *testing.T) {
	_, ts := startAWS(t)
	if r := post(t, ts.URL, "secretsmanager.ListSecrets", `{}`); r.raw != `{"SecretList":[]}` {
		t.Fatalf("empty list: %s", r.raw)
	}
	start := time.Now()
	created := post(t, ts.URL, "secretsmanager.CreateSecret", `{"Name":"shape","SecretString":"line1\nline2 \"q\" <&> \u2028","ClientRequestToken":"`+tokA+`"}`)
	if created.status != 200 {
		t.Fatalf("create: %s", created.raw)
	}
	if idx := created.header.Get(server.IndexHeader); idx == "" || idx == "0" {
		t.Fatalf("%s %q on a write", server.IndexHeader, idx)
	}
	r := post(t, ts.URL, "secretsmanager.DescribeSecret", `{"SecretId":"shape"}`)
	for _, absent := range []string{"Description", "RotationEnabled", "DeletedDate", "KmsKeyId", "Tags", "RotationRules", "LastRotatedDate"} {
		if _, ok := r.body[absent]; ok {
			t.Errorf("DescribeSecret has %s: %s", absent, r.raw)
		}
	}
	if !strings.Contains(r.raw, `"ARN":"arn:aws:secretsmanager:`) || !strings.Contains(r.raw, `"VersionIdsToStages":{"`+tokA+`":["AWSCURRENT"]}`) {
		t.Fatalf("DescribeSecret %s", r.raw)
	}
	// Timestamps are epoch seconds as JSON numbers, to the millisecond.
	created2, ok := r.body["CreatedDate"].(float64)
	if !ok || created2 < float64(start.Unix()-5) || created2 > float64(time.Now().Unix()+5) {
		t.Fatalf("CreatedDate %v", r.body["CreatedDate"])
	}
	if !regexp.MustCompile(`"CreatedDate":\d{10}(\.\d{1,3})?[,}]`).MatchString(r.raw) {
		t.Fatalf("CreatedDate not epoch seconds with milliseconds: %s", r.raw)
	}

	got := post(t, ts.URL, "secretsmanager.GetSecretValue", `{"SecretId":"shape"}`)
	if got.body["SecretString"] != "line1\nline2 \"q\" <&> \u2028" {
		t.Fatalf("value round trip: %s", got.raw)
	}
	if got.header.Get(server.IndexHeader) == "" {
		t.Fatalf("no %s on a read", server.IndexHeader)
	}
	v := post(t, ts.URL, "secretsmanager.ValidateResourcePolicy", `{"ResourcePolicy":"{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Deny\",\"Principal\":\"*\",\"Action\":\"secretsmanager:*\",\"Resource\":\"*\"}]}"}`)
	if v.raw != `{"PolicyValidationPassed":true,"ValidationErrors":[]}` {
		t.Fatalf("validate: %s", v.raw)
	}
}

func TestRawConsistencyHeaders(t *testing.T) {
	_, ts := startAWS(t)
	post(t, ts.URL, "secretsmanager.ListSecrets", `{}`, "X-Coffer-Consistency", "eventual").wantError(t, 400, server.TypeInvalidParameter, "linearizable or stale")
	post(t, ts.URL, "secretsmanager.ListSecrets", `{}`, "X-Coffer-Min-Index", "x").wantError(t, 400, server.TypeInvalidParameter, "log index")
	r := post(t, ts.URL, "secretsmanager.ListSecrets", `{}`, "X-Coffer-Consistency", "stale", "X-Coffer-Min-Index", "1")
	if r.status != 200 || r.header.Get(server.IndexHeader) == "" {
		t.Fatalf("stale read: %d %s %v", r.status, r.raw, r.header)
	}
}

// stubService answers GetRandomPassword with whatever fn does, and records
// what the handler put in the context.
type stubService struct {
	cofferv1.UnimplementedSecretsManagerServiceServer
	fn        func() (*cofferv1.GetRandomPasswordResponse, error)
	principal string
	requestID string
}

func (s *stubService) GetRandomPassword(ctx context.Context, _ *cofferv1.GetRandomPasswordRequest) (*cofferv1.GetRandomPasswordResponse, error) {
	s.principal, s.requestID = PrincipalFrom(ctx), server.RequestID(ctx)
	return s.fn()
}

func TestRawServiceFailures(t *testing.T) {
	stub := &stubService{}
	ts := startHandler(t, &Handler{Service: stub, Auth: allowAll{}, Logger: discardLogger()})
	const target = "secretsmanager.GetRandomPassword"

	stub.fn = func() (*cofferv1.GetRandomPasswordResponse, error) {
		return nil, errors.New("disk on fire at /var/lib/coffer")
	}
	r := post(t, ts.URL, target, `{}`)
	r.wantError(t, 500, server.TypeInternalServiceError, "An error occurred on the server side.")
	if strings.Contains(r.raw, "disk") {
		t.Fatalf("internal cause leaked: %s", r.raw)
	}
	if stub.principal != "test-principal" || stub.requestID != r.header.Get(RequestIDHeader) {
		t.Fatalf("service saw principal %q request id %q; response id %q", stub.principal, stub.requestID, r.header.Get(RequestIDHeader))
	}

	stub.fn = func() (*cofferv1.GetRandomPasswordResponse, error) { panic("bug") }
	post(t, ts.URL, target, `{}`).wantError(t, 500, server.TypeInternalServiceError, "An error occurred on the server side.")

	stub.fn = func() (*cofferv1.GetRandomPasswordResponse, error) { return nil, context.DeadlineExceeded }
	post(t, ts.URL, target, `{}`).wantError(t, 503, server.TypeServiceUnavailable, "timed out")

	stub.fn = func() (*cofferv1.GetRandomPasswordResponse, error) { return nil, nil }
	if r := post(t, ts.URL, target, `{}`); r.status != 200 || r.raw != `{}` {
		t.Fatalf("nil response: %d %s", r.status, r.raw)
	}

	// Operations the stub does not implement answer as gRPC's Unimplemented
	// would: an error, never a crash.
	post(t, ts.URL, "secretsmanager.ListSecrets", `{}`).wantError(t, 500, server.TypeInternalServiceError, "")
}

// denyAll refuses every request with the configured error.
type denyAll struct{ err error }

func (d denyAll) Authenticate(context.Context, *http.Request, []byte) (string, error) {
	return "", d.err
}

func TestRawAuthentication(t *testing.T) {
	for _, c := range []struct {
		typ    string
		status int
	}{
		{"IncompleteSignatureException", 400},
		{"IncompleteSignature", 400},
		{server.TypeUnrecognizedClient, 403},
		{server.TypeInvalidSignature, 403},
		{server.TypeMissingAuthToken, 403},
		// Secrets Manager's Common Errors: AccessDeniedException is a 400.
		{server.TypeAccessDeniedException, 400},
	} {
		stub := &stubService{fn: func() (*cofferv1.GetRandomPasswordResponse, error) {
			return &cofferv1.GetRandomPasswordResponse{RandomPassword: "x"}, nil
		}}
		ts := startHandler(t, &Handler{Service: stub, Auth: denyAll{&server.APIError{Type: c.typ, Message: "no: " + c.typ}}, Logger: discardLogger()})
		post(t, ts.URL, "secretsmanager.GetRandomPassword", `{}`).wantError(t, c.status, c.typ, "no: "+c.typ)
		if stub.requestID != "" {
			t.Fatalf("%s: the service was called", c.typ)
		}
		// Authentication comes before routing: an unauthenticated caller
		// learns nothing about operations.
		post(t, ts.URL, "secretsmanager.Nope", `{`).wantError(t, c.status, c.typ, "")
	}

	ts := startHandler(t, &Handler{Service: &stubService{}, Logger: discardLogger()})
	post(t, ts.URL, "secretsmanager.GetRandomPassword", `{}`).wantError(t, 500, server.TypeInternalServiceError, "")
}

func TestRawBodyLimit(t *testing.T) {
	stub := &stubService{fn: func() (*cofferv1.GetRandomPasswordResponse, error) { return &cofferv1.GetRandomPasswordResponse{}, nil }}
	ts := startHandler(t, &Handler{Service: stub, Auth: allowAll{}, Logger: discardLogger(), MaxBodyBytes: 64})
	post(t, ts.URL, "secretsmanager.GetRandomPassword", `{"ExcludeCharacters":"`+strings.Repeat("x", 100)+`"}`).wantError(t, 413, TypeRequestTooLarge, "64 bytes")
	if r := post(t, ts.URL, "secretsmanager.GetRandomPassword", `{"ExcludeCharacters":"xyz"}`); r.status != 200 {
		t.Fatalf("small body: %d %s", r.status, r.raw)
	}
}

func TestPrincipalFromEmptyContext(t *testing.T) {
	if p := PrincipalFrom(context.Background()); p != "" {
		t.Fatalf("principal %q outside a request", p)
	}
}
