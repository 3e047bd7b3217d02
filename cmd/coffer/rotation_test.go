package main

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

func TestRotateSendsOnlyGivenRules(t *testing.T) {
	f, addr := startFake(t)
	f.respond("RotateSecret", &cofferv1.RotateSecretResponse{Arn: "arn:1", Name: "prod/db", VersionId: "tok"})
	r := runCLI(t, "", "--endpoint", addr, "secrets", "rotate", "prod/db", "--function", "rot", "--schedule", "rate(10 days)", "--duration", "3h",
		"--rotate-immediately=false", "--token", "tok")
	mustSucceed(t, r)
	if want := "ARN        arn:1\nName       prod/db\nVersionId  tok\n"; r.stdout != want {
		t.Errorf("stdout %q; want %q", r.stdout, want)
	}
	wantProto(t, onlyRequest[*cofferv1.RotateSecretRequest](t, f, "RotateSecret"), &cofferv1.RotateSecretRequest{
		SecretId: "prod/db", RotationLambdaArn: "rot", ClientRequestToken: "tok", RotateImmediately: proto.Bool(false),
		RotationRules: &cofferv1.RotationRules{ScheduleExpression: "rate(10 days)", Duration: "3h"},
	})

	f2, addr2 := startFake(t)
	f2.respond("RotateSecret", &cofferv1.RotateSecretResponse{Arn: "arn:1", Name: "prod/db", VersionId: "tok"})
	mustSucceed(t, runCLI(t, "", "--endpoint", addr2, "secrets", "rotate", "prod/db", "--days", "30"))
	wantProto(t, onlyRequest[*cofferv1.RotateSecretRequest](t, f2, "RotateSecret"), &cofferv1.RotateSecretRequest{
		SecretId: "prod/db", RotationRules: &cofferv1.RotationRules{AutomaticallyAfterDays: proto.Int64(30)},
	})
}

func TestCancelRotation(t *testing.T) {
	f, addr := startFake(t)
	f.respond("CancelRotateSecret", &cofferv1.CancelRotateSecretResponse{Arn: "arn:1", Name: "prod/db", VersionId: "partial"})
	r := runCLI(t, "", "--endpoint", addr, "secrets", "cancel-rotation", "prod/db")
	mustSucceed(t, r)
	if want := "ARN        arn:1\nName       prod/db\nVersionId  partial\n"; r.stdout != want {
		t.Errorf("stdout %q; want %q", r.stdout, want)
	}
}

func TestDescribeShowsRotationStatus(t *testing.T) {
	f, addr := startFake(t)
	f.respond("DescribeSecret", &cofferv1.DescribeSecretResponse{
		Arn: "arn:1", Name: "prod/db", RotationEnabled: true, RotationLambdaArn: "coffer:rotator/postgresql-single-user",
		RotationStatus: &cofferv1.RotationStatus{
			ClientRequestToken: "tok", Step: "createSecret", Attempts: 2, LastErrorStep: "setSecret",
			LastError: "HTTP 500: login failed", StartedDate: created, LastErrorDate: created, NextAttemptDate: timestamppb.New(created.AsTime().Add(120e9)),
		},
	})
	r := runCLI(t, "", "--endpoint", addr, "secrets", "describe", "prod/db")
	mustSucceed(t, r)
	for _, want := range []string{
		"RotationStatus     rotation with token tok, started 2026-03-01T12:00:00Z\n",
		"                   next step createSecret at 2026-03-01T12:02:00Z\n",
		"                   2 failed attempt(s); last in setSecret at 2026-03-01T12:00:00Z:\n",
		"                     HTTP 500: login failed\n",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, r.stdout)
		}
	}
}

func (f *fakeServer) RotateSecret(ctx context.Context, r *cofferv1.RotateSecretRequest) (*cofferv1.RotateSecretResponse, error) {
	return answer[*cofferv1.RotateSecretResponse](ctx, f, "RotateSecret", r)
}

func (f *fakeServer) CancelRotateSecret(ctx context.Context, r *cofferv1.CancelRotateSecretRequest) (*cofferv1.CancelRotateSecretResponse, error) {
	return answer[*cofferv1.CancelRotateSecretResponse](ctx, f, "CancelRotateSecret", r)
}

// fakeRotation is a RotationService that records what it was asked.
type fakeRotation struct {
	cofferv1.UnimplementedRotationServiceServer
	mu  sync.Mutex
	got []proto.Message
}

func (f *fakeRotation) RegisterFunction(_ context.Context, r *cofferv1.RegisterFunctionRequest) (*cofferv1.RegisterFunctionResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.got = append(f.got, proto.Clone(r))
	return &cofferv1.RegisterFunctionResponse{Function: &cofferv1.RotationFunctionInfo{
		Name: r.GetName(), Arn: "arn:aws:lambda:us-east-1:123456789012:function:" + r.GetName(), Url: r.GetUrl(), Signed: r.GetSharedSecret() != "",
		InsecureHttp: r.GetInsecureHttp(),
	}}, nil
}

