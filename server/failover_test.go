package server

import (
	"context"
	"strings"
	"testing"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// TestFenceRefusesWritesRetryably: through the service, a fenced region
// answers writes to its primary secrets and creations with
// ServiceUnavailable naming the fence, and takes them again once unfenced.
func TestFenceRefusesWritesRetryably(t *testing.T) {
	svc, _ := newTestService(t)
	api := NewRegionAPI(svc, fakeRegions{})
	ctx := WithPrincipal(context.Background(), "ops")
	v := "v1"
	if _, err := svc.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: "app/db", SecretString: &v}); err != nil {
		t.Fatal(err)
	}
	resp, err := api.FenceRegion(ctx, &cofferv1.FenceRegionRequest{Region: svc.Region(), Reason: "drill"})
	if err != nil {
		t.Fatal(err)
	}
	if st := resp.GetStatus(); !st.GetFenced() || st.GetFencedBy() != "arn:aws:iam::123456789012:user/ops" || st.GetPrimarySecrets() != 1 {
		t.Fatalf("status %v", st)
	}
	v2 := "v2"
	_, err = svc.PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: "app/db", SecretString: &v2})
	if apiType(err) != TypeServiceUnavailable || !strings.Contains(err.Error(), "fenced (drill)") {
		t.Fatalf("put in a fenced region: %v", err)
	}
	if _, err := svc.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: "app/new", SecretString: &v}); apiType(err) != TypeServiceUnavailable {
		t.Fatalf("create in a fenced region: %v", err)
	}
	if _, err := api.UnfenceRegion(ctx, &cofferv1.UnfenceRegionRequest{Region: svc.Region()}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: "app/db", SecretString: &v2}); err != nil {
		t.Fatalf("put after unfence: %v", err)
	}
}
