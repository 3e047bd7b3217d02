package load

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server"
)

// coffer drives Coffer's gRPC API: CreateSecret, PutSecretValue with
// SecretBinary, GetSecretValue. Endpoints are plaintext, as `cofferd dev`
// serves them.
type coffer struct {
	endpoints []string
	conns     []*grpc.ClientConn
	clients   []*cofferClient
	layout    connLayout
}

type cofferClient struct {
	api cofferv1.SecretsManagerServiceClient
	// stale, when set, asks for a local read (server.ConsistencyHeader);
	// linearizable is the server's default and sends no header.
	stale bool
}

func openCoffer(cfg Config) (*coffer, error) {
	c := &coffer{endpoints: cfg.Endpoints, layout: layout(len(cfg.Endpoints), cfg.Clients, cfg.ClientsPerConn)}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if cfg.AccessKeyID != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearer("Bearer "+cfg.AccessKeyID+":"+cfg.SecretAccessKey)))
	}
	for _, e := range c.layout.endpoint {
		conn, err := grpc.NewClient(cfg.Endpoints[e], opts...)
		if err != nil {
			_ = c.Close()
			return nil, fmt.Errorf("coffer %s: %w", cfg.Endpoints[e], err)
		}
		c.conns = append(c.conns, conn)
		c.clients = append(c.clients, &cofferClient{
			api:   cofferv1.NewSecretsManagerServiceClient(conn),
			stale: cfg.Consistency == Stale,
		})
	}
	return c, nil
}

func (c *coffer) Client(i int) Client { return c.clients[c.layout.conn[i%len(c.layout.conn)]] }

func (c *coffer) Conns() int { return len(c.conns) }

// Ready asks every endpoint's gRPC health service; a node reports SERVING
// once it knows a leader and has loaded the region's keyring.
func (c *coffer) Ready(ctx context.Context) error {
	var errs []error
	seen := map[string]bool{}
	for i, conn := range c.conns {
		ep := c.endpoints[c.layout.endpoint[i]]
		if seen[ep] {
			continue
		}
		seen[ep] = true
		resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{
			Service: cofferv1.SecretsManagerService_ServiceDesc.ServiceName,
		})
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s: %w", ep, err))
		case resp.GetStatus() != healthpb.HealthCheckResponse_SERVING:
			errs = append(errs, fmt.Errorf("%s: %s", ep, resp.GetStatus()))
		}
	}
	return errors.Join(errs...)
}

// ErrorType is the AWS error type the server sent, else the gRPC code.
func (c *coffer) ErrorType(err error) string {
	if t := server.TypeOf(err); t != "" {
		return t
	}
	return grpcErrorType(err)
}

func (c *coffer) Close() error {
	var errs []error
	for _, conn := range c.conns {
		errs = append(errs, conn.Close())
	}
	return errors.Join(errs...)
}

func (c *cofferClient) Create(ctx context.Context, key string, value []byte) error {
	_, err := c.api.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: key, SecretBinary: value})
	if server.TypeOf(err) == server.TypeResourceExists {
		return nil
	}
	return err
}

func (c *cofferClient) Put(ctx context.Context, key string, value []byte) error {
	_, err := c.api.PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: key, SecretBinary: value})
	return err
}

func (c *cofferClient) Get(ctx context.Context, key string) (int, error) {
	if c.stale {
		ctx = metadata.AppendToOutgoingContext(ctx, server.ConsistencyHeader, Stale)
	}
	resp, err := c.api.GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: key})
	if err != nil {
		return 0, err
	}
	return len(resp.GetSecretBinary()), nil
}

// bearer is Coffer's gRPC credential: "authorization: Bearer
// ACCESS_KEY_ID:SECRET_ACCESS_KEY" on every call. The endpoints are
// plaintext loopback, as `cofferd dev` serves them, so it does not insist
// on transport security.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": string(b)}, nil
}

func (b bearer) RequireTransportSecurity() bool { return false }

// grpcErrorType names an error by its gRPC code, or by the context error
// that ended it on the client's side.
func grpcErrorType(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded.String()
	case errors.Is(err, context.Canceled):
		return codes.Canceled.String()
	}
	if st, ok := status.FromError(err); ok {
		return st.Code().String()
	}
	return "Other"
}
