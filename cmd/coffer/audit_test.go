package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server/audit"
)

// auditLog writes n records to a log at dir/audit.log that rotates every few
// records, and returns its base path.
func auditLog(t *testing.T, n int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := audit.Open(audit.Config{Path: path, MaxBytes: 1200, Key: bytes.Repeat([]byte("k"), 32), Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := l.Write(audit.Record{RequestID: fmt.Sprintf("req-%d", i), Principal: "alice", Operation: "GetSecretValue", Decision: "allow", Outcome: "success"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestAuditVerify(t *testing.T) {
	path := auditLog(t, 12)
	files, _ := audit.Files(path)
	rep, err := audit.Verify(files)
	if err != nil || len(files) < 3 {
		t.Fatalf("setup: %d files, %v", len(files), err)
	}
	head := fmt.Sprintf("%d:%s", rep.Head.Seq, rep.Head.Hash)

	// The base path, the files one by one, and a shell's "audit.log*" (which
	// lists audit.log first) all verify the same chain.
	for _, args := range [][]string{{path}, files, append([]string{path}, files...)} {
		r := runCLI(t, "", append([]string{"audit", "verify"}, args...)...)
		mustSucceed(t, r)
		if !strings.Contains(r.stdout, "Records  12\n") || !strings.Contains(r.stdout, "Head     "+head+"\n") {
			t.Errorf("verify %v printed:\n%s", args, r.stdout)
		}
	}

	r := runCLI(t, "", "-o", "json", "audit", "verify", path, "--expect", head)
	mustSucceed(t, r)
	var got struct {
		Valid   bool
		Records int
		Files   []audit.FileReport
		Head    audit.Anchor
	}
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("%v in %s", err, r.stdout)
	}
	if !got.Valid || got.Records != 12 || len(got.Files) != len(files) || got.Head != rep.Head {
		t.Errorf("json %+v", got)
	}
}

func TestAuditVerifyFindsTampering(t *testing.T) {
	path := auditLog(t, 12)
	files, _ := audit.Files(path)
	b, err := os.ReadFile(files[1])
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.SplitAfter(b, []byte("\n"))
	lines[0], lines[1] = lines[1], lines[0]
	os.WriteFile(files[1], bytes.Join(lines, nil), 0o600)

	r := runCLI(t, "", "audit", "verify", path)
	if r.code != exitFailure || r.stdout != "" || !strings.Contains(r.stderr, files[1]+":1: seq") {
		t.Errorf("exit %d, stdout %q, stderr %q; want exit 1 naming %s:1", r.code, r.stdout, r.stderr, files[1])
	}

	r = runCLI(t, "", "-o", "json", "audit", "verify", path)
	var got struct {
		Valid bool
		Error *audit.VerifyError
	}
	json.Unmarshal([]byte(r.stdout), &got)
	if r.code != exitFailure || got.Valid || got.Error == nil || got.Error.File != files[1] || got.Error.Line != 1 {
		t.Errorf("exit %d, stdout %s", r.code, r.stdout)
	}

	// A missing rotated file.
	os.WriteFile(files[1], b, 0o600)
	os.Remove(files[0])
	r = runCLI(t, "", "audit", "verify", path)
	if r.code != exitFailure || !strings.Contains(r.stderr, files[1]+":1: seq") {
		t.Errorf("exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestAuditVerifyUsage(t *testing.T) {
	for _, args := range [][]string{
		{"audit", "verify"},
		{"audit", "verify", "x", "--start", "nope"},
		{"audit", "verify", "x", "--expect", "1:abc"},
	} {
		if r := runCLI(t, "", args...); r.code != exitUsage {
			t.Errorf("%v: exit %d, stderr %q; want %d", args, r.code, r.stderr, exitUsage)
		}
	}
	r := runCLI(t, "", "audit", "verify", filepath.Join(t.TempDir(), "missing"))
	if r.code != exitFailure || !strings.Contains(r.stderr, "no such file") {
		t.Errorf("missing file: exit %d, stderr %q", r.code, r.stderr)
	}
}

// TestAuditAck marks rotated files shipped, printing each head, and
// refuses the active log.
func TestAuditAck(t *testing.T) {
	path := auditLog(t, 12)
	files, _ := audit.Files(path)
	rotated := files[:len(files)-1]
	r := runCLI(t, "", append([]string{"audit", "ack"}, rotated[:2]...)...)
	mustSucceed(t, r)
	for _, f := range rotated[:2] {
		marker, err := os.ReadFile(f + audit.ShippedSuffix)
		if err != nil {
			t.Fatalf("no marker for %s: %v", f, err)
		}
		if head := strings.TrimSpace(string(marker)); !strings.Contains(r.stdout, f+"  shipped, head "+head+"\n") {
			t.Errorf("ack printed:\n%s\nwant %s with head %s", r.stdout, f, head)
		}
	}
	if _, err := os.Stat(rotated[2] + audit.ShippedSuffix); err == nil {
		t.Errorf("%s was marked though not named", rotated[2])
	}
	// A shell's audit.log* lists the markers too; verify skips them.
	r = runCLI(t, "", append(append([]string{"audit", "verify", path}, files...), rotated[0]+audit.ShippedSuffix)...)
	mustSucceed(t, r)
	r = runCLI(t, "", "audit", "ack", path)
	if r.code != exitFailure || !strings.Contains(r.stderr, "active log") {
		t.Errorf("ack of the active log: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := runCLI(t, "", "audit", "ack"); r.code != exitUsage {
		t.Errorf("ack without files: exit %d, want %d", r.code, exitUsage)
	}
}

// AuditHash answers the fake's own stand-in for the audit hash.
func (a *fakeAdmin) AuditHash(_ context.Context, req *cofferv1.AuditHashRequest) (*cofferv1.AuditHashResponse, error) {
	ans := a.record("AuditHash", req)
	if ans.err != nil {
		return nil, ans.err
	}
	return &cofferv1.AuditHashResponse{Hash: fakeHash(req.GetValue())}, nil
}

func fakeHash(v []byte) string {
	sum := sha256.Sum256(v)
	return "hmac-sha256:" + hex.EncodeToString(sum[:])
}

func TestAuditHash(t *testing.T) {
	admin, addr := startFakeAdmin(t)
	file := filepath.Join(t.TempDir(), "value")
	if err := os.WriteFile(file, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, stdin string
		args        []string
		want        string // the value the server must receive
	}{
		{"stdin without its newline", "s3cret\n", nil, "s3cret"},
		{"stdin with a CRLF", "s3cret\r\n", nil, "s3cret"},
		{"stdin without a newline", "s3cret", nil, "s3cret"},
		{"a file byte for byte", "", []string{"--value-file", file}, "s3cret\n"},
		{"stdin byte for byte", "s3cret\n", []string{"--value-file", "-"}, "s3cret\n"},
	} {
		r := runCLI(t, c.stdin, append([]string{"--endpoint", addr, "audit", "hash"}, c.args...)...)
		mustSucceed(t, r)
		if r.stdout != fakeHash([]byte(c.want))+"\n" {
			t.Errorf("%s: printed %q, want the hash of %q", c.name, r.stdout, c.want)
		}
		calls := admin.received()
		wantProto(t, calls[len(calls)-1].req, &cofferv1.AuditHashRequest{Value: []byte(c.want)})
	}

	r := runCLI(t, "s3cret", "--endpoint", addr, "-o", "json", "audit", "hash")
	mustSucceed(t, r)
	var got struct{ Hash string }
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || got.Hash != fakeHash([]byte("s3cret")) {
		t.Errorf("json %q: %v", r.stdout, err)
	}

	// The value is never an argument, and a mistaken one is not echoed.
	n := len(admin.received())
	r = runCLI(t, "", "--endpoint", addr, "audit", "hash", "hunter2")
	if r.code != exitUsage || strings.Contains(r.stderr+r.stdout, "hunter2") || len(admin.received()) != n {
		t.Errorf("a value as argument: exit %d, stderr %q; want a usage error that does not repeat it, and no RPC", r.code, r.stderr)
	}
}
