package node_test

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"google.golang.org/protobuf/proto"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server"
	"github.com/cofferhq/coffer/test/testkit/clustertest"
)

// testIssuer is a real OIDC issuer over HTTPS: discovery and a JWKS served
// by an httptest TLS server, ID tokens signed with its RSA key (go-jose).
type testIssuer struct {
	srv    *httptest.Server
	key    *rsa.PrivateKey
	signer jose.Signer
}

func newTestIssuer(t *testing.T) *testIssuer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	iss := &testIssuer{key: key}
	mux := http.NewServeMux()
	iss.srv = httptest.NewTLSServer(mux)
	t.Cleanup(iss.srv.Close)
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer": iss.srv.URL, "jwks_uri": iss.srv.URL + "/keys", "authorization_endpoint": iss.srv.URL + "/auth",
			"response_types_supported": []string{"id_token"}, "subject_types_supported": []string{"public"},
			"id_token_signing_alg_values_supported": []string{"RS256"},
		})
	})
	mux.HandleFunc("/keys", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}})
	})
	iss.signer, err = jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: "k1"}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	return iss
}

func (iss *testIssuer) token(t *testing.T, issuer, sub, aud string, exp time.Time) string {
	t.Helper()
	tok, err := jwt.Signed(iss.signer).Claims(jwt.Claims{Issuer: issuer, Subject: sub, Audience: jwt.Audience{aud},
		IssuedAt: jwt.NewNumericDate(time.Now().Add(-time.Minute)), Expiry: jwt.NewNumericDate(exp)}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func stsClient(endpoint string, creds aws.CredentialsProvider) *sts.Client {
	return sts.New(sts.Options{Region: "us-east-1", Credentials: creds, BaseEndpoint: aws.String(endpoint),
		Retryer: aws.NopRetryer{}, HTTPClient: &http.Client{Timeout: 30 * time.Second}})
}

func smClient(endpoint string, c sts.AssumeRoleOutput) *secretsmanager.Client {
	return secretsmanager.New(secretsmanager.Options{Region: "us-east-1", BaseEndpoint: aws.String(endpoint),
		Credentials: credentials.NewStaticCredentialsProvider(*c.Credentials.AccessKeyId, *c.Credentials.SecretAccessKey, *c.Credentials.SessionToken),
		Retryer:     aws.NopRetryer{}, HTTPClient: &http.Client{Timeout: 30 * time.Second}})
}

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != code {
		t.Fatalf("error %v, want code %s", err, code)
	}
}

// TestAssumeRole: through aws-sdk-go-v2's STS client, a principal whose
// identity policy allows sts:AssumeRole and whom the role's trust policy
// names gets temporary credentials that carry the role's policies (and
// only them), named by the assumed-role ARN — in GetCallerIdentity and in
// the audit trail. Everyone else, and every malformed request, is refused
// with STS's error codes; deleting the role revokes its sessions.
func TestAssumeRole(t *testing.T) {
	dir := t.TempDir()
	opts := clustertest.SingleNodeOptions(t, dir)
	opts.RootAccessKeyID, opts.RootSecretAccessKey = rootID, rootSecret
	opts.AWSAddr = "127.0.0.1:0"
	opts.AuditPath = filepath.Join(dir, "audit.log")
	n, _ := startReady(t, opts)
	defer n.Stop()
	ctx := t.Context()
	endpoint := "http://" + n.AWSAddr()
	acct := opts.Service.AccountID
	root := asKey(t, n.Addr(), rootID+":"+rootSecret)
	iam := cofferv1.NewIAMServiceClient(root)

	sec, err := cofferv1.NewSecretsManagerServiceClient(root).CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: "app/db", SecretString: proto.String("role-canary")})
	if err != nil {
		t.Fatal(err)
	}
	roleARN := "arn:aws:iam::" + acct + ":role/reader"
	assume := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sts:AssumeRole","Resource":"` + roleARN + `"}]}`
	appID, appSecret := principalWithPolicy(t, iam, "app", assume)
	otherID, otherSecret := principalWithPolicy(t, iam, "other", assume) // allowed by itself, not trusted by the role
	idleID, idleSecret := principalWithPolicy(t, iam, "idle", "")        // trusted by the role, not allowed by itself

	trust := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":["arn:aws:iam::` + acct + `:user/app","arn:aws:iam::` + acct + `:user/idle"]},"Action":"sts:AssumeRole"}]}`
	if _, err := iam.CreateRole(ctx, &cofferv1.CreateRoleRequest{Name: "reader", AssumeRolePolicyDocument: `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sts:AssumeRole","Resource":"*","Principal":"*"}]}`}); server.TypeOf(err) != server.TypeMalformedPolicy {
		t.Fatalf("a trust policy with a Resource: %v, want MalformedPolicyDocumentException", err)
	}
	created, err := iam.CreateRole(ctx, &cofferv1.CreateRoleRequest{Name: "reader", AssumeRolePolicyDocument: trust})
	if err != nil {
		t.Fatal(err)
	}
	if created.GetRole().GetArn() != roleARN || created.GetRole().GetMaxSessionDurationSeconds() != 3600 || !strings.HasPrefix(created.GetRole().GetRoleId(), "AROA") {
		t.Fatalf("created role %v", created.GetRole())
	}
	_, err = iam.CreateRole(ctx, &cofferv1.CreateRoleRequest{Name: "reader", AssumeRolePolicyDocument: trust})
	wantType(t, err, server.TypeResourceExists)
	if _, err := iam.PutPolicy(ctx, &cofferv1.PutPolicyRequest{Name: "read-app", Document: readOnly("arn:aws:secretsmanager:*:*:secret:app/*")}); err != nil {
		t.Fatal(err)
	}
	if _, err := iam.AttachRolePolicy(ctx, &cofferv1.AttachRolePolicyRequest{RoleName: "reader", Policy: "read-app"}); err != nil {
		t.Fatal(err)
	}

	app := stsClient(endpoint, credentials.NewStaticCredentialsProvider(appID, appSecret, ""))
	out, err := app.AssumeRole(ctx, &sts.AssumeRoleInput{RoleArn: aws.String(roleARN), RoleSessionName: aws.String("job-1")})
	if err != nil {
		t.Fatal(err)
	}
	wantARN := "arn:aws:sts::" + acct + ":assumed-role/reader/job-1"
	if got := aws.ToString(out.AssumedRoleUser.Arn); got != wantARN {
		t.Fatalf("AssumedRoleUser.Arn = %s, want %s", got, wantARN)
	}
	if id := aws.ToString(out.AssumedRoleUser.AssumedRoleId); id != created.GetRole().GetRoleId()+":job-1" {
		t.Fatalf("AssumedRoleId = %s", id)
	}
	if !strings.HasPrefix(aws.ToString(out.Credentials.AccessKeyId), "ASIA") {
		t.Fatalf("access key id %s", aws.ToString(out.Credentials.AccessKeyId))
	}
	if d := time.Until(aws.ToTime(out.Credentials.Expiration)); d < 50*time.Minute || d > 61*time.Minute {
		t.Fatalf("default role session lasts %v, want an hour", d)
	}

	// The session carries the role's policy: it reads app/*, and nothing
	// the role was not given.
	sm := smClient(endpoint, *out)
	got, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(sec.GetArn())})
	if err != nil || aws.ToString(got.SecretString) != "role-canary" {
		t.Fatalf("GetSecretValue as the role: %v", err)
	}
	_, err = sm.ListSecretVersionIds(ctx, &secretsmanager.ListSecretVersionIdsInput{SecretId: aws.String(sec.GetArn())})
	wantCode(t, err, "AccessDeniedException")
	if !strings.Contains(err.Error(), wantARN) {
		t.Fatalf("the denial does not name the assumed role: %v", err)
	}
	who, err := stsClient(endpoint, credentials.NewStaticCredentialsProvider(*out.Credentials.AccessKeyId, *out.Credentials.SecretAccessKey, *out.Credentials.SessionToken)).
		GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil || aws.ToString(who.Arn) != wantARN {
		t.Fatalf("GetCallerIdentity as the role: %v, %v", who, err)
	}
	// A role session is a session: it changes no IAM.
	roleConn := asKey(t, n.Addr(), *out.Credentials.AccessKeyId+":"+*out.Credentials.SecretAccessKey+":"+*out.Credentials.SessionToken)
	_, err = cofferv1.NewIAMServiceClient(roleConn).AttachRolePolicy(ctx, &cofferv1.AttachRolePolicyRequest{RoleName: "reader", Policy: "read-app"})
	wantType(t, err, server.TypeAccessDeniedException)

	// Role chaining: a trust policy naming the role lets its sessions
	// assume it again, for an hour at most.
	chainTrust := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":["arn:aws:iam::` + acct + `:user/app","arn:aws:iam::` + acct + `:user/idle","` + roleARN + `"]},"Action":"sts:AssumeRole"}]}`
	if _, err := iam.UpdateAssumeRolePolicy(ctx, &cofferv1.UpdateAssumeRolePolicyRequest{RoleName: "reader", PolicyDocument: chainTrust}); err != nil {
		t.Fatal(err)
	}
	if _, err := iam.PutPolicy(ctx, &cofferv1.PutPolicyRequest{Name: "may-assume", Document: assume}); err != nil {
		t.Fatal(err)
	}
	if _, err := iam.AttachRolePolicy(ctx, &cofferv1.AttachRolePolicyRequest{RoleName: "reader", Policy: "may-assume"}); err != nil {
		t.Fatal(err)
	}
	asRole := stsClient(endpoint, credentials.NewStaticCredentialsProvider(*out.Credentials.AccessKeyId, *out.Credentials.SecretAccessKey, *out.Credentials.SessionToken))
	_, err = asRole.AssumeRole(ctx, &sts.AssumeRoleInput{RoleArn: aws.String(roleARN), RoleSessionName: aws.String("chain"), DurationSeconds: aws.Int32(3601)})
	wantCode(t, err, "ValidationError")
	chained, err := asRole.AssumeRole(ctx, &sts.AssumeRoleInput{RoleArn: aws.String(roleARN), RoleSessionName: aws.String("chain")})
	if err != nil || aws.ToString(chained.AssumedRoleUser.Arn) != "arn:aws:sts::"+acct+":assumed-role/reader/chain" {
		t.Fatalf("chained AssumeRole: %v", err)
	}
	if _, err := iam.DetachRolePolicy(ctx, &cofferv1.DetachRolePolicyRequest{RoleName: "reader", Policy: "may-assume"}); err != nil {
		t.Fatal(err)
	}

	// Refusals, in STS's words.
	for _, c := range []struct {
		name, id, secret, role, session string
		duration                        int32
		code                            string
	}{
		{"not trusted by the role", otherID, otherSecret, roleARN, "s1", 0, "AccessDenied"},
		{"trusted, but no identity policy allows it", idleID, idleSecret, roleARN, "s1", 0, "AccessDenied"},
		{"no such role", appID, appSecret, "arn:aws:iam::" + acct + ":role/nope", "s1", 0, "AccessDenied"},
		{"session name too short", appID, appSecret, roleARN, "a", 0, "ValidationError"},
		{"session name with a space", appID, appSecret, roleARN, "job 1", 0, "ValidationError"},
		{"over the role's maximum", appID, appSecret, roleARN, "s1", 7200, "ValidationError"},
		{"under 15 minutes", appID, appSecret, roleARN, "s1", 600, "ValidationError"},
	} {
		in := &sts.AssumeRoleInput{RoleArn: aws.String(c.role), RoleSessionName: aws.String(c.session)}
		if c.duration != 0 {
			in.DurationSeconds = aws.Int32(c.duration)
		}
		_, err := stsClient(endpoint, credentials.NewStaticCredentialsProvider(c.id, c.secret, "")).AssumeRole(ctx, in)
		var ae smithy.APIError
		if !errors.As(err, &ae) || ae.ErrorCode() != c.code {
			t.Errorf("%s: %v, want %s", c.name, err, c.code)
		}
	}

	// A role with a policy attached is not deleted; once detached, deleting
	// it revokes its live sessions.
	_, err = iam.DeleteRole(ctx, &cofferv1.DeleteRoleRequest{Name: "reader"})
	wantType(t, err, server.TypeInvalidRequest)
	if _, err := iam.DetachRolePolicy(ctx, &cofferv1.DetachRolePolicyRequest{RoleName: "reader", Policy: "read-app"}); err != nil {
		t.Fatal(err)
	}
	if _, err := iam.DeleteRole(ctx, &cofferv1.DeleteRoleRequest{Name: "reader"}); err != nil {
		t.Fatal(err)
	}
	_, err = sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(sec.GetArn())})
	wantCode(t, err, "UnrecognizedClientException")

	// The trail names the assumed-role ARN as the principal of the
	// session's requests.
	n.Stop()
	raw, err := os.ReadFile(opts.AuditPath)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte("role-canary")) || bytes.Contains(raw, []byte(*out.Credentials.SecretAccessKey)) || bytes.Contains(raw, []byte(*out.Credentials.SessionToken)) {
		t.Fatal("the audit log holds a secret value or role credentials")
	}
	var ops []string
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("audit line is not JSON: %v", err)
		}
		if rec["principal"] == wantARN {
			ops = append(ops, rec["operation"].(string)+":"+rec["decision"].(string))
		}
	}
	if want := "GetSecretValue:allow ListSecretVersionIds:deny GetCallerIdentity:allow AttachRolePolicy:deny AssumeRole:allow AssumeRole:allow"; strings.Join(ops, " ") != want {
		t.Fatalf("audited requests of %s: %v, want %s", wantARN, ops, want)
	}
}

