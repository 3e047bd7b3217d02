package replication

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/hashicorp/raft"

	replicationv1 "github.com/cofferhq/coffer/proto/coffer/replication/v1"
)

func newProposalID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("replication: crypto/rand failed: %v", err))
	}
	return hex.EncodeToString(b[:])
}

func (n *Node) localStatus() *replicationv1.NodeStatusResponse {
	term := uint64(0)
	if t, ok := n.raft.Stats()["term"]; ok {
		_, _ = fmt.Sscan(t, &term)
	}
	st := &replicationv1.NodeStatusResponse{
		NodeId:       n.cfg.NodeID,
		State:        n.raft.State().String(),
		Term:         term,
		CommitIndex:  n.raft.CommitIndex(),
		AppliedIndex: n.applied.current(),
		LastLogIndex: n.raft.LastIndex(),
		ClusterId:    n.store.ClusterID(),
	}
	if d := n.Diverged(); d != nil {
		st.Diverged, st.DivergedReason = true, d.Error()
	}
	return st
}

// peerApplied asks a peer for its applied index (autopilot's health probe).
func (n *Node) peerApplied(ctx context.Context, clusterAddr string) (uint64, error) {
	st, err := n.peerStatus(ctx, clusterAddr)
	if err != nil {
		return 0, err
	}
	return st.GetAppliedIndex(), nil
}

