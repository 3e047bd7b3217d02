package sigv4

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// signedAt is when the test requests are signed; verifiers' clocks are set
// relative to it.
var signedAt = time.Date(2026, 11, 22, 10, 45, 12, 0, time.UTC)

var (
	alice = Credentials{
		AccessKeyID:     "AKIACOFFERALICE00001",
		SecretAccessKey: "aLiCe/SeCrEt+KeY0123456789abcdefghijKLMN",
		Principal:       "arn:aws:iam::000000000000:user/alice",
	}
	rotator = Credentials{
		AccessKeyID:     "ASIACOFFERROTATOR001",
		SecretAccessKey: "rOtAtOr/SeCrEt+KeY0123456789abcdefghijKL",
		SessionToken:    "FwoGZXIvYXdzEJr//////////wEaDCofferSessionTokenExample==",
		Principal:       "arn:aws:sts::000000000000:assumed-role/rotator/lambda",
	}
	// noSecret is a key whose store entry lost its secret.
	noSecret = Credentials{AccessKeyID: "AKIACOFFERNOSECRET01", Principal: "arn:aws:iam::000000000000:user/broken"}
	// stranger is a key the verifier does not know.
	stranger = Credentials{AccessKeyID: "AKIACOFFERSTRANGER01", SecretAccessKey: "sTrAnGeR/SeCrEt+KeY0123456789abcdefghijK"}
	// errLookupDown is what a failing store returns for lookupDown.
	errLookupDown = errors.New("key store unavailable")
	lookupDown    = Credentials{AccessKeyID: "AKIACOFFERLOOKUPDOWN", SecretAccessKey: "x"}
)

const getSecretValueBody = `{"SecretId":"prod/db/password","VersionStage":"AWSCURRENT"}`

// newVerifier returns a Verifier for secretsmanager whose clock reads now and
// which knows alice, rotator and noSecret.
func newVerifier(now time.Time) *Verifier {
	keys := map[string]Credentials{alice.AccessKeyID: alice, rotator.AccessKeyID: rotator, noSecret.AccessKeyID: noSecret}
	return &Verifier{
		Service: "secretsmanager",
		Now:     func() time.Time { return now },
		Lookup: func(_ context.Context, id string) (*Credentials, error) {
			if id == lookupDown.AccessKeyID {
				return nil, errLookupDown
			}
			c, ok := keys[id]
			if !ok {
				return nil, nil
			}
			return &c, nil
		},
	}
}

// newSDKRequest builds the request aws-sdk-go-v2's Secrets Manager client
// sends for GetSecretValue, unsigned.
func newSDKRequest(t testing.TB, url string, body []byte) *http.Request {
	t.Helper()
	r, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Content-Type", "application/x-amz-json-1.1")
	r.Header.Set("X-Amz-Target", "secretsmanager.GetSecretValue")
	r.Header.Set("Amz-Sdk-Invocation-Id", "6c5b1b3e-8d0f-4f43-9a55-2b3c8f1d2e77")
	r.Header.Set("Amz-Sdk-Request", "attempt=1; max=3")
	r.Header.Set("User-Agent", "aws-sdk-go-v2/1.39.2 ua/2.1 os/linux lang/go#1.26 md/GOOS#linux api/secretsmanager#1.39.6")
	return r
}

// newBotocoreRequest builds the request botocore sends for GetSecretValue,
// unsigned.
func newBotocoreRequest(t testing.TB, url string, body []byte) *http.Request {
	t.Helper()
	r, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Content-Type", "application/x-amz-json-1.1")
	r.Header.Set("X-Amz-Target", "secretsmanager.GetSecretValue")
	r.Header.Set("User-Agent", "Boto3/1.43.11 md/Botocore#1.43.11 ua/2.1 os/linux#6.1 lang/python#3.12.8")
	return r
}

// sdkSign signs r with aws-sdk-go-v2's own SigV4 signer, as its
// secretsmanager client does.
func sdkSign(t testing.TB, r *http.Request, body []byte, c Credentials, region string, at time.Time) {
	t.Helper()
	sum := sha256.Sum256(body)
	sdkSignHash(t, r, hex.EncodeToString(sum[:]), c, region, at)
}

