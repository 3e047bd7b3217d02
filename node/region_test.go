package node_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cofferhq/coffer/node"
	"github.com/cofferhq/coffer/test/testkit"
	"github.com/cofferhq/coffer/test/testkit/clustertest"
)

func TestBasePortsIsCofferdDevsLayout(t *testing.T) {
	p, err := node.BasePorts("127.0.0.1", 7400, true)(2)
	if err != nil {
		t.Fatal(err)
	}
	want := node.Ports{GRPC: "127.0.0.1:7420", Cluster: "127.0.0.1:7421", Gossip: "127.0.0.1:7422", Region: "127.0.0.1:7423", WAN: "127.0.0.1:7424"}
	if p != want {
		t.Fatalf("node 2's ports %+v, want %+v", p, want)
	}
	if p, _ := node.BasePorts("127.0.0.1", 7400, false)(0); p.Region != "" || p.WAN != "" {
		t.Fatalf("a region on its own has region ports %+v", p)
	}
}

func TestStartRegionRefusesAnIncompleteSpec(t *testing.T) {
	_, err := node.StartRegion(t.Context(), node.RegionSpec{Nodes: 1, Dir: t.TempDir()})
	if !errors.Is(err, node.ErrRegionSpec) {
		t.Fatalf("StartRegion without Ports and Options: %v, want ErrRegionSpec", err)
	}
}

// TestRegionStopsAndRestartsANode: a node of a one-node region stops,
// comes back with the same data directory and ports, and still has what
// it stored; stopping a stopped node and restarting a running one fail.
func TestRegionStopsAndRestartsANode(t *testing.T) {
	free := func(int) (node.Ports, error) {
		var p node.Ports
		for _, a := range []*string{&p.GRPC, &p.Cluster, &p.Gossip} {
			var err error
			if *a, err = testkit.ProbeAddr(true); err != nil {
				return p, err
			}
		}
		return p, nil
	}
	base := clustertest.SingleNodeOptions(t, "")
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	r, err := node.StartRegion(ctx, node.RegionSpec{Nodes: 1, Dir: t.TempDir(), Ports: free,
		Options: func(node.Member) (node.Options, error) { return base, nil }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Stop() })
	before := r.Member(0)
	if before.ID != "node-0" || r.Node(0).Addr() != before.Ports.GRPC {
		t.Fatalf("node 0 is %q serving on %s, want node-0 on %s", before.ID, r.Node(0).Addr(), before.Ports.GRPC)
	}
	applied := r.Node(0).Store().AppliedIndex()

	if _, err := r.RestartNode(0); !errors.Is(err, node.ErrRunning) {
		t.Fatalf("restart of a running node: %v, want ErrRunning", err)
	}
	if err := r.StopNode(0); err != nil {
		t.Fatal(err)
	}
	if r.Node(0) != nil || len(r.Running()) != 0 {
		t.Fatal("a stopped node is still listed as running")
	}
	if err := r.StopNode(0); !errors.Is(err, node.ErrNotRunning) {
		t.Fatalf("stop of a stopped node: %v, want ErrNotRunning", err)
	}
	nd, err := r.RestartNode(0)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	after := r.Member(0)
	if after.DataDir != before.DataDir || after.Ports != before.Ports || nd.Addr() != before.Ports.GRPC {
		t.Fatalf("restarted as %+v on %s, want the identity %+v", after, nd.Addr(), before)
	}
	if got := nd.Store().AppliedIndex(); got < applied {
		t.Fatalf("applied index %d after restart, %d before", got, applied)
	}
	if err := r.WaitVoters(ctx); err != nil {
		t.Fatal(err)
	}
	if l := r.Leader(); l != 0 {
		t.Fatalf("leader %d, want node 0", l)
	}
}
