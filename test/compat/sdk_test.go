package compat

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
	"github.com/aws/smithy-go"
)

func TestSDKLifecycle(t *testing.T) {
	s := startServer(t)
	c := s.sdk(t, accessKeyID, secretAccessKey)
	ctx := context.Background()

	out, err := c.CreateSecret(ctx, &secretsmanager.CreateSecretInput{
		Name: aws.String("compat/sdk/api-key"), SecretBinary: []byte{0, 1, 2, 0xff},
		Tags: []types.Tag{{Key: aws.String("app"), Value: aws.String("billing")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !arnPattern.MatchString(aws.ToString(out.ARN)) || !uuidPattern.MatchString(aws.ToString(out.VersionId)) {
		t.Fatalf("CreateSecret answered %+v", out)
	}
	got, err := c.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: out.ARN})
	if err != nil || !bytes.Equal(got.SecretBinary, []byte{0, 1, 2, 0xff}) || got.SecretString != nil ||
		got.CreatedDate == nil || time.Since(*got.CreatedDate) > time.Minute {
		t.Fatalf("GetSecretValue: %+v %v", got, err)
	}
	// The SDK fills ClientRequestToken; a retry with the same token and
	// value is answered, another value is refused.
	tok := aws.String("dddddddd-1111-4222-8333-444444444444")
	v := aws.String("text")
	p1, err := c.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: out.ARN, SecretString: v, ClientRequestToken: tok})
	if err != nil {
		t.Fatal(err)
	}
	p2, err := c.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: out.ARN, SecretString: v, ClientRequestToken: tok})
	if err != nil || aws.ToString(p2.VersionId) != aws.ToString(p1.VersionId) {
		t.Fatalf("idempotent retry: %+v %v", p2, err)
	}
	_, err = c.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: out.ARN, SecretString: aws.String("other"), ClientRequestToken: tok})
	var exists *types.ResourceExistsException
	if !errors.As(err, &exists) || !strings.Contains(aws.ToString(exists.Message), "already in use") {
		t.Fatalf("same token, other value: %v", err)
	}

	// BatchGetSecretValue with a missing id.
	batch, err := c.BatchGetSecretValue(ctx, &secretsmanager.BatchGetSecretValueInput{SecretIdList: []string{"compat/sdk/api-key", "compat/sdk/missing"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(batch.SecretValues) != 1 || aws.ToString(batch.SecretValues[0].SecretString) != "text" ||
		len(batch.Errors) != 1 || aws.ToString(batch.Errors[0].ErrorCode) != "ResourceNotFoundException" {
		t.Fatalf("BatchGetSecretValue: %+v", batch)
	}
	// ListSecrets with a tag filter, DescribeSecret dates.
	list, err := c.ListSecrets(ctx, &secretsmanager.ListSecretsInput{Filters: []types.Filter{{Key: types.FilterNameStringTypeTagValue, Values: []string{"bill"}}}})
	if err != nil || len(list.SecretList) != 1 || aws.ToString(list.SecretList[0].Name) != "compat/sdk/api-key" {
		t.Fatalf("ListSecrets: %+v %v", list, err)
	}
	d, err := c.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: aws.String("compat/sdk/api-key")})
	if err != nil || d.CreatedDate == nil || d.LastChangedDate == nil || len(d.VersionIdsToStages) != 2 {
		t.Fatalf("DescribeSecret: %+v %v", d, err)
	}
	// Errors arrive typed.
	_, err = c.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("compat/sdk/missing")})
	var nf *types.ResourceNotFoundException
	if !errors.As(err, &nf) || aws.ToString(nf.Message) != "Secrets Manager can't find the specified secret." {
		t.Fatalf("missing secret: %v", err)
	}
	_, err = c.RotateSecret(ctx, &secretsmanager.RotateSecretInput{SecretId: aws.String("compat/sdk/api-key")})
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() == "" {
		t.Fatalf("RotateSecret: %v", err)
	}
}

// cachedSecret reproduces aws-secretsmanager-caching-go's calls (the module
// itself is not available here): DescribeSecret for VersionIdsToStages,
// then GetSecretValue by the AWSCURRENT VersionId, refreshed on a TTL.
type cachedSecret struct {
	c   *secretsmanager.Client
	id  string
	ttl time.Duration

	mu        sync.Mutex
	fetched   time.Time
	versionID string
	value     string
	calls     int
}

func (cs *cachedSecret) get(ctx context.Context, now time.Time) (string, error) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.versionID != "" && now.Sub(cs.fetched) < cs.ttl {
		return cs.value, nil
	}
	d, err := cs.c.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: aws.String(cs.id)})
	if err != nil {
		return "", err
	}
	cs.calls++
	current := ""
	for id, stages := range d.VersionIdsToStages {
		for _, st := range stages {
			if st == "AWSCURRENT" {
				current = id
			}
		}
	}
	if current == "" {
		return "", errors.New("no AWSCURRENT version")
	}
	if current != cs.versionID {
		v, err := cs.c.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(cs.id), VersionId: aws.String(current)})
		if err != nil {
			return "", err
		}
		cs.calls++
		cs.versionID, cs.value = current, aws.ToString(v.SecretString)
	}
	cs.fetched = now
	return cs.value, nil
}

