package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server/sigv4/grpcsig"
)

// signedServer is a Service behind a gRPC server that authenticates with
// NewGRPCAuth on a clock the test moves, and keeps the metadata of the last
// signed call, as someone on the path would.
type signedServer struct {
	svc      *Service
	addr     string
	id, key  string
	now      atomic.Pointer[time.Time]
	mu       sync.Mutex
	captured metadata.MD
}

func startSignedServer(t *testing.T, gate *Gate) *signedServer {
	t.Helper()
	svc, store := newTestService(t)
	iam := NewIAM(svc, store)
	ctx := t.Context()
	if _, _, _, err := iam.BootstrapRoot(ctx, "", "", nil); err != nil {
		t.Fatal(err)
	}
	k, err := iam.CreateAccessKey(ctx, &cofferv1.CreateAccessKeyRequest{Principal: RootPrincipal})
	if err != nil {
		t.Fatal(err)
	}
	s := &signedServer{svc: svc, id: k.GetAccessKeyId(), key: k.GetSecretAccessKey()}
	start := time.Now()
	s.now.Store(&start)
	capture := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if md, _ := metadata.FromIncomingContext(ctx); grpcsig.Signed(md) {
			s.mu.Lock()
			s.captured = md.Copy()
			s.mu.Unlock()
		}
		return handler(ctx, req)
	}
	auth := NewGRPCAuth(GRPCAuthConfig{IAM: iam, Region: svc.Region(), Now: func() time.Time { return *s.now.Load() }})
	if gate == nil {
		gate = &Gate{Region: svc.Region()}
	}
	gs, hs := NewGRPCServer(Services{Secrets: svc}, slog.New(slog.DiscardHandler), auth, gate, grpc.ChainUnaryInterceptor(capture))
	SetServing(hs, true)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	s.addr = lis.Addr().String()
	return s
}

func (s *signedServer) after(d time.Duration) {
	t := s.now.Load().Add(d)
	s.now.Store(&t)
}

func dialSigned(t *testing.T, addr string, c *grpcsig.Credentials) cofferv1.SecretsManagerServiceClient {
	t.Helper()
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if c != nil {
		opts = append(opts, c.DialOptions()...)
	}
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return cofferv1.NewSecretsManagerServiceClient(conn)
}

// replay sends a captured call's signature again, with req, to method.
func replay(ctx context.Context, captured metadata.MD, call func(context.Context) error) error {
	md := metadata.MD{}
	for _, k := range []string{"authorization", "x-amz-date", "x-amz-content-sha256"} {
		md[k] = captured.Get(k)
	}
	return call(metadata.NewOutgoingContext(ctx, md))
}

func wantAPIError(t *testing.T, err error, typ, fragment string) {
	t.Helper()
	if got := TypeOf(err); got != typ || !strings.Contains(status.Convert(err).Message(), fragment) {
		t.Fatalf("got %v (type %q); want %s mentioning %q", err, got, typ, fragment)
	}
}

// A captured signed call is not a credential: unchanged, it is accepted
// again only within the window (SigV4's property; TLS keeps it from being
// captured at all); after the window it is refused as expired; within the
// window, sent to another method or with another message, it is refused.
func TestCapturedSignedCallReplay(t *testing.T) {
	s := startSignedServer(t, nil)
	ctx := t.Context()
	v := "v1"
	signedAt := *s.now.Load()
	c := &grpcsig.Credentials{AccessKeyID: s.id, SecretAccessKey: s.key, Region: s.svc.Region(), Now: func() time.Time { return signedAt }}
	if _, err := dialSigned(t, s.addr, c).CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: "app/db", SecretString: &v}); err != nil {
		t.Fatal(err)
	}
	if _, err := dialSigned(t, s.addr, c).GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: "app/db"}); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	captured := s.captured
	s.mu.Unlock()
	attacker := dialSigned(t, s.addr, nil)
	get := func(id string) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := attacker.GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: id})
			return err
		}
	}

	s.after(4 * time.Minute)
	if err := replay(ctx, captured, get("app/db")); err != nil {
		t.Fatalf("the unchanged call within the window: %v", err)
	}
	err := replay(ctx, captured, get("app/other"))
	wantAPIError(t, err, TypeInvalidSignature, "x-amz-content-sha256")
	err = replay(ctx, captured, func(ctx context.Context) error {
		_, err := attacker.DeleteSecret(ctx, &cofferv1.DeleteSecretRequest{SecretId: "app/db"})
		return err
	})
	wantAPIError(t, err, TypeInvalidSignature, "signature we calculated does not match")

	s.after(2 * time.Minute) // six minutes after signing
	err = replay(ctx, captured, get("app/db"))
	wantAPIError(t, err, TypeInvalidSignature, "Signature expired")
	if _, err := s.svc.DescribeSecret(ctx, &cofferv1.DescribeSecretRequest{SecretId: "app/db"}); err != nil {
		t.Fatalf("the secret is gone after the replayed DeleteSecret: %v", err)
	}
}

