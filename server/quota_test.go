package server

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/storage"
	"github.com/cofferhq/coffer/test/testkit"
)

// TestVersionsQuotaFromConfig: the node's versions-per-secret quota
// (storage.max_versions_per_secret) travels in the commands it proposes,
// and the version past it is refused the way AWS refuses one past 100.
func TestVersionsQuotaFromConfig(t *testing.T) {
	store, err := storage.Open(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	cfg := DefaultConfig()
	cfg.AccountID = "123456789012"
	cfg.MaxVersionsPerSecret = 4
	root := make([]byte, 32)
	if _, err := rand.Read(root); err != nil {
		t.Fatal(err)
	}
	svc, err := New(cfg, &testkit.DirectReplicator{Store: store}, store, lockedRoot(t, root), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := svc.EnsureKeyring(ctx); err != nil {
		t.Fatal(err)
	}
	v := "v0"
	if _, err := svc.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: "busy", SecretString: &v}); err != nil {
		t.Fatal(err)
	}
	for i := 1; ; i++ {
		v := fmt.Sprintf("v%d", i)
		_, err := svc.PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: "busy", SecretString: &v})
		if i < 4 {
			if err != nil {
				t.Fatalf("put %d of a quota of 4: %v", i+1, err)
			}
			continue
		}
		ae := AsAPIError(err)
		if ae.Type != TypeLimitExceeded || !strings.Contains(ae.Message, "maximum number of versions (4)") {
			t.Fatalf("put %d past a quota of 4 = %v, want LimitExceededException naming the quota", i+1, err)
		}
		break
	}

	for _, bad := range []int{1, 2, storage.MaxVersions + 1} {
		cfg.MaxVersionsPerSecret = bad
		if err := cfg.Validate(); err == nil {
			t.Errorf("a versions quota of %d was accepted, want %d..%d", bad, storage.MinVersionsQuota, storage.MaxVersions)
		}
	}
}
