package rotation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestHTTPFunctionSignsAndReportsErrors: the event is POSTed as the Lambda
// JSON, signed over the exact body; a non-2xx answer's message comes back.
func TestHTTPFunctionSignsAndReportsErrors(t *testing.T) {
	t.Parallel()
	secret := []byte("shared-secret-0123456789")
	var got Event
	var sigOK bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		sigOK = VerifyRequest(r, body, secret, "rot") == nil
		var raw map[string]string
		_ = json.Unmarshal(body, &raw)
		_ = json.Unmarshal(body, &got)
		if raw["SecretId"] == "" || raw["ClientRequestToken"] == "" || raw["Step"] != r.Header.Get(StepHeader) {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		if got.Step == StepSetSecret {
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = io.WriteString(w, `{"errorType":"ValueError","errorMessage":"Unable to log into database with previous, current, or pending secret"}`)
		}
	}))
	defer srv.Close()
	f := &HTTPFunction{URL: srv.URL, Name: "rot", Secret: secret, InsecureHTTP: true}
	ev := Event{Step: StepCreateSecret, SecretID: "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbC123", ClientRequestToken: "tok-1234567890-1234567890-123456"}
	if err := f.Invoke(context.Background(), ev); err != nil {
		t.Fatalf("createSecret: %v", err)
	}
	if got != ev || !sigOK {
		t.Fatalf("function saw %+v (signature valid %v), want %+v", got, sigOK, ev)
	}
	ev.Step = StepSetSecret
	err := f.Invoke(context.Background(), ev)
	if !errors.Is(err, ErrFunctionFailed) || !strings.HasSuffix(err.Error(), "HTTP 500: ValueError: Unable to log into database with previous, current, or pending secret") {
		t.Fatalf("setSecret error = %v", err)
	}
}

func TestErrorMessageShapes(t *testing.T) {
	t.Parallel()
	for body, want := range map[string]string{
		`{"message":"nope"}`:     "nope",
		`{"Message":"Nope"}`:     "Nope",
		`{"errorMessage":"x"}`:   "x",
		"plain text failure\n":   "plain text failure",
		"":                       "(no message)",
		strings.Repeat("é", 600): strings.Repeat("é", 512) + "…",
	} {
		if got := errorMessage([]byte(body)); got != want {
			t.Errorf("errorMessage(%.20q) = %.40q, want %.40q", body, got, want)
		}
	}
}

