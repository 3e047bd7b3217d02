package server

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server/policy"
	"github.com/cofferhq/coffer/server/sigv4/grpcsig"
)

// authzNow is the time the authorizer under test reads, so that
// aws:CurrentTime conditions decide the same way on every run.
var authzNow = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

// authzServer is a Service with IAM behind a real gRPC server that
// authenticates (signed calls, NewGRPCAuth) and authorizes (Gate) every
// call.
type authzServer struct {
	svc  *Service
	iam  *IAM
	addr string
	keys map[string][3]string // principal → access key id, secret, session token
}

func startAuthzServer(t *testing.T, anonymous bool) *authzServer {
	t.Helper()
	svc, store := newTestService(t)
	iam := NewIAM(svc, store)
	iam.Authorizer().now = func() time.Time { return authzNow }
	if anonymous {
		iam.Authorizer().AllowAnonymous()
	}
	gs, _ := NewGRPCServer(Services{Secrets: svc}, slog.New(slog.NewTextHandler(io.Discard, nil)), NewGRPCAuth(GRPCAuthConfig{IAM: iam, AllowAnonymous: anonymous, Region: svc.Region()}),
		&Gate{Authz: iam.Authorizer(), Node: "n1"})
	cofferv1.RegisterIAMServiceServer(gs, iam)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	return &authzServer{svc: svc, iam: iam, addr: lis.Addr().String(), keys: map[string][3]string{}}
}

// principal creates a principal with tags, an access key and, when
// statements are given, an identity policy of them.
func (s *authzServer) principal(t *testing.T, name string, tags map[string]string, statements ...string) {
	t.Helper()
	ctx := t.Context()
	if _, err := s.iam.CreatePrincipal(ctx, &cofferv1.CreatePrincipalRequest{Name: name, Tags: tags}); err != nil {
		t.Fatal(err)
	}
	k, err := s.iam.CreateAccessKey(ctx, &cofferv1.CreateAccessKeyRequest{Principal: name})
	if err != nil {
		t.Fatal(err)
	}
	s.keys[name] = [3]string{k.GetAccessKeyId(), k.GetSecretAccessKey()}
	if len(statements) == 0 {
		return
	}
	doc := `{"Version":"2012-10-17","Statement":[` + strings.Join(statements, ",") + `]}`
	if _, err := s.iam.PutPolicy(ctx, &cofferv1.PutPolicyRequest{Name: name + "-policy", Document: doc}); err != nil {
		t.Fatalf("PutPolicy for %s: %v", name, err)
	}
	if _, err := s.iam.AttachPolicy(ctx, &cofferv1.AttachPolicyRequest{Principal: name, Policy: name + "-policy"}); err != nil {
		t.Fatal(err)
	}
}

func (s *authzServer) secret(t *testing.T, name string, values ...string) string {
	t.Helper()
	ctx := t.Context()
	out, err := s.svc.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: name, SecretString: &values[0]})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range values[1:] {
		if _, err := s.svc.PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: name, SecretString: &v}); err != nil {
			t.Fatal(err)
		}
	}
	return out.GetArn()
}

