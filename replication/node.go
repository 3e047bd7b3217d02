package replication

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"google.golang.org/grpc"

	replicationv1 "github.com/cofferhq/coffer/proto/coffer/replication/v1"
	"github.com/cofferhq/coffer/storage"
)

// Errors a proposer or reader can get back. A domain failure is not among
// them: it comes back inside the *storage.Result.
var (
	// ErrNotLeader: this node cannot do what only the leader can.
	ErrNotLeader = errors.New("this node is not the region leader")
	// ErrNoLeader: the region has no leader (no quorum); writes and
	// linearizable reads are unavailable.
	ErrNoLeader = errors.New("the region has no leader")
	// ErrShutdown: the node is stopping.
	ErrShutdown = errors.New("raft node is shut down")
	// ErrUnknownPeer: no server with that id is in the configuration.
	ErrUnknownPeer = errors.New("no such server in the region")
	// ErrRemoveLeader: the leader was asked to remove itself; leadership
	// must move first.
	ErrRemoveLeader = errors.New("the leader cannot remove itself; transfer leadership first")
)

const (
	leaderPollInterval = 10 * time.Millisecond
	readIndexTimeout   = 5 * time.Second
)

// Node is one member of a region's Raft group.
type Node struct {
	cfg       Config
	log       *slog.Logger
	raft      *raft.Raft
	store     *storage.Store
	logStore  *raftboltdb.BoltStore
	snapshots *raft.FileSnapshotStore
	mux       *Mux
	transport *raft.NetworkTransport
	grpc      *grpc.Server
	peers     *peers
	members   *Membership
	applied   *appliedWaiter
	reads     *readIndexBatcher

	// readyTerm is the term in which this node, as leader, committed an
	// entry of its own (a barrier). Until then its commit index may lag the
	// true one, and it cannot serve a read index.
	readyTerm atomic.Uint64

	// checks keeps this node's state hashes at recent check points;
	// checkMu lets one consistency check run at a time on the leader, and
	// checkSoon asks the leader's duties for one now.
	checks    *checkpoints
	checkMu   sync.Mutex
	checkSoon chan struct{}
	// diverged is set while a consistency check has this node marked.
	diverged atomic.Pointer[Divergence]
	// idProposedTerm is the term this node, as leader, last proposed a
	// cluster id in (runDuties only).
	idProposedTerm uint64

	// stopping is set by Stopping: Raft's complaints are Info from then.
	stopping *atomic.Bool

	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

// Start opens the Raft log and snapshots under cfg.Dir, catches store up to
// the newest snapshot if it is behind (a lost state file), listens on the
// cluster port, and joins or bootstraps the region.
func Start(cfg Config, store *storage.Store) (*Node, error) {
	cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.TLS == nil {
		return nil, errors.New("raft: cluster TLS material is required")
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("raft: create %s: %w", cfg.Dir, err)
	}
	log := cfg.Logger.With("node_id", cfg.NodeID)
	hlog := newHclog(log, "raft")

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	rc.CommitTimeout = cfg.CommitTimeout
	rc.MaxAppendEntries = cfg.MaxAppendEntries
	rc.BatchApplyCh = true
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.SnapshotInterval = cfg.SnapshotInterval
	rc.TrailingLogs = cfg.TrailingLogs
	// The state file already holds everything up to its applied index, so a
	// restart serves at once instead of restoring a snapshot and replaying.
	rc.NoSnapshotRestoreOnStart = true
	rc.Logger = hlog

	n := &Node{cfg: cfg, log: log, store: store, stop: make(chan struct{}), checks: newCheckpoints(), checkSoon: make(chan struct{}, 1),
		stopping: hlog.stopping}
	fail := func(err error) (*Node, error) {
		n.close()
		return nil, err
	}
	var err error
	n.logStore, err = raftboltdb.New(raftboltdb.Options{Path: filepath.Join(cfg.Dir, "raft.db")})
	if err != nil {
		return nil, fmt.Errorf("raft: open log store: %w", err)
	}
	cached, err := raft.NewLogCache(1024, withObserver(n.logStore, cfg.Observer))
	if err != nil {
		return fail(fmt.Errorf("raft: log cache: %w", err))
	}
	n.snapshots, err = raft.NewFileSnapshotStoreWithLogger(cfg.Dir, cfg.SnapshotRetain, hlog)
	if err != nil {
		return fail(fmt.Errorf("raft: snapshot store: %w", err))
	}
	if err := n.catchUpFromSnapshot(); err != nil {
		return fail(err)
	}
	if err := n.loadDivergence(); err != nil {
		return fail(err)
	}
	store.OnCheckpoint(n.checks.take)
	n.applied = newAppliedWaiter(store.AppliedIndex())
	n.reads = &readIndexBatcher{fetch: n.fetchReadIndex, observe: cfg.Observer}

	n.mux, err = ListenCluster(cfg.BindAddr, cfg.AdvertiseAddr, cfg.TLS)
	if err != nil {
		return fail(fmt.Errorf("raft: cluster port %s: %w", cfg.BindAddr, err))
	}
	n.mux.CheckClusterID(store.ClusterID, log)
	n.transport = raft.NewNetworkTransportWithLogger(n.mux.RaftLayer(cfg.Dial), 3, 10*time.Second, hlog)
	n.peers = &peers{conns: map[string]*grpc.ClientConn{}, dial: func(addr string) (*grpc.ClientConn, error) {
		return DialCluster(addr, cfg.TLS, cfg.Dial, clusterIDCallOptions(store.ClusterID)...)
	}}
	n.grpc = grpc.NewServer(clusterIDGuard{local: store.ClusterID, log: log}.serverOptions()...)
	replicationv1.RegisterClusterServiceServer(n.grpc, &clusterService{n: n})
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		_ = n.grpc.Serve(n.mux.GRPCListener())
	}()

	existing, err := raft.HasExistingState(cached, n.logStore, n.snapshots)
	if err != nil {
		return fail(fmt.Errorf("raft: inspect state: %w", err))
	}
	// BootstrapExpect 1 is a region of one, like Bootstrap.
	alone := cfg.Bootstrap || cfg.BootstrapExpect == 1
	if !existing && alone {
		boot := raft.Configuration{Servers: []raft.Server{{
			ID: rc.LocalID, Address: n.transport.LocalAddr(), Suffrage: raft.Voter,
		}}}
		if err := raft.BootstrapCluster(rc, cached, n.logStore, n.snapshots, n.transport, boot); err != nil {
			return fail(fmt.Errorf("raft: bootstrap: %w", err))
		}
	}
	n.raft, err = raft.NewRaft(rc, &FSM{store: store, applied: n.applied, snapshots: n.snapshots, refuse: n.refuseSnapshot, observe: cfg.Observer}, cached, n.logStore, n.snapshots, n.transport)
	if err != nil {
		return fail(fmt.Errorf("raft: start: %w", err))
	}
	n.applied.mu.Lock()
	n.applied.raftApplied = n.raft.AppliedIndex
	n.applied.onlyRaftEntries = func(from, to uint64) bool {
		if to < from {
			return true
		}
		if to-from > 64 {
			return false // a long gap is not a tail of no-ops; wait for the FSM
		}
		var l raft.Log
		for i := from; i <= to; i++ {
			if err := cached.GetLog(i, &l); err != nil {
				return false
			}
			if l.Type == raft.LogCommand || l.Type == raft.LogConfiguration {
				return false
			}
		}
		return true
	}
	n.applied.mu.Unlock()
	n.observeLeaderChanges()

	var ap *Autopilot
	if cfg.Gossip.BindAddr != "" {
		g := cfg.Gossip
		g.Meta = MemberMeta{NodeID: cfg.NodeID, Region: cfg.Region, ClusterAddr: n.mux.Addr().String(), APIAddr: cfg.APIAddr, RegionAddr: cfg.RegionAddr,
			BootstrapExpect: cfg.BootstrapExpect, HasState: n.hasState(), ClusterID: store.ClusterID()}
		if g.Logger == nil {
			g.Logger = log
		}
		n.members, err = StartMembership(g)
		if err != nil {
			return fail(fmt.Errorf("gossip: %w", err))
		}
		ap = NewAutopilot(n.raft, n.members, n.peerApplied, cfg.Autopilot, log)
		ap.clusterID = store.ClusterID
	}
	n.background(ap, !existing && !alone && cfg.BootstrapExpect > 1 && n.members != nil, existing && cfg.ConsistencyCheckInterval > 0)
	n.wg.Add(1)
	go func() { defer n.wg.Done(); n.watchDisk() }()
	return n, nil
}

