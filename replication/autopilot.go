package replication

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// AutopilotConfig tunes how the leader reconciles Raft membership from the
// gossip pool. Zero fields take the defaults.
type AutopilotConfig struct {
	// Interval between passes; default 2s.
	Interval time.Duration
	// DeadServerTimeout is how long a member must have been dead or left
	// (or absent from the pool) before its server may be removed; default
	// 30s.
	DeadServerTimeout time.Duration
	// MinQuorum: a voter is never removed if the voters would drop below
	// this; default 3.
	MinQuorum int
	// MaxLagEntries: a non-voter is caught up when the leader's last index
	// minus its applied index is at most this; default 1000.
	MaxLagEntries uint64
	// StableFor is how long a non-voter must stay alive and caught up
	// before it is promoted; default 3s.
	StableFor time.Duration
}

func (c *AutopilotConfig) withDefaults() {
	if c.Interval <= 0 {
		c.Interval = 2 * time.Second
	}
	if c.DeadServerTimeout <= 0 {
		c.DeadServerTimeout = 30 * time.Second
	}
	if c.MinQuorum <= 0 {
		c.MinQuorum = 3
	}
	if c.MaxLagEntries == 0 {
		c.MaxLagEntries = 1000
	}
	if c.StableFor <= 0 {
		c.StableFor = 3 * time.Second
	}
}

// configChangeTimeout bounds how long one Raft membership change may wait
// to be enqueued.
const configChangeTimeout = 10 * time.Second

// Autopilot runs on every node but only acts while that node's Raft is the
// leader: it adds the region's gossip members to Raft as non-voters,
// promotes them once they are healthy and caught up, and removes servers
// that have been gone for long, but only while quorum stays safe.
//
// The membership's node ids must be the Raft server ids.
type Autopilot struct {
	raft   *raft.Raft
	pool   *Membership
	status func(ctx context.Context, clusterAddr string) (appliedIndex uint64, err error)
	cfg    AutopilotConfig
	log    *slog.Logger
	// clusterID, when set, is the leader's cluster id: a member gossiping
	// another is never added (nil: every member may be).
	clusterID func() string

	mu sync.Mutex // one pass at a time; guards the fields below
	// healthySince is when each non-voter was first seen alive and caught
	// up in an unbroken run of passes.
	healthySince map[raft.ServerID]time.Time
	// absentSince is when each server was first seen missing from the pool.
	absentSince map[raft.ServerID]time.Time
	// refused is the cluster id each member of another cluster was last
	// refused for, so the refusal is logged once, not at every pass.
	refused map[raft.ServerID]string
}

// NewAutopilot returns an Autopilot for r, reading the pool m. status
// reports a node's applied index given its cluster address (the caller
// implements it over the cluster gRPC NodeStatus).
func NewAutopilot(r *raft.Raft, m *Membership, status func(ctx context.Context, clusterAddr string) (appliedIndex uint64, err error), cfg AutopilotConfig, log *slog.Logger) *Autopilot {
	cfg.withDefaults()
	if log == nil {
		log = slog.Default()
	}
	return &Autopilot{
		raft: r, pool: m, status: status, cfg: cfg,
		log:          log.With("component", "autopilot"),
		healthySince: make(map[raft.ServerID]time.Time),
		absentSince:  make(map[raft.ServerID]time.Time),
		refused:      make(map[raft.ServerID]string),
	}
}

// Run reconciles every Interval until ctx is done.
func (a *Autopilot) Run(ctx context.Context) {
	t := time.NewTicker(a.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := a.Reconcile(ctx); err != nil && ctx.Err() == nil {
			a.log.Warn("reconcile failed", "err", err)
		}
	}
}

