package faults

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/test/wait"
)

func soak() bool { return os.Getenv("COFFER_FAULTS_SOAK") != "" }

// fault is one nemesis step: it breaks the deployment and undoes it.
type fault string

const (
	killLeader    fault = "kill-leader"
	killFollower  fault = "kill-follower"
	powerLoss     fault = "power-loss"
	pauseLeader   fault = "pause-leader"
	isolateLeader fault = "isolate-leader"
	splitRegion   fault = "split-2/1"
	cutWAN        fault = "wan-cut"
)

func (f fault) partition() bool { return f == isolateLeader || f == splitRegion || f == cutWAN }

// schedule is the nemesis's faults in order. A normal run draws a few of
// every kind; the soak runs at least 50 leader kills and 20 partitions.
func schedule(rng *rand.Rand) []fault {
	if !soak() {
		all := []fault{killLeader, killFollower, pauseLeader, isolateLeader, splitRegion, cutWAN, powerLoss}
		rng.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
		return all[:5]
	}
	var s []fault
	add := func(f fault, n int) {
		for range n {
			s = append(s, f)
		}
	}
	add(killLeader, 52)
	add(isolateLeader, 8)
	add(splitRegion, 8)
	add(cutWAN, 8)
	add(killFollower, 6)
	add(pauseLeader, 6)
	add(powerLoss, 2)
	rng.Shuffle(len(s), func(i, j int) { s[i], s[j] = s[j], s[i] })
	return s
}

// TestNemesis runs a randomized schedule of every fault, drawn from a seed
// it prints (COFFER_FAULTS_SEED replays it), under one workload whose
// secrets replicate to the other region, and checks the whole history and
// the final state. With COFFER_FAULTS_SOAK=1 it is the soak that measures
// the failover figures (docs/FAULTS.md).
func TestNemesis(t *testing.T) {
	setup(t)
	s := seed(t)
	rng := rand.New(rand.NewPCG(s, 1))
	us, eu := dep.regions[usEast], dep.regions[euWest]
	w := newWorkload(t, dep, us, "nemesis", keys, euWest)
	w.start(clients, s)
	defer w.halt()
	w.progress(t, settle)

	var failovers []time.Duration
	counts := map[fault]int{}
	sched := schedule(rng)
	t.Logf("schedule: %v", sched)
	for i, f := range sched {
		if w.exhausted() {
			w.addKeys(t, keys)
		}
		start := time.Now()
		switch f {
		case killLeader:
			old := dep.leader(t, us)
			t0 := time.Now()
			dep.kill(t, old)
			took := w.waitAckAfter(t, t0, time.Now())
			failovers = append(failovers, took)
			w.progress(t, settle/2)
			dep.start(t, old)
		case killFollower:
			f := us.others(dep.leader(t, us))[rng.IntN(2)]
			dep.kill(t, f)
			w.progress(t, settle/2)
			dep.start(t, f)
		case powerLoss:
			dep.kill(t, us.nodes...)
			time.Sleep(time.Duration(rng.IntN(2000)) * time.Millisecond)
			dep.start(t, us.nodes...)
		case pauseLeader:
			old := dep.leader(t, us)
			mustDocker(t, "pause", old.container)
			time.Sleep(pauseFor)
			mustDocker(t, "unpause", old.container)
			w.probe(old, 10000+i*len(w.keys))
		case isolateLeader:
			old := dep.leader(t, us)
			dep.isolate(t, old)
			w.progress(t, settle/2)
			w.probe(old, 10000+i*len(w.keys))
			if err := dep.reconnect(old); err != nil {
				t.Fatal(err)
			}
		case splitRegion:
			minority := us.nodes[rng.IntN(len(us.nodes))]
			dep.cutLAN(t, minority)
			w.progress(t, settle/2)
			w.probe(minority, 10000+i*len(w.keys))
			if err := dep.reconnect(minority); err != nil {
				t.Fatal(err)
			}
		case cutWAN:
			dep.cutWAN(t, eu)
			w.progress(t, settle/2)
			for _, n := range eu.nodes {
				if err := dep.reconnect(n); err != nil {
					t.Fatal(err)
				}
			}
		}
		// The round's time includes the fault itself and the probes of the
		// node it touched (each read of an isolated node waits out its
		// deadline); healing is from the fault's undoing to every node of
		// both regions serving linearizable reads.
		undone := time.Now()
		counts[f]++
		dep.waitHealthy(t)
		healed := time.Since(undone)
		w.progress(t, settle/2)
		t.Logf("round %d: %s, round %v, healthy %v after the fault was undone", i, f, time.Since(start).Round(time.Millisecond), healed.Round(time.Millisecond))
	}
	w.halt()
	dep.waitReplicaCaughtUp(t, us, euWest)
	w.check(t)

	partitions := 0
	for f, n := range counts {
		if f.partition() {
			partitions += n
		}
	}
	t.Logf("seed %d: %d rounds, %d leader kills, %d partitions, counts %v", s, len(sched), counts[killLeader], partitions, counts)
	if len(failovers) > 0 {
		slices.Sort(failovers)
		t.Logf("FIGURE failover (kill -9 of the leader to the first acknowledged write sent after it) over %d kills: p50 %v, p90 %v, max %v",
			len(failovers), failovers[len(failovers)/2].Round(time.Millisecond), failovers[len(failovers)*9/10].Round(time.Millisecond), failovers[len(failovers)-1].Round(time.Millisecond))
	}
}

