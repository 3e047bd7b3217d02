package grpcsig

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server/sigv4"
)

const (
	keyID  = "AKIAGRPCSIGTEST00001"
	secret = "grpcsig/test/secret/access/key/000000001"
	token  = "session-token-for-grpcsig-tests"
)

// captured is one call as the server received it.
type captured struct {
	method string
	md     metadata.MD
	req    proto.Message
}

// recorder is a SecretsManagerService that answers GetSecretValue and
// remembers every call's metadata and message; it names its region in
// RegionHeader, as a node does.
type recorder struct {
	cofferv1.UnimplementedSecretsManagerServiceServer
	region string

	mu    sync.Mutex
	calls []captured
}

func (r *recorder) GetSecretValue(context.Context, *cofferv1.GetSecretValueRequest) (*cofferv1.GetSecretValueResponse, error) {
	return &cofferv1.GetSecretValueResponse{Name: "ok"}, nil
}

func (r *recorder) last(t *testing.T) captured {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.calls) == 0 {
		t.Fatal("the server received no signed call")
	}
	return r.calls[len(r.calls)-1]
}

func (r *recorder) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	_ = grpc.SetHeader(ctx, metadata.Pairs(RegionHeader, r.region))
	if !unsigned(info.FullMethod) {
		md, _ := metadata.FromIncomingContext(ctx)
		r.mu.Lock()
		r.calls = append(r.calls, captured{info.FullMethod, md.Copy(), proto.Clone(req.(proto.Message))})
		r.mu.Unlock()
	}
	return handler(ctx, req)
}

func serve(t *testing.T, region string) (*recorder, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{region: region}
	srv := grpc.NewServer(grpc.UnaryInterceptor(rec.intercept))
	cofferv1.RegisterSecretsManagerServiceServer(srv, rec)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return rec, lis.Addr().String()
}

