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
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/tap"
	"google.golang.org/protobuf/proto"

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

// GRPCAuth authenticates a call and returns the caller's identity; req is
// the request message (nil for a stream), whose hash a signature covers. It
// is not consulted for health checks and reflection. NewGRPCAuth is the
// node's.
type GRPCAuth func(ctx context.Context, fullMethod string, req proto.Message) (Identity, error)

// Identity is an authenticated caller: the principal, and the access key
// it signed with ("" when a client certificate identified it).
type Identity struct {
	Principal   string
	AccessKeyID string
	// Session is set when the key is temporary credentials
	// (GetSessionToken), which may not change IAM (sessionRefused).
	Session bool
}

type identityKey struct{}

// PrincipalFrom returns the authenticated principal of a request, or "".
func PrincipalFrom(ctx context.Context) string {
	return IdentityFrom(ctx).Principal
}

// IdentityFrom returns the authenticated identity of a request.
func IdentityFrom(ctx context.Context) Identity {
	id, _ := ctx.Value(identityKey{}).(Identity)
	return id
}

// WithPrincipal returns ctx carrying the authenticated principal.
func WithPrincipal(ctx context.Context, p string) context.Context {
	return WithIdentity(ctx, Identity{Principal: p})
}

// WithIdentity returns ctx carrying the authenticated identity.
func WithIdentity(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

func openMethod(fullMethod string) bool {
	return strings.HasPrefix(fullMethod, "/grpc.health.") || strings.HasPrefix(fullMethod, "/grpc.reflection.")
}

// Services are the client API's gRPC services (coffer.v1). A node serves
// all of them; a nil one is left out, for tests that serve only some.
type Services struct {
	Secrets  *Service
	Admin    *Admin
	IAM      *IAM
	Rotation *Rotation
	Region   *RegionAPI
	Watch    *WatchAPI
	Keys     *Keys
	// Seal is the running node's SealService (seal status, rekey), which
	// cmd/cofferd provides: it owns the seal's description.
	Seal cofferv1.SealServiceServer
}

// Register registers every service that is set on srv: the one list of
// what the client API serves.
func (s Services) Register(srv grpc.ServiceRegistrar) {
	if s.Secrets != nil {
		cofferv1.RegisterSecretsManagerServiceServer(srv, s.Secrets)
	}
	if s.Admin != nil {
		cofferv1.RegisterAdminServiceServer(srv, s.Admin)
	}
	if s.IAM != nil {
		cofferv1.RegisterIAMServiceServer(srv, s.IAM)
	}
	if s.Rotation != nil {
		cofferv1.RegisterRotationServiceServer(srv, s.Rotation)
	}
	if s.Region != nil {
		cofferv1.RegisterRegionServiceServer(srv, s.Region)
	}
	if s.Watch != nil {
		cofferv1.RegisterWatchServiceServer(srv, s.Watch)
	}
	if s.Keys != nil {
		cofferv1.RegisterKeyServiceServer(srv, s.Keys)
	}
	if s.Seal != nil {
		cofferv1.RegisterSealServiceServer(srv, s.Seal)
	}
}

// NewGRPCServer returns a gRPC server serving api (Services.Register),
// gRPC health (reporting SERVING once the node is ready) and reflection,
// so grpcurl works. auth, when non-nil, authenticates every other call;
// gate, when non-nil, authorizes and audits it.
func NewGRPCServer(api Services, log *slog.Logger, auth GRPCAuth, gate *Gate, opts ...grpc.ServerOption) (*grpc.Server, *health.Server) {
	opts = append(opts, grpc.ChainUnaryInterceptor(unaryInterceptor(log, auth, gate)), grpc.ChainStreamInterceptor(streamInterceptor(log, auth, gate)))
	if gate != nil && gate.Limit != nil {
		opts = append(opts, grpc.InTapHandle(throttleTap(gate)))
	}
	srv := grpc.NewServer(opts...)
	api.Register(srv)
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

// throttleTap refuses a call from a source that has used up its failed
// authentications (Gate.Throttle) as soon as its headers arrive: before
// its message is read or decoded, and before it takes a stream's worth of
// the server's work.
func throttleTap(gate *Gate) tap.ServerInHandle {
	return func(ctx context.Context, info *tap.Info) (context.Context, error) {
		if openMethod(info.FullMethodName) {
			return ctx, nil
		}
		if err := gate.Throttle(ctx, edgeCall(ctx, info.FullMethodName, Identity{}, nil)); err != nil {
			return ctx, AsAPIError(err).GRPCStatus().Err()
		}
		return ctx, nil
	}
}

// edgeCall describes a gRPC call for the Gate.
func edgeCall(ctx context.Context, fullMethod string, id Identity, req proto.Message) Call {
	action, op := actionFor(fullMethod)
	c := Call{Protocol: "grpc", Operation: op, Action: action, Request: req,
		Caller: Caller{Principal: id.Principal, AccessKeyID: id.AccessKeyID, Session: id.Session}}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		c.SourceAddr = p.Addr.String()
		c.Caller.SourceIP = hostOf(c.SourceAddr)
		_, c.Caller.SecureTransport = p.AuthInfo.(credentials.TLSInfo)
	}
	return c
}

// streamInterceptor authenticates, authorizes and audits streaming calls
// (snapshot save and restore), turns a panic into InternalServiceError as
// the unary interceptor does, and logs one line per call: the cause of an
// InternalServiceError goes to the log with the request id, never to the
// caller.
func streamInterceptor(log *slog.Logger, auth GRPCAuth, gate *Gate) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
		if auth == nil || openMethod(info.FullMethod) {
			return handler(srv, ss)
		}
		ctx := WithRequestID(ss.Context(), uuid.NewString())
		gate.setRegionHeader(ctx)
		start := time.Now()
		gate.RequestStarted("grpc")
		var principal string
		defer func() {
			if p := recover(); p != nil {
				log.Error("stream panicked", "request_id", RequestID(ctx), "method", info.FullMethod, "panic", p, "stack", string(debug.Stack()))
				err = &APIError{Type: TypeInternalServiceError, Message: "An error occurred on the server side."}
			}
			level := gate.requestLogLevel()
			attrs := []any{"request_id", RequestID(ctx), "method", info.FullMethod, "duration", time.Since(start)}
			if principal != "" {
				attrs = append(attrs, "principal", principal)
			}
			if err != nil {
				ae := AsAPIError(err)
				if ae.Type == TypeInternalServiceError {
					level = slog.LevelError
					attrs = append(attrs, "cause", errors.Unwrap(ae))
				}
				attrs = append(attrs, "error_type", ae.Type)
				err = ae
			}
			gate.RequestDone("grpc", methodName(info.FullMethod), errType(err), time.Since(start))
			log.Log(ctx, level, "stream", attrs...)
		}()
		// Before authentication: a starting node may not have the caller's
		// key yet, and must not call it unknown.
		if e := gate.NotReady(); e != nil {
			return e
		}
		id, err := auth(ctx, info.FullMethod, nil)
		if err != nil {
			return gate.Refused(ctx, edgeCall(ctx, info.FullMethod, Identity{}, nil), err)
		}
		principal = id.Principal
		// Begin refuses before the stream starts when the audit log is
		// broken: no snapshot leaves, and none is restored, unaudited.
		ctx, x, err := gate.Begin(WithIdentity(ctx, id), edgeCall(ctx, info.FullMethod, id, nil))
		if err != nil {
			return err
		}
		_, err = x.Serve(func() (proto.Message, error) {
			return nil, handler(srv, &principalStream{ServerStream: ss, ctx: ctx})
		})
		return err
	}
}

type principalStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *principalStream) Context() context.Context { return s.ctx }

// unaryInterceptor gives every request an id, authenticates it, authorizes
// and audits it through the Gate, turns every error into an AWS-typed
// status, turns a panic into InternalServiceError instead of a crashed
// node, and logs one line per request — never a value.
func unaryInterceptor(log *slog.Logger, auth GRPCAuth, gate *Gate) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		id := uuid.NewString()
		ctx = WithRequestID(ctx, id)
		_ = grpc.SetHeader(ctx, metadata.Pairs(RequestIDHeader, id))
		gate.setRegionHeader(ctx)
		start := time.Now()
		gate.RequestStarted("grpc")
		var attrs []any
		md, _ := metadata.FromIncomingContext(ctx)
		consistency, cerr := ParseConsistency(first(md, ConsistencyHeader), first(md, MinIndexHeader))
		ctx = WithConsistency(ctx, consistency)
		defer func() {
			if p := recover(); p != nil {
				log.Error("request panicked", "request_id", id, "method", info.FullMethod, "panic", p, "stack", string(debug.Stack()))
				resp, err = nil, &APIError{Type: TypeInternalServiceError, Message: "An error occurred on the server side."}
			}
			level := gate.requestLogLevel()
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
			gate.RequestDone("grpc", methodName(info.FullMethod), errType(err), time.Since(start))
			if idx := AnsweredIndex(ctx); idx > 0 {
				_ = grpc.SetHeader(ctx, metadata.Pairs(IndexHeader, strconv.FormatUint(idx, 10)))
			}
			log.Log(ctx, level, "request", attrs...)
		}()
		msg, _ := req.(proto.Message)
		if auth == nil || openMethod(info.FullMethod) {
			if cerr != nil {
				return nil, cerr
			}
			return handler(ctx, req)
		}
		// Before authentication: a starting node may not have the caller's
		// key yet, and must not call it unknown.
		if e := gate.NotReady(); e != nil {
			return nil, e
		}
		ident, aerr := auth(ctx, info.FullMethod, msg)
		if aerr != nil {
			return nil, gate.Refused(ctx, edgeCall(ctx, info.FullMethod, Identity{}, msg), aerr)
		}
		ctx = WithIdentity(ctx, ident)
		attrs = append(attrs, "principal", ident.Principal)
		call := edgeCall(ctx, info.FullMethod, ident, msg)
		if cerr != nil {
			return nil, gate.Refused(ctx, call, cerr)
		}
		ctx, x, gerr := gate.Begin(ctx, call)
		if gerr != nil {
			return nil, gerr
		}
		// Serve audits a panic before it reaches the recover above.
		if _, err = x.Serve(func() (proto.Message, error) {
			r, herr := handler(ctx, req)
			resp = r
			out, _ := r.(proto.Message)
			return out, herr
		}); err != nil {
			return nil, err
		}
		return resp, nil
	}
}

func first(md metadata.MD, key string) string {
	if v := md.Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}