func sdkSignHash(t testing.TB, r *http.Request, payloadHash string, c Credentials, region string, at time.Time) {
	t.Helper()
	creds := aws.Credentials{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, SessionToken: c.SessionToken}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, r, payloadHash, "secretsmanager", region, at); err != nil {
		t.Fatal(err)
	}
}

// botocoreSign signs r as botocore does: the SDK's signer with the same
// algorithm, but without content-length, which botocore does not sign.
func botocoreSign(t testing.TB, r *http.Request, body []byte, c Credentials, region string, at time.Time) {
	t.Helper()
	n := r.ContentLength
	r.ContentLength = 0
	sdkSign(t, r, body, c, region, at)
	r.ContentLength = n
}

// signedHeadersOf returns the SignedHeaders parameter of r's Authorization.
func signedHeadersOf(r *http.Request) string {
	_, rest, _ := strings.Cut(r.Header.Get("Authorization"), "SignedHeaders=")
	list, _, _ := strings.Cut(rest, ",")
	return list
}

// signatureOf returns the Signature parameter of r's Authorization.
func signatureOf(r *http.Request) string {
	_, sig, _ := strings.Cut(r.Header.Get("Authorization"), "Signature=")
	return sig
}

const (
	sdkSignedHeaders      = "amz-sdk-invocation-id;amz-sdk-request;content-length;content-type;host;x-amz-date;x-amz-target"
	botocoreSignedHeaders = "content-type;host;x-amz-date;x-amz-target"
)

func TestVerifyAcceptsRealSignerRequests(t *testing.T) {
	body := []byte(getSecretValueBody)
	for _, tc := range []struct {
		name          string
		build         func(testing.TB, string, []byte) *http.Request
		sign          func(testing.TB, *http.Request, []byte, Credentials, string, time.Time)
		creds         Credentials
		region        string
		signedHeaders string
	}{
		{"aws-sdk-go-v2", newSDKRequest, sdkSign, alice, "eu-west-1", sdkSignedHeaders},
		{"botocore", newBotocoreRequest, botocoreSign, alice, "us-east-2", botocoreSignedHeaders},
		{"aws-sdk-go-v2 with session token", newSDKRequest, sdkSign, rotator, "ap-southeast-2", "amz-sdk-invocation-id;amz-sdk-request;content-length;content-type;host;x-amz-date;x-amz-security-token;x-amz-target"},
		{"botocore with session token", newBotocoreRequest, botocoreSign, rotator, "eu-central-1", "content-type;host;x-amz-date;x-amz-security-token;x-amz-target"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.build(t, "https://secretsmanager."+tc.region+".coffer.internal/", body)
			tc.sign(t, r, body, tc.creds, tc.region, signedAt)
			if got := signedHeadersOf(r); got != tc.signedHeaders {
				t.Fatalf("the signer signed %q, want %q: the test no longer exercises that header set", got, tc.signedHeaders)
			}
			creds, region, err := newVerifier(signedAt).Verify(context.Background(), r, body)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if region != tc.region {
				t.Errorf("region = %q, want %q", region, tc.region)
			}
			if creds.Principal != tc.creds.Principal || creds.AccessKeyID != tc.creds.AccessKeyID {
				t.Errorf("credentials = %s (%s), want %s (%s)", creds.Principal, creds.AccessKeyID, tc.creds.Principal, tc.creds.AccessKeyID)
			}
		})
	}
}