// verifyingHandler is what a function should do with the signature: check
// it over the raw body before anything else, and refuse the request if it
// does not verify.
func verifyingHandler(secret []byte, name string, calls *atomic.Int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil || VerifyRequest(r, body, secret, name) != nil {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"message":"bad or missing signature"}`)
			return
		}
		calls.Add(1)
	})
}

// TestHTTPFunctionSignatureChecked: a verifying function accepts the
// request signed with its secret for it, and refuses one signed with
// another secret or for another function; a function without a secret is
// never called.
func TestHTTPFunctionSignatureChecked(t *testing.T) {
	t.Parallel()
	secret := []byte("0123456789abcdef-shared")
	var accepted atomic.Int64
	srv := httptest.NewServer(verifyingHandler(secret, "rot", &accepted))
	defer srv.Close()
	ev := Event{Step: StepTestSecret, SecretID: "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbC123", ClientRequestToken: "tok-1234567890-1234567890-123456"}

	if err := (&HTTPFunction{URL: srv.URL, Name: "rot", Secret: secret, InsecureHTTP: true}).Invoke(context.Background(), ev); err != nil {
		t.Fatalf("correctly signed: %v", err)
	}
	for name, f := range map[string]*HTTPFunction{
		"signed with another":  {URL: srv.URL, Name: "rot", Secret: []byte("fedcba9876543210-other"), InsecureHTTP: true},
		"signed with a prefix": {URL: srv.URL, Name: "rot", Secret: secret[:len(secret)-1], InsecureHTTP: true},
		"signed for another":   {URL: srv.URL, Name: "other-rot", Secret: secret, InsecureHTTP: true},
	} {
		err := f.Invoke(context.Background(), ev)
		if !errors.Is(err, ErrFunctionFailed) || !strings.HasSuffix(err.Error(), "HTTP 401: bad or missing signature") {
			t.Errorf("%s: err = %v, want the function's refusal", name, err)
		}
	}
	if err := (&HTTPFunction{URL: srv.URL, Name: "rot", InsecureHTTP: true}).Invoke(context.Background(), ev); !errors.Is(err, ErrInsecureFunction) {
		t.Errorf("unsigned: err = %v, want ErrInsecureFunction and no call", err)
	}
	if n := accepted.Load(); n != 1 {
		t.Fatalf("the function accepted %d requests, want only the signed one", n)
	}
	if err := VerifySignature(nil, "rot", Sign(nil, "rot", time.Now(), []byte("{}")), []byte("{}"), time.Now(), 0); err == nil {
		t.Fatal("VerifySignature accepted a signature under an empty secret")
	}
}

// TestHTTPFunctionDoesNotFollowRedirects: a function answering with a
// redirect fails the step with a message naming it, and the signed request
// never reaches the redirect's target, even with a client that would
// follow redirects.
func TestHTTPFunctionDoesNotFollowRedirects(t *testing.T) {
	t.Parallel()
	var reached atomic.Int64
	target := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reached.Add(1) }))
	defer target.Close()
	for _, code := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, target.URL+"/elsewhere", code)
		}))
		client := &http.Client{} // follows redirects by default
		f := &HTTPFunction{URL: redirector.URL, Name: "rot", Secret: []byte("0123456789abcdef"), InsecureHTTP: true, Client: client}
		err := f.Invoke(context.Background(), Event{Step: StepCreateSecret, SecretID: "s", ClientRequestToken: "t"})
		redirector.Close()
		if !errors.Is(err, ErrFunctionFailed) || !strings.Contains(err.Error(), fmt.Sprintf("HTTP %d redirect to %q", code, target.URL+"/elsewhere")) ||
			!strings.Contains(err.Error(), "does not follow") {
			t.Errorf("HTTP %d: err = %v, want a failed step naming the redirect", code, err)
		}
		if client.CheckRedirect != nil {
			t.Fatal("Invoke changed the caller's client")
		}
	}
	if n := reached.Load(); n != 0 {
		t.Fatalf("the redirect target received %d requests, want none", n)
	}
}

// endlessBody is a response body that never ends, counting what is read.
type endlessBody struct {
	read   atomic.Int64
	closed atomic.Bool
}

func (b *endlessBody) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	b.read.Add(int64(len(p)))
	return len(p), nil
}

func (b *endlessBody) Close() error {
	b.closed.Store(true)
	return nil
}

type bodyTransport struct {
	status int
	body   *endlessBody
}

func (t bodyTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		_ = r.Body.Close()
	}
	return &http.Response{StatusCode: t.status, Header: http.Header{}, Body: t.body, Request: r}, nil
}

// TestHTTPFunctionResponseCapped: an answer with an endless body is read
// up to MaxResponseBody and no further, for success and failure alike, and
// the message kept of a failure is cut short.
func TestHTTPFunctionResponseCapped(t *testing.T) {
	t.Parallel()
	for _, status := range []int{http.StatusOK, http.StatusInternalServerError} {
		body := &endlessBody{}
		f := &HTTPFunction{URL: "https://function.invalid/hook", Name: "rot", Secret: []byte("0123456789abcdef"),
			Client: &http.Client{Transport: bodyTransport{status, body}}}
		err := f.Invoke(context.Background(), Event{Step: StepSetSecret, SecretID: "s", ClientRequestToken: "t"})
		if status == http.StatusOK && err != nil {
			t.Fatalf("HTTP 200 with an endless body: %v", err)
		}
		if status != http.StatusOK && (!errors.Is(err, ErrFunctionFailed) || len(err.Error()) > maxErrorMessage+200) {
			t.Fatalf("HTTP %d with an endless body: error of %d bytes: %.200v", status, len(err.Error()), err)
		}
		if n := body.read.Load(); n > MaxResponseBody {
			t.Fatalf("HTTP %d: read %d bytes of the answer, want at most %d", status, n, MaxResponseBody)
		}
		if !body.closed.Load() {
			t.Fatalf("HTTP %d: the answer's body was not closed", status)
		}
	}
}
