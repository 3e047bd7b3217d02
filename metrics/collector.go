package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// NodeState is what a node reports at each scrape: values read from its
// Raft member, its files and its state, never counted on the hot path.
type NodeState struct {
	Raft RaftState
	// StateDBSizeBytes is state.db's file size; StateDBInUseBytes what its
	// pages in use take (the rest is free pages: fragmentation).
	StateDBSizeBytes, StateDBInUseBytes int64
	// DataVolumeFreeBytes and DataVolumeSizeBytes describe the data
	// directory's file system; zero size means unknown.
	DataVolumeFreeBytes, DataVolumeSizeBytes uint64
	// Replication lists the paired regions this node ships to (only the
	// leader ships, but every node reports the backlog in its state).
	Replication []Destination
	Secrets     SecretCounts
	// KeyringVersion is the number of keys in the region's keyring (the
	// newest key's version); 0 before the keyring exists.
	KeyringVersion int
	// Ready is the node's readiness (the /readyz answer); Diverged is set
	// while a consistency check has it fenced.
	Ready, Diverged bool
	// Certificates maps a certificate's use (cluster, grpc, aws, metrics)
	// to its expiry.
	Certificates map[string]time.Time
}

// RaftState is a node's Raft view.
type RaftState struct {
	HasLeader, IsLeader                           bool
	Term, CommitIndex, AppliedIndex, LastLogIndex uint64
	// LastContact is the time since the leader was last heard from (zero
	// on the leader).
	LastContact time.Duration
	// Voters is the number of voters in the configuration.
	Voters int
}

// Destination is one paired region this region replicates to.
type Destination struct {
	Region string
	// Pending counts changes not yet acknowledged; Oldest is the commit
	// time of the oldest of them.
	Pending uint64
	Oldest  time.Time
	// LastContact is the last successful exchange with it (zero: none
	// since this node started leading).
	LastContact time.Time
	Reachable   bool
}

// SecretCounts counts the region's secrets by state.
type SecretCounts struct {
	Active, ScheduledForDeletion, Replicas               int
	RotationEnabled, RotationOverdue, RotationInProgress int
}

// NodeCollector turns a node's NodeState into gauges at scrape time.
type NodeCollector struct {
	state func() NodeState
	now   func() time.Time
}

// NewNodeCollector returns a collector reading state at every scrape.
func NewNodeCollector(state func() NodeState) *NodeCollector {
	return &NodeCollector{state: state, now: time.Now}
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName(Namespace, "", name), help, labels, nil)
}

var (
	descHasLeader     = desc("raft_has_leader", "1 when this node knows a leader of its region, else 0.")
	descIsLeader      = desc("raft_is_leader", "1 when this node is the region's leader, else 0.")
	descTerm          = desc("raft_term", "The Raft term this node is in.")
	descCommitIndex   = desc("raft_commit_index", "The highest log index this node knows committed.")
	descAppliedIndex  = desc("raft_applied_index", "The highest log index applied to this node's state machine.")
	descLastLogIndex  = desc("raft_last_log_index", "The last index in this node's Raft log.")
	descLastContact   = desc("raft_last_contact_seconds", "Time since this follower last heard from the leader (0 on the leader).")
	descVoters        = desc("raft_voters", "Voters in the region's Raft configuration.")
	descDBSize        = desc("state_db_size_bytes", "Size of the state database file (state.db).")
	descDBInUse       = desc("state_db_size_in_use_bytes", "Bytes of state.db its pages in use take; size minus in use is free pages (fragmentation).")
	descVolFree       = desc("data_volume_free_bytes", "Free bytes of the file system holding the data directory, for unprivileged users.")
	descVolSize       = desc("data_volume_size_bytes", "Size of the file system holding the data directory.")
	descReplLag       = desc("replication_lag_seconds", "Age of the oldest change not yet acknowledged by a paired region (0 when it is caught up).", "destination")
	descReplPending   = desc("replication_pending_changes", "Changes not yet acknowledged by a paired region.", "destination")
	descReplContact   = desc("replication_last_contact_timestamp_seconds", "Unix time of the last successful exchange with a paired region (absent before the first).", "destination")
	descReplReachable = desc("replication_region_reachable", "1 when a paired region answered within the contact window or gossips alive members, else 0.", "destination")
	descSecrets       = desc("secrets", "Secrets in the region's state, by state (active, scheduled_for_deletion, replica).", "state")
	descRotEnabled    = desc("rotation_enabled_secrets", "Secrets with rotation turned on.")
	descRotOverdue    = desc("rotations_overdue", "Secrets whose rotation is due and has not started, or has a failed step waiting for a retry.")
	descRotProgress   = desc("rotations_in_progress", "Rotations started and not finished.")
	descKeyring       = desc("keyring_version", "Number of keys in the region's keyring: the version of the newest.")
	descReady         = desc("ready", "1 when the node serves requests (/readyz), else 0.")
	descDiverged      = desc("diverged", "1 while a consistency check has this node fenced, else 0.")
	descCertExpiry    = desc("tls_certificate_expiry_timestamp_seconds", "Unix time at which a certificate this node serves expires, by use.", "use")
)

