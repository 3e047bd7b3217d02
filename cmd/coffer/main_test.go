package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// TestMain clears the COFFER_* variables so that the developer's own settings
// cannot change what the tests see; tests that need them use t.Setenv.
func TestMain(m *testing.M) {
	for _, name := range []string{"COFFER_ENDPOINT", "COFFER_OUTPUT", "COFFER_TLS", "COFFER_CA_FILE", "COFFER_REGION",
		"COFFER_ACCESS_KEY_ID", "COFFER_SECRET_ACCESS_KEY", "COFFER_SESSION_TOKEN", "COFFER_CREDENTIALS_FILE", "COFFER_PROFILE"} {
		os.Unsetenv(name)
	}
	os.Exit(m.Run())
}

// handler answers one RPC for the fake server.
type handler func(ctx context.Context, req proto.Message) (proto.Message, error)

// rpcCall is a request the fake server received.
type rpcCall struct {
	method string
	req    proto.Message
	md     metadata.MD
}

// fakeServer records every request and answers with the handler set for the
// method, or an empty response.
type fakeServer struct {
	cofferv1.UnimplementedSecretsManagerServiceServer

	mu       sync.Mutex
	calls    []rpcCall
	handlers map[string]handler
}

var _ cofferv1.SecretsManagerServiceServer = (*fakeServer)(nil)

// startFake serves a fakeServer on a loopback port and returns it with its
// address.
func startFake(t *testing.T, opts ...grpc.ServerOption) (*fakeServer, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(opts...)
	f := &fakeServer{handlers: map[string]handler{}}
	cofferv1.RegisterSecretsManagerServiceServer(srv, f)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return f, lis.Addr().String()
}

// on sets the handler of method.
func (f *fakeServer) on(method string, h handler) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.handlers[method] = h
}

// respond makes method answer resp.
func (f *fakeServer) respond(method string, resp proto.Message) {
	f.on(method, func(context.Context, proto.Message) (proto.Message, error) { return resp, nil })
}

// fail makes every method answer err.
func (f *fakeServer) fail(err error) {
	f.on("*", func(context.Context, proto.Message) (proto.Message, error) { return nil, err })
}

func (f *fakeServer) received() []rpcCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]rpcCall(nil), f.calls...)
}

// answer records req and runs the handler for method.
func answer[R proto.Message](ctx context.Context, f *fakeServer, method string, req proto.Message) (R, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	f.mu.Lock()
	f.calls = append(f.calls, rpcCall{method, proto.Clone(req), md.Copy()})
	h := f.handlers[method]
	if h == nil {
		h = f.handlers["*"]
	}
	f.mu.Unlock()
	var zero R
	if h == nil {
		return zero.ProtoReflect().Type().New().Interface().(R), nil
	}
	resp, err := h(ctx, req)
	if err != nil {
		return zero, err
	}
	return resp.(R), nil
}

func (f *fakeServer) CreateSecret(ctx context.Context, r *cofferv1.CreateSecretRequest) (*cofferv1.CreateSecretResponse, error) {
	return answer[*cofferv1.CreateSecretResponse](ctx, f, "CreateSecret", r)
}

func (f *fakeServer) GetSecretValue(ctx context.Context, r *cofferv1.GetSecretValueRequest) (*cofferv1.GetSecretValueResponse, error) {
	return answer[*cofferv1.GetSecretValueResponse](ctx, f, "GetSecretValue", r)
}

func (f *fakeServer) PutSecretValue(ctx context.Context, r *cofferv1.PutSecretValueRequest) (*cofferv1.PutSecretValueResponse, error) {
	return answer[*cofferv1.PutSecretValueResponse](ctx, f, "PutSecretValue", r)
}

func (f *fakeServer) UpdateSecret(ctx context.Context, r *cofferv1.UpdateSecretRequest) (*cofferv1.UpdateSecretResponse, error) {
	return answer[*cofferv1.UpdateSecretResponse](ctx, f, "UpdateSecret", r)
}

func (f *fakeServer) UpdateSecretVersionStage(ctx context.Context, r *cofferv1.UpdateSecretVersionStageRequest) (*cofferv1.UpdateSecretVersionStageResponse, error) {
	return answer[*cofferv1.UpdateSecretVersionStageResponse](ctx, f, "UpdateSecretVersionStage", r)
}

func (f *fakeServer) DescribeSecret(ctx context.Context, r *cofferv1.DescribeSecretRequest) (*cofferv1.DescribeSecretResponse, error) {
	return answer[*cofferv1.DescribeSecretResponse](ctx, f, "DescribeSecret", r)
}

