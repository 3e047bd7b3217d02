package main

import (
	"context"
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