// Reconcile runs one pass. On a node that is not the leader it only forgets
// what it had observed, since a later leadership must start its clocks
// afresh, and returns nil. On the leader it runs the phases in order — add
// members, promote non-voters, remove gone servers, forget departed ones —
// each against the same observation, and joins their errors.
func (a *Autopilot) Reconcile(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.raft.State() != raft.Leader {
		a.reset()
		return nil
	}
	p, err := a.observe()
	if err != nil {
		return err
	}
	var errs []error
	errs = append(errs, a.addMembers(p)...)
	errs = append(errs, a.promoteNonvoters(ctx, p)...)
	errs = append(errs, a.removeGone(p)...)
	a.forgetDeparted(p)
	return errors.Join(errs...)
}

// pass is what one reconcile pass observed: the Raft configuration, this
// region's gossip members, and the time, taken once at its start.
type pass struct {
	servers  []raft.Server
	inConfig map[raft.ServerID]raft.Server
	members  map[raft.ServerID]Member
	self     raft.ServerID
	now      time.Time
}

// observe reads the Raft configuration and the gossip members of this
// node's region.
func (a *Autopilot) observe() (*pass, error) {
	f := a.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("autopilot: read raft configuration: %w", err)
	}
	servers := f.Configuration().Servers
	local := a.pool.LocalNode()
	self := raft.ServerID(local.Meta.NodeID)
	if self == "" {
		return nil, errors.New("autopilot: the gossip pool does not know this node yet")
	}
	region := local.Meta.Region
	members := make(map[raft.ServerID]Member)
	for _, mem := range a.pool.Members() {
		if mem.Meta.Region == region {
			members[raft.ServerID(mem.Meta.NodeID)] = mem
		}
	}
	inConfig := make(map[raft.ServerID]raft.Server, len(servers))
	for _, s := range servers {
		inConfig[s.ID] = s
	}
	return &pass{servers: servers, inConfig: inConfig, members: members, self: self, now: time.Now()}, nil
}

// addMembers is phase 1: alive members Raft does not know join as
// non-voters; a known server whose cluster address changed (a rescheduled
// node) is re-added under its new address with its current suffrage.
func (a *Autopilot) addMembers(p *pass) []error {
	var errs []error
	for _, id := range sortedServerIDs(p.members) {
		mem := p.members[id]
		if mem.Status != MemberAlive || id == p.self {
			continue
		}
		if mem.Meta.ClusterAddr == "" {
			a.log.Warn("member gossips no cluster address; not adding it", "node_id", string(id))
			continue
		}
		if !a.sameCluster(id, mem.Meta.ClusterID) {
			continue
		}
		addr := raft.ServerAddress(mem.Meta.ClusterAddr)
		s, known := p.inConfig[id]
		switch {
		case !known:
			errs = append(errs, a.change(id, "add_nonvoter", "alive member not in the raft configuration",
				a.raft.AddNonvoter(id, addr, 0, configChangeTimeout)))
		case s.Address != addr && s.Suffrage == raft.Voter:
			errs = append(errs, a.change(id, "update_address", fmt.Sprintf("cluster address changed from %s to %s", s.Address, addr),
				a.raft.AddVoter(id, addr, 0, configChangeTimeout)))
		case s.Address != addr:
			errs = append(errs, a.change(id, "update_address", fmt.Sprintf("cluster address changed from %s to %s", s.Address, addr),
				a.raft.AddNonvoter(id, addr, 0, configChangeTimeout)))
		}
	}
	return errs
}

// sameCluster refuses a member that holds another cluster id than the
// leader: a node of another region formed from the same configuration,
// whose state would never be this region's. The refusal is logged once
// per member and id.
func (a *Autopilot) sameCluster(id raft.ServerID, theirs string) bool {
	if a.clusterID == nil {
		return true
	}
	ours := a.clusterID()
	if sameCluster(ours, theirs) {
		delete(a.refused, id)
		return true
	}
	if a.refused[id] != theirs {
		a.refused[id] = theirs
		a.log.Error("refusing to add a member of another cluster to the region: it holds another cluster id, so its state is another region's; "+
			"wipe its data directory to make it join this region", "node_id", string(id), "local_cluster_id", ours, "member_cluster_id", theirs,
			"err", mismatch(ours, theirs))
	}
	return false
}