// conn is a gRPC connection as principal; "" sends no credentials.
func (s *authzServer) conn(t *testing.T, principal string) *grpc.ClientConn {
	t.Helper()
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if principal != "" {
		k := s.keys[principal]
		opts = append(opts, (&grpcsig.Credentials{AccessKeyID: k[0], SecretAccessKey: k[1], SessionToken: k[2], Region: s.svc.Region()}).DialOptions()...)
	}
	c, err := grpc.NewClient(s.addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func (s *authzServer) sm(t *testing.T, principal string) cofferv1.SecretsManagerServiceClient {
	return cofferv1.NewSecretsManagerServiceClient(s.conn(t, principal))
}

func userARN(name string) string { return "arn:aws:iam::123456789012:user/" + name }

const smARNPrefix = "arn:aws:secretsmanager:us-east-1:123456789012:secret:"

// deniedOverGRPC checks that err is an AccessDeniedException as gRPC
// carries it (PermissionDenied, the AWS type in the details), with AWS's
// wording: principal, action, resource as the caller named it, and why.
func deniedOverGRPC(t *testing.T, err error, principal, action, resource, why string) {
	t.Helper()
	if status.Code(err) != codes.PermissionDenied || TypeOf(err) != TypeAccessDeniedException {
		t.Fatalf("%s by %s on %s: %v; want PermissionDenied / AccessDeniedException", action, principal, resource, err)
	}
	want := "User: " + userARN(principal) + " is not authorized to perform: " + action + " on resource: " + resource + " " + why
	if got := status.Convert(err).Message(); got != want {
		t.Fatalf("AccessDenied message\n got: %s\nwant: %s", got, want)
	}
}

func noAllow(action string) string {
	return "because no identity-based policy allows the " + action + " action"
}

// TestAnonymousHasFullAccessOnlyWhereAllowed: the name "anonymous" grants
// nothing unless the node lets unauthenticated calls in (cofferd dev), and
// neither it nor "root" can be taken by a new principal.
func TestAnonymousHasFullAccessOnlyWhereAllowed(t *testing.T) {
	s := startAuthzServer(t, false)
	ctx := t.Context()
	arn := s.secret(t, "app/db", "v1")
	for _, name := range []string{"anonymous", "root", "Root", "ANONYMOUS"} {
		_, err := s.iam.CreatePrincipal(ctx, &cofferv1.CreatePrincipalRequest{Name: name})
		if apiType(err) != TypeInvalidParameter || !strings.Contains(err.Error(), "reserved") {
			t.Fatalf("CreatePrincipal(%s) = %v; want InvalidParameterException (reserved)", name, err)
		}
	}
	s.principal(t, "anonymous2", nil)

	v, err := s.iam.Authorizer().Decide(Caller{Principal: AnonymousPrincipal}, "secretsmanager:GetSecretValue", Target{Resource: arn})
	if err != nil || v.Allowed {
		t.Fatalf("anonymous without anonymous access: %+v, %v; want an implicit deny", v, err)
	}
	_, err = s.sm(t, "").GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: "app/db"})
	if TypeOf(err) != TypeMissingAuthToken {
		t.Fatalf("a call without credentials: %v; want MissingAuthenticationTokenException", err)
	}

	dev := startAuthzServer(t, true)
	dev.secret(t, "app/db", "dev-value")
	dev.principal(t, "nobody", nil)
	out, err := dev.sm(t, "").GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: "app/db"})
	if err != nil || out.GetSecretString() != "dev-value" {
		t.Fatalf("anonymous call where anonymous access is on: %v", err)
	}
	v, err = dev.iam.Authorizer().Decide(Caller{Principal: AnonymousPrincipal}, "coffer:SaveSnapshot", Target{})
	if err != nil || !v.Allowed || v.Statement() != "anonymous/full-access" {
		t.Fatalf("anonymous where allowed: %+v, %v", v, err)
	}
	// Turning anonymous access on gives nothing to anyone else.
	_, err = dev.sm(t, "nobody").GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: "app/db"})
	deniedOverGRPC(t, err, "nobody", "secretsmanager:GetSecretValue", smARNPrefix+"app/db", noAllow("secretsmanager:GetSecretValue"))
}

