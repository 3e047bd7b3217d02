package server

import (
	"strings"
	"testing"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// TestCreateSecretWithReplicasNeedsReplicatePermission (issue 13, item 1):
// as AWS documents for CreateSecret, asking for replica regions also needs
// secretsmanager:ReplicateSecretToRegions; a caller allowed only
// CreateSecret may create secrets, but not replicate them into another
// region (where a forced overwrite would reach that region's secrets).
func TestCreateSecretWithReplicasNeedsReplicatePermission(t *testing.T) {
	s := startAuthzServer(t, false)
	ctx := t.Context()
	s.principal(t, "creator", nil, `{"Effect":"Allow","Action":"secretsmanager:CreateSecret","Resource":"*"}`)
	s.principal(t, "replicator", nil, `{"Effect":"Allow","Action":["secretsmanager:CreateSecret","secretsmanager:ReplicateSecretToRegions"],"Resource":"*"}`)
	v := "value"
	withReplica := func(name string) *cofferv1.CreateSecretRequest {
		return &cofferv1.CreateSecretRequest{Name: name, SecretString: &v,
			AddReplicaRegions: []*cofferv1.ReplicaRegion{{Region: "eu-west-1"}}, ForceOverwriteReplicaSecret: true}
	}

	_, err := s.sm(t, "creator").CreateSecret(ctx, withReplica("prod/db"))
	if TypeOf(err) != TypeAccessDeniedException || !strings.Contains(err.Error(), "secretsmanager:ReplicateSecretToRegions") {
		t.Fatalf("CreateSecret with replicas, allowed only CreateSecret: %v, want AccessDenied naming secretsmanager:ReplicateSecretToRegions", err)
	}
	if _, err := s.svc.DescribeSecret(ctx, &cofferv1.DescribeSecretRequest{SecretId: "prod/db"}); err == nil {
		t.Fatal("the refused CreateSecret created prod/db")
	}
	if _, err := s.sm(t, "creator").CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: "plain", SecretString: &v}); err != nil {
		t.Fatalf("CreateSecret without replicas, allowed CreateSecret: %v", err)
	}
	// With both actions allowed the request passes authorization (this
	// region is paired with no other, so the replica then fails on its own).
	if _, err := s.sm(t, "replicator").CreateSecret(ctx, withReplica("prod/other")); TypeOf(err) == TypeAccessDeniedException {
		t.Fatalf("CreateSecret with replicas, allowed both actions: %v", err)
	}
}
