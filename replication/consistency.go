package replication

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/types/known/timestamppb"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
	replicationv1 "github.com/cofferhq/coffer/proto/coffer/replication/v1"
	"github.com/cofferhq/coffer/storage"
)

// The consistency check, as etcd's corruption check: the leader commits a
// CheckState entry; every node, as it applies that entry at index I, hashes
// its state as of exactly I (storage hands over a read transaction opened
// between the entry's commit and the rest of its batch) in the background
// and keeps the last few hashes; the leader then asks every server for its
// hash at I and compares. The hash that a majority of the configuration's
// servers hold is the region's; a server with another is marked diverged
// (the leader too, which then hands over leadership) and serves no client
// requests until an operator acts.

// Verdicts of a consistency check, per server.
const (
	VerdictMatch     = "match"     // the majority's hash
	VerdictDiverged  = "diverged"  // another hash: the server is marked
	VerdictUnknown   = "unknown"   // no hash: unreachable, or applied past I without hashing it
	VerdictUndecided = "undecided" // no hash is held by a majority
)

// ErrNoCheckpoint: the node has no hash at the asked index (it restarted
// or installed a snapshot past it, or it was hashed too long ago).
var ErrNoCheckpoint = errors.New("no state hash at that index")

// keptCheckpoints is how many hashes a node keeps.
const keptCheckpoints = 8

// peerHashTimeout bounds the wait for one server's hash.
const peerHashTimeout = 30 * time.Second

// ConsistencyReport is the outcome of one check.
type ConsistencyReport struct {
	// Index is the check point every server hashed its state at.
	Index uint64
	// Nodes has one entry per server of the configuration, by id.
	Nodes []NodeConsistency
	// Consistent: every server answered with the same hash.
	Consistent bool
}

// NodeConsistency is one server's part of a check.
type NodeConsistency struct {
	NodeID  string
	Hash    []byte // nil when unknown
	Verdict string
	Detail  string
	// marked is whether the server was marked diverged when it answered.
	marked bool
}

// checkpoints keeps the hashes of the last keptCheckpoints check points.
type checkpoints struct {
	mu      sync.Mutex
	byIndex map[uint64]*checkpointHash
	order   []uint64
}

type checkpointHash struct {
	done chan struct{}
	hash storage.StateHash
	err  error
}

func newCheckpoints() *checkpoints { return &checkpoints{byIndex: map[uint64]*checkpointHash{}} }

// take registers cp and hashes it in the background. storage calls it while
// it applies the CheckState entry, so the entry exists before the node's
// applied index passes it.
func (c *checkpoints) take(cp *storage.Checkpoint) {
	h := &checkpointHash{done: make(chan struct{})}
	c.mu.Lock()
	c.byIndex[cp.Index] = h
	c.order = append(c.order, cp.Index)
	for len(c.order) > keptCheckpoints {
		delete(c.byIndex, c.order[0])
		c.order = c.order[1:]
	}
	c.mu.Unlock()
	go func() {
		defer close(h.done)
		defer cp.Release()
		h.hash, h.err = cp.Hash()
	}()
}

func (c *checkpoints) get(index uint64) *checkpointHash {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byIndex[index]
}

// stateHashAt waits until this node has applied index and its hash there is
// ready, and returns it.
func (n *Node) stateHashAt(ctx context.Context, index uint64) (storage.StateHash, error) {
	if err := n.applied.wait(ctx, index); err != nil {
		return storage.StateHash{}, fmt.Errorf("wait for index %d: %w", index, err)
	}
	h := n.checks.get(index)
	if h == nil {
		return storage.StateHash{}, fmt.Errorf("%w %d: this node applied past it without hashing it (it restarted or installed a snapshot)", ErrNoCheckpoint, index)
	}
	select {
	case <-h.done:
		return h.hash, h.err
	case <-ctx.Done():
		return storage.StateHash{}, fmt.Errorf("wait for the hash at index %d: %w", index, ctx.Err())
	}
}

