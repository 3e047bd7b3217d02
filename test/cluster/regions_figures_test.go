package cluster

import (
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/replication/region"
	"github.com/cofferhq/coffer/test/testkit/clustertest"
	"github.com/cofferhq/coffer/test/wait"
)

// TestReplicationFigures measures what docs/ARCHITECTURE.md reports for
// cross-region replication: lag at a steady put rate, time from region loss
// to promoted-and-writable, and catch-up after a partition. It asserts
// nothing about durations (figures are measured, not tested) and runs only
// with COFFER_REPLICATION_FIGURES=1, without -race:
//
//	COFFER_REPLICATION_FIGURES=1 go test -count=1 -v -run TestReplicationFigures ./test/cluster
//
// COFFER_FIGURES_RATE (puts/s, default 500) and COFFER_FIGURES_SECONDS
// (default 20) size the steady phase; COFFER_FIGURES_BACKLOG (default 20000)
// is the number of changes written during the partition, as fast as the
// primary takes them; COFFER_FIGURES_PARTITION_SECONDS instead keeps the
// partition for that long under the steady rate (600 for the 10-minute
// partition the issue asks about).
func TestReplicationFigures(t *testing.T) {
	if os.Getenv("COFFER_REPLICATION_FIGURES") == "" {
		t.Skip("set COFFER_REPLICATION_FIGURES=1 to measure")
	}
	rate, seconds, backlog := envInt("COFFER_FIGURES_RATE", 500), envInt("COFFER_FIGURES_SECONDS", 20), envInt("COFFER_FIGURES_BACKLOG", 20000)
	partition := time.Duration(envInt("COFFER_FIGURES_PARTITION_SECONDS", 0)) * time.Second
	if partition > 0 {
		backlog = rate * int(partition/time.Second)
	}
	rs := clustertest.StartRegions(t, 3, usEast, euWest)
	rs.Pair(usEast, euWest)
	us, eu := rs.Region(usEast), rs.Region(euWest)

	// Enough secrets that no secret nears the 100-version limit.
	nSecrets := max(rate*seconds/50, (backlog+rate*seconds)/80+1, 20)
	arns := make([]string, nSecrets)
	for i := range arns {
		ctx, cancel := clustertest.RPCContext()
		v := "seed"
		resp, err := us.Client(us.Leader()).CreateSecret(ctx, &cofferv1.CreateSecretRequest{
			Name: fmt.Sprintf("fig/%04d", i), SecretString: &v, ClientRequestToken: newToken(),
			AddReplicaRegions: []*cofferv1.ReplicaRegion{{Region: euWest}},
		})
		cancel()
		if err != nil {
			t.Fatal(describeErr(err))
		}
		arns[i] = resp.GetArn()
	}
	waitFeedEmpty(t, us)

	var mu sync.Mutex
	var lags []time.Duration
	for _, i := range us.Running() {
		us.Node(i).Region().SetLagObserver(func(s region.LagSample) {
			mu.Lock()
			lags = append(lags, s.Lag)
			mu.Unlock()
		})
	}

	// Phase 1: steady puts at rate for seconds.
	start := time.Now()
	done, failed := loadAt(t, us, arns, rate, time.Duration(seconds)*time.Second)
	elapsed := time.Since(start)
	waitFeedEmpty(t, us)
	mu.Lock()
	steady := slices.Clone(lags)
	mu.Unlock()
	slices.Sort(steady)
	t.Logf("steady load: %d puts in %s (%.0f/s achieved, %d failed); %d changes shipped; lag p50 %s p99 %s max %s",
		done, elapsed.Round(time.Millisecond), float64(done)/elapsed.Seconds(), failed, len(steady),
		pct(steady, 50), pct(steady, 99), pct(steady, 100))

	// Phase 2: partition, backlog, heal, catch up.
	rs.Cut(usEast, euWest)
	t0 := time.Now()
	var wrote int
	if partition > 0 {
		wrote, _ = loadAt(t, us, arns, rate, partition)
	} else {
		wrote, _ = loadAt(t, us, arns, 100000, 0, backlog)
	}
	t.Logf("partition: %d changes written in %s (%.0f/s)", wrote, time.Since(t0).Round(time.Millisecond), float64(wrote)/time.Since(t0).Seconds())
	pending := us.Node(us.Leader()).Store().FeedLength()
	healed := time.Now()
	rs.Heal()
	waitFeedEmpty(t, us)
	catchUp := time.Since(healed)
	t.Logf("catch-up: %d feed entries in %s = %.0f changes/s; a 10-minute partition at %d puts/s leaves %d changes, ~%s to catch up at this rate",
		pending, catchUp.Round(time.Millisecond), float64(pending)/catchUp.Seconds(), rate, rate*600,
		time.Duration(float64(rate*600)/(float64(pending)/catchUp.Seconds())*float64(time.Second)).Round(time.Second))

	// Phase 3: lose the primary region; promote; write.
	for _, i := range us.Running() {
		us.Stop(i)
	}
	lost := time.Now()
	var detected time.Duration
	wait.Until(t, clustertest.ConvergeTimeout, func() error {
		ctx, cancel := clustertest.RPCContext()
		defer cancel()
		d, err := eu.Regions(eu.Leader()).PromoteRegion(ctx, &cofferv1.PromoteRegionRequest{Region: euWest, DryRun: true})
		if err != nil {
			return err
		}
		if len(d.GetPromoted()) != nSecrets {
			return fmt.Errorf("%d promotable", len(d.GetPromoted()))
		}
		detected = time.Since(lost)
		return nil
	})
	ctx, cancel := clustertest.RPCContext()
	defer cancel()
	if _, err := eu.Regions(eu.Leader()).PromoteRegion(ctx, &cofferv1.PromoteRegionRequest{Region: euWest}); err != nil {
		t.Fatal(describeErr(err))
	}
	put(t, eu, "fig/0000", "after failover")
	t.Logf("region loss: unreachable after %s; %d secrets promoted and writable %s after the loss",
		detected.Round(time.Millisecond), nSecrets, time.Since(lost).Round(time.Millisecond))
}

