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
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"google.golang.org/protobuf/proto"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
	"github.com/cofferhq/coffer/storage"
)

// Errors a proposer can get back from Apply. A domain failure is not among
// them: it comes back inside the *storage.Result.
var (
	// ErrNotLeader: this node cannot commit writes because another node leads.
	ErrNotLeader = errors.New("this node is not the region leader")
	// ErrNoLeader: the region has no leader (no quorum); writes are unavailable.
	ErrNoLeader = errors.New("the region has no leader")
	// ErrShutdown: the node is stopping.
	ErrShutdown = errors.New("raft node is shut down")
)

// Config is a Raft node's configuration. Zero fields take the defaults of
// DefaultConfig.
type Config struct {
	// NodeID is the node's stable Raft id.
	NodeID string
	// Dir holds the Raft log (raft.db) and snapshots.
	Dir string
	// BindAddr is the TCP address Raft listens on.
	BindAddr string
	// AdvertiseAddr is the address peers dial; defaults to BindAddr.
	AdvertiseAddr string
	// Bootstrap makes a node with no Raft state start a new single-node
	// region with itself as the only voter.
	Bootstrap bool

	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
	// ApplyTimeout bounds how long a proposal may wait to be enqueued.
	ApplyTimeout time.Duration
	// MaxAppendEntries is the largest batch sent to followers and applied to
	// the FSM in one transaction.
	MaxAppendEntries  int
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	TrailingLogs      uint64
	SnapshotRetain    int

	// Logger receives Raft's own log lines (warnings and above).
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
	raft      *raft.Raft
	store     *storage.Store
	logStore  *raftboltdb.BoltStore
	transport *raft.NetworkTransport
	snapshots *raft.FileSnapshotStore
}

// Start opens the Raft log and snapshots under cfg.Dir, catches store up to
// the newest snapshot if it is behind (a lost state file), and joins or
// bootstraps the region.
func Start(cfg Config, store *storage.Store) (*Node, error) {
	cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("raft: create %s: %w", cfg.Dir, err)
	}
	hlog := hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Warn, Output: slogWriter{cfg.Logger}})

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

	logStore, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(cfg.Dir, "raft.db")})
	if err != nil {
		return nil, fmt.Errorf("raft: open log store: %w", err)
	}
	n := &Node{cfg: cfg, store: store, logStore: logStore}
	fail := func(err error) (*Node, error) {
		n.close()
		return nil, err
	}
	cached, err := raft.NewLogCache(1024, logStore)
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
	addr, err := net.ResolveTCPAddr("tcp", cfg.AdvertiseAddr)
	if err != nil {
		return fail(fmt.Errorf("raft: advertise address: %w", err))
	}
	n.transport, err = raft.NewTCPTransportWithLogger(cfg.BindAddr, addr, 3, 10*time.Second, hlog)
	if err != nil {
		return fail(fmt.Errorf("raft: listen on %s: %w", cfg.BindAddr, err))
	}
	existing, err := raft.HasExistingState(cached, logStore, n.snapshots)
	if err != nil {
		return fail(fmt.Errorf("raft: inspect state: %w", err))
	}
	if !existing && cfg.Bootstrap {
		boot := raft.Configuration{Servers: []raft.Server{{
			ID: rc.LocalID, Address: n.transport.LocalAddr(), Suffrage: raft.Voter,
		}}}
		if err := raft.BootstrapCluster(rc, cached, logStore, n.snapshots, n.transport, boot); err != nil {
			return fail(fmt.Errorf("raft: bootstrap: %w", err))
		}
	}
	n.raft, err = raft.NewRaft(rc, NewFSM(store), cached, logStore, n.snapshots, n.transport)
	if err != nil {
		return fail(fmt.Errorf("raft: start: %w", err))
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
	return nil
}

// Apply proposes cmd and waits until it is committed and applied here. The
// returned result carries any domain failure; the error is only about
// getting the command committed.
func (n *Node) Apply(ctx context.Context, cmd *raftv1.Command) (*storage.Result, error) {
	data, err := proto.Marshal(cmd)
	if err != nil {
		return nil, fmt.Errorf("marshal command: %w", err)
	}
	if n.raft.State() != raft.Leader {
		if addr, _ := n.raft.LeaderWithID(); addr == "" {
			return nil, ErrNoLeader
		}
		return nil, ErrNotLeader
	}
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

// IsLeader reports whether this node leads its region now.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// WaitLeader blocks until the region has a leader or ctx ends.
func (n *Node) WaitLeader(ctx context.Context) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if addr, _ := n.raft.LeaderWithID(); addr != "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for leader: %w", ctx.Err())
		case <-t.C:
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

// Stats is Raft's own view of the node, for status output.
func (n *Node) Stats() map[string]string { return n.raft.Stats() }

// Shutdown stops Raft and closes the log. It does not close the store.
func (n *Node) Shutdown() error {
	var err error
	if n.raft != nil {
		err = n.raft.Shutdown().Error()
	}
	n.close()
	if err != nil {
		return fmt.Errorf("raft shutdown: %w", err)
	}
	return nil
}

func (n *Node) close() {
	if n.transport != nil {
		_ = n.transport.Close()
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
