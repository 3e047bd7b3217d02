package replication

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
	"github.com/cofferhq/coffer/storage"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

type testNode struct {
	t     *testing.T
	dir   string
	addr  string
	store *storage.Store
	node  *Node
}

func startTestNode(t *testing.T, dir, addr string) *testNode {
	t.Helper()
	store, err := storage.Open(filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	ca, err := NewCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tlsMat, _, _, err := ca.IssueNode("n1", []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	n, err := Start(Config{
		NodeID: "n1", Dir: filepath.Join(dir, "raft"), BindAddr: addr, Bootstrap: true, TLS: tlsMat,
		HeartbeatTimeout: 200 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond,
		LeaderLeaseTimeout: 100 * time.Millisecond, SnapshotThreshold: 1 << 20, SnapshotInterval: time.Hour,
		TrailingLogs: 16,
	}, store)
	if err != nil {
		_ = store.Close()
		t.Fatal(err)
	}
	tn := &testNode{t: t, dir: dir, addr: addr, store: store, node: n}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n.WaitLeader(ctx); err != nil {
		tn.stop()
		t.Fatal(err)
	}
	// The single voter is the leader once elected; wait until it knows.
	pollUntil(t, 30*time.Second, "the single voter to lead", n.IsLeader)
	return tn
}

func (tn *testNode) stop() {
	if tn.node != nil {
		if err := tn.node.Shutdown(); err != nil {
			tn.t.Errorf("shutdown: %v", err)
		}
		tn.node = nil
	}
	if tn.store != nil {
		_ = tn.store.Close()
		tn.store = nil
	}
}

func createCmd(i int) *raftv1.Command {
	name := fmt.Sprintf("s/%03d", i)
	return &raftv1.Command{
		Header: &raftv1.Header{Time: timestamppb.New(time.Unix(1_800_000_000, 0))},
		Op: &raftv1.Command_CreateSecret{CreateSecret: &raftv1.CreateSecret{
			Name: name, Arn: storage.SecretARN("aws", "us-east-1", "123456789012", name, "AbCdEf"),
		}},
	}
}

func TestApplyRestartAndSnapshotCatchUp(t *testing.T) {
	dir, addr := t.TempDir(), freeAddr(t)
	tn := startTestNode(t, dir, addr)
	t.Cleanup(tn.stop)
	ctx := context.Background()

	for i := range 20 {
		res, err := tn.node.Apply(ctx, createCmd(i))
		if err != nil || res.Err != nil || res.Name != fmt.Sprintf("s/%03d", i) {
			t.Fatalf("apply %d: %v %+v", i, err, res)
		}
	}
	// A domain failure comes back in the result, not as an error.
	res, err := tn.node.Apply(ctx, createCmd(3))
	if err != nil || res.Err == nil {
		t.Fatalf("duplicate create: err=%v result=%+v", err, res)
	}
	applied := tn.store.AppliedIndex()
	if err := tn.node.Snapshot(); err != nil {
		t.Fatal(err)
	}
	for i := 20; i < 30; i++ {
		if res, err := tn.node.Apply(ctx, createCmd(i)); err != nil || res.Err != nil {
			t.Fatalf("apply %d: %v %+v", i, err, res)
		}
	}
	tn.stop()

	// Restart: the state file already has everything; nothing is lost or
	// applied twice, and the node serves at once.
	tn = startTestNode(t, dir, addr)
	if got := countSecrets(t, tn.store); got != 30 {
		t.Fatalf("after restart: %d secrets, want 30", got)
	}
	if tn.store.AppliedIndex() < applied {
		t.Fatalf("applied index went back: %d < %d", tn.store.AppliedIndex(), applied)
	}
	tn.stop()

	// Lose the state file: the node restores the newest snapshot, then Raft
	// replays the log after it.
	if err := os.Remove(filepath.Join(dir, "state.db")); err != nil {
		t.Fatal(err)
	}
	tn = startTestNode(t, dir, addr)
	pollUntil(t, 30*time.Second, "the log after the snapshot to be replayed", func() bool { return countSecrets(t, tn.store) == 30 })
	if got := countSecrets(t, tn.store); got != 30 {
		t.Fatalf("after losing state.db: %d secrets, want 30", got)
	}
	tn.stop()
}

func countSecrets(t *testing.T, s *storage.Store) int {
	t.Helper()
	n := 0
	if err := s.Secrets(func(*storagev1.Secret) bool { n++; return true }); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestConfigValidate(t *testing.T) {
	good := Config{NodeID: "n", Dir: "/tmp/x"}
	if err := good.Validate(); err != nil {
		t.Fatalf("defaults should validate: %v", err)
	}
	bad := []Config{
		{Dir: "/tmp/x"},
		{NodeID: "n"},
		{NodeID: "n", Dir: "d", BindAddr: "nonsense"},
		{NodeID: "n", Dir: "d", BindAddr: "0.0.0.0:7401"},
		{NodeID: "n", Dir: "d", HeartbeatTimeout: time.Second, LeaderLeaseTimeout: 2 * time.Second},
		{NodeID: "n", Dir: "d", MaxAppendEntries: 5000},
		{NodeID: "n", Dir: "d", Bootstrap: true, BootstrapExpect: 3, Gossip: MembershipConfig{BindAddr: "127.0.0.1:0"}},
		{NodeID: "n", Dir: "d", BootstrapExpect: 3},
		{NodeID: "n", Dir: "d", BootstrapExpect: -1},
		{NodeID: "n", Dir: "d", ConsistencyCheckInterval: -1},
	}
	for i, c := range bad {
		if err := c.Validate(); err == nil {
			t.Errorf("case %d: %+v validated", i, c)
		}
	}
}
