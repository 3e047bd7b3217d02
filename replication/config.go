package replication

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"time"

	"github.com/cofferhq/coffer/internal/diskspace"
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
	// itself as the only voter, at once; others are added by its autopilot
	// when they join its gossip pool. For a single node.
	Bootstrap bool
	// BootstrapExpect forms a new region of that many voters (formation.go):
	// a node with no Raft state waits until it sees that many servers of
	// its region in the gossip pool, all without state and expecting the
	// same number, and the one with the lowest id among the first that many
	// bootstraps them all as voters. A node that sees a member of its
	// region with state never bootstraps: it waits to be added. 1 is
	// Bootstrap; 0 never bootstraps (a node joining an existing region).
	BootstrapExpect int
	// ConsistencyCheckInterval is how often the leader checks that every
	// server's state hashes the same at one index (consistency.go); it also
	// checks when it takes over and when a server starts or comes back.
	// Zero turns the automatic checks off; CheckConsistency still runs on
	// demand.
	ConsistencyCheckInterval time.Duration
	// DivergedMarker is the file that records that a consistency check
	// found this node diverged; while it exists the node serves no client
	// requests. Default: Dir/diverged.
	DivergedMarker string
	// OnDiverged, when set, is called when a consistency check marks this
	// node diverged (true) or clears the mark (false).
	OnDiverged func(diverged bool)

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

	// MinFreeBytes is the free space each data volume (the state file's,
	// the Raft log's) keeps back: below it, writes are refused before they
	// are proposed (ErrLowDiskSpace). 0 means 1 GiB or a tenth of a smaller
	// volume; negative turns the check off.
	MinFreeBytes int64
	// DiskSpace measures a volume; nil is the real one. Tests replace it.
	DiskSpace diskspace.Measure

	// Logger receives the node's and Raft's log lines.
	Logger *slog.Logger
	// Observer, when set, is told of applies, commits, log appends,
	// snapshots, read-index rounds and leader changes (metrics).
	Observer Observer
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
	if c.DivergedMarker == "" && c.Dir != "" {
		c.DivergedMarker = filepath.Join(c.Dir, "diverged")
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
	case c.BootstrapExpect < 0:
		return fmt.Errorf("raft: bootstrap expect %d must not be negative", c.BootstrapExpect)
	case c.Bootstrap && c.BootstrapExpect > 1:
		return fmt.Errorf("raft: bootstrap (a region of one) and bootstrap expect %d exclude each other", c.BootstrapExpect)
	case c.BootstrapExpect > 1 && c.Gossip.BindAddr == "":
		return fmt.Errorf("raft: bootstrap expect %d needs the gossip pool to find the other servers", c.BootstrapExpect)
	case c.ConsistencyCheckInterval < 0:
		return fmt.Errorf("raft: consistency check interval %s must not be negative", c.ConsistencyCheckInterval)
	}
	if _, _, err := net.SplitHostPort(c.BindAddr); err != nil {
		return fmt.Errorf("raft: bind address %q: %w", c.BindAddr, err)
	}
	if host, _, err := net.SplitHostPort(c.AdvertiseAddr); err != nil || host == "" || net.ParseIP(host) != nil && net.ParseIP(host).IsUnspecified() {
		return fmt.Errorf("raft: advertise address %q must be a reachable host:port", c.AdvertiseAddr)
	}
	return nil
}
