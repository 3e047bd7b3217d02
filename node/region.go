package node

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cofferhq/coffer/replication"
)

var (
	// ErrRegionSpec is returned by StartRegion for a spec it cannot start.
	ErrRegionSpec = errors.New("node: invalid region spec")
	// ErrNotRunning is returned when stopping a region's node that is not
	// running.
	ErrNotRunning = errors.New("node: not running")
	// ErrRunning is returned when restarting a region's node that runs.
	ErrRunning = errors.New("node: already running")
)

// RegionSpec describes a region of nodes run in this one process, on
// loopback or another local address: `cofferd dev --nodes N`, the profiling
// command and the in-process cluster tests all start regions this way.
type RegionSpec struct {
	// Nodes is how many nodes the region has. Node 0 bootstraps it; the
	// others join its gossip pool and autopilot adds them as voters.
	Nodes int
	// Dir holds node i's data directory, Dir/<its id>.
	Dir string
	// NodeID names node i; nil names them node-0, node-1, ….
	NodeID func(i int) string
	// Ports gives node i its listen addresses: BasePorts for a fixed
	// layout, or a function that picks free ports. When a node cannot
	// start because a port was taken meanwhile, StartRegion asks again and,
	// if the answer differs, starts the node on the new ports in a new data
	// directory (up to three tries).
	Ports func(i int) (Ports, error)
	// CA issues every node's cluster certificate (for the host of its
	// cluster address) and is the CA a replicating region hands to its
	// peers; nil makes one for the region.
	CA *replication.CA
	// CertValidity is how long node certificates (and a CA made here) are
	// valid; zero means a day.
	CertValidity time.Duration
	// GossipKey is the region's LAN gossip key; nil makes one.
	GossipKey []byte
	// Options returns node m's options; it is called at every start of the
	// node, restarts included. StartRegion then wires the node into the
	// region over what it returned: the data directory, the gRPC address,
	// the Raft node id, cluster address, bootstrap settings and certificate,
	// the gossip address, seeds and key and, when Ports has a region
	// address, the region replication and WAN addresses and the region's
	// CA. Everything else (service configuration, root key, logger,
	// timing, dialers, WAN seeds and key) is the caller's.
	Options func(m Member) (Options, error)
}

// Ports are one node's listen addresses. Region and WAN are empty unless
// the region replicates to other regions.
type Ports struct {
	GRPC, Cluster, Gossip string
	Region, WAN           string
}

// BasePorts lays node i's ports out the way `cofferd dev` does: the gRPC
// port is base+10*i, the cluster port one above, gossip two above and,
// with crossRegion, region replication three and WAN gossip four above.
func BasePorts(host string, base int, crossRegion bool) func(i int) (Ports, error) {
	return func(i int) (Ports, error) {
		at := func(off int) string { return net.JoinHostPort(host, strconv.Itoa(base+10*i+off)) }
		p := Ports{GRPC: at(0), Cluster: at(1), Gossip: at(2)}
		if crossRegion {
			p.Region, p.WAN = at(3), at(4)
		}
		return p, nil
	}
}

// Member is one node of a region as StartRegion wired it; all of it but
// Join survives a restart.
type Member struct {
	Index   int
	ID      string
	DataDir string
	Ports   Ports
	TLS     *replication.ClusterTLS
	// Join is the gossip addresses of the region's other nodes that have
	// run, which this start joins through (none for node 0's first start).
	Join []string
}

// Region is a running local region: its nodes, which can be stopped and
// started again one by one.
type Region struct {
	spec      RegionSpec
	ca        *replication.CA
	gossipKey []byte

	mu      sync.Mutex // guards every member's node and started
	members []*member
}

type member struct {
	Member
	started bool  // has run at least once
	node    *Node // nil while stopped
}