func (f *fakeServer) ListSecrets(ctx context.Context, r *cofferv1.ListSecretsRequest) (*cofferv1.ListSecretsResponse, error) {
	return answer[*cofferv1.ListSecretsResponse](ctx, f, "ListSecrets", r)
}

func (f *fakeServer) ListSecretVersionIds(ctx context.Context, r *cofferv1.ListSecretVersionIdsRequest) (*cofferv1.ListSecretVersionIdsResponse, error) {
	return answer[*cofferv1.ListSecretVersionIdsResponse](ctx, f, "ListSecretVersionIds", r)
}

func (f *fakeServer) DeleteSecret(ctx context.Context, r *cofferv1.DeleteSecretRequest) (*cofferv1.DeleteSecretResponse, error) {
	return answer[*cofferv1.DeleteSecretResponse](ctx, f, "DeleteSecret", r)
}

func (f *fakeServer) RestoreSecret(ctx context.Context, r *cofferv1.RestoreSecretRequest) (*cofferv1.RestoreSecretResponse, error) {
	return answer[*cofferv1.RestoreSecretResponse](ctx, f, "RestoreSecret", r)
}

func (f *fakeServer) TagResource(ctx context.Context, r *cofferv1.TagResourceRequest) (*cofferv1.TagResourceResponse, error) {
	return answer[*cofferv1.TagResourceResponse](ctx, f, "TagResource", r)
}

func (f *fakeServer) UntagResource(ctx context.Context, r *cofferv1.UntagResourceRequest) (*cofferv1.UntagResourceResponse, error) {
	return answer[*cofferv1.UntagResourceResponse](ctx, f, "UntagResource", r)
}

func (f *fakeServer) GetRandomPassword(ctx context.Context, r *cofferv1.GetRandomPasswordRequest) (*cofferv1.GetRandomPasswordResponse, error) {
	return answer[*cofferv1.GetRandomPasswordResponse](ctx, f, "GetRandomPassword", r)
}

func (f *fakeServer) PutResourcePolicy(ctx context.Context, r *cofferv1.PutResourcePolicyRequest) (*cofferv1.PutResourcePolicyResponse, error) {
	return answer[*cofferv1.PutResourcePolicyResponse](ctx, f, "PutResourcePolicy", r)
}

func (f *fakeServer) GetResourcePolicy(ctx context.Context, r *cofferv1.GetResourcePolicyRequest) (*cofferv1.GetResourcePolicyResponse, error) {
	return answer[*cofferv1.GetResourcePolicyResponse](ctx, f, "GetResourcePolicy", r)
}

func (f *fakeServer) DeleteResourcePolicy(ctx context.Context, r *cofferv1.DeleteResourcePolicyRequest) (*cofferv1.DeleteResourcePolicyResponse, error) {
	return answer[*cofferv1.DeleteResourcePolicyResponse](ctx, f, "DeleteResourcePolicy", r)
}

func (f *fakeServer) ValidateResourcePolicy(ctx context.Context, r *cofferv1.ValidateResourcePolicyRequest) (*cofferv1.ValidateResourcePolicyResponse, error) {
	return answer[*cofferv1.ValidateResourcePolicyResponse](ctx, f, "ValidateResourcePolicy", r)
}

// result is what a user sees of one command line.
type result struct {
	code   int
	stdout string
	stderr string
}

// runCLI runs one command line with stdin as its standard input.
func runCLI(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(t.Context(), args, strings.NewReader(stdin), &stdout, &stderr)
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// mustSucceed fails the test unless r exited 0 with nothing on stderr.
func mustSucceed(t *testing.T, r result) {
	t.Helper()
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("exit %d, stderr %q, stdout %q; want success", r.code, r.stderr, r.stdout)
	}
}

// onlyRequest returns the one request f received, which must be for method.
func onlyRequest[R proto.Message](t *testing.T, f *fakeServer, method string) R {
	t.Helper()
	calls := f.received()
	if len(calls) != 1 || calls[0].method != method {
		t.Fatalf("server received %v; want one %s", methods(calls), method)
	}
	return calls[0].req.(R)
}

func methods(calls []rpcCall) []string {
	var names []string
	for _, c := range calls {
		names = append(names, c.method)
	}
	return names
}

// wantProto fails the test unless got equals want.
func wantProto(t *testing.T, got, want proto.Message) {
	t.Helper()
	if !proto.Equal(got, want) {
		t.Errorf("request:\n got %v\nwant %v", got, want)
	}
}

var uuidV4 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
