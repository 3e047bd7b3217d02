package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/cofferhq/coffer/node"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/replication"
	"github.com/cofferhq/coffer/server"
	"github.com/cofferhq/coffer/test/wait"
)

// Bounds that keep a broken build from hanging CI. They are generous because
// the suite runs under -race on two cores; no test asserts on durations.
const (
	readyTimeout    = 90 * time.Second // node.Start until WaitReady, all voters
	convergeTimeout = 60 * time.Second // elections, catch-up, healing
	rpcTimeout      = 20 * time.Second // per RPC made by the tests
)

// Region and account every test node is configured with.
const (
	testRegion  = "us-east-1"
	testAccount = "123456789012"
)

// The root principal's access key the region is created with; every
// client of the tests authenticates with it.
const (
	rootAccessKeyID     = "AKIACLUSTERTEST00001"
	rootSecretAccessKey = "cluster/test/root/secret/access/key/00001"
)

// rootBearer authenticates gRPC calls as the root principal.
type rootBearer struct{}

func (rootBearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + rootAccessKeyID + ":" + rootSecretAccessKey}, nil
}

func (rootBearer) RequireTransportSecurity() bool { return false }

// Timing of every node: fast enough that a failover takes about a second,
// slow enough that the race detector on two cores does not cause elections.
const (
	heartbeatTimeout   = 500 * time.Millisecond
	electionTimeout    = 500 * time.Millisecond
	leaderLeaseTimeout = 250 * time.Millisecond
)

// Option changes how StartCluster configures its nodes.
type Option func(*settings)

type settings struct {
	raft []func(*replication.Config)
	node []func(*node.Options)
	// region names the cluster's region (testRegion when empty); cross,
	// when set, gives the nodes region replication ports and WAN gossip.
	region string
	cross  *RegionSet
}

// WithNode lets a test change every node's options (the AWS listener,
// rotation tuning) after the harness has filled them in.
func WithNode(f func(*node.Options)) Option {
	return func(s *settings) { s.node = append(s.node, f) }
}

// WithRaft lets a test change every node's Raft configuration after the
// harness has filled it in.
func WithRaft(f func(*replication.Config)) Option {
	return func(s *settings) { s.raft = append(s.raft, f) }
}

// WithSnapshots makes Raft snapshot after threshold new entries (checked
// every interval) and keep trailing entries behind a snapshot.
func WithSnapshots(threshold, trailing uint64, interval time.Duration) Option {
	return WithRaft(func(c *replication.Config) {
		c.SnapshotThreshold, c.TrailingLogs, c.SnapshotInterval = threshold, trailing, interval
	})
}

// Cluster is a region of in-process nodes on loopback TCP. Node i is
// "node-i"; node 0 bootstrapped the region.
type Cluster struct {
	t *testing.T
	// Net is the network between the nodes' cluster ports.
	Net *Network

	ca        *replication.CA
	rootKey   []byte
	gossipKey []byte
	set       settings
	logs      *logSink
	members   []*member

	mu sync.Mutex // guards each member's node and conn
}

// member is one node's identity, which survives stop and restart: data
// directory, ports and certificate.
type member struct {
	id                                string
	dataDir                           string
	grpcAddr, clusterAddr, gossipAddr string
	regionAddr, wanAddr               string // with a RegionSet only
	tls                               *replication.ClusterTLS
	started                           bool // has run at least once

	node *node.Node // nil while stopped
	conn *grpc.ClientConn
}

