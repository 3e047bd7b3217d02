package cluster

import (
	"fmt"
	"testing"
	"time"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/test/testkit/clustertest"
	"github.com/cofferhq/coffer/test/wait"
)

// TestRestartFromStateFile restarts a node that holds many secrets and
// measures how long it takes from node.Start to serving: its state file
// holds everything it applied, so it must not replay or restore before
// serving. The duration is logged, never asserted.
func TestRestartFromStateFile(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 secrets; skipped with -short")
	}
	c := clustertest.Start(t, 3)
	const secrets = 10_000
	names := make([]string, secrets)
	for k := range names {
		names[k] = fmt.Sprintf("restart/%05d", k)
	}
	leader := c.Leader()
	start := time.Now()
	loadSecrets(t, names, secrets, 64, func(int) cofferv1.SecretsManagerServiceClient { return c.Client(leader) })
	t.Logf("created %d secrets in %s", secrets, time.Since(start).Round(time.Millisecond))

	for _, i := range []int{c.Others(leader)[0], leader} {
		// Everything acknowledged is applied here before the stop.
		wait.Until(t, clustertest.ConvergeTimeout, func() error {
			if got, want := c.Node(i).Raft().AppliedIndex(), c.Node(leader).Raft().AppliedIndex(); got < want {
				return fmt.Errorf("%s applied %d, leader %d", c.ID(i), got, want)
			}
			return nil
		})
		applied := c.Node(i).Store().AppliedIndex()
		c.Stop(i)
		took := c.Restart(i)
		t.Logf("%s with %d secrets (applied index %d): serving %s after node.Start", c.ID(i), secrets, applied, took.Round(time.Millisecond))

		// It serves what its state file holds at once, without waiting
		// for the leader to send anything.
		if got := c.Node(i).Store().AppliedIndex(); got < applied {
			t.Errorf("%s restarted at applied index %d, below the %d it had", c.ID(i), got, applied)
		}
		for _, k := range []int{0, secrets / 2, secrets - 1} {
			ctx, cancel := clustertest.RPCContext(clustertest.StaleRead(0)...)
			got, _, err := getValue(ctx, c.Client(i), names[k], "")
			cancel()
			if want := names[k] + "/v0"; err != nil || got.GetSecretString() != want {
				t.Errorf("stale read of %s on the restarted %s = %q, %s; want %q", names[k], c.ID(i), got.GetSecretString(), describeErr(err), want)
			}
		}
		leader = c.Leader()
	}
}
