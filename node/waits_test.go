package node_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server"
	"github.com/cofferhq/coffer/test/testkit/clustertest"
)

// TestMinIndexBeyondTheLogIsRefused: x-coffer-min-index 2^64-1 used to make
// a node wait until the caller gave up (and forever for a caller without a
// deadline), polling on the apply path's lock — before the request was even
// authorized. It is now refused at once as naming no write, for root and
// for everyone; a caller without rights is denied first; and an index the
// region has applied is served.
func TestMinIndexBeyondTheLogIsRefused(t *testing.T) {
	opts := clustertest.SingleNodeOptions(t, t.TempDir())
	opts.RootAccessKeyID, opts.RootSecretAccessKey = rootID, rootSecret
	n, _ := startReady(t, opts)
	defer n.Stop()
	root := asKey(t, n.Addr(), rootID+":"+rootSecret)
	v := "v"
	if _, err := cofferv1.NewSecretsManagerServiceClient(root).CreateSecret(t.Context(), &cofferv1.CreateSecretRequest{Name: "app/db", SecretString: &v}); err != nil {
		t.Fatal(err)
	}
	nobodyID, nobodySecret := principalWithPolicy(t, cofferv1.NewIAMServiceClient(root), "nobody", "")
	nobody := asKey(t, n.Addr(), nobodyID+":"+nobodySecret)

	read := func(conn cofferv1.SecretsManagerServiceClient, minIndex uint64, consistency string) error {
		// A deadline only so that the old behaviour fails rather than hangs.
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		ctx = metadata.AppendToOutgoingContext(ctx, server.MinIndexHeader, strconv.FormatUint(minIndex, 10))
		if consistency != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, server.ConsistencyHeader, consistency)
		}
		_, err := conn.GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: "app/db"})
		return err
	}
	rootSM, nobodySM := cofferv1.NewSecretsManagerServiceClient(root), cofferv1.NewSecretsManagerServiceClient(nobody)
	for _, tt := range []struct {
		name        string
		sm          cofferv1.SecretsManagerServiceClient
		consistency string
		want        string
	}{
		{"root, linearizable", rootSM, "", server.TypeInvalidParameter},
		{"root, stale", rootSM, "stale", server.TypeInvalidParameter},
		{"no rights, linearizable", nobodySM, "", server.TypeAccessDeniedException},
		{"no rights, stale", nobodySM, "stale", server.TypeAccessDeniedException},
	} {
		if err := read(tt.sm, ^uint64(0), tt.consistency); server.TypeOf(err) != tt.want {
			t.Errorf("%s, min-index 2^64-1: %v, want %s", tt.name, err, tt.want)
		}
	}
	applied := n.Store().AppliedIndex()
	for _, c := range []string{"", "stale"} {
		if err := read(rootSM, applied, c); err != nil {
			t.Errorf("min-index %d (applied), consistency %q: %v", applied, c, err)
		}
	}
}
