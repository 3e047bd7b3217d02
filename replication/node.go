package replication

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
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
)

const (
	leaderPollInterval = 10 * time.Millisecond
	readIndexTimeout   = 5 * time.Second
)

// Config is a Raft node's configuration. Zero fields take the defaults of
// DefaultConfig.
type Config struct {
	// NodeID is the node's stable Raft id.
	NodeID string
	// Region is the node's region, gossiped to peers.
	Region string
	// Dir holds the Raft log (raft.db) and snapshots.
	Dir string
	// BindAddr is the cluster port: Raft and node-to-node gRPC, mutual TLS,
	// told apart by ALPN.
	BindAddr string
	// AdvertiseAddr is the address peers dial; defaults to BindAddr.
	AdvertiseAddr string
	// APIAddr is the node's client API address, gossiped for status output.
	APIAddr string
	// RegionAddr is the node's region replication address, gossiped so that
	// a pairing offer can list every node of the region; "" when none.
	RegionAddr string
	// TLS is the cluster mutual-TLS material. Node-to-node traffic is never
	// plaintext.
	TLS *ClusterTLS
	// Dial opens node-to-node connections; nil is a plain TCP dialer.
	// Tests replace it to cut links.
	Dial Dialer
	// Bootstrap makes a node with no Raft state start a new region with
	// itself as the only voter; the others join through gossip.
	Bootstrap bool

	// Gossip is the region's LAN pool. A zero BindAddr disables it (a
	// single-node region needs none).
	Gossip MembershipConfig
	// Autopilot tunes membership reconciliation on the leader.
	Autopilot AutopilotConfig

	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
	// ApplyTimeout bounds how long a proposal may take when the caller's
	// context has no deadline.
	ApplyTimeout time.Duration
	// MaxAppendEntries is the largest batch sent to followers and applied to
	// the FSM in one transaction.
	MaxAppendEntries  int
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	TrailingLogs      uint64
	SnapshotRetain    int

	// Logger receives the node's and Raft's log lines.
	Logger *slog.Logger
}

// DefaultConfig holds the defaults, in one place.
func DefaultConfig() Config {
	return Config{
		BindAddr:           "127.0.0.1:7401",
		HeartbeatTimeout:   1000 * time.Millisecond,
		ElectionTimeout:    1000 * time.Millisecond,
		LeaderLeaseTimeout: 500 * time.Millisecond,
		CommitTimeout:      5 * time.Millisecond,
		ApplyTimeout:       10 * time.Second,
		MaxAppendEntries:   512,
		SnapshotThreshold:  8192,
		SnapshotInterval:   2 * time.Minute,
		TrailingLogs:       10240,
		SnapshotRetain:     2,
	}
}

