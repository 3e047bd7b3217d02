package main

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

func TestClusterHelp(t *testing.T) {
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"help"}, []string{"  cluster   Inspect and operate the region's Raft cluster", "  rotation  Manage HTTP rotation functions", "--consistency MODE", "--min-index N"}},
		{[]string{"cluster", "help"}, []string{"Usage: coffer cluster [global flags] <command>", "  status ", "  check ", "  members ", "  remove-peer ", "  transfer-leader ", "  snapshot "}},
		{[]string{"cluster", "snapshot", "help"}, []string{"  save ", "  restore "}},
		{[]string{"help", "cluster", "snapshot", "restore"}, []string{"Usage: coffer cluster snapshot restore FILE --yes", "  -y ", "  --yes ", "  --progress "}},
		{[]string{"secrets", "get", "-h"}, []string{"  --show-index ", "--consistency, --min-index"}},
		{[]string{"secrets", "put", "-h"}, []string{"  --show-index "}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			r := runCLI(t, "", tt.args...)
			mustSucceed(t, r)
			for _, w := range tt.want {
				if !strings.Contains(r.stdout, w) {
					t.Errorf("stdout lacks %q:\n%s", w, r.stdout)
				}
			}
		})
	}
}

func TestClusterUsageErrors(t *testing.T) {
	admin, addr := startFakeAdmin(t)
	snap := filepath.Join(t.TempDir(), "snap")
	if err := os.WriteFile(snap, []byte("snapshot"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want string // first line of stderr
	}{
		{"status with argument", []string{"cluster", "status", "n1"}, `coffer: unexpected argument "n1"`},
		{"remove-peer without id", []string{"cluster", "remove-peer"}, "coffer: missing NODE_ID"},
		{"remove-peer empty id", []string{"cluster", "remove-peer", ""}, "coffer: NODE_ID must not be empty"},
		{"transfer-leader empty id", []string{"cluster", "transfer-leader", ""}, "coffer: NODE_ID must not be empty; leave it out to let Raft choose"},
		{"transfer-leader two ids", []string{"cluster", "transfer-leader", "a", "b"}, `coffer: unexpected argument "b"`},
		{"save without file", []string{"cluster", "snapshot", "save"}, "coffer: missing FILE"},
		{"restore without --yes", []string{"cluster", "snapshot", "restore", snap}, "coffer: restore replaces the region's whole state, every secret on every node, with the snapshot's; give --yes to go ahead"},
		{"restore from stdin", []string{"cluster", "snapshot", "restore", "-", "--yes"}, "coffer: FILE must be a file, not stdin: the upload starts with the snapshot's size"},
		{"snapshot without verb", []string{"cluster", "snapshot"}, "coffer: missing command"},
		{"read flag on admin", []string{"cluster", "status", "--consistency", "stale"}, "coffer: --consistency applies only to reads (secrets get, describe, list, versions and policy get)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, "", append([]string{"--endpoint", addr}, tt.args...)...)
			if r.code != exitUsage {
				t.Errorf("exit %d; want %d (stderr %q)", r.code, exitUsage, r.stderr)
			}
			if first, _, _ := strings.Cut(r.stderr, "\n"); first != tt.want {
				t.Errorf("stderr starts %q; want %q", first, tt.want)
			}
		})
	}
	if calls := admin.received(); len(calls) != 0 {
		t.Errorf("server received %v; want no RPC for usage errors", calls)
	}
}