// TestAuthorizerFillsConditionKeys: a condition on each key the Authorizer
// fills (aws:PrincipalTag/*, secretsmanager:VersionStage,
// secretsmanager:SecretId, aws:CurrentTime) decides a real gRPC request.
func TestAuthorizerFillsConditionKeys(t *testing.T) {
	s := startAuthzServer(t, false)
	ctx := t.Context()
	s.secret(t, "app/db", "db-v1", "db-v2")
	s.secret(t, "app/other", "other-v1")
	allowIf := func(cond string) string {
		return `{"Sid":"If","Effect":"Allow","Action":"secretsmanager:GetSecretValue","Resource":"*","Condition":` + cond + `}`
	}
	s.principal(t, "pay", map[string]string{"team": "payments"}, allowIf(`{"StringEquals":{"aws:PrincipalTag/team":"payments"}}`))
	s.principal(t, "search", map[string]string{"team": "search"}, allowIf(`{"StringEquals":{"aws:PrincipalTag/team":"payments"}}`))
	s.principal(t, "current", nil, allowIf(`{"StringEquals":{"secretsmanager:VersionStage":"AWSCURRENT"}}`))
	s.principal(t, "byid", nil, allowIf(`{"StringLike":{"secretsmanager:SecretId":"arn:aws:secretsmanager:*:*:secret:app/db-*"}}`))
	s.principal(t, "open", nil, allowIf(`{"DateGreaterThan":{"aws:CurrentTime":"2026-01-01T00:00:00Z"},"DateLessThan":{"aws:CurrentTime":"2027-01-01T00:00:00Z"}}`))
	s.principal(t, "closed", nil, allowIf(`{"DateLessThan":{"aws:CurrentTime":"2026-01-01T00:00:00Z"}}`))

	const action = "secretsmanager:GetSecretValue"
	for _, tc := range []struct {
		principal, secret, stage string
		allow                    bool
		want                     string // value read when allowed
	}{
		{"pay", "app/db", "", true, "db-v2"},
		{"search", "app/db", "", false, ""},
		{"current", "app/db", "", true, "db-v2"},
		{"current", "app/db", "AWSCURRENT", true, "db-v2"},
		{"current", "app/db", "AWSPREVIOUS", false, ""},
		{"byid", "app/db", "", true, "db-v2"},
		{"byid", "app/other", "", false, ""},
		{"open", "app/other", "", true, "other-v1"},
		{"closed", "app/other", "", false, ""},
	} {
		out, err := s.sm(t, tc.principal).GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: tc.secret, VersionStage: tc.stage})
		if tc.allow {
			if err != nil || out.GetSecretString() != tc.want {
				t.Fatalf("%s reading %s (stage %q): %v; want %q", tc.principal, tc.secret, tc.stage, err, tc.want)
			}
			continue
		}
		deniedOverGRPC(t, err, tc.principal, action, smARNPrefix+tc.secret, noAllow(action))
	}
}

// TestAccessDeniedWordingOverGRPC: explicit denies say which kind of policy
// denied, over gRPC as over the AWS API; a resource-policy Deny with
// NotPrincipal naming the account still denies the account's users.
func TestAccessDeniedWordingOverGRPC(t *testing.T) {
	s := startAuthzServer(t, false)
	ctx := t.Context()
	s.secret(t, "app/db", "v1")
	locked := s.secret(t, "app/locked", "v1")
	s.principal(t, "all", nil, `{"Effect":"Allow","Action":"secretsmanager:*","Resource":"*"}`)
	s.principal(t, "nodb", nil, `{"Effect":"Allow","Action":"secretsmanager:*","Resource":"*"}`,
		`{"Sid":"NoDB","Effect":"Deny","Action":"secretsmanager:GetSecretValue","Resource":"`+smARNPrefix+`app/db-*"}`)
	if _, err := s.svc.PutResourcePolicy(ctx, &cofferv1.PutResourcePolicyRequest{SecretId: locked, ResourcePolicy: `{"Version":"2012-10-17","Statement":[
		{"Sid":"OnlyTheAccount","Effect":"Deny","NotPrincipal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"secretsmanager:GetSecretValue","Resource":"*"}]}`}); err != nil {
		t.Fatal(err)
	}
	const action = "secretsmanager:GetSecretValue"
	_, err := s.sm(t, "nodb").GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: "app/db"})
	deniedOverGRPC(t, err, "nodb", action, smARNPrefix+"app/db", "with an explicit deny in an identity-based policy")
	_, err = s.sm(t, "all").GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: locked})
	deniedOverGRPC(t, err, "all", action, locked, "with an explicit deny in a resource-based policy")
	if _, err := s.sm(t, "all").DescribeSecret(ctx, &cofferv1.DescribeSecretRequest{SecretId: locked}); err != nil {
		t.Fatalf("the resource policy denies only GetSecretValue: %v", err)
	}
}

