package sigv4

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
)

// knownCodes are the Codes Verify may return.
var knownCodes = map[string]bool{
	CodeMissingAuthenticationToken: true,
	CodeIncompleteSignature:        true,
	CodeInvalidSignature:           true,
	CodeUnrecognizedClient:         true,
}

func FuzzVerify(f *testing.F) {
	body := []byte(getSecretValueBody)
	for _, build := range []func(testing.TB, string, []byte) *http.Request{newSDKRequest, newBotocoreRequest} {
		for _, c := range []Credentials{alice, rotator} {
			r := build(f, "https://secretsmanager.eu-west-1.coffer.internal/", body)
			sdkSign(f, r, body, c, "eu-west-1", signedAt)
			f.Add(r.Header.Get("Authorization"), r.Header.Get("X-Amz-Date"), r.Header.Get("X-Amz-Target"),
				"X-Amz-Security-Token", r.Header.Get("X-Amz-Security-Token"), "", body)
		}
	}
	f.Add("AWS4-HMAC-SHA256 Credential=a/b/c/d/e, SignedHeaders=host, Signature=00", "20261122T104512Z", "", "Host", "x", "a=b&c", []byte{})
	f.Add("AWS4-X ,,= =Credential==, Signature", "2026112T104512Z", "", "", "", "X-Amz-Algorithm=1", []byte("{"))

	v := newVerifier(signedAt)
	f.Fuzz(func(t *testing.T, auth, amzDate, target, headerName, headerValue, rawQuery string, body []byte) {
		r, err := http.NewRequest(http.MethodPost, "https://secretsmanager.eu-west-1.coffer.internal/", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		r.URL.RawQuery = rawQuery
		r.Header.Set("Content-Type", "application/x-amz-json-1.1")
		r.Header.Set("Amz-Sdk-Invocation-Id", "6c5b1b3e-8d0f-4f43-9a55-2b3c8f1d2e77")
		r.Header.Set("Amz-Sdk-Request", "attempt=1; max=3")
		for k, val := range map[string]string{"Authorization": auth, "X-Amz-Date": amzDate, "X-Amz-Target": target} {
			if val != "" {
				r.Header[k] = []string{val}
			}
		}
		if headerName != "" {
			r.Header[headerName] = append(r.Header[headerName], headerValue)
		}

		creds, region, err := v.Verify(context.Background(), r, body)
		if err == nil {
			if creds == nil || creds.Principal == "" || region != "eu-west-1" {
				t.Fatalf("Verify succeeded with %v in %q", creds, region)
			}
			return
		}
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("Verify = %v (%T), want an *Error", err, err)
		}
		if !knownCodes[e.Code] || e.Message == "" {
			t.Fatalf("Verify = %q: %q, want a known code and a message", e.Code, e.Message)
		}
		for _, secret := range []string{alice.SecretAccessKey, rotator.SecretAccessKey} {
			if strings.Contains(e.Message, secret) {
				t.Fatalf("message %q reveals a secret", e.Message)
			}
		}
	})
}