func TestClusterStatus(t *testing.T) {
	admin, addr := startFakeAdmin(t)
	admin.set(func(a *fakeAdmin) {
		a.status = &cofferv1.ClusterStatusResponse{
			Region: "eu-west-1", LeaderId: "n1", Term: 7, AnsweredBy: "n2", ClusterId: "5f0c",
			Servers: []*cofferv1.ServerStatus{
				{NodeId: "n1", RaftAddress: "10.0.0.1:7401", ApiAddress: "10.0.0.1:7400", Voter: true, Leader: true, State: "Leader", Term: 7, CommitIndex: 1200, AppliedIndex: 1200, LastLogIndex: 1201, Health: "healthy"},
				{NodeId: "n2", RaftAddress: "10.0.0.2:7401", ApiAddress: "10.0.0.2:7400", Voter: true, State: "Follower", Term: 7, CommitIndex: 1200, AppliedIndex: 150, LastLogIndex: 1200, Health: "lagging"},
				{NodeId: "n3", RaftAddress: "10.0.0.3:7401", State: "Unreachable", Health: "unreachable"},
				{NodeId: "n4", RaftAddress: "10.0.0.4:7401", ApiAddress: "10.0.0.4:7400", Voter: true, State: "Follower", Term: 7, CommitIndex: 1200, AppliedIndex: 1200, LastLogIndex: 1200, Health: "diverged", Diverged: true},
			},
		}
	})
	r := runCLI(t, "", "--endpoint", addr, "cluster", "status")
	mustSucceed(t, r)
	want := `region eu-west-1, cluster id 5f0c, leader n1, answered by n2
NODE  STATE        VOTER  LEADER  TERM  COMMIT  APPLIED  LAST LOG  HEALTH       DIVERGED  API ADDRESS    RAFT ADDRESS
n1    Leader       true   *       7     1200    1200     1201      healthy      false     10.0.0.1:7400  10.0.0.1:7401
n2    Follower     true   -       7     1200    150      1200      lagging      false     10.0.0.2:7400  10.0.0.2:7401
n3    Unreachable  false  -       -     -       -        -         unreachable  -         -              10.0.0.3:7401
n4    Follower     true   -       7     1200    1200     1200      diverged     true      10.0.0.4:7400  10.0.0.4:7401
`
	if r.stdout != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", r.stdout, want)
	}

	r = runCLI(t, "", "--endpoint", addr, "-o", "json", "cluster", "status")
	mustSucceed(t, r)
	for _, w := range []string{`"region": "eu-west-1"`, `"leaderId": "n1"`, `"answeredBy": "n2"`, `"term": "7"`, `"appliedIndex": "150"`, `"health": "unreachable"`} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("json lacks %s:\n%s", w, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "region eu-west-1") {
		t.Errorf("json output carries the table's header line:\n%s", r.stdout)
	}

	admin.set(func(a *fakeAdmin) { a.status = &cofferv1.ClusterStatusResponse{Region: "eu-west-1", AnsweredBy: "n2"} })
	r = runCLI(t, "", "--endpoint", addr, "cluster", "status")
	mustSucceed(t, r)
	if first, _, _ := strings.Cut(r.stdout, "\n"); first != "region eu-west-1, cluster id (none), leader (none), answered by n2" {
		t.Errorf("without a leader the header is %q", first)
	}
}

func TestClusterMembers(t *testing.T) {
	admin, addr := startFakeAdmin(t)
	admin.set(func(a *fakeAdmin) {
		a.members = &cofferv1.ListMembersResponse{Members: []*cofferv1.Member{
			{NodeId: "n1", GossipAddress: "10.0.0.1:7946", RaftAddress: "10.0.0.1:7401", ApiAddress: "10.0.0.1:7400", Status: "alive", Region: "eu-west-1"},
			{NodeId: "n4", GossipAddress: "10.0.0.4:7946", Status: "suspect", Region: "eu-west-1"},
		}}
	})
	r := runCLI(t, "", "--endpoint", addr, "cluster", "members")
	mustSucceed(t, r)
	want := `NODE  STATUS   REGION     GOSSIP         RAFT           API
n1    alive    eu-west-1  10.0.0.1:7946  10.0.0.1:7401  10.0.0.1:7400
n4    suspect  eu-west-1  10.0.0.4:7946  -              -
`
	if r.stdout != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", r.stdout, want)
	}

	r = runCLI(t, "", "--endpoint", addr, "-o", "json", "cluster", "members")
	mustSucceed(t, r)
	wantJSON := `{
  "members": [
    {
      "nodeId": "n1",
      "gossipAddress": "10.0.0.1:7946",
      "raftAddress": "10.0.0.1:7401",
      "apiAddress": "10.0.0.1:7400",
      "status": "alive",
      "region": "eu-west-1"
    },
    {
      "nodeId": "n4",
      "gossipAddress": "10.0.0.4:7946",
      "status": "suspect",
      "region": "eu-west-1"
    }
  ]
}
`
	if r.stdout != wantJSON {
		t.Errorf("json stdout:\n%s\nwant:\n%s", r.stdout, wantJSON)
	}
}

