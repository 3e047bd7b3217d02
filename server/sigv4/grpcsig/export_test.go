package grpcsig

import (
	"context"

	"google.golang.org/grpc/credentials"
)

// withMethod is the context gRPC hands per-RPC credentials for method.
func withMethod(ctx context.Context, method string) context.Context {
	return credentials.NewContextWithRequestInfo(ctx, credentials.RequestInfo{Method: method})
}
