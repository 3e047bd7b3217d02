package replication

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
	"github.com/cofferhq/coffer/storage"
)

// Apply commits cmd through the region's log — locally on the leader,
// forwarded to the leader from a follower — and returns its result. The
// error is only about getting the command committed; a domain failure is in
// the result. Each command gets a proposal id, so Apply may retry a
// proposal whose outcome is unknown (a leader change, a dropped connection)
// without it ever being applied twice.
func (n *Node) Apply(ctx context.Context, cmd *raftv1.Command) (*storage.Result, error) {
	// A node low on disk proposes nothing, nor forwards it: the leader
	// checks the region again before it appends (applyLocal).
	if err := n.checkOwnDisk(0); err != nil {
		return nil, err
	}
	if cmd.GetHeader() == nil {
		cmd.Header = &raftv1.Header{}
	}
	if cmd.Header.ProposalId == "" {
		cmd.Header.ProposalId = newProposalID()
	}
	data, err := proto.Marshal(cmd)
	if err != nil {
		return nil, fmt.Errorf("marshal command: %w", err)
	}
	// Give up early enough that the caller hears "no leader" rather than
	// running out its own deadline: ApplyTimeout, or 90% of what is left.
	limit := n.cfg.ApplyTimeout
	if dl, ok := ctx.Deadline(); ok {
		limit = min(limit, time.Until(dl)*9/10)
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		var res *storage.Result
		if n.IsLeader() {
			res, err = n.applyLocal(ctx, data)
		} else {
			var fr *ForwardedResult
			fr, err = n.forward(ctx, data)
			if err == nil {
				res = storage.DecodeResult(fr.r)
			}
		}
		if err == nil {
			return res, nil
		}
		if !errors.Is(err, ErrNotLeader) && !errors.Is(err, errPeerUnreachable) {
			if errors.Is(err, ErrLowDiskSpace) {
				n.log.Debug("write refused: low disk space", "proposal_id", cmd.Header.ProposalId, "err", err)
			}
			return nil, err
		}
		n.log.Debug("retrying proposal", "proposal_id", cmd.Header.ProposalId, "err", err)
		select {
		case <-ctx.Done():
			if errors.Is(err, errPeerUnreachable) || n.leaderAddr() == "" {
				return nil, fmt.Errorf("%w: %v", ErrNoLeader, err)
			}
			return nil, fmt.Errorf("%w: %v", ErrNoLeader, ctx.Err())
		case <-time.After(leaderPollInterval):
		}
	}
}

// applyLocal commits a marshalled command on this node, which must lead.
func (n *Node) applyLocal(ctx context.Context, data []byte) (*storage.Result, error) {
	if err := n.checkRegionDisk(); err != nil {
		return nil, err
	}
	timeout := n.cfg.ApplyTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(dl))
	}
	start := time.Now()
	f := n.raft.Apply(data, timeout)
	err := f.Error()
	if obs := n.cfg.Observer; obs != nil {
		obs.ObserveCommit(time.Since(start), err != nil)
	}
	if err != nil {
		switch {
		case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrLeadershipTransferInProgress):
			return nil, fmt.Errorf("%w: %v", ErrNotLeader, err)
		case errors.Is(err, raft.ErrRaftShutdown):
			return nil, ErrShutdown
		case errors.Is(err, raft.ErrEnqueueTimeout):
			return nil, fmt.Errorf("%w: %v", ErrNoLeader, err)
		}
		return nil, fmt.Errorf("raft apply: %w", err)
	}
	res, ok := f.Response().(*storage.Result)
	if !ok {
		return nil, fmt.Errorf("raft apply: unexpected FSM response %T", f.Response())
	}
	return res, nil
}

// ReadBarrier makes the next local read linearizable: it obtains a read
// index (the leader's commit index at a moment it confirmed its leadership
// with a quorum; concurrent callers share one round) and waits until this
// node has applied it. It returns the index.
func (n *Node) ReadBarrier(ctx context.Context) (uint64, error) {
	idx, err := n.reads.readIndex(ctx)
	if err != nil {
		return 0, err
	}
	if err := n.applied.wait(ctx, idx); err != nil {
		return 0, fmt.Errorf("wait for index %d: %w", idx, err)
	}
	return idx, nil
}

// ReadIndex is the region's commit index as its leader confirms it now
// (the read index of ReadBarrier, shared with concurrent callers), without
// waiting for this node to apply it: what an index a caller names can be
// checked against before anyone waits for it.
func (n *Node) ReadIndex(ctx context.Context) (uint64, error) {
	return n.reads.readIndex(ctx)
}

// WaitApplied waits until this node has applied idx (read-your-writes on
// any node with stale reads).
func (n *Node) WaitApplied(ctx context.Context, idx uint64) error {
	return n.applied.wait(ctx, idx)
}

// AppliedIndex is the last index this node applied.
func (n *Node) AppliedIndex() uint64 { return n.applied.current() }