func TestRemovePeer(t *testing.T) {
	admin, addr := startFakeAdmin(t)
	r := runCLI(t, "", "--endpoint", addr, "cluster", "remove-peer", "n3")
	mustSucceed(t, r)
	if r.stdout != "removed n3\n" {
		t.Errorf("stdout %q; want %q", r.stdout, "removed n3\n")
	}
	r = runCLI(t, "", "--endpoint", addr, "-o", "json", "cluster", "remove-peer", "n4")
	mustSucceed(t, r)
	if r.stdout != "{}\n" {
		t.Errorf("json stdout %q; want {}", r.stdout)
	}
	calls := admin.received()
	if len(calls) != 2 {
		t.Fatalf("server received %v; want 2 RemovePeer", calls)
	}
	wantProto(t, calls[0].req, &cofferv1.RemovePeerRequest{NodeId: "n3"})
	wantProto(t, calls[1].req, &cofferv1.RemovePeerRequest{NodeId: "n4"})

	admin.set(func(a *fakeAdmin) {
		a.err = statusWithReason(codes.NotFound, "ResourceNotFoundException", "no server n9 in the configuration")
	})
	r = runCLI(t, "", "--endpoint", addr, "cluster", "remove-peer", "n9")
	if r.code != exitNotFound || r.stderr != "coffer: ResourceNotFoundException: no server n9 in the configuration\n" || r.stdout != "" {
		t.Errorf("exit %d, stderr %q, stdout %q; want 3 and the error", r.code, r.stderr, r.stdout)
	}
}

func TestTransferLeader(t *testing.T) {
	admin, addr := startFakeAdmin(t)
	admin.set(func(a *fakeAdmin) { a.newLeader = "n2" })
	r := runCLI(t, "", "--endpoint", addr, "cluster", "transfer-leader", "n2")
	mustSucceed(t, r)
	if r.stdout != "leader is now n2\n" {
		t.Errorf("stdout %q; want %q", r.stdout, "leader is now n2\n")
	}
	r = runCLI(t, "", "--endpoint", addr, "-o", "json", "cluster", "transfer-leader")
	mustSucceed(t, r)
	if want := "{\n  \"leaderId\": \"n2\"\n}\n"; r.stdout != want {
		t.Errorf("json stdout %q; want %q", r.stdout, want)
	}
	calls := admin.received()
	if len(calls) != 2 {
		t.Fatalf("server received %v; want 2 TransferLeadership", calls)
	}
	wantProto(t, calls[0].req, &cofferv1.TransferLeadershipRequest{NodeId: "n2"})
	wantProto(t, calls[1].req, &cofferv1.TransferLeadershipRequest{}) // Raft chooses

	admin.set(func(a *fakeAdmin) {
		a.err = statusWithReason(codes.FailedPrecondition, "InvalidRequestException", "n3 is not a voter")
	})
	r = runCLI(t, "", "--endpoint", addr, "cluster", "transfer-leader", "n3")
	if r.code != exitRejected || r.stderr != "coffer: InvalidRequestException: n3 is not a voter\n" {
		t.Errorf("exit %d, stderr %q; want 5 and the error", r.code, r.stderr)
	}
}

// adminCall is one request the fake admin server received.
type adminCall struct {
	method string
	req    proto.Message
}

func (c adminCall) String() string { return c.method }

// fakeAdmin is an AdminServiceServer that answers from its fields, which
// tests change with set, and records what it receives.
type fakeAdmin struct {
	cofferv1.UnimplementedAdminServiceServer

	mu    sync.Mutex
	calls []adminCall
	// uploaded holds every RestoreSnapshot upload, message by message.
	uploaded [][]*cofferv1.RestoreSnapshotRequest

	err           error // when set, every method fails with it
	status        *cofferv1.ClusterStatusResponse
	check         *cofferv1.CheckConsistencyResponse
	members       *cofferv1.ListMembersResponse
	newLeader     string
	snapshot      []byte // streamed by SaveSnapshot in 100,000-byte chunks
	snapshotIndex uint64
	announce      int64 // the size SaveSnapshot announces; default len(snapshot)
	skipInfo      bool  // send chunks without the info first
	stall         bool  // send the info, then nothing until the client gives up
	saveErr       error // SaveSnapshot's status after the chunks
	restoreIndex  uint64
}

var _ cofferv1.AdminServiceServer = (*fakeAdmin)(nil)

func startFakeAdmin(t *testing.T) (*fakeAdmin, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	a := &fakeAdmin{}
	cofferv1.RegisterAdminServiceServer(srv, a)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return a, lis.Addr().String()
}