func (f *fakeRotation) requests() []proto.Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.got)
}

func (f *fakeRotation) ListFunctions(context.Context, *cofferv1.ListFunctionsRequest) (*cofferv1.ListFunctionsResponse, error) {
	return &cofferv1.ListFunctionsResponse{Functions: []*cofferv1.RotationFunctionInfo{
		{Name: "coffer:rotator/mysql-single-user", Arn: "coffer:rotator/mysql-single-user", Builtin: true},
		{Name: "rot", Arn: "arn:aws:lambda:us-east-1:123456789012:function:rot", Url: "https://rot.example/hook", Signed: true, CreatedDate: created},
	}}, nil
}

func TestRotationFunctionCommands(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	f := &fakeRotation{}
	cofferv1.RegisterRotationServiceServer(srv, f)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	addr := lis.Addr().String()

	r := runCLI(t, "", "--endpoint", addr, "rotation", "register-function", "rot", "https://rot.example/hook", "--secret", "s3cret")
	mustSucceed(t, r)
	if want := "Name    rot\nARN     arn:aws:lambda:us-east-1:123456789012:function:rot\nURL     https://rot.example/hook\nSigned  true\n"; r.stdout != want {
		t.Errorf("stdout %q; want %q", r.stdout, want)
	}
	if len(f.got) != 1 || !proto.Equal(f.got[0], &cofferv1.RegisterFunctionRequest{Name: "rot", Url: "https://rot.example/hook", SharedSecret: "s3cret"}) {
		t.Errorf("requests %v", f.got)
	}
	// --secret-file: the file's content without its trailing newline; "-"
	// reads stdin. Giving both flags is a usage error.
	file := filepath.Join(t.TempDir(), "hmac")
	if err := os.WriteFile(file, []byte("0123456789abcdef-from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mustSucceed(t, runCLI(t, "", "--endpoint", addr, "rotation", "register-function", "rot", "https://rot.example/hook", "--secret-file", file))
	mustSucceed(t, runCLI(t, "0123456789abcdef-from-stdin\r\n", "--endpoint", addr, "rotation", "register-function", "rot", "https://rot.example/hook", "--secret-file", "-"))
	for _, want := range []string{"0123456789abcdef-from-file", "0123456789abcdef-from-stdin"} {
		i := slices.IndexFunc(f.requests(), func(m proto.Message) bool {
			return m.(*cofferv1.RegisterFunctionRequest).GetSharedSecret() == want
		})
		if i < 0 {
			t.Errorf("no RegisterFunction request carried the secret %q: %v", want, f.requests())
		}
	}
	if r := runCLI(t, "", "--endpoint", addr, "rotation", "register-function", "rot", "https://rot.example/hook", "--secret", "x", "--secret-file", file); r.code != exitUsage {
		t.Errorf("--secret with --secret-file: exit %d, want %d (usage)", r.code, exitUsage)
	}
	if r := runCLI(t, "", "--endpoint", addr, "rotation", "register-function", "rot", "https://rot.example/hook", "--secret-file", filepath.Join(t.TempDir(), "missing")); r.code != exitFailure {
		t.Errorf("--secret-file naming no file: exit %d, want %d", r.code, exitFailure)
	}
	// A secret is required: every request is signed.
	if r := runCLI(t, "", "--endpoint", addr, "rotation", "register-function", "rot", "https://rot.example/hook"); r.code != exitUsage || !strings.Contains(r.stderr, "a shared secret is required") {
		t.Errorf("no secret: exit %d, stderr %q; want a usage error", r.code, r.stderr)
	}
	// --insecure-http asks for a plain http URL on this host.
	r = runCLI(t, "", "--endpoint", addr, "rotation", "register-function", "local", "http://127.0.0.1:9000/hook", "--secret-file", file, "--insecure-http")
	mustSucceed(t, r)
	if !strings.HasSuffix(r.stdout, "Signed        true\nInsecureHTTP  true\n") {
		t.Errorf("stdout %q; want InsecureHTTP true", r.stdout)
	}
	if last := f.requests()[len(f.requests())-1]; !proto.Equal(last, &cofferv1.RegisterFunctionRequest{Name: "local", Url: "http://127.0.0.1:9000/hook",
		SharedSecret: "0123456789abcdef-from-file", InsecureHttp: true}) {
		t.Errorf("request %v", last)
	}
	if n := len(f.requests()); n != 4 {
		t.Errorf("%d RegisterFunction requests, want 4 (the refused command lines send none)", n)
	}

	r = runCLI(t, "", "--endpoint", addr, "rotation", "list-functions")
	mustSucceed(t, r)
	for _, want := range []string{"coffer:rotator/mysql-single-user", "(built in)", "https://rot.example/hook"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("list-functions lacks %q:\n%s", want, r.stdout)
		}
	}
}
