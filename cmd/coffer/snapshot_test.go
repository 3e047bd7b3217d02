package main

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

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