// set changes the fake's answers under its lock.
func (a *fakeAdmin) set(change func(*fakeAdmin)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	change(a)
}

// record notes a request and returns a copy of the fake's answers.
func (a *fakeAdmin) record(method string, req proto.Message) fakeAdmin {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, adminCall{method, proto.Clone(req)})
	return fakeAdmin{
		err: a.err, status: a.status, check: a.check, members: a.members, newLeader: a.newLeader,
		snapshot: a.snapshot, snapshotIndex: a.snapshotIndex, announce: a.announce,
		skipInfo: a.skipInfo, stall: a.stall, saveErr: a.saveErr, restoreIndex: a.restoreIndex,
	}
}

func (a *fakeAdmin) received() []adminCall {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]adminCall(nil), a.calls...)
}

func (a *fakeAdmin) uploads() [][]*cofferv1.RestoreSnapshotRequest {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([][]*cofferv1.RestoreSnapshotRequest(nil), a.uploaded...)
}

func (a *fakeAdmin) ClusterStatus(_ context.Context, req *cofferv1.ClusterStatusRequest) (*cofferv1.ClusterStatusResponse, error) {
	ans := a.record("ClusterStatus", req)
	return ans.status, ans.err
}

func (a *fakeAdmin) CheckConsistency(_ context.Context, req *cofferv1.CheckConsistencyRequest) (*cofferv1.CheckConsistencyResponse, error) {
	ans := a.record("CheckConsistency", req)
	return ans.check, ans.err
}

func (a *fakeAdmin) ListMembers(_ context.Context, req *cofferv1.ListMembersRequest) (*cofferv1.ListMembersResponse, error) {
	ans := a.record("ListMembers", req)
	return ans.members, ans.err
}

func (a *fakeAdmin) RemovePeer(_ context.Context, req *cofferv1.RemovePeerRequest) (*cofferv1.RemovePeerResponse, error) {
	ans := a.record("RemovePeer", req)
	if ans.err != nil {
		return nil, ans.err
	}
	return &cofferv1.RemovePeerResponse{}, nil
}

func (a *fakeAdmin) TransferLeadership(_ context.Context, req *cofferv1.TransferLeadershipRequest) (*cofferv1.TransferLeadershipResponse, error) {
	ans := a.record("TransferLeadership", req)
	if ans.err != nil {
		return nil, ans.err
	}
	return &cofferv1.TransferLeadershipResponse{LeaderId: ans.newLeader}, nil
}

func (a *fakeAdmin) SaveSnapshot(req *cofferv1.SaveSnapshotRequest, stream grpc.ServerStreamingServer[cofferv1.SaveSnapshotResponse]) error {
	ans := a.record("SaveSnapshot", req)
	if ans.err != nil {
		return ans.err
	}
	size := ans.announce
	if size == 0 {
		size = int64(len(ans.snapshot))
	}
	if !ans.skipInfo {
		info := &cofferv1.SnapshotInfo{Size: size, Index: ans.snapshotIndex}
		if err := stream.Send(&cofferv1.SaveSnapshotResponse{Part: &cofferv1.SaveSnapshotResponse_Info{Info: info}}); err != nil {
			return err
		}
	}
	if ans.stall {
		<-stream.Context().Done()
		return stream.Context().Err()
	}
	for rest := ans.snapshot; len(rest) > 0; {
		n := min(len(rest), 100_000)
		if err := stream.Send(&cofferv1.SaveSnapshotResponse{Part: &cofferv1.SaveSnapshotResponse_Chunk{Chunk: rest[:n]}}); err != nil {
			return err
		}
		rest = rest[n:]
	}
	return ans.saveErr
}

func (a *fakeAdmin) RestoreSnapshot(stream grpc.ClientStreamingServer[cofferv1.RestoreSnapshotRequest, cofferv1.RestoreSnapshotResponse]) error {
	ans := a.record("RestoreSnapshot", &cofferv1.RestoreSnapshotRequest{})
	if ans.err != nil {
		return ans.err
	}
	var msgs []*cofferv1.RestoreSnapshotRequest
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		msgs = append(msgs, m)
	}
	a.mu.Lock()
	a.uploaded = append(a.uploaded, msgs)
	a.mu.Unlock()
	return stream.SendAndClose(&cofferv1.RestoreSnapshotResponse{Index: ans.restoreIndex})
}
