package server

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server/policy"
	"github.com/cofferhq/coffer/server/rotation"
)

// nopRotator is a rotation function that does nothing: a secret can have
// rotation configured without anything running.
type nopRotator struct{}

func (nopRotator) Invoke(context.Context, rotation.Event) error { return nil }

// keyCase is one condition key: a Deny on it, requests that carry the
// key's value the Deny names (each must be refused by it) and requests
// that do not (none may be).
type keyCase struct {
	key       string
	condition string
	denied    []func(cofferv1.SecretsManagerServiceClient) error
	allowed   []func(cofferv1.SecretsManagerServiceClient) error
}

// TestDenyOnEveryConditionKey (issue 13, item 9): for each condition key
// Coffer documents — the Secrets Manager keys the AWS service authorization
// reference lists for the actions that carry them, and aws:RequestedRegion
// — an identity policy's explicit Deny on it refuses the requests that
// carry the value it names, and only those.
func TestDenyOnEveryConditionKey(t *testing.T) {
	s := startAuthzServer(t, false)
	ctx := t.Context()
	s.secret(t, "app/db", "v1")
	s.svc.SetRotators(map[string]rotation.Function{"coffer:rotator/test": nopRotator{}})
	s.secret(t, "app/rotating", "v1")
	immediately := false
	if _, err := s.svc.RotateSecret(ctx, &cofferv1.RotateSecretRequest{SecretId: "app/rotating", RotationLambdaArn: "coffer:rotator/test",
		RotationRules: &cofferv1.RotationRules{AutomaticallyAfterDays: proto.Int64(30)}, RotateImmediately: &immediately}); err != nil {
		t.Fatal(err)
	}
	v := "value"
	create := func(name string, edit func(*cofferv1.CreateSecretRequest)) func(cofferv1.SecretsManagerServiceClient) error {
		return func(sm cofferv1.SecretsManagerServiceClient) error {
			r := &cofferv1.CreateSecretRequest{Name: name, SecretString: &v}
			edit(r)
			_, err := sm.CreateSecret(ctx, r)
			return err
		}
	}
	rotate := func(edit func(*cofferv1.RotateSecretRequest)) func(cofferv1.SecretsManagerServiceClient) error {
		return func(sm cofferv1.SecretsManagerServiceClient) error {
			r := &cofferv1.RotateSecretRequest{SecretId: "app/db"}
			edit(r)
			_, err := sm.RotateSecret(ctx, r)
			return err
		}
	}
	replicate := func(region string, force bool) func(cofferv1.SecretsManagerServiceClient) error {
		return func(sm cofferv1.SecretsManagerServiceClient) error {
			_, err := sm.ReplicateSecretToRegions(ctx, &cofferv1.ReplicateSecretToRegionsRequest{SecretId: "app/db",
				AddReplicaRegions: []*cofferv1.ReplicaRegion{{Region: region}}, ForceOverwriteReplicaSecret: force})
			return err
		}
	}
	update := func(edit func(*cofferv1.UpdateSecretRequest)) func(cofferv1.SecretsManagerServiceClient) error {
		return func(sm cofferv1.SecretsManagerServiceClient) error {
			r := &cofferv1.UpdateSecretRequest{SecretId: "app/db"}
			edit(r)
			_, err := sm.UpdateSecret(ctx, r)
			return err
		}
	}
	tag := func(key, value string) func(cofferv1.SecretsManagerServiceClient) error {
		return func(sm cofferv1.SecretsManagerServiceClient) error {
			_, err := sm.TagResource(ctx, &cofferv1.TagResourceRequest{SecretId: "app/db", Tags: []*cofferv1.Tag{{Key: key, Value: value}}})
			return err
		}
	}
	untag := func(key string) func(cofferv1.SecretsManagerServiceClient) error {
		return func(sm cofferv1.SecretsManagerServiceClient) error {
			_, err := sm.UntagResource(ctx, &cofferv1.UntagResourceRequest{SecretId: "app/db", TagKeys: []string{key}})
			return err
		}
	}
	get := func(id string) func(cofferv1.SecretsManagerServiceClient) error {
		return func(sm cofferv1.SecretsManagerServiceClient) error {
			_, err := sm.GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: id})
			return err
		}
	}
	const fn = "arn:aws:lambda:us-east-1:123456789012:function:"
	cases := []keyCase{
		{key: "secretsmanager:ForceOverwriteReplicaSecret", condition: `{"Bool":{"secretsmanager:ForceOverwriteReplicaSecret":"true"}}`,
			denied: []func(cofferv1.SecretsManagerServiceClient) error{
				create("k/force", func(r *cofferv1.CreateSecretRequest) { r.ForceOverwriteReplicaSecret = true }),
				replicate("eu-west-1", true)},
			allowed: []func(cofferv1.SecretsManagerServiceClient) error{create("k/noforce", func(*cofferv1.CreateSecretRequest) {})}},
		{key: "secretsmanager:RotationLambdaARN", condition: `{"ArnLike":{"secretsmanager:RotationLambdaARN":"` + fn + `evil*"}}`,
			denied:  []func(cofferv1.SecretsManagerServiceClient) error{rotate(func(r *cofferv1.RotateSecretRequest) { r.RotationLambdaArn = fn + "evil-rotator" })},
			allowed: []func(cofferv1.SecretsManagerServiceClient) error{rotate(func(r *cofferv1.RotateSecretRequest) { r.RotationLambdaArn = fn + "good" })}},
		{key: "secretsmanager:AddReplicaRegions", condition: `{"ForAnyValue:StringEquals":{"secretsmanager:AddReplicaRegions":"cn-north-1"}}`,
			denied: []func(cofferv1.SecretsManagerServiceClient) error{replicate("cn-north-1", false),
				create("k/replicated", func(r *cofferv1.CreateSecretRequest) {
					r.AddReplicaRegions = []*cofferv1.ReplicaRegion{{Region: "eu-west-1"}, {Region: "cn-north-1"}}
				})},
			allowed: []func(cofferv1.SecretsManagerServiceClient) error{replicate("eu-west-1", false)}},
		{key: "secretsmanager:KmsKeyId", condition: `{"StringEquals":{"secretsmanager:KmsKeyId":"alias/untrusted"}}`,
			denied: []func(cofferv1.SecretsManagerServiceClient) error{
				create("k/kms", func(r *cofferv1.CreateSecretRequest) { r.KmsKeyId = "alias/untrusted" }),
				update(func(r *cofferv1.UpdateSecretRequest) { r.KmsKeyId = proto.String("alias/untrusted") })},
			allowed: []func(cofferv1.SecretsManagerServiceClient) error{create("k/defaultkms", func(*cofferv1.CreateSecretRequest) {})}},
		{key: "secretsmanager:RotateImmediately", condition: `{"Bool":{"secretsmanager:RotateImmediately":"true"}}`,
			denied:  []func(cofferv1.SecretsManagerServiceClient) error{rotate(func(*cofferv1.RotateSecretRequest) {})},
			allowed: []func(cofferv1.SecretsManagerServiceClient) error{rotate(func(r *cofferv1.RotateSecretRequest) { r.RotateImmediately = proto.Bool(false) })}},
		{key: "aws:RequestedRegion", condition: `{"StringEquals":{"aws:RequestedRegion":"us-east-1"}}`,
			denied: []func(cofferv1.SecretsManagerServiceClient) error{get("app/db")}},
		{key: "secretsmanager:Name", condition: `{"StringLike":{"secretsmanager:Name":"prod/*"}}`,
			denied:  []func(cofferv1.SecretsManagerServiceClient) error{create("prod/db", func(*cofferv1.CreateSecretRequest) {})},
			allowed: []func(cofferv1.SecretsManagerServiceClient) error{create("dev/db", func(*cofferv1.CreateSecretRequest) {})}},
		{key: "secretsmanager:Description", condition: `{"StringLike":{"secretsmanager:Description":"*PCI*"}}`,
			denied: []func(cofferv1.SecretsManagerServiceClient) error{
				create("k/pci", func(r *cofferv1.CreateSecretRequest) { r.Description = "PCI card data" }),
				update(func(r *cofferv1.UpdateSecretRequest) { r.Description = proto.String("now PCI") })},
			allowed: []func(cofferv1.SecretsManagerServiceClient) error{
				create("k/plain", func(r *cofferv1.CreateSecretRequest) { r.Description = "plain" })}},
		{key: "aws:RequestTag/env", condition: `{"StringEquals":{"aws:RequestTag/env":"prod"}}`,
			denied: []func(cofferv1.SecretsManagerServiceClient) error{tag("env", "prod"),
				create("k/tagged", func(r *cofferv1.CreateSecretRequest) { r.Tags = []*cofferv1.Tag{{Key: "env", Value: "prod"}} })},
			allowed: []func(cofferv1.SecretsManagerServiceClient) error{tag("env", "dev")}},
		{key: "aws:TagKeys", condition: `{"ForAnyValue:StringEquals":{"aws:TagKeys":"owner"}}`,
			denied:  []func(cofferv1.SecretsManagerServiceClient) error{untag("owner"), tag("owner", "me")},
			allowed: []func(cofferv1.SecretsManagerServiceClient) error{untag("team")}},
		{key: "secretsmanager:ModifyRotationRules", condition: `{"Bool":{"secretsmanager:ModifyRotationRules":"true"}}`,
			denied: []func(cofferv1.SecretsManagerServiceClient) error{rotate(func(r *cofferv1.RotateSecretRequest) {
				r.RotationRules = &cofferv1.RotationRules{AutomaticallyAfterDays: proto.Int64(7)}
			})},
			allowed: []func(cofferv1.SecretsManagerServiceClient) error{rotate(func(*cofferv1.RotateSecretRequest) {})}},
		{key: "secretsmanager:resource/AllowRotationLambdaArn",
			condition: `{"StringEquals":{"secretsmanager:resource/AllowRotationLambdaArn":"coffer:rotator/test"}}`,
			denied:    []func(cofferv1.SecretsManagerServiceClient) error{get("app/rotating")},
			allowed:   []func(cofferv1.SecretsManagerServiceClient) error{get("app/db")}},
	}
	for n, c := range cases {
		principal := fmt.Sprintf("keys-%d", n)
		s.principal(t, principal, nil, `{"Effect":"Allow","Action":"secretsmanager:*","Resource":"*"}`,
			`{"Sid":"DenyOnKey","Effect":"Deny","Action":"secretsmanager:*","Resource":"*","Condition":`+c.condition+`}`)
		sm := s.sm(t, principal)
		for i, call := range c.denied {
			err := call(sm)
			if TypeOf(err) != TypeAccessDeniedException || !strings.Contains(err.Error(), "with an explicit deny in an identity-based policy") {
				t.Errorf("%s: request %d with the denied value: %v; want the Deny on the key to refuse it", c.key, i, err)
			}
		}
		for i, call := range c.allowed {
			if err := call(sm); err != nil && strings.Contains(err.Error(), "explicit deny") {
				t.Errorf("%s: request %d without the denied value was refused by the Deny: %v", c.key, i, err)
			}
		}
		if !SetsConditionKey(c.key) {
			t.Errorf("%s is set but not in the list of keys Coffer sets", c.key)
		}
	}
}