// CheckConsistency runs a consistency check through the leader and returns
// its report. With clear (an operator's check), servers marked diverged
// that match again are cleared; an automatic check never clears a mark.
func (n *Node) CheckConsistency(ctx context.Context, clear bool) (*ConsistencyReport, error) {
	if !n.IsLeader() {
		c, err := n.leaderClient(ctx)
		if err != nil {
			return nil, err
		}
		resp, err := c.CheckConsistency(ctx, &replicationv1.CheckConsistencyRequest{Clear: clear})
		if err != nil {
			return nil, fromStatus(err)
		}
		return reportFromProto(resp), nil
	}
	n.checkMu.Lock()
	defer n.checkMu.Unlock()
	cmd := &raftv1.Command{Header: &raftv1.Header{Time: timestamppb.Now()}, Op: &raftv1.Command_CheckState{CheckState: &raftv1.CheckState{}}}
	res, err := n.Apply(ctx, cmd)
	if err != nil {
		return nil, fmt.Errorf("commit the check point: %w", err)
	}
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("raft configuration: %w", err)
	}
	servers := f.Configuration().Servers
	answers := make([]NodeConsistency, len(servers))
	var wg sync.WaitGroup
	for i, s := range servers {
		wg.Go(func() { answers[i] = n.askHash(ctx, s, res.Index) })
	}
	wg.Wait()
	rep := judge(res.Index, answers)
	n.act(ctx, rep, servers, clear)
	return rep, nil
}

// askHash gets one server's hash at index.
func (n *Node) askHash(ctx context.Context, s raft.Server, index uint64) NodeConsistency {
	out := NodeConsistency{NodeID: string(s.ID)}
	ctx, cancel := context.WithTimeout(ctx, peerHashTimeout)
	defer cancel()
	if string(s.ID) == n.cfg.NodeID {
		h, err := n.stateHashAt(ctx, index)
		if err != nil {
			out.Detail = err.Error()
			return out
		}
		out.Hash, out.marked = h[:], n.Diverged() != nil
		return out
	}
	c, err := n.peers.client(string(s.Address))
	if err != nil {
		out.Detail = err.Error()
		return out
	}
	resp, err := c.StateHash(ctx, &replicationv1.StateHashRequest{Index: index})
	if err != nil {
		out.Detail = fromStatus(err).Error()
		return out
	}
	out.Hash, out.marked = resp.GetHash(), resp.GetDiverged()
	return out
}

// judge gives every answer its verdict against the hash a strict majority
// of the servers holds.
func judge(index uint64, answers []NodeConsistency) *ConsistencyReport {
	counts := map[string]int{}
	for _, a := range answers {
		if a.Hash != nil {
			counts[string(a.Hash)]++
		}
	}
	var majority []byte
	for h, c := range counts {
		if 2*c > len(answers) {
			majority = []byte(h)
		}
	}
	rep := &ConsistencyReport{Index: index, Consistent: len(counts) == 1}
	for _, a := range answers {
		switch {
		case a.Hash == nil:
			a.Verdict = VerdictUnknown
			rep.Consistent = false
		case majority == nil:
			a.Verdict = VerdictUndecided
			a.Detail = fmt.Sprintf("%d different hashes among %d servers, none held by a majority", len(counts), len(answers))
		case bytes.Equal(a.Hash, majority):
			a.Verdict = VerdictMatch
		default:
			a.Verdict = VerdictDiverged
		}
		rep.Nodes = append(rep.Nodes, a)
	}
	slices.SortFunc(rep.Nodes, func(a, b NodeConsistency) int { return strings.Compare(a.NodeID, b.NodeID) })
	return rep
}

