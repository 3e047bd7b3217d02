package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server"
)

// newToken returns a fresh ClientRequestToken (32 hex characters). It is
// safe in any goroutine: crypto/rand.Read does not fail.
func newToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// answeredIndex is the x-coffer-index response header, or 0.
func answeredIndex(t testing.TB, md metadata.MD) uint64 {
	t.Helper()
	v := md.Get(server.IndexHeader)
	if len(v) == 0 {
		return 0
	}
	idx, err := strconv.ParseUint(v[0], 10, 64)
	if err != nil {
		t.Errorf("%s header %q: %v", server.IndexHeader, v[0], err)
	}
	return idx
}

// getValue reads name's AWSCURRENT value (or versionID's, when set) with
// the given request metadata, and the index the answer reflects.
func getValue(ctx context.Context, cl cofferv1.SecretsManagerServiceClient, name, versionID string) (*cofferv1.GetSecretValueResponse, uint64, error) {
	var hdr metadata.MD
	resp, err := cl.GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: name, VersionId: versionID}, grpc.Header(&hdr))
	if err != nil {
		return nil, 0, err
	}
	idx := uint64(0)
	if v := hdr.Get(server.IndexHeader); len(v) > 0 {
		idx, _ = strconv.ParseUint(v[0], 10, 64)
	}
	return resp, idx, nil
}

// describeErr renders an RPC error with its AWS type, for messages.
func describeErr(err error) string {
	if err == nil {
		return "<nil>"
	}
	return fmt.Sprintf("%s (%v)", server.TypeOf(err), err)
}