// A signature scoped to another region is refused, naming this one.
func TestSignedCallOtherRegion(t *testing.T) {
	s := startSignedServer(t, nil)
	c := &grpcsig.Credentials{AccessKeyID: s.id, SecretAccessKey: s.key, Region: "eu-west-1"}
	_, err := dialSigned(t, s.addr, c).ListSecrets(t.Context(), &cofferv1.ListSecretsRequest{})
	wantAPIError(t, err, TypeInvalidSignature, "This endpoint serves "+s.svc.Region())
}

// A client that was not given a region learns it from the node.
func TestSignedCallLearnsRegion(t *testing.T) {
	s := startSignedServer(t, nil)
	c := &grpcsig.Credentials{AccessKeyID: s.id, SecretAccessKey: s.key}
	if _, err := dialSigned(t, s.addr, c).ListSecrets(t.Context(), &cofferv1.ListSecretsRequest{}); err != nil {
		t.Fatal(err)
	}
}

// The deprecated bearer form is accepted over TLS and from loopback, and
// refused from any other address in plaintext; its use is logged once per
// access key id.
func TestBearerOnlyOverTLSOrLoopback(t *testing.T) {
	svc, store := newTestService(t)
	iam := NewIAM(svc, store)
	ctx := t.Context()
	id, secret, _, err := iam.BootstrapRoot(ctx, "", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	auth := NewGRPCAuth(GRPCAuthConfig{IAM: iam, Region: svc.Region(), Log: slog.New(slog.NewTextHandler(&logs, nil))})
	call := func(p *peer.Peer) error {
		ctx := metadata.NewIncomingContext(ctx, metadata.Pairs("authorization", "Bearer "+id+":"+secret))
		ctx = peer.NewContext(ctx, p)
		got, err := auth(ctx, "/coffer.v1.SecretsManagerService/ListSecrets", &cofferv1.ListSecretsRequest{})
		if err == nil && got.Principal != RootPrincipal {
			t.Fatalf("bearer authenticated %q, want root", got.Principal)
		}
		return err
	}
	remote := &net.TCPAddr{IP: net.IPv4(10, 0, 0, 7), Port: 50000}
	err = call(&peer.Peer{Addr: remote})
	if err == nil || AsAPIError(err).Type != TypeIncompleteSignature || !strings.Contains(err.Error(), "only over TLS or from a loopback address") {
		t.Fatalf("bearer from 10.0.0.7 in plaintext: %v; want it refused", err)
	}
	if err := call(&peer.Peer{Addr: remote, AuthInfo: credentials.TLSInfo{State: tls.ConnectionState{}}}); err != nil {
		t.Fatalf("bearer over TLS: %v", err)
	}
	for _, addr := range []net.Addr{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, &net.TCPAddr{IP: net.IPv6loopback, Port: 1}} {
		if err := call(&peer.Peer{Addr: addr}); err != nil {
			t.Fatalf("bearer from %s: %v", addr, err)
		}
	}
	if n := strings.Count(logs.String(), "bearer access key, which is deprecated"); n != 1 || !strings.Contains(logs.String(), "access_key_id="+id) {
		t.Fatalf("deprecation warnings %d, want one naming %s:\n%s", n, id, logs.String())
	}
}

// Until the node is ready every call but a health check is answered
// ServiceUnavailable — whatever its credentials, never an authentication
// error — and every answer names the node's region.
func TestNotReadyAnswersUnavailable(t *testing.T) {
	var ready atomic.Bool
	gate := &Gate{Region: "us-east-1", Ready: func() error {
		if ready.Load() {
			return nil
		}
		return errors.New("waiting for a leader")
	}}
	s := startSignedServer(t, gate)
	good := &grpcsig.Credentials{AccessKeyID: s.id, SecretAccessKey: s.key, Region: "us-east-1"}
	unknown := &grpcsig.Credentials{AccessKeyID: "AKIANOTYETREPLICATED", SecretAccessKey: "not-yet-replicated-secret", Region: "us-east-1"}
	for _, c := range []*grpcsig.Credentials{good, unknown, nil} {
		var header metadata.MD
		_, err := dialSigned(t, s.addr, c).ListSecrets(t.Context(), &cofferv1.ListSecretsRequest{}, grpc.Header(&header))
		if status.Code(err) != codes.Unavailable || TypeOf(err) != TypeServiceUnavailable || !strings.Contains(err.Error(), "waiting for a leader") {
			t.Fatalf("call before ready: %v; want Unavailable/ServiceUnavailable naming the reason", err)
		}
		if got := header.Get(grpcsig.RegionHeader); len(got) != 1 || got[0] != "us-east-1" {
			t.Fatalf("region header %v", got)
		}
	}
	conn, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("health check before ready: %v", err)
	}
	ready.Store(true)
	if _, err := dialSigned(t, s.addr, good).ListSecrets(t.Context(), &cofferv1.ListSecretsRequest{}); err != nil {
		t.Fatalf("once ready: %v", err)
	}
	_, err = dialSigned(t, s.addr, unknown).ListSecrets(t.Context(), &cofferv1.ListSecretsRequest{})
	wantAPIError(t, err, TypeUnrecognizedClient, "invalid")
}
