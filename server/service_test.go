package server

import (
	"context"
	"errors"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/replication"
	"github.com/cofferhq/coffer/storage"
	"github.com/cofferhq/coffer/storage/kms"
)

func TestErrorMapping(t *testing.T) {
	cases := []struct {
		err  error
		typ  string
		code codes.Code
	}{
		{&storage.Error{Kind: storage.ErrSecretNotFound, Msg: "m"}, TypeResourceNotFound, codes.NotFound},
		{&storage.Error{Kind: storage.ErrVersionNotFound, Msg: "m"}, TypeResourceNotFound, codes.NotFound},
		{&storage.Error{Kind: storage.ErrStageNotFound, Msg: "m"}, TypeResourceNotFound, codes.NotFound},
		{&storage.Error{Kind: storage.ErrSecretExists, Msg: "m"}, TypeResourceExists, codes.AlreadyExists},
		{&storage.Error{Kind: storage.ErrTokenInUse, Msg: "m"}, TypeResourceExists, codes.AlreadyExists},
		{&storage.Error{Kind: storage.ErrMarkedForDeletion, Msg: "m"}, TypeInvalidRequest, codes.FailedPrecondition},
		{&storage.Error{Kind: storage.ErrStageMismatch, Msg: "m"}, TypeInvalidRequest, codes.FailedPrecondition},
		{&storage.Error{Kind: storage.ErrInvalidParameter, Msg: "m"}, TypeInvalidParameter, codes.InvalidArgument},
		{&storage.Error{Kind: storage.ErrLimitExceeded, Msg: "m"}, TypeLimitExceeded, codes.ResourceExhausted},
		{&storage.Error{Kind: storage.ErrInvalidNextToken, Msg: "m"}, TypeInvalidNextToken, codes.InvalidArgument},
		{replication.ErrNoLeader, TypeServiceUnavailable, codes.Unavailable},
		{replication.ErrNotLeader, TypeServiceUnavailable, codes.Unavailable},
		{kms.ErrDecryption, TypeDecryptionFailure, codes.FailedPrecondition},
		{kms.ErrEncryption, TypeEncryptionFailure, codes.FailedPrecondition},
		{context.DeadlineExceeded, TypeServiceUnavailable, codes.Unavailable},
		{errors.New("disk on fire at /var/lib/coffer"), TypeInternalServiceError, codes.Internal},
		{validationErr("name", "x"), TypeValidation, codes.InvalidArgument},
		{apiErr(TypeUnsupportedOperation, "Presigned requests are not supported."), TypeUnsupportedOperation, codes.Unimplemented},
	}
	for _, c := range cases {
		ae := AsAPIError(c.err)
		if ae.Type != c.typ {
			t.Errorf("%v: type %s, want %s", c.err, ae.Type, c.typ)
		}
		st := ae.GRPCStatus()
		if st.Code() != c.code {
			t.Errorf("%v: code %s, want %s", c.err, st.Code(), c.code)
		}
		if got := TypeOf(st.Err()); got != c.typ {
			t.Errorf("%v: ErrorInfo reason %q, want %q", c.err, got, c.typ)
		}
	}
	// Internal details never reach the caller.
	if msg := AsAPIError(errors.New("disk on fire at /var/lib/coffer")).Message; strings.Contains(msg, "/var/lib") {
		t.Errorf("internal error leaked: %q", msg)
	}
}