// TestBatchGetSecretValueDecidesEachSecretAsGetSecretValue: each secret a
// batch reads is decided as a GetSecretValue of AWSCURRENT naming it, and a
// caller without rights cannot tell a secret it may not read from one that
// does not exist (or is scheduled for deletion).
func TestBatchGetSecretValueDecidesEachSecretAsGetSecretValue(t *testing.T) {
	s := startAuthzServer(t, false)
	ctx := t.Context()
	s.secret(t, "app/db", "db-v1", "db-v2")
	s.secret(t, "ops/cert", "cert")
	s.secret(t, "ops/gone", "gone")
	if _, err := s.svc.DeleteSecret(ctx, &cofferv1.DeleteSecretRequest{SecretId: "ops/gone"}); err != nil {
		t.Fatal(err)
	}
	batch := `{"Effect":"Allow","Action":"secretsmanager:BatchGetSecretValue","Resource":"*"}`
	s.principal(t, "notcurrent", nil, batch, `{"Effect":"Allow","Action":"secretsmanager:GetSecretValue","Resource":"*"}`,
		`{"Sid":"NoCurrent","Effect":"Deny","Action":"secretsmanager:GetSecretValue","Resource":"*","Condition":{"StringEquals":{"secretsmanager:VersionStage":"AWSCURRENT"}}}`)
	s.principal(t, "app", nil, batch, `{"Effect":"Allow","Action":"secretsmanager:GetSecretValue","Resource":"`+smARNPrefix+`app/*"}`)

	// The stage Deny that stops GetSecretValue stops the batch too.
	_, err := s.sm(t, "notcurrent").GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: "app/db"})
	deniedOverGRPC(t, err, "notcurrent", "secretsmanager:GetSecretValue", smARNPrefix+"app/db", "with an explicit deny in an identity-based policy")
	out, err := s.sm(t, "notcurrent").BatchGetSecretValue(ctx, &cofferv1.BatchGetSecretValueRequest{SecretIdList: []string{"app/db"}})
	if err != nil || len(out.GetSecretValues()) != 0 || len(out.GetErrors()) != 1 || out.GetErrors()[0].GetErrorCode() != TypeAccessDeniedException {
		t.Fatalf("batch under a Deny on AWSCURRENT: %v values, errors %v, %v", len(out.GetSecretValues()), out.GetErrors(), err)
	}

	ids := []string{"app/db", "app/missing", "ops/cert", "ops/missing", "ops/gone"}
	out, err = s.sm(t, "app").BatchGetSecretValue(ctx, &cofferv1.BatchGetSecretValueRequest{SecretIdList: ids})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.GetSecretValues()) != 1 || out.GetSecretValues()[0].GetSecretString() != "db-v2" {
		t.Fatalf("batch values %v", out.GetSecretValues())
	}
	got := map[string]*cofferv1.APIError{}
	for _, e := range out.GetErrors() {
		got[e.GetSecretId()] = e
	}
	// Allowed to read app/*, so it learns app/missing does not exist.
	if got["app/missing"].GetErrorCode() != TypeResourceNotFound {
		t.Fatalf("app/missing: %v; want ResourceNotFoundException", got["app/missing"])
	}
	// Not allowed to read ops/*: the same answer whether the secret
	// exists, does not, or is scheduled for deletion.
	for _, id := range []string{"ops/cert", "ops/missing", "ops/gone"} {
		e := got[id]
		want := "User: " + userARN("app") + " is not authorized to perform: secretsmanager:GetSecretValue on resource: " +
			smARNPrefix + id + " " + noAllow("secretsmanager:GetSecretValue")
		if e.GetErrorCode() != TypeAccessDeniedException || e.GetMessage() != want {
			t.Fatalf("%s: %v\nwant AccessDeniedException: %s", id, e, want)
		}
	}
}