func (c *Config) withDefaults() {
	d := DefaultConfig()
	set := func(dst *time.Duration, v time.Duration) {
		if *dst == 0 {
			*dst = v
		}
	}
	set(&c.HeartbeatTimeout, d.HeartbeatTimeout)
	set(&c.ElectionTimeout, d.ElectionTimeout)
	set(&c.LeaderLeaseTimeout, d.LeaderLeaseTimeout)
	set(&c.CommitTimeout, d.CommitTimeout)
	set(&c.ApplyTimeout, d.ApplyTimeout)
	set(&c.SnapshotInterval, d.SnapshotInterval)
	if c.BindAddr == "" {
		c.BindAddr = d.BindAddr
	}
	if c.AdvertiseAddr == "" {
		c.AdvertiseAddr = c.BindAddr
	}
	if c.MaxAppendEntries == 0 {
		c.MaxAppendEntries = d.MaxAppendEntries
	}
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = d.SnapshotThreshold
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = d.TrailingLogs
	}
	if c.SnapshotRetain == 0 {
		c.SnapshotRetain = d.SnapshotRetain
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports the first problem with c, after defaults are applied.
func (c Config) Validate() error {
	c.withDefaults()
	switch {
	case c.NodeID == "":
		return errors.New("raft: node id is required")
	case c.Dir == "":
		return errors.New("raft: data directory is required")
	case c.MaxAppendEntries < 1 || c.MaxAppendEntries > 1024:
		return fmt.Errorf("raft: max append entries %d out of range 1–1024", c.MaxAppendEntries)
	case c.LeaderLeaseTimeout > c.HeartbeatTimeout:
		return fmt.Errorf("raft: leader lease timeout %s must not exceed heartbeat timeout %s", c.LeaderLeaseTimeout, c.HeartbeatTimeout)
	case c.ElectionTimeout < c.HeartbeatTimeout:
		return fmt.Errorf("raft: election timeout %s must be at least the heartbeat timeout %s", c.ElectionTimeout, c.HeartbeatTimeout)
	}
	if _, _, err := net.SplitHostPort(c.BindAddr); err != nil {
		return fmt.Errorf("raft: bind address %q: %w", c.BindAddr, err)
	}
	if host, _, err := net.SplitHostPort(c.AdvertiseAddr); err != nil || host == "" || net.ParseIP(host) != nil && net.ParseIP(host).IsUnspecified() {
		return fmt.Errorf("raft: advertise address %q must be a reachable host:port", c.AdvertiseAddr)
	}
	return nil
}

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
	hlog := hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Warn, Output: slogWriter{log}})

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

	n := &Node{cfg: cfg, log: log, store: store, stop: make(chan struct{})}
	fail := func(err error) (*Node, error) {
		n.close()
		return nil, err
	}
	var err error
	n.logStore, err = raftboltdb.New(raftboltdb.Options{Path: filepath.Join(cfg.Dir, "raft.db")})
	if err != nil {
		return nil, fmt.Errorf("raft: open log store: %w", err)
	}
	cached, err := raft.NewLogCache(1024, n.logStore)
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
	n.applied = newAppliedWaiter(store.AppliedIndex())
	n.reads = &readIndexBatcher{fetch: n.fetchReadIndex}

	n.mux, err = ListenCluster(cfg.BindAddr, cfg.AdvertiseAddr, cfg.TLS)
	if err != nil {
		return fail(fmt.Errorf("raft: cluster port %s: %w", cfg.BindAddr, err))
	}
	n.transport = raft.NewNetworkTransportWithLogger(n.mux.RaftLayer(cfg.Dial), 3, 10*time.Second, hlog)
	n.peers = &peers{conns: map[string]*grpc.ClientConn{}, dial: func(addr string) (*grpc.ClientConn, error) {
		return DialCluster(addr, cfg.TLS, cfg.Dial)
	}}
	n.grpc = grpc.NewServer()
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
	if !existing && cfg.Bootstrap {
		boot := raft.Configuration{Servers: []raft.Server{{
			ID: rc.LocalID, Address: n.transport.LocalAddr(), Suffrage: raft.Voter,
		}}}
		if err := raft.BootstrapCluster(rc, cached, n.logStore, n.snapshots, n.transport, boot); err != nil {
			return fail(fmt.Errorf("raft: bootstrap: %w", err))
		}
	}
	n.raft, err = raft.NewRaft(rc, &FSM{store: store, applied: n.applied, snapshots: n.snapshots}, cached, n.logStore, n.snapshots, n.transport)
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

	if cfg.Gossip.BindAddr != "" {
		g := cfg.Gossip
		g.Meta = MemberMeta{NodeID: cfg.NodeID, Region: cfg.Region, ClusterAddr: n.mux.Addr().String(), APIAddr: cfg.APIAddr, RegionAddr: cfg.RegionAddr}
		if g.Logger == nil {
			g.Logger = log
		}
		n.members, err = StartMembership(g)
		if err != nil {
			return fail(fmt.Errorf("gossip: %w", err))
		}
		ap := NewAutopilot(n.raft, n.members, n.peerApplied, cfg.Autopilot, log)
		ctx, cancel := context.WithCancel(context.Background())
		n.wg.Add(2)
		go func() { defer n.wg.Done(); ap.Run(ctx) }()
		go func() { defer n.wg.Done(); <-n.stop; cancel() }()
	}
	return n, nil
}

