package faults

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/test/wait"
)

// Every test shares the deployment: it starts from a whole, healthy one,
// and its cleanup undoes its faults and waits until both regions serve
// again, whether it passed or not.
func setup(t *testing.T) {
	t.Helper()
	t.Cleanup(func() { dep.restore(t) })
	dep.waitHealthy(t)
}

const (
	clients = 6
	keys    = 6
	// settle is how many operations complete between the steps of a
	// fault: enough for every client to have called its node.
	settle = 30
	// pauseFor freezes a leader well past the election timeout (1 s).
	pauseFor = 5 * time.Second
)

// seed is COFFER_FAULTS_SEED, else the clock's; tests print it.
func seed(t testing.TB) uint64 {
	if s := os.Getenv("COFFER_FAULTS_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("COFFER_FAULTS_SEED=%q: %v", s, err)
		}
		t.Logf("seed %d (COFFER_FAULTS_SEED)", v)
		return v
	}
	v := uint64(time.Now().UnixNano())
	t.Logf("seed %d (replay with COFFER_FAULTS_SEED=%d)", v, v)
	return v
}

// TestKillLeader: kill -9 of the region leader under load; a new leader
// takes writes, the old one restarts from its disk and catches up.
func TestKillLeader(t *testing.T) {
	setup(t)
	us := dep.regions[usEast]
	w := newWorkload(t, dep, us, "kill-leader", keys)
	w.start(clients, seed(t))
	defer w.halt()
	w.progress(t, settle)
	old := dep.leader(t, us)
	t0 := time.Now()
	dep.kill(t, old)
	took := w.waitAckAfter(t, t0, time.Now())
	t.Logf("FIGURE failover: killed leader %s; first write sent after the kill acknowledged %v later", old, took.Round(time.Millisecond))
	w.progress(t, settle)
	dep.start(t, old)
	w.progress(t, settle)
	dep.waitHealthy(t)
	w.check(t)
}

// TestKillFollower: kill -9 of a follower; the region keeps taking writes,
// the follower restarts and catches up.
func TestKillFollower(t *testing.T) {
	setup(t)
	us := dep.regions[usEast]
	w := newWorkload(t, dep, us, "kill-follower", keys)
	w.start(clients, seed(t))
	defer w.halt()
	w.progress(t, settle)
	f := us.others(dep.leader(t, us))[0]
	dep.kill(t, f)
	w.progress(t, settle)
	dep.start(t, f)
	dep.waitHealthy(t)
	w.progress(t, settle)
	w.check(t)
}

// TestKillRegion: power loss of all three nodes of a region at once; it
// restarts from its disks with every acknowledged write.
func TestKillRegion(t *testing.T) {
	setup(t)
	us := dep.regions[usEast]
	w := newWorkload(t, dep, us, "kill-region", keys)
	w.start(clients, seed(t))
	defer w.halt()
	w.progress(t, settle)
	dep.kill(t, us.nodes...)
	w.halt() // nothing can answer; keep the history short
	t0 := time.Now()
	dep.start(t, us.nodes...)
	w.start(clients, uint64(t0.UnixNano()))
	took := w.waitAckAfter(t, t0, t0)
	t.Logf("FIGURE power loss: region restarted; first write acknowledged %v after the restart", took.Round(time.Millisecond))
	w.progress(t, settle)
	dep.waitHealthy(t)
	w.check(t)
}

// TestPauseLeader: the leader freezes (docker pause, like a long GC pause)
// for longer than the election timeout; the others elect a new leader and
// take writes. When the old leader wakes it must neither serve a stale
// linearizable read nor acknowledge a write as leader: the probes sent to
// it the moment it wakes are part of the checked history.
func TestPauseLeader(t *testing.T) {
	setup(t)
	us := dep.regions[usEast]
	w := newWorkload(t, dep, us, "pause-leader", keys)
	w.start(clients, seed(t))
	defer w.halt()
	w.progress(t, settle)
	old := dep.leader(t, us)
	mustDocker(t, "pause", old.container)
	paused := time.Now()
	w.progress(t, settle) // through the other two
	if d := time.Since(paused); d < pauseFor {
		time.Sleep(pauseFor - d)
	}
	mustDocker(t, "unpause", old.container)
	w.probe(old, 10000)
	w.progress(t, settle)
	dep.waitHealthy(t)
	w.check(t)
}

