package replication

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// Defaults of the LAN gossip pool that memberlist does not choose for us.
const (
	// defaultJoinRetryInterval is how often a node that reached none of its
	// seeds tries them again.
	defaultJoinRetryInterval = 3 * time.Second
	// deadMemberRetention is how long a dead or departed member stays in
	// Members after memberlist has stopped gossiping about it.
	deadMemberRetention = 24 * time.Hour
	// deadNodeReclaimTime lets a node that died come back under the same
	// name on a new address (a rescheduled container) once it has been
	// dead this long; memberlist otherwise refuses the new address forever.
	deadNodeReclaimTime = 30 * time.Second
)

// MemberMeta is what every node gossips about itself (JSON in memberlist
// node meta; it must fit memberlist.MetaMaxSize).
type MemberMeta struct {
	// NodeID is the node's Raft server id and its memberlist name.
	NodeID string `json:"id"`
	// Region is the region (Raft group) the node belongs to.
	Region string `json:"region"`
	// ClusterAddr is the node's cluster port (Raft and cluster gRPC), host:port.
	ClusterAddr string `json:"cluster"`
	// APIAddr is the node's client API address, host:port.
	APIAddr string `json:"api,omitempty"`
	// Leader is true while the node leads its region (gossiped in the WAN
	// pool, where other regions read it).
	Leader bool `json:"leader,omitempty"`
	// RegionAddr is the node's region replication address, when it has one
	// (gossiped in the LAN pool, so any node can list its region's).
	RegionAddr string `json:"region_addr,omitempty"`
	// BootstrapExpect is the number of servers the node waits for to form
	// a new region (0 when it forms none); formation needs every fresh
	// server of the region to expect the same.
	BootstrapExpect int `json:"expect,omitempty"`
	// HasState is true once the node has Raft state: it bootstrapped, or a
	// leader reached it. A fresh node that sees one never bootstraps.
	HasState bool `json:"state,omitempty"`
	// ClusterID is the cluster id in the node's state ("" until it has
	// one). A leader never adds a member gossiping another.
	ClusterID string `json:"cluster_id,omitempty"`
	// LowDisk is true while the node's data volume is below its free-space
	// threshold; the region's leader then refuses writes.
	LowDisk bool `json:"low_disk,omitempty"`
}

// wireMeta is the node meta on the wire: MemberMeta plus the leave intent.
// memberlist reports a graceful leave and a failure through the same
// event, so a leaving node first gossips Leaving and the others tell the
// two apart by the last meta they saw.
type wireMeta struct {
	MemberMeta
	Leaving bool `json:"leaving,omitempty"`
}

// MemberStatus is a member's state as this node sees it.
type MemberStatus string

// The states a member can be in.
const (
	// MemberAlive: the member answers probes.
	MemberAlive MemberStatus = "alive"
	// MemberSuspect: the member missed probes and may be declared dead.
	// memberlist v0.6.0 reports suspicion neither to its delegates nor in
	// its node list (Node.State stays zero), so Members reports a suspected
	// member as alive until it is declared dead; the value is reserved.
	MemberSuspect MemberStatus = "suspect"
	// MemberDead: the member was declared failed.
	MemberDead MemberStatus = "dead"
	// MemberLeft: the member left the pool gracefully.
	MemberLeft MemberStatus = "left"
)

// Member is one node of the pool as this node sees it.
type Member struct {
	// Meta is what the member gossips about itself.
	Meta MemberMeta
	// GossipAddr is the member's gossip address, host:port.
	GossipAddr string
	// Status is the member's state.
	Status MemberStatus
	// Since is when this node last saw Status change.
	Since time.Time
}

// MembershipConfig configures a node's LAN gossip pool.
type MembershipConfig struct {
	// BindAddr is the gossip address (TCP and UDP), IP:port; port 0 picks
	// one.
	BindAddr string
	// AdvertiseAddr is the gossip address peers use; "" means BindAddr
	// (memberlist picks a private IP when bound to 0.0.0.0).
	AdvertiseAddr string
	// Join lists seed gossip addresses, host:port. A node with no seeds
	// starts a pool of its own.
	Join []string
	// SecretKey is the 32-byte gossip encryption key (AES-256-GCM), the same
	// on every node of the region. Required.
	SecretKey []byte
	// Meta is what this node gossips about itself; Meta.NodeID is required
	// and names the node in the pool.
	Meta MemberMeta

	// ProbeInterval, ProbeTimeout and SuspicionMult tune failure detection;
	// zero values take memberlist.DefaultLANConfig's.
	ProbeInterval time.Duration
	ProbeTimeout  time.Duration
	SuspicionMult int
	// JoinRetryInterval is how often seeds are retried while none answered;
	// zero means 3s.
	JoinRetryInterval time.Duration

	// Logger receives membership changes and memberlist's own log lines.
	Logger *slog.Logger
}

