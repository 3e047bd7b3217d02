package clustertest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strconv"
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
	"github.com/cofferhq/coffer/server/sigv4/grpcsig"
	"github.com/cofferhq/coffer/test/testkit"
	"github.com/cofferhq/coffer/test/wait"
)

// Bounds that keep a broken build from hanging CI. They are generous because
// the suites run under -race on two cores; no test asserts on durations.
const (
	ReadyTimeout    = 90 * time.Second // node start until ready, all voters
	ConvergeTimeout = 60 * time.Second // elections, catch-up, healing
	RPCTimeout      = 20 * time.Second // per RPC made by the tests
)

// Region and account every node is configured with (a RegionSet names
// its regions itself).
const (
	DefaultRegion = "us-east-1"
	Account       = "123456789012"
)

// The root principal's access key a region is created with; every client
// of a Cluster authenticates with it.
const (
	RootAccessKeyID     = "AKIACLUSTERTEST00001"
	RootSecretAccessKey = "cluster/test/root/secret/access/key/00001"
)

// Timing of every node: fast enough that a failover takes about a second,
// slow enough that the race detector on two cores does not cause elections.
const (
	heartbeatTimeout   = 500 * time.Millisecond
	electionTimeout    = 500 * time.Millisecond
	leaderLeaseTimeout = 250 * time.Millisecond
)

// Option changes how Start configures its nodes.
type Option func(*settings)

type settings struct {
	raft []func(*replication.Config)
	node []func(*node.Options)
	// region names the cluster's region (DefaultRegion when empty); cross,
	// when set, gives the nodes region replication ports and WAN gossip.
	region string
	cross  *RegionSet
}

// WithNode lets a test change every node's options (the AWS listener,
// rotation tuning) after the harness has filled them in; node.StartRegion
// then sets the addresses, ids and certificates.
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

// Cluster is a region of in-process nodes on loopback TCP, started by
// node.StartRegion. Node i is "node-i"; node 0 bootstrapped the region.
type Cluster struct {
	t *testing.T
	// Net is the network between the nodes' cluster ports.
	Net *Network

	rootKey []byte
	set     settings
	logs    *logSink
	region  *node.Region

	mu    sync.Mutex // guards conns
	conns []*grpc.ClientConn
}

