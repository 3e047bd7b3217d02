package cluster

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/grpc/status"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server"
	"github.com/cofferhq/coffer/test/testkit/clustertest"
)

// saveSnapshot streams a snapshot from node i.
func saveSnapshot(t *testing.T, c *clustertest.Cluster, i int) []byte {
	t.Helper()
	ctx, cancel := clustertest.RPCContext()
	defer cancel()
	stream, err := c.Admin(i).SaveSnapshot(ctx, &cofferv1.SaveSnapshotRequest{})
	if err != nil {
		t.Fatalf("SaveSnapshot: %s", describeErr(err))
	}
	var saved []byte
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return saved
		}
		if err != nil {
			t.Fatalf("SaveSnapshot stream: %s", describeErr(err))
		}
		saved = append(saved, m.GetChunk()...)
	}
}

// restoreSnapshot uploads snap through node i and returns the answer.
func restoreSnapshot(t *testing.T, c *clustertest.Cluster, i int, snap []byte) error {
	t.Helper()
	ctx, cancel := clustertest.RPCContext()
	defer cancel()
	up, err := c.Admin(i).RestoreSnapshot(ctx)
	if err != nil {
		return err
	}
	if err := up.Send(&cofferv1.RestoreSnapshotRequest{Part: &cofferv1.RestoreSnapshotRequest_Size{Size: int64(len(snap))}}); err != nil {
		return err
	}
	for rest := snap; len(rest) > 0; {
		n := min(len(rest), 64<<10)
		if err := up.Send(&cofferv1.RestoreSnapshotRequest{Part: &cofferv1.RestoreSnapshotRequest_Chunk{Chunk: rest[:n]}}); err != nil {
			return err
		}
		rest = rest[n:]
	}
	_, err = up.CloseAndRecv()
	return err
}

// corruptRecord returns snap with one record of bucket replaced by bytes
// that do not decode.
func corruptRecord(t *testing.T, snap []byte, bucket, key string) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "snap.db")
	if err := os.WriteFile(path, snap, 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte(bucket)).Put([]byte(key), []byte{0xff, 0xff}) }); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	out, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestRestoreRefusesSnapshotsThatCannotServe (issue 13, item 12): an
// operator's RestoreSnapshot of a snapshot taken in another region (its
// keyring sealed under another root key) or with one record that does not
// decode answers InvalidParameterException saying why, through a follower
// as on the leader, and changes nothing: every node keeps serving the
// region's own secrets, writes go on, and a restarted node comes back
// with them.
func TestRestoreRefusesSnapshotsThatCannotServe(t *testing.T) {
	here := clustertest.Start(t, 3)
	there := clustertest.Start(t, 1)
	leader := here.Leader()
	createSecret(t, here, leader, "mine/a", "A")
	createSecret(t, there, 0, "theirs/b", "B")

	foreign := saveSnapshot(t, there, 0)
	own := saveSnapshot(t, here, leader)
	follower := here.Others(leader)[0]
	for _, tc := range []struct {
		name, reason string
		snap         []byte
		via          int
	}{
		{"another region's, through a follower", "its keyring does not open with this region's root key", foreign, follower},
		{"another region's, on the leader", "its keyring does not open with this region's root key", foreign, leader},
		{"a record that does not decode", `record "mine/a" in bucket secrets does not decode`, corruptRecord(t, own, "secrets", "mine/a"), follower},
	} {
		err := restoreSnapshot(t, here, tc.via, tc.snap)
		msg := status.Convert(err).Message()
		if server.TypeOf(err) != server.TypeInvalidParameter || !strings.HasPrefix(msg, "The snapshot cannot be restored: ") ||
			!strings.Contains(msg, tc.reason) || !strings.HasSuffix(msg, "Nothing was changed.") {
			t.Errorf("%s: %s; want InvalidParameterException saying %q", tc.name, describeErr(err), tc.reason)
		}
	}

	check := func(when string) {
		t.Helper()
		for _, i := range here.Running() {
			ctx, cancel := clustertest.RPCContext()
			got, _, err := getValue(ctx, here.Client(i), "mine/a", "")
			cancel()
			if err != nil || got.GetSecretString() != "A" {
				t.Fatalf("%s: mine/a on %s = %v, %s", when, here.ID(i), got, describeErr(err))
			}
			ctx, cancel = clustertest.RPCContext()
			_, _, err = getValue(ctx, here.Client(i), "theirs/b", "")
			cancel()
			if server.TypeOf(err) != server.TypeResourceNotFound {
				t.Fatalf("%s: theirs/b on %s: %s, want ResourceNotFoundException", when, here.ID(i), describeErr(err))
			}
		}
	}
	check("after the refused restores")
	createSecret(t, here, follower, "mine/c", "C")
	here.Stop(follower)
	here.Restart(follower)
	check("after a restart")
}