// background starts the node's goroutines, which stop with Shutdown: its
// duties, the autopilot (with gossip), formation (a fresh node forming a
// region) and the consistency check request of a node that restarted.
func (n *Node) background(ap *Autopilot, form, startupCheck bool) {
	ctx, cancel := context.WithCancel(context.Background())
	n.wg.Add(2)
	go func() { defer n.wg.Done(); <-n.stop; cancel() }()
	go func() { defer n.wg.Done(); n.runDuties(ctx) }()
	if ap != nil {
		n.wg.Add(1)
		go func() { defer n.wg.Done(); ap.Run(ctx) }()
	}
	if form {
		n.wg.Add(1)
		go func() { defer n.wg.Done(); n.formRegion(ctx) }()
	}
	if startupCheck {
		n.wg.Add(1)
		go func() { defer n.wg.Done(); n.requestStartupCheck(ctx) }()
	}
}

// IsLeader reports whether this node leads its region now.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

func (n *Node) leaderAddr() string {
	addr, _ := n.raft.LeaderWithID()
	return string(addr)
}

// Leader returns the current leader's id, or "".
func (n *Node) Leader() string {
	_, id := n.raft.LeaderWithID()
	return string(id)
}

// WaitLeader blocks until the region has a leader or ctx ends.
func (n *Node) WaitLeader(ctx context.Context) error {
	for {
		if n.leaderAddr() != "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for leader: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Snapshot takes a Raft snapshot now and truncates the log behind it.
func (n *Node) Snapshot() error {
	if err := n.raft.Snapshot().Error(); err != nil {
		return fmt.Errorf("raft snapshot: %w", err)
	}
	return nil
}

// Stats is Raft's own view of the node.
func (n *Node) Stats() map[string]string { return n.raft.Stats() }

// ClusterAddr is the node's advertised cluster address.
func (n *Node) ClusterAddr() string { return n.mux.Addr().String() }

// Members returns the gossip pool, or nil when gossip is off.
func (n *Node) Members() []Member {
	if n.members == nil {
		return nil
	}
	return n.members.Members()
}

// Shutdown leaves the gossip pool, stops Raft and closes the log. It does
// not close the store.
func (n *Node) Shutdown() error {
	var err error
	n.once.Do(func() {
		n.Stopping()
		if n.raft != nil && n.IsLeader() && n.votersOtherThanMe() > 0 {
			// Hand over first, so writes pause for one transfer rather than
			// for an election timeout.
			if terr := n.raft.LeadershipTransfer().Error(); terr != nil {
				n.log.Warn("leadership transfer before shutdown failed", "err", terr)
			}
		}
		close(n.stop)
		if n.members != nil {
			_ = n.members.Leave(time.Second)
			_ = n.members.Shutdown()
		}
		if n.raft != nil {
			err = n.shutdownRaft()
		}
		n.close()
		n.wg.Wait()
	})
	if err != nil {
		return fmt.Errorf("raft shutdown: %w", err)
	}
	return nil
}

// raftShutdownTimeout bounds the wait for Raft's goroutines to stop.
const raftShutdownTimeout = 10 * time.Second

// shutdownRaft stops Raft, waiting at most raftShutdownTimeout.
// hashicorp/raft v1.7.3 can wedge a replication pipeline while replication
// is being stopped (its decoder quits, the in-flight queue fills, and
// AppendEntries blocks with nothing left to unblock it), and then Shutdown
// never returns. A node must still stop: the transport is closed right
// after, which cuts the stuck pipeline off from its peer.
func (n *Node) shutdownRaft() error {
	done := make(chan error, 1)
	go func() { done <- n.raft.Shutdown().Error() }()
	select {
	case err := <-done:
		return err
	case <-time.After(raftShutdownTimeout):
		n.log.Error("raft did not shut down within the timeout (a stuck replication pipeline); closing the transport anyway",
			"timeout", raftShutdownTimeout)
		return nil
	}
}

func (n *Node) votersOtherThanMe() int {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return 0
	}
	c := 0
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter && string(s.ID) != n.cfg.NodeID {
			c++
		}
	}
	return c
}

func (n *Node) close() {
	if n.grpc != nil {
		n.grpc.Stop()
	}
	if n.peers != nil {
		n.peers.close()
	}
	if n.transport != nil {
		_ = n.transport.Close()
	}
	if n.mux != nil {
		_ = n.mux.Close()
	}
	if n.logStore != nil {
		_ = n.logStore.Close()
	}
}