func call(t *testing.T, addr string, c *Credentials, req *cofferv1.GetSecretValueRequest) {
	t.Helper()
	conn, err := grpc.NewClient(addr, append(c.DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := cofferv1.NewSecretsManagerServiceClient(conn).GetSecretValue(t.Context(), req); err != nil {
		t.Fatal(err)
	}
}

func verifier(now time.Time, creds sigv4.Credentials) *sigv4.Verifier {
	return &sigv4.Verifier{Service: Service, MaxSkew: 5 * time.Minute, Now: func() time.Time { return now },
		Lookup: func(_ context.Context, id string) (*sigv4.Credentials, error) {
			if id != creds.AccessKeyID {
				return nil, nil
			}
			return &creds, nil
		}}
}

func wantCode(t *testing.T, err error, code, fragment string) {
	t.Helper()
	var se *sigv4.Error
	if !errors.As(err, &se) || se.Code != code || !strings.Contains(se.Message, fragment) {
		t.Fatalf("got %v; want %s mentioning %q", err, code, fragment)
	}
}

// A call signed by Credentials verifies on the server: method, authority,
// date, session token and the message's hash, in the region the client
// learned from the node.
func TestSignedCallVerifies(t *testing.T) {
	rec, addr := serve(t, "eu-west-1")
	signedAt := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	c := &Credentials{AccessKeyID: keyID, SecretAccessKey: secret, SessionToken: token, Now: func() time.Time { return signedAt }}
	req := &cofferv1.GetSecretValueRequest{SecretId: "prod/db", VersionStage: "AWSCURRENT"}
	call(t, addr, c, req)
	got := rec.last(t)
	if v := got.md.Get(payloadKey); len(v) != 1 || v[0] == UnsignedPayload {
		t.Fatalf("x-amz-content-sha256 %v; want the message's hash", v)
	}
	creds, region, err := Verify(t.Context(), verifier(signedAt.Add(time.Minute), sigv4.Credentials{AccessKeyID: keyID, SecretAccessKey: secret, SessionToken: token}),
		got.md, got.method, got.req)
	if err != nil {
		t.Fatal(err)
	}
	if creds.AccessKeyID != keyID || region != "eu-west-1" {
		t.Fatalf("verified key %q region %q; want %s in eu-west-1, the region the node named", creds.AccessKeyID, region, keyID)
	}
}

// A captured call is no credential: replayed after the window it is
// refused as expired; within the window, for another method or with another
// message, its signature does not match; with a wrong session token the key
// is not recognised.
func TestCapturedCallReplayed(t *testing.T) {
	rec, addr := serve(t, "us-east-1")
	signedAt := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	key := sigv4.Credentials{AccessKeyID: keyID, SecretAccessKey: secret}
	c := &Credentials{AccessKeyID: keyID, SecretAccessKey: secret, Region: "us-east-1", Now: func() time.Time { return signedAt }}
	req := &cofferv1.GetSecretValueRequest{SecretId: "prod/db"}
	call(t, addr, c, req)
	got := rec.last(t)
	ctx := t.Context()

	if _, _, err := Verify(ctx, verifier(signedAt.Add(4*time.Minute), key), got.md, got.method, got.req); err != nil {
		t.Fatalf("the same call within the window: %v", err)
	}
	_, _, err := Verify(ctx, verifier(signedAt.Add(6*time.Minute), key), got.md, got.method, got.req)
	wantCode(t, err, sigv4.CodeInvalidSignature, "Signature expired")

	_, _, err = Verify(ctx, verifier(signedAt.Add(time.Minute), key), got.md, "/coffer.v1.SecretsManagerService/DeleteSecret", got.req)
	wantCode(t, err, sigv4.CodeInvalidSignature, "does not match")

	_, _, err = Verify(ctx, verifier(signedAt.Add(time.Minute), key), got.md, got.method, &cofferv1.GetSecretValueRequest{SecretId: "prod/other"})
	wantCode(t, err, sigv4.CodeInvalidSignature, "x-amz-content-sha256")

	// Claiming the message was unsigned changes what was signed.
	forged := got.md.Copy()
	forged.Set(payloadKey, UnsignedPayload)
	_, _, err = Verify(ctx, verifier(signedAt.Add(time.Minute), key), forged, got.method, &cofferv1.GetSecretValueRequest{SecretId: "prod/other"})
	wantCode(t, err, sigv4.CodeInvalidSignature, "does not match")

	withToken := key
	withToken.SessionToken = "another-token"
	_, _, err = Verify(ctx, verifier(signedAt.Add(time.Minute), withToken), got.md, got.method, got.req)
	wantCode(t, err, sigv4.CodeUnrecognizedClient, "invalid")
}

// A stream carries no single message: it is signed with UNSIGNED-PAYLOAD,
// which Verify accepts with no message.
func TestStreamSignedUnsignedPayload(t *testing.T) {
	signedAt := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	c := &Credentials{AccessKeyID: keyID, SecretAccessKey: secret, Region: "us-east-1", Now: func() time.Time { return signedAt }}
	method := "/coffer.v1.AdminService/SaveSnapshot"
	var md metadata.MD
	streamer := func(ctx context.Context, _ *grpc.StreamDesc, _ *grpc.ClientConn, method string, _ ...grpc.CallOption) (grpc.ClientStream, error) {
		m, err := c.GetRequestMetadata(withMethod(ctx, method), "https://127.0.0.1:7400/coffer.v1.AdminService")
		md = metadata.New(m)
		return nil, err
	}
	if _, err := c.stream(t.Context(), &grpc.StreamDesc{}, nil, method, streamer); err != nil {
		t.Fatal(err)
	}
	if v := md.Get(payloadKey); len(v) != 1 || v[0] != UnsignedPayload {
		t.Fatalf("stream payload hash %v; want %s", v, UnsignedPayload)
	}
	md.Set(authorityKey, "127.0.0.1:7400")
	if _, _, err := Verify(t.Context(), verifier(signedAt, sigv4.Credentials{AccessKeyID: keyID, SecretAccessKey: secret}), md, method, nil); err != nil {
		t.Fatal(err)
	}
}

// Health checks and reflection are not signed: they are open, and the
// region is learned from a health check.
func TestOpenMethodsUnsigned(t *testing.T) {
	c := &Credentials{AccessKeyID: keyID, SecretAccessKey: secret}
	md, err := c.GetRequestMetadata(withMethod(t.Context(), "/grpc.health.v1.Health/Check"), "https://127.0.0.1:7400/grpc.health.v1.Health")
	if err != nil || md != nil {
		t.Fatalf("health check metadata %v, %v; want none", md, err)
	}
}

// ScopeRegion reads the region a call was signed for from the metadata the
// server receives, as an endpoint serving several regions routes on it:
// the metadata of a real signed call, not the authorization alone (a call
// for another region was once served locally, its scope unread, because
// the date beside it was left out).
func TestScopeRegion(t *testing.T) {
	rec, addr := serve(t, "us-east-1")
	c := &Credentials{AccessKeyID: keyID, SecretAccessKey: secret, Region: "us-west-2"}
	call(t, addr, c, &cofferv1.GetSecretValueRequest{SecretId: "prod/db"})
	got := rec.last(t)
	if r := ScopeRegion(got.md); r != "us-west-2" {
		t.Fatalf("ScopeRegion of a call signed for us-west-2 = %q", r)
	}
	for name, md := range map[string]metadata.MD{
		"no metadata":       nil,
		"a bearer token":    metadata.Pairs(authorizationKey, "Bearer "+keyID+":"+secret),
		"a scope too short": metadata.Pairs(authorizationKey, sigv4.Algorithm+" Credential="+keyID+"/20260301/us-west-2, SignedHeaders=host, Signature=00", dateKey, "20260301T120000Z"),
	} {
		if r := ScopeRegion(md); r != "" {
			t.Errorf("ScopeRegion of %s = %q; want none", name, r)
		}
	}
}
