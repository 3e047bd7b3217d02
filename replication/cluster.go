package replication

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
	replicationv1 "github.com/cofferhq/coffer/proto/coffer/replication/v1"
	"github.com/cofferhq/coffer/storage"
)

// reasonNotLeader marks a cluster RPC refused because the callee is not the
// leader; the caller looks the leader up again and retries.
const reasonNotLeader = "NOT_LEADER"

// statusDomain is the ErrorInfo domain of cluster RPC refusals.
const statusDomain = "coffer.replication.v1"

// refusals are the node errors a cluster RPC carries to its caller by
// ErrorInfo reason, so that the caller gets the callee's sentinel back (an
// operator's RemovePeer or RestoreSnapshot made on a follower runs on the
// leader) and server/ can answer with a typed error rather than the text.
var refusals = []struct {
	reason string
	code   codes.Code
	err    error
}{
	{reasonNotLeader, codes.FailedPrecondition, ErrNotLeader},
	{"UNKNOWN_PEER", codes.NotFound, ErrUnknownPeer},
	{"REMOVE_LEADER", codes.FailedPrecondition, ErrRemoveLeader},
	{"BAD_SNAPSHOT", codes.InvalidArgument, storage.ErrBadSnapshot},
	{reasonLowDisk, codes.ResourceExhausted, ErrLowDiskSpace},
}

// reasonLowDisk marks a forwarded write the leader refused for low disk
// space (ErrLowDiskSpace).
const reasonLowDisk = "LOW_DISK"

// clusterService is the ClusterService a node serves to its peers.
type clusterService struct {
	replicationv1.UnimplementedClusterServiceServer
	n *Node
}

func notLeaderStatus(err error) error {
	return refusal(reasonNotLeader, codes.FailedPrecondition, err.Error())
}

func refusal(reason string, code codes.Code, msg string) error {
	st := status.New(code, msg)
	if d, e := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: statusDomain}); e == nil {
		st = d
	}
	return st.Err()
}

