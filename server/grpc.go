package server

import (
	"context"
	"errors"
	"log/slog"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// RequestIDHeader is the response header that carries the request id, which
// also appears in the server's logs and in the Raft command.
const RequestIDHeader = "x-coffer-request-id"

type requestIDKey struct{}

// RequestID returns the id of the request ctx belongs to, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// WithRequestID returns ctx carrying a request id.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// GRPCAuth authenticates a call and returns the caller's principal. It is
// not consulted for health checks and reflection.
type GRPCAuth func(ctx context.Context, fullMethod string) (principal string, err error)

type principalKey struct{}

// PrincipalFrom returns the authenticated principal of a request, or "".
func PrincipalFrom(ctx context.Context) string {
	p, _ := ctx.Value(principalKey{}).(string)
	return p
}

// WithPrincipal returns ctx carrying the authenticated principal.
func WithPrincipal(ctx context.Context, p string) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

func openMethod(fullMethod string) bool {
	return strings.HasPrefix(fullMethod, "/grpc.health.") || strings.HasPrefix(fullMethod, "/grpc.reflection.")
}

// BearerAuth authenticates gRPC calls with "authorization: Bearer
// ACCESS_KEY_ID:SECRET_ACCESS_KEY". allowAnonymous (cofferd dev only) lets
// calls without the header through as "anonymous".
func BearerAuth(iam *IAM, allowAnonymous bool) GRPCAuth {
	return func(ctx context.Context, _ string) (string, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		v := first(md, "authorization")
		if v == "" {
			if allowAnonymous {
				return "anonymous", nil
			}
			return "", apiErr(TypeMissingAuthToken, "Request is missing Authentication Token: send authorization: Bearer ACCESS_KEY_ID:SECRET_ACCESS_KEY.")
		}
		scheme, token, _ := strings.Cut(v, " ")
		if !strings.EqualFold(scheme, "Bearer") {
			return "", apiErr(TypeIncompleteSignature, "The authorization header must use the Bearer scheme.")
		}
		return iam.CheckBearer(ctx, strings.TrimSpace(token))
	}
}

// NewGRPCServer returns a gRPC server serving svc, gRPC health (reporting
// SERVING once the service is ready) and reflection, so grpcurl works.
// auth, when non-nil, authenticates every other call.
func NewGRPCServer(svc *Service, log *slog.Logger, auth GRPCAuth, opts ...grpc.ServerOption) (*grpc.Server, *health.Server) {
	opts = append(opts, grpc.ChainUnaryInterceptor(unaryInterceptor(log, auth)), grpc.ChainStreamInterceptor(streamInterceptor(auth)))
	srv := grpc.NewServer(opts...)
	cofferv1.RegisterSecretsManagerServiceServer(srv, svc)
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	hs.SetServingStatus(cofferv1.SecretsManagerService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	reflection.Register(srv)
	return srv, hs
}

// SetServing marks the health service serving or not.
func SetServing(hs *health.Server, serving bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if serving {
		st = healthpb.HealthCheckResponse_SERVING
	}
	hs.SetServingStatus("", st)
	hs.SetServingStatus(cofferv1.SecretsManagerService_ServiceDesc.ServiceName, st)
}

// unaryInterceptor gives every request an id, turns every error into an
// AWS-typed status, turns a panic into InternalServiceError instead of a
// crashed node, and logs one line per request — never a value.
func streamInterceptor(auth GRPCAuth) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if auth == nil || openMethod(info.FullMethod) {
			return handler(srv, ss)
		}
		p, err := auth(ss.Context(), info.FullMethod)
		if err != nil {
			return AsAPIError(err)
		}
		return handler(srv, &principalStream{ServerStream: ss, ctx: WithPrincipal(ss.Context(), p)})
	}
}

type principalStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *principalStream) Context() context.Context { return s.ctx }

func unaryInterceptor(log *slog.Logger, auth GRPCAuth) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		id := uuid.NewString()
		ctx = WithRequestID(ctx, id)
		_ = grpc.SetHeader(ctx, metadata.Pairs(RequestIDHeader, id))
		start := time.Now()
		var attrs []any
		md, _ := metadata.FromIncomingContext(ctx)
		consistency, cerr := ParseConsistency(first(md, ConsistencyHeader), first(md, MinIndexHeader))
		ctx = WithConsistency(ctx, consistency)
		defer func() {
			if p := recover(); p != nil {
				log.Error("request panicked", "request_id", id, "method", info.FullMethod, "panic", p, "stack", string(debug.Stack()))
				resp, err = nil, &APIError{Type: TypeInternalServiceError, Message: "An error occurred on the server side."}
			}
			level := slog.LevelInfo
			attrs = append(attrs, "request_id", id, "method", info.FullMethod, "duration", time.Since(start))
			if err != nil {
				ae := AsAPIError(err)
				if ae.Type == TypeInternalServiceError {
					level = slog.LevelError
					attrs = append(attrs, "cause", errors.Unwrap(ae))
				}
				attrs = append(attrs, "error_type", ae.Type)
				err = ae
			}
			if idx := AnsweredIndex(ctx); idx > 0 {
				_ = grpc.SetHeader(ctx, metadata.Pairs(IndexHeader, strconv.FormatUint(idx, 10)))
			}
			log.Log(ctx, level, "request", attrs...)
		}()
		if cerr != nil {
			return nil, cerr
		}
		if auth != nil && !openMethod(info.FullMethod) {
			p, aerr := auth(ctx, info.FullMethod)
			if aerr != nil {
				return nil, aerr
			}
			ctx = WithPrincipal(ctx, p)
			attrs = append(attrs, "principal", p)
		}
		return handler(ctx, req)
	}
}

func first(md metadata.MD, key string) string {
	if v := md.Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}