func TestCreateGetRoundTripAndIdempotency(t *testing.T) {
	svc, _ := newTestService(t)
	ctx := context.Background()
	val := "hunter2"
	created, err := svc.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: "app/db", ClientRequestToken: tokA, SecretString: &val})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(created.GetArn(), "arn:aws:secretsmanager:us-east-1:123456789012:secret:app/db-") || len(created.GetArn()) != len("arn:aws:secretsmanager:us-east-1:123456789012:secret:app/db-")+6 {
		t.Fatalf("arn %q", created.GetArn())
	}
	if created.GetVersionId() != tokA {
		t.Fatalf("version id %q, want the token", created.GetVersionId())
	}
	again, err := svc.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: "app/db", ClientRequestToken: tokA, SecretString: &val})
	if err != nil || !proto.Equal(again, created) {
		t.Fatalf("retry: %v, %v; want %v", again, err, created)
	}
	other := "other"
	if _, err := svc.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: "app/db", ClientRequestToken: tokA, SecretString: &other}); apiType(err) != TypeResourceExists ||
		!strings.Contains(AsAPIError(err).Message, "You can't use ClientRequestToken "+tokA) {
		t.Fatalf("same token other value: %v", err)
	}
	got, err := svc.GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: created.GetArn()})
	if err != nil || got.GetSecretString() != val || got.GetVersionStages()[0] != "AWSCURRENT" {
		t.Fatalf("get: %v %v", got, err)
	}
	bin := []byte{0, 1, 2, 255}
	if _, err := svc.PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: "app/db", ClientRequestToken: tokB, SecretBinary: bin}); err != nil {
		t.Fatal(err)
	}
	got, err = svc.GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: "app/db"})
	if err != nil || string(got.GetSecretBinary()) != string(bin) || got.SecretString != nil {
		t.Fatalf("binary get: %v %v", got, err)
	}
	prev, err := svc.GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: "app/db", VersionStage: "AWSPREVIOUS"})
	if err != nil || prev.GetSecretString() != val || prev.GetVersionId() != tokA {
		t.Fatalf("previous: %v %v", prev, err)
	}
}

func TestValidationErrors(t *testing.T) {
	svc, _ := newTestService(t)
	ctx := context.Background()
	v := "x"
	big := strings.Repeat("a", storage.MaxValueBytes+1)
	cases := []struct {
		name string
		call func() error
		typ  string
	}{
		{"bad name", func() error {
			_, err := svc.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: "has space", SecretString: &v})
			return err
		}, TypeValidation},
		{"long name", func() error {
			_, err := svc.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: strings.Repeat("n", 513)})
			return err
		}, TypeValidation},
		{"short token", func() error {
			_, err := svc.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: "n", ClientRequestToken: "short", SecretString: &v})
			return err
		}, TypeValidation},
		{"oversized value", func() error {
			_, err := svc.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: "n", SecretString: &big})
			return err
		}, TypeValidation},
		{"both values", func() error {
			_, err := svc.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: "n", SecretString: &v, SecretBinary: []byte("b")})
			return err
		}, TypeInvalidParameter},
		{"put without value", func() error {
			_, err := svc.PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: "n"})
			return err
		}, TypeInvalidRequest},
		{"reserved tag", func() error {
			_, err := svc.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: "n", Tags: []*cofferv1.Tag{{Key: "aws:x", Value: "y"}}})
			return err
		}, TypeInvalidParameter},
		{"unknown kms key", func() error {
			_, err := svc.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: "n", KmsKeyId: "alias/nope"})
			return err
		}, TypeInvalidParameter},
		{"window and force", func() error {
			w, f := int64(7), true
			_, err := svc.DeleteSecret(ctx, &cofferv1.DeleteSecretRequest{SecretId: "n", RecoveryWindowInDays: &w, ForceDeleteWithoutRecovery: &f})
			return err
		}, TypeInvalidParameter},
		{"window too short", func() error {
			w := int64(6)
			_, err := svc.DeleteSecret(ctx, &cofferv1.DeleteSecretRequest{SecretId: "n", RecoveryWindowInDays: &w})
			return err
		}, TypeInvalidParameter},
		{"bad filter key", func() error {
			_, err := svc.ListSecrets(ctx, &cofferv1.ListSecretsRequest{Filters: []*cofferv1.Filter{{Key: "colour", Values: []string{"x"}}}})
			return err
		}, TypeValidation},
		{"bad filter value", func() error {
			_, err := svc.ListSecrets(ctx, &cofferv1.ListSecretsRequest{Filters: []*cofferv1.Filter{{Key: "name", Values: []string{"a;b"}}}})
			return err
		}, TypeValidation},
		{"max results", func() error {
			m := int32(101)
			_, err := svc.ListSecrets(ctx, &cofferv1.ListSecretsRequest{MaxResults: &m})
			return err
		}, TypeValidation},
		{"bad next token", func() error {
			_, err := svc.ListSecrets(ctx, &cofferv1.ListSecretsRequest{NextToken: "garbage!"})
			return err
		}, TypeInvalidNextToken},
		{"batch both", func() error {
			_, err := svc.BatchGetSecretValue(ctx, &cofferv1.BatchGetSecretValueRequest{SecretIdList: []string{"a"}, Filters: []*cofferv1.Filter{{Key: "name", Values: []string{"a"}}}})
			return err
		}, TypeInvalidParameter},
		{"password too long", func() error {
			n := int64(4097)
			_, err := svc.GetRandomPassword(ctx, &cofferv1.GetRandomPasswordRequest{PasswordLength: &n})
			return err
		}, TypeValidation},
		{"password too short for types", func() error {
			n := int64(3)
			_, err := svc.GetRandomPassword(ctx, &cofferv1.GetRandomPasswordRequest{PasswordLength: &n})
			return err
		}, TypeInvalidParameter},
		// AWS looks the secret up before the policy.
		{"malformed policy on a missing secret", func() error {
			_, err := svc.PutResourcePolicy(ctx, &cofferv1.PutResourcePolicyRequest{SecretId: "n", ResourcePolicy: "{not json"})
			return err
		}, TypeResourceNotFound},
		{"rotate", func() error {
			_, err := svc.RotateSecret(ctx, &cofferv1.RotateSecretRequest{SecretId: "n", RotationRules: &cofferv1.RotationRules{ScheduleExpression: "rate(1 hours)"}})
			return err
		}, TypeInvalidParameter},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := apiType(c.call()); got != c.typ {
				t.Fatalf("error type %q, want %q", got, c.typ)
			}
		})
	}
}