// TestVerifyOverHTTP sends SDK-signed requests through a real HTTP server,
// so that Verify sees a request as net/http delivers it: Host moved out of
// the header map into r.Host, Content-Length in the map, and headers the
// client adds after signing (Accept-Encoding).
func TestVerifyOverHTTP(t *testing.T) {
	v := newVerifier(signedAt)
	type result struct {
		principal, region, err string
	}
	results := make(chan result, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			results <- result{err: err.Error()}
			return
		}
		creds, region, err := v.Verify(r.Context(), r, body)
		if err != nil {
			results <- result{err: err.Error()}
			return
		}
		results <- result{principal: creds.Principal, region: region}
	}))
	t.Cleanup(srv.Close)

	body := []byte(getSecretValueBody)
	for _, tc := range []struct {
		name  string
		build func(testing.TB, string, []byte) *http.Request
		sign  func(testing.TB, *http.Request, []byte, Credentials, string, time.Time)
	}{
		{"aws-sdk-go-v2", newSDKRequest, sdkSign},
		{"botocore", newBotocoreRequest, botocoreSign},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.build(t, srv.URL+"/", body)
			tc.sign(t, r, body, rotator, "us-west-2", signedAt)
			resp, err := srv.Client().Do(r)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			got := <-results
			if got != (result{principal: rotator.Principal, region: "us-west-2"}) {
				t.Errorf("server saw %+v, want principal %s in us-west-2", got, rotator.Principal)
			}
		})
	}
}

// TestVerifyCanonicalizationMatchesSDK signs requests that exercise each part
// of the canonical request with the SDK's signer, and checks Verify rebuilds
// the same canonical request.
func TestVerifyCanonicalizationMatchesSDK(t *testing.T) {
	body := []byte(getSecretValueBody)
	for _, tc := range []struct {
		name   string
		url    string
		header http.Header
	}{
		{"query sorted by encoded name then value", "https://sm.coffer.internal/?b=2&a=1&a=0&A=3&c=x+y&d=%2F&e=a-b&e=a%2Fb&f&%E1%88%B4=bar&k%20y=v", nil},
		{"escaped path", "https://sm.coffer.internal/a%20b/%E1%88%B4/c~d", nil},
		{"host with port", "https://sm.coffer.internal:8443/", nil},
		{"header whitespace trimmed and collapsed", "https://sm.coffer.internal/", http.Header{"X-Custom": {" \t a   b  c \t "}}},
		{"header with several values", "https://sm.coffer.internal/", http.Header{"X-Multi": {"one", " two ", "three  four"}}},
		{"empty header value", "https://sm.coffer.internal/", http.Header{"X-Empty": {""}}},
		{"header key not in canonical form", "https://sm.coffer.internal/", http.Header{"x-lower-case": {"v"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newSDKRequest(t, tc.url, body)
			for k, vs := range tc.header {
				r.Header[k] = vs
			}
			sdkSign(t, r, body, alice, "eu-west-1", signedAt)
			// The SDK rewrites the query in canonical order; a server must
			// accept the parameters in any order, so restore the original.
			_, r.URL.RawQuery, _ = strings.Cut(tc.url, "?")
			if _, _, err := newVerifier(signedAt).Verify(context.Background(), r, body); err != nil {
				t.Fatalf("Verify of %s: %v", tc.url, err)
			}
		})
	}
}

// TestSignMatchesSDK checks that Sign writes the Authorization header the
// SDK's signer writes for the same request.
func TestSignMatchesSDK(t *testing.T) {
	body := []byte(getSecretValueBody)
	for _, c := range []Credentials{alice, rotator} {
		t.Run(c.AccessKeyID, func(t *testing.T) {
			fromSDK := newSDKRequest(t, "https://secretsmanager.eu-west-1.coffer.internal/", body)
			sdkSign(t, fromSDK, body, c, "eu-west-1", signedAt)
			ours := newSDKRequest(t, "https://secretsmanager.eu-west-1.coffer.internal/", body)
			if err := Sign(ours, body, c, "eu-west-1", "secretsmanager", signedAt); err != nil {
				t.Fatal(err)
			}
			for _, h := range []string{"Authorization", "X-Amz-Date", "X-Amz-Security-Token"} {
				if got, want := ours.Header.Get(h), fromSDK.Header.Get(h); got != want {
					t.Errorf("%s:\n got %s\nwant %s", h, got, want)
				}
			}
		})
	}
}

func TestSignRefusesIncompleteInput(t *testing.T) {
	for _, tc := range []struct {
		name            string
		creds           Credentials
		region, service string
	}{
		{"no access key id", Credentials{SecretAccessKey: "s"}, "us-east-1", "secretsmanager"},
		{"no secret", Credentials{AccessKeyID: "AKID"}, "us-east-1", "secretsmanager"},
		{"no region", alice, "", "secretsmanager"},
		{"no service", alice, "us-east-1", ""},
	} {
		r := httptest.NewRequest(http.MethodPost, "https://sm.coffer.internal/", nil)
		if err := Sign(r, nil, tc.creds, tc.region, tc.service, signedAt); !errors.Is(err, ErrSigningInput) {
			t.Errorf("%s: Sign = %v, want ErrSigningInput", tc.name, err)
		}
		if r.Header.Get("Authorization") != "" {
			t.Errorf("%s: Sign set Authorization despite failing", tc.name)
		}
	}
}

// The AWS SigV4 test suite's credentials, date and scope.
var (
	suiteCreds = Credentials{AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"}
	suiteTime  = time.Date(2015, 8, 30, 12, 36, 0, 0, time.UTC)
)

// TestSignKnownAnswers signs requests of the AWS SigV4 test suite and
// compares the signatures it publishes.
func TestSignKnownAnswers(t *testing.T) {
	for _, tc := range []struct {
		name, method, url, signature string
	}{
		{"get-vanilla", http.MethodGet, "https://example.amazonaws.com/", "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"},
		{"post-vanilla", http.MethodPost, "https://example.amazonaws.com/", "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"},
		{"get-vanilla-query-order-key-case", http.MethodGet, "https://example.amazonaws.com/?Param2=value2&Param1=value1", "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := http.NewRequest(tc.method, tc.url, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := Sign(r, nil, suiteCreds, "us-east-1", "service", suiteTime); err != nil {
				t.Fatal(err)
			}
			want := "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=" + tc.signature
			if got := r.Header.Get("Authorization"); got != want {
				t.Errorf("Authorization:\n got %s\nwant %s", got, want)
			}
			if got := r.Header.Get("X-Amz-Date"); got != "20150830T123600Z" {
				t.Errorf("X-Amz-Date = %s, want 20150830T123600Z", got)
			}
		})
	}
}