// act marks the diverged servers and, with clear, clears the marks of those
// that match again; it logs the outcome.
func (n *Node) act(ctx context.Context, rep *ConsistencyReport, servers []raft.Server, clear bool) {
	addr := map[string]string{}
	for _, s := range servers {
		addr[string(s.ID)] = string(s.Address)
	}
	var majority []byte
	for _, a := range rep.Nodes {
		if a.Verdict == VerdictMatch {
			majority = a.Hash
		}
	}
	for i := range rep.Nodes {
		a := &rep.Nodes[i]
		switch {
		case a.Verdict == VerdictDiverged:
			n.log.Error("CONSISTENCY CHECK FAILED: a server's state diverged from the majority's; marking it, it stops serving client requests",
				"node", a.NodeID, "index", rep.Index, "hash", hex.EncodeToString(a.Hash), "majority_hash", hex.EncodeToString(majority))
			if err := n.setDiverged(ctx, a.NodeID, addr[a.NodeID], &replicationv1.SetDivergedRequest{
				Diverged: true, Index: rep.Index, Hash: a.Hash, MajorityHash: majority, LeaderId: n.cfg.NodeID,
			}); err != nil {
				a.Detail = "could not mark it: " + err.Error()
			} else {
				a.Detail = "marked diverged"
			}
		case a.Verdict == VerdictMatch && a.marked && clear:
			if err := n.setDiverged(ctx, a.NodeID, addr[a.NodeID], &replicationv1.SetDivergedRequest{Index: rep.Index, LeaderId: n.cfg.NodeID}); err != nil {
				a.Detail = "matches again, but the mark could not be cleared: " + err.Error()
			} else {
				a.Detail = "matches again: diverged mark cleared"
			}
		case a.Verdict == VerdictMatch && a.marked:
			a.Detail = "matches, but is still marked diverged from an earlier check; `coffer cluster check` clears the mark"
		case a.Verdict == VerdictUndecided:
			n.log.Error("consistency check undecided: the servers' states differ and no hash is held by a majority",
				"node", a.NodeID, "index", rep.Index, "hash", hex.EncodeToString(a.Hash))
		case a.Verdict == VerdictUnknown:
			n.log.Warn("consistency check: no hash from a server", "node", a.NodeID, "index", rep.Index, "reason", a.Detail)
		}
	}
	if rep.Consistent {
		n.log.Info("consistency check passed: every server's state hashes the same", "index", rep.Index,
			"hash", hex.EncodeToString(rep.Nodes[0].Hash), "servers", len(rep.Nodes))
	}
}

// setDiverged marks or clears a server: this node directly, another over
// its cluster port.
func (n *Node) setDiverged(ctx context.Context, id, addr string, req *replicationv1.SetDivergedRequest) error {
	if id == n.cfg.NodeID {
		n.applyDivergedMark(req)
		return nil
	}
	c, err := n.peers.client(addr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, peerHashTimeout)
	defer cancel()
	if _, err := c.SetDiverged(ctx, req); err != nil {
		return fromStatus(err)
	}
	return nil
}

func (n *Node) applyDivergedMark(req *replicationv1.SetDivergedRequest) {
	if req.GetDiverged() {
		n.markDiverged(req.GetIndex(), req.GetHash(), req.GetMajorityHash(), req.GetLeaderId())
		return
	}
	n.clearDiverged(req.GetIndex(), req.GetLeaderId())
}

func reportFromProto(resp *replicationv1.CheckConsistencyResponse) *ConsistencyReport {
	rep := &ConsistencyReport{Index: resp.GetIndex(), Consistent: resp.GetConsistent()}
	for _, nc := range resp.GetNodes() {
		rep.Nodes = append(rep.Nodes, NodeConsistency{NodeID: nc.GetNodeId(), Hash: nc.GetHash(), Verdict: nc.GetVerdict(), Detail: nc.GetDetail()})
	}
	return rep
}

func reportToProto(rep *ConsistencyReport) *replicationv1.CheckConsistencyResponse {
	out := &replicationv1.CheckConsistencyResponse{Index: rep.Index, Consistent: rep.Consistent}
	for _, nc := range rep.Nodes {
		out.Nodes = append(out.Nodes, &replicationv1.NodeConsistency{NodeId: nc.NodeID, Hash: nc.Hash, Verdict: nc.Verdict, Detail: nc.Detail})
	}
	return out
}