func TestPublicPolicyBlocked(t *testing.T) {
	svc, _ := newTestService(t)
	ctx := context.Background()
	if _, err := svc.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: "p"}); err != nil {
		t.Fatal(err)
	}
	public := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"secretsmanager:GetSecretValue","Resource":"*"}]}`
	block := true
	_, err := svc.PutResourcePolicy(ctx, &cofferv1.PutResourcePolicyRequest{SecretId: "p", ResourcePolicy: public, BlockPublicPolicy: &block})
	if apiType(err) != TypePublicPolicy {
		t.Fatalf("blocked public policy: %v", err)
	}
	if _, err := svc.PutResourcePolicy(ctx, &cofferv1.PutResourcePolicyRequest{SecretId: "p", ResourcePolicy: public}); err != nil {
		t.Fatalf("unblocked public policy: %v", err)
	}
	got, err := svc.GetResourcePolicy(ctx, &cofferv1.GetResourcePolicyRequest{SecretId: "p"})
	if err != nil || got.GetResourcePolicy() != public {
		t.Fatalf("get policy: %v %v", got, err)
	}
	vr, err := svc.ValidateResourcePolicy(ctx, &cofferv1.ValidateResourcePolicyRequest{ResourcePolicy: public})
	if err != nil || vr.GetPolicyValidationPassed() || len(vr.GetValidationErrors()) == 0 {
		t.Fatalf("validate public: %v %v", vr, err)
	}
}

func TestLastAccessedWithoutWritePerRead(t *testing.T) {
	svc, store := newTestService(t)
	ctx := context.Background()
	v := "x"
	if _, err := svc.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: "a", ClientRequestToken: tokA, SecretString: &v}); err != nil {
		t.Fatal(err)
	}
	before := store.AppliedIndex()
	for range 50 {
		if _, err := svc.GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: "a"}); err != nil {
			t.Fatal(err)
		}
	}
	if store.AppliedIndex() != before {
		t.Fatalf("reads wrote to the log: applied %d → %d", before, store.AppliedIndex())
	}
	svc.FlushAccess(ctx)
	if store.AppliedIndex() != before+1 {
		t.Fatalf("flush of 50 reads took %d writes, want 1", store.AppliedIndex()-before)
	}
	d, err := svc.DescribeSecret(ctx, &cofferv1.DescribeSecretRequest{SecretId: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := d.GetLastAccessedDate().AsTime(), utcDay(svc.now()); !got.Equal(want) {
		t.Fatalf("last accessed %v, want %v", got, want)
	}
	// Once recorded for today, further reads gather nothing.
	if _, err := svc.GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: "a"}); err != nil {
		t.Fatal(err)
	}
	svc.FlushAccess(ctx)
	if store.AppliedIndex() != before+1 {
		t.Fatalf("a second day-one flush wrote again")
	}
}

func TestGRPCStatusCarriesAWSType(t *testing.T) {
	svc, _ := newTestService(t)
	_, err := svc.GetSecretValue(context.Background(), &cofferv1.GetSecretValueRequest{SecretId: "missing"})
	st := status.Convert(AsAPIError(err))
	if st.Code() != codes.NotFound || TypeOf(st.Err()) != TypeResourceNotFound || st.Message() != "Secrets Manager can't find the specified secret." {
		t.Fatalf("status %v (%s)", st, TypeOf(st.Err()))
	}
}

// TestFilterErrors: the ListSecrets and BatchGetSecretValue filter errors
// AWS answers, with their types and messages.
func TestFilterErrors(t *testing.T) {
	svc, _ := newTestService(t)
	ctx := context.Background()
	list := func(f ...*cofferv1.Filter) error {
		_, err := svc.ListSecrets(ctx, &cofferv1.ListSecretsRequest{Filters: f})
		return err
	}
	batch := func(req *cofferv1.BatchGetSecretValueRequest) error {
		_, err := svc.BatchGetSecretValue(ctx, req)
		return err
	}
	name := &cofferv1.Filter{Key: "name", Values: []string{"a"}}
	for _, c := range []struct {
		name, typ, msg string
		err            error
	}{
		{"no key", TypeInvalidParameter, "Invalid filter key", list(&cofferv1.Filter{Values: []string{"a"}})},
		{"no values", TypeInvalidParameter, "Invalid filter values for key: description", list(&cofferv1.Filter{Key: "description"})},
		{"unknown key", TypeValidation, "1 validation error detected: Value 'colour' at 'filters.2.member.key' failed to satisfy constraint: Member must satisfy enum value set: [description, name, tag-key, tag-value, primary-region, owning-service, all]",
			list(name, &cofferv1.Filter{Key: "colour", Values: []string{"x"}})},
		{"batch both", TypeInvalidParameter, "Either 'SecretIdList' or 'Filters' must be provided, but not both.",
			batch(&cofferv1.BatchGetSecretValueRequest{SecretIdList: []string{"a"}, Filters: []*cofferv1.Filter{name}})},
		{"batch neither", TypeInvalidParameter, "You must specify either SecretIdList or Filters.", batch(&cofferv1.BatchGetSecretValueRequest{})},
		{"batch MaxResults without Filters", TypeInvalidParameter, "MaxResults and NextToken can be used only with Filters.",
			batch(&cofferv1.BatchGetSecretValueRequest{SecretIdList: []string{"a"}, MaxResults: proto.Int32(2)})},
	} {
		ae := AsAPIError(c.err)
		if c.err == nil || ae.Type != c.typ || ae.Message != c.msg {
			t.Errorf("%s: %v, want %s %q", c.name, c.err, c.typ, c.msg)
		}
	}
}