// Describe implements prometheus.Collector.
func (c *NodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descHasLeader, descIsLeader, descTerm, descCommitIndex, descAppliedIndex, descLastLogIndex,
		descLastContact, descVoters, descDBSize, descDBInUse, descVolFree, descVolSize, descReplLag, descReplPending, descReplContact,
		descReplReachable, descSecrets, descRotEnabled, descRotOverdue, descRotProgress, descKeyring, descReady, descDiverged, descCertExpiry} {
		ch <- d
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Collect implements prometheus.Collector.
func (c *NodeCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.state()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	r := s.Raft
	gauge(descHasLeader, b2f(r.HasLeader))
	gauge(descIsLeader, b2f(r.IsLeader))
	gauge(descTerm, float64(r.Term))
	gauge(descCommitIndex, float64(r.CommitIndex))
	gauge(descAppliedIndex, float64(r.AppliedIndex))
	gauge(descLastLogIndex, float64(r.LastLogIndex))
	gauge(descLastContact, r.LastContact.Seconds())
	gauge(descVoters, float64(r.Voters))
	gauge(descDBSize, float64(s.StateDBSizeBytes))
	gauge(descDBInUse, float64(s.StateDBInUseBytes))
	if s.DataVolumeSizeBytes > 0 {
		gauge(descVolFree, float64(s.DataVolumeFreeBytes))
		gauge(descVolSize, float64(s.DataVolumeSizeBytes))
	}
	now := c.now()
	for _, d := range s.Replication {
		lag := 0.0
		if d.Pending > 0 && !d.Oldest.IsZero() {
			lag = max(now.Sub(d.Oldest).Seconds(), 0)
		}
		gauge(descReplLag, lag, d.Region)
		gauge(descReplPending, float64(d.Pending), d.Region)
		gauge(descReplReachable, b2f(d.Reachable), d.Region)
		if !d.LastContact.IsZero() {
			gauge(descReplContact, float64(d.LastContact.UnixNano())/1e9, d.Region)
		}
	}
	gauge(descSecrets, float64(s.Secrets.Active), "active")
	gauge(descSecrets, float64(s.Secrets.ScheduledForDeletion), "scheduled_for_deletion")
	gauge(descSecrets, float64(s.Secrets.Replicas), "replica")
	gauge(descRotEnabled, float64(s.Secrets.RotationEnabled))
	gauge(descRotOverdue, float64(s.Secrets.RotationOverdue))
	gauge(descRotProgress, float64(s.Secrets.RotationInProgress))
	gauge(descKeyring, float64(s.KeyringVersion))
	gauge(descReady, b2f(s.Ready))
	gauge(descDiverged, b2f(s.Diverged))
	for use, at := range s.Certificates {
		gauge(descCertExpiry, float64(at.Unix()), use)
	}
}
