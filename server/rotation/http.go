package rotation

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"
)

// The headers of a request to an HTTP rotation function.
const (
	// SignatureHeader carries the request's signature, "t=<unix>,v1=<hex>"
	// (see signature.go): an HMAC-SHA256 under the function's shared
	// secret of the time, the function's name and the raw body. A function
	// checks it with VerifySignature (or VerifyRequest) before it decodes
	// the body.
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

// ErrInsecureFunction is wrapped by the error of a step that was not sent
// because the function's registration does not meet the rules every call
// must: a shared secret to sign with, and https unless the function was
// registered with InsecureHTTP for a loopback URL. A function registered
// before those rules has to be registered again.
var ErrInsecureFunction = errors.New("rotation function is not called: insecure registration")

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
// the Lambda rotation event JSON, POSTed to URL and signed (SignatureHeader)
// with Secret over the time, Name and body. Redirects are never followed: a
// 3xx answer fails the step.
type HTTPFunction struct {
	URL string
	// Name is the name the function was registered under; it is signed, so
	// a request made for one function is refused by another that shares
	// its secret.
	Name string
	// Secret signs each request; a function without one is never called.
	Secret []byte
	// InsecureHTTP allows an http:// URL, and only one whose host is a
	// loopback address or localhost (LoopbackURL): the event names secrets
	// and tokens, and plain HTTP between hosts exposes it.
	InsecureHTTP bool
	// Client defaults to http.DefaultClient; the step's deadline comes
	// from the context. Its CheckRedirect is overridden: Invoke calls a
	// copy that does not follow redirects.
	Client *http.Client
	// Now is the clock the signature's time comes from; nil means
	// time.Now. It is the wall clock on purpose: the function compares it
	// with its own.
	Now func() time.Time
}

var _ Function = (*HTTPFunction)(nil)

// LoopbackURL reports whether u's host is localhost or a loopback IP
// address, where plain HTTP never leaves the host.
func LoopbackURL(u *url.URL) bool {
	host := u.Hostname()
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// CheckRegistration reports why a function at rawURL with a shared secret
// of secretLen bytes must not be called, or nil: the rules RegisterFunction
// applies and Invoke applies again.
func CheckRegistration(rawURL string, secretLen int, insecureHTTP bool) error {
	u, err := url.Parse(rawURL)
	switch {
	case err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https"):
		return fmt.Errorf("%w: the URL must be an absolute https URL", ErrInsecureFunction)
	case secretLen == 0:
		return fmt.Errorf("%w: it has no shared secret to sign requests with", ErrInsecureFunction)
	case secretLen < MinSharedSecret:
		return fmt.Errorf("%w: its shared secret is shorter than %d bytes", ErrInsecureFunction, MinSharedSecret)
	case u.Scheme == "https" && insecureHTTP:
		return fmt.Errorf("%w: insecure HTTP is asked for an https URL", ErrInsecureFunction)
	case u.Scheme == "http" && !insecureHTTP:
		return fmt.Errorf("%w: the URL is plain http, which needs an explicit insecure-HTTP registration", ErrInsecureFunction)
	case u.Scheme == "http" && !LoopbackURL(u):
		return fmt.Errorf("%w: plain http is allowed only to localhost or a loopback address", ErrInsecureFunction)
	}
	return nil
}

// Invoke POSTs ev, signed. A 2xx answer is success; anything else fails the
// step with the message the function returned. A redirect is not followed
// and fails the step. A function whose registration breaks the rules
// (CheckRegistration) is not called: the step fails with
// ErrInsecureFunction.
func (f *HTTPFunction) Invoke(ctx context.Context, ev Event) error {
	if err := CheckRegistration(f.URL, len(f.Secret), f.InsecureHTTP); err != nil {
		return fmt.Errorf("rotation function %s: %w; register it again with a secret (and an https URL)", f.Name, err)
	}
	body, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encode rotation event: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("rotation function request: %w", err)
	}
	now := time.Now
	if f.Now != nil {
		now = f.Now
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(StepHeader, string(ev.Step))
	req.Header.Set(SignatureHeader, Sign(f.Secret, f.Name, now(), body))
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