// TestConditionKeysCofferNeverSetsAreReported (issue 13, item 9): a policy
// naming a key Coffer never sets is stored with a warning (PutPolicy,
// PutResourcePolicy) and fails ValidateResourcePolicy's
// CONDITION_KEY_CHECK; keys Coffer sets draw nothing.
func TestConditionKeysCofferNeverSetsAreReported(t *testing.T) {
	svc, store := newTestService(t)
	iam := NewIAM(svc, store)
	ctx := t.Context()
	v := "v"
	if _, err := svc.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: "app/db", SecretString: &v}); err != nil {
		t.Fatal(err)
	}
	identity := `{"Version":"2012-10-17","Statement":[{"Sid":"OnlyFromVpce","Effect":"Deny","Action":"*","Resource":"*",
		"Condition":{"StringNotEquals":{"aws:SourceVpce":"vpce-1"},"StringEquals":{"aws:RequestedRegion":"us-east-1","secretsmanager:Name":"x"}}}]}`
	put, err := iam.PutPolicy(ctx, &cofferv1.PutPolicyRequest{Name: "vpce", Document: identity})
	if err != nil {
		t.Fatal(err)
	}
	if w := put.GetWarnings(); len(w) != 1 || !strings.Contains(w[0], `Statement[0] (Sid "OnlyFromVpce"): Coffer never sets the condition key aws:SourceVpce`) {
		t.Errorf("PutPolicy warnings %q, want one about aws:SourceVpce", w)
	}
	resource := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:user/a"},"Action":"secretsmanager:GetSecretValue","Resource":"*",
		"Condition":{"StringEquals":{"aws:PrincipalOrgID":"o-1","aws:PrincipalTag/team":"x"}}}]}`
	rp, err := svc.PutResourcePolicy(ctx, &cofferv1.PutResourcePolicyRequest{SecretId: "app/db", ResourcePolicy: resource})
	if err != nil {
		t.Fatal(err)
	}
	if w := rp.GetWarnings(); len(w) != 1 || !strings.Contains(w[0], "aws:PrincipalOrgID") {
		t.Errorf("PutResourcePolicy warnings %q, want one about aws:PrincipalOrgID", w)
	}
	val, err := svc.ValidateResourcePolicy(ctx, &cofferv1.ValidateResourcePolicyRequest{ResourcePolicy: resource})
	if err != nil {
		t.Fatal(err)
	}
	if val.GetPolicyValidationPassed() || len(val.GetValidationErrors()) != 1 || val.GetValidationErrors()[0].GetCheckName() != policy.CheckConditionKey {
		t.Errorf("ValidateResourcePolicy = %v, want one %s finding", val, policy.CheckConditionKey)
	}
	clean := strings.ReplaceAll(resource, `"aws:PrincipalOrgID":"o-1",`, "")
	if val, err := svc.ValidateResourcePolicy(ctx, &cofferv1.ValidateResourcePolicyRequest{ResourcePolicy: clean}); err != nil || !val.GetPolicyValidationPassed() {
		t.Errorf("ValidateResourcePolicy of a policy on keys Coffer sets = %v, %v; want passed", val, err)
	}
}

// TestEveryConditionKeyIsListed: every key the Authorizer puts in a
// request's context is in the one list of keys Coffer sets, so that list —
// what policies are checked against — cannot fall behind the code.
func TestEveryConditionKeyIsListed(t *testing.T) {
	svc, store := newTestService(t)
	a := NewIAM(svc, store).Authorizer()
	secret := &storagev1.Secret{Name: "app/db", Arn: smARNPrefix + "app/db-AbCdEf", Replicas: []*storagev1.ReplicaRegionConfig{{Region: "eu-west-1"}},
		RotationLambdaArn: "coffer:rotator/test", Tags: []*cofferv1.Tag{{Key: "team", Value: "x"}}}
	replica := &storagev1.Secret{Name: "app/db", Arn: secret.GetArn(), Replica: true, PrimaryRegion: "eu-west-1"}
	fullDelete := &cofferv1.DeleteSecretRequest{SecretId: "app/db", RecoveryWindowInDays: proto.Int64(7)}
	requests := []proto.Message{
		&cofferv1.CreateSecretRequest{Name: "n", Description: "d", KmsKeyId: "k", Tags: []*cofferv1.Tag{{Key: "a", Value: "b"}},
			AddReplicaRegions: []*cofferv1.ReplicaRegion{{Region: "eu-west-1"}}, ForceOverwriteReplicaSecret: true},
		&cofferv1.UpdateSecretRequest{SecretId: "app/db", Description: proto.String("d"), KmsKeyId: proto.String("k")},
		&cofferv1.RotateSecretRequest{SecretId: "app/db", RotationLambdaArn: "f", RotationRules: &cofferv1.RotationRules{}, RotateImmediately: proto.Bool(true)},
		&cofferv1.ReplicateSecretToRegionsRequest{SecretId: "app/db", AddReplicaRegions: []*cofferv1.ReplicaRegion{{Region: "x"}}},
		&cofferv1.TagResourceRequest{SecretId: "app/db", Tags: []*cofferv1.Tag{{Key: "a", Value: "b"}}},
		&cofferv1.UntagResourceRequest{SecretId: "app/db", TagKeys: []string{"a"}},
		fullDelete,
		&cofferv1.GetSecretValueRequest{SecretId: "app/db", VersionId: "v", VersionStage: "s"},
		&cofferv1.PutSecretValueRequest{SecretId: "app/db", VersionStages: []string{"s"}},
		&cofferv1.UpdateSecretVersionStageRequest{SecretId: "app/db", VersionStage: "s"},
		&cofferv1.PutResourcePolicyRequest{SecretId: "app/db"},
		&cofferv1.AttachPolicyRequest{Principal: "p", Policy: "q"},
	}
	principal := &storagev1.Principal{Name: "p", Tags: map[string]string{"team": "x"}}
	caller := Caller{Principal: "p", SourceIP: "10.0.0.1", SecureTransport: true}
	for _, req := range requests {
		for _, sec := range []*storagev1.Secret{secret, replica} {
			t.Run(string(req.ProtoReflect().Descriptor().Name()), func(t *testing.T) {
				target, err := a.TargetOf("secretsmanager:X", req)
				if err != nil {
					t.Fatal(err)
				}
				if _, names := req.(interface{ GetSecretId() string }); names {
					target.Secret = sec
				}
				for key := range a.keys(caller, principal, target) {
					if !SetsConditionKey(key) {
						t.Errorf("%s sets %s, which is not in the list of keys Coffer sets (authz_keys.go)", req.ProtoReflect().Descriptor().Name(), key)
					}
				}
			})
		}
	}
}
