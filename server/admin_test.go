package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/replication"
	"github.com/cofferhq/coffer/storage"
)

// failingCluster is an admin Cluster whose every operation fails with the
// error it is given, the way a Raft node's failures read: file paths,
// addresses, internals.
type failingCluster struct {
	Cluster
	err error
}

func (c failingCluster) Status(context.Context) ([]replication.ServerStatus, error) {
	return nil, c.err
}
func (c failingCluster) RemovePeer(context.Context, string) error { return c.err }
func (c failingCluster) TransferLeadership(context.Context, string) (string, error) {
	return "", c.err
}
func (c failingCluster) SaveSnapshot(context.Context, io.Writer, func(replication.SnapshotInfo)) error {
	return c.err
}
func (c failingCluster) RestoreSnapshot(_ context.Context, _ int64, r io.Reader) (uint64, error) {
	_, _ = io.Copy(io.Discard, r)
	return 0, c.err
}

// syncBuffer is a log sink the server's goroutines write while a test reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startAdmin serves an AdminService over cluster to a root caller, logging
// into the returned buffer.
func startAdmin(t *testing.T, cluster Cluster) (cofferv1.AdminServiceClient, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	auth := func(context.Context, string, proto.Message) (Identity, error) {
		return Identity{Principal: RootPrincipal}, nil
	}
	gs, _ := NewGRPCServer(Services{Admin: NewAdmin(cluster, "us-east-1", "n1")}, slog.New(slog.NewTextHandler(logs, nil)), auth, nil)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return cofferv1.NewAdminServiceClient(conn), logs
}

// TestAdminErrorsAreTypedAndInternalsStayInTheLog (issue 13, item 11): an
// admin RPC whose cluster operation fails with an internal error answers
// InternalServiceError with a generic message — never the error's text,
// which names files and addresses — and the text goes to the log with the
// request id the caller was given. The operations' own refusals are typed
// errors in fixed words.
func TestAdminErrorsAreTypedAndInternalsStayInTheLog(t *testing.T) {
	const internal = "raft: open /var/lib/coffer/raft/raft.db: input/output error (peer 10.0.0.7:7401)"
	admin, logs := startAdmin(t, failingCluster{err: errors.New(internal)})
	ctx := context.Background()

	calls := map[string]func(ctx context.Context) error{
		"ClusterStatus": func(ctx context.Context) error {
			_, err := admin.ClusterStatus(ctx, &cofferv1.ClusterStatusRequest{})
			return err
		},
		"RemovePeer": func(ctx context.Context) error {
			_, err := admin.RemovePeer(ctx, &cofferv1.RemovePeerRequest{NodeId: "n2"})
			return err
		},
		"TransferLeadership": func(ctx context.Context) error {
			_, err := admin.TransferLeadership(ctx, &cofferv1.TransferLeadershipRequest{NodeId: "n2"})
			return err
		},
		"SaveSnapshot": func(ctx context.Context) error {
			stream, err := admin.SaveSnapshot(ctx, &cofferv1.SaveSnapshotRequest{})
			if err != nil {
				return err
			}
			_, err = stream.Recv()
			return err
		},
		"RestoreSnapshot": func(ctx context.Context) error {
			stream, err := admin.RestoreSnapshot(ctx)
			if err != nil {
				return err
			}
			if err := stream.Send(&cofferv1.RestoreSnapshotRequest{Part: &cofferv1.RestoreSnapshotRequest_Size{Size: 4}}); err != nil {
				return err
			}
			if err := stream.Send(&cofferv1.RestoreSnapshotRequest{Part: &cofferv1.RestoreSnapshotRequest_Chunk{Chunk: []byte("snap")}}); err != nil {
				return err
			}
			_, err = stream.CloseAndRecv()
			return err
		},
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			err := call(ctx)
			if TypeOf(err) != TypeInternalServiceError {
				t.Fatalf("%s: %v, want InternalServiceError", name, err)
			}
			msg := status.Convert(err).Message()
			if msg != "An error occurred on the server side." {
				t.Errorf("%s answered %q; the caller must get the generic message", name, msg)
			}
			if !strings.Contains(logs.String(), "input/output error") {
				t.Errorf("%s: the cause is not in the log:\n%s", name, logs.String())
			}
		})
	}
	// Every logged cause carries the request id it was answered under.
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		if strings.Contains(line, "input/output error") && !strings.Contains(line, "request_id=") {
			t.Errorf("a cause was logged without its request id: %s", line)
		}
	}

	// The operations' own refusals are typed, in fixed words.
	for _, tc := range []struct {
		call     func() error
		wantType string
		wantMsg  string
	}{
		{func() error {
			a, _ := startAdmin(t, failingCluster{err: fmt.Errorf("remove n2: %w", replication.ErrUnknownPeer)})
			_, err := a.RemovePeer(ctx, &cofferv1.RemovePeerRequest{NodeId: "n2"})
			return err
		}, TypeResourceNotFound, "No server n2 is in the configuration of region us-east-1."},
		{func() error {
			a, _ := startAdmin(t, failingCluster{err: replication.ErrRemoveLeader})
			_, err := a.RemovePeer(ctx, &cofferv1.RemovePeerRequest{NodeId: "n1"})
			return err
		}, TypeInvalidRequest, "The leader cannot remove itself: transfer leadership to another voter first (coffer cluster transfer-leadership)."},
		{func() error {
			a, _ := startAdmin(t, failingCluster{err: &storage.SnapshotError{Reason: "its keyring does not open with this region's root key"}})
			stream, err := a.RestoreSnapshot(ctx)
			if err != nil {
				return err
			}
			_ = stream.Send(&cofferv1.RestoreSnapshotRequest{Part: &cofferv1.RestoreSnapshotRequest_Size{Size: 1}})
			_ = stream.Send(&cofferv1.RestoreSnapshotRequest{Part: &cofferv1.RestoreSnapshotRequest_Chunk{Chunk: []byte("x")}})
			_, err = stream.CloseAndRecv()
			return err
		}, TypeInvalidParameter, "The snapshot cannot be restored: its keyring does not open with this region's root key. Nothing was changed."},
	} {
		err := tc.call()
		if TypeOf(err) != tc.wantType || status.Convert(err).Message() != tc.wantMsg {
			t.Errorf("got %s %q, want %s %q", TypeOf(err), status.Convert(err).Message(), tc.wantType, tc.wantMsg)
		}
	}
}