// catchUpFromSnapshot restores the newest snapshot into the store when the
// store is behind it. With NoSnapshotRestoreOnStart Raft would otherwise
// skip entries the store never saw (a state file lost or restored from an
// old backup).
func (n *Node) catchUpFromSnapshot() error {
	metas, err := n.snapshots.List()
	if err != nil || len(metas) == 0 {
		return err
	}
	newest := metas[0]
	if newest.Index <= n.store.AppliedIndex() {
		return nil
	}
	_, rc, err := n.snapshots.Open(newest.ID)
	if err != nil {
		return fmt.Errorf("raft: open snapshot %s: %w", newest.ID, err)
	}
	defer rc.Close()
	if err := n.store.Restore(rc); err != nil {
		return fmt.Errorf("raft: restore snapshot %s into state: %w", newest.ID, err)
	}
	if err := n.store.SetAppliedIndex(newest.Index); err != nil {
		return fmt.Errorf("raft: record snapshot index: %w", err)
	}
	return nil
}

// Apply commits cmd through the region's log — locally on the leader,
// forwarded to the leader from a follower — and returns its result. The
// error is only about getting the command committed; a domain failure is in
// the result. Each command gets a proposal id, so Apply may retry a
// proposal whose outcome is unknown (a leader change, a dropped connection)
// without it ever being applied twice.
func (n *Node) Apply(ctx context.Context, cmd *raftv1.Command) (*storage.Result, error) {
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
	timeout := n.cfg.ApplyTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(dl))
	}
	f := n.raft.Apply(data, timeout)
	if err := f.Error(); err != nil {
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

// WaitApplied waits until this node has applied idx (read-your-writes on
// any node with stale reads).
func (n *Node) WaitApplied(ctx context.Context, idx uint64) error {
	return n.applied.wait(ctx, idx)
}

// AppliedIndex is the last index this node applied.
func (n *Node) AppliedIndex() uint64 { return n.applied.current() }

// fetchReadIndex is one read-index round: on the leader, confirm
// leadership; on a follower, ask the leader.
func (n *Node) fetchReadIndex(ctx context.Context) (uint64, error) {
	if !n.IsLeader() {
		c, err := n.leaderClient(ctx)
		if err != nil {
			return 0, err
		}
		resp, err := c.ReadIndex(ctx, &replicationv1.ReadIndexRequest{})
		if err != nil {
			err = fromStatus(err)
			if errors.Is(err, ErrNotLeader) || errors.Is(err, errPeerUnreachable) {
				return 0, fmt.Errorf("%w: %v", ErrNoLeader, err)
			}
			return 0, err
		}
		return resp.GetIndex(), nil
	}
	term := n.raft.CurrentTerm()
	if n.readyTerm.Load() != term {
		// A new leader's commit index can lag the true one until an entry
		// of its own term commits; the barrier waits for exactly that. If
		// the term moves meanwhile, the next round barriers again.
		if err := n.raft.Barrier(readIndexTimeout).Error(); err != nil {
			return 0, fmt.Errorf("%w: %v", ErrNotLeader, err)
		}
		n.readyTerm.Store(term)
	}
	idx := n.raft.CommitIndex()
	if err := n.raft.VerifyLeader().Error(); err != nil {
		return 0, fmt.Errorf("%w: %v", ErrNotLeader, err)
	}
	return idx, nil
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

// slogWriter turns hclog's lines into slog records.
type slogWriter struct{ l *slog.Logger }

var _ io.Writer = slogWriter{}

func (w slogWriter) Write(p []byte) (int, error) {
	w.l.Warn(string(trimNewline(p)), "component", "raft")
	return len(p), nil
}

func trimNewline(p []byte) []byte {
	for len(p) > 0 && (p[len(p)-1] == '\n' || p[len(p)-1] == '\r') {
		p = p[:len(p)-1]
	}
	return p
}
