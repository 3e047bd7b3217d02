package cluster

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/test/testkit/clustertest"
	"github.com/cofferhq/coffer/test/wait"
)

// writer puts values into a secret in the background, recording every
// version the primary acknowledged.
type writer struct {
	mu    sync.Mutex
	acked []string
	tried int // puts sent, acknowledged or not (a put may commit unacknowledged)
	stop  chan struct{}
	done  chan struct{}
}

func startWriter(t *testing.T, c *clustertest.Cluster, id string, every time.Duration) *writer {
	w := &writer{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for n := 0; ; n++ {
			select {
			case <-w.stop:
				return
			case <-time.After(every):
			}
			l := c.CurrentLeader()
			if l < 0 {
				continue
			}
			nd := c.Node(l)
			if nd == nil {
				continue
			}
			ctx, cancel := clustertest.RPCContext()
			v := fmt.Sprintf("value-%d", n)
			w.mu.Lock()
			w.tried++
			w.mu.Unlock()
			resp, err := c.Client(l).PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: id, SecretString: &v, ClientRequestToken: newToken()})
			cancel()
			if err == nil {
				w.mu.Lock()
				w.acked = append(w.acked, resp.GetVersionId())
				w.mu.Unlock()
			}
		}
	}()
	return w
}

func (w *writer) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acked)
}

// halt stops the writer; it returns the acknowledged versions and how
// many puts were sent.
func (w *writer) halt() (acked []string, tried int) {
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.acked), w.tried
}

func (w *writer) last() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.acked) == 0 {
		return ""
	}
	return w.acked[len(w.acked)-1]
}

// sameValues checks that region r's replica of name holds, for every
// version id of the primary, the primary's value.
func sameValues(t *testing.T, p, r *clustertest.Cluster, primaryARN, name string, ids []string) error {
	t.Helper()
	ctx, cancel := clustertest.RPCContext()
	defer cancel()
	for _, id := range ids {
		want, err := p.Client(p.Leader()).GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: primaryARN, VersionId: id})
		if err != nil {
			return fmt.Errorf("primary version %s: %s", id, describeErr(err))
		}
		got, err := r.Client(r.Leader()).GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: name, VersionId: id})
		if err != nil {
			return fmt.Errorf("replica version %s: %s", id, describeErr(err))
		}
		if got.GetSecretString() != want.GetSecretString() {
			return fmt.Errorf("version %s: replica value differs from the primary's", id)
		}
	}
	return nil
}

func (w *writer) waitMore(t *testing.T, n int) {
	t.Helper()
	target := w.count() + n
	wait.Until(t, clustertest.ConvergeTimeout, func() error {
		if got := w.count(); got < target {
			return fmt.Errorf("%d writes acknowledged, want %d", got, target)
		}
		return nil
	})
}

// TestReplicaConvergesAfterPartitionAndLeaderLoss: under a write load,
// cut the link between the regions (the replica falls behind) and heal it,
// then kill the primary region's leader: the replica ends with exactly the
// primary's versions and values — every acknowledged write, none twice,
// no more than were sent — and the feed is trimmed, before and after the
// old leader returns.
func TestReplicaConvergesAfterPartitionAndLeaderLoss(t *testing.T) {
	rs := clustertest.StartRegions(t, 3, usEast, euWest)
	rs.Pair(usEast, euWest)
	us, eu := rs.Region(usEast), rs.Region(euWest)
	ctx, cancel := clustertest.RPCContext()
	defer cancel()
	v := "seed"
	created, err := us.Client(us.Leader()).CreateSecret(ctx, &cofferv1.CreateSecretRequest{
		Name: "load", SecretString: &v, ClientRequestToken: newToken(), AddReplicaRegions: []*cofferv1.ReplicaRegion{{Region: euWest}},
	})
	if err != nil {
		t.Fatal(describeErr(err))
	}
	arn := created.GetArn()
	waitReplica(t, rs, usEast, euWest, arn)

	w := startWriter(t, us, arn, 20*time.Millisecond)
	w.waitMore(t, 5)
	rs.Cut(usEast, euWest)
	w.waitMore(t, 15)
	// The cut holds: the newest acknowledged write has not reached the
	// replica, and the primary's feed has changes pending for it.
	latest := w.last()
	if got, err := versionIDs(eu, eu.Leader(), "load"); err != nil || slices.Contains(got, latest) {
		t.Fatalf("the replica has %s, written after the cut (%v)", latest, err)
	}
	if st, err := us.Node(us.Leader()).Store().FeedStatus(euWest); err != nil || st.Pending == 0 {
		t.Fatalf("no changes pending for %s during the cut (%+v, %v)", euWest, st, err)
	}
	rs.Heal()
	w.waitMore(t, 5)
	old := us.Leader()
	us.Stop(old) // the leader dies mid-stream
	w.waitMore(t, 10)
	acked, tried := w.halt()
	if tried > 90 {
		t.Fatalf("%d writes: too many for the 100-version limit this test relies on", tried)
	}

	converged := func() error {
		want, err := versionIDs(us, us.Leader(), arn)
		if err != nil {
			return err
		}
		got, err := versionIDs(eu, eu.Leader(), "load")
		if err != nil {
			return err
		}
		// The seed plus every put that committed: at least the acknowledged
		// ones, at most the ones sent (a put may commit as its leader dies).
		if len(want) < 1+len(acked) || len(want) > 1+tried {
			return fmt.Errorf("primary has %d versions for %d acknowledged of %d sent puts", len(want), len(acked), tried)
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("replica has %d versions, primary %d", len(got), len(want))
		}
		for _, id := range acked {
			if !slices.Contains(got, id) {
				return fmt.Errorf("acknowledged version %s missing on the replica", id)
			}
		}
		if n := us.Node(us.Leader()).Store().FeedLength(); n != 0 {
			return fmt.Errorf("the primary's feed still holds %d entries", n)
		}
		return sameValues(t, us, eu, arn, "load", want)
	}
	// Converged with the old leader still down: the new leader shipped.
	waitReplica(t, rs, usEast, euWest, arn)
	wait.Until(t, clustertest.ConvergeTimeout, converged)
	us.Restart(old)
	wait.Until(t, clustertest.ConvergeTimeout, converged)
	t.Logf("%d writes acknowledged of %d sent, link cut and healed, leader %s killed: replica converged", len(acked), tried, us.ID(old))
}
