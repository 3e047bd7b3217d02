package server

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/replication"
	"github.com/cofferhq/coffer/storage"
)

// Cluster is what the admin API needs from the region's Raft node.
type Cluster interface {
	Status(ctx context.Context) ([]replication.ServerStatus, error)
	Members() []replication.Member
	Leader() string
	RemovePeer(ctx context.Context, id string) error
	TransferLeadership(ctx context.Context, id string) (string, error)
	SaveSnapshot(ctx context.Context, w io.Writer, begin func(replication.SnapshotInfo)) error
	RestoreSnapshot(ctx context.Context, size int64, r io.Reader) (uint64, error)
	ClusterID() string
	CheckConsistency(ctx context.Context, clear bool) (*replication.ConsistencyReport, error)
}

// Admin implements the AdminService: status, membership, leadership and
// backup of a region.
type Admin struct {
	cofferv1.UnimplementedAdminServiceServer
	cluster Cluster
	region  string
	nodeID  string
	// auditHash is the audit log's keyed hash (SetAuditHash); nil on a node
	// that writes no audit log.
	auditHash func(v string) (string, error)
	// snapshotTimeout bounds one SaveSnapshot stream (SetSnapshotTimeout).
	snapshotTimeout time.Duration
}

// DefaultSnapshotTimeout bounds a SaveSnapshot stream unless
// SetSnapshotTimeout says otherwise.
const DefaultSnapshotTimeout = 30 * time.Minute

var _ cofferv1.AdminServiceServer = (*Admin)(nil)

// NewAdmin builds the admin API for the node nodeID of region.
func NewAdmin(c Cluster, region, nodeID string) *Admin {
	return &Admin{cluster: c, region: region, nodeID: nodeID}
}

// SetSnapshotTimeout bounds how long one SaveSnapshot stream may take,
// however slowly its client reads; zero means DefaultSnapshotTimeout.
func (a *Admin) SetSnapshotTimeout(d time.Duration) { a.snapshotTimeout = d }

// SetAuditHash gives AuditHash the audit log's keyed hash. A node without
// an audit log leaves it unset, and AuditHash says so.
func (a *Admin) SetAuditHash(hash func(v string) (string, error)) { a.auditHash = hash }

// AuditHash implements the admin operation.
func (a *Admin) AuditHash(_ context.Context, req *cofferv1.AuditHashRequest) (*cofferv1.AuditHashResponse, error) {
	if a.auditHash == nil {
		return nil, apiErr(TypeInvalidRequest, "This node writes no audit log, so it has no audit hash key.")
	}
	h, err := a.auditHash(string(req.GetValue()))
	if err != nil {
		return nil, fmt.Errorf("audit hash: %w", err)
	}
	return &cofferv1.AuditHashResponse{Hash: h}, nil
}

// maxLagHealthy is how many entries a server may be behind the leader's
// commit index and still count as healthy.
const maxLagHealthy = 1000

// ClusterStatus implements the admin operation.
func (a *Admin) ClusterStatus(ctx context.Context, _ *cofferv1.ClusterStatusRequest) (*cofferv1.ClusterStatusResponse, error) {
	servers, err := a.cluster.Status(ctx)
	if err != nil {
		return nil, clusterErr(err)
	}
	resp := &cofferv1.ClusterStatusResponse{Region: a.region, LeaderId: a.cluster.Leader(), AnsweredBy: a.nodeID, ClusterId: a.cluster.ClusterID()}
	var leaderCommit uint64
	for _, s := range servers {
		if s.Leader && s.Status != nil {
			leaderCommit = s.Status.GetCommitIndex()
		}
		if s.ID == a.nodeID && s.Status != nil {
			resp.Term = s.Status.GetTerm()
		}
	}
	for _, s := range servers {
		out := &cofferv1.ServerStatus{
			NodeId: s.ID, RaftAddress: s.Address, ApiAddress: s.APIAddress, Voter: s.Voter, Leader: s.Leader,
			State: "Unreachable", Health: "unreachable",
		}
		if st := s.Status; st != nil {
			out.State, out.Term = st.GetState(), st.GetTerm()
			out.CommitIndex, out.AppliedIndex, out.LastLogIndex = st.GetCommitIndex(), st.GetAppliedIndex(), st.GetLastLogIndex()
			out.ClusterId, out.Diverged = st.GetClusterId(), st.GetDiverged()
			out.Health = "healthy"
			switch {
			case st.GetDiverged():
				out.Health = "diverged"
			case leaderCommit > st.GetAppliedIndex() && leaderCommit-st.GetAppliedIndex() > maxLagHealthy:
				out.Health = "lagging"
			}
		}
		resp.Servers = append(resp.Servers, out)
	}
	return resp, nil
}

