package node_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server"
	"github.com/cofferhq/coffer/server/sigv4"
	"github.com/cofferhq/coffer/server/sigv4/grpcsig"
	"github.com/cofferhq/coffer/test/testkit/clustertest"
	"github.com/cofferhq/coffer/test/wait"
)

const (
	rootID     = "AKIANODETESTROOT0001"
	rootSecret = "node/test/root/secret/access/key/0000001"
)

// bearerCreds sends "authorization: Bearer TOKEN" on every call: the
// deprecated form, still accepted over TLS and from loopback.
type bearerCreds string

func (b bearerCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}
func (bearerCreds) RequireTransportSecurity() bool { return false }

func dial(t *testing.T, addr string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	if len(opts) == 0 {
		opts = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// asKey is a connection whose calls are signed with the access key in
// token, "ACCESS_KEY_ID:SECRET[:SESSION_TOKEN]", as the CLI signs them.
func asKey(t *testing.T, addr, token string) *grpc.ClientConn {
	parts := strings.SplitN(token, ":", 3)
	c := &grpcsig.Credentials{AccessKeyID: parts[0], SecretAccessKey: parts[1], Region: "us-east-1"}
	if len(parts) == 3 {
		c.SessionToken = parts[2]
	}
	return dial(t, addr, append(c.DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
}

func wantType(t *testing.T, err error, typ string) {
	t.Helper()
	if got := server.TypeOf(err); got != typ {
		t.Fatalf("error %v has type %q, want %s", err, got, typ)
	}
}

// principalWithPolicy creates a principal, an access key for it, and an
// identity policy attached to it, through the IAM API as root.
func principalWithPolicy(t *testing.T, iam cofferv1.IAMServiceClient, name, doc string) (id, secret string) {
	t.Helper()
	ctx := t.Context()
	if _, err := iam.CreatePrincipal(ctx, &cofferv1.CreatePrincipalRequest{Name: name}); err != nil {
		t.Fatal(err)
	}
	k, err := iam.CreateAccessKey(ctx, &cofferv1.CreateAccessKeyRequest{Principal: name})
	if err != nil {
		t.Fatal(err)
	}
	if doc != "" {
		if _, err := iam.PutPolicy(ctx, &cofferv1.PutPolicyRequest{Name: name + "-policy", Document: doc}); err != nil {
			t.Fatal(err)
		}
		if _, err := iam.AttachPolicy(ctx, &cofferv1.AttachPolicyRequest{Principal: name, Policy: name + "-policy"}); err != nil {
			t.Fatal(err)
		}
	}
	return k.GetAccessKeyId(), k.GetSecretAccessKey()
}

func readOnly(resource string) string {
	return `{"Version":"2012-10-17","Statement":[{"Sid":"Read","Effect":"Allow","Action":["secretsmanager:GetSecretValue","secretsmanager:DescribeSecret"],"Resource":"` + resource + `"}]}`
}

// TestTemporaryCredentialsOverGRPC exchanges an access key for temporary
// credentials and signs calls with them; they stop working when
// they expire and when their parent key is deleted.
func TestTemporaryCredentialsOverGRPC(t *testing.T) {
	opts := clustertest.SingleNodeOptions(t, t.TempDir())
	opts.RootAccessKeyID, opts.RootSecretAccessKey = rootID, rootSecret
	opts.Service.MinSessionDuration = time.Second
	n, _ := startReady(t, opts)
	defer n.Stop()
	ctx := t.Context()
	root := asKey(t, n.Addr(), rootID+":"+rootSecret)
	iam := cofferv1.NewIAMServiceClient(root)
	v := "temporary-canary"
	sec, err := cofferv1.NewSecretsManagerServiceClient(root).CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: "app/db", SecretString: &v})
	if err != nil {
		t.Fatal(err)
	}
	id, secret := principalWithPolicy(t, iam, "app", readOnly("arn:aws:secretsmanager:*:*:secret:app/*"))
	long := asKey(t, n.Addr(), id+":"+secret)

	creds, err := cofferv1.NewIAMServiceClient(long).GetSessionToken(ctx, &cofferv1.GetSessionTokenRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(creds.GetAccessKeyId(), "ASIA") || creds.GetSessionToken() == "" {
		t.Fatalf("temporary credentials look wrong: id %q, token empty %v", creds.GetAccessKeyId(), creds.GetSessionToken() == "")
	}
	if d := creds.GetExpiration().AsTime().Sub(time.Now()); d < 50*time.Minute || d > 61*time.Minute {
		t.Fatalf("default session lasts %v, want about an hour", d)
	}
	session := asKey(t, n.Addr(), creds.GetAccessKeyId()+":"+creds.GetSecretAccessKey()+":"+creds.GetSessionToken())
	got, err := cofferv1.NewSecretsManagerServiceClient(session).GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: sec.GetArn()})
	if err != nil || got.GetSecretString() != v {
		t.Fatalf("read with temporary credentials: %v", err)
	}
	who, err := cofferv1.NewIAMServiceClient(session).GetCallerIdentity(ctx, &cofferv1.GetCallerIdentityRequest{})
	if err != nil || who.GetPrincipal() != "app" || who.GetAccessKeyId() != creds.GetAccessKeyId() {
		t.Fatalf("GetCallerIdentity = %v, %v", who, err)
	}
	// The policy still applies to the session's principal.
	_, err = cofferv1.NewSecretsManagerServiceClient(session).ListSecretVersionIds(ctx, &cofferv1.ListSecretVersionIdsRequest{SecretId: sec.GetArn()})
	wantType(t, err, server.TypeAccessDeniedException)
	// Without the token, or with another one, the key is refused.
	_, err = cofferv1.NewSecretsManagerServiceClient(asKey(t, n.Addr(), creds.GetAccessKeyId()+":"+creds.GetSecretAccessKey())).
		GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: sec.GetArn()})
	wantType(t, err, server.TypeUnrecognizedClient)
	// A session cannot mint sessions.
	_, err = cofferv1.NewIAMServiceClient(session).GetSessionToken(ctx, &cofferv1.GetSessionTokenRequest{})
	wantType(t, err, server.TypeAccessDeniedException)
	// Out of bounds.
	_, err = cofferv1.NewIAMServiceClient(long).GetSessionToken(ctx, &cofferv1.GetSessionTokenRequest{DurationSeconds: 13 * 3600})
	wantType(t, err, server.TypeValidation)

	// Expired: a one-second session works, then is refused as expired.
	short, err := cofferv1.NewIAMServiceClient(long).GetSessionToken(ctx, &cofferv1.GetSessionTokenRequest{DurationSeconds: 1})
	if err != nil {
		t.Fatal(err)
	}
	shortClient := cofferv1.NewSecretsManagerServiceClient(asKey(t, n.Addr(), short.GetAccessKeyId()+":"+short.GetSecretAccessKey()+":"+short.GetSessionToken()))
	wait.True(t, 10*time.Second, "the one-second session to expire", func() bool {
		_, err := shortClient.GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: sec.GetArn()})
		return server.TypeOf(err) == server.TypeExpiredToken
	})

	// Revoked: deleting the parent key deletes its sessions.
	if _, err := iam.DeleteAccessKey(ctx, &cofferv1.DeleteAccessKeyRequest{AccessKeyId: id}); err != nil {
		t.Fatal(err)
	}
	_, err = cofferv1.NewSecretsManagerServiceClient(session).GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: sec.GetArn()})
	wantType(t, err, server.TypeUnrecognizedClient)
}

