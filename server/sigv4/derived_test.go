package sigv4

import (
	"context"
	"crypto/sha256"
	"errors"
	"testing"
)

// derived is c as a verifier that keeps no secret holds it: signing keys
// derived on demand (counting the scopes asked for) and the token's hash.
func derived(c Credentials, scopes *[]string) Credentials {
	out := Credentials{AccessKeyID: c.AccessKeyID, Principal: c.Principal}
	secret := c.SecretAccessKey
	out.SigningKey = func(date, region, service string) ([]byte, error) {
		*scopes = append(*scopes, date+"/"+region+"/"+service)
		return SigningKey(secret, date, region, service), nil
	}
	if c.SessionToken != "" {
		h := sha256.Sum256([]byte(c.SessionToken))
		out.SessionTokenHash = h[:]
	}
	return out
}

// TestVerifyWithDerivedCredentials: a verifier holding only signing keys
// and the session token's hash accepts exactly what one holding the secret
// and the token accepts — the right signature and token, not a wrong token,
// a missing one, or one where none is expected — and asks for the signing
// key of the request's own scope. A failing SigningKey is the server's
// failure, not the caller's.
func TestVerifyWithDerivedCredentials(t *testing.T) {
	t.Parallel()
	body := []byte(getSecretValueBody)
	var scopes []string
	keys := map[string]Credentials{alice.AccessKeyID: derived(alice, &scopes), rotator.AccessKeyID: derived(rotator, &scopes)}
	v := newVerifier(signedAt)
	v.Lookup = func(_ context.Context, id string) (*Credentials, error) {
		c, ok := keys[id]
		if !ok {
			return nil, nil
		}
		return &c, nil
	}
	for _, tc := range []struct {
		name  string
		creds Credentials
		token string // set after signing, "-" to remove
		ok    bool
	}{
		{"long-term key", alice, "", true},
		{"session", rotator, "", true},
		{"session, wrong token", rotator, "FwoGZXIvYXdzEJr//////////wEaDAnotherSessionToken==", false},
		{"session, no token", rotator, "-", false},
		{"long-term key with a token", alice, rotator.SessionToken, false},
		{"wrong secret", Credentials{AccessKeyID: alice.AccessKeyID, SecretAccessKey: "wrong" + alice.SecretAccessKey}, "", false},
	} {
		r := newSDKRequest(t, "https://secretsmanager.eu-west-1.amazonaws.com/", body)
		sdkSign(t, r, body, tc.creds, "eu-west-1", signedAt)
		switch tc.token {
		case "":
		case "-":
			r.Header.Del("X-Amz-Security-Token")
		default:
			r.Header.Set("X-Amz-Security-Token", tc.token)
		}
		got, region, err := v.Verify(context.Background(), r, body)
		if (err == nil) != tc.ok {
			t.Errorf("%s: Verify = %v, want ok %v", tc.name, err, tc.ok)
			continue
		}
		if tc.ok && (got.Principal != tc.creds.Principal || region != "eu-west-1") {
			t.Errorf("%s: verified as %q in %q", tc.name, got.Principal, region)
		}
	}
	for _, s := range scopes {
		if s != "20261122/eu-west-1/secretsmanager" {
			t.Errorf("asked for the signing key of %s, not the request's scope", s)
		}
	}

	broken := errors.New("keyring not loaded")
	v.Lookup = func(context.Context, string) (*Credentials, error) {
		return &Credentials{AccessKeyID: alice.AccessKeyID, SigningKey: func(string, string, string) ([]byte, error) { return nil, broken }}, nil
	}
	r := newSDKRequest(t, "https://secretsmanager.eu-west-1.amazonaws.com/", body)
	sdkSign(t, r, body, alice, "eu-west-1", signedAt)
	var se *Error
	if _, _, err := v.Verify(context.Background(), r, body); !errors.Is(err, broken) || errors.As(err, &se) {
		t.Errorf("a failing SigningKey: %v, want the failure itself, not a signature error", err)
	}
}
