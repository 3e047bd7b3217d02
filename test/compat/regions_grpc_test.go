package compat

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	cserver "github.com/cofferhq/coffer/server"
	"github.com/cofferhq/coffer/server/sigv4/grpcsig"
	"github.com/cofferhq/coffer/storage"
	"github.com/cofferhq/coffer/test/wait"
)

// grpcRegionClient is a client-API connection to s's one gRPC endpoint
// whose calls are signed for region, as `coffer --region` signs them.
func (s *server) grpcRegionClient(t *testing.T, region string) cofferv1.SecretsManagerServiceClient {
	t.Helper()
	c := &grpcsig.Credentials{AccessKeyID: accessKeyID, SecretAccessKey: secretAccessKey, Region: region}
	conn, err := grpc.NewClient(s.grpcAddr, append(c.DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return cofferv1.NewSecretsManagerServiceClient(conn)
}

// TestOneGRPCEndpointForEveryRegion is the gRPC half of issue 18 §1:
// against `cofferd dev --regions us-east-1,us-west-2`, one gRPC endpoint
// (the first region's node), a call signed for us-west-2 is forwarded over
// the region link and answered by us-west-2 — authenticated there from
// its own signature — with us-west-2's errors and metadata; a region that
// is not paired is refused.
func TestOneGRPCEndpointForEveryRegion(t *testing.T) {
	s := startDevRegions(t, "us-east-1,us-west-2")
	ctx := context.Background()
	east, west := s.grpcRegionClient(t, "us-east-1"), s.grpcRegionClient(t, "us-west-2")
	for _, c := range []cofferv1.SecretsManagerServiceClient{east, west} {
		wait.Until(t, 90*time.Second, func() error {
			_, err := c.ListSecrets(ctx, &cofferv1.ListSecretsRequest{})
			return err
		})
	}

	created, err := east.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: "grpc/multi", SecretString: proto.String("g1"),
		AddReplicaRegions: []*cofferv1.ReplicaRegion{{Region: "us-west-2"}}})
	if err != nil {
		t.Fatalf("CreateSecret in us-east-1 with a us-west-2 replica: %v", err)
	}
	var replica *cofferv1.GetSecretValueResponse
	var header metadata.MD
	wait.True(t, 60*time.Second, "the replica to be readable through the us-west-2 client", func() bool {
		replica, err = west.GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: "grpc/multi"}, grpc.Header(&header))
		return err == nil
	})
	if replica.GetSecretString() != "g1" || replica.GetArn() != storage.WithRegion(created.GetArn(), "us-west-2") {
		t.Fatalf("replica read: %q %s", replica.GetSecretString(), replica.GetArn())
	}
	if got := header.Get(grpcsig.RegionHeader); len(got) != 1 || got[0] != "us-west-2" {
		t.Fatalf("the forwarded answer's %s header: %v, want us-west-2's", grpcsig.RegionHeader, got)
	}
	if got := header.Get(cserver.RequestIDHeader); len(got) != 1 || got[0] == "" {
		t.Fatalf("the forwarded answer carries no request id: %v", header)
	}
	// us-west-2's own errors, with their AWS type: the replica is read-only.
	_, err = west.PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: "grpc/multi", SecretString: proto.String("w")})
	if err == nil || cserver.TypeOf(err) == cserver.TypeServiceUnavailable {
		t.Fatalf("write to the replica through us-west-2: %v, want its refusal", err)
	}
	_, err = west.DescribeSecret(ctx, &cofferv1.DescribeSecretRequest{SecretId: "grpc/absent"})
	if cserver.TypeOf(err) != cserver.TypeResourceNotFound {
		t.Fatalf("DescribeSecret of an absent secret in us-west-2: %v (%s)", err, cserver.TypeOf(err))
	}
	// us-west-2 authenticates the original signature: a wrong secret key
	// signed for us-west-2 is refused there, not let through by the hop.
	bad := &grpcsig.Credentials{AccessKeyID: accessKeyID, SecretAccessKey: "not-" + secretAccessKey, Region: "us-west-2"}
	conn, err := grpc.NewClient(s.grpcAddr, append(bad.DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = cofferv1.NewSecretsManagerServiceClient(conn).GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: "grpc/multi"})
	if typ := cserver.TypeOf(err); typ != "SignatureDoesNotMatch" && typ != cserver.TypeAccessDeniedException && typ != "InvalidSignatureException" {
		t.Fatalf("a bad signature for us-west-2: %v (%s)", err, typ)
	}
	// A region this deployment does not serve: named by metadata, refused
	// as not paired; named by the credential scope, refused as AWS does.
	_, err = east.ListSecrets(metadata.AppendToOutgoingContext(ctx, grpcsig.RegionHeader, "eu-west-1"), &cofferv1.ListSecretsRequest{})
	if cserver.TypeOf(err) != cserver.TypeInvalidParameter {
		t.Fatalf("x-coffer-region eu-west-1: %v (%s), want InvalidParameterException", err, cserver.TypeOf(err))
	}
	_, err = s.grpcRegionClient(t, "eu-west-1").ListSecrets(ctx, &cofferv1.ListSecretsRequest{})
	if cserver.TypeOf(err) != "InvalidSignatureException" {
		t.Fatalf("signed for eu-west-1: %v (%s), want InvalidSignatureException", err, cserver.TypeOf(err))
	}
}