// StartRegion starts spec.Nodes nodes one after the other and returns once
// every one serves requests (Node.WaitReady); it does not wait for all of
// them to be voters (WaitVoters). On an error, or when ctx ends first, it
// stops the nodes it started.
func StartRegion(ctx context.Context, spec RegionSpec) (*Region, error) {
	if spec.Nodes < 1 || spec.Dir == "" || spec.Ports == nil || spec.Options == nil {
		return nil, fmt.Errorf("%w: want Nodes ≥ 1, Dir, Ports and Options", ErrRegionSpec)
	}
	if spec.CertValidity <= 0 {
		spec.CertValidity = 24 * time.Hour
	}
	if spec.NodeID == nil {
		spec.NodeID = func(i int) string { return fmt.Sprintf("node-%d", i) }
	}
	r := &Region{spec: spec, ca: spec.CA, gossipKey: spec.GossipKey, members: make([]*member, spec.Nodes)}
	var err error
	if r.ca == nil {
		if r.ca, err = replication.NewCA("Coffer region CA", spec.CertValidity); err != nil {
			return nil, err
		}
	}
	if r.gossipKey == nil {
		r.gossipKey = make([]byte, 32)
		if _, err := rand.Read(r.gossipKey); err != nil {
			return nil, err
		}
	}
	for i := range spec.Nodes {
		if err := r.startFirst(i); err != nil {
			_ = r.Stop()
			return nil, err
		}
	}
	if err := r.WaitReady(ctx); err != nil {
		_ = r.Stop()
		return nil, err
	}
	return r, nil
}

// startFirst starts node i for the first time, on other ports when the
// ones it was given turn out to be taken.
func (r *Region) startFirst(i int) error {
	id := r.spec.NodeID(i)
	ports, err := r.spec.Ports(i)
	if err != nil {
		return fmt.Errorf("ports of %s: %w", id, err)
	}
	host, _, err := net.SplitHostPort(ports.Cluster)
	if err != nil {
		return fmt.Errorf("cluster address of %s: %w", id, err)
	}
	tlsMat, _, _, err := r.ca.IssueNode(id, []string{host}, r.spec.CertValidity)
	if err != nil {
		return fmt.Errorf("certificate of %s: %w", id, err)
	}
	for attempt := 1; ; attempt++ {
		dir := filepath.Join(r.spec.Dir, id)
		if attempt > 1 {
			// A half-started node may have written its addresses there.
			dir = filepath.Join(r.spec.Dir, fmt.Sprintf("%s.%d", id, attempt))
		}
		m := &member{Member: Member{Index: i, ID: id, DataDir: dir, Ports: ports, TLS: tlsMat}}
		r.mu.Lock()
		r.members[i] = m
		r.mu.Unlock()
		_, err := r.start(m)
		if err == nil {
			return nil
		}
		if attempt == 3 || !addressInUse(err) {
			return fmt.Errorf("start %s: %w", id, err)
		}
		next, perr := r.spec.Ports(i)
		if perr != nil || next == ports {
			return fmt.Errorf("start %s: %w", id, err)
		}
		ports = next
	}
}

func addressInUse(err error) bool {
	// memberlist reports a taken gossip port as text only.
	return errors.Is(err, syscall.EADDRINUSE) || strings.Contains(err.Error(), "address already in use")
}

// start starts m's node with its options wired into the region.
func (r *Region) start(m *member) (*Node, error) {
	r.mu.Lock()
	m.Join = nil
	for _, o := range r.members {
		if o != nil && o != m && o.started {
			m.Join = append(m.Join, o.Ports.Gossip)
		}
	}
	wired := m.Member
	r.mu.Unlock()
	opts, err := r.spec.Options(wired)
	if err != nil {
		return nil, err
	}
	r.wire(wired, &opts)
	nd, err := Start(opts)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	m.node, m.started = nd, true
	r.mu.Unlock()
	return nd, nil
}

// wire sets what makes m a node of this region; see RegionSpec.Options.
func (r *Region) wire(m Member, o *Options) {
	o.DataDir = m.DataDir
	o.GRPCAddr = m.Ports.GRPC
	o.Raft.NodeID = m.ID
	o.Raft.BindAddr = m.Ports.Cluster
	// Node 0 starts the region alone; the others form nothing and wait for
	// its autopilot to add them.
	o.Raft.Bootstrap, o.Raft.BootstrapExpect = m.Index == 0, 0
	o.Raft.TLS = m.TLS
	o.Raft.Gossip.BindAddr = m.Ports.Gossip
	o.Raft.Gossip.Join = m.Join
	o.Raft.Gossip.SecretKey = r.gossipKey
	if m.Ports.Region != "" {
		o.Region.BindAddr = m.Ports.Region
		o.Region.WAN.BindAddr = m.Ports.WAN
		o.Region.CAPEM = r.ca.CertPEM
	}
}

