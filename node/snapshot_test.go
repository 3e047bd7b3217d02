package node_test

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server"
	"github.com/cofferhq/coffer/test/testkit/clustertest"
	"github.com/cofferhq/coffer/test/wait"
)

// TestSaveSnapshotDoesNotPinTheState: a SaveSnapshot client that stops
// reading used to hold the bbolt read transaction the snapshot streamed
// from, so no page writers freed could be reused and state.db grew until
// every Apply waited on a remap. The snapshot is now copied to a temporary
// file first and the transaction ended before the first byte is sent: while
// the client stalls, no read transaction is open and writes go on; at the
// server's deadline the stream ends and the copy is removed.
func TestSaveSnapshotDoesNotPinTheState(t *testing.T) {
	dir := t.TempDir()
	opts := clustertest.SingleNodeOptions(t, dir)
	opts.RootAccessKeyID, opts.RootSecretAccessKey = rootID, rootSecret
	opts.Limits.SnapshotTimeout = 5 * time.Second
	n, _ := startReady(t, opts)
	defer n.Stop()
	ctx := t.Context()

	// Enough state that the stream outgrows what gRPC's flow control lets
	// the server send to a client that reads nothing.
	sm := cofferv1.NewSecretsManagerServiceClient(asKey(t, n.Addr(), rootID+":"+rootSecret))
	big := strings.Repeat("x", 60<<10)
	for i := range 40 {
		if _, err := sm.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: fmt.Sprintf("big/%02d", i), SecretString: &big}); err != nil {
			t.Fatal(err)
		}
	}

	// A small fixed window (which also turns off BDP growth) so the server
	// blocks as soon as the client stops reading.
	conn := dial(t, n.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(bearerCreds(rootID+":"+rootSecret)),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	stream, err := cofferv1.NewAdminServiceClient(conn).SaveSnapshot(ctx, &cofferv1.SaveSnapshotRequest{})
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	size := first.GetInfo().GetSize()
	if size < 2<<20 {
		t.Fatalf("the snapshot is %d bytes; the test needs it larger than the flow-control windows", size)
	}
	copies := func() []string {
		names, _ := filepath.Glob(filepath.Join(dir, "state.db.snapshot-*"))
		return names
	}
	// The client reads nothing more. The server holds no read transaction,
	// only its copy.
	wait.True(t, 10*time.Second, "no read transaction open while the client stalls", func() bool {
		return n.Store().OpenReadTransactions() == 0
	})
	if got := copies(); len(got) != 1 {
		t.Fatalf("temporary snapshot copies while streaming: %v, want one", got)
	}
	v := "written while the snapshot stalls"
	if _, err := sm.PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: "big/00", SecretString: &v}); err != nil {
		t.Fatalf("write during a stalled snapshot: %v", err)
	}

	// The server's deadline ends the stream and removes the copy.
	wait.True(t, 30*time.Second, "the stalled stream's copy to be removed", func() bool { return len(copies()) == 0 })
	var got int64
	for {
		m, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) || server.TypeOf(err) != server.TypeServiceUnavailable {
				t.Fatalf("the stalled stream ended with %v, want ServiceUnavailable (the server's deadline)", err)
			}
			break
		}
		got += int64(len(m.GetChunk()))
	}
	if got >= size {
		t.Fatalf("the stalled client received the whole snapshot (%d of %d bytes)", got, size)
	}
	if _, err := os.Stat(filepath.Join(dir, "state.db")); err != nil {
		t.Fatal(err)
	}
}
