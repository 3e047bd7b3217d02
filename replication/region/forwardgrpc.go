package region

import (
	"context"
	"errors"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	replicationv1 "github.com/cofferhq/coffer/proto/coffer/replication/v1"
	spb "google.golang.org/genproto/googleapis/rpc/status"
)

// GRPCCall is one unary client-API call forwarded between regions.
type GRPCCall struct {
	FullMethod string
	// Metadata is the caller's metadata (:authority and the signature
	// included), as the receiving node saw it.
	Metadata        metadata.MD
	Request         []byte
	RemoteAddr      string
	SecureTransport bool
}

// GRPCAnswer is the destination region's answer to a GRPCCall: the
// encoded response, or the call's status (an error), and the metadata the
// destination sent.
type GRPCAnswer struct {
	Response        []byte
	Status          *status.Status
	Header, Trailer metadata.MD
}

// GRPCHandler answers a forwarded call through the node's own gRPC
// handlers: authentication of the original caller, authorization, audit.
type GRPCHandler func(ctx context.Context, c GRPCCall) GRPCAnswer

// SetGRPCHandler sets the handler that answers client-API calls paired
// regions forward here. Until it is set, a forwarded call is refused as
// Unavailable.
func (m *Manager) SetGRPCHandler(h GRPCHandler) {
	m.mu.Lock()
	m.grpcAPI = h
	m.mu.Unlock()
}

// ForwardGRPC sends c to the paired region dest over the region link and
// returns dest's answer. An error is a failure to reach dest or a refusal
// of the forwarding itself, never the call's own answer.
func (m *Manager) ForwardGRPC(ctx context.Context, dest string, c GRPCCall) (GRPCAnswer, error) {
	req := &replicationv1.ForwardGRPCRequest{
		SourceRegion: m.cfg.Region, DestinationRegion: dest, FullMethod: c.FullMethod, Request: c.Request,
		RemoteAddr: c.RemoteAddr, SecureTransport: c.SecureTransport, Metadata: toHeaders(c.Metadata),
	}
	var resp *replicationv1.ForwardGRPCResponse
	err := m.call(ctx, dest, func(ctx context.Context, cc *grpc.ClientConn) error {
		var err error
		resp, err = replicationv1.NewRegionReplicationServiceClient(cc).ForwardGRPC(ctx, req)
		return err
	})
	if err != nil {
		return GRPCAnswer{}, err
	}
	a := GRPCAnswer{Response: resp.GetResponse(), Header: fromHeaders(resp.GetHeader()), Trailer: fromHeaders(resp.GetTrailer())}
	if len(resp.GetStatus()) > 0 {
		var sp spb.Status
		if err := proto.Unmarshal(resp.GetStatus(), &sp); err != nil {
			return GRPCAnswer{}, errors.New("region " + dest + ": undecodable status in a forwarded answer")
		}
		a.Status = status.FromProto(&sp)
	}
	return a, nil
}

// ForwardGRPC answers a call a paired region forwarded: the caller's
// certificate must come from the CA of the region the request names as
// its source, and the call must be for this region.
func (r *receiver) ForwardGRPC(ctx context.Context, req *replicationv1.ForwardGRPCRequest) (*replicationv1.ForwardGRPCResponse, error) {
	if err := r.verifySource(ctx, req.GetSourceRegion()); err != nil {
		return nil, err
	}
	if req.GetDestinationRegion() != r.m.cfg.Region {
		return nil, status.Errorf(codes.InvalidArgument, "call for region %s forwarded to %s", req.GetDestinationRegion(), r.m.cfg.Region)
	}
	r.m.mu.Lock()
	h := r.m.grpcAPI
	r.m.mu.Unlock()
	if h == nil {
		return nil, status.Error(codes.Unavailable, "this node does not serve the client API")
	}
	a := h(ctx, GRPCCall{
		FullMethod: req.GetFullMethod(), Metadata: fromHeaders(req.GetMetadata()), Request: req.GetRequest(),
		RemoteAddr: req.GetRemoteAddr(), SecureTransport: req.GetSecureTransport(),
	})
	out := &replicationv1.ForwardGRPCResponse{Response: a.Response, Header: toHeaders(a.Header), Trailer: toHeaders(a.Trailer)}
	if a.Status != nil && a.Status.Code() != codes.OK {
		b, err := proto.Marshal(a.Status.Proto())
		if err != nil {
			return nil, status.Errorf(codes.Internal, "encoding a forwarded call's status: %v", err)
		}
		out.Status = b
		out.Response = nil
	}
	r.m.touch(req.GetSourceRegion())
	return out, nil
}

func toHeaders(md metadata.MD) []*replicationv1.HTTPHeader {
	var out []*replicationv1.HTTPHeader
	for k, v := range md {
		out = append(out, &replicationv1.HTTPHeader{Name: k, Values: v})
	}
	return out
}

func fromHeaders(hs []*replicationv1.HTTPHeader) metadata.MD {
	md := metadata.MD{}
	for _, h := range hs {
		md[h.GetName()] = append(md[h.GetName()], h.GetValues()...)
	}
	return md
}
