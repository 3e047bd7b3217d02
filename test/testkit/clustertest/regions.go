package clustertest

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cofferhq/coffer/node"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/replication"
	"github.com/cofferhq/coffer/server"
)

// RegionSet is several regions, each a Cluster, joined by a WAN gossip pool
// and region replication ports on loopback. Its link layer can cut the
// replication traffic between two regions (WAN gossip is left alone, as in
// a partition of the replication path only).
type RegionSet struct {
	t       *testing.T
	wanKey  []byte
	regions map[string]*Cluster
	names   []string

	mu       sync.Mutex
	wanAddrs []string
	regionOf map[string]string // region replication address → region
	cut      map[[2]string]bool
	conns    map[*regionConn][2]string
}

// StartRegions starts one n-node region per name, in order; every node
// joins the WAN pool. It pairs no regions: see Pair.
func StartRegions(t *testing.T, n int, names ...string) *RegionSet {
	t.Helper()
	return StartRegionsWith(t, n, names)
}

// Region is the cluster of the named region.
func (rs *RegionSet) Region(name string) *Cluster { return rs.regions[name] }

func (rs *RegionSet) register(region, regionAddr, wanAddr string) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.regionOf[regionAddr] = region
	rs.wanAddrs = append(rs.wanAddrs, wanAddr)
}

// regionOptions are the cross-region options of the node gossiping on the
// WAN at wanAddr; node.StartRegion sets its addresses and the region's CA.
func (rs *RegionSet) regionOptions(region, wanAddr string) node.RegionOptions {
	rs.mu.Lock()
	seeds := slices.DeleteFunc(slices.Clone(rs.wanAddrs), func(a string) bool { return a == wanAddr })
	rs.mu.Unlock()
	return node.RegionOptions{
		WAN: replication.MembershipConfig{
			Join: seeds, SecretKey: rs.wanKey,
			ProbeInterval: 100 * time.Millisecond, JoinRetryInterval: 250 * time.Millisecond,
		},
		Dial:      rs.dialer(region),
		Heartbeat: 200 * time.Millisecond, ContactWindow: 2 * time.Second,
	}
}

// Pair pairs regions a and b the way `coffer region pair` does: a's offer
// to b, b's answer to a, each call authenticated in its own region.
func (rs *RegionSet) Pair(a, b string) {
	rs.t.Helper()
	ca, cb := rs.regions[a], rs.regions[b]
	ctx, cancel := RPCContext()
	defer cancel()
	offer, err := ca.Regions(ca.Leader()).GetPairingOffer(ctx, &cofferv1.GetPairingOfferRequest{})
	if err != nil {
		rs.t.Fatalf("pairing offer of %s: %v", a, err)
	}
	ans, err := cb.Regions(cb.Leader()).PairRegion(ctx, &cofferv1.PairRegionRequest{Peer: offer.GetOffer(), PeerCaSha256: rs.fingerprint(offer.GetOffer())})
	if err != nil {
		rs.t.Fatalf("pair %s with %s: %v", b, a, err)
	}
	if _, err := ca.Regions(ca.Leader()).PairRegion(ctx, &cofferv1.PairRegionRequest{Peer: ans.GetOffer(), PeerCaSha256: rs.fingerprint(ans.GetOffer())}); err != nil {
		rs.t.Fatalf("pair %s with %s: %v", a, b, err)
	}
}

// fingerprint is the SHA-256 fingerprint of the CA an offer names, which
// an operator would read with coffer region info on that region.
func (rs *RegionSet) fingerprint(o *cofferv1.PairingOffer) string {
	rs.t.Helper()
	fp, err := server.CAFingerprint(o.GetCaPem())
	if err != nil {
		rs.t.Fatalf("CA of %s: %v", o.GetRegion(), err)
	}
	return fp
}

// Cut stops replication traffic between regions a and b both ways: new
// dials fail and live connections close.
func (rs *RegionSet) Cut(a, b string) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.cut[[2]string{a, b}], rs.cut[[2]string{b, a}] = true, true
	for c, pair := range rs.conns {
		if rs.cut[pair] {
			delete(rs.conns, c)
			_ = c.Conn.Close()
		}
	}
}

// Heal restores every link between regions.
func (rs *RegionSet) Heal() {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.cut = map[[2]string]bool{}
}

func (rs *RegionSet) dialer(from string) replication.Dialer {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		rs.mu.Lock()
		to := rs.regionOf[addr]
		cut := rs.cut[[2]string{from, to}]
		rs.mu.Unlock()
		if cut {
			return nil, fmt.Errorf("test WAN: %s cannot reach %s (%s): cut", from, to, addr)
		}
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		rc := &regionConn{Conn: conn, rs: rs}
		rs.mu.Lock()
		defer rs.mu.Unlock()
		if rs.cut[[2]string{from, to}] {
			_ = conn.Close()
			return nil, fmt.Errorf("test WAN: %s cannot reach %s: cut", from, to)
		}
		rs.conns[rc] = [2]string{from, to}
		return rc, nil
	}
}

type regionConn struct {
	net.Conn
	rs *RegionSet
}

func (c *regionConn) Close() error {
	c.rs.mu.Lock()
	delete(c.rs.conns, c)
	c.rs.mu.Unlock()
	return c.Conn.Close()
}

// StartRegionsWith is StartRegions with options applied to every region's
// cluster (node tuning such as the AWS listener or rotation timing).
func StartRegionsWith(t *testing.T, n int, names []string, opts ...Option) *RegionSet {
	t.Helper()
	rs := &RegionSet{t: t, wanKey: randomBytes(t, 32), regions: map[string]*Cluster{}, names: names,
		regionOf: map[string]string{}, cut: map[[2]string]bool{}, conns: map[*regionConn][2]string{}}
	for _, name := range names {
		all := append([]Option{func(s *settings) { s.region, s.cross = name, rs }}, opts...)
		rs.regions[name] = Start(t, n, all...)
	}
	return rs
}
