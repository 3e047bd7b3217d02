package rotation

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// How a request to an HTTP rotation function is signed. SignatureHeader
// carries
//
//	t=<unix seconds>,v1=<lower-case hex HMAC-SHA256(secret, t + "." + function + "." + body)>
//
// where t is when the request was made, function the name the function was
// registered under and body the raw request body. Signing the time and the
// name with the body means a captured request can be replayed neither
// later (VerifySignature refuses a t older than its maximum age) nor
// against another function sharing the secret. Within the maximum age a
// replay is possible; it repeats a step the function has already run for
// the same token, which rotation functions handle anyway (their steps are
// idempotent per token, as AWS's are).

// DefaultMaxSignatureAge is how old a signature VerifyRequest accepts, and
// how far in the future: it bounds the replay window, and leaves room for
// clock skew between the region leader and the function.
const DefaultMaxSignatureAge = 5 * time.Minute

// signatureVersion names the scheme's only version; a verifier ignores
// parts it does not know, so a later scheme can be sent beside it.
const signatureVersion = "v1"

// Errors VerifySignature returns.
var (
	// ErrNoSignature: the request carries no X-Coffer-Signature.
	ErrNoSignature = errors.New("rotation: request is not signed")
	// ErrBadSignature: the header is malformed, or the signature is not
	// the body's (and time's and function's) under the secret.
	ErrBadSignature = errors.New("rotation: signature does not match")
	// ErrStaleSignature: the signature is valid but its time is further
	// from now than the maximum age: a replay, or clocks far apart.
	ErrStaleSignature = errors.New("rotation: signature is too old or too far in the future")
)

// Sign returns the SignatureHeader value for body, sent to function at t.
func Sign(secret []byte, function string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + "," + signatureVersion + "=" + hex.EncodeToString(mac(secret, ts, function, body))
}

func mac(secret []byte, ts, function string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write([]byte(function))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// VerifySignature checks header, an X-Coffer-Signature value, against the
// raw body a function received, the function's own name and its shared
// secret, at now: the signature must match (compared in constant time) and
// its time be within maxAge of now, either way (maxAge <= 0 means
// DefaultMaxSignatureAge). A function must check it before it decodes the
// body or acts. An empty secret verifies nothing.
func VerifySignature(secret []byte, function, header string, body []byte, now time.Time, maxAge time.Duration) error {
	if header == "" {
		return ErrNoSignature
	}
	if len(secret) == 0 {
		return fmt.Errorf("%w: no secret to verify with", ErrBadSignature)
	}
	if maxAge <= 0 {
		maxAge = DefaultMaxSignatureAge
	}
	var ts string
	var sigs [][]byte
	for part := range strings.SplitSeq(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return fmt.Errorf("%w: malformed header", ErrBadSignature)
		}
		switch k {
		case "t":
			ts = v
		case signatureVersion:
			sig, err := hex.DecodeString(v)
			if err != nil {
				return fmt.Errorf("%w: malformed header", ErrBadSignature)
			}
			sigs = append(sigs, sig)
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return fmt.Errorf("%w: malformed header", ErrBadSignature)
	}
	want := mac(secret, ts, function, body)
	matched := false
	for _, sig := range sigs {
		if hmac.Equal(sig, want) {
			matched = true
		}
	}
	if !matched {
		return ErrBadSignature
	}
	if d := now.Sub(time.Unix(sec, 0)); d > maxAge || d < -maxAge {
		return fmt.Errorf("%w: signed at %s, now %s, %s allowed", ErrStaleSignature,
			time.Unix(sec, 0).UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), maxAge)
	}
	return nil
}

// VerifyRequest is VerifySignature for a function written in Go: r's
// X-Coffer-Signature against body (r's raw body, already read) now, with
// DefaultMaxSignatureAge. function is the name the function was registered
// under.
//
//	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
//	if err != nil || rotation.VerifyRequest(r, body, secret, "my-rotator") != nil {
//		w.WriteHeader(http.StatusUnauthorized)
//		return
//	}
func VerifyRequest(r *http.Request, body, secret []byte, function string) error {
	return VerifySignature(secret, function, r.Header.Get(SignatureHeader), body, time.Now(), DefaultMaxSignatureAge)
}
