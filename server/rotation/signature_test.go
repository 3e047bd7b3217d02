package rotation

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// captureTransport records the one request a function call makes and
// answers 200, as a network observer would see it.
type captureTransport struct {
	header http.Header
	body   []byte
}

func (c *captureTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.header = r.Header.Clone()
	c.body, _ = io.ReadAll(r.Body)
	return &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("")), Request: r}, nil
}

// TestReplayedRotationRequestIsRefused (issue 13, item 10): a signed
// request captured on its way to a function verifies when it arrives, but
// the same bytes replayed after the maximum age, sent to another function
// sharing the secret, or with the time or body changed, are refused by the
// documented verifier.
func TestReplayedRotationRequestIsRefused(t *testing.T) {
	t.Parallel()
	secret := []byte("0123456789abcdef-shared-secret")
	sent := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	capture := &captureTransport{}
	f := &HTTPFunction{URL: "https://rotator.example/hook", Name: "db-rotator", Secret: secret,
		Client: &http.Client{Transport: capture}, Now: func() time.Time { return sent }}
	ev := Event{Step: StepFinishSecret, SecretID: "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbC123", ClientRequestToken: "tok-1"}
	if err := f.Invoke(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	header, body := capture.header.Get(SignatureHeader), capture.body
	if !strings.HasPrefix(header, "t=1795348800,v1=") {
		t.Fatalf("%s: %q, want t=<unix>,v1=<hex>", SignatureHeader, header)
	}

	if err := VerifySignature(secret, "db-rotator", header, body, sent.Add(30*time.Second), 0); err != nil {
		t.Fatalf("the request as it arrived: %v", err)
	}
	for name, tc := range map[string]struct {
		function, header string
		body             []byte
		at               time.Time
		want             error
	}{
		"replayed an hour later":     {"db-rotator", header, body, sent.Add(time.Hour), ErrStaleSignature},
		"replayed after the max age": {"db-rotator", header, body, sent.Add(DefaultMaxSignatureAge + time.Second), ErrStaleSignature},
		"dated in the future":        {"db-rotator", header, body, sent.Add(-DefaultMaxSignatureAge - time.Second), ErrStaleSignature},
		"sent to another function":   {"other-rotator", header, body, sent, ErrBadSignature},
		"time moved forward":         {"db-rotator", strings.Replace(header, "t=1795348800", "t=1795352400", 1), body, sent.Add(time.Hour), ErrBadSignature},
		"body changed":               {"db-rotator", header, bytes.Replace(body, []byte("finishSecret"), []byte("createSecret"), 1), sent, ErrBadSignature},
		"not signed":                 {"db-rotator", "", body, sent, ErrNoSignature},
		"malformed":                  {"db-rotator", "sha256=" + strings.Repeat("0", 64), body, sent, ErrBadSignature},
	} {
		if err := VerifySignature(secret, tc.function, tc.header, tc.body, tc.at, 0); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
	// VerifyRequest is the same check against the wall clock: the
	// captured request, from a clock long past, is refused.
	r, _ := http.NewRequest(http.MethodPost, "https://rotator.example/hook", bytes.NewReader(body))
	r.Header.Set(SignatureHeader, header)
	if err := VerifyRequest(r, body, secret, "db-rotator"); !errors.Is(err, ErrStaleSignature) {
		t.Errorf("VerifyRequest of the replay: %v, want ErrStaleSignature", err)
	}
	r.Header.Set(SignatureHeader, Sign(secret, "db-rotator", time.Now(), body))
	if err := VerifyRequest(r, body, secret, "db-rotator"); err != nil {
		t.Errorf("VerifyRequest of a fresh signature: %v", err)
	}
}

// TestFunctionRegistrationRules: a function needs a shared secret of at
// least MinSharedSecret bytes and an https URL; plain http only when asked
// for explicitly and only to localhost or a loopback address. Invoke
// applies the same rules to a function registered before them.
func TestFunctionRegistrationRules(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		url      string
		secret   int
		insecure bool
		ok       bool
	}{
		{"https://rotator.example/hook", 32, false, true},
		{"https://rotator.example/hook", 0, false, false},
		{"https://rotator.example/hook", MinSharedSecret - 1, false, false},
		{"https://rotator.example/hook", 32, true, false},
		{"http://rotator.example/hook", 32, false, false},
		{"http://rotator.example/hook", 32, true, false},
		{"http://10.0.0.7:8080/hook", 32, true, false},
		{"http://127.0.0.1:8080/hook", 32, false, false},
		{"http://127.0.0.1:8080/hook", 32, true, true},
		{"http://[::1]:8080/hook", 32, true, true},
		{"http://localhost:8080/hook", 32, true, true},
		{"http://localhost:8080/hook", 0, true, false},
		{"ftp://127.0.0.1/hook", 32, true, false},
	} {
		err := CheckRegistration(tc.url, tc.secret, tc.insecure)
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrInsecureFunction)) {
			t.Errorf("CheckRegistration(%s, %d-byte secret, insecure %v) = %v, want ok %v", tc.url, tc.secret, tc.insecure, err, tc.ok)
		}
		if tc.ok {
			continue
		}
		capture := &captureTransport{}
		f := &HTTPFunction{URL: tc.url, Name: "rot", Secret: make([]byte, tc.secret), InsecureHTTP: tc.insecure, Client: &http.Client{Transport: capture}}
		if err := f.Invoke(context.Background(), Event{Step: StepCreateSecret}); !errors.Is(err, ErrInsecureFunction) || capture.header != nil {
			t.Errorf("Invoke of %s (%d-byte secret, insecure %v): %v, want ErrInsecureFunction and no request", tc.url, tc.secret, tc.insecure, err)
		}
	}
}
