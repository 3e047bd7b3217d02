package compat

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	cserver "github.com/cofferhq/coffer/server"
	"github.com/cofferhq/coffer/server/sigv4/grpcsig"
	"github.com/cofferhq/coffer/test/wait"
)

// grpcAs is a gRPC connection to s whose calls are signed with the access
// key in token (AKID:SECRET[:SESSION_TOKEN]), as the coffer CLI signs them.
func (s *server) grpcAs(t *testing.T, token string) *grpc.ClientConn {
	t.Helper()
	parts := strings.SplitN(token, ":", 3)
	c := &grpcsig.Credentials{AccessKeyID: parts[0], SecretAccessKey: parts[1], Region: region}
	if len(parts) == 3 {
		c.SessionToken = parts[2]
	}
	conn, err := grpc.NewClient(s.grpcAddr, append(c.DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

const arnPrefix = "arn:aws:secretsmanager:" + region + ":" + account + ":secret:"

// accessFixture is a running server with secrets, principals and policies
// for the access-control tests.
type accessFixture struct {
	s       *server
	root    *grpc.ClientConn
	iam     cofferv1.IAMServiceClient
	arns    map[string]string    // secret name → ARN
	keys    map[string][2]string // principal → access key id, secret
	values  map[string]string    // secret name → value
	cleanup []func()
}

func newAccessFixture(t *testing.T, extraArgs ...string) *accessFixture {
	t.Helper()
	f := &accessFixture{s: startServer(t, extraArgs...), arns: map[string]string{}, keys: map[string][2]string{}, values: map[string]string{}}
	f.root = f.s.grpcAs(t, accessKeyID+":"+secretAccessKey)
	f.iam = cofferv1.NewIAMServiceClient(f.root)
	ctx := t.Context()
	sm := cofferv1.NewSecretsManagerServiceClient(f.root)
	for _, sec := range []struct{ name, team string }{{"app/db", "payments"}, {"app/other", "search"}, {"ops/cert", "ops"}} {
		v := "value-of-" + sec.name
		out, err := sm.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: sec.name, SecretString: &v,
			Tags: []*cofferv1.Tag{{Key: "team", Value: sec.team}}})
		if err != nil {
			t.Fatal(err)
		}
		f.arns[sec.name], f.values[sec.name] = out.GetArn(), v
	}
	principals := []struct{ name, doc string }{
		{"reader", stmts(`{"Sid":"Read","Effect":"Allow","Action":["secretsmanager:GetSecretValue","secretsmanager:DescribeSecret","secretsmanager:ListSecrets"],"Resource":"`+arnPrefix+`app/*"}`,
			`{"Sid":"Batch","Effect":"Allow","Action":"secretsmanager:BatchGetSecretValue","Resource":"*"}`)},
		{"denier", stmts(`{"Sid":"All","Effect":"Allow","Action":"secretsmanager:*","Resource":"*"}`,
			`{"Sid":"NoDB","Effect":"Deny","Action":"secretsmanager:GetSecretValue","Resource":"`+arnPrefix+`app/db-*"}`)},
		{"nobody", ""},
		{"resonly", ""},
		{"tagged", stmts(`{"Sid":"Payments","Effect":"Allow","Action":"secretsmanager:GetSecretValue","Resource":"*","Condition":{"StringEquals":{"secretsmanager:ResourceTag/team":"payments"}}}`)},
		{"local", stmts(`{"Sid":"Loopback","Effect":"Allow","Action":"secretsmanager:GetSecretValue","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":"127.0.0.0/8"}}}`)},
		{"remote", stmts(`{"Sid":"Office","Effect":"Allow","Action":"secretsmanager:GetSecretValue","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}}`)},
		{"operator", stmts(`{"Sid":"Ops","Effect":"Allow","Action":["coffer:ClusterStatus","coffer:SaveSnapshot","coffer:ListMembers"],"Resource":"*"}`)},
	}
	for _, p := range principals {
		if _, err := f.iam.CreatePrincipal(ctx, &cofferv1.CreatePrincipalRequest{Name: p.name}); err != nil {
			t.Fatal(err)
		}
		k, err := f.iam.CreateAccessKey(ctx, &cofferv1.CreateAccessKeyRequest{Principal: p.name})
		if err != nil {
			t.Fatal(err)
		}
		f.keys[p.name] = [2]string{k.GetAccessKeyId(), k.GetSecretAccessKey()}
		if p.doc == "" {
			continue
		}
		if _, err := f.iam.PutPolicy(ctx, &cofferv1.PutPolicyRequest{Name: p.name + "-policy", Document: p.doc}); err != nil {
			t.Fatalf("PutPolicy %s: %v", p.name, err)
		}
		if _, err := f.iam.AttachPolicy(ctx, &cofferv1.AttachPolicyRequest{Principal: p.name, Policy: p.name + "-policy"}); err != nil {
			t.Fatal(err)
		}
	}
	// ops/cert's resource policy alone lets resonly read it.
	if _, err := sm.PutResourcePolicy(ctx, &cofferv1.PutResourcePolicyRequest{SecretId: f.arns["ops/cert"], BlockPublicPolicy: aws.Bool(true),
		ResourcePolicy: stmts(`{"Sid":"ResOnly","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::` + account + `:user/resonly"},"Action":"secretsmanager:GetSecretValue","Resource":"*"}`)}); err != nil {
		t.Fatal(err)
	}
	// app/other's resource policy denies denier what its identity policy
	// allows: an explicit Deny in a resource policy wins.
	if _, err := sm.PutResourcePolicy(ctx, &cofferv1.PutResourcePolicyRequest{SecretId: f.arns["app/other"], BlockPublicPolicy: aws.Bool(true),
		ResourcePolicy: stmts(`{"Sid":"NoDescribe","Effect":"Deny","Principal":{"AWS":"arn:aws:iam::` + account + `:user/denier"},"Action":"secretsmanager:DescribeSecret","Resource":"*"}`)}); err != nil {
		t.Fatal(err)
	}
	return f
}

func stmts(s ...string) string {
	return `{"Version":"2012-10-17","Statement":[` + strings.Join(s, ",") + `]}`
}

func (f *accessFixture) sdkAs(t *testing.T, principal string) *secretsmanager.Client {
	if principal == "root" {
		return f.s.sdk(t, accessKeyID, secretAccessKey)
	}
	k := f.keys[principal]
	return f.s.sdk(t, k[0], k[1])
}

func (f *accessFixture) grpcAs(t *testing.T, principal string) *grpc.ClientConn {
	if principal == "root" {
		return f.root
	}
	k := f.keys[principal]
	return f.s.grpcAs(t, k[0]+":"+k[1])
}

// sdkErrorCode returns the AWS error type and HTTP status of an SDK error.
func sdkErrorCode(err error) (string, int) {
	var ae smithy.APIError
	var re *smithyhttp.ResponseError
	code, st := "", 0
	if errors.As(err, &ae) {
		code = ae.ErrorCode()
	}
	if errors.As(err, &re) {
		st = re.HTTPStatusCode()
	}
	return code, st
}

// TestAccessMatrix asserts the decision for principals × operations ×
// policies — allow, explicit deny, no match, resource policy only, and
// conditions true and false — over the AWS API (aws-sdk-go-v2, SigV4) and
// over gRPC, against a real cofferd.
func TestAccessMatrix(t *testing.T) {
	f := newAccessFixture(t)
	type verdict int
	const (
		allow verdict = iota
		deny
		explicitDeny
	)
	cases := []struct {
		principal, op, secret string
		want                  verdict
		why                   string
	}{
		{"reader", "GetSecretValue", "app/db", allow, "identity allow with a resource wildcard"},
		{"reader", "DescribeSecret", "app/other", allow, "identity allow"},
		{"reader", "GetSecretValue", "ops/cert", deny, "no statement matches the resource"},
		{"denier", "GetSecretValue", "app/db", explicitDeny, "explicit deny beats allow"},
		{"denier", "GetSecretValue", "app/other", allow, "deny does not match"},
		{"denier", "DescribeSecret", "app/db", allow, "deny names another action"},
		{"denier", "DescribeSecret", "app/other", explicitDeny, "a resource-policy explicit deny beats an identity allow"},
		{"nobody", "GetSecretValue", "app/db", deny, "no policy"},
		{"nobody", "DescribeSecret", "ops/cert", deny, "no policy"},
		{"resonly", "GetSecretValue", "ops/cert", allow, "resource policy only"},
		{"resonly", "DescribeSecret", "ops/cert", deny, "resource policy grants another action"},
		{"resonly", "GetSecretValue", "app/db", deny, "no resource policy there"},
		{"tagged", "GetSecretValue", "app/db", allow, "condition true (resource tag)"},
		{"tagged", "GetSecretValue", "app/other", deny, "condition false (resource tag)"},
		{"local", "GetSecretValue", "app/other", allow, "condition true (source IP)"},
		{"remote", "GetSecretValue", "app/other", deny, "condition false (source IP)"},
		{"operator", "GetSecretValue", "app/db", deny, "operators run snapshots, not read secrets"},
		{"root", "GetSecretValue", "ops/cert", allow, "root has full access"},
	}
	ctx := t.Context()
	for _, tc := range cases {
		t.Run(tc.principal+"/"+tc.op+"/"+tc.secret, func(t *testing.T) {
			arn := f.arns[tc.secret]
			action := "secretsmanager:" + tc.op
			// AWS API through the SDK.
			sdk := f.sdkAs(t, tc.principal)
			var err error
			var value string
			if tc.op == "GetSecretValue" {
				var out *secretsmanager.GetSecretValueOutput
				out, err = sdk.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(arn)})
				if err == nil {
					value = aws.ToString(out.SecretString)
				}
			} else {
				_, err = sdk.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: aws.String(arn)})
			}
			code, httpStatus := sdkErrorCode(err)
			switch {
			case tc.want == allow && err != nil:
				t.Fatalf("AWS API: %s (%s) was refused: %v", action, tc.why, err)
			case tc.want == allow && tc.op == "GetSecretValue" && value != f.values[tc.secret]:
				t.Fatalf("AWS API: read %q", value)
			case tc.want != allow && (code != "AccessDeniedException" || httpStatus != http.StatusBadRequest):
				t.Fatalf("AWS API: %s (%s) gave %v (type %q, HTTP %d); want AccessDeniedException, 400 (Secrets Manager Common Errors)", action, tc.why, err, code, httpStatus)
			}
			if tc.want != allow {
				msg := err.Error()
				if !strings.Contains(msg, "user/"+tc.principal+" is not authorized to perform: "+action+" on resource: "+arn) {
					t.Fatalf("AccessDenied does not name principal, action and resource: %s", msg)
				}
				if (tc.want == explicitDeny) != strings.Contains(msg, "explicit deny") {
					t.Fatalf("AccessDenied message %q; explicit deny expected: %v", msg, tc.want == explicitDeny)
				}
				if strings.Contains(msg, f.values[tc.secret]) {
					t.Fatal("AccessDenied message contains the value")
				}
			}

			// gRPC.
			sm := cofferv1.NewSecretsManagerServiceClient(f.grpcAs(t, tc.principal))
			if tc.op == "GetSecretValue" {
				var out *cofferv1.GetSecretValueResponse
				out, err = sm.GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: arn})
				value = out.GetSecretString()
			} else {
				_, err = sm.DescribeSecret(ctx, &cofferv1.DescribeSecretRequest{SecretId: arn})
			}
			switch {
			case tc.want == allow && err != nil:
				t.Fatalf("gRPC: %s (%s) was refused: %v", action, tc.why, err)
			case tc.want == allow && tc.op == "GetSecretValue" && value != f.values[tc.secret]:
				t.Fatalf("gRPC: read %q", value)
			case tc.want != allow && (status.Code(err) != codes.PermissionDenied || cserver.TypeOf(err) != cserver.TypeAccessDeniedException):
				t.Fatalf("gRPC: %s (%s) gave %v; want PermissionDenied / AccessDeniedException", action, tc.why, err)
			}
			if tc.want != allow {
				// The same words over gRPC as over the AWS API.
				msg := status.Convert(err).Message()
				if !strings.HasPrefix(msg, "User: arn:aws:iam::"+account+":user/"+tc.principal+" is not authorized to perform: "+action+" on resource: "+arn+" ") ||
					(tc.want == explicitDeny) != strings.Contains(msg, "with an explicit deny in a") || strings.Contains(msg, f.values[tc.secret]) {
					t.Fatalf("gRPC AccessDenied message %q", msg)
				}
			}
		})
	}

	t.Run("ListSecrets shows only what the caller may list", func(t *testing.T) {
		for _, tc := range []struct {
			principal string
			want      []string
		}{
			{"reader", []string{"app/db", "app/other"}},
			{"nobody", nil},
			{"root", []string{"app/db", "app/other", "ops/cert"}},
		} {
			out, err := f.sdkAs(t, tc.principal).ListSecrets(ctx, &secretsmanager.ListSecretsInput{})
			if err != nil {
				t.Fatalf("%s: AWS ListSecrets: %v", tc.principal, err)
			}
			var names []string
			for _, e := range out.SecretList {
				names = append(names, aws.ToString(e.Name))
			}
			resp, err := cofferv1.NewSecretsManagerServiceClient(f.grpcAs(t, tc.principal)).ListSecrets(ctx, &cofferv1.ListSecretsRequest{})
			if err != nil {
				t.Fatalf("%s: gRPC ListSecrets: %v", tc.principal, err)
			}
			var grpcNames []string
			for _, e := range resp.GetSecretList() {
				grpcNames = append(grpcNames, e.GetName())
			}
			slices.Sort(names)
			slices.Sort(grpcNames)
			if !slices.Equal(names, tc.want) || !slices.Equal(grpcNames, tc.want) {
				t.Fatalf("%s sees %v (AWS) and %v (gRPC); want %v", tc.principal, names, grpcNames, tc.want)
			}
		}
	})

	t.Run("BatchGetSecretValue returns only what the caller may read", func(t *testing.T) {
		sdk := f.sdkAs(t, "reader")
		out, err := sdk.BatchGetSecretValue(ctx, &secretsmanager.BatchGetSecretValueInput{SecretIdList: []string{f.arns["app/db"], f.arns["ops/cert"]}})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.SecretValues) != 1 || aws.ToString(out.SecretValues[0].Name) != "app/db" ||
			len(out.Errors) != 1 || aws.ToString(out.Errors[0].ErrorCode) != "AccessDeniedException" {
			t.Fatalf("named batch: %d values, errors %+v", len(out.SecretValues), out.Errors)
		}
		filtered, err := sdk.BatchGetSecretValue(ctx, &secretsmanager.BatchGetSecretValueInput{
			Filters: []smtypes.Filter{{Key: smtypes.FilterNameStringTypeName, Values: []string{"app/", "ops/"}}}})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, v := range filtered.SecretValues {
			names = append(names, aws.ToString(v.Name))
		}
		slices.Sort(names)
		if !slices.Equal(names, []string{"app/db", "app/other"}) || len(filtered.Errors) != 0 {
			t.Fatalf("filtered batch gave %v and errors %+v", names, filtered.Errors)
		}
		resp, err := cofferv1.NewSecretsManagerServiceClient(f.grpcAs(t, "nobody")).BatchGetSecretValue(ctx,
			&cofferv1.BatchGetSecretValueRequest{Filters: []*cofferv1.Filter{{Key: "name", Values: []string{"app/"}}}})
		if err != nil || len(resp.GetSecretValues()) != 0 {
			t.Fatalf("nobody's filtered batch: %d values, %v", len(resp.GetSecretValues()), err)
		}
	})

	t.Run("admin and IAM APIs are protected by coffer:* actions", func(t *testing.T) {
		if _, err := cofferv1.NewAdminServiceClient(f.grpcAs(t, "operator")).ClusterStatus(ctx, &cofferv1.ClusterStatusRequest{}); err != nil {
			t.Fatalf("operator ClusterStatus: %v", err)
		}
		_, err := cofferv1.NewAdminServiceClient(f.grpcAs(t, "reader")).ClusterStatus(ctx, &cofferv1.ClusterStatusRequest{})
		if cserver.TypeOf(err) != cserver.TypeAccessDeniedException || !strings.Contains(status.Convert(err).Message(), "coffer:ClusterStatus") {
			t.Fatalf("reader ClusterStatus: %v", err)
		}
		_, err = cofferv1.NewIAMServiceClient(f.grpcAs(t, "operator")).CreatePrincipal(ctx, &cofferv1.CreatePrincipalRequest{Name: "sneaky"})
		if cserver.TypeOf(err) != cserver.TypeAccessDeniedException {
			t.Fatalf("operator CreatePrincipal: %v", err)
		}
		// Snapshot streaming is authorized too.
		stream, err := cofferv1.NewAdminServiceClient(f.grpcAs(t, "reader")).SaveSnapshot(ctx, &cofferv1.SaveSnapshotRequest{})
		if err == nil {
			_, err = stream.Recv()
		}
		if cserver.TypeOf(err) != cserver.TypeAccessDeniedException {
			t.Fatalf("reader SaveSnapshot: %v", err)
		}
		stream, err = cofferv1.NewAdminServiceClient(f.grpcAs(t, "operator")).SaveSnapshot(ctx, &cofferv1.SaveSnapshotRequest{})
		if err == nil {
			_, err = stream.Recv()
		}
		if err != nil {
			t.Fatalf("operator SaveSnapshot: %v", err)
		}
	})

	t.Run("simulate names the deciding statement", func(t *testing.T) {
		for _, tc := range []struct {
			principal, action, resource, decision, policy, statement string
		}{
			{"reader", "secretsmanager:GetSecretValue", "app/db", "allowed", "reader-policy", "Read"},
			{"denier", "secretsmanager:GetSecretValue", "app/db", "explicitDeny", "denier-policy", "NoDB"},
			{"resonly", "secretsmanager:GetSecretValue", "ops/cert", "allowed", cserver.ResourcePolicyName, "ResOnly"},
			{"nobody", "secretsmanager:GetSecretValue", "app/db", "implicitDeny", "", ""},
			{"operator", "coffer:SaveSnapshot", "*", "allowed", "operator-policy", "Ops"},
		} {
			out, err := f.iam.SimulatePolicy(ctx, &cofferv1.SimulatePolicyRequest{Principal: tc.principal, Action: tc.action, Resource: tc.resource})
			if err != nil {
				t.Fatal(err)
			}
			if out.GetDecision() != tc.decision || out.GetMatchedPolicy() != tc.policy || out.GetMatchedStatement() != tc.statement {
				t.Fatalf("simulate %s %s %s = %v; want %s by %s/%s", tc.principal, tc.action, tc.resource, out, tc.decision, tc.policy, tc.statement)
			}
		}
		out, err := f.iam.SimulatePolicy(ctx, &cofferv1.SimulatePolicyRequest{Principal: "remote", Action: "secretsmanager:GetSecretValue",
			Resource: "app/db", Context: map[string]string{"aws:SourceIp": "10.1.2.3"}})
		if err != nil || out.GetDecision() != "allowed" {
			t.Fatalf("simulate with aws:SourceIp in the office: %v, %v", out, err)
		}
	})

	t.Run("malformed policies are refused", func(t *testing.T) {
		for _, doc := range []string{
			`{"Version":"2012-10-17","Statement":[{"Effect":"Permit","Action":"*","Resource":"*"}]}`,
			`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"*","Resource":"*"}]}`,
			`not json`,
		} {
			_, err := f.iam.PutPolicy(ctx, &cofferv1.PutPolicyRequest{Name: "bad", Document: doc})
			if status.Code(err) != codes.InvalidArgument || cserver.TypeOf(err) != cserver.TypeMalformedPolicy {
				t.Fatalf("PutPolicy(%s) = %v; want MalformedPolicyDocumentException", doc, err)
			}
		}
		_, err := f.sdkAs(t, "root").PutResourcePolicy(ctx, &secretsmanager.PutResourcePolicyInput{SecretId: aws.String(f.arns["app/db"]), ResourcePolicy: aws.String(`{"Statement":1}`)})
		if code, _ := sdkErrorCode(err); code != "MalformedPolicyDocumentException" {
			t.Fatalf("AWS PutResourcePolicy malformed: %v", err)
		}
	})
}

