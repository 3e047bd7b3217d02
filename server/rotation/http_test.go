package rotation

import (
	"context"
	"crypto/hmac"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestHTTPFunctionSignsAndReportsErrors: the event is POSTed as the Lambda
// JSON, signed over the exact body; a non-2xx answer's message comes back.
func TestHTTPFunctionSignsAndReportsErrors(t *testing.T) {
	t.Parallel()
	secret := []byte("shared-secret")
	var got Event
	var sigOK bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		sigOK = hmac.Equal([]byte(r.Header.Get(SignatureHeader)), []byte(Sign(secret, body)))
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
	f := &HTTPFunction{URL: srv.URL, Secret: secret}
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