// TestAssumeRoleWithWebIdentity: an ID token signed by a real OIDC issuer
// (discovery and JWKS fetched over HTTPS from a TLS test server) is
// exchanged, unsigned, through aws-sdk-go-v2's STS client for a role's
// credentials when the role's trust policy names the issuer as Federated
// principal and its <issuer>:sub and <issuer>:aud conditions hold. A token
// for another subject, audience or issuer, an expired one and a forged one
// are refused with STS's codes.
func TestAssumeRoleWithWebIdentity(t *testing.T) {
	iss := newTestIssuer(t)
	opts := clustertest.SingleNodeOptions(t, t.TempDir())
	opts.RootAccessKeyID, opts.RootSecretAccessKey = rootID, rootSecret
	opts.AWSAddr = "127.0.0.1:0"
	opts.Service.WebIdentityIssuers = []server.WebIdentityIssuer{{URL: iss.srv.URL, ClientIDs: []string{"coffer"}, HTTPClient: iss.srv.Client()}}
	n, _ := startReady(t, opts)
	defer n.Stop()
	ctx := t.Context()
	endpoint := "http://" + n.AWSAddr()
	acct := opts.Service.AccountID
	root := asKey(t, n.Addr(), rootID+":"+rootSecret)
	iam := cofferv1.NewIAMServiceClient(root)
	sec, err := cofferv1.NewSecretsManagerServiceClient(root).CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: "app/api", SecretString: proto.String("oidc-canary")})
	if err != nil {
		t.Fatal(err)
	}
	hp := strings.TrimPrefix(iss.srv.URL, "https://")
	const sub = "system:serviceaccount:payments:api"
	trust := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Federated":"arn:aws:iam::` + acct + `:oidc-provider/` + hp + `"},
		"Action":"sts:AssumeRoleWithWebIdentity","Condition":{"StringEquals":{"` + hp + `:sub":"` + sub + `","` + hp + `:aud":"coffer"}}}]}`
	if _, err := iam.CreateRole(ctx, &cofferv1.CreateRoleRequest{Name: "payments-api", AssumeRolePolicyDocument: trust, MaxSessionDurationSeconds: 7200}); err != nil {
		t.Fatal(err)
	}
	if _, err := iam.PutPolicy(ctx, &cofferv1.PutPolicyRequest{Name: "read-app", Document: readOnly("arn:aws:secretsmanager:*:*:secret:app/*")}); err != nil {
		t.Fatal(err)
	}
	if _, err := iam.AttachRolePolicy(ctx, &cofferv1.AttachRolePolicyRequest{RoleName: "payments-api", Policy: "read-app"}); err != nil {
		t.Fatal(err)
	}
	roleARN := "arn:aws:iam::" + acct + ":role/payments-api"
	anon := stsClient(endpoint, aws.AnonymousCredentials{})
	assume := func(token string, duration int32) (*sts.AssumeRoleWithWebIdentityOutput, error) {
		in := &sts.AssumeRoleWithWebIdentityInput{RoleArn: aws.String(roleARN), RoleSessionName: aws.String("pod-7"), WebIdentityToken: aws.String(token)}
		if duration != 0 {
			in.DurationSeconds = aws.Int32(duration)
		}
		return anon.AssumeRoleWithWebIdentity(ctx, in)
	}

	out, err := assume(iss.token(t, iss.srv.URL, sub, "coffer", time.Now().Add(time.Hour)), 7200)
	if err != nil {
		t.Fatal(err)
	}
	wantARN := "arn:aws:sts::" + acct + ":assumed-role/payments-api/pod-7"
	if aws.ToString(out.AssumedRoleUser.Arn) != wantARN || aws.ToString(out.SubjectFromWebIdentityToken) != sub ||
		aws.ToString(out.Audience) != "coffer" || aws.ToString(out.Provider) != iss.srv.URL {
		t.Fatalf("AssumeRoleWithWebIdentity answered %s, sub %s, aud %s, provider %s", aws.ToString(out.AssumedRoleUser.Arn),
			aws.ToString(out.SubjectFromWebIdentityToken), aws.ToString(out.Audience), aws.ToString(out.Provider))
	}
	if d := time.Until(aws.ToTime(out.Credentials.Expiration)); d < 110*time.Minute || d > 121*time.Minute {
		t.Fatalf("a 7200-second session lasts %v", d)
	}
	sm := smClient(endpoint, sts.AssumeRoleOutput{Credentials: out.Credentials})
	got, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(sec.GetArn())})
	if err != nil || aws.ToString(got.SecretString) != "oidc-canary" {
		t.Fatalf("GetSecretValue as the web identity role: %v", err)
	}

	other, err := newTestIssuerKey()
	if err != nil {
		t.Fatal(err)
	}
	forged, err := jwt.Signed(other).Claims(jwt.Claims{Issuer: iss.srv.URL, Subject: sub, Audience: jwt.Audience{"coffer"},
		Expiry: jwt.NewNumericDate(time.Now().Add(time.Hour))}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, token string
		duration    int32
		code        string
	}{
		{"another subject", iss.token(t, iss.srv.URL, "system:serviceaccount:other:api", "coffer", time.Now().Add(time.Hour)), 0, "AccessDenied"},
		{"another audience", iss.token(t, iss.srv.URL, sub, "sts.amazonaws.com", time.Now().Add(time.Hour)), 0, "InvalidIdentityToken"},
		{"an unknown issuer", iss.token(t, "https://issuer.invalid", sub, "coffer", time.Now().Add(time.Hour)), 0, "InvalidIdentityToken"},
		{"expired", iss.token(t, iss.srv.URL, sub, "coffer", time.Now().Add(-time.Minute)), 0, "ExpiredTokenException"},
		{"signed with another key", forged, 0, "InvalidIdentityToken"},
		{"not a JWT", "not-a-token", 0, "InvalidIdentityToken"},
		{"over the role's maximum", iss.token(t, iss.srv.URL, sub, "coffer", time.Now().Add(time.Hour)), 10800, "ValidationError"},
	} {
		_, err := assume(c.token, c.duration)
		var ae smithy.APIError
		if !errors.As(err, &ae) || ae.ErrorCode() != c.code {
			t.Errorf("%s: %v, want %s", c.name, err, c.code)
		}
	}
}

// newTestIssuerKey is a signer under a key no issuer publishes, with the
// key id the test issuer's JWKS uses.
func newTestIssuerKey() (jose.Signer, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	return jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: "k1"}}, (&jose.SignerOptions{}).WithType("JWT"))
}