// exhausted: every key has had its share of puts.
func (w *workload) exhausted() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, k := range w.keys {
		if w.puts[k] < maxPutsPerKey {
			return false
		}
	}
	return true
}

// TestSoakPowerLoss10k (COFFER_FAULTS_SOAK=1): a region holding 10,000
// secrets loses power on all three nodes at once; how long from the
// restart to the first acknowledged write, and to every node serving
// linearizable reads of all of them again.
func TestSoakPowerLoss10k(t *testing.T) {
	if !soak() {
		t.Skip("a soak figure; set COFFER_FAULTS_SOAK=1")
	}
	setup(t)
	us := dep.regions[usEast]
	const total = 10000
	var next, failed atomic.Int64
	var wg sync.WaitGroup
	loadStart := time.Now()
	for c := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := us.nodes[c%3]
			for {
				i := next.Add(1) - 1
				if i >= total {
					return
				}
				name := fmt.Sprintf("bulk/%05d", i)
				for attempt := 0; ; attempt++ {
					ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
					_, err := n.sm.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: name, SecretString: proto.String("v"), ClientRequestToken: token("bulk", int(i))})
					cancel()
					if err == nil || errType(err) == "ResourceExistsException" {
						break
					}
					if attempt == 20 {
						failed.Add(1)
						break
					}
					time.Sleep(100 * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d creates failed", failed.Load())
	}
	t.Logf("created %d secrets in %v", total, time.Since(loadStart).Round(time.Millisecond))
	countAll := func(n *node) (int, error) {
		count, next := 0, ""
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			resp, err := n.sm.ListSecrets(ctx, &cofferv1.ListSecretsRequest{MaxResults: proto32(100), NextToken: next})
			cancel()
			if err != nil {
				return count, err
			}
			count += len(resp.GetSecretList())
			if next = resp.GetNextToken(); next == "" {
				return count, nil
			}
		}
	}

	dep.kill(t, us.nodes...)
	t0 := time.Now()
	dep.start(t, us.nodes...)
	var firstWrite time.Duration
	wait.Until(t, healTimeout, func() error {
		for _, n := range us.nodes {
			ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
			_, err := n.sm.PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: "bulk/00000", SecretString: proto.String("after"), ClientRequestToken: token("bulk-after", int(time.Now().UnixNano()%1e9))})
			cancel()
			if err == nil {
				firstWrite = time.Since(t0)
				return nil
			}
		}
		return fmt.Errorf("no write acknowledged yet")
	})
	var counts []int
	wait.Until(t, healTimeout, func() error {
		counts = counts[:0]
		for _, n := range us.nodes {
			c, err := countAll(n)
			if err != nil {
				return fmt.Errorf("%s: %s", n, describe(err))
			}
			if c < total {
				return fmt.Errorf("%s lists %d secrets", n, c)
			}
			counts = append(counts, c)
		}
		return nil
	})
	allServing := time.Since(t0)
	t.Logf("FIGURE power loss with %d secrets: first acknowledged write %v after the restart; every node listing all of them (linearizable) %v after it",
		total, firstWrite.Round(time.Millisecond), allServing.Round(time.Millisecond))
	sort.Ints(counts)
}