// toStatus renders a node error for a peer. A refused snapshot travels with
// its reason alone, which the caller turns back into a SnapshotError.
func toStatus(err error) error {
	for _, r := range refusals {
		if !errors.Is(err, r.err) {
			continue
		}
		msg := err.Error()
		var se *storage.SnapshotError
		if errors.As(err, &se) {
			msg = se.Reason
		}
		return refusal(r.reason, r.code, msg)
	}
	switch {
	case errors.Is(err, ErrNoLeader), errors.Is(err, ErrShutdown), errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.Unavailable, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}

// fromStatus turns a peer's answer back into a node error.
func fromStatus(err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	for _, d := range st.Details() {
		info, ok := d.(*errdetails.ErrorInfo)
		if !ok || info.GetDomain() != statusDomain {
			continue
		}
		if info.GetReason() == reasonClusterMismatch {
			return fmt.Errorf("%w (refused by the peer): %s", ErrClusterMismatch, st.Message())
		}
		for _, r := range refusals {
			if info.GetReason() != r.reason {
				continue
			}
			if r.err == storage.ErrBadSnapshot {
				return &storage.SnapshotError{Reason: st.Message()}
			}
			return fmt.Errorf("%w: %s", r.err, st.Message())
		}
	}
	switch st.Code() {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
		return fmt.Errorf("%w: %s", errPeerUnreachable, st.Message())
	}
	return fmt.Errorf("peer: %s", st.Message())
}

// errPeerUnreachable: a cluster RPC failed in transport; the outcome of a
// forwarded write is unknown, and retrying it is safe because commands carry
// a proposal id.
var errPeerUnreachable = errors.New("peer unreachable")

func (c *clusterService) Forward(ctx context.Context, req *replicationv1.ForwardRequest) (*replicationv1.ForwardResponse, error) {
	if !c.n.IsLeader() {
		return nil, notLeaderStatus(ErrNotLeader)
	}
	res, err := c.n.applyLocal(ctx, req.GetCommand())
	if err != nil {
		return nil, toStatus(err)
	}
	out := &replicationv1.ApplyResult{}
	storage.EncodeResult(res, out)
	return &replicationv1.ForwardResponse{Result: out}, nil
}

func (c *clusterService) ReadIndex(ctx context.Context, _ *replicationv1.ReadIndexRequest) (*replicationv1.ReadIndexResponse, error) {
	if !c.n.IsLeader() {
		return nil, notLeaderStatus(ErrNotLeader)
	}
	idx, err := c.n.reads.readIndex(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	return &replicationv1.ReadIndexResponse{Index: idx}, nil
}

func (c *clusterService) NodeStatus(context.Context, *replicationv1.NodeStatusRequest) (*replicationv1.NodeStatusResponse, error) {
	return c.n.localStatus(), nil
}

func (c *clusterService) RemovePeer(ctx context.Context, req *replicationv1.RemovePeerRequest) (*replicationv1.RemovePeerResponse, error) {
	if err := c.n.RemovePeer(ctx, req.GetNodeId()); err != nil {
		return nil, toStatus(err)
	}
	return &replicationv1.RemovePeerResponse{}, nil
}

func (c *clusterService) TransferLeadership(ctx context.Context, req *replicationv1.TransferLeadershipRequest) (*replicationv1.TransferLeadershipResponse, error) {
	if _, err := c.n.TransferLeadership(ctx, req.GetNodeId()); err != nil {
		return nil, toStatus(err)
	}
	return &replicationv1.TransferLeadershipResponse{}, nil
}

func (c *clusterService) RestoreSnapshot(stream grpc.ClientStreamingServer[replicationv1.RestoreSnapshotRequest, replicationv1.RestoreSnapshotResponse]) error {
	if !c.n.IsLeader() {
		return notLeaderStatus(ErrNotLeader)
	}
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	r := &ChunkReader{Next: func() ([]byte, error) {
		m, err := stream.Recv()
		if err != nil {
			return nil, err
		}
		return m.GetChunk(), nil
	}}
	idx, err := c.n.restoreLocal(first.GetSize(), r)
	if err != nil {
		return toStatus(err)
	}
	return stream.SendAndClose(&replicationv1.RestoreSnapshotResponse{Index: idx})
}

func (c *clusterService) StateHash(ctx context.Context, req *replicationv1.StateHashRequest) (*replicationv1.StateHashResponse, error) {
	h, err := c.n.stateHashAt(ctx, req.GetIndex())
	if err != nil {
		if errors.Is(err, ErrNoCheckpoint) {
			return nil, status.Error(codes.NotFound, err.Error())
		}
		return nil, toStatus(err)
	}
	return &replicationv1.StateHashResponse{NodeId: c.n.cfg.NodeID, Index: req.GetIndex(), Hash: h[:], Diverged: c.n.Diverged() != nil}, nil
}

func (c *clusterService) SetDiverged(_ context.Context, req *replicationv1.SetDivergedRequest) (*replicationv1.SetDivergedResponse, error) {
	c.n.applyDivergedMark(req)
	return &replicationv1.SetDivergedResponse{}, nil
}

func (c *clusterService) CheckConsistency(ctx context.Context, req *replicationv1.CheckConsistencyRequest) (*replicationv1.CheckConsistencyResponse, error) {
	if !c.n.IsLeader() {
		return nil, notLeaderStatus(ErrNotLeader)
	}
	if req.GetBackground() {
		select {
		case c.n.checkSoon <- struct{}{}:
		default: // one is already due
		}
		return &replicationv1.CheckConsistencyResponse{}, nil
	}
	rep, err := c.n.CheckConsistency(ctx, req.GetClear())
	if err != nil {
		return nil, toStatus(err)
	}
	return reportToProto(rep), nil
}

// ChunkReader reads a stream of chunks (snapshot uploads, on the cluster
// and admin APIs) as one io.Reader. Next returns io.EOF after the last.
type ChunkReader struct {
	Next func() ([]byte, error)
	buf  []byte
}

func (r *ChunkReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		b, err := r.Next()
		if err != nil {
			return 0, err // io.EOF at the end of the stream
		}
		r.buf = b
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

// peers keeps one client connection per peer address.
type peers struct {
	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
	dial  func(addr string) (*grpc.ClientConn, error)
}

func (p *peers) client(addr string) (replicationv1.ClusterServiceClient, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.conns[addr]; ok {
		return replicationv1.NewClusterServiceClient(c), nil
	}
	c, err := p.dial(addr)
	if err != nil {
		return nil, fmt.Errorf("dial peer %s: %w", addr, err)
	}
	p.conns[addr] = c
	return replicationv1.NewClusterServiceClient(c), nil
}

func (p *peers) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for a, c := range p.conns {
		_ = c.Close()
		delete(p.conns, a)
	}
}

// leaderClient returns a client for the current leader, waiting (within
// ctx) for one to be elected.
func (n *Node) leaderClient(ctx context.Context) (replicationv1.ClusterServiceClient, error) {
	for {
		addr, _ := n.raft.LeaderWithID()
		if addr != "" {
			return n.peers.client(string(addr))
		}
		if n.raft.State() == raft.Shutdown {
			return nil, ErrShutdown
		}
		select {
		case <-ctx.Done():
			return nil, ErrNoLeader
		case <-time.After(leaderPollInterval):
		}
	}
}

// forward sends a marshalled command to the leader.
func (n *Node) forward(ctx context.Context, data []byte) (*ForwardedResult, error) {
	c, err := n.leaderClient(ctx)
	if err != nil {
		return nil, err
	}
	resp, err := c.Forward(ctx, &replicationv1.ForwardRequest{Command: data})
	if err != nil {
		return nil, fromStatus(err)
	}
	return &ForwardedResult{resp.GetResult()}, nil
}

// ForwardedResult wraps a result that came back from the leader.
type ForwardedResult struct{ r *replicationv1.ApplyResult }

// proposalID returns the proposal id inside a marshalled command, for logs.
func proposalID(data []byte) string {
	cmd := &raftv1.Command{}
	if proto.Unmarshal(data, cmd) != nil {
		return ""
	}
	return cmd.GetHeader().GetProposalId()
}

var _ io.Reader = (*ChunkReader)(nil)
