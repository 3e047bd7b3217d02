package replication

import (
	"context"
	"time"

	"github.com/hashicorp/raft"

	replicationv1 "github.com/cofferhq/coffer/proto/coffer/replication/v1"
)

// dutyInterval is how often a node looks at what it has to do besides
// Raft: gossip its state, and as leader give the region its cluster id,
// hand leadership over when it is marked diverged, and run the automatic
// consistency checks.
const dutyInterval = 250 * time.Millisecond

// automaticCheckTimeout bounds one automatic consistency check.
const automaticCheckTimeout = time.Minute

// runDuties runs until ctx ends.
func (n *Node) runDuties(ctx context.Context) {
	t := time.NewTicker(dutyInterval)
	defer t.Stop()
	var (
		leading       bool
		lastCheck     time.Time
		alive         map[string]bool // configured servers alive in the pool, at the last look
		transferredIn uint64          // the term a diverged leader last handed over in
	)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-n.checkSoon:
			lastCheck = time.Time{}
		}
		n.refreshMeta()
		if !n.IsLeader() {
			leading, alive = false, nil
			continue
		}
		if !leading {
			// A new leader checks at once: it cannot know when the last
			// check ran.
			leading, lastCheck = true, time.Time{}
		}
		n.ensureClusterID(ctx)
		if n.Diverged() != nil && n.votersOtherThanMe() > 0 && transferredIn != n.raft.CurrentTerm() {
			transferredIn = n.raft.CurrentTerm()
			n.log.Error("this leader is marked diverged: handing leadership to another voter")
			if err := n.raft.LeadershipTransfer().Error(); err != nil {
				n.log.Warn("leadership transfer away from a diverged leader failed", "err", err)
			}
			continue
		}
		if n.cfg.ConsistencyCheckInterval <= 0 {
			continue
		}
		now := n.aliveServers()
		back := false
		for id := range now {
			if alive != nil && !alive[id] {
				back = true
				n.log.Info("a server started or came back: checking consistency", "node", id)
			}
		}
		alive = now
		if !back && !lastCheck.IsZero() && time.Since(lastCheck) < n.cfg.ConsistencyCheckInterval {
			continue
		}
		lastCheck = time.Now()
		cctx, cancel := context.WithTimeout(ctx, automaticCheckTimeout)
		if _, err := n.CheckConsistency(cctx, false); err != nil && ctx.Err() == nil {
			n.log.Warn("automatic consistency check failed to run", "err", err)
		}
		cancel()
	}
}

// aliveServers lists the configured servers, other than this one, whose
// gossip member is alive (all of them when there is no pool).
func (n *Node) aliveServers() map[string]bool {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return nil
	}
	out := map[string]bool{}
	for _, s := range f.Configuration().Servers {
		if string(s.ID) == n.cfg.NodeID {
			continue
		}
		if n.members == nil {
			out[string(s.ID)] = true
			continue
		}
		if m, ok := n.members.Lookup(string(s.ID)); ok && m.Status == MemberAlive {
			out[string(s.ID)] = true
		}
	}
	return out
}

// requestStartupCheck asks the leader, once this node has caught up after
// it started, to check the region's consistency, so a node that comes back
// with a state that drifted while it was down is found at once.
func (n *Node) requestStartupCheck(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		if n.raft.State() == raft.Follower && n.Leader() != "" {
			rctx, cancel := context.WithTimeout(ctx, readIndexTimeout)
			err := n.askForCheck(rctx)
			cancel()
			if err == nil {
				return
			}
			n.log.Debug("startup consistency check not requested yet", "err", err)
		}
		if n.IsLeader() {
			return // a new leader checks on its own
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (n *Node) askForCheck(ctx context.Context) error {
	if _, err := n.ReadBarrier(ctx); err != nil {
		return err
	}
	c, err := n.leaderClient(ctx)
	if err != nil {
		return err
	}
	if _, err := c.CheckConsistency(ctx, &replicationv1.CheckConsistencyRequest{Background: true}); err != nil {
		return fromStatus(err)
	}
	return nil
}