// TestVerifyKnownAnswer verifies the test suite's get-vanilla request as
// published, Authorization header included, without using Sign.
func TestVerifyKnownAnswer(t *testing.T) {
	r, err := http.NewRequest(http.MethodGet, "https://example.amazonaws.com/", nil)
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("X-Amz-Date", "20150830T123600Z")
	r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31")
	v := &Verifier{
		Service: "service",
		Now:     func() time.Time { return suiteTime.Add(time.Minute) },
		Lookup: func(_ context.Context, id string) (*Credentials, error) {
			if id != suiteCreds.AccessKeyID {
				return nil, nil
			}
			c := suiteCreds
			c.Principal = "suite"
			return &c, nil
		},
	}
	creds, region, err := v.Verify(context.Background(), r, nil)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if region != "us-east-1" || creds.Principal != "suite" {
		t.Errorf("Verify = %s in %s, want suite in us-east-1", creds.Principal, region)
	}

	// One bit off in the signature must fail.
	r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), "bf31", "bf30", 1))
	if _, _, err := v.Verify(context.Background(), r, nil); !errors.Is(err, ErrInvalidSignature) {
		t.Errorf("Verify with a changed signature = %v, want InvalidSignatureException", err)
	}
}

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

// BenchmarkVerify verifies the request aws-sdk-go-v2 sends for
// GetSecretValue.
func BenchmarkVerify(b *testing.B) {
	body := []byte(getSecretValueBody)
	r := newSDKRequest(b, "https://secretsmanager.eu-west-1.coffer.internal/", body)
	sdkSign(b, r, body, alice, "eu-west-1", signedAt)
	v := newVerifier(signedAt)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := v.Verify(ctx, r, body); err != nil {
			b.Fatal(err)
		}
	}
}
