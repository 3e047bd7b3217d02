package clustertest

import (
	"context"
	"fmt"
	"net"
	"sync"

	"github.com/cofferhq/coffer/replication"
)

// Network is the link layer between a cluster's nodes: every node's
// replication.Config.Dial goes through it, so it can refuse dials and cut
// live connections between groups of nodes.
//
// Only node-to-node traffic on the cluster port (Raft and the internal
// gRPC: forwarding, read index, status) is partitioned. Gossip (memberlist)
// is not: it keeps seeing every node alive, which is what a partition that
// cuts the cluster port but not the gossip port looks like, and it keeps
// autopilot from treating the isolated node as dead. Client API traffic is
// not partitioned either: the tests reach every node.
type Network struct {
	mu     sync.Mutex
	byAddr map[string]int       // cluster address → node index
	group  map[int]int          // node index → group; nil when healed
	conns  map[*trackedConn]int // live dialed connections
}

// NewNetwork returns a healed network with no nodes.
func NewNetwork() *Network {
	return &Network{byAddr: map[string]int{}, conns: map[*trackedConn]int{}}
}

// register tells the network which node listens on a cluster address.
func (nw *Network) register(addr string, node int) {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	nw.byAddr[addr] = node
}

// Dialer returns node from's dialer.
func (nw *Network) Dialer(from int) replication.Dialer {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		nw.mu.Lock()
		to, known := nw.byAddr[addr]
		linked := !known || nw.linkedLocked(from, to)
		nw.mu.Unlock()
		if !linked {
			return nil, fmt.Errorf("test network: node %d cannot reach node %d (%s): partitioned", from, to, addr)
		}
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err != nil || !known {
			return conn, err
		}
		tc := &trackedConn{Conn: conn, nw: nw}
		nw.mu.Lock()
		defer nw.mu.Unlock()
		// A partition that came while dialing must not miss this one.
		if !nw.linkedLocked(from, to) {
			_ = conn.Close()
			return nil, fmt.Errorf("test network: node %d cannot reach node %d (%s): partitioned", from, to, addr)
		}
		nw.conns[tc] = from<<16 | to
		return tc, nil
	}
}

// Partition splits the nodes into groups that cannot reach each other: it
// refuses new dials between groups and closes every live connection that
// crosses groups. A node in no group is cut off from every node. Each
// connection is tracked by the node that dialed it, and closing it cuts
// both directions, so inbound connections are covered too.
func (nw *Network) Partition(groups ...[]int) {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	nw.group = map[int]int{}
	for g, nodes := range groups {
		for _, n := range nodes {
			nw.group[n] = g
		}
	}
	for c, pair := range nw.conns {
		if !nw.linkedLocked(pair>>16, pair&0xffff) {
			delete(nw.conns, c)
			_ = c.Conn.Close()
		}
	}
}

// Heal lets every node reach every other again.
func (nw *Network) Heal() {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	nw.group = nil
}

func (nw *Network) linkedLocked(a, b int) bool {
	if nw.group == nil || a == b {
		return true
	}
	ga, okA := nw.group[a]
	gb, okB := nw.group[b]
	return okA && okB && ga == gb
}

// trackedConn is a dialed connection the network can cut.
type trackedConn struct {
	net.Conn
	nw *Network
}

func (c *trackedConn) Close() error {
	c.nw.mu.Lock()
	delete(c.nw.conns, c)
	c.nw.mu.Unlock()
	return c.Conn.Close()
}
