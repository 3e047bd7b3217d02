package sigv4

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

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
