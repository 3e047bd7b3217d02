package server

import (
	"log/slog"
	"testing"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server/sigv4/grpcsig"
)

// A call a paired region forwarded is throttled where it is judged: the
// Dispatcher counts the caller's failed authentications against its source
// (the caller's address, not the forwarding node's) and, once the source's
// burst is spent, refuses its calls as ThrottlingException before decoding
// them — as the listener's tap does for a direct caller — while calls that
// authenticate spend nothing and other sources are untouched.
func TestDispatcherThrottlesForwardedFailures(t *testing.T) {
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
	gate := &Gate{Limit: NewSourceLimiter(0.001, 2), Region: svc.Region()}
	auth := NewGRPCAuth(GRPCAuthConfig{IAM: iam, Region: svc.Region(), Log: slog.New(slog.DiscardHandler)})
	d := NewGRPCDispatcher(Services{Secrets: svc}, slog.New(slog.DiscardHandler), auth, gate)

	const method = "/coffer.v1.SecretsManagerService/ListSecrets"
	signed := func(secret string) metadata.MD {
		c := &grpcsig.Credentials{AccessKeyID: k.GetAccessKeyId(), SecretAccessKey: secret, Region: svc.Region()}
		m, err := c.GetRequestMetadata(credentials.NewContextWithRequestInfo(ctx, credentials.RequestInfo{Method: method}),
			"http://127.0.0.1:7400/coffer.v1.SecretsManagerService")
		if err != nil {
			t.Fatal(err)
		}
		md := metadata.New(m)
		md.Set(":authority", "127.0.0.1:7400")
		return md
	}
	invoke := func(md metadata.MD, from string) error {
		_, _, _, err := d.Invoke(ctx, DispatchedCall{FullMethod: method, Metadata: md, RemoteAddr: from})
		return err
	}
	const caller, other = "10.2.2.2:5000", "10.2.2.3:5000"
	good, bad := signed(k.GetSecretAccessKey()), signed("not-"+k.GetSecretAccessKey())

	for range 3 {
		if err := invoke(good, caller); err != nil {
			t.Fatalf("a forwarded call that authenticates: %v", err)
		}
	}
	for range 2 {
		if err := invoke(bad, caller); TypeOf(err) != "InvalidSignatureException" {
			t.Fatalf("a forwarded call with a wrong key: %v (%s), want InvalidSignatureException", err, TypeOf(err))
		}
	}
	for _, md := range []metadata.MD{bad, good} {
		if err := invoke(md, caller); TypeOf(err) != TypeThrottling {
			t.Fatalf("a forwarded call from a source whose burst is spent: %v (%s), want ThrottlingException", err, TypeOf(err))
		}
	}
	if err := invoke(good, other); err != nil {
		t.Fatalf("another source's forwarded call: %v", err)
	}
}