// testPKI is a CA and the certificates a test issues under it.
type testPKI struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newPKI(t *testing.T, name string) *testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testPKI{cert: cert, key: key, pool: pool}
}

// issue makes a leaf certificate with common name cn, and the SPIFFE ID
// when one is given; server certificates also name 127.0.0.1.
func (p *testPKI) issue(t *testing.T, cn, spiffe string, server bool) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	if spiffe != "" {
		u, err := url.Parse(spiffe)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = []*url.URL{u}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.cert, &key.PublicKey, p.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestMTLSIdentity identifies gRPC callers by their client certificates:
// the subject common name or SPIFFE ID maps to a principal, whose policies
// then apply; a certificate from another CA does not get in.
func TestMTLSIdentity(t *testing.T) {
	ca := newPKI(t, "clients and server")
	opts := clustertest.SingleNodeOptions(t, t.TempDir())
	opts.RootAccessKeyID, opts.RootSecretAccessKey = rootID, rootSecret
	opts.GRPCTLS = &tls.Config{Certificates: []tls.Certificate{ca.issue(t, "server", "", true)}, ClientCAs: ca.pool,
		ClientAuth: tls.VerifyClientCertIfGiven, MinVersion: tls.VersionTLS12}
	opts.CertIdentities = &server.CertIdentities{
		BySubjectCN: map[string]string{"deploy-bot": "deployer"},
		BySPIFFEID:  map[string]string{"spiffe://example.org/ns/prod/sa/app": "app"},
	}
	n, _ := startReady(t, opts)
	defer n.Stop()
	ctx := t.Context()

	clientTLS := func(certs ...tls.Certificate) grpc.DialOption {
		return grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: ca.pool, Certificates: certs, MinVersion: tls.VersionTLS12}))
	}
	root := dial(t, n.Addr(), clientTLS(), grpc.WithPerRPCCredentials(bearerCreds(rootID+":"+rootSecret)))
	iam := cofferv1.NewIAMServiceClient(root)
	sm := cofferv1.NewSecretsManagerServiceClient(root)
	v := "mtls-canary"
	deploy, err := sm.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: "deploy/key", SecretString: &v})
	if err != nil {
		t.Fatal(err)
	}
	other, err := sm.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: "other/key", SecretString: &v})
	if err != nil {
		t.Fatal(err)
	}
	principalWithPolicy(t, iam, "deployer", readOnly("arn:aws:secretsmanager:*:*:secret:deploy/*"))
	principalWithPolicy(t, iam, "app", readOnly("arn:aws:secretsmanager:*:*:secret:other/*"))

	byCN := cofferv1.NewSecretsManagerServiceClient(dial(t, n.Addr(), clientTLS(ca.issue(t, "deploy-bot", "", false))))
	if got, err := byCN.GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: deploy.GetArn()}); err != nil || got.GetSecretString() != v {
		t.Fatalf("certificate CN deploy-bot reading deploy/key: %v", err)
	}
	_, err = byCN.GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: other.GetArn()})
	wantType(t, err, server.TypeAccessDeniedException)
	if !strings.Contains(status.Convert(err).Message(), "user/deployer is not authorized to perform: secretsmanager:GetSecretValue on resource: "+other.GetArn()) {
		t.Fatalf("AccessDenied message %q does not name principal, action and resource", status.Convert(err).Message())
	}

	bySPIFFE := cofferv1.NewSecretsManagerServiceClient(dial(t, n.Addr(), clientTLS(ca.issue(t, "ignored", "spiffe://example.org/ns/prod/sa/app", false))))
	if _, err := bySPIFFE.GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: other.GetArn()}); err != nil {
		t.Fatalf("SPIFFE identity app reading other/key: %v", err)
	}
	_, err = bySPIFFE.GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: deploy.GetArn()})
	wantType(t, err, server.TypeAccessDeniedException)

	// A valid certificate that maps to no principal identifies no one.
	unmapped := cofferv1.NewSecretsManagerServiceClient(dial(t, n.Addr(), clientTLS(ca.issue(t, "stranger", "", false))))
	_, err = unmapped.GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: deploy.GetArn()})
	wantType(t, err, server.TypeMissingAuthToken)

	// A certificate from another CA, sent anyway, fails the handshake.
	rogue := newPKI(t, "rogue").issue(t, "deploy-bot", "", false)
	forced := grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: ca.pool, MinVersion: tls.VersionTLS12,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &rogue, nil }}))
	_, err = cofferv1.NewSecretsManagerServiceClient(dial(t, n.Addr(), forced)).
		GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: deploy.GetArn()})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("a certificate from another CA got %v, want the handshake to fail", err)
	}
}

