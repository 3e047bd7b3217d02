package server

import (
	"context"
	"sync"
	"testing"
	"time"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

func TestTemporaryCredentialsExpireOnTheServiceClock(t *testing.T) {
	svc, store := newTestService(t)
	// Years before the wall clock: credentials issued at this time have
	// long expired by the wall clock, and are valid by the service's.
	now := time.Date(2020, 1, 1, 12, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	svc.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	ctx := context.Background()
	iam := NewIAM(svc, store)
	if _, err := iam.CreatePrincipal(ctx, &cofferv1.CreatePrincipalRequest{Name: "app"}); err != nil {
		t.Fatal(err)
	}
	key, err := iam.CreateAccessKey(ctx, &cofferv1.CreateAccessKeyRequest{Principal: "app"})
	if err != nil {
		t.Fatal(err)
	}
	sess, err := iam.GetSessionToken(WithIdentity(ctx, Identity{Principal: "app", AccessKeyID: key.GetAccessKeyId()}),
		&cofferv1.GetSessionTokenRequest{DurationSeconds: 3600})
	if err != nil {
		t.Fatal(err)
	}
	if got := sess.GetExpiration().AsTime(); !got.Equal(now.Add(time.Hour)) {
		t.Fatalf("expiration %v, want an hour after the service's now", got)
	}
	bearer := sess.GetAccessKeyId() + ":" + sess.GetSecretAccessKey() + ":" + sess.GetSessionToken()
	if id, err := iam.CheckBearer(ctx, bearer); err != nil || id.Principal != "app" {
		t.Fatalf("fresh temporary credentials = %+v, %v; want app (judged on the service's clock)", id, err)
	}
	k, err := iam.LookupKey(ctx, sess.GetAccessKeyId())
	if err != nil || iam.Expired(k) {
		t.Fatalf("LookupKey = %v; Expired = %v, want not expired", err, iam.Expired(k))
	}
	mu.Lock()
	now = now.Add(time.Hour)
	mu.Unlock()
	if _, err := iam.CheckBearer(ctx, bearer); apiType(err) != TypeExpiredToken {
		t.Fatalf("credentials at their expiration = %v, want ExpiredToken", err)
	}
	if !iam.Expired(k) {
		t.Error("Expired is false at the expiration")
	}
}
