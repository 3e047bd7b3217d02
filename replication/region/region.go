package region

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	replicationv1 "github.com/cofferhq/coffer/proto/coffer/replication/v1"
	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
	"github.com/cofferhq/coffer/replication"
	"github.com/cofferhq/coffer/storage"
)

// Errors of this package.
var (
	// ErrUnpaired: a batch came from, or was meant for, a region this one
	// is not paired with.
	ErrUnpaired = errors.New("region is not paired")
	// ErrWrongRegionCert: the client certificate was not issued by the CA
	// of the region the batch claims to come from.
	ErrWrongRegionCert = errors.New("client certificate is not from the shipping region")
)

// Feed is what the shipper and receiver need from the API service: the
// change feed and the keys live there.
type Feed interface {
	// ExportBatch reads dest's feed after a position, data keys re-wrapped
	// for dest, with the command time of every change it covers (a batch
	// merges the changes of one secret; the times are of each change).
	ExportBatch(dest string, after uint64, limit int) (*replicationv1.ShipRequest, []time.Time, error)
	// ImportBatch applies a shipped batch through this region's log.
	ImportBatch(ctx context.Context, req *replicationv1.ShipRequest) (*replicationv1.ShipResponse, error)
	// AckBatch records dest's answer to a batch of generation in this
	// region's log.
	AckBatch(ctx context.Context, dest, generation string, resp *replicationv1.ShipResponse) error
	// FeedAck is the position dest acknowledged.
	FeedAck(dest string) uint64
	// ResetFeed restarts dest's feed with full copies of every secret
	// replicating to it, in generation (the one dest refused).
	ResetFeed(ctx context.Context, dest, generation string) error
}

// Peers lists the paired regions (the state machine's records).
type Peers interface {
	RegionPeers() ([]*storagev1.RegionPeer, error)
}

// Leadership is what the shipper needs from the region's Raft node.
type Leadership interface {
	IsLeader() bool
	AppliedIndex() uint64
	WaitApplied(ctx context.Context, idx uint64) error
}

// Config configures a node's cross-region part.
type Config struct {
	// Region and NodeID name this node.
	Region string
	NodeID string
	// BindAddr is the region replication port (mutual TLS, gRPC); empty
	// disables cross-region replication on this node.
	BindAddr string
	// AdvertiseAddr is the address other regions dial; "" means the bound one.
	AdvertiseAddr string
	// APIAddr is the node's client API address, gossiped in the WAN pool.
	APIAddr string
	// RegionAddrs lists the region replication addresses of this region's
	// alive nodes from the LAN pool; nil means only the WAN pool is asked.
	RegionAddrs func() []string
	// TLS is this node's cluster certificate, presented to other regions.
	TLS *replication.ClusterTLS
	// CAPEM is this region's cluster CA certificate, given to peers at pairing.
	CAPEM []byte
	// WAN is the WAN gossip pool; a zero BindAddr disables it. Its
	// SecretKey is shared by every region.
	WAN replication.MembershipConfig
	// Dial opens connections to other regions; nil is a plain TCP dialer.
	// Tests replace it to cut the link between regions.
	Dial replication.Dialer
	// BatchSize is the most feed entries per shipment (default 1024).
	BatchSize int
	// Heartbeat is how often an idle shipper contacts each peer (default 1s).
	Heartbeat time.Duration
	// ContactWindow is how long a region counts as reachable after the last
	// successful exchange with it (default 10s).
	ContactWindow time.Duration
	// Logger receives the logs.
	Logger *slog.Logger
}

