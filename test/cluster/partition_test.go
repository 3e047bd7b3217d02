package cluster

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server"
	"github.com/cofferhq/coffer/test/testkit/clustertest"
	"github.com/cofferhq/coffer/test/wait"
)

// isolatedDeadline is the deadline of the requests sent to a node cut off
// from the majority: they must fail before it, not hang.
const isolatedDeadline = 10 * time.Second

// TestMinorityPartition cuts the leader off from the other two nodes. The
// majority elects a leader and goes on; the isolated node refuses writes
// and linearizable reads rather than answer from stale state, but serves
// stale reads. After healing it converges and the region has one leader.
func TestMinorityPartition(t *testing.T) {
	c := clustertest.Start(t, 3)
	old := c.Leader()
	majority := c.Others(old)

	put := func(i int, name, value string) (string, uint64) {
		t.Helper()
		ctx, cancel := clustertest.RPCContext()
		defer cancel()
		tok := newToken()
		var hdr metadata.MD
		_, err := c.Client(i).PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{
			SecretId: name, ClientRequestToken: tok, SecretString: proto.String(value),
		}, grpc.Header(&hdr))
		if err != nil {
			t.Fatalf("PutSecretValue %s=%q on %s: %s", name, value, c.ID(i), describeErr(err))
		}
		return tok, answeredIndex(t, hdr)
	}

	ctx, cancel := clustertest.RPCContext()
	_, err := c.Client(old).CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: "part/a", SecretString: proto.String("before")})
	cancel()
	if err != nil {
		t.Fatalf("CreateSecret: %s", describeErr(err))
	}
	// Every node has it before the cut, so the stale read below has
	// something to show.
	for i := range c.N() {
		wait.Until(t, clustertest.ConvergeTimeout, func() error {
			ctx, cancel := clustertest.RPCContext(clustertest.StaleRead(0)...)
			defer cancel()
			_, _, err := getValue(ctx, c.Client(i), "part/a", "")
			return err
		})
	}

	c.Net.Partition([]int{old}, majority)
	cut := time.Now()
	newLeader := c.WaitLeader(majority...)
	t.Logf("partitioned %s from %v; %s leads the majority %s after the cut", c.ID(old), c.IDs(majority), c.ID(newLeader), time.Since(cut).Round(time.Millisecond))

	// The majority accepts writes, through its follower too.
	_, _ = put(newLeader, "part/a", "after")
	_, afterIdx := put(c.Others(old, newLeader)[0], "part/a", "after-2")

	// The isolated node cannot commit: the write fails, as unavailable,
	// before the client's deadline.
	isolatedTok := newToken()
	ctx, cancel = context.WithTimeout(context.Background(), isolatedDeadline)
	sent := time.Now()
	_, err = c.Client(old).PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{
		SecretId: "part/a", ClientRequestToken: isolatedTok, SecretString: proto.String("isolated"),
	})
	cancel()
	t.Logf("write on the isolated node: %s after %s", describeErr(err), time.Since(sent).Round(time.Millisecond))
	if err == nil {
		t.Errorf("a write on the isolated old leader %s succeeded", c.ID(old))
	} else if server.TypeOf(err) != server.TypeServiceUnavailable {
		t.Errorf("a write on the isolated node failed with %s, want %s before the %s deadline",
			describeErr(err), server.TypeServiceUnavailable, isolatedDeadline)
	}

	// A linearizable read there must fail rather than return stale data.
	ctx, cancel = context.WithTimeout(context.Background(), isolatedDeadline)
	sent = time.Now()
	got, _, err := getValue(ctx, c.Client(old), "part/a", "")
	cancel()
	t.Logf("linearizable read on the isolated node: %s after %s", describeErr(err), time.Since(sent).Round(time.Millisecond))
	if err == nil {
		t.Errorf("a linearizable read on the isolated node returned %q", got.GetSecretString())
	} else if server.TypeOf(err) != server.TypeServiceUnavailable {
		t.Errorf("a linearizable read on the isolated node failed with %s, want %s before the %s deadline",
			describeErr(err), server.TypeServiceUnavailable, isolatedDeadline)
	}

	// A stale read answers from what the node has.
	ctx, cancel = clustertest.RPCContext(clustertest.StaleRead(0)...)
	got, _, err = getValue(ctx, c.Client(old), "part/a", "")
	cancel()
	if err != nil {
		t.Fatalf("stale read on the isolated node: %s", describeErr(err))
	}
	if got.GetSecretString() != "before" {
		t.Errorf("stale read on the isolated node = %q, want its last value %q", got.GetSecretString(), "before")
	}

	c.Net.Heal()
	healed := time.Now()
	wait.Until(t, clustertest.ConvergeTimeout, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		got, _, err := getValue(metadata.AppendToOutgoingContext(ctx, clustertest.StaleRead(0)...), c.Client(old), "part/a", "")
		if err != nil {
			return err
		}
		if got.GetSecretString() != "after-2" {
			return fmt.Errorf("%s has %q, want %q", c.ID(old), got.GetSecretString(), "after-2")
		}
		return nil
	})
	converged := time.Since(healed)
	leader := c.Leader()
	t.Logf("healed: %s caught up %s after the heal; %s leads all three", c.ID(old), converged.Round(time.Millisecond), c.ID(leader))

	// The write the isolated node took was never committed, and is gone.
	ctx, cancel = clustertest.RPCContext(clustertest.StaleRead(afterIdx)...)
	list, err := c.Client(old).ListSecretVersionIds(ctx, &cofferv1.ListSecretVersionIdsRequest{SecretId: "part/a", IncludeDeprecated: true})
	cancel()
	if err != nil {
		t.Fatalf("ListSecretVersionIds: %s", describeErr(err))
	}
	if len(list.GetVersions()) != 3 {
		t.Errorf("part/a has %d versions, want 3 (before, after, after-2)", len(list.GetVersions()))
	}
	for _, v := range list.GetVersions() {
		if v.GetVersionId() == isolatedTok {
			t.Errorf("the write refused on the isolated node was applied after all: version %s", isolatedTok)
		}
	}

	// Forwarding from the healed node works again.
	wait.Until(t, clustertest.ConvergeTimeout, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := c.Client(old).PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{
			SecretId: "part/a", ClientRequestToken: isolatedTok + "-retry", SecretString: proto.String("healed"),
		})
		return err
	})
	t.Logf("a write through the healed %s succeeded %s after the heal", c.ID(old), time.Since(healed).Round(time.Millisecond))
	for i := range c.N() {
		ctx, cancel := clustertest.RPCContext()
		got, _, err := getValue(ctx, c.Client(i), "part/a", "")
		cancel()
		if err != nil || got.GetSecretString() != "healed" {
			t.Errorf("linearizable read on %s after the heal = %q, %s; want %q", c.ID(i), got.GetSecretString(), describeErr(err), "healed")
		}
	}
}