// TestPartitionLeaderIsolated: the leader is cut off from the rest of its
// region (and the WAN) while clients still reach it; it must not
// acknowledge writes or serve linearizable reads, the majority elects a
// new leader, and after the partition heals the old leader follows it.
func TestPartitionLeaderIsolated(t *testing.T) {
	setup(t)
	us := dep.regions[usEast]
	w := newWorkload(t, dep, us, "isolate-leader", keys)
	w.start(clients, seed(t))
	defer w.halt()
	w.progress(t, settle)
	old := dep.leader(t, us)
	dep.isolate(t, old)
	w.progress(t, settle)
	w.probe(old, 10000) // the isolated node, asked directly
	if err := dep.reconnect(old); err != nil {
		t.Fatal(err)
	}
	w.progress(t, settle)
	dep.waitHealthy(t)
	w.check(t)
}

// TestPartitionSplit: a symmetric 2/1 split of the region's network (the
// minority node chosen by the seed: the leader or a follower); the
// majority side keeps taking writes.
func TestPartitionSplit(t *testing.T) {
	setup(t)
	us := dep.regions[usEast]
	s := seed(t)
	w := newWorkload(t, dep, us, "split", keys)
	w.start(clients, s)
	defer w.halt()
	w.progress(t, settle)
	minority := us.nodes[rand.New(rand.NewPCG(s, 0)).IntN(len(us.nodes))]
	t.Logf("minority: %s", minority)
	dep.cutLAN(t, minority)
	w.progress(t, settle)
	w.probe(minority, 10000)
	if err := dep.reconnect(minority); err != nil {
		t.Fatal(err)
	}
	w.progress(t, settle)
	dep.waitHealthy(t)
	w.check(t)
}

// TestWANCutDuringReplication: writes to secrets replicated to the other
// region continue while the WAN link is cut; the primary keeps
// acknowledging, the replica falls behind, and once the link heals the
// replica converges to the primary's exact versions and labels.
func TestWANCutDuringReplication(t *testing.T) {
	setup(t)
	us, eu := dep.regions[usEast], dep.regions[euWest]
	w := newWorkload(t, dep, us, "wan-cut", keys, euWest)
	w.start(clients, seed(t))
	defer w.halt()
	w.progress(t, settle)
	dep.cutWAN(t, eu)
	w.progress(t, 2*settle)
	lagDuring := dep.replicationLag(t, us, euWest)
	t.Logf("FIGURE WAN cut: replication lag with the link cut: %s", lagDuring)
	healed := time.Now()
	for _, n := range eu.nodes {
		if err := dep.reconnect(n); err != nil {
			t.Fatal(err)
		}
	}
	w.halt()
	caught := dep.waitReplicaCaughtUp(t, us, euWest)
	t.Logf("FIGURE WAN cut: replica caught up %v after the link healed", caught.Sub(healed).Round(time.Millisecond))
	dep.waitHealthy(t)
	w.check(t)
}

// probe sends every key's linearizable read to n (the node a fault just
// touched) through both protocols, recording the answers in the history.
// The reads go out together, each as its own client: a node cut off from
// its region holds each one until its deadline, and one after the other
// they took minutes once the soak had added keys.
func (w *workload) probe(n *node, clientBase int) {
	w.mu.Lock()
	keys := append([]string(nil), w.keys...)
	w.mu.Unlock()
	var wg sync.WaitGroup
	for i, key := range keys {
		wg.Go(func() { w.one(clientBase+i, n, kvInput{key: key}, i%2 == 1, "") })
	}
	wg.Wait()
}

type lag struct {
	pending uint64
	seconds float64
}

func (l lag) String() string {
	return fmt.Sprintf("%d changes pending, oldest %.1f s", l.pending, l.seconds)
}

// replicationLag is what region r's leader reports for its link to peer.
func (d *deployment) replicationLag(t testing.TB, r *region, peer string) lag {
	t.Helper()
	var out lag
	wait.Until(t, healTimeout, func() error {
		l, err := d.currentLeader(r, nil)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
		defer cancel()
		resp, err := l.regions.ListRegions(ctx, &cofferv1.ListRegionsRequest{})
		if err != nil {
			return fmt.Errorf("ListRegions on %s: %s", l, describe(err))
		}
		for _, ri := range resp.GetRegions() {
			if ri.GetRegion() == peer {
				out = lag{pending: ri.GetPendingChanges(), seconds: ri.GetLagSeconds()}
				return nil
			}
		}
		return fmt.Errorf("%s does not list %s", l, peer)
	})
	return out
}

// waitReplicaCaughtUp waits until r's leader has nothing pending for peer
// and returns when it saw that.
func (d *deployment) waitReplicaCaughtUp(t testing.TB, r *region, peer string) time.Time {
	t.Helper()
	wait.Until(t, healTimeout, func() error {
		if l := d.replicationLag(t, r, peer); l.pending > 0 {
			return fmt.Errorf("%s: %s", peer, l)
		}
		return nil
	})
	return time.Now()
}
