package server

import (
	"bytes"
	"context"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server/sigv4"
)

// reachable collects every string and byte slice reachable from v.
func reachable(v reflect.Value, seen map[uintptr]bool, out *[][]byte) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return
		}
		if v.Kind() == reflect.Pointer {
			if seen[v.Pointer()] {
				return
			}
			seen[v.Pointer()] = true
		}
		reachable(v.Elem(), seen, out)
	case reflect.Struct:
		for i := range v.NumField() {
			reachable(v.Field(i), seen, out)
		}
	case reflect.Map:
		for _, k := range v.MapKeys() {
			reachable(k, seen, out)
			reachable(v.MapIndex(k), seen, out)
		}
	case reflect.Slice, reflect.Array:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			b := make([]byte, v.Len())
			for i := range b {
				b[i] = byte(v.Index(i).Uint())
			}
			*out = append(*out, b)
			return
		}
		for i := range v.Len() {
			reachable(v.Index(i), seen, out)
		}
	case reflect.String:
		*out = append(*out, []byte(v.String()))
	}
}

// TestCredentialCacheHoldsNoSecrets (issue 13, item 13): after bearer and
// SigV4 requests with a long-term key and with temporary credentials, the
// IAM cache holds verifiers only — no secret access key, no session token
// — and they still tell the right credentials from the wrong ones.
func TestCredentialCacheHoldsNoSecrets(t *testing.T) {
	svc, store := newTestService(t)
	iam := NewIAM(svc, store)
	ctx := t.Context()
	if _, err := iam.CreatePrincipal(ctx, &cofferv1.CreatePrincipalRequest{Name: "app"}); err != nil {
		t.Fatal(err)
	}
	long, err := iam.CreateAccessKey(ctx, &cofferv1.CreateAccessKeyRequest{Principal: "app"})
	if err != nil {
		t.Fatal(err)
	}
	sess, err := iam.GetSessionToken(WithIdentity(ctx, Identity{Principal: "app", AccessKeyID: long.GetAccessKeyId()}), &cofferv1.GetSessionTokenRequest{})
	if err != nil {
		t.Fatal(err)
	}

	// Bearer: the right secret (and token) in, the wrong ones out.
	for _, c := range []struct {
		token string
		ok    bool
	}{
		{long.GetAccessKeyId() + ":" + long.GetSecretAccessKey(), true},
		{long.GetAccessKeyId() + ":" + long.GetSecretAccessKey() + "x", false},
		{long.GetAccessKeyId() + ":" + long.GetSecretAccessKey() + ":" + sess.GetSessionToken(), false},
		{sess.GetAccessKeyId() + ":" + sess.GetSecretAccessKey() + ":" + sess.GetSessionToken(), true},
		{sess.GetAccessKeyId() + ":" + sess.GetSecretAccessKey(), false},
		{sess.GetAccessKeyId() + ":" + sess.GetSecretAccessKey() + ":" + sess.GetSessionToken() + "x", false},
	} {
		id, err := iam.CheckBearer(ctx, c.token)
		if (err == nil) != c.ok || (c.ok && id.Principal != "app") {
			t.Errorf("CheckBearer(…) = %+v, %v; want ok %v", id, err, c.ok)
		}
	}

	// SigV4 through the verifier the AWS endpoint uses: signing keys and the
	// token's hash are enough.
	verifier := &sigv4.Verifier{Lookup: func(_ context.Context, id string) (*sigv4.Credentials, error) {
		k, err := iam.LookupKey(ctx, id)
		if err != nil {
			return nil, nil
		}
		return k.SigV4(id), nil
	}}
	sign := func(c sigv4.Credentials, region string) *http.Request {
		body := []byte(`{"SecretId":"app/db"}`)
		r, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1:7480/", bytes.NewReader(body))
		r.Header.Set("X-Amz-Target", "secretsmanager.GetSecretValue")
		if err := sigv4.Sign(r, body, c, region, "secretsmanager", time.Now()); err != nil {
			t.Fatal(err)
		}
		return r
	}
	for _, c := range []struct {
		name   string
		creds  sigv4.Credentials
		region string
		ok     bool
	}{
		{"long-term key", sigv4.Credentials{AccessKeyID: long.GetAccessKeyId(), SecretAccessKey: long.GetSecretAccessKey()}, "us-east-1", true},
		{"long-term key, another day's region scope", sigv4.Credentials{AccessKeyID: long.GetAccessKeyId(), SecretAccessKey: long.GetSecretAccessKey()}, "eu-west-1", true},
		{"wrong secret", sigv4.Credentials{AccessKeyID: long.GetAccessKeyId(), SecretAccessKey: "x" + long.GetSecretAccessKey()}, "us-east-1", false},
		{"session", sigv4.Credentials{AccessKeyID: sess.GetAccessKeyId(), SecretAccessKey: sess.GetSecretAccessKey(), SessionToken: sess.GetSessionToken()}, "us-east-1", true},
		{"session, wrong token", sigv4.Credentials{AccessKeyID: sess.GetAccessKeyId(), SecretAccessKey: sess.GetSecretAccessKey(), SessionToken: "x"}, "us-east-1", false},
		{"session, no token", sigv4.Credentials{AccessKeyID: sess.GetAccessKeyId(), SecretAccessKey: sess.GetSecretAccessKey()}, "us-east-1", false},
	} {
		r := sign(c.creds, c.region)
		body := []byte(`{"SecretId":"app/db"}`)
		creds, _, err := verifier.Verify(ctx, r, body)
		if (err == nil) != c.ok || (c.ok && creds.Principal != "app") {
			t.Errorf("%s: Verify = %v; want ok %v", c.name, err, c.ok)
		}
	}

	var held [][]byte
	iam.mu.Lock()
	reachable(reflect.ValueOf(iam.cache), map[uintptr]bool{}, &held)
	iam.mu.Unlock()
	if len(held) == 0 {
		t.Fatal("the cache is empty; the test checks nothing")
	}
	for name, secret := range map[string]string{
		"long-term secret access key": long.GetSecretAccessKey(),
		"session secret access key":   sess.GetSecretAccessKey(),
		"session token":               sess.GetSessionToken(),
	} {
		for _, b := range held {
			if bytes.Contains(b, []byte(secret)) || strings.Contains(string(b), secret) {
				t.Errorf("the IAM cache holds the %s", name)
			}
		}
	}
}