// TestSimulateAgreesWithTheEdge: SimulatePolicy's decision is the one the
// Gate makes for the real call — the implicit AWSCURRENT stage, filtered
// actions and self actions included.
func TestSimulateAgreesWithTheEdge(t *testing.T) {
	s := startAuthzServer(t, false)
	ctx := t.Context()
	s.secret(t, "app/db", "db-v1", "db-v2")
	s.principal(t, "nobody", nil)
	s.principal(t, "notcurrent", nil, `{"Effect":"Allow","Action":"secretsmanager:GetSecretValue","Resource":"*"}`,
		`{"Sid":"NoCurrent","Effect":"Deny","Action":"secretsmanager:GetSecretValue","Resource":"*","Condition":{"StringEquals":{"secretsmanager:VersionStage":"AWSCURRENT"}}}`)
	s.principal(t, "nolist", nil, `{"Effect":"Allow","Action":"*","Resource":"*"}`,
		`{"Sid":"NoList","Effect":"Deny","Action":"secretsmanager:ListSecrets","Resource":"*"}`)
	s.principal(t, "app", nil, `{"Sid":"App","Effect":"Allow","Action":"secretsmanager:GetSecretValue","Resource":"`+smARNPrefix+`app/*"}`)

	for _, tc := range []struct {
		principal, action, resource string
		context                     map[string]string
		decision, decided           string
		call                        func(sm cofferv1.SecretsManagerServiceClient, iam cofferv1.IAMServiceClient) error
	}{
		{"notcurrent", "secretsmanager:GetSecretValue", "app/db", nil, "explicitDeny", "notcurrent-policy/NoCurrent",
			func(sm cofferv1.SecretsManagerServiceClient, _ cofferv1.IAMServiceClient) error {
				_, err := sm.GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: "app/db"})
				return err
			}},
		{"notcurrent", "secretsmanager:GetSecretValue", "app/db", map[string]string{"secretsmanager:VersionStage": "AWSPREVIOUS"}, "allowed", "notcurrent-policy/Statement[0]",
			func(sm cofferv1.SecretsManagerServiceClient, _ cofferv1.IAMServiceClient) error {
				_, err := sm.GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: "app/db", VersionStage: "AWSPREVIOUS"})
				return err
			}},
		{"nobody", "secretsmanager:ListSecrets", "*", nil, "allowed", "per-secret/filter",
			func(sm cofferv1.SecretsManagerServiceClient, _ cofferv1.IAMServiceClient) error {
				_, err := sm.ListSecrets(ctx, &cofferv1.ListSecretsRequest{})
				return err
			}},
		{"nolist", "secretsmanager:ListSecrets", "*", nil, "explicitDeny", "nolist-policy/NoList",
			func(sm cofferv1.SecretsManagerServiceClient, _ cofferv1.IAMServiceClient) error {
				_, err := sm.ListSecrets(ctx, &cofferv1.ListSecretsRequest{})
				return err
			}},
		{"nobody", "coffer:GetCallerIdentity", "*", nil, "allowed", "",
			func(_ cofferv1.SecretsManagerServiceClient, iam cofferv1.IAMServiceClient) error {
				_, err := iam.GetCallerIdentity(ctx, &cofferv1.GetCallerIdentityRequest{})
				return err
			}},
		{"nobody", "secretsmanager:GetSecretValue", "app/missing", nil, "implicitDeny", "",
			func(sm cofferv1.SecretsManagerServiceClient, _ cofferv1.IAMServiceClient) error {
				_, err := sm.GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: "app/missing"})
				return err
			}},
		// Allowed, so the call goes on to find no such secret.
		{"app", "SecretsManager:getSecretValue", "app/missing", nil, "allowed", "app-policy/App",
			func(sm cofferv1.SecretsManagerServiceClient, _ cofferv1.IAMServiceClient) error {
				_, err := sm.GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: "app/missing"})
				return err
			}},
	} {
		sim, err := s.iam.SimulatePolicy(ctx, &cofferv1.SimulatePolicyRequest{Principal: tc.principal, Action: tc.action,
			Resource: tc.resource, Context: tc.context})
		if err != nil {
			t.Fatal(err)
		}
		decided := ""
		if sim.GetMatchedPolicy() != "" {
			decided = sim.GetMatchedPolicy() + "/" + sim.GetMatchedStatement()
		}
		if sim.GetDecision() != tc.decision || decided != tc.decided {
			t.Fatalf("simulate %s %s %s %v = %s by %q; want %s by %q", tc.principal, tc.action, tc.resource, tc.context,
				sim.GetDecision(), decided, tc.decision, tc.decided)
		}
		conn := s.conn(t, tc.principal)
		err = tc.call(cofferv1.NewSecretsManagerServiceClient(conn), cofferv1.NewIAMServiceClient(conn))
		if refused := TypeOf(err) == TypeAccessDeniedException; refused != (tc.decision != "allowed") {
			t.Fatalf("simulate %s %s %s says %s, but the call gave %v", tc.principal, tc.action, tc.resource, tc.decision, err)
		}
	}
}