// Validate reports the first problem with c.
func (c MembershipConfig) Validate() error {
	switch {
	case c.Meta.NodeID == "":
		return errors.New("membership: node id is required")
	case len(c.SecretKey) != 32:
		return fmt.Errorf("membership: gossip key must be 32 bytes, got %d", len(c.SecretKey))
	case c.ProbeInterval < 0 || c.ProbeTimeout < 0 || c.SuspicionMult < 0 || c.JoinRetryInterval < 0:
		return errors.New("membership: tuning values must not be negative")
	}
	if meta, err := json.Marshal(wireMeta{MemberMeta: c.Meta, Leaving: true}); err != nil || len(meta) > memberlist.MetaMaxSize {
		return fmt.Errorf("membership: node meta must encode to at most %d bytes", memberlist.MetaMaxSize)
	}
	if _, _, err := splitIPPort(c.BindAddr); err != nil {
		return fmt.Errorf("membership: bind address: %w", err)
	}
	if c.AdvertiseAddr != "" {
		if _, _, err := net.SplitHostPort(c.AdvertiseAddr); err != nil {
			return fmt.Errorf("membership: advertise address: %w", err)
		}
	}
	return nil
}

// Membership is a node's view of its region's LAN gossip pool.
type Membership struct {
	list   *memberlist.Memberlist
	self   MemberMeta
	nodeID string
	log    *slog.Logger

	metaMu sync.Mutex
	meta   []byte // wireMeta JSON memberlist gossips for this node

	mu      sync.Mutex
	members map[string]Member // by node id, including dead and departed ones

	stop chan struct{}
	wg   sync.WaitGroup
	// life serializes Leave and Shutdown: memberlist panics on a Leave
	// after Shutdown.
	life     sync.Mutex
	shutdown bool
}

// ErrMembershipShutdown is returned by Leave after Shutdown.
var ErrMembershipShutdown = errors.New("membership is shut down")

// StartMembership creates the gossip pool member (named Meta.NodeID) and
// joins the seeds. A node whose seeds are all unreachable still starts: it
// retries them in the background every JoinRetryInterval, logging, until one
// answers or Shutdown, so the nodes of a region can start in any order.
func StartMembership(cfg MembershipConfig) (*Membership, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.JoinRetryInterval == 0 {
		cfg.JoinRetryInterval = defaultJoinRetryInterval
	}
	meta, err := json.Marshal(wireMeta{MemberMeta: cfg.Meta})
	if err != nil {
		return nil, fmt.Errorf("membership: encode meta: %w", err)
	}
	m := &Membership{
		meta:    meta,
		self:    cfg.Meta,
		nodeID:  cfg.Meta.NodeID,
		log:     cfg.Logger.With("component", "membership"),
		members: make(map[string]Member),
		stop:    make(chan struct{}),
	}

	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.Meta.NodeID
	bindIP, bindPort, _ := splitIPPort(cfg.BindAddr)
	mc.BindAddr, mc.BindPort = bindIP, bindPort
	mc.AdvertiseAddr, mc.AdvertisePort = "", bindPort
	if cfg.AdvertiseAddr != "" {
		ip, port, err := resolveIPPort(cfg.AdvertiseAddr)
		if err != nil {
			return nil, fmt.Errorf("membership: advertise address: %w", err)
		}
		mc.AdvertiseAddr, mc.AdvertisePort = ip, port
	}
	mc.SecretKey = cfg.SecretKey
	mc.Delegate = (*metaDelegate)(m)
	mc.Events = (*eventDelegate)(m)
	mc.DeadNodeReclaimTime = deadNodeReclaimTime
	mc.Logger = log.New(memberlistLogWriter{m.log}, "", 0)
	if cfg.ProbeInterval > 0 {
		mc.ProbeInterval = cfg.ProbeInterval
	}
	if cfg.ProbeTimeout > 0 {
		mc.ProbeTimeout = cfg.ProbeTimeout
	}
	if cfg.SuspicionMult > 0 {
		mc.SuspicionMult = cfg.SuspicionMult
	}
	if mc.ProbeTimeout > mc.ProbeInterval {
		mc.ProbeTimeout = mc.ProbeInterval
	}

	m.list, err = memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("membership: start gossip on %s: %w", cfg.BindAddr, err)
	}
	// A shared seed list usually names this node too; joining ourselves
	// would "succeed" and stop the retries while we are still alone.
	seeds := slices.DeleteFunc(slices.Clone(cfg.Join), func(s string) bool { return s == m.LocalNode().GossipAddr })
	if len(seeds) > 0 {
		if _, err := m.list.Join(seeds); err != nil {
			m.log.Warn("no gossip seed answered; retrying in the background", "seeds", seeds, "err", err, "retry_every", cfg.JoinRetryInterval)
			m.wg.Add(1)
			go m.retryJoin(seeds, cfg.JoinRetryInterval)
		}
	}
	return m, nil
}