// promoteNonvoters is phase 2: non-voters alive and caught up for
// StableFor are promoted.
func (a *Autopilot) promoteNonvoters(ctx context.Context, p *pass) []error {
	var errs []error
	lastIndex := a.raft.LastIndex()
	for _, s := range p.servers {
		if s.Suffrage != raft.Nonvoter || s.ID == p.self {
			continue
		}
		mem, ok := p.members[s.ID]
		if !ok || mem.Status != MemberAlive || raft.ServerAddress(mem.Meta.ClusterAddr) != s.Address {
			delete(a.healthySince, s.ID)
			continue
		}
		lag, err := a.lag(ctx, mem.Meta.ClusterAddr, lastIndex)
		if err != nil || lag > a.cfg.MaxLagEntries {
			if _, was := a.healthySince[s.ID]; was {
				a.log.Info("non-voter no longer healthy", "node_id", string(s.ID), "lag", lag, "err", err)
			}
			delete(a.healthySince, s.ID)
			continue
		}
		since, ok := a.healthySince[s.ID]
		if !ok {
			a.healthySince[s.ID] = p.now
			continue
		}
		if p.now.Sub(since) < a.cfg.StableFor {
			continue
		}
		err = a.change(s.ID, "promote", fmt.Sprintf("alive and within %d entries of the leader for %s", a.cfg.MaxLagEntries, p.now.Sub(since).Round(time.Millisecond)),
			a.raft.AddVoter(s.ID, s.Address, 0, configChangeTimeout))
		errs = append(errs, err)
		if err == nil {
			delete(a.healthySince, s.ID)
		}
	}
	return errs
}

// removeGone is phase 3: servers gone for longer than DeadServerTimeout
// are removed while quorum stays safe (planRemovals decides).
func (a *Autopilot) removeGone(p *pass) []error {
	view := make([]serverHealth, 0, len(p.servers))
	for _, s := range p.servers {
		h := serverHealth{ID: s.ID, Voter: s.Suffrage == raft.Voter, Leader: s.ID == p.self, Healthy: true}
		mem, ok := p.members[s.ID]
		switch {
		case s.ID == p.self:
		case !ok:
			if _, seen := a.absentSince[s.ID]; !seen {
				a.absentSince[s.ID] = p.now
			}
			h.Healthy, h.GoneFor, h.Why = false, p.now.Sub(a.absentSince[s.ID]), "absent from the gossip pool"
		case mem.Status == MemberDead || mem.Status == MemberLeft:
			delete(a.absentSince, s.ID)
			h.Healthy, h.GoneFor, h.Why = false, p.now.Sub(mem.Since), "member "+string(mem.Status)
		default:
			delete(a.absentSince, s.ID)
			h.Healthy = mem.Status == MemberAlive
		}
		view = append(view, h)
	}
	remove, held := planRemovals(view, a.cfg.DeadServerTimeout, a.cfg.MinQuorum)
	var errs []error
	for _, rm := range remove {
		err := a.change(rm.ID, "remove", rm.Reason, a.raft.RemoveServer(rm.ID, 0, configChangeTimeout))
		errs = append(errs, err)
		if err == nil {
			delete(a.absentSince, rm.ID)
			delete(a.healthySince, rm.ID)
		}
	}
	for _, rm := range held {
		a.log.Debug("dead voter kept to protect quorum", "node_id", string(rm.ID), "reason", rm.Reason)
	}
	return errs
}

// forgetDeparted is the last phase: what the earlier phases observed of
// servers no longer in the configuration is dropped.
func (a *Autopilot) forgetDeparted(p *pass) {
	for id := range a.absentSince {
		if _, ok := p.inConfig[id]; !ok {
			delete(a.absentSince, id)
		}
	}
	for id := range a.healthySince {
		if _, ok := p.inConfig[id]; !ok {
			delete(a.healthySince, id)
		}
	}
}

