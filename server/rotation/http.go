package rotation

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"unicode/utf8"
)

// The headers of a request to an HTTP rotation function.
const (
	// SignatureHeader carries "sha256=" and the lower-case hex HMAC-SHA256
	// of the request body under the function's shared secret. It is sent
	// only when the function was registered with a secret; a function
	// checks it by recomputing the HMAC over the raw body it received and
	// comparing in constant time.
	SignatureHeader = "X-Coffer-Signature"
	// StepHeader repeats the event's Step, for logs and routing.
	StepHeader = "X-Coffer-Rotation-Step"
)

// maxErrorMessage bounds what is kept of a function's error message.
const maxErrorMessage = 1024

// MaxResponseBody is how much of a function's answer is read; the rest is
// discarded unread, so a function cannot make the leader buffer an
// unbounded body.
const MaxResponseBody = 64 << 10

// MinSharedSecret is the shortest signing secret a function may be
// registered with: an HMAC key shorter than 16 bytes can be guessed
// offline from one captured request.
const MinSharedSecret = 16

// ErrFunctionFailed is wrapped by the error of a step the function
// answered with a non-2xx status, or with a redirect.
var ErrFunctionFailed = errors.New("rotation function failed")

// noRedirects stops a client at the first redirect, handing back the 3xx
// answer itself: a redirect would send the signed event, and its signature
// header, to whatever host the function names.
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// NoRedirects returns a copy of c (http.DefaultClient when nil) that never
// follows a redirect. HTTPFunction applies it to whatever client it is
// given.
func NoRedirects(c *http.Client) *http.Client {
	if c == nil {
		c = http.DefaultClient
	}
	cp := *c
	cp.CheckRedirect = noRedirects
	return &cp
}

// HTTPFunction is a rotation function reached over HTTP(S): each step is
// the Lambda rotation event JSON, POSTed to URL. Redirects are never
// followed: a 3xx answer fails the step.
type HTTPFunction struct {
	URL string
	// Secret signs each request when non-empty.
	Secret []byte
	// Client defaults to http.DefaultClient; the step's deadline comes
	// from the context. Its CheckRedirect is overridden: Invoke calls a
	// copy that does not follow redirects.
	Client *http.Client
}

var _ Function = (*HTTPFunction)(nil)

// Sign returns the SignatureHeader value for body.
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Verify reports whether header, an X-Coffer-Signature value, is the
// signature of body under secret. It compares in constant time. A function
// written in Go can call it on the raw body it received before decoding it.
func Verify(secret, body []byte, header string) bool {
	return len(secret) > 0 && hmac.Equal([]byte(header), []byte(Sign(secret, body)))
}

// Invoke POSTs ev. A 2xx answer is success; anything else fails the step
// with the message the function returned. A redirect is not followed and
// fails the step.
func (f *HTTPFunction) Invoke(ctx context.Context, ev Event) error {
	body, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encode rotation event: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("rotation function request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(StepHeader, string(ev.Step))
	if len(f.Secret) > 0 {
		req.Header.Set(SignatureHeader, Sign(f.Secret, body))
	}
	resp, err := NoRedirects(f.Client).Do(req)
	if err != nil {
		return fmt.Errorf("call rotation function: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 == 3 {
		// Say where it pointed (not secret: the function chose it) so the
		// operator can register the final URL instead.
		return fmt.Errorf("%w: HTTP %d redirect to %q, which Coffer does not follow (the signed request must not go to another URL); register the function's final URL",
			ErrFunctionFailed, resp.StatusCode, truncate(resp.Header.Get("Location"), 256))
	}
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBody))
	if resp.StatusCode/100 == 2 {
		return nil
	}
	return fmt.Errorf("%w: HTTP %d: %s", ErrFunctionFailed, resp.StatusCode, errorMessage(raw))
}

// errorMessage takes the message out of a function's error body: the
// Lambda error shape {"errorMessage","errorType"}, the AWS {"message"} or
// {"Message"}, or else the text itself, cut to maxErrorMessage.
func errorMessage(raw []byte) string {
	var shaped struct {
		ErrorMessage string `json:"errorMessage"`
		ErrorType    string `json:"errorType"`
		Message      string `json:"message"`
		Error        string `json:"error"`
	}
	msg := ""
	if json.Unmarshal(raw, &shaped) == nil {
		switch {
		case shaped.ErrorMessage != "" && shaped.ErrorType != "":
			msg = shaped.ErrorType + ": " + shaped.ErrorMessage
		case shaped.ErrorMessage != "":
			msg = shaped.ErrorMessage
		case shaped.Message != "":
			msg = shaped.Message
		case shaped.Error != "":
			msg = shaped.Error
		}
	}
	if msg == "" {
		msg = strings.TrimSpace(string(raw))
	}
	if msg == "" {
		return "(no message)"
	}
	return truncate(msg, maxErrorMessage)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "…"
}