// N is the number of nodes, running or not.
func (r *Region) N() int { return len(r.members) }

// Member is node i as it was wired at its last start.
func (r *Region) Member(i int) Member {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.members[i].Member
}

// Node is node i, or nil while it is stopped.
func (r *Region) Node(i int) *Node {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.members[i].node
}

// Running lists the indexes of the nodes that run.
func (r *Region) Running() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []int
	for i, m := range r.members {
		if m != nil && m.node != nil {
			out = append(out, i)
		}
	}
	return out
}

// Leader is the index of the one running node that believes it leads, or
// -1 when none or several do. It does not wait.
func (r *Region) Leader() int {
	leader := -1
	for _, i := range r.Running() {
		if nd := r.Node(i); nd != nil && nd.Raft().IsLeader() {
			if leader >= 0 {
				return -1
			}
			leader = i
		}
	}
	return leader
}

// StopNode stops node i cleanly (Node.Stop); its data directory, ports and
// certificate stay for RestartNode.
func (r *Region) StopNode(i int) error {
	r.mu.Lock()
	m := r.members[i]
	nd := m.node
	m.node = nil
	r.mu.Unlock()
	if nd == nil {
		return fmt.Errorf("stop %s: %w", m.ID, ErrNotRunning)
	}
	if err := nd.Stop(); err != nil {
		return fmt.Errorf("stop %s: %w", m.ID, err)
	}
	return nil
}

// RestartNode starts a stopped node i again with the same data directory,
// ports and certificate; it rejoins through the other nodes that have run.
// It returns once the node's listeners are up, not once it is ready.
func (r *Region) RestartNode(i int) (*Node, error) {
	r.mu.Lock()
	m := r.members[i]
	running := m.node != nil
	r.mu.Unlock()
	if running {
		return nil, fmt.Errorf("restart %s: %w", m.ID, ErrRunning)
	}
	nd, err := r.start(m)
	if err != nil {
		return nil, fmt.Errorf("restart %s: %w", m.ID, err)
	}
	return nd, nil
}

// WaitReady waits until every running node serves requests.
func (r *Region) WaitReady(ctx context.Context) error {
	for i := range r.members {
		nd := r.Node(i)
		if nd == nil {
			continue
		}
		if err := nd.WaitReady(ctx); err != nil {
			return fmt.Errorf("%s never became ready: %w", r.Member(i).ID, err)
		}
	}
	return nil
}

// WaitVoters waits until a running node leads and its configuration has
// all N nodes as voters, every one of them reachable.
func (r *Region) WaitVoters(ctx context.Context) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		err := r.allVoters(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("region never had %d reachable voters (%v): %w", r.N(), err, ctx.Err())
		case <-t.C:
		}
	}
}

// allVoters says why the region does not have N reachable voters, or nil.
func (r *Region) allVoters(ctx context.Context) error {
	l := r.Leader()
	if l < 0 {
		return errors.New("no single leader")
	}
	leader := r.Node(l)
	if leader == nil {
		return errors.New("the leader stopped")
	}
	servers, err := leader.Raft().Status(ctx)
	if err != nil {
		return err
	}
	voters := 0
	for _, s := range servers {
		if s.Voter && s.Status != nil {
			voters++
		}
	}
	if voters != r.N() || len(servers) != r.N() {
		return fmt.Errorf("%d reachable voters of %d servers, want %d voters", voters, len(servers), r.N())
	}
	return nil
}

// Stop stops every running node, all at once, and returns their errors.
func (r *Region) Stop() error {
	r.mu.Lock()
	var running []*member
	var nodes []*Node
	for _, m := range r.members {
		if m != nil && m.node != nil {
			running = append(running, m)
			nodes = append(nodes, m.node)
			m.node = nil
		}
	}
	r.mu.Unlock()
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for k, nd := range nodes {
		wg.Go(func() {
			if err := nd.Stop(); err != nil {
				errs[k] = fmt.Errorf("stop %s: %w", running[k].ID, err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