// StartCluster starts an n-node region and returns once every node serves
// requests and all n are voters. Node 0 bootstraps; the others join its
// gossip pool and autopilot adds and promotes them. Everything stops at the
// end of the test.
func StartCluster(t *testing.T, n int, opts ...Option) *Cluster {
	t.Helper()
	c := &Cluster{t: t, Net: NewNetwork(), logs: newLogSink()}
	for _, o := range opts {
		o(&c.set)
	}
	var err error
	if c.ca, err = replication.NewCA("coffer cluster test CA", 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	c.rootKey, c.gossipKey = randomBytes(t, 32), randomBytes(t, 32)
	base := t.TempDir() // before the Cleanup below, so it is removed after the nodes stop
	t.Cleanup(func() {
		c.stopAll()
		if t.Failed() {
			t.Logf("node logs (last %d lines at %s and above):\n%s", logLines, c.logs.level, c.logs.dump())
		}
	})
	for i := range n {
		id := fmt.Sprintf("node-%d", i)
		tlsMat, _, _, err := c.ca.IssueNode(id, []string{"127.0.0.1"}, 24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		c.members = append(c.members, &member{id: id, tls: tlsMat})
	}
	for i, m := range c.members {
		// A probed free port can be taken by someone else before the node
		// binds it; try again with new ports (and a new directory, since a
		// half-started node may have written its addresses there).
		for attempt := 1; ; attempt++ {
			m.dataDir = filepath.Join(base, m.id, strconv.Itoa(attempt))
			m.grpcAddr, m.clusterAddr, m.gossipAddr = freeAddr(t, false), freeAddr(t, false), freeAddr(t, true)
			c.Net.register(m.clusterAddr, i)
			if c.set.cross != nil {
				m.regionAddr, m.wanAddr = freeAddr(t, false), freeAddr(t, true)
				c.set.cross.register(c.region(), m.regionAddr, m.wanAddr)
			}
			nd, err := node.Start(c.options(i))
			if err == nil {
				c.mu.Lock()
				m.node, m.started = nd, true
				c.mu.Unlock()
				break
			}
			if attempt < 3 && strings.Contains(err.Error(), "address already in use") {
				t.Logf("start %s: %v; retrying with other ports", m.id, err)
				continue
			}
			t.Fatalf("start %s: %v", m.id, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	for i := range n {
		if err := c.Node(i).WaitReady(ctx); err != nil {
			t.Fatalf("%s never became ready: %v", c.ID(i), err)
		}
	}
	c.WaitVoters(n)
	// A follower checks credentials against its own state: wait until
	// every node has applied the root principal's access key.
	for i := range n {
		waitFor(t, readyTimeout, func() error {
			ctx, cancel := rpcContext(staleRead(0)...)
			defer cancel()
			_, err := c.Client(i).ListSecrets(ctx, &cofferv1.ListSecretsRequest{})
			return err
		})
	}
	return c
}

// options builds node i's options. Seeds are the gossip addresses of the
// other nodes that have run, so a restarted node rejoins through any of
// them.
func (c *Cluster) options(i int) node.Options {
	m := c.members[i]
	var seeds []string
	for j, o := range c.members {
		if j != i && o.started {
			seeds = append(seeds, o.gossipAddr)
		}
	}
	rc := replication.Config{
		NodeID:    m.id,
		BindAddr:  m.clusterAddr,
		TLS:       m.tls,
		Dial:      c.Net.Dialer(i),
		Bootstrap: i == 0,
		Gossip: replication.MembershipConfig{
			BindAddr: m.gossipAddr, Join: seeds, SecretKey: c.gossipKey,
			ProbeInterval: 100 * time.Millisecond, JoinRetryInterval: 250 * time.Millisecond,
		},
		Autopilot: replication.AutopilotConfig{
			Interval: 200 * time.Millisecond, StableFor: 300 * time.Millisecond,
			// Long, so that stopped and partitioned nodes stay voters.
			DeadServerTimeout: 10 * time.Minute,
		},
		HeartbeatTimeout:   heartbeatTimeout,
		ElectionTimeout:    electionTimeout,
		LeaderLeaseTimeout: leaderLeaseTimeout,
	}
	for _, f := range c.set.raft {
		f(&rc)
	}
	svc := server.DefaultConfig()
	svc.Region, svc.AccountID = c.region(), testAccount
	opts := node.Options{
		DataDir: m.dataDir, GRPCAddr: m.grpcAddr, Service: svc, Raft: rc,
		RootKey: slices.Clone(c.rootKey), Logger: c.logs.logger(m.id),
		RootAccessKeyID: rootAccessKeyID, RootSecretAccessKey: rootSecretAccessKey,
	}
	if rs := c.set.cross; rs != nil {
		opts.Region = rs.regionOptions(c.region(), m, c.ca.CertPEM)
		// Replica reads reach the primary's ReplicationStatus quickly.
		opts.Service.AccessFlushInterval, opts.Service.AccessReportInterval = 200*time.Millisecond, 200*time.Millisecond
	}
	for _, f := range c.set.node {
		f(&opts)
	}
	return opts
}

// region is the cluster's region.
func (c *Cluster) region() string {
	if c.set.region != "" {
		return c.set.region
	}
	return testRegion
}

// N is the number of nodes, running or not.
func (c *Cluster) N() int { return len(c.members) }

// ID is node i's Raft id.
func (c *Cluster) ID(i int) string { return c.members[i].id }

// Node is node i, or nil while it is stopped.
func (c *Cluster) Node(i int) *node.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.members[i].node
}

// Running lists the indexes of the running nodes.
func (c *Cluster) Running() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []int
	for i, m := range c.members {
		if m.node != nil {
			out = append(out, i)
		}
	}
	return out
}

// Others lists every node index but the given ones.
func (c *Cluster) Others(except ...int) []int {
	var out []int
	for i := range c.members {
		if !slices.Contains(except, i) {
			out = append(out, i)
		}
	}
	return out
}

// Stop stops node i cleanly (node.Stop); the tests also use it as a kill.
// Its data, ports and certificate stay for Restart.
func (c *Cluster) Stop(i int) {
	c.t.Helper()
	c.mu.Lock()
	nd := c.members[i].node
	c.members[i].node = nil
	c.mu.Unlock()
	if nd == nil {
		c.t.Fatalf("stop %s: not running", c.ID(i))
	}
	if err := nd.Stop(); err != nil {
		c.t.Errorf("stop %s: %v", c.ID(i), err)
	}
}

// Restart starts a stopped node i again with the same data directory,
// ports, certificate and root key; it rejoins the gossip pool through the
// other nodes. It returns once the node serves requests, with how long that
// took from node.Start.
func (c *Cluster) Restart(i int) time.Duration {
	c.t.Helper()
	if c.Node(i) != nil {
		c.t.Fatalf("restart %s: already running", c.ID(i))
	}
	start := time.Now()
	nd, err := node.Start(c.options(i))
	if err != nil {
		c.t.Fatalf("restart %s: %v", c.ID(i), err)
	}
	c.mu.Lock()
	c.members[i].node = nd
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	if err := nd.WaitReady(ctx); err != nil {
		c.t.Fatalf("restarted %s never became ready: %v", c.ID(i), err)
	}
	return time.Since(start)
}

func (c *Cluster) stopAll() {
	c.mu.Lock()
	var running []*node.Node
	var conns []*grpc.ClientConn
	for _, m := range c.members {
		if m.node != nil {
			running = append(running, m.node)
			m.node = nil
		}
		if m.conn != nil {
			conns = append(conns, m.conn)
			m.conn = nil
		}
	}
	c.mu.Unlock()
	for _, cc := range conns {
		_ = cc.Close()
	}
	var wg sync.WaitGroup
	for _, nd := range running {
		wg.Go(func() {
			if err := nd.Stop(); err != nil {
				c.t.Errorf("stop at cleanup: %v", err)
			}
		})
	}
	wg.Wait()
}

// Leader waits until the running nodes agree on one leader and returns
// its index.
func (c *Cluster) Leader() int {
	c.t.Helper()
	return c.WaitLeader(c.Running()...)
}

// WaitLeader waits until exactly one of the nodes among leads and all of
// them name it as their leader, and returns its index.
func (c *Cluster) WaitLeader(among ...int) int {
	c.t.Helper()
	leader := -1
	waitFor(c.t, convergeTimeout, func() error {
		leader = -1
		var leaders []string
		for _, i := range among {
			nd := c.Node(i)
			if nd == nil {
				return fmt.Errorf("%s is not running", c.ID(i))
			}
			if nd.Raft().IsLeader() {
				leaders = append(leaders, c.ID(i))
				leader = i
			}
		}
		if len(leaders) != 1 {
			return fmt.Errorf("leaders among %v: %v", c.ids(among), leaders)
		}
		for _, i := range among {
			if got := c.Node(i).Raft().Leader(); got != c.ID(leader) {
				return fmt.Errorf("%s names leader %q, want %s", c.ID(i), got, c.ID(leader))
			}
		}
		return nil
	})
	return leader
}

// WaitVoters waits until the leader's configuration has n voters, all of
// them reachable.
func (c *Cluster) WaitVoters(n int) {
	c.t.Helper()
	waitFor(c.t, readyTimeout, func() error {
		l := c.currentLeader()
		if l < 0 {
			return errors.New("no leader")
		}
		ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
		defer cancel()
		servers, err := c.Node(l).Raft().Status(ctx)
		if err != nil {
			return err
		}
		voters := 0
		for _, s := range servers {
			if s.Voter && s.Status != nil {
				voters++
			}
		}
		if voters != n || len(servers) != n {
			return fmt.Errorf("%d reachable voters of %d servers, want %d voters", voters, len(servers), n)
		}
		return nil
	})
}

// currentLeader is the one running node that believes it leads, or -1.
func (c *Cluster) currentLeader() int {
	leader := -1
	for _, i := range c.Running() {
		if nd := c.Node(i); nd != nil && nd.Raft().IsLeader() {
			if leader >= 0 {
				return -1
			}
			leader = i
		}
	}
	return leader
}

func (c *Cluster) ids(idx []int) []string {
	out := make([]string, len(idx))
	for k, i := range idx {
		out[k] = c.ID(i)
	}
	return out
}

// conn returns the client connection to node i's API, made once: the
// address stays the same across restarts and gRPC reconnects.
func (c *Cluster) conn(i int) *grpc.ClientConn {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.members[i]
	if m.conn == nil {
		cc, err := grpc.NewClient(m.grpcAddr,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithPerRPCCredentials(rootBearer{}),
			grpc.WithConnectParams(grpc.ConnectParams{
				Backoff:           backoff.Config{BaseDelay: 20 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 250 * time.Millisecond},
				MinConnectTimeout: 5 * time.Second,
			}))
		if err != nil {
			c.t.Fatalf("client for %s: %v", m.id, err)
		}
		m.conn = cc
	}
	return m.conn
}

// Client is a SecretsManagerService client on node i's API (plaintext),
// authenticated as the root principal.
func (c *Cluster) Client(i int) cofferv1.SecretsManagerServiceClient {
	return cofferv1.NewSecretsManagerServiceClient(c.conn(i))
}

// Rotation is a RotationService client on node i's API.
func (c *Cluster) Rotation(i int) cofferv1.RotationServiceClient {
	return cofferv1.NewRotationServiceClient(c.conn(i))
}

// Regions is a RegionService client on node i's API.
func (c *Cluster) Regions(i int) cofferv1.RegionServiceClient {
	return cofferv1.NewRegionServiceClient(c.conn(i))
}

// Admin is an AdminService client on node i's API.
func (c *Cluster) Admin(i int) cofferv1.AdminServiceClient {
	return cofferv1.NewAdminServiceClient(c.conn(i))
}

// waitFor polls cond until it returns nil, failing the test with cond's
// last error once timeout has passed. Call it from the test goroutine.
func waitFor(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	wait.Until(t, timeout, cond)
}

// freeAddr returns a loopback address whose port was free a moment ago;
// withUDP also checks UDP, for gossip, which binds both.
func freeAddr(t *testing.T, withUDP bool) string {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		if withUDP {
			u, err := net.ListenPacket("udp", addr)
			if err != nil {
				_ = l.Close()
				continue
			}
			_ = u.Close()
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		return addr
	}
	t.Fatal("no free TCP and UDP port")
	return ""
}

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// newToken returns a fresh ClientRequestToken (32 hex characters). It is
// safe in any goroutine: crypto/rand.Read does not fail.
func newToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// rpcContext returns a context for one RPC from a test, with metadata
// key/value pairs.
func rpcContext(kv ...string) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
	if len(kv) > 0 {
		ctx = metadata.AppendToOutgoingContext(ctx, kv...)
	}
	return ctx, cancel
}

// staleRead is the metadata of a stale read that waits for minIndex.
func staleRead(minIndex uint64) []string {
	kv := []string{server.ConsistencyHeader, "stale"}
	if minIndex > 0 {
		kv = append(kv, server.MinIndexHeader, strconv.FormatUint(minIndex, 10))
	}
	return kv
}

// answeredIndex is the x-coffer-index response header, or 0.
func answeredIndex(t testing.TB, md metadata.MD) uint64 {
	t.Helper()
	v := md.Get(server.IndexHeader)
	if len(v) == 0 {
		return 0
	}
	idx, err := strconv.ParseUint(v[0], 10, 64)
	if err != nil {
		t.Errorf("%s header %q: %v", server.IndexHeader, v[0], err)
	}
	return idx
}

// getValue reads name's AWSCURRENT value (or versionID's, when set) with
// the given request metadata, and the index the answer reflects.
func getValue(ctx context.Context, cl cofferv1.SecretsManagerServiceClient, name, versionID string) (*cofferv1.GetSecretValueResponse, uint64, error) {
	var hdr metadata.MD
	resp, err := cl.GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: name, VersionId: versionID}, grpc.Header(&hdr))
	if err != nil {
		return nil, 0, err
	}
	idx := uint64(0)
	if v := hdr.Get(server.IndexHeader); len(v) > 0 {
		idx, _ = strconv.ParseUint(v[0], 10, 64)
	}
	return resp, idx, nil
}

