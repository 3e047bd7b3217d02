package awsjson

import (
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/server/awserr"
)

// FuzzHandler posts arbitrary bodies to arbitrary operations of a real
// service. Whatever the input, the handler must not panic, every response
// must be a JSON object with a request id, and every error must carry its
// type in both __type and X-Amzn-ErrorType. Bad input must never look like
// a server failure (InternalServiceError).
func FuzzHandler(f *testing.F) {
	names := slices.Sorted(maps.Keys(operations))
	h := &Handler{Service: newService(f), Auth: allowAll{}, Logger: discardLogger()}
	seeds := []struct {
		op   byte
		body string
	}{
		{0, `{}`},
		{2, `{"Name":"fuzz","SecretString":"v","ClientRequestToken":"aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"}`},
		{8, `{"SecretId":"fuzz","VersionStage":"AWSCURRENT"}`},
		{12, `{"SecretId":"fuzz","SecretBinary":"AAEC","VersionStages":["AWSPENDING"],"ClientRequestToken":"bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb"}`},
		{10, `{"Filters":[{"Key":"name","Values":["f"]}],"MaxResults":1,"SortBy":"name"}`},
		{6, `{"PasswordLength":1e3,"ExcludeCharacters":"abc"}`},
		{4, `{"SecretId":"fuzz","RecoveryWindowInDays":7}`},
		{0, `{"SecretIdList":["fuzz",null]}`},
		{255, `[`},
		{21, `{"SecretId":"fuzz","VersionStage":"AWSCURRENT","MoveToVersionId":"bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb"}`},
	}
	for _, s := range seeds {
		f.Add(s.op, s.body)
	}
	f.Fuzz(func(t *testing.T, op byte, body string) {
		target := "secretsmanager.Unknown"
		if int(op) < len(names) {
			target = TargetPrefix + names[op]
		}
		req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
		req.Header.Set("X-Amz-Target", target)
		req.Header.Set("Content-Type", ContentType)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)

		// The recorder keeps header names as written, AWS spelling included.
		if len(rec.Header()[RequestIDHeader]) != 1 {
			t.Fatalf("no request id")
		}
		var out map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			t.Fatalf("%s %q: response %q is not a JSON object: %v", target, body, rec.Body.String(), err)
		}
		if rec.Code == http.StatusOK {
			return
		}
		typ, _ := out["__type"].(string)
		if typ == "" || !slices.Equal(rec.Header()[ErrorTypeHeader], []string{typ}) {
			t.Fatalf("%s %q: error %d %s without a consistent type", target, body, rec.Code, rec.Body.String())
		}
		if _, ok := out[awserr.MessageMember(typ)].(string); !ok {
			t.Fatalf("%s %q: error without a message: %s", target, body, rec.Body.String())
		}
		if rec.Code >= 500 {
			t.Fatalf("%s %q: bad input answered as a server failure: %d %s", target, body, rec.Code, rec.Body.String())
		}
	})
}