// TestAuditFailsClosed writes an audit record for every request, never the
// value, and refuses requests — over gRPC and the AWS API — once the log
// cannot be written.
func TestAuditFailsClosed(t *testing.T) {
	dir := t.TempDir()
	opts := clustertest.SingleNodeOptions(t, dir)
	opts.RootAccessKeyID, opts.RootSecretAccessKey = rootID, rootSecret
	opts.AuditPath = filepath.Join(dir, "audit.log")
	opts.AuditSync = true
	opts.AWSAddr = "127.0.0.1:0"
	n, _ := startReady(t, opts)
	defer n.Stop()
	ctx := t.Context()
	sm := cofferv1.NewSecretsManagerServiceClient(asKey(t, n.Addr(), rootID+":"+rootSecret))
	canary := "audit-canary-4f1d2e"
	sec, err := sm.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: "audited", SecretString: &canary})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sm.GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: sec.GetArn()}); err != nil {
		t.Fatal(err)
	}
	awsGet := func() (int, string) {
		body := []byte(`{"SecretId":"` + sec.GetArn() + `"}`)
		req, _ := http.NewRequest(http.MethodPost, "http://"+n.AWSAddr()+"/", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/x-amz-json-1.1")
		req.Header.Set("X-Amz-Target", "secretsmanager.GetSecretValue")
		if err := sigv4.Sign(req, body, sigv4.Credentials{AccessKeyID: rootID, SecretAccessKey: rootSecret}, "us-east-1", "secretsmanager", time.Now()); err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		return resp.StatusCode, b.String()
	}
	if code, body := awsGet(); code != http.StatusOK || !strings.Contains(body, canary) {
		t.Fatalf("AWS GetSecretValue: %d %s", code, body)
	}
	_, err = sm.GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: "no-such-secret"})
	wantType(t, err, server.TypeResourceNotFound)

	raw, err := os.ReadFile(opts.AuditPath)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte(canary)) || bytes.Contains(raw, []byte(rootSecret)) {
		t.Fatal("the audit log holds the secret value or the secret access key")
	}
	var ops []string
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("audit line is not JSON: %v", err)
		}
		if rec["principal"] == "root" {
			ops = append(ops, rec["protocol"].(string)+":"+rec["operation"].(string)+":"+rec["outcome"].(string))
		}
	}
	want := []string{"grpc:CreateSecret:success", "grpc:GetSecretValue:success", "aws:GetSecretValue:success", "grpc:GetSecretValue:error"}
	if strings.Join(ops, " ") != strings.Join(want, " ") {
		t.Fatalf("audited requests %v, want %v", ops, want)
	}
	if !bytes.Contains(raw, []byte(`"statement":"root/full-access"`)) {
		t.Fatalf("records do not name the deciding statement:\n%s", raw)
	}

	// The log becomes unwritable: its file is replaced by a directory.
	if err := os.Remove(opts.AuditPath); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(opts.AuditPath, 0o700); err != nil {
		t.Fatal(err)
	}
	got, err := sm.GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: sec.GetArn()})
	wantType(t, err, server.TypeInternalServiceError)
	if got.GetSecretString() != "" {
		t.Fatal("a value was returned although the request could not be audited")
	}
	if code, body := awsGet(); code != http.StatusInternalServerError || strings.Contains(body, canary) {
		t.Fatalf("AWS GetSecretValue with an unwritable audit log: %d %s", code, body)
	}
}