// describeErr renders an RPC error with its AWS type, for messages.
func describeErr(err error) string {
	if err == nil {
		return "<nil>"
	}
	return fmt.Sprintf("%s (%v)", server.TypeOf(err), err)
}

// logLines is how many log lines of the nodes a failed test shows.
const logLines = 400

// logSink keeps the nodes' last log lines, shown when a test fails. The
// level is warn unless COFFER_CLUSTER_LOG names another (debug, info).
type logSink struct {
	level slog.Level
	mu    sync.Mutex
	lines []string
	next  int
}

func newLogSink() *logSink {
	s := &logSink{level: slog.LevelWarn, lines: make([]string, 0, logLines)}
	if v := os.Getenv("COFFER_CLUSTER_LOG"); v != "" {
		_ = s.level.UnmarshalText([]byte(v))
	}
	return s
}

func (s *logSink) logger(nodeID string) *slog.Logger {
	return slog.New(slog.NewTextHandler(s, &slog.HandlerOptions{Level: s.level})).With("node", nodeID)
}

// Write takes one record from slog's text handler.
func (s *logSink) Write(p []byte) (int, error) {
	line := strings.TrimRight(string(p), "\n")
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.lines) < cap(s.lines) {
		s.lines = append(s.lines, line)
	} else {
		s.lines[s.next] = line
		s.next = (s.next + 1) % len(s.lines)
	}
	return len(p), nil
}

func (s *logSink) dump() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ordered := append(slices.Clone(s.lines[s.next:]), s.lines[:s.next]...)
	return strings.Join(ordered, "\n")
}
