package server

import (
	"context"
	"testing"

	"google.golang.org/protobuf/proto"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// knownTypes are the error types a request may legitimately produce. An
// InternalServiceError from bad input would be a bug.
var knownTypes = map[string]bool{
	TypeResourceNotFound: true, TypeResourceExists: true, TypeInvalidParameter: true,
	TypeInvalidRequest: true, TypeValidation: true, TypeLimitExceeded: true,
	TypeInvalidNextToken: true, TypeMalformedPolicy: true, TypePublicPolicy: true,
	TypeUnsupportedOperation: true,
	// RotateSecret naming a function that does not exist answers as AWS
	// does when it cannot invoke a Lambda; the service itself never
	// authorizes (the Gate at the edge does), so nothing else yields it.
	TypeAccessDeniedException: true,
}

// callOp decodes data as the request of operation op and calls it.
func callOp(svc *Service, op byte, data []byte) error {
	ctx := context.Background()
	do := func(req proto.Message, f func() error) error {
		if err := proto.Unmarshal(data, req); err != nil {
			return nil // the gRPC layer refuses undecodable bytes before the service
		}
		return f()
	}
	switch op % 20 {
	case 0:
		r := &cofferv1.CreateSecretRequest{}
		return do(r, func() error { _, err := svc.CreateSecret(ctx, r); return err })
	case 1:
		r := &cofferv1.GetSecretValueRequest{}
		return do(r, func() error { _, err := svc.GetSecretValue(ctx, r); return err })
	case 2:
		r := &cofferv1.PutSecretValueRequest{}
		return do(r, func() error { _, err := svc.PutSecretValue(ctx, r); return err })
	case 3:
		r := &cofferv1.UpdateSecretRequest{}
		return do(r, func() error { _, err := svc.UpdateSecret(ctx, r); return err })
	case 4:
		r := &cofferv1.UpdateSecretVersionStageRequest{}
		return do(r, func() error { _, err := svc.UpdateSecretVersionStage(ctx, r); return err })
	case 5:
		r := &cofferv1.DescribeSecretRequest{}
		return do(r, func() error { _, err := svc.DescribeSecret(ctx, r); return err })
	case 6:
		r := &cofferv1.ListSecretsRequest{}
		return do(r, func() error { _, err := svc.ListSecrets(ctx, r); return err })
	case 7:
		r := &cofferv1.ListSecretVersionIdsRequest{}
		return do(r, func() error { _, err := svc.ListSecretVersionIds(ctx, r); return err })
	case 8:
		r := &cofferv1.DeleteSecretRequest{}
		return do(r, func() error { _, err := svc.DeleteSecret(ctx, r); return err })
	case 9:
		r := &cofferv1.RestoreSecretRequest{}
		return do(r, func() error { _, err := svc.RestoreSecret(ctx, r); return err })
	case 10:
		r := &cofferv1.TagResourceRequest{}
		return do(r, func() error { _, err := svc.TagResource(ctx, r); return err })
	case 11:
		r := &cofferv1.UntagResourceRequest{}
		return do(r, func() error { _, err := svc.UntagResource(ctx, r); return err })
	case 12:
		r := &cofferv1.GetRandomPasswordRequest{}
		return do(r, func() error { _, err := svc.GetRandomPassword(ctx, r); return err })
	case 13:
		r := &cofferv1.PutResourcePolicyRequest{}
		return do(r, func() error { _, err := svc.PutResourcePolicy(ctx, r); return err })
	case 14:
		r := &cofferv1.GetResourcePolicyRequest{}
		return do(r, func() error { _, err := svc.GetResourcePolicy(ctx, r); return err })
	case 15:
		r := &cofferv1.DeleteResourcePolicyRequest{}
		return do(r, func() error { _, err := svc.DeleteResourcePolicy(ctx, r); return err })
	case 16:
		r := &cofferv1.ValidateResourcePolicyRequest{}
		return do(r, func() error { _, err := svc.ValidateResourcePolicy(ctx, r); return err })
	case 17:
		r := &cofferv1.BatchGetSecretValueRequest{}
		return do(r, func() error { _, err := svc.BatchGetSecretValue(ctx, r); return err })
	case 18:
		r := &cofferv1.RotateSecretRequest{}
		return do(r, func() error { _, err := svc.RotateSecret(ctx, r); return err })
	default:
		r := &cofferv1.ReplicateSecretToRegionsRequest{}
		return do(r, func() error { _, err := svc.ReplicateSecretToRegions(ctx, r); return err })
	}
}

// FuzzRequests throws arbitrary protobuf at every operation of one service,
// so state builds up across inputs. No input may panic or produce an
// InternalServiceError.
func FuzzRequests(f *testing.F) {
	svc, _ := newTestService(f)
	v := "seed-value"
	seeds := []proto.Message{
		&cofferv1.CreateSecretRequest{Name: "fuzz/a", ClientRequestToken: tokA, SecretString: &v, Tags: []*cofferv1.Tag{{Key: "k", Value: "v"}}},
		&cofferv1.GetSecretValueRequest{SecretId: "fuzz/a", VersionStage: "AWSCURRENT"},
		&cofferv1.PutSecretValueRequest{SecretId: "fuzz/a", ClientRequestToken: tokB, SecretBinary: []byte{1, 2}, VersionStages: []string{"AWSPENDING"}},
		&cofferv1.UpdateSecretRequest{SecretId: "fuzz/a", ClientRequestToken: tokC, SecretString: &v},
		&cofferv1.UpdateSecretVersionStageRequest{SecretId: "fuzz/a", VersionStage: "AWSCURRENT", MoveToVersionId: tokB, RemoveFromVersionId: tokC},
		&cofferv1.DescribeSecretRequest{SecretId: "arn:aws:secretsmanager:us-east-1:123456789012:secret:fuzz/a"},
		&cofferv1.ListSecretsRequest{Filters: []*cofferv1.Filter{{Key: "all", Values: []string{"!fuzz"}}}, SortBy: "name", SortOrder: "desc"},
		&cofferv1.ListSecretVersionIdsRequest{SecretId: "fuzz/a", IncludeDeprecated: true},
		&cofferv1.DeleteSecretRequest{SecretId: "fuzz/a"},
		&cofferv1.RestoreSecretRequest{SecretId: "fuzz/a"},
		&cofferv1.TagResourceRequest{SecretId: "fuzz/a", Tags: []*cofferv1.Tag{{Key: "x", Value: ""}}},
		&cofferv1.UntagResourceRequest{SecretId: "fuzz/a", TagKeys: []string{"x"}},
		&cofferv1.GetRandomPasswordRequest{ExcludeCharacters: "abc", IncludeSpace: true},
		&cofferv1.PutResourcePolicyRequest{SecretId: "fuzz/a", ResourcePolicy: `{"Version":"2012-10-17","Statement":{"Effect":"Deny","Principal":"*","Action":"*","Resource":"*"}}`},
		&cofferv1.GetResourcePolicyRequest{SecretId: "fuzz/a"},
		&cofferv1.DeleteResourcePolicyRequest{SecretId: "fuzz/a"},
		&cofferv1.ValidateResourcePolicyRequest{ResourcePolicy: `{"Statement":[]}`},
		&cofferv1.BatchGetSecretValueRequest{SecretIdList: []string{"fuzz/a", "missing"}},
	}
	for i, s := range seeds {
		buf, err := proto.Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(byte(i), buf)
	}
	f.Add(byte(0), []byte{0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, op byte, data []byte) {
		err := callOp(svc, op, data)
		if err == nil {
			return
		}
		ae := AsAPIError(err)
		if !knownTypes[ae.Type] {
			t.Fatalf("op %d: unexpected error type %s: %v (cause %v)", op%20, ae.Type, ae.Message, ae.Unwrap())
		}
		if ae.Message == "" {
			t.Fatalf("op %d: %s without a message", op%20, ae.Type)
		}
	})
}

// FuzzCreateSecret drives the create path with arbitrary field values.
func FuzzCreateSecret(f *testing.F) {
	svc, _ := newTestService(f)
	f.Add("prod/db", tokA, "value", []byte(nil), "desc", "")
	f.Add("a b", "short", "", []byte{0}, "", "alias/coffer/default")
	f.Add("x", "", "", []byte{}, "", "arn:aws:kms:us-east-1:123456789012:key/nope")
	f.Fuzz(func(t *testing.T, name, token, str string, bin []byte, desc, kms string) {
		req := &cofferv1.CreateSecretRequest{Name: name, ClientRequestToken: token, Description: desc, KmsKeyId: kms}
		if str != "" {
			req.SecretString = &str
		}
		if bin != nil {
			req.SecretBinary = bin
		}
		resp, err := svc.CreateSecret(context.Background(), req)
		if err != nil {
			if ae := AsAPIError(err); !knownTypes[ae.Type] {
				t.Fatalf("unexpected %s: %s (cause %v)", ae.Type, ae.Message, ae.Unwrap())
			}
			return
		}
		if resp.GetName() != name {
			t.Fatalf("created %q, asked for %q", resp.GetName(), name)
		}
	})
}