// TestSTSQueryAPI serves GetSessionToken and GetCallerIdentity in the STS
// Query protocol on the AWS endpoint, signed for "sts"; the credentials it
// returns work on the Secrets Manager protocol of the same endpoint.
func TestSTSQueryAPI(t *testing.T) {
	opts := clustertest.SingleNodeOptions(t, t.TempDir())
	opts.RootAccessKeyID, opts.RootSecretAccessKey = rootID, rootSecret
	opts.AWSAddr = "127.0.0.1:0"
	n, _ := startReady(t, opts)
	defer n.Stop()
	post := func(service, target, body string, creds sigv4.Credentials) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, "http://"+n.AWSAddr()+"/", strings.NewReader(body))
		if target == "" {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
		} else {
			req.Header.Set("Content-Type", "application/x-amz-json-1.1")
			req.Header.Set("X-Amz-Target", target)
		}
		if err := sigv4.Sign(req, []byte(body), creds, "us-east-1", service, time.Now()); err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		return resp.StatusCode, b.String()
	}
	root := sigv4.Credentials{AccessKeyID: rootID, SecretAccessKey: rootSecret}
	code, body := post("sts", "", "Action=GetCallerIdentity&Version=2011-06-15", root)
	if code != http.StatusOK || !strings.Contains(body, "<Arn>arn:aws:iam::000000000000:user/root</Arn>") {
		t.Fatalf("GetCallerIdentity: %d %s", code, body)
	}
	code, body = post("sts", "", "Action=GetSessionToken&Version=2011-06-15&DurationSeconds=900", root)
	if code != http.StatusOK {
		t.Fatalf("GetSessionToken: %d %s", code, body)
	}
	field := func(name string) string {
		_, rest, _ := strings.Cut(body, "<"+name+">")
		v, _, _ := strings.Cut(rest, "</"+name+">")
		return v
	}
	session := sigv4.Credentials{AccessKeyID: field("AccessKeyId"), SecretAccessKey: field("SecretAccessKey"), SessionToken: field("SessionToken")}
	if !strings.HasPrefix(session.AccessKeyID, "ASIA") || session.SessionToken == "" || field("Expiration") == "" {
		t.Fatalf("GetSessionToken response lacks credentials: %s", body)
	}
	if code, body := post("secretsmanager", "secretsmanager.ListSecrets", "{}", session); code != http.StatusOK {
		t.Fatalf("ListSecrets with STS credentials: %d %s", code, body)
	}
	// Wrong key: STS's own error code, in XML.
	code, body = post("sts", "", "Action=GetCallerIdentity&Version=2011-06-15", sigv4.Credentials{AccessKeyID: "AKIANOSUCHKEY0000000", SecretAccessKey: "x"})
	if code != http.StatusForbidden || !strings.Contains(body, "<Code>InvalidClientTokenId</Code>") {
		t.Fatalf("unknown key: %d %s", code, body)
	}
	code, body = post("sts", "", "Action=AssumeRoleWithSAML&Version=2011-06-15", root)
	if code != http.StatusBadRequest || !strings.Contains(body, "<Code>InvalidAction</Code>") {
		t.Fatalf("AssumeRoleWithSAML: %d %s", code, body)
	}
	// AssumeRole is served (TestAssumeRole); without a role ARN it is STS's
	// ValidationError.
	code, body = post("sts", "", "Action=AssumeRole&Version=2011-06-15", root)
	if code != http.StatusBadRequest || !strings.Contains(body, "<Code>ValidationError</Code>") || !strings.Contains(body, "roleArn") {
		t.Fatalf("AssumeRole without RoleArn: %d %s", code, body)
	}
	// A request signed for sts is not accepted by Secrets Manager, and the
	// reverse: the signing name is part of the scope.
	if code, _ := post("sts", "secretsmanager.ListSecrets", "{}", root); code != http.StatusForbidden {
		t.Fatalf("Secrets Manager request signed for sts: %d", code)
	}
}
