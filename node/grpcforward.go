package node

import (
	"context"
	"fmt"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/cofferhq/coffer/replication/region"
	"github.com/cofferhq/coffer/server"
	"github.com/cofferhq/coffer/server/sigv4/grpcsig"
)

// callRegion is the region a gRPC call is for: its x-coffer-region
// metadata, else (for a SigV4-signed call) its credential scope's region,
// else "" (this node's).
func callRegion(md metadata.MD) (dest string, fromKey bool) {
	if v := md.Get(grpcsig.RegionHeader); len(v) > 0 && v[0] != "" {
		return v[0], true
	}
	return grpcsig.ScopeRegion(md), false
}

// forwardGRPC is the first unary interceptor of the client API: a call for
// another, paired region is forwarded whole over the region link and
// answered there (authenticated from the caller's own signature,
// authorized and audited by that region); its answer is returned as that
// region gave it. A call naming, by metadata, a region that is not paired
// is refused. Streams stay with this node.
func (n *Node) forwardGRPC(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if n.dispatch == nil || !n.dispatch.Unary(info.FullMethod) {
		return handler(ctx, req)
	}
	md, _ := metadata.FromIncomingContext(ctx)
	own := n.opts.Service.Region
	dest, fromKey := callRegion(md)
	if dest == "" || dest == own {
		return handler(ctx, req)
	}
	if n.region == nil || !n.region.Paired(dest) {
		if !fromKey {
			return handler(ctx, req) // refused there: the scope names another region
		}
		return nil, (&server.APIError{Type: server.TypeInvalidParameter,
			Message: fmt.Sprintf("Region '%s' (%s metadata) is not paired with %s, which this endpoint serves.", dest, grpcsig.RegionHeader, own)}).GRPCStatus().Err()
	}
	msg, ok := req.(proto.Message)
	if !ok {
		return handler(ctx, req)
	}
	body, err := proto.MarshalOptions{Deterministic: true}.Marshal(msg)
	if err != nil {
		return nil, (&server.APIError{Type: server.TypeInternalServiceError, Message: "An error occurred on the server side."}).GRPCStatus().Err()
	}
	call := region.GRPCCall{FullMethod: info.FullMethod, Metadata: md, Request: body}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		call.RemoteAddr = p.Addr.String()
		_, call.SecureTransport = p.AuthInfo.(credentials.TLSInfo)
	}
	a, err := n.region.ForwardGRPC(ctx, dest, call)
	if err != nil {
		n.log.Warn("forwarding a gRPC call to its region failed", "region", dest, "method", info.FullMethod, "err", err)
		return nil, (&server.APIError{Type: server.TypeServiceUnavailable,
			Message: fmt.Sprintf("Region %s, which the call is for, cannot be reached from this endpoint; retry.", dest)}).GRPCStatus().Err()
	}
	if len(a.Header) > 0 {
		_ = grpc.SetHeader(ctx, a.Header)
	}
	if len(a.Trailer) > 0 {
		_ = grpc.SetTrailer(ctx, a.Trailer)
	}
	if a.Status != nil {
		return nil, a.Status.Err()
	}
	out, err := newResponse(info.FullMethod)
	if err == nil {
		err = proto.Unmarshal(a.Response, out)
	}
	if err != nil {
		n.log.Warn("a forwarded gRPC answer could not be decoded", "region", dest, "method", info.FullMethod, "err", err)
		return nil, (&server.APIError{Type: server.TypeInternalServiceError, Message: "An error occurred on the server side."}).GRPCStatus().Err()
	}
	return out, nil
}

// newResponse is an empty response message of a unary method, found by
// its full name in the registered protobuf descriptors.
func newResponse(fullMethod string) (proto.Message, error) {
	svc, method, ok := strings.Cut(strings.TrimPrefix(fullMethod, "/"), "/")
	if !ok {
		return nil, fmt.Errorf("malformed method %q", fullMethod)
	}
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svc))
	if err != nil {
		return nil, err
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return nil, fmt.Errorf("%s is no service", svc)
	}
	md := sd.Methods().ByName(protoreflect.Name(method))
	if md == nil {
		return nil, fmt.Errorf("no method %s", fullMethod)
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByName(md.Output().FullName())
	if err != nil {
		return nil, err
	}
	return mt.New().Interface(), nil
}

// answerForwardedGRPC serves a call a paired region forwarded here.
func (n *Node) answerForwardedGRPC(ctx context.Context, c region.GRPCCall) region.GRPCAnswer {
	out, header, trailer, err := n.dispatch.Invoke(ctx, server.DispatchedCall{
		FullMethod: c.FullMethod, Metadata: c.Metadata, Request: c.Request, RemoteAddr: c.RemoteAddr, SecureTransport: c.SecureTransport,
	})
	a := region.GRPCAnswer{Response: out, Header: header, Trailer: trailer}
	if err != nil {
		a.Status = status.Convert(err)
	}
	return a
}
