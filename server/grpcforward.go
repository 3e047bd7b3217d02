package server

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Dispatcher answers unary client-API calls that reach the node other than
// on its gRPC listener — calls a paired region forwarded over the region
// link — through the same handlers and the same interceptor (request id,
// authentication, authorization, audit, logging) as NewGRPCServer's.
type Dispatcher struct {
	methods     map[string]grpc.MethodDesc
	impls       map[string]any
	interceptor grpc.UnaryServerInterceptor
	gate        *Gate
}

// NewGRPCDispatcher returns a Dispatcher for api, authenticating with auth
// and authorizing and auditing with gate, as NewGRPCServer does — its
// throttle of sources that keep failing to authenticate included.
func NewGRPCDispatcher(api Services, log *slog.Logger, auth GRPCAuth, gate *Gate) *Dispatcher {
	d := &Dispatcher{methods: map[string]grpc.MethodDesc{}, impls: map[string]any{}, interceptor: unaryInterceptor(log, auth, gate), gate: gate}
	api.Register(d)
	return d
}

// RegisterService records the unary methods of one service
// (grpc.ServiceRegistrar). Streams are not dispatched: they stay with the
// node the caller reached.
func (d *Dispatcher) RegisterService(desc *grpc.ServiceDesc, impl any) {
	for _, m := range desc.Methods {
		full := "/" + desc.ServiceName + "/" + m.MethodName
		d.methods[full] = m
		d.impls[full] = impl
	}
}

// Unary reports whether fullMethod is a unary client-API method.
func (d *Dispatcher) Unary(fullMethod string) bool {
	_, ok := d.methods[fullMethod]
	return ok
}

// DispatchedCall is one call for Dispatcher.Invoke.
type DispatchedCall struct {
	FullMethod string
	// Metadata is the caller's metadata, as the node that received the
	// call saw it (:authority included).
	Metadata metadata.MD
	// Request is the encoded request message.
	Request []byte
	// RemoteAddr is the caller's address; SecureTransport whether it
	// reached the receiving node over TLS.
	RemoteAddr      string
	SecureTransport bool
}

// Invoke serves c and returns the encoded response, the header and trailer
// metadata the handlers set, and the call's error (a status error, as a
// gRPC client would see it).
func (d *Dispatcher) Invoke(ctx context.Context, c DispatchedCall) (out []byte, header, trailer metadata.MD, err error) {
	m, ok := d.methods[c.FullMethod]
	if !ok {
		return nil, nil, nil, status.Errorf(codes.Unimplemented, "unknown method %s", c.FullMethod)
	}
	p := &peer.Peer{Addr: remoteAddr(c.RemoteAddr)}
	if c.SecureTransport {
		p.AuthInfo = credentials.TLSInfo{}
	}
	st := &dispatchStream{method: c.FullMethod, header: metadata.MD{}, trailer: metadata.MD{}}
	ctx = peer.NewContext(metadata.NewIncomingContext(ctx, c.Metadata.Copy()), p)
	ctx = grpc.NewContextWithServerTransportStream(ctx, st)
	// The caller's failed authentications are counted here, where they
	// are judged (Gate.Refused), so they are throttled here too, as the
	// listener's tap throttles a direct caller: before the message is
	// decoded. The node that forwarded the call counts none of them.
	if err := d.gate.Throttle(ctx, edgeCall(ctx, c.FullMethod, Identity{}, nil)); err != nil {
		return nil, nil, nil, AsAPIError(err).GRPCStatus().Err()
	}
	dec := func(v any) error {
		msg, ok := v.(proto.Message)
		if !ok {
			return status.Errorf(codes.Internal, "request of %s is no protobuf message", c.FullMethod)
		}
		if err := proto.Unmarshal(c.Request, msg); err != nil {
			return status.Errorf(codes.InvalidArgument, "forwarded request of %s: %v", c.FullMethod, err)
		}
		return nil
	}
	resp, err := m.Handler(d.impls[c.FullMethod], ctx, dec, d.interceptor)
	st.mu.Lock()
	header, trailer = st.header, st.trailer
	st.mu.Unlock()
	if err != nil {
		return nil, header, trailer, status.Convert(err).Err()
	}
	msg, ok := resp.(proto.Message)
	if !ok {
		return nil, header, trailer, status.Errorf(codes.Internal, "response of %s is no protobuf message", c.FullMethod)
	}
	if out, err = proto.Marshal(msg); err != nil {
		return nil, header, trailer, status.Errorf(codes.Internal, "encoding the response of %s: %v", c.FullMethod, err)
	}
	return out, header, trailer, nil
}

// remoteAddr parses host:port into a net.Addr for peer.Peer (the audit's
// source address, the loopback test for bearer tokens).
func remoteAddr(s string) net.Addr {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return net.TCPAddrFromAddrPort(ap)
	}
	return dispatchAddr(s)
}

type dispatchAddr string

func (a dispatchAddr) Network() string { return "forwarded" }
func (a dispatchAddr) String() string  { return string(a) }

// dispatchStream collects the header and trailer a dispatched call's
// handlers set (grpc.SetHeader, grpc.SetTrailer).
type dispatchStream struct {
	method          string
	mu              sync.Mutex
	header, trailer metadata.MD
}

func (s *dispatchStream) Method() string { return s.method }

func (s *dispatchStream) SetHeader(md metadata.MD) error {
	s.mu.Lock()
	s.header = metadata.Join(s.header, md)
	s.mu.Unlock()
	return nil
}

func (s *dispatchStream) SendHeader(md metadata.MD) error { return s.SetHeader(md) }

func (s *dispatchStream) SetTrailer(md metadata.MD) error {
	s.mu.Lock()
	s.trailer = metadata.Join(s.trailer, md)
	s.mu.Unlock()
	return nil
}

var _ grpc.ServerTransportStream = (*dispatchStream)(nil)