// TestResourcePolicyRules: a resource policy names a principal in every
// statement, and BlockPublicPolicy refuses one that lets in anyone — a
// condition anyone can meet (aws:SecureTransport) does not make it private,
// one on the caller's network does. ValidateResourcePolicy reports both.
func TestResourcePolicyRules(t *testing.T) {
	svc, _ := newTestService(t)
	ctx := t.Context()
	if _, err := svc.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: "p"}); err != nil {
		t.Fatal(err)
	}
	doc := func(stmt string) string { return `{"Version":"2012-10-17","Statement":[` + stmt + `]}` }
	block := true

	noPrincipal := doc(`{"Effect":"Deny","Action":"secretsmanager:DeleteSecret","Resource":"*"}`)
	_, err := svc.PutResourcePolicy(ctx, &cofferv1.PutResourcePolicyRequest{SecretId: "p", ResourcePolicy: noPrincipal})
	if apiType(err) != TypeMalformedPolicy || !strings.Contains(err.Error(), "must name a Principal or NotPrincipal") {
		t.Fatalf("a statement without a principal: %v; want MalformedPolicyDocumentException", err)
	}
	vr, err := svc.ValidateResourcePolicy(ctx, &cofferv1.ValidateResourcePolicyRequest{ResourcePolicy: noPrincipal})
	if err != nil || vr.GetPolicyValidationPassed() || len(vr.GetValidationErrors()) != 1 || vr.GetValidationErrors()[0].GetCheckName() != policy.CheckSyntax {
		t.Fatalf("validate a statement without a principal: %v, %v", vr, err)
	}

	tlsOnly := doc(`{"Effect":"Allow","Principal":"*","Action":"secretsmanager:GetSecretValue","Resource":"*","Condition":{"Bool":{"aws:SecureTransport":"true"}}}`)
	_, err = svc.PutResourcePolicy(ctx, &cofferv1.PutResourcePolicyRequest{SecretId: "p", ResourcePolicy: tlsOnly, BlockPublicPolicy: &block})
	if apiType(err) != TypePublicPolicy {
		t.Fatalf("Principal * with only aws:SecureTransport under BlockPublicPolicy: %v; want PublicPolicyException", err)
	}
	vr, err = svc.ValidateResourcePolicy(ctx, &cofferv1.ValidateResourcePolicyRequest{ResourcePolicy: tlsOnly})
	if err != nil || vr.GetPolicyValidationPassed() || len(vr.GetValidationErrors()) != 1 || vr.GetValidationErrors()[0].GetCheckName() != policy.CheckPublicAccess {
		t.Fatalf("validate Principal * with only aws:SecureTransport: %v, %v", vr, err)
	}

	office := doc(`{"Effect":"Allow","Principal":"*","Action":"secretsmanager:GetSecretValue","Resource":"*","Condition":{"Bool":{"aws:SecureTransport":"true"},"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}}`)
	if _, err := svc.PutResourcePolicy(ctx, &cofferv1.PutResourcePolicyRequest{SecretId: "p", ResourcePolicy: office, BlockPublicPolicy: &block}); err != nil {
		t.Fatalf("Principal * restricted to a network under BlockPublicPolicy: %v", err)
	}
	vr, err = svc.ValidateResourcePolicy(ctx, &cofferv1.ValidateResourcePolicyRequest{ResourcePolicy: office})
	if err != nil || !vr.GetPolicyValidationPassed() {
		t.Fatalf("validate Principal * restricted to a network: %v, %v", vr, err)
	}
}

// TestCertIdentitiesIgnoreReservedNames: a certificate mapped to root or
// anonymous identifies no one, even where the mapping was built in code
// rather than through cofferd's validated config.
func TestCertIdentitiesIgnoreReservedNames(t *testing.T) {
	ids := &CertIdentities{
		BySPIFFEID:  map[string]string{"spiffe://example.org/admin": "root"},
		BySubjectCN: map[string]string{"dev": "Anonymous", "app": "app"},
	}
	spiffe, err := url.Parse("spiffe://example.org/admin")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		cert *x509.Certificate
		want string
	}{
		{&x509.Certificate{URIs: []*url.URL{spiffe}}, ""},
		{&x509.Certificate{Subject: pkix.Name{CommonName: "dev"}}, ""},
		{&x509.Certificate{Subject: pkix.Name{CommonName: "app"}}, "app"},
	} {
		if got, ok := ids.Principal(tc.cert); got != tc.want || ok != (tc.want != "") {
			t.Errorf("Principal(%v %s) = %q, %v; want %q", tc.cert.URIs, tc.cert.Subject.CommonName, got, ok, tc.want)
		}
	}
}
