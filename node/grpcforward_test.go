package node

import (
	"testing"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"

	"github.com/cofferhq/coffer/server/sigv4/grpcsig"
)

// callRegion routes a call on the metadata a signed client sends: the
// credential scope's region, unless x-coffer-region names one. Metadata
// signed for us-west-2 by grpcsig.Credentials (as `coffer --region` and a
// Go client sign) names us-west-2, so a node of us-east-1 forwards it
// instead of refusing it as scoped to another region — which once spent
// the caller's failed-authentication tokens until it was throttled.
func TestCallRegion(t *testing.T) {
	c := &grpcsig.Credentials{AccessKeyID: "AKIACALLREGIONTEST01", SecretAccessKey: "call/region/test/secret", Region: "us-west-2"}
	ctx := credentials.NewContextWithRequestInfo(t.Context(), credentials.RequestInfo{Method: "/coffer.v1.SecretsManagerService/ListSecrets"})
	m, err := c.GetRequestMetadata(ctx, "http://127.0.0.1:7400/coffer.v1.SecretsManagerService")
	if err != nil {
		t.Fatal(err)
	}
	signed := metadata.New(m)
	signed.Set(":authority", "127.0.0.1:7400")

	for _, tc := range []struct {
		name    string
		md      metadata.MD
		dest    string
		fromKey bool
	}{
		{"signed for us-west-2", signed, "us-west-2", false},
		{"x-coffer-region wins", metadata.Join(signed, metadata.Pairs(grpcsig.RegionHeader, "eu-west-1")), "eu-west-1", true},
		{"unsigned", metadata.Pairs("x-amz-date", "20260301T120000Z"), "", false},
		{"no metadata", nil, "", false},
	} {
		dest, fromKey := callRegion(tc.md)
		if dest != tc.dest || fromKey != tc.fromKey {
			t.Errorf("%s: callRegion = %q, %v; want %q, %v", tc.name, dest, fromKey, tc.dest, tc.fromKey)
		}
	}
}