// TestTemporaryCredentialsWithSDK exchanges an access key for temporary
// credentials and uses them exactly as AWS SDKs do (X-Amz-Security-Token);
// wrong, missing, expired and revoked credentials are refused with AWS's
// error types.
func TestTemporaryCredentialsWithSDK(t *testing.T) {
	f := newAccessFixture(t, "--session-min-duration", "1s")
	ctx := t.Context()
	reader := cofferv1.NewIAMServiceClient(f.grpcAs(t, "reader"))
	creds, err := reader.GetSessionToken(ctx, &cofferv1.GetSessionTokenRequest{})
	if err != nil {
		t.Fatal(err)
	}
	sdk := f.s.sdkSession(t, creds.GetAccessKeyId(), creds.GetSecretAccessKey(), creds.GetSessionToken())
	out, err := sdk.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("app/db")})
	if err != nil || aws.ToString(out.SecretString) != f.values["app/db"] {
		t.Fatalf("GetSecretValue with temporary credentials: %v", err)
	}
	// The session is the reader: its policy still applies.
	_, err = sdk.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("ops/cert")})
	if code, _ := sdkErrorCode(err); code != "AccessDeniedException" {
		t.Fatalf("session reading ops/cert: %v", err)
	}
	for name, c := range map[string]*secretsmanager.Client{
		"no token":    f.s.sdkSession(t, creds.GetAccessKeyId(), creds.GetSecretAccessKey(), ""),
		"wrong token": f.s.sdkSession(t, creds.GetAccessKeyId(), creds.GetSecretAccessKey(), "AQoDYXdzEJr//wrong"),
	} {
		_, err := c.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("app/db")})
		if code, st := sdkErrorCode(err); code != "UnrecognizedClientException" || st != http.StatusForbidden {
			t.Fatalf("%s: %v (type %s, HTTP %d); want UnrecognizedClientException", name, err, code, st)
		}
	}

	// The aws CLI sends AWS_SESSION_TOKEN the same way.
	if awsPath, err := exec.LookPath("aws"); err == nil {
		home := t.TempDir()
		cmd := exec.CommandContext(ctx, awsPath, "--endpoint-url", f.s.endpoint, "--output", "text", "--region", region,
			"secretsmanager", "get-secret-value", "--secret-id", "app/db", "--query", "SecretString")
		cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID="+creds.GetAccessKeyId(), "AWS_SECRET_ACCESS_KEY="+creds.GetSecretAccessKey(),
			"AWS_SESSION_TOKEN="+creds.GetSessionToken(), "AWS_CONFIG_FILE="+filepath.Join(home, "config"),
			"AWS_SHARED_CREDENTIALS_FILE="+filepath.Join(home, "credentials"), "HOME="+home, "AWS_PAGER=", "AWS_MAX_ATTEMPTS=1")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil || strings.TrimSpace(stdout.String()) != f.values["app/db"] {
			t.Fatalf("aws CLI with AWS_SESSION_TOKEN: %v %s", err, stderr.String())
		}
		// aws sts get-session-token against the same endpoint (STS Query
		// protocol), and the credentials it prints work with the SDK.
		k := f.keys["reader"]
		cmd = exec.CommandContext(ctx, awsPath, "--endpoint-url", f.s.endpoint, "--output", "json", "--region", region,
			"sts", "get-session-token", "--duration-seconds", "900")
		cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID="+k[0], "AWS_SECRET_ACCESS_KEY="+k[1], "AWS_CONFIG_FILE="+filepath.Join(home, "config"),
			"AWS_SHARED_CREDENTIALS_FILE="+filepath.Join(home, "credentials"), "HOME="+home, "AWS_PAGER=", "AWS_MAX_ATTEMPTS=1")
		stdout.Reset()
		stderr.Reset()
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("aws sts get-session-token: %v %s", err, stderr.String())
		}
		var got struct {
			Credentials struct{ AccessKeyId, SecretAccessKey, SessionToken, Expiration string }
		}
		if err := json.Unmarshal(stdout.Bytes(), &got); err != nil || !strings.HasPrefix(got.Credentials.AccessKeyId, "ASIA") {
			t.Fatalf("aws sts get-session-token printed %s (%v)", stdout.String(), err)
		}
		c := got.Credentials
		if _, err := f.s.sdkSession(t, c.AccessKeyId, c.SecretAccessKey, c.SessionToken).DescribeSecret(ctx,
			&secretsmanager.DescribeSecretInput{SecretId: aws.String("app/db")}); err != nil {
			t.Fatalf("credentials from aws sts get-session-token: %v", err)
		}
	}

	short, err := reader.GetSessionToken(ctx, &cofferv1.GetSessionTokenRequest{DurationSeconds: 1})
	if err != nil {
		t.Fatal(err)
	}
	expiring := f.s.sdkSession(t, short.GetAccessKeyId(), short.GetSecretAccessKey(), short.GetSessionToken())
	wait.True(t, 15*time.Second, "the short session to expire", func() bool {
		_, err := expiring.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("app/db")})
		code, _ := sdkErrorCode(err)
		return code == "ExpiredTokenException"
	})

	if _, err := f.iam.DeleteAccessKey(ctx, &cofferv1.DeleteAccessKeyRequest{AccessKeyId: f.keys["reader"][0]}); err != nil {
		t.Fatal(err)
	}
	_, err = sdk.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("app/db")})
	if code, _ := sdkErrorCode(err); code != "UnrecognizedClientException" {
		t.Fatalf("revoked session: %v; want UnrecognizedClientException", err)
	}

	// Every request above is in this node's audit log, and no value,
	// secret access key or session token is.
	raw, err := os.ReadFile(filepath.Join(f.s.dataDir, "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	for what, s := range map[string]string{"value": f.values["app/db"], "session token": creds.GetSessionToken(),
		"session secret": creds.GetSecretAccessKey(), "reader secret": f.keys["reader"][1]} {
		if bytes.Contains(raw, []byte(s)) {
			t.Fatalf("the audit log contains a %s", what)
		}
	}
	if !bytes.Contains(raw, []byte(`"error_type":"ExpiredTokenException"`)) || !bytes.Contains(raw, []byte(`"decision":"deny"`)) {
		t.Fatal("the audit log lacks the refused requests")
	}
}
