package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/test/testkit/clustertest"
	"github.com/cofferhq/coffer/test/wait"
)

// statInt reads one of Raft's numeric stats.
func statInt(t *testing.T, stats map[string]string, key string) uint64 {
	t.Helper()
	v, err := strconv.ParseUint(stats[key], 10, 64)
	if err != nil {
		t.Fatalf("raft stat %s = %q: %v", key, stats[key], err)
	}
	return v
}

// writeRetrying sends one idempotent write (same token, same value) until
// it is acknowledged: the tests that use it check state, not availability.
func writeRetrying(ctx context.Context, write func(context.Context) error) error {
	for {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := write(rctx)
		cancel()
		if err == nil || !unknownOutcome(err) || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// loadSecrets creates secrets names[k] on the client clientFor(k) picks,
// then puts values until there have been total writes, spread so that no
// secret gets more than total/len(names)+1 versions. workers goroutines
// share the work; each secret belongs to one, so its writes are in order.
// It returns each secret's last value.
func loadSecrets(t *testing.T, names []string, total, workers int, clientFor func(k int) cofferv1.SecretsManagerServiceClient) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	last := make([]string, len(names))
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for g := range workers {
		wg.Go(func() {
			var mine []int
			for k := g; k < len(names); k += workers {
				mine = append(mine, k)
			}
			if len(mine) == 0 {
				return
			}
			writes := total / workers
			if g < total%workers {
				writes++
			}
			for n := 0; n < writes; n++ {
				k := mine[n%len(mine)]
				round := n / len(mine)
				value := fmt.Sprintf("%s/v%d", names[k], round)
				tok := fmt.Sprintf("%08d-%023d", k, round)
				cl := clientFor(k)
				err := writeRetrying(ctx, func(ctx context.Context) error {
					var err error
					if round == 0 {
						_, err = cl.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: names[k], ClientRequestToken: tok, SecretString: proto.String(value)})
					} else {
						_, err = cl.PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: names[k], ClientRequestToken: tok, SecretString: proto.String(value)})
					}
					return err
				})
				if err != nil {
					errs <- fmt.Errorf("write %d of %s: %s", round, names[k], describeErr(err))
					return
				}
				last[k] = value
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return last
}

// TestFollowerCatchesUpBySnapshot stops a follower, writes so much that the
// leader compacts its log past the follower's last entry, and restarts the
// follower: it can only catch up by installing the leader's snapshot, and
// then serves the latest values.
func TestFollowerCatchesUpBySnapshot(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 writes; skipped with -short")
	}
	const threshold, trailing = 1024, 256
	c := clustertest.Start(t, 3, clustertest.WithSnapshots(threshold, trailing, 500*time.Millisecond))
	leader := c.Leader()
	f := c.Others(leader)[0]
	followerLast := statInt(t, c.Node(f).Raft().Stats(), "last_log_index")
	c.Stop(f)

	const secrets, writes = 200, 10_000
	names := make([]string, secrets)
	for k := range names {
		names[k] = fmt.Sprintf("snap/%03d", k)
	}
	start := time.Now()
	latest := loadSecrets(t, names, writes, 64, func(int) cofferv1.SecretsManagerServiceClient { return c.Client(leader) })
	took := time.Since(start)
	t.Logf("%d writes to %d secrets in %s (%.0f/s)", writes, secrets, took.Round(time.Millisecond), float64(writes)/took.Seconds())

	// The entry the follower needs next must be gone from the leader's log:
	// Raft keeps at most trailing entries behind its latest snapshot.
	leader = c.WaitLeader(c.Others(f)...)
	var target uint64
	wait.Until(t, clustertest.ConvergeTimeout, func() error {
		st := c.Node(leader).Raft().Stats()
		snap := statInt(t, st, "last_snapshot_index")
		if snap <= followerLast+trailing+1 {
			return fmt.Errorf("leader's last snapshot is at %d; the follower stopped at %d", snap, followerLast)
		}
		target = c.Node(leader).Raft().AppliedIndex()
		return nil
	})

	restarting := time.Now()
	ready := c.Restart(f)
	wait.Until(t, clustertest.ConvergeTimeout, func() error {
		if got := c.Node(f).Raft().AppliedIndex(); got < target {
			return fmt.Errorf("%s applied %d, leader had %d", c.ID(f), got, target)
		}
		return nil
	})
	t.Logf("%s (stopped at index %d) serving %s after node.Start and caught up to %d %s after it",
		c.ID(f), followerLast, ready.Round(time.Millisecond), target, time.Since(restarting).Round(time.Millisecond))

	st := c.Node(f).Raft().Stats()
	if snap := statInt(t, st, "last_snapshot_index"); snap <= followerLast {
		t.Errorf("follower's last snapshot index is %d, want one installed past %d", snap, followerLast)
	}
	snaps, err := os.ReadDir(filepath.Join(c.Member(f).DataDir, "raft", "snapshots"))
	if err != nil || len(snaps) == 0 {
		t.Errorf("follower's snapshot directory: %d entries, %v; want the installed snapshot", len(snaps), err)
	}

	for k, name := range names {
		ctx, cancel := clustertest.RPCContext(clustertest.StaleRead(0)...)
		got, _, err := getValue(ctx, c.Client(f), name, "")
		cancel()
		if err != nil {
			t.Fatalf("stale read of %s on the caught-up follower: %s", name, describeErr(err))
		}
		if got.GetSecretString() != latest[k] {
			t.Errorf("%s on the caught-up follower = %q, want %q", name, got.GetSecretString(), latest[k])
		}
	}
	ctx, cancel := clustertest.RPCContext()
	defer cancel()
	got, _, err := getValue(ctx, c.Client(f), names[0], "")
	if err != nil || got.GetSecretString() != latest[0] {
		t.Errorf("linearizable read of %s on the follower = %q, %s; want %q", names[0], got.GetSecretString(), describeErr(err), latest[0])
	}
}