func envInt(name string, def int) int {
	var v int
	if _, err := fmt.Sscan(os.Getenv(name), &v); err != nil || v <= 0 {
		return def
	}
	return v
}

func pct(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := (len(sorted)*p + 99) / 100
	return sorted[min(max(i-1, 0), len(sorted)-1)].Round(100 * time.Microsecond)
}

func waitFeedEmpty(t *testing.T, c *clustertest.Cluster) {
	t.Helper()
	wait.Until(t, 10*time.Minute, func() error {
		if n := c.Node(c.Leader()).Store().FeedLength(); n != 0 {
			return fmt.Errorf("%d feed entries unacknowledged", n)
		}
		return nil
	})
}

// loadAt puts at rate per second, spread over the secrets, for d (or until
// limit puts when limit is given), from 32 writers; it returns the puts
// acknowledged and failed.
func loadAt(t *testing.T, c *clustertest.Cluster, arns []string, rate int, d time.Duration, limit ...int) (int, int) {
	var ok, failed, issued atomic.Int64
	max := int64(-1)
	if len(limit) > 0 {
		max = int64(limit[0])
	}
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	deadline := time.Now().Add(d)
	jobs := make(chan int, 1024)
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for n := range jobs {
				l := c.Leader()
				ctx, cancel := clustertest.RPCContext()
				v := fmt.Sprintf("v%d", n)
				_, err := c.Client(l).PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: arns[n%len(arns)], SecretString: &v, ClientRequestToken: newToken()})
				cancel()
				if err != nil {
					failed.Add(1)
				} else {
					ok.Add(1)
				}
			}
		})
	}
	for n := 0; ; n++ {
		if max >= 0 && issued.Load() >= max || max < 0 && time.Now().After(deadline) {
			break
		}
		if max < 0 {
			<-tick.C
		}
		issued.Add(1)
		jobs <- n
	}
	close(jobs)
	wg.Wait()
	return int(ok.Load()), int(failed.Load())
}