func (n *Node) peerStatus(ctx context.Context, addr string) (*replicationv1.NodeStatusResponse, error) {
	if addr == n.ClusterAddr() {
		return n.localStatus(), nil
	}
	c, err := n.peers.client(addr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	st, err := c.NodeStatus(ctx, &replicationv1.NodeStatusRequest{})
	if err != nil {
		return nil, fromStatus(err)
	}
	return st, nil
}

// ServerStatus is one server of the Raft configuration and its progress.
type ServerStatus struct {
	ID, Address, APIAddress string
	Voter, Leader           bool
	// Status is the server's own report; nil when it could not be reached.
	Status *replicationv1.NodeStatusResponse
}

// Status reports every server in the configuration, asking each for its
// own view.
func (n *Node) Status(ctx context.Context) ([]ServerStatus, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("raft configuration: %w", err)
	}
	_, leader := n.raft.LeaderWithID()
	var out []ServerStatus
	for _, s := range f.Configuration().Servers {
		ss := ServerStatus{ID: string(s.ID), Address: string(s.Address), Voter: s.Suffrage == raft.Voter, Leader: s.ID == leader}
		if n.members != nil {
			if m, ok := n.members.Lookup(string(s.ID)); ok {
				ss.APIAddress = m.Meta.APIAddr
			}
		}
		if string(s.ID) == n.cfg.NodeID {
			ss.APIAddress = n.cfg.APIAddr
		}
		if st, err := n.peerStatus(ctx, string(s.Address)); err == nil {
			ss.Status = st
		}
		out = append(out, ss)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// RemovePeer removes a server from the Raft configuration, through the
// leader.
func (n *Node) RemovePeer(ctx context.Context, id string) error {
	if !n.IsLeader() {
		c, err := n.leaderClient(ctx)
		if err != nil {
			return err
		}
		if _, err := c.RemovePeer(ctx, &replicationv1.RemovePeerRequest{NodeId: id}); err != nil {
			return fromStatus(err)
		}
		return nil
	}
	if id == n.cfg.NodeID {
		return ErrRemoveLeader
	}
	if !n.inConfiguration(id) {
		return fmt.Errorf("%w: %s", ErrUnknownPeer, id)
	}
	if err := n.raft.RemoveServer(raft.ServerID(id), 0, 0).Error(); err != nil {
		return fmt.Errorf("remove %s: %w", id, err)
	}
	n.log.Info("removed server from the region", "removed", id)
	return nil
}

func (n *Node) inConfiguration(id string) bool {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	for _, s := range f.Configuration().Servers {
		if string(s.ID) == id {
			return true
		}
	}
	return false
}

// TransferLeadership hands leadership to id (or a voter Raft picks) and
// waits until a leader is known again. It returns the new leader's id.
func (n *Node) TransferLeadership(ctx context.Context, id string) (string, error) {
	if !n.IsLeader() {
		c, err := n.leaderClient(ctx)
		if err != nil {
			return "", err
		}
		if _, err := c.TransferLeadership(ctx, &replicationv1.TransferLeadershipRequest{NodeId: id}); err != nil {
			return "", fromStatus(err)
		}
	} else {
		var f raft.Future
		if id == "" {
			f = n.raft.LeadershipTransfer()
		} else {
			addr := ""
			if cf := n.raft.GetConfiguration(); cf.Error() == nil {
				for _, s := range cf.Configuration().Servers {
					if string(s.ID) == id && s.Suffrage == raft.Voter {
						addr = string(s.Address)
					}
				}
			}
			if addr == "" {
				return "", fmt.Errorf("%w: no voter %s", ErrUnknownPeer, id)
			}
			f = n.raft.LeadershipTransferToServer(raft.ServerID(id), raft.ServerAddress(addr))
		}
		if err := f.Error(); err != nil {
			return "", fmt.Errorf("transfer leadership: %w", err)
		}
	}
	for {
		if l := n.Leader(); l != "" && (id == "" || l == id) {
			return l, nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("wait for new leader: %w", ctx.Err())
		case <-time.After(leaderPollInterval):
		}
	}
}

// SnapshotInfo describes a saved snapshot.
type SnapshotInfo struct {
	Size  int64
	Index uint64
}

// SaveSnapshot streams a consistent snapshot of the state, as of a
// linearizable read point, to w. begin is called with the snapshot's size
// and index before the first byte, so callers can show progress. The
// snapshot is first copied to a temporary file in the data directory and
// its read transaction ended: a reader as slow as it likes (or one that
// stops reading) then holds a file, never a transaction that keeps bbolt
// from reusing freed pages while every write goes on.
func (n *Node) SaveSnapshot(ctx context.Context, w io.Writer, begin func(SnapshotInfo)) error {
	if _, err := n.ReadBarrier(ctx); err != nil {
		return err
	}
	// The copy must fit without taking the volume below its threshold.
	if err := n.checkOwnDisk(n.stateFileSize()); err != nil {
		return err
	}
	f, err := n.store.SnapshotToFile()
	if err != nil {
		return err
	}
	defer f.Close()
	begin(SnapshotInfo{Size: f.Size, Index: f.Index})
	if _, err := io.Copy(w, f); err != nil {
		return fmt.Errorf("stream snapshot: %w", err)
	}
	return nil
}

// RestoreSnapshot replaces the region's state with the snapshot read from
// r, through the leader: Raft installs it on the leader and sends it to
// every follower. It returns the index the restore was committed at.
func (n *Node) RestoreSnapshot(ctx context.Context, size int64, r io.Reader) (uint64, error) {
	if n.IsLeader() {
		return n.restoreLocal(size, r)
	}
	c, err := n.leaderClient(ctx)
	if err != nil {
		return 0, err
	}
	stream, err := c.RestoreSnapshot(ctx)
	if err != nil {
		return 0, fromStatus(err)
	}
	if err := stream.Send(&replicationv1.RestoreSnapshotRequest{Part: &replicationv1.RestoreSnapshotRequest_Size{Size: size}}); err != nil {
		return 0, fromStatus(err)
	}
	buf := make([]byte, 256<<10)
	for {
		k, rerr := r.Read(buf)
		if k > 0 {
			chunk := append([]byte(nil), buf[:k]...)
			if err := stream.Send(&replicationv1.RestoreSnapshotRequest{Part: &replicationv1.RestoreSnapshotRequest_Chunk{Chunk: chunk}}); err != nil {
				return 0, fromStatus(err)
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return 0, rerr
		}
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return 0, fromStatus(err)
	}
	return resp.GetIndex(), nil
}
