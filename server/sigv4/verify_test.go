package sigv4

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestVerifyRefuses starts each case from a valid SDK-signed request and
// breaks one thing.
func TestVerifyRefuses(t *testing.T) {
	body := []byte(getSecretValueBody)
	const url = "https://secretsmanager.eu-west-1.coffer.internal/"
	const goodCredential = "Credential=AKIACOFFERALICE00001/20261122/eu-west-1/secretsmanager/aws4_request"
	sign := func(t *testing.T, c Credentials) *http.Request {
		r := newSDKRequest(t, url, body)
		sdkSign(t, r, body, c, "eu-west-1", signedAt)
		return r
	}
	// setAuth replaces the Authorization header, keeping the real signature
	// and signed headers where the template says %s.
	setAuth := func(r *http.Request, template string) {
		r.Header.Set("Authorization", strings.NewReplacer("{sh}", signedHeadersOf(r), "{sig}", signatureOf(r)).Replace(template))
	}

	for _, tc := range []struct {
		name string
		// prepare returns the request, the body Verify sees and the
		// verifier's clock.
		prepare func(t *testing.T) (*http.Request, []byte, time.Time)
		code    string
		message string // exact, or "" to check only that it is not empty
	}{
		{
			name: "wrong secret",
			prepare: func(t *testing.T) (*http.Request, []byte, time.Time) {
				c := alice
				c.SecretAccessKey = "not/alice's/secret"
				return sign(t, c), body, signedAt
			},
			code: CodeInvalidSignature, message: msgSignatureInvalid,
		},
		{
			name:    "unknown access key",
			prepare: func(t *testing.T) (*http.Request, []byte, time.Time) { return sign(t, stranger), body, signedAt },
			code:    CodeUnrecognizedClient, message: "The security token included in the request is invalid.",
		},
		{
			name:    "key without a secret",
			prepare: func(t *testing.T) (*http.Request, []byte, time.Time) { return sign(t, noSecret), body, signedAt },
			code:    CodeUnrecognizedClient, message: msgTokenInvalid,
		},
		{
			name: "one byte of the body changed",
			prepare: func(t *testing.T) (*http.Request, []byte, time.Time) {
				tampered := bytes.Clone(body)
				tampered[len(tampered)-3] ^= 1
				return sign(t, alice), tampered, signedAt
			},
			code: CodeInvalidSignature, message: msgSignatureInvalid,
		},
		{
			name: "signed header changed (X-Amz-Target)",
			prepare: func(t *testing.T) (*http.Request, []byte, time.Time) {
				r := sign(t, alice)
				r.Header.Set("X-Amz-Target", "secretsmanager.DeleteSecret")
				return r, body, signedAt
			},
			code: CodeInvalidSignature, message: msgSignatureInvalid,
		},
		{
			name: "method changed",
			prepare: func(t *testing.T) (*http.Request, []byte, time.Time) {
				r := sign(t, alice)
				r.Method = http.MethodPut
				return r, body, signedAt
			},
			code: CodeInvalidSignature, message: msgSignatureInvalid,
		},
		{
			name: "signed 16 minutes ago",
			prepare: func(t *testing.T) (*http.Request, []byte, time.Time) {
				return sign(t, alice), body, signedAt.Add(16 * time.Minute)
			},
			code:    CodeInvalidSignature,
			message: "Signature expired: 20261122T104512Z is now earlier than 20261122T104612Z (20261122T110112Z - 15 min.)",
		},
		{
			name: "signed 16 minutes from now",
			prepare: func(t *testing.T) (*http.Request, []byte, time.Time) {
				return sign(t, alice), body, signedAt.Add(-16 * time.Minute)
			},
			code:    CodeInvalidSignature,
			message: "Signature not yet current: 20261122T104512Z is still later than 20261122T104412Z (20261122T102912Z + 15 min.)",
		},
		{
			name: "X-Amz-Date moved by a second",
			prepare: func(t *testing.T) (*http.Request, []byte, time.Time) {
				r := sign(t, alice)
				r.Header.Set("X-Amz-Date", "20261122T104513Z")
				return r, body, signedAt
			},
			code: CodeInvalidSignature, message: msgSignatureInvalid,
		},
		{
			name: "no Authorization header",
			prepare: func(t *testing.T) (*http.Request, []byte, time.Time) {
				r := sign(t, alice)
				r.Header.Del("Authorization")
				return r, body, signedAt
			},
			code: CodeMissingAuthenticationToken, message: "Request is missing Authentication Token",
		},
		{
			name: "two Authorization headers",
			prepare: func(t *testing.T) (*http.Request, []byte, time.Time) {
				r := sign(t, alice)
				r.Header.Add("Authorization", r.Header.Get("Authorization"))
				return r, body, signedAt
			},
			code: CodeIncompleteSignature, message: msgManyAuthHeader,
		},
		{
			name: "presigned query",
			prepare: func(t *testing.T) (*http.Request, []byte, time.Time) {
				r := sign(t, alice)
				r.Header.Del("Authorization")
				r.URL.RawQuery = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=x&X-Amz-Signature=y"
				return r, body, signedAt
			},
			code: CodeIncompleteSignature, message: msgPresigned,
		},
		{
			name: "presigned query and Authorization header",
			prepare: func(t *testing.T) (*http.Request, []byte, time.Time) {
				r := sign(t, alice)
				r.URL.RawQuery = "X-Amz-Algorithm=AWS4-HMAC-SHA256"
				return r, body, signedAt
			},
			code: CodeIncompleteSignature, message: msgBothAuthKinds,
		},
		{
			name: "missing Credential",
			prepare: func(t *testing.T) (*http.Request, []byte, time.Time) {
				r := sign(t, alice)
				setAuth(r, "AWS4-HMAC-SHA256 SignedHeaders={sh}, Signature={sig}")
				return r, body, signedAt
			},
			code: CodeIncompleteSignature, message: "Authorization header requires 'Credential' parameter.",
		},
		{
			name: "missing every part and the date",
			prepare: func(t *testing.T) (*http.Request, []byte, time.Time) {
				r := sign(t, alice)
				setAuth(r, "AWS4-HMAC-SHA256")
				r.Header.Del("X-Amz-Date")
				return r, body, signedAt
			},
			code: CodeIncompleteSignature,
			message: "Authorization header requires 'Credential' parameter. Authorization header requires 'Signature' parameter. " +
				"Authorization header requires 'SignedHeaders' parameter. Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
		},
		{
			name: "SigV2 header",
			prepare: func(t *testing.T) (*http.Request, []byte, time.Time) {
				r := sign(t, alice)
				setAuth(r, "AWS AKIACOFFERALICE00001:{sig}")
				return r, body, signedAt
			},
			code: CodeIncompleteSignature,
			message: "Authorization header requires 'Credential' parameter. Authorization header requires 'Signature' parameter. " +
				"Authorization header requires 'SignedHeaders' parameter.",
		},
		{
			name: "part without an equal sign",
			prepare: func(t *testing.T) (*http.Request, []byte, time.Time) {
				r := sign(t, alice)
				setAuth(r, "AWS4-HMAC-SHA256 Credential= AKIACOFFERALICE00001/20261122/eu-west-1/secretsmanager/aws4_request, SignedHeaders={sh}, Signature={sig}")
				return r, body, signedAt
			},
			code: CodeIncompleteSignature, message: msgMissingEqual,
		},
		{
			name: "unsupported algorithm",
			prepare: func(t *testing.T) (*http.Request, []byte, time.Time) {
				r := sign(t, alice)
				setAuth(r, "AWS4-HMAC-SHA512 "+goodCredential+", SignedHeaders={sh}, Signature={sig}")
				return r, body, signedAt
			},
			code: CodeIncompleteSignature, message: "Unsupported AWS 'algorithm': 'AWS4-HMAC-SHA512' (only AWS4-HMAC-SHA256 for now).",
		},
		{
			name: "credential with four elements",
			prepare: func(t *testing.T) (*http.Request, []byte, time.Time) {
				r := sign(t, alice)
				setAuth(r, "AWS4-HMAC-SHA256 Credential=AKIACOFFERALICE00001/20261122/eu-west-1/aws4_request, SignedHeaders={sh}, Signature={sig}")
				return r, body, signedAt
			},
			code: CodeIncompleteSignature,
			message: "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, " +
				"got 'AKIACOFFERALICE00001/20261122/eu-west-1/aws4_request'",
		},
		{
			name: "scope with a bad region, service, terminator and date",
			prepare: func(t *testing.T) (*http.Request, []byte, time.Time) {
				r := sign(t, alice)
				setAuth(r, "AWS4-HMAC-SHA256 Credential=AKIACOFFERALICE00001/20261121/EU_West/sts/aws4_requests, SignedHeaders={sh}, Signature={sig}")
				return r, body, signedAt
			},
			code: CodeInvalidSignature,
			message: "Credential should be scoped to a valid region, not 'EU_West'. " +
				"Credential should be scoped to correct service: 'secretsmanager'. " +
				"Credential should be scoped with a valid terminator: 'aws4_request', not 'aws4_requests'. " +
				"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '20261121' != '20261122', from '20261122T104512Z'.",
		},
		{
			name: "scope for another service",
			prepare: func(t *testing.T) (*http.Request, []byte, time.Time) {
				r := sign(t, alice)
				setAuth(r, "AWS4-HMAC-SHA256 Credential=AKIACOFFERALICE00001/20261122/eu-west-1/kms/aws4_request, SignedHeaders={sh}, Signature={sig}")
				return r, body, signedAt
			},
			code: CodeInvalidSignature, message: "Credential should be scoped to correct service: 'secretsmanager'.",
		},
		{
			name: "empty region",
			prepare: func(t *testing.T) (*http.Request, []byte, time.Time) {
				r := sign(t, alice)
				setAuth(r, "AWS4-HMAC-SHA256 Credential=AKIACOFFERALICE00001/20261122//secretsmanager/aws4_request, SignedHeaders={sh}, Signature={sig}")
				return r, body, signedAt
			},
			code: CodeInvalidSignature, message: "Credential should be scoped to a valid region, not ''.",
		},
		{
			name: "date not in basic format",
			prepare: func(t *testing.T) (*http.Request, []byte, time.Time) {
				r := sign(t, alice)
				r.Header.Set("X-Amz-Date", "2026-11-22T10:45:12Z")
				return r, body, signedAt
			},
			code:    CodeIncompleteSignature,
			message: "Date must be in ISO-8601 'basic format'. Got '2026-11-22T10:45:12Z'. See http://en.wikipedia.org/wiki/ISO_8601",
		},
		{
			name: "impossible date",
			prepare: func(t *testing.T) (*http.Request, []byte, time.Time) {
				r := sign(t, alice)
				r.Header.Set("X-Amz-Date", "20261131T104512Z")
				return r, body, signedAt
			},
			code:    CodeIncompleteSignature,
			message: "Date must be in ISO-8601 'basic format'. Got '20261131T104512Z'. See http://en.wikipedia.org/wiki/ISO_8601",
		},
		{
			name: "HTTP Date header instead of X-Amz-Date",
			prepare: func(t *testing.T) (*http.Request, []byte, time.Time) {
				r := sign(t, alice)
				r.Header.Del("X-Amz-Date")
				r.Header.Set("Date", "Sun, 22 Nov 2026 10:45:12 GMT")
				return r, body, signedAt
			},
			code:    CodeIncompleteSignature,
			message: "Date must be in ISO-8601 'basic format'. Got 'Sun, 22 Nov 2026 10:45:12 GMT'. See http://en.wikipedia.org/wiki/ISO_8601",
		},
		{
			name: "host not signed",
			prepare: func(t *testing.T) (*http.Request, []byte, time.Time) {
				r := newSDKRequest(t, url, body)
				sdkSign(t, r, body, alice, "eu-west-1", signedAt)
				setAuth(r, "AWS4-HMAC-SHA256 "+goodCredential+", SignedHeaders=content-type;x-amz-date;x-amz-target, Signature={sig}")
				return r, body, signedAt
			},
			code: CodeInvalidSignature, message: msgHostNotSigned,
		},
		{
			name: "signed header absent from the request",
			prepare: func(t *testing.T) (*http.Request, []byte, time.Time) {
				r := sign(t, alice)
				r.Header.Del("Amz-Sdk-Request")
				return r, body, signedAt
			},
			code: CodeIncompleteSignature, message: "'amz-sdk-request' is named as a SignedHeader, but it does not exist in the HTTP request.",
		},
		{
			name: "session token differs",
			prepare: func(t *testing.T) (*http.Request, []byte, time.Time) {
				c := rotator
				c.SessionToken = "FwoGZXIvYXdzEJr//////////wEaDAnotherSessionToken=="
				return sign(t, c), body, signedAt
			},
			code: CodeUnrecognizedClient, message: msgTokenInvalid,
		},
		{
			name: "session token missing",
			prepare: func(t *testing.T) (*http.Request, []byte, time.Time) {
				c := rotator
				c.SessionToken = ""
				return sign(t, c), body, signedAt
			},
			code: CodeUnrecognizedClient, message: msgTokenInvalid,
		},
		{
			name: "session token on a long-term key",
			prepare: func(t *testing.T) (*http.Request, []byte, time.Time) {
				c := alice
				c.SessionToken = rotator.SessionToken
				return sign(t, c), body, signedAt
			},
			code: CodeUnrecognizedClient, message: msgTokenInvalid,
		},
		{
			name: "two unsigned session tokens",
			prepare: func(t *testing.T) (*http.Request, []byte, time.Time) {
				c := rotator
				c.SessionToken = ""
				r := sign(t, c)
				r.Header.Add("X-Amz-Security-Token", rotator.SessionToken)
				r.Header.Add("X-Amz-Security-Token", rotator.SessionToken)
				return r, body, signedAt
			},
			code: CodeUnrecognizedClient, message: msgTokenInvalid,
		},
		{
			name: "X-Amz-Content-Sha256 not the body's hash",
			prepare: func(t *testing.T) (*http.Request, []byte, time.Time) {
				r := newSDKRequest(t, url, body)
				r.Header.Set("X-Amz-Content-Sha256", strings.Repeat("0", 64))
				sdkSignHash(t, r, strings.Repeat("0", 64), alice, "eu-west-1", signedAt)
				return r, body, signedAt
			},
			code: CodeInvalidSignature, message: msgPayloadMismatch,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, b, now := tc.prepare(t)
			creds, region, err := newVerifier(now).Verify(context.Background(), r, b)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Verify = %v, %q, %v; want an *Error %s", creds, region, err, tc.code)
			}
			if e.Code != tc.code || (tc.message != "" && e.Message != tc.message) {
				t.Errorf("Verify error:\n got %s: %s\nwant %s: %s", e.Code, e.Message, tc.code, tc.message)
			}
			if !errors.Is(err, &Error{Code: tc.code}) {
				t.Errorf("errors.Is(%v, sentinel %s) = false", err, tc.code)
			}
			if creds != nil || region != "" {
				t.Errorf("Verify returned %v, %q along with an error", creds, region)
			}
			for _, secret := range []string{alice.SecretAccessKey, rotator.SecretAccessKey, rotator.SessionToken, signatureOf(r)} {
				if secret != "" && strings.Contains(err.Error(), secret) {
					t.Errorf("error %q reveals %q", err, secret)
				}
			}
		})
	}
}

