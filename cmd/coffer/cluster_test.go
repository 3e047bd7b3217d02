package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server"
)

func TestClusterHelp(t *testing.T) {
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"help"}, []string{"  cluster   Inspect and operate the region's Raft cluster", "  rotation  Manage HTTP rotation functions", "--consistency MODE", "--min-index N"}},
		{[]string{"cluster", "help"}, []string{"Usage: coffer cluster [global flags] <command>", "  status ", "  members ", "  remove-peer ", "  transfer-leader ", "  snapshot "}},
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
			Region: "eu-west-1", LeaderId: "n1", Term: 7, AnsweredBy: "n2",
			Servers: []*cofferv1.ServerStatus{
				{NodeId: "n1", RaftAddress: "10.0.0.1:7401", ApiAddress: "10.0.0.1:7400", Voter: true, Leader: true, State: "Leader", Term: 7, CommitIndex: 1200, AppliedIndex: 1200, LastLogIndex: 1201, Health: "healthy"},
				{NodeId: "n2", RaftAddress: "10.0.0.2:7401", ApiAddress: "10.0.0.2:7400", Voter: true, State: "Follower", Term: 7, CommitIndex: 1200, AppliedIndex: 150, LastLogIndex: 1200, Health: "lagging"},
				{NodeId: "n3", RaftAddress: "10.0.0.3:7401", State: "Unreachable", Health: "unreachable"},
			},
		}
	})
	r := runCLI(t, "", "--endpoint", addr, "cluster", "status")
	mustSucceed(t, r)
	want := `region eu-west-1, leader n1, answered by n2
NODE  STATE        VOTER  LEADER  TERM  COMMIT  APPLIED  LAST LOG  HEALTH       API ADDRESS    RAFT ADDRESS
n1    Leader       true   *       7     1200    1200     1201      healthy      10.0.0.1:7400  10.0.0.1:7401
n2    Follower     true   -       7     1200    150      1200      lagging      10.0.0.2:7400  10.0.0.2:7401
n3    Unreachable  false  -       -     -       -        -         unreachable  -              10.0.0.3:7401
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
	if first, _, _ := strings.Cut(r.stdout, "\n"); first != "region eu-west-1, leader (none), answered by n2" {
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

// randomBytes returns n random bytes, so that a reordered or dropped chunk
// cannot go unnoticed.
func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSnapshotSave(t *testing.T) {
	admin, addr := startFakeAdmin(t)
	snap := randomBytes(t, 1<<20+12345)
	admin.set(func(a *fakeAdmin) { a.snapshot, a.snapshotIndex = snap, 4242 })
	file := filepath.Join(t.TempDir(), "region.snap")

	r := runCLI(t, "", "--endpoint", addr, "cluster", "snapshot", "save", file)
	mustSucceed(t, r) // stderr is not a terminal: no progress
	if want := "saved snapshot of index 4242 (1060921 bytes) to " + file + "\n"; r.stdout != want {
		t.Errorf("stdout %q; want %q", r.stdout, want)
	}
	got, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, snap) {
		t.Errorf("file holds %d bytes that differ from the %d streamed", len(got), len(snap))
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v (%v); want 0600: a snapshot holds every secret", fi.Mode(), err)
	}
	if _, err := os.Stat(file + ".part"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s.part is left behind (%v)", file, err)
	}

	r = runCLI(t, "", "--endpoint", addr, "-o", "json", "cluster", "snapshot", "save", file)
	mustSucceed(t, r)
	if !strings.Contains(r.stdout, `"size": "1060921"`) || !strings.Contains(r.stdout, `"index": "4242"`) {
		t.Errorf("json stdout %q; want the snapshot's info", r.stdout)
	}
}

func TestSnapshotSaveToStdout(t *testing.T) {
	admin, addr := startFakeAdmin(t)
	snap := randomBytes(t, 600_000)
	admin.set(func(a *fakeAdmin) { a.snapshot, a.snapshotIndex = snap, 9 })
	r := runCLI(t, "", "--endpoint", addr, "-o", "json", "cluster", "snapshot", "save", "-")
	mustSucceed(t, r)
	if r.stdout != string(snap) {
		t.Errorf("stdout holds %d bytes that differ from the %d streamed", len(r.stdout), len(snap))
	}

	r = runCLI(t, "", "--endpoint", addr, "cluster", "snapshot", "save", "-", "--progress")
	if r.code != 0 || r.stdout != string(snap) {
		t.Fatalf("exit %d, stderr %q; want success and the snapshot on stdout", r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, "(100%)\n") || !strings.HasSuffix(r.stderr, "saved snapshot of index 9 (600000 bytes) to stdout\n") {
		t.Errorf("stderr %q; want progress and the summary", r.stderr)
	}
}

func TestSnapshotSaveProgress(t *testing.T) {
	admin, addr := startFakeAdmin(t)
	admin.set(func(a *fakeAdmin) { a.snapshot, a.snapshotIndex = randomBytes(t, 3<<20), 77 })
	file := filepath.Join(t.TempDir(), "region.snap")
	r := runCLI(t, "", "--endpoint", addr, "cluster", "snapshot", "save", file, "--progress")
	if r.code != 0 {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	for _, w := range []string{"\rsaving snapshot: 0 B / 3.0 MiB (0%)", "\rsaving snapshot: 3.0 MiB / 3.0 MiB (100%)"} {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("stderr lacks %q:\n%q", w, r.stderr)
		}
	}
	// Chunks of 100,000 bytes take 3 MiB through 31 other percentages.
	if n := strings.Count(r.stderr, "\r"); n < 10 {
		t.Errorf("progress drawn %d times; want it updated as chunks arrive:\n%q", n, r.stderr)
	}
	if !strings.HasSuffix(r.stderr, "(100%)\n") {
		t.Errorf("stderr %q; want the progress line finished with a newline", r.stderr)
	}
	if want := "saved snapshot of index 77 (3145728 bytes) to " + file + "\n"; r.stdout != want {
		t.Errorf("stdout %q; want %q", r.stdout, want)
	}
}

// TestSnapshotSaveFailureLeavesNoFile checks that a download that fails for
// any reason leaves neither FILE nor FILE.part, and keeps a FILE from an
// earlier save intact.
func TestSnapshotSaveFailureLeavesNoFile(t *testing.T) {
	snap := randomBytes(t, 1<<20)
	tests := []struct {
		name       string
		configure  func(a *fakeAdmin)
		args       []string
		wantCode   int
		wantStderr string
	}{
		{"short stream", func(a *fakeAdmin) { a.snapshot, a.announce = snap[:700_000], int64(len(snap)) }, nil,
			exitFailure, "coffer: the snapshot stream ended after 700000 of the 1048576 bytes announced\n"},
		{"long stream", func(a *fakeAdmin) { a.snapshot, a.announce = snap, 500_000 }, nil,
			exitFailure, "coffer: the server sent more than the 500000 bytes it announced\n"},
		{"no info", func(a *fakeAdmin) { a.snapshot, a.skipInfo = snap, true }, nil,
			exitFailure, "coffer: the server sent snapshot data before the snapshot's size and index\n"},
		{"error mid-stream", func(a *fakeAdmin) {
			a.snapshot, a.saveErr = snap[:300_000], statusWithReason(codes.Unavailable, "ServiceUnavailable", "leader lost")
		}, nil, exitUnreachable, "coffer: ServiceUnavailable: leader lost\n"},
		{"stalled", func(a *fakeAdmin) { a.snapshot, a.stall = snap, true }, []string{"--timeout", "300ms"},
			exitUnreachable, "coffer: DeadlineExceeded: no progress for 300ms (see --timeout)\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			admin, addr := startFakeAdmin(t)
			admin.set(func(a *fakeAdmin) { a.snapshotIndex = 5; tt.configure(a) })
			file := filepath.Join(t.TempDir(), "region.snap")
			r := runCLI(t, "", append([]string{"--endpoint", addr, "cluster", "snapshot", "save", file}, tt.args...)...)
			if r.code != tt.wantCode || r.stderr != tt.wantStderr || r.stdout != "" {
				t.Errorf("exit %d, stderr %q, stdout %q; want exit %d, stderr %q", r.code, r.stderr, r.stdout, tt.wantCode, tt.wantStderr)
			}
			for _, name := range []string{file, file + ".part"} {
				if _, err := os.Stat(name); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s exists after a failed save (%v)", name, err)
				}
			}

			// A good snapshot saved earlier survives a failed save.
			if err := os.WriteFile(file, []byte("earlier snapshot"), 0o600); err != nil {
				t.Fatal(err)
			}
			if r := runCLI(t, "", append([]string{"--endpoint", addr, "cluster", "snapshot", "save", file}, tt.args...)...); r.code != tt.wantCode {
				t.Errorf("second save: exit %d; want %d", r.code, tt.wantCode)
			}
			if b, err := os.ReadFile(file); err != nil || string(b) != "earlier snapshot" {
				t.Errorf("earlier snapshot is now %d other bytes (%v)", len(b), err)
			}
		})
	}
}

func TestSnapshotSaveUnwritablePathMakesNoRPC(t *testing.T) {
	admin, addr := startFakeAdmin(t)
	r := runCLI(t, "", "--endpoint", addr, "cluster", "snapshot", "save", filepath.Join(t.TempDir(), "no", "such", "dir", "s.snap"))
	if r.code != exitFailure || !strings.HasPrefix(r.stderr, "coffer: open ") {
		t.Errorf("exit %d, stderr %q; want 1 and the open error", r.code, r.stderr)
	}
	if calls := admin.received(); len(calls) != 0 {
		t.Errorf("server received %v; want no RPC", calls)
	}
}

func TestSnapshotRestore(t *testing.T) {
	admin, addr := startFakeAdmin(t)
	admin.set(func(a *fakeAdmin) { a.restoreIndex = 9001 })
	snap := randomBytes(t, 1<<20+777) // four whole chunks and a short one
	file := filepath.Join(t.TempDir(), "region.snap")
	if err := os.WriteFile(file, snap, 0o600); err != nil {
		t.Fatal(err)
	}

	r := runCLI(t, "", "--endpoint", addr, "cluster", "snapshot", "restore", file, "--yes")
	mustSucceed(t, r)
	if want := "restored snapshot; region state replaced at index 9001\n"; r.stdout != want {
		t.Errorf("stdout %q; want %q", r.stdout, want)
	}
	msgs := admin.uploads()
	if len(msgs) != 1 {
		t.Fatalf("server saw %d uploads; want 1", len(msgs))
	}
	upload := msgs[0]
	if len(upload) == 0 {
		t.Fatal("upload was empty")
	}
	if size, ok := upload[0].GetPart().(*cofferv1.RestoreSnapshotRequest_Size); !ok || size.Size != int64(len(snap)) {
		t.Fatalf("first message %v; want the size %d", upload[0], len(snap))
	}
	var got []byte
	for i, m := range upload[1:] {
		chunk, ok := m.GetPart().(*cofferv1.RestoreSnapshotRequest_Chunk)
		if !ok {
			t.Fatalf("message %d is %v; want a chunk", i+1, m)
		}
		if len(chunk.Chunk) > snapshotChunk {
			t.Errorf("chunk %d holds %d bytes; want at most %d", i, len(chunk.Chunk), snapshotChunk)
		}
		got = append(got, chunk.Chunk...)
	}
	if len(upload) != 1+5 {
		t.Errorf("upload had %d messages; want the size and 5 chunks", len(upload))
	}
	if !bytes.Equal(got, snap) {
		t.Errorf("server received %d bytes that differ from the file's %d", len(got), len(snap))
	}

	r = runCLI(t, "", "--endpoint", addr, "-o", "json", "cluster", "snapshot", "restore", "-y", file, "--progress")
	if r.code != 0 {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	if want := "{\n  \"index\": \"9001\"\n}\n"; r.stdout != want {
		t.Errorf("json stdout %q; want %q", r.stdout, want)
	}
	for _, w := range []string{"\rrestoring snapshot: 0 B / 1.0 MiB (0%)", "\rrestoring snapshot: 1.0 MiB / 1.0 MiB (100%)"} {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("stderr lacks %q:\n%q", w, r.stderr)
		}
	}
}

func TestSnapshotRestoreErrors(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.snap")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	admin, addr := startFakeAdmin(t)
	for _, tt := range []struct {
		file       string
		wantStderr string
	}{
		{filepath.Join(dir, "missing.snap"), "coffer: open " + filepath.Join(dir, "missing.snap") + ": no such file or directory\n"},
		{empty, "coffer: " + empty + " is empty, not a snapshot\n"},
		{dir, "coffer: " + dir + " is not a regular file\n"},
	} {
		r := runCLI(t, "", "--endpoint", addr, "cluster", "snapshot", "restore", "--yes", tt.file)
		if r.code != exitFailure || r.stderr != tt.wantStderr {
			t.Errorf("%s: exit %d, stderr %q; want 1 and %q", tt.file, r.code, r.stderr, tt.wantStderr)
		}
	}
	if n := len(admin.uploads()); n != 0 {
		t.Errorf("server saw %d uploads; want none", n)
	}

	file := filepath.Join(dir, "region.snap")
	if err := os.WriteFile(file, randomBytes(t, 1000), 0o600); err != nil {
		t.Fatal(err)
	}
	admin.set(func(a *fakeAdmin) {
		a.err = statusWithReason(codes.InvalidArgument, "InvalidParameterException", "not a Coffer snapshot")
	})
	r := runCLI(t, "", "--endpoint", addr, "cluster", "snapshot", "restore", "--yes", file)
	if r.code != exitRejected || r.stderr != "coffer: InvalidParameterException: not a Coffer snapshot\n" || r.stdout != "" {
		t.Errorf("exit %d, stderr %q, stdout %q; want 5 and the error", r.code, r.stderr, r.stdout)
	}
}

func TestFormatSize(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 12_897_484: "12.3 MiB", 40 << 20: "40.0 MiB", 3 << 40: "3.0 TiB"} {
		if got := formatSize(n); got != want {
			t.Errorf("formatSize(%d) = %q; want %q", n, got, want)
		}
	}
}

// TestMetadataNamesMatchServer keeps the client's copies of the read
// consistency header names in step with the server's.
func TestMetadataNamesMatchServer(t *testing.T) {
	if consistencyHeader != server.ConsistencyHeader || minIndexHeader != server.MinIndexHeader || indexHeader != server.IndexHeader {
		t.Errorf("client headers %q, %q, %q; server's %q, %q, %q", consistencyHeader, minIndexHeader, indexHeader,
			server.ConsistencyHeader, server.MinIndexHeader, server.IndexHeader)
	}
	if _, err := server.ParseConsistency(consistencyStale, "12"); err != nil {
		t.Errorf("server refuses --consistency %s: %v", consistencyStale, err)
	}
	if _, err := server.ParseConsistency(consistencyLinearizable, ""); err != nil {
		t.Errorf("server refuses --consistency %s: %v", consistencyLinearizable, err)
	}
}

// mdLog records the request metadata a fake server received.
type mdLog struct {
	mu  sync.Mutex
	mds []metadata.MD
}

func (l *mdLog) add(md metadata.MD) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.mds = append(l.mds, md.Copy())
}

func (l *mdLog) all() []metadata.MD {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]metadata.MD(nil), l.mds...)
}

// answerAt makes method answer resp, with index (when not 0) in the
// x-coffer-index header, and record the metadata it was sent in seen.
func answerAt(f *fakeServer, method string, index uint64, resp proto.Message, seen *mdLog) {
	f.on(method, func(ctx context.Context, _ proto.Message) (proto.Message, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		seen.add(md)
		if index > 0 {
			if err := grpc.SetHeader(ctx, metadata.Pairs(server.IndexHeader, strconv.FormatUint(index, 10))); err != nil {
				return nil, err
			}
		}
		return resp, nil
	})
}

func readMetadata(md metadata.MD) (consistency, minIndex []string) {
	return md.Get(server.ConsistencyHeader), md.Get(server.MinIndexHeader)
}

func TestConsistencyFlagsSentAsMetadata(t *testing.T) {
	tests := []struct {
		name            string
		env             string
		before, after   []string // flags before and after the command
		wantConsistency []string
		wantMinIndex    []string
	}{
		{"none", "", nil, nil, nil, nil},
		{"stale", "", nil, []string{"--consistency", "stale"}, []string{"stale"}, nil},
		{"before the command", "", []string{"--consistency=linearizable", "--min-index=8"}, nil, []string{"linearizable"}, []string{"8"}},
		{"min-index", "", nil, []string{"--min-index", "1234"}, nil, []string{"1234"}},
		{"min-index 0 sends nothing", "", nil, []string{"--min-index", "0"}, nil, nil},
		{"both", "", nil, []string{"--consistency", "stale", "--min-index", "99"}, []string{"stale"}, []string{"99"}},
		{"environment", "stale", nil, nil, []string{"stale"}, nil},
		{"flag beats environment", "stale", nil, []string{"--consistency", "linearizable"}, []string{"linearizable"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("COFFER_CONSISTENCY", tt.env)
			f, addr := startFake(t)
			var seen mdLog
			answerAt(f, "GetSecretValue", 0, &cofferv1.GetSecretValueResponse{Name: "db", SecretString: proto.String("v")}, &seen)
			answerAt(f, "DescribeSecret", 0, &cofferv1.DescribeSecretResponse{Name: "db"}, &seen)
			answerAt(f, "ListSecrets", 0, &cofferv1.ListSecretsResponse{}, &seen)
			answerAt(f, "ListSecretVersionIds", 0, &cofferv1.ListSecretVersionIdsResponse{}, &seen)
			answerAt(f, "GetResourcePolicy", 0, &cofferv1.GetResourcePolicyResponse{}, &seen)
			reads := [][]string{
				{"secrets", "get", "db"},
				{"secrets", "describe", "db"},
				{"secrets", "list"},
				{"secrets", "versions", "db"},
				{"secrets", "policy", "get", "db"},
			}
			for _, read := range reads {
				args := append([]string{"--endpoint", addr}, tt.before...)
				args = append(append(args, read...), tt.after...)
				mustSucceed(t, runCLI(t, "", args...))
			}
			got := seen.all()
			if len(got) != len(reads) {
				t.Fatalf("server saw %d reads; want %d", len(got), len(reads))
			}
			for i, md := range got {
				c, m := readMetadata(md)
				if strings.Join(c, ",") != strings.Join(tt.wantConsistency, ",") || strings.Join(m, ",") != strings.Join(tt.wantMinIndex, ",") {
					t.Errorf("%v sent %s=%q %s=%q; want %q and %q", reads[i], server.ConsistencyHeader, c, server.MinIndexHeader, m, tt.wantConsistency, tt.wantMinIndex)
				}
			}
		})
	}
}

func TestWritesSendNoReadMetadata(t *testing.T) {
	t.Setenv("COFFER_CONSISTENCY", "stale") // a default for reads; writes ignore it
	f, addr := startFake(t)
	var seen mdLog
	answerAt(f, "PutSecretValue", 0, &cofferv1.PutSecretValueResponse{Name: "db"}, &seen)
	mustSucceed(t, runCLI(t, "", "--endpoint", addr, "secrets", "put", "db", "--value", "v"))
	got := seen.all()
	if len(got) != 1 {
		t.Fatalf("server saw %d writes; want 1", len(got))
	}
	if c, m := readMetadata(got[0]); c != nil || m != nil {
		t.Errorf("write sent %q, %q; want no read metadata", c, m)
	}
}

func TestReadFlagUsageErrors(t *testing.T) {
	f, addr := startFake(t)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"bad mode", []string{"secrets", "get", "x", "--consistency", "eventual"}, `coffer: invalid value "eventual" for flag -consistency: want linearizable or stale`},
		{"bad index", []string{"secrets", "get", "x", "--min-index", "-1"}, `coffer: invalid value "-1" for flag -min-index: want a log index, a whole number`},
		{"min-index on a write", []string{"secrets", "put", "x", "--value", "v", "--min-index", "5"}, "coffer: --min-index applies only to reads (secrets get, describe, list, versions and policy get)"},
		{"consistency before a write", []string{"--consistency", "stale", "secrets", "delete", "x"}, "coffer: --consistency applies only to reads (secrets get, describe, list, versions and policy get)"},
		{"show-index on random-password", []string{"secrets", "random-password", "--show-index"}, "coffer: flag provided but not defined: -show-index"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, "", append([]string{"--endpoint", addr}, tt.args...)...)
			if first, _, _ := strings.Cut(r.stderr, "\n"); r.code != exitUsage || first != tt.want {
				t.Errorf("exit %d, stderr starts %q; want 2 and %q", r.code, first, tt.want)
			}
		})
	}
	t.Run("environment", func(t *testing.T) {
		t.Setenv("COFFER_CONSISTENCY", "eventual")
		r := runCLI(t, "", "--endpoint", addr, "secrets", "get", "x")
		if want := "coffer: COFFER_CONSISTENCY=\"eventual\": want linearizable or stale\n"; r.code != exitUsage || r.stderr != want {
			t.Errorf("exit %d, stderr %q; want 2 and %q", r.code, r.stderr, want)
		}
	})
	if calls := f.received(); len(calls) != 0 {
		t.Errorf("server received %v; want no RPC for usage errors", methods(calls))
	}
}

func TestShowIndex(t *testing.T) {
	f, addr := startFake(t)
	var seen mdLog
	getResp := &cofferv1.GetSecretValueResponse{Arn: "arn:1", Name: "db", SecretString: proto.String("v")}
	answerAt(f, "GetSecretValue", 42, getResp, &seen)

	r := runCLI(t, "", "--endpoint", addr, "secrets", "get", "db", "--show-index")
	if r.code != 0 || r.stderr != "index 42\n" {
		t.Errorf("exit %d, stderr %q; want index 42 on stderr", r.code, r.stderr)
	}
	if want := "ARN           arn:1\nName          db\nSecretString  v\n"; r.stdout != want {
		t.Errorf("stdout %q; want the table unchanged %q", r.stdout, want)
	}
	r = runCLI(t, "", "--endpoint", addr, "-o", "json", "secrets", "get", "db", "--show-index")
	if want := "{\n  \"arn\": \"arn:1\",\n  \"name\": \"db\",\n  \"secretString\": \"v\"\n}\n"; r.stdout != want || r.stderr != "index 42\n" {
		t.Errorf("json: stdout %q, stderr %q; want %q and index 42", r.stdout, r.stderr, want)
	}
	r = runCLI(t, "", "--endpoint", addr, "secrets", "get", "db", "--value-only", "--show-index")
	if r.stdout != "v\n" || r.stderr != "index 42\n" {
		t.Errorf("--value-only: stdout %q, stderr %q; want the value and index 42", r.stdout, r.stderr)
	}
	r = runCLI(t, "", "--endpoint", addr, "secrets", "get", "db")
	mustSucceed(t, r) // no --show-index, nothing on stderr

	// The index of a list is the highest any page was served at.
	pageIndex := map[string]string{"": "70", "p2": "75", "p3": "72"}
	nextToken := map[string]string{"": "p2", "p2": "p3"}
	f.on("ListSecrets", func(ctx context.Context, req proto.Message) (proto.Message, error) {
		token := req.(*cofferv1.ListSecretsRequest).GetNextToken()
		if err := grpc.SetHeader(ctx, metadata.Pairs(server.IndexHeader, pageIndex[token])); err != nil {
			return nil, err
		}
		return &cofferv1.ListSecretsResponse{NextToken: nextToken[token]}, nil
	})
	r = runCLI(t, "", "--endpoint", addr, "secrets", "list", "--show-index")
	if r.code != 0 || r.stderr != "index 75\n" {
		t.Errorf("list: exit %d, stderr %q; want index 75", r.code, r.stderr)
	}

	// A server that sends no index: say so in a form --min-index refuses.
	answerAt(f, "DescribeSecret", 0, &cofferv1.DescribeSecretResponse{Name: "db"}, &seen)
	r = runCLI(t, "", "--endpoint", addr, "secrets", "describe", "db", "--show-index")
	if r.code != 0 || r.stderr != "index unknown\n" {
		t.Errorf("no header: exit %d, stderr %q; want index unknown", r.code, r.stderr)
	}

	// A failed call prints the error, not an index.
	f.on("RestoreSecret", func(ctx context.Context, _ proto.Message) (proto.Message, error) {
		_ = grpc.SetHeader(ctx, metadata.Pairs(server.IndexHeader, "50"))
		return nil, statusWithReason(codes.NotFound, "ResourceNotFoundException", "no such secret")
	})
	r = runCLI(t, "", "--endpoint", addr, "secrets", "restore", "gone", "--show-index")
	if r.code != exitNotFound || r.stderr != "coffer: ResourceNotFoundException: no such secret\n" {
		t.Errorf("failed write: exit %d, stderr %q; want 3 and only the error", r.code, r.stderr)
	}
}

func TestShowIndexOnWrites(t *testing.T) {
	writes := []struct {
		method string
		args   []string
	}{
		{"CreateSecret", []string{"secrets", "create", "db", "--value", "v"}},
		{"PutSecretValue", []string{"secrets", "put", "db", "--value", "v"}},
		{"UpdateSecret", []string{"secrets", "update", "db", "--description", "d"}},
		{"UpdateSecretVersionStage", []string{"secrets", "label", "db", "blue", "--move-to", "v1"}},
		{"DeleteSecret", []string{"secrets", "delete", "db"}},
		{"RestoreSecret", []string{"secrets", "restore", "db"}},
		{"TagResource", []string{"secrets", "tag", "db", "a=b"}},
		{"UntagResource", []string{"secrets", "untag", "db", "a"}},
		{"PutResourcePolicy", []string{"secrets", "policy", "put", "db", "--policy", "{}"}},
		{"DeleteResourcePolicy", []string{"secrets", "policy", "delete", "db"}},
	}
	f, addr := startFake(t)
	for i, w := range writes {
		t.Run(w.method, func(t *testing.T) {
			idx := uint64(100 + i)
			f.on(w.method, answerWith(w.method, idx))
			r := runCLI(t, "", append([]string{"--endpoint", addr}, append(w.args, "--show-index")...)...)
			if want := "index " + strconv.FormatUint(idx, 10) + "\n"; r.code != 0 || r.stderr != want {
				t.Errorf("exit %d, stderr %q; want %q", r.code, r.stderr, want)
			}
		})
	}
}

// answerWith answers method with an empty response and index in the header.
func answerWith(method string, index uint64) handler {
	responses := map[string]proto.Message{
		"CreateSecret":             &cofferv1.CreateSecretResponse{},
		"PutSecretValue":           &cofferv1.PutSecretValueResponse{},
		"UpdateSecret":             &cofferv1.UpdateSecretResponse{},
		"UpdateSecretVersionStage": &cofferv1.UpdateSecretVersionStageResponse{},
		"DeleteSecret":             &cofferv1.DeleteSecretResponse{},
		"RestoreSecret":            &cofferv1.RestoreSecretResponse{},
		"TagResource":              &cofferv1.TagResourceResponse{},
		"UntagResource":            &cofferv1.UntagResourceResponse{},
		"PutResourcePolicy":        &cofferv1.PutResourcePolicyResponse{},
		"DeleteResourcePolicy":     &cofferv1.DeleteResourcePolicyResponse{},
	}
	return func(ctx context.Context, _ proto.Message) (proto.Message, error) {
		if err := grpc.SetHeader(ctx, metadata.Pairs(server.IndexHeader, strconv.FormatUint(index, 10))); err != nil {
			return nil, err
		}
		return responses[method], nil
	}
}

// TestReadYourWrites runs the documented script: the write's index, taken
// from --show-index, is the --min-index of a stale read on another node.
func TestReadYourWrites(t *testing.T) {
	leader, leaderAddr := startFake(t)
	follower, followerAddr := startFake(t)
	var writes, reads mdLog
	answerAt(leader, "PutSecretValue", 314, &cofferv1.PutSecretValueResponse{Name: "db", VersionId: "v2"}, &writes)
	answerAt(follower, "GetSecretValue", 314, &cofferv1.GetSecretValueResponse{Name: "db", SecretString: proto.String("new")}, &reads)

	r := runCLI(t, "", "--endpoint", leaderAddr, "secrets", "put", "db", "--value", "new", "--show-index")
	fields := strings.Fields(r.stderr)
	if r.code != 0 || len(fields) != 2 || fields[0] != "index" {
		t.Fatalf("put: exit %d, stderr %q; want \"index N\"", r.code, r.stderr)
	}
	idx := fields[1]

	r = runCLI(t, "", "--endpoint", followerAddr, "secrets", "get", "db", "--consistency", "stale", "--min-index", idx, "--value-only")
	mustSucceed(t, r)
	if r.stdout != "new\n" {
		t.Errorf("stdout %q; want the new value", r.stdout)
	}
	got := reads.all()
	if len(got) != 1 {
		t.Fatalf("follower saw %d reads; want 1", len(got))
	}
	if c, m := readMetadata(got[0]); strings.Join(c, ",") != "stale" || strings.Join(m, ",") != "314" {
		t.Errorf("read sent consistency %q, min-index %q; want stale and 314", c, m)
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
		err: a.err, status: a.status, members: a.members, newLeader: a.newLeader,
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
