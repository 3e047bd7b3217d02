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