// TestVerifyAccepts starts each case from a valid signed request and changes
// something the signature does not cover, or moves the clock within the skew.
func TestVerifyAccepts(t *testing.T) {
	body := []byte(getSecretValueBody)
	const url = "https://secretsmanager.eu-west-1.coffer.internal/"
	for _, tc := range []struct {
		name    string
		prepare func(t *testing.T) (*http.Request, []byte, time.Time)
		want    *Credentials // nil means alice
	}{
		{"unsigned header changed", func(t *testing.T) (*http.Request, []byte, time.Time) {
			r := newSDKRequest(t, url, body)
			sdkSign(t, r, body, alice, "eu-west-1", signedAt)
			r.Header.Set("User-Agent", "curl/8.5.0")
			r.Header.Set("Accept-Encoding", "gzip")
			return r, body, signedAt
		}, nil},
		{"signed 14 minutes ago", func(t *testing.T) (*http.Request, []byte, time.Time) {
			r := newSDKRequest(t, url, body)
			sdkSign(t, r, body, alice, "eu-west-1", signedAt)
			return r, body, signedAt.Add(14 * time.Minute)
		}, nil},
		{"signed 14 minutes from now", func(t *testing.T) (*http.Request, []byte, time.Time) {
			r := newSDKRequest(t, url, body)
			sdkSign(t, r, body, alice, "eu-west-1", signedAt)
			return r, body, signedAt.Add(-14 * time.Minute)
		}, nil},
		{"signed exactly 15 minutes ago", func(t *testing.T) (*http.Request, []byte, time.Time) {
			r := newSDKRequest(t, url, body)
			sdkSign(t, r, body, alice, "eu-west-1", signedAt)
			return r, body, signedAt.Add(15 * time.Minute)
		}, nil},
		{"X-Amz-Content-Sha256 is the body's hash", func(t *testing.T) (*http.Request, []byte, time.Time) {
			r := newSDKRequest(t, url, body)
			sum := sha256.Sum256(body)
			r.Header.Set("X-Amz-Content-Sha256", hex.EncodeToString(sum[:]))
			sdkSign(t, r, body, alice, "eu-west-1", signedAt)
			return r, body, signedAt
		}, nil},
		// UNSIGNED-PAYLOAD leaves the body out of the signature, so a
		// changed body still verifies: this is what the header means.
		{"UNSIGNED-PAYLOAD with another body", func(t *testing.T) (*http.Request, []byte, time.Time) {
			r := newSDKRequest(t, url, body)
			r.Header.Set("X-Amz-Content-Sha256", unsignedPayload)
			sdkSignHash(t, r, unsignedPayload, alice, "eu-west-1", signedAt)
			return r, []byte(`{"SecretId":"other"}`), signedAt
		}, nil},
		// AWS lets a signer add the token after signing, outside the
		// signature; the secret still has to be known to sign.
		{"session token added after signing", func(t *testing.T) (*http.Request, []byte, time.Time) {
			c := rotator
			c.SessionToken = ""
			r := newSDKRequest(t, url, body)
			sdkSign(t, r, body, c, "eu-west-1", signedAt)
			r.Header.Set("X-Amz-Security-Token", rotator.SessionToken)
			return r, body, signedAt
		}, &rotator},
		{"signed by Sign", func(t *testing.T) (*http.Request, []byte, time.Time) {
			r := newSDKRequest(t, url, body)
			if err := Sign(r, body, alice, "eu-west-1", "secretsmanager", signedAt); err != nil {
				t.Fatal(err)
			}
			return r, body, signedAt
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, b, now := tc.prepare(t)
			creds, region, err := newVerifier(now).Verify(context.Background(), r, b)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			want := &alice
			if tc.want != nil {
				want = tc.want
			}
			if creds.Principal != want.Principal || region != "eu-west-1" {
				t.Errorf("Verify = %s in %s, want %s in eu-west-1", creds.Principal, region, want.Principal)
			}
		})
	}
}

func TestVerifyReturnsLookupFailure(t *testing.T) {
	body := []byte(getSecretValueBody)
	r := newSDKRequest(t, "https://sm.coffer.internal/", body)
	sdkSign(t, r, body, lookupDown, "eu-west-1", signedAt)
	_, _, err := newVerifier(signedAt).Verify(context.Background(), r, body)
	if !errors.Is(err, errLookupDown) {
		t.Fatalf("Verify = %v, want it to wrap %v", err, errLookupDown)
	}
	var e *Error
	if errors.As(err, &e) {
		t.Errorf("a failed lookup came back as the caller's fault: %v", e)
	}

	if _, _, err := (&Verifier{}).Verify(context.Background(), r, body); !errors.Is(err, ErrNoLookup) {
		t.Errorf("Verify without a Lookup = %v, want ErrNoLookup", err)
	}
}