// reset forgets all observations; called when this node is not the leader.
func (a *Autopilot) reset() {
	clear(a.healthySince)
	clear(a.absentSince)
	clear(a.refused)
}

// lag asks the node at clusterAddr for its applied index and returns how
// far it is behind lastIndex.
func (a *Autopilot) lag(ctx context.Context, clusterAddr string, lastIndex uint64) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, min(max(a.cfg.Interval, 500*time.Millisecond), 5*time.Second))
	defer cancel()
	applied, err := a.status(ctx, clusterAddr)
	if err != nil {
		return 0, err
	}
	if applied >= lastIndex {
		return 0, nil
	}
	return lastIndex - applied, nil
}

// change waits for a Raft membership change and logs it.
func (a *Autopilot) change(id raft.ServerID, action, reason string, f raft.IndexFuture) error {
	if err := f.Error(); err != nil {
		a.log.Warn("raft membership change failed", "node_id", string(id), "action", action, "reason", reason, "err", err)
		return fmt.Errorf("autopilot: %s %s: %w", action, id, err)
	}
	a.log.Info("raft membership changed", "node_id", string(id), "action", action, "reason", reason, "index", f.Index())
	return nil
}

// serverHealth is one server of the Raft configuration as a pass sees it.
type serverHealth struct {
	ID      raft.ServerID
	Voter   bool
	Leader  bool
	Healthy bool          // member alive (the leader always is)
	GoneFor time.Duration // how long the member has been dead, left or absent
	Why     string        // why it is unhealthy
}

// removal is a server a pass removes, or keeps, and why.
type removal struct {
	ID     raft.ServerID
	Reason string
}

// planRemovals picks the servers to remove: those gone for longer than
// deadTimeout, never the leader; a non-voter always, a voter only if the
// voters left would be at least minQuorum and their healthy members a
// quorum of them. Voters are judged one at a time, in id order, against
// the configuration the earlier removals leave. held lists the dead voters
// kept to protect quorum.
func planRemovals(view []serverHealth, deadTimeout time.Duration, minQuorum int) (remove, held []removal) {
	view = slices.Clone(view)
	slices.SortFunc(view, func(a, b serverHealth) int { return strings.Compare(string(a.ID), string(b.ID)) })
	voters, healthyVoters := 0, 0
	for _, s := range view {
		if s.Voter {
			voters++
			if s.Healthy {
				healthyVoters++
			}
		}
	}
	for _, s := range view {
		if s.Leader || s.Healthy || s.GoneFor <= deadTimeout {
			continue
		}
		reason := fmt.Sprintf("%s for %s (dead server timeout %s)", s.Why, s.GoneFor.Round(time.Millisecond), deadTimeout)
		if !s.Voter {
			remove = append(remove, removal{s.ID, "non-voter " + reason})
			continue
		}
		remaining := voters - 1
		if remaining < minQuorum {
			held = append(held, removal{s.ID, fmt.Sprintf("%s; %d voters would remain, below the minimum quorum %d", reason, remaining, minQuorum)})
			continue
		}
		// s is unhealthy, so every healthy voter remains.
		if healthyVoters < remaining/2+1 {
			held = append(held, removal{s.ID, fmt.Sprintf("%s; only %d healthy of %d remaining voters, not a quorum", reason, healthyVoters, remaining)})
			continue
		}
		remove = append(remove, removal{s.ID, fmt.Sprintf("voter %s; %d voters remain, %d healthy", reason, remaining, healthyVoters)})
		voters = remaining
	}
	return remove, held
}

func sortedServerIDs[V any](m map[raft.ServerID]V) []raft.ServerID {
	keys := make([]raft.ServerID, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