// retryJoin tries the seeds every interval until one answers, another node
// reaches us first, or Shutdown.
func (m *Membership) retryJoin(seeds []string, interval time.Duration) {
	defer m.wg.Done()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
		}
		if m.list.NumMembers() > 1 {
			m.log.Info("joined the gossip pool through another node", "seeds", seeds)
			return
		}
		n, err := m.list.Join(seeds)
		if err == nil {
			m.log.Info("joined the gossip pool", "seeds", seeds, "seeds_answered", n)
			return
		}
		m.log.Warn("no gossip seed answered", "seeds", seeds, "err", err)
	}
}

// Members returns every member this node knows, sorted by node id,
// including dead and departed ones (for a day).
func (m *Membership) Members() []Member {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Member, 0, len(m.members))
	for id, mem := range m.members {
		if mem.Status != MemberAlive && time.Since(mem.Since) > deadMemberRetention {
			delete(m.members, id)
			continue
		}
		out = append(out, mem)
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Meta.NodeID, b.Meta.NodeID) })
	return out
}

// Lookup returns the member with node id nodeID.
func (m *Membership) Lookup(nodeID string) (Member, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	mem, ok := m.members[nodeID]
	return mem, ok
}

// LocalNode returns this node as a member.
func (m *Membership) LocalNode() Member {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.members[m.nodeID]
}

// Self is what this node gossips about itself now.
func (m *Membership) Self() MemberMeta {
	m.metaMu.Lock()
	defer m.metaMu.Unlock()
	return m.self
}

// Leave tells the pool this node is leaving, waiting up to timeout in all
// for the messages to go out: first its leave intent (so the others record
// it as left rather than dead), then memberlist's leave. The node keeps
// gossiping until Shutdown.
func (m *Membership) Leave(timeout time.Duration) error {
	m.life.Lock()
	defer m.life.Unlock()
	if m.shutdown {
		return ErrMembershipShutdown
	}
	deadline := time.Now().Add(timeout)
	meta, err := json.Marshal(wireMeta{MemberMeta: m.self, Leaving: true})
	if err != nil {
		return fmt.Errorf("membership: encode meta: %w", err)
	}
	m.metaMu.Lock()
	m.meta = meta
	m.metaMu.Unlock()
	if err := m.list.UpdateNode(time.Until(deadline)); err != nil {
		// Leave anyway: peers that missed the intent record a failure.
		m.log.Warn("leave intent not confirmed; leaving anyway", "err", err)
	}
	if err := m.list.Leave(max(time.Until(deadline), time.Millisecond)); err != nil {
		return fmt.Errorf("membership: leave: %w", err)
	}
	return nil
}

// UpdateMeta changes what this node gossips about itself (its node id
// stays) and pushes it to the pool, waiting up to timeout.
func (m *Membership) UpdateMeta(meta MemberMeta, timeout time.Duration) error {
	m.life.Lock()
	defer m.life.Unlock()
	return m.updateMetaLocked(meta, timeout)
}

// ChangeMeta applies change to what this node gossips about itself and,
// when change reports a difference, pushes it to the pool. The read and
// the write happen under one lock, so two parts of the node changing
// different fields (formation, the disk watcher) never undo each other.
func (m *Membership) ChangeMeta(change func(*MemberMeta) bool, timeout time.Duration) error {
	m.life.Lock()
	defer m.life.Unlock()
	meta := m.Self()
	if !change(&meta) {
		return nil
	}
	return m.updateMetaLocked(meta, timeout)
}

func (m *Membership) updateMetaLocked(meta MemberMeta, timeout time.Duration) error {
	if m.shutdown {
		return ErrMembershipShutdown
	}
	meta.NodeID = m.nodeID
	buf, err := json.Marshal(wireMeta{MemberMeta: meta})
	if err != nil {
		return fmt.Errorf("membership: encode meta: %w", err)
	}
	m.metaMu.Lock()
	m.self, m.meta = meta, buf
	m.metaMu.Unlock()
	if err := m.list.UpdateNode(timeout); err != nil {
		return fmt.Errorf("membership: update meta: %w", err)
	}
	return nil
}