// Start starts an n-node region and returns once every node serves
// requests and all n are voters. Node 0 bootstraps; the others join its
// gossip pool and autopilot adds and promotes them. Everything stops at the
// end of the test; when the test failed, the nodes' last log lines are
// shown.
func Start(t *testing.T, n int, opts ...Option) *Cluster {
	t.Helper()
	c := &Cluster{t: t, Net: NewNetwork(), logs: newLogSink(), conns: make([]*grpc.ClientConn, n)}
	for _, o := range opts {
		o(&c.set)
	}
	c.rootKey = randomBytes(t, 32)
	dir := t.TempDir() // before the Cleanup below, so it is removed after the nodes stop
	t.Cleanup(func() {
		c.stopAll()
		if t.Failed() {
			t.Logf("node logs (last %d lines at %s and above):\n%s", logLines, c.logs.level, c.logs.dump())
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), ReadyTimeout)
	defer cancel()
	r, err := node.StartRegion(ctx, node.RegionSpec{Nodes: n, Dir: dir, Ports: c.ports, Options: c.options})
	if err != nil {
		t.Fatal(err)
	}
	c.region = r
	c.WaitVoters()
	// A follower checks credentials against its own state: wait until
	// every node has applied the root principal's access key.
	for i := range n {
		wait.Until(t, ReadyTimeout, func() error {
			ctx, cancel := RPCContext(StaleRead(0)...)
			defer cancel()
			_, err := c.Client(i).ListSecrets(ctx, &cofferv1.ListSecretsRequest{})
			return err
		})
	}
	return c
}

// ports picks node i's addresses and tells the networks who listens where.
func (c *Cluster) ports(i int) (node.Ports, error) {
	var p node.Ports
	addrs := []*string{&p.GRPC, &p.Cluster, &p.Gossip}
	if c.set.cross != nil {
		addrs = append(addrs, &p.Region, &p.WAN)
	}
	for _, a := range addrs {
		// UDP too for every port: gossip binds both, the others lose
		// nothing by it.
		var err error
		if *a, err = testkit.ProbeAddr(true); err != nil {
			return p, err
		}
	}
	c.Net.register(p.Cluster, i)
	if c.set.cross != nil {
		c.set.cross.register(c.regionName(), p.Region, p.WAN)
	}
	return p, nil
}

// options builds node m's options; node.StartRegion wires in its
// addresses, id, certificate and gossip seeds.
func (c *Cluster) options(m node.Member) (node.Options, error) {
	rc := replication.Config{
		Dial: c.Net.Dialer(m.Index),
		Gossip: replication.MembershipConfig{
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
	svc.Region, svc.AccountID = c.regionName(), Account
	opts := node.Options{
		Service: svc, Raft: rc, RootKey: slices.Clone(c.rootKey), Logger: c.logs.logger(m.ID),
		RootAccessKeyID: RootAccessKeyID, RootSecretAccessKey: RootSecretAccessKey,
	}
	if rs := c.set.cross; rs != nil {
		opts.Region = rs.regionOptions(c.regionName(), m.Ports.WAN)
		// Replica reads reach the primary's ReplicationStatus quickly.
		opts.Service.AccessFlushInterval, opts.Service.AccessReportInterval = 200*time.Millisecond, 200*time.Millisecond
	}
	for _, f := range c.set.node {
		f(&opts)
	}
	return opts, nil
}

// regionName is the cluster's region.
func (c *Cluster) regionName() string {
	if c.set.region != "" {
		return c.set.region
	}
	return DefaultRegion
}

// N is the number of nodes, running or not.
func (c *Cluster) N() int { return c.region.N() }

// ID is node i's Raft id.
func (c *Cluster) ID(i int) string { return c.region.Member(i).ID }

// Member is node i's identity, which survives stop and restart: data
// directory, ports and certificate.
func (c *Cluster) Member(i int) node.Member { return c.region.Member(i) }

// Node is node i, or nil while it is stopped.
func (c *Cluster) Node(i int) *node.Node { return c.region.Node(i) }

// Running lists the indexes of the running nodes.
func (c *Cluster) Running() []int { return c.region.Running() }

// Others lists every node index but the given ones.
func (c *Cluster) Others(except ...int) []int {
	var out []int
	for i := range c.N() {
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
	if err := c.region.StopNode(i); errors.Is(err, node.ErrNotRunning) {
		c.t.Fatal(err)
	} else if err != nil {
		c.t.Error(err)
	}
}

// Restart starts a stopped node i again with the same data directory,
// ports, certificate and root key; it rejoins the gossip pool through the
// other nodes. It returns once the node serves requests, with how long that
// took from node.Start.
func (c *Cluster) Restart(i int) time.Duration {
	c.t.Helper()
	start := time.Now()
	nd, err := c.region.RestartNode(i)
	if err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), ReadyTimeout)
	defer cancel()
	if err := nd.WaitReady(ctx); err != nil {
		c.t.Fatalf("restarted %s never became ready: %v", c.ID(i), err)
	}
	return time.Since(start)
}

// RestartStopped starts every stopped node at once (a region coming back
// needs a quorum before any node is ready) and waits until they serve.
func (c *Cluster) RestartStopped() {
	c.t.Helper()
	var started []*node.Node
	for i := range c.N() {
		if c.Node(i) != nil {
			continue
		}
		nd, err := c.region.RestartNode(i)
		if err != nil {
			c.t.Fatal(err)
		}
		started = append(started, nd)
	}
	ctx, cancel := context.WithTimeout(context.Background(), ReadyTimeout)
	defer cancel()
	for _, nd := range started {
		if err := nd.WaitReady(ctx); err != nil {
			c.t.Fatalf("restarted node never became ready: %v", err)
		}
	}
}

func (c *Cluster) stopAll() {
	c.mu.Lock()
	conns := c.conns
	c.conns = make([]*grpc.ClientConn, len(conns))
	c.mu.Unlock()
	for _, cc := range conns {
		if cc != nil {
			_ = cc.Close()
		}
	}
	if c.region == nil {
		return
	}
	if err := c.region.Stop(); err != nil {
		c.t.Errorf("stop at cleanup: %v", err)
	}
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
	wait.Until(c.t, ConvergeTimeout, func() error {
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
			return fmt.Errorf("leaders among %v: %v", c.IDs(among), leaders)
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

// CurrentLeader is the one running node that believes it leads, or -1. It
// does not wait, so any goroutine may call it.
func (c *Cluster) CurrentLeader() int { return c.region.Leader() }

// WaitVoters waits until the leader's configuration has every node as a
// voter, all of them reachable.
func (c *Cluster) WaitVoters() {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), ReadyTimeout)
	defer cancel()
	if err := c.region.WaitVoters(ctx); err != nil {
		c.t.Fatal(err)
	}
}

// IDs are the Raft ids of the nodes at the given indexes.
func (c *Cluster) IDs(idx []int) []string {
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
	if c.conns[i] == nil {
		root := &grpcsig.Credentials{AccessKeyID: RootAccessKeyID, SecretAccessKey: RootSecretAccessKey, Region: c.regionName()}
		cc, err := grpc.NewClient(c.region.Member(i).Ports.GRPC, append(root.DialOptions(),
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithConnectParams(grpc.ConnectParams{
				Backoff:           backoff.Config{BaseDelay: 20 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 250 * time.Millisecond},
				MinConnectTimeout: 5 * time.Second,
			}))...)
		if err != nil {
			c.t.Fatalf("client for %s: %v", c.ID(i), err)
		}
		c.conns[i] = cc
	}
	return c.conns[i]
}

// Conn is the client connection to node i's API (plaintext, root), for
// callers that build their own clients; it stays open with the cluster.
func (c *Cluster) Conn(i int) *grpc.ClientConn { return c.conn(i) }

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

// Watch is a WatchService client on node i's API.
func (c *Cluster) Watch(i int) cofferv1.WatchServiceClient {
	return cofferv1.NewWatchServiceClient(c.conn(i))
}

// Admin is an AdminService client on node i's API.
func (c *Cluster) Admin(i int) cofferv1.AdminServiceClient {
	return cofferv1.NewAdminServiceClient(c.conn(i))
}

// RPCContext returns a context for one RPC from a test (RPCTimeout), with
// metadata key/value pairs.
func RPCContext(kv ...string) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), RPCTimeout)
	if len(kv) > 0 {
		ctx = metadata.AppendToOutgoingContext(ctx, kv...)
	}
	return ctx, cancel
}

// StaleRead is the metadata of a stale read that waits for minIndex.
func StaleRead(minIndex uint64) []string {
	kv := []string{server.ConsistencyHeader, "stale"}
	if minIndex > 0 {
		kv = append(kv, server.MinIndexHeader, strconv.FormatUint(minIndex, 10))
	}
	return kv
}

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}