// CheckConsistency implements the admin operation. It is the operator's
// check, so a server marked diverged before whose state matches again is
// cleared.
func (a *Admin) CheckConsistency(ctx context.Context, _ *cofferv1.CheckConsistencyRequest) (*cofferv1.CheckConsistencyResponse, error) {
	rep, err := a.cluster.CheckConsistency(ctx, true)
	if err != nil {
		return nil, clusterErr(err)
	}
	resp := &cofferv1.CheckConsistencyResponse{Index: rep.Index, Consistent: rep.Consistent}
	for _, n := range rep.Nodes {
		sc := &cofferv1.ServerConsistency{NodeId: n.NodeID, Verdict: n.Verdict, Detail: n.Detail}
		if n.Hash != nil {
			sc.Index, sc.Hash = rep.Index, hex.EncodeToString(n.Hash)
		}
		resp.Servers = append(resp.Servers, sc)
	}
	return resp, nil
}

// ListMembers implements the admin operation.
func (a *Admin) ListMembers(context.Context, *cofferv1.ListMembersRequest) (*cofferv1.ListMembersResponse, error) {
	resp := &cofferv1.ListMembersResponse{}
	for _, m := range a.cluster.Members() {
		resp.Members = append(resp.Members, &cofferv1.Member{
			NodeId: m.Meta.NodeID, GossipAddress: m.GossipAddr, RaftAddress: m.Meta.ClusterAddr,
			ApiAddress: m.Meta.APIAddr, Status: string(m.Status), Region: m.Meta.Region,
		})
	}
	return resp, nil
}

// RemovePeer implements the admin operation.
func (a *Admin) RemovePeer(ctx context.Context, req *cofferv1.RemovePeerRequest) (*cofferv1.RemovePeerResponse, error) {
	if req.GetNodeId() == "" {
		return nil, apiErr(TypeInvalidParameter, "You must provide the NodeId of the server to remove.")
	}
	if err := a.cluster.RemovePeer(ctx, req.GetNodeId()); err != nil {
		if errors.Is(err, replication.ErrUnknownPeer) {
			return nil, apiErr(TypeResourceNotFound, "No server %s is in the configuration of region %s.", req.GetNodeId(), a.region)
		}
		return nil, clusterErr(err)
	}
	return &cofferv1.RemovePeerResponse{}, nil
}

// TransferLeadership implements the admin operation.
func (a *Admin) TransferLeadership(ctx context.Context, req *cofferv1.TransferLeadershipRequest) (*cofferv1.TransferLeadershipResponse, error) {
	leader, err := a.cluster.TransferLeadership(ctx, req.GetNodeId())
	if err != nil {
		if errors.Is(err, replication.ErrUnknownPeer) {
			return nil, apiErr(TypeResourceNotFound, "No voter %s is in the configuration of region %s.", req.GetNodeId(), a.region)
		}
		return nil, clusterErr(err)
	}
	return &cofferv1.TransferLeadershipResponse{LeaderId: leader}, nil
}