func (c *Config) withDefaults() {
	if c.BatchSize <= 0 {
		c.BatchSize = 1024
	}
	if c.Heartbeat <= 0 {
		c.Heartbeat = time.Second
	}
	if c.ContactWindow <= 0 {
		c.ContactWindow = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Dial == nil {
		c.Dial = func(ctx context.Context, addr string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		}
	}
}

// LagSample is one shipped change: how long after its command time the
// destination acknowledged it.
type LagSample struct {
	Dest string
	Lag  time.Duration
}

// Manager is a node's cross-region part: the receiver always, the shipper
// while the node leads its region.
type Manager struct {
	cfg    Config
	log    *slog.Logger
	feed   Feed
	peers  Peers
	leader Leadership

	lis  net.Listener
	grpc *grpc.Server
	wan  *replication.Membership

	mu      sync.Mutex
	contact map[string]time.Time // region → last successful exchange
	// leading is when this node last became its region's leader (zero
	// while it is not): until a contact window has passed since, its
	// shipper has not had the chance to hear from every region.
	leading time.Time
	workers map[string]bool // destinations with a running shipper
	conns   map[string]*grpc.ClientConn
	// aws answers AWS API requests paired regions forward (SetAWSHandler).
	aws http.Handler
	// grpcAPI answers client-API calls paired regions forward
	// (SetGRPCHandler).
	grpcAPI GRPCHandler
	lag     []LagSample
	// OnLag, when set, receives every lag sample (benchmarks).
	onLag func(LagSample)
	ships ShipObserver // metrics; nil: none

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Start listens on the region replication port, joins the WAN pool and
// runs the shipper supervisor.
func Start(cfg Config, feed Feed, peers Peers, leader Leadership) (*Manager, error) {
	cfg.withDefaults()
	if cfg.TLS == nil {
		return nil, errors.New("region: cluster TLS material is required")
	}
	m := &Manager{
		cfg: cfg, log: cfg.Logger.With("component", "region"), feed: feed, peers: peers, leader: leader,
		contact: map[string]time.Time{}, workers: map[string]bool{}, conns: map[string]*grpc.ClientConn{},
	}
	lis, err := net.Listen("tcp", cfg.BindAddr)
	if err != nil {
		return nil, fmt.Errorf("region: listen on %s: %w", cfg.BindAddr, err)
	}
	m.lis = lis
	if m.cfg.AdvertiseAddr == "" {
		m.cfg.AdvertiseAddr = lis.Addr().String()
	}
	m.grpc = grpc.NewServer(grpc.Creds(credentials.NewTLS(cfg.TLS.RegionServerConfig(m.verifyPaired))),
		grpc.MaxRecvMsgSize(maxShipMessage))
	replicationv1.RegisterRegionReplicationServiceServer(m.grpc, &receiver{m: m})
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		if err := m.grpc.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			m.log.Error("region replication server stopped", "err", err)
		}
	}()
	if cfg.WAN.BindAddr != "" {
		wc := cfg.WAN
		wc.Meta = replication.MemberMeta{NodeID: cfg.Region + "/" + cfg.NodeID, Region: cfg.Region, ClusterAddr: m.cfg.AdvertiseAddr, APIAddr: cfg.APIAddr}
		if wc.Logger == nil {
			wc.Logger = cfg.Logger.With("pool", "wan")
		}
		if m.wan, err = replication.StartMembership(wc); err != nil {
			m.grpc.Stop()
			return nil, fmt.Errorf("region: WAN pool: %w", err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	m.wg.Add(1)
	go m.supervise(ctx)
	return m, nil
}

// Addr is the advertised region replication address.
func (m *Manager) Addr() string { return m.cfg.AdvertiseAddr }

// Stop stops shipping, the receiver and WAN gossip.
func (m *Manager) Stop() {
	m.cancel()
	m.grpc.Stop()
	m.wg.Wait()
	m.mu.Lock()
	for _, cc := range m.conns {
		_ = cc.Close()
	}
	m.conns = map[string]*grpc.ClientConn{}
	m.mu.Unlock()
	if m.wan != nil {
		_ = m.wan.Leave(time.Second)
		_ = m.wan.Shutdown()
	}
}

// SetLagObserver makes fn receive every lag sample (benchmarks and figures).
func (m *Manager) SetLagObserver(fn func(LagSample)) {
	m.mu.Lock()
	m.onLag = fn
	m.mu.Unlock()
}

// View is one region in the WAN pool.
type View struct {
	Region string
	// Leader is the node id of the member gossiping itself as leader.
	Leader string
	// Alive counts alive members; Addrs are their replication addresses.
	Alive int
	Addrs []string
}

// Regions lists the regions in the WAN pool, by name (none without one).
func (m *Manager) Regions() []View {
	if m.wan == nil {
		return nil
	}
	by := map[string]*View{}
	for _, mem := range m.wan.Members() {
		v := by[mem.Meta.Region]
		if v == nil {
			v = &View{Region: mem.Meta.Region}
			by[mem.Meta.Region] = v
		}
		if mem.Status != replication.MemberAlive {
			continue
		}
		v.Alive++
		v.Addrs = append(v.Addrs, mem.Meta.ClusterAddr)
		if mem.Meta.Leader {
			v.Leader = nodeName(mem.Meta.NodeID)
		}
	}
	out := make([]View, 0, len(by))
	for _, v := range by {
		out = append(out, *v)
	}
	slices.SortFunc(out, func(a, b View) int { return cmpString(a.Region, b.Region) })
	return out
}

func nodeName(wanID string) string {
	for i := 0; i < len(wanID); i++ {
		if wanID[i] == '/' {
			return wanID[i+1:]
		}
	}
	return wanID
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// LocalAddresses are the replication addresses of this region's nodes
// known here: this node's, its region's from the LAN pool, and from the WAN
// pool, without duplicates.
func (m *Manager) LocalAddresses() []string {
	out := []string{m.cfg.AdvertiseAddr}
	if m.cfg.RegionAddrs != nil {
		out = append(out, m.cfg.RegionAddrs()...)
	}
	for _, v := range m.Regions() {
		if v.Region == m.cfg.Region {
			out = append(out, v.Addrs...)
		}
	}
	out = slices.DeleteFunc(out, func(a string) bool { return !dialable(a) })
	slices.Sort(out)
	return slices.Compact(out)
}

// dialable is false for an address another region could not dial: no
// port, or an unspecified host (0.0.0.0, ::) from a wildcard bind.
func dialable(addr string) bool {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" || port == "0" || host == "" {
		return false
	}
	ip := net.ParseIP(host)
	return ip == nil || !ip.IsUnspecified()
}

// LocalCA is this region's cluster CA certificate (PEM).
func (m *Manager) LocalCA() []byte { return m.cfg.CAPEM }

// Reachable reports whether region answered (or shipped to us) within the
// contact window, or has an alive member in the WAN pool. Only the leader
// ships, so only its answer means much (server.RegionAPI asks it there);
// and a leader that took over less than a contact window ago counts every
// region reachable, since its shipper has not had the time to hear from it.
func (m *Manager) Reachable(region string) bool {
	m.mu.Lock()
	last, ok := m.contact[region]
	leading := m.leading
	m.mu.Unlock()
	if ok && time.Since(last) < m.cfg.ContactWindow {
		return true
	}
	if !leading.IsZero() && time.Since(leading) < m.cfg.ContactWindow {
		return true
	}
	for _, v := range m.Regions() {
		if v.Region == region && v.Alive > 0 {
			return true
		}
	}
	return false
}

func (m *Manager) touch(region string) {
	m.mu.Lock()
	m.contact[region] = time.Now()
	m.mu.Unlock()
}

// verifyPaired accepts a client certificate issued by the CA of any paired
// region; the receiver then checks it is the shipping region's.
func (m *Manager) verifyPaired(raw [][]byte) error {
	peers, err := m.peers.RegionPeers()
	if err != nil {
		return err
	}
	for _, p := range peers {
		if pool := caPool(p.GetCaPem()); pool != nil && replication.VerifyClientChain(raw, pool) == nil {
			return nil
		}
	}
	return fmt.Errorf("region: %w: client certificate from no paired region's CA", ErrUnpaired)
}

func caPool(pemBytes []byte) *x509.CertPool {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		return nil
	}
	return pool
}

func (m *Manager) peer(region string) (*storagev1.RegionPeer, error) {
	peers, err := m.peers.RegionPeers()
	if err != nil {
		return nil, err
	}
	for _, p := range peers {
		if p.GetRegion() == region {
			return p, nil
		}
	}
	return nil, fmt.Errorf("%w: %s", ErrUnpaired, region)
}

// receiver serves RegionReplicationService.
type receiver struct {
	replicationv1.UnimplementedRegionReplicationServiceServer
	m *Manager
}

// verifySource checks that the caller's certificate comes from the CA of
// src, a paired region.
func (r *receiver) verifySource(ctx context.Context, src string) error {
	p, err := r.m.peer(src)
	if err != nil {
		return status.Error(codes.PermissionDenied, err.Error())
	}
	pr, ok := peer.FromContext(ctx)
	if !ok {
		return status.Error(codes.Unauthenticated, "no peer")
	}
	info, ok := pr.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 {
		return status.Error(codes.Unauthenticated, "no client certificate")
	}
	raw := make([][]byte, len(info.State.PeerCertificates))
	for i, c := range info.State.PeerCertificates {
		raw[i] = c.Raw
	}
	if pool := caPool(p.GetCaPem()); pool == nil || replication.VerifyClientChain(raw, pool) != nil {
		r.m.log.Warn("refused a call whose certificate is not from its claimed region", "claimed_region", src, "remote", pr.Addr.String())
		return status.Error(codes.PermissionDenied, ErrWrongRegionCert.Error())
	}
	return nil
}

// Ship checks that the caller's certificate comes from the CA of the
// region the batch names as its source, then hands the batch to the Feed.
func (r *receiver) Ship(ctx context.Context, req *replicationv1.ShipRequest) (*replicationv1.ShipResponse, error) {
	src := req.GetSourceRegion()
	if err := r.verifySource(ctx, src); err != nil {
		return nil, err
	}
	if req.GetDestinationRegion() != r.m.cfg.Region {
		return nil, status.Errorf(codes.InvalidArgument, "batch for region %s shipped to %s", req.GetDestinationRegion(), r.m.cfg.Region)
	}
	resp, err := r.m.feed.ImportBatch(ctx, req)
	if errors.Is(err, storage.ErrInvalidShipment) {
		// A paired region shipped something no region may store: refused
		// whole, nothing proposed. Its shipper keeps retrying (and logging)
		// until it ships a valid batch; this region keeps serving.
		r.m.log.Error("refused a malformed batch from a paired region", "source_region", src, "through", req.GetThroughSeq(), "err", err)
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if err != nil {
		r.m.log.Warn("applying a shipped batch failed", "source_region", src, "through", req.GetThroughSeq(), "err", err)
		return nil, status.Error(codes.Unavailable, "the batch could not be applied; retry")
	}
	r.m.touch(src)
	return resp, nil
}