func TestCachingClientPattern(t *testing.T) {
	s := startServer(t)
	c := s.sdk(t, accessKeyID, secretAccessKey)
	ctx := context.Background()
	if _, err := c.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String("compat/cache/db"), SecretString: aws.String("one")}); err != nil {
		t.Fatal(err)
	}
	cache := &cachedSecret{c: c, id: "compat/cache/db", ttl: time.Hour}
	now := time.Now()
	for range 5 {
		if v, err := cache.get(ctx, now); err != nil || v != "one" {
			t.Fatalf("cached get: %q %v", v, err)
		}
	}
	if cache.calls != 2 {
		t.Fatalf("five reads within the TTL made %d calls, want 2 (describe + get)", cache.calls)
	}
	if _, err := c.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String("compat/cache/db"), SecretString: aws.String("two")}); err != nil {
		t.Fatal(err)
	}
	if v, _ := cache.get(ctx, now.Add(time.Minute)); v != "one" {
		t.Fatalf("within the TTL the cache served %q, want the cached value", v)
	}
	if v, err := cache.get(ctx, now.Add(2*time.Hour)); err != nil || v != "two" {
		t.Fatalf("after the TTL: %q %v, want the new AWSCURRENT", v, err)
	}
	// Versions are immutable: the old version id still reads its value.
	old, err := c.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("compat/cache/db"), VersionStage: aws.String("AWSPREVIOUS")})
	if err != nil || aws.ToString(old.SecretString) != "one" {
		t.Fatalf("previous version: %v %v", old, err)
	}
}

// signedRequest builds a GetSecretValue request signed like the SDK does.
func signedRequest(t *testing.T, s *server, id, secret string, body string, at time.Time) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.endpoint+"/", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	req.Header.Set("X-Amz-Target", "secretsmanager.GetSecretValue")
	sum := sha256.Sum256([]byte(body))
	err = v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: id, SecretAccessKey: secret},
		req, hex.EncodeToString(sum[:]), "secretsmanager", region, at)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func send(t *testing.T, req *http.Request) (int, string, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("X-Amzn-ErrorType"), string(b)
}

func TestSigV4Rejections(t *testing.T) {
	s := startServer(t)
	c := s.sdk(t, accessKeyID, secretAccessKey)
	if _, err := c.CreateSecret(context.Background(), &secretsmanager.CreateSecretInput{Name: aws.String("compat/sig"), SecretString: aws.String("v")}); err != nil {
		t.Fatal(err)
	}
	body := `{"SecretId":"compat/sig"}`
	now := time.Now()

	if code, typ, b := send(t, signedRequest(t, s, accessKeyID, secretAccessKey, body, now)); code != 200 || typ != "" {
		t.Fatalf("a correctly signed request: %d %s %s", code, typ, b)
	}
	cases := []struct {
		name string
		req  func() *http.Request
		want string
	}{
		{"wrong secret", func() *http.Request {
			return signedRequest(t, s, accessKeyID, "not-the-secret-at-all-00000000000000000", body, now)
		}, "InvalidSignatureException"},
		{"unknown key", func() *http.Request { return signedRequest(t, s, "AKIAUNKNOWN000000000", secretAccessKey, body, now) }, "UnrecognizedClientException"},
		{"stale date", func() *http.Request {
			return signedRequest(t, s, accessKeyID, secretAccessKey, body, now.Add(-20*time.Minute))
		}, "InvalidSignatureException"},
		{"tampered body", func() *http.Request {
			r := signedRequest(t, s, accessKeyID, secretAccessKey, body, now)
			tampered := `{"SecretId":"compat/sih"}`
			r.Body = io.NopCloser(strings.NewReader(tampered))
			return r
		}, "InvalidSignatureException"},
		{"tampered signed header", func() *http.Request {
			r := signedRequest(t, s, accessKeyID, secretAccessKey, body, now)
			r.Header.Set("X-Amz-Target", "secretsmanager.DeleteSecret")
			return r
		}, "InvalidSignatureException"},
		{"no signature", func() *http.Request {
			r, _ := http.NewRequest(http.MethodPost, s.endpoint+"/", strings.NewReader(body))
			r.Header.Set("X-Amz-Target", "secretsmanager.GetSecretValue")
			return r
		}, ""},
		{"malformed authorization", func() *http.Request {
			r := signedRequest(t, s, accessKeyID, secretAccessKey, body, now)
			r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=garbage")
			return r
		}, "IncompleteSignature"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, typ, b := send(t, tc.req())
			if code < 400 || (tc.want != "" && typ != tc.want) || !strings.Contains(b, `"__type"`) {
				t.Fatalf("status %d, type %q, body %s; want %s", code, typ, b, tc.want)
			}
			if strings.Contains(b, secretAccessKey) {
				t.Fatal("the error body contains the secret")
			}
		})
	}
}