// Shutdown stops gossip without a leave message: others will find the node
// dead. Call Leave first for a graceful exit. Safe to call more than once.
func (m *Membership) Shutdown() error {
	m.life.Lock()
	defer m.life.Unlock()
	if m.shutdown {
		return nil
	}
	m.shutdown = true
	close(m.stop)
	m.wg.Wait()
	if err := m.list.Shutdown(); err != nil {
		return fmt.Errorf("membership: shutdown: %w", err)
	}
	return nil
}

// observe records a memberlist event about a node: alive after a join or
// update, and after a leave, left if its last meta announced it was
// leaving, else dead. memberlist calls its delegates under its own lock,
// so n is consistent here and must not be kept. (n.State is not the
// node's state: memberlist keeps that in a field of its own.)
func (m *Membership) observe(n *memberlist.Node, gone bool) {
	var meta wireMeta
	if err := json.Unmarshal(n.Meta, &meta); err != nil {
		m.log.Warn("undecodable member meta", "node_id", n.Name, "err", err)
	}
	meta.NodeID = n.Name // the pool's name is authoritative
	status := MemberAlive
	switch {
	case gone && meta.Leaving:
		status = MemberLeft
	case gone:
		status = MemberDead
	}
	mem := Member{Meta: meta.MemberMeta, GossipAddr: n.Address(), Status: status}

	m.mu.Lock()
	prev, known := m.members[n.Name]
	mem.Since = prev.Since
	if !known || prev.Status != status {
		mem.Since = time.Now()
	}
	m.members[n.Name] = mem
	m.mu.Unlock()

	if !known || prev.Status != status || prev.Meta != mem.Meta {
		m.log.Info("member changed", "node_id", n.Name, "status", string(status),
			"region", meta.Region, "cluster_addr", meta.ClusterAddr, "gossip_addr", mem.GossipAddr)
	}
}

// metaDelegate hands memberlist this node's meta; the pool carries no
// other user data.
type metaDelegate Membership

var _ memberlist.Delegate = (*metaDelegate)(nil)

func (d *metaDelegate) NodeMeta(limit int) []byte {
	d.metaMu.Lock()
	defer d.metaMu.Unlock()
	if len(d.meta) > limit {
		return nil // Validate kept it within MetaMaxSize; never truncate JSON
	}
	return d.meta
}
func (d *metaDelegate) NotifyMsg([]byte)                           {}
func (d *metaDelegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *metaDelegate) LocalState(join bool) []byte                { return nil }
func (d *metaDelegate) MergeRemoteState(buf []byte, join bool)     {}

// eventDelegate feeds memberlist's join, leave and update events into the
// Membership.
type eventDelegate Membership

var _ memberlist.EventDelegate = (*eventDelegate)(nil)

func (d *eventDelegate) NotifyJoin(n *memberlist.Node)   { (*Membership)(d).observe(n, false) }
func (d *eventDelegate) NotifyLeave(n *memberlist.Node)  { (*Membership)(d).observe(n, true) }
func (d *eventDelegate) NotifyUpdate(n *memberlist.Node) { (*Membership)(d).observe(n, false) }

// memberlistLogWriter turns memberlist's "[LEVEL] memberlist: ..." lines
// into slog records at the matching level.
type memberlistLogWriter struct{ l *slog.Logger }

func (w memberlistLogWriter) Write(p []byte) (int, error) {
	line := string(bytes.TrimRight(p, "\r\n"))
	level := slog.LevelInfo
	for _, pl := range memberlistLevels {
		if rest, ok := strings.CutPrefix(line, pl.prefix); ok {
			level, line = pl.level, strings.TrimSpace(rest)
			break
		}
	}
	w.l.Log(context.Background(), level, strings.TrimPrefix(line, "memberlist: "))
	return len(p), nil
}

var memberlistLevels = []struct {
	prefix string
	level  slog.Level
}{
	{"[DEBUG]", slog.LevelDebug}, {"[INFO]", slog.LevelInfo}, {"[WARN]", slog.LevelWarn}, {"[ERR]", slog.LevelError},
}

// splitIPPort parses an IP:port bind address; memberlist binds IPs, not
// names.
func splitIPPort(addr string) (string, int, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	if net.ParseIP(host) == nil {
		return "", 0, fmt.Errorf("%q: host must be an IP address", addr)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return "", 0, fmt.Errorf("%q: bad port", addr)
	}
	return host, int(port), nil
}

// resolveIPPort resolves a host:port advertise address to an IP, since
// memberlist advertises IPs.
func resolveIPPort(addr string) (string, int, error) {
	ta, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		return "", 0, err
	}
	if ta.IP == nil || ta.IP.IsUnspecified() || ta.Port == 0 {
		return "", 0, fmt.Errorf("%q must be a reachable host:port", addr)
	}
	return ta.IP.String(), ta.Port, nil
}