// SaveSnapshot implements the admin operation: the size and index first,
// then 256 KiB chunks. The stream has a deadline of the server's own
// (SetSnapshotTimeout): a client that stops reading cannot keep it, and
// the temporary copy it streams from, for ever. Only when the stream ends
// does the handler return, except at that deadline: it then returns at
// once, which makes gRPC end the stream and the blocked send fail.
func (a *Admin) SaveSnapshot(_ *cofferv1.SaveSnapshotRequest, stream grpc.ServerStreamingServer[cofferv1.SaveSnapshotResponse]) error {
	limit := a.snapshotTimeout
	if limit <= 0 {
		limit = DefaultSnapshotTimeout
	}
	ctx, cancel := context.WithTimeout(stream.Context(), limit)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- a.saveSnapshot(ctx, stream) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		if stream.Context().Err() != nil {
			return stream.Context().Err() // the client went away
		}
		return apiErr(TypeServiceUnavailable, "The snapshot was not read within the server's limit of %s, so the stream was ended; read it faster, or raise limits.snapshot_timeout.", limit)
	}
}

func (a *Admin) saveSnapshot(ctx context.Context, stream grpc.ServerStreamingServer[cofferv1.SaveSnapshotResponse]) error {
	w := &chunkWriter{send: func(b []byte) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		return stream.Send(&cofferv1.SaveSnapshotResponse{Part: &cofferv1.SaveSnapshotResponse_Chunk{Chunk: b}})
	}}
	var beginErr error
	err := a.cluster.SaveSnapshot(ctx, w, func(info replication.SnapshotInfo) {
		beginErr = stream.Send(&cofferv1.SaveSnapshotResponse{Part: &cofferv1.SaveSnapshotResponse_Info{Info: &cofferv1.SnapshotInfo{
			Size: info.Size, Index: info.Index, Created: timestamppb.Now(),
		}}})
	})
	if err == nil {
		err = beginErr
	}
	if err == nil {
		err = w.flush()
	}
	if err != nil {
		return clusterErr(err)
	}
	return nil
}

// RestoreSnapshot implements the admin operation.
func (a *Admin) RestoreSnapshot(stream grpc.ClientStreamingServer[cofferv1.RestoreSnapshotRequest, cofferv1.RestoreSnapshotResponse]) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	if first.GetSize() <= 0 {
		return apiErr(TypeInvalidParameter, "A snapshot upload must start with its size.")
	}
	r := &replication.ChunkReader{Next: func() ([]byte, error) {
		m, err := stream.Recv()
		if err != nil {
			return nil, err
		}
		return m.GetChunk(), nil
	}}
	idx, err := a.cluster.RestoreSnapshot(stream.Context(), first.GetSize(), r)
	if err != nil {
		return clusterErr(err)
	}
	return stream.SendAndClose(&cofferv1.RestoreSnapshotResponse{Index: idx})
}

// clusterErr is the typed answer to a failed cluster operation: the
// operation's own refusals in fixed words (a refused snapshot with its
// reason, which names only the snapshot's own buckets and keys), anything
// else as AsAPIError decides — no leader is ServiceUnavailable, the rest an
// InternalServiceError with a generic message. An error's text can name
// files, addresses and Raft internals, so it is never the message; the
// interceptors log it with the request id.
func clusterErr(err error) error {
	var se *storage.SnapshotError
	switch {
	case errors.Is(err, replication.ErrRemoveLeader):
		return &APIError{Type: TypeInvalidRequest, cause: err,
			Message: "The leader cannot remove itself: transfer leadership to another voter first (coffer cluster transfer-leadership)."}
	case errors.As(err, &se):
		return &APIError{Type: TypeInvalidParameter, cause: err,
			Message: "The snapshot cannot be restored: " + se.Reason + ". Nothing was changed."}
	case errors.Is(err, storage.ErrBadSnapshot):
		return &APIError{Type: TypeInvalidParameter, cause: err,
			Message: "The snapshot cannot be restored: it is not a Coffer state database. Nothing was changed."}
	}
	return AsAPIError(err)
}

const snapshotChunk = 256 << 10

// chunkWriter turns writes into stream messages of up to snapshotChunk.
type chunkWriter struct {
	send func([]byte) error
	buf  []byte
}

func (w *chunkWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		k := min(snapshotChunk-len(w.buf), len(p))
		w.buf = append(w.buf, p[:k]...)
		p = p[k:]
		if len(w.buf) == snapshotChunk {
			if err := w.flush(); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

func (w *chunkWriter) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	err := w.send(w.buf)
	w.buf = nil
	return err
}
