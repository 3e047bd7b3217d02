package cluster

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server"
	"github.com/cofferhq/coffer/storage"
	"github.com/cofferhq/coffer/test/testkit/clustertest"
	"github.com/cofferhq/coffer/test/wait"
)

// TestFailoverDrill: the primary region is lost with a write it never
// shipped; the replica region is promoted and takes writes; when the old
// region returns it becomes a replica of the new primary and keeps its
// unshipped write under COFFER_DIVERGED_us-east-1.
func TestFailoverDrill(t *testing.T) {
	rs := clustertest.StartRegions(t, 3, usEast, euWest)
	rs.Pair(usEast, euWest)
	us, eu := rs.Region(usEast), rs.Region(euWest)
	ctx, cancel := clustertest.RPCContext()
	defer cancel()
	v := "before"
	created, err := us.Client(us.Leader()).CreateSecret(ctx, &cofferv1.CreateSecretRequest{
		Name: "app/key", SecretString: &v, ClientRequestToken: newToken(), AddReplicaRegions: []*cofferv1.ReplicaRegion{{Region: euWest}},
	})
	if err != nil {
		t.Fatal(describeErr(err))
	}
	waitReplica(t, rs, usEast, euWest, created.GetArn())

	// While the primary region is healthy nothing is promoted: not by the
	// leader, and a follower (whose own view of reachability is not the
	// shipper's) refuses and names the leader instead of judging.
	promoteNothing := func(why string) {
		t.Helper()
		l := eu.Leader()
		for _, dry := range []bool{true, false} {
			resp, err := eu.Regions(l).PromoteRegion(ctx, &cofferv1.PromoteRegionRequest{Region: euWest, DryRun: dry})
			if err != nil || len(resp.GetPromoted()) != 0 {
				t.Fatalf("%s: promote (dry run %v) on the leader: %v %s", why, dry, resp, describeErr(err))
			}
		}
		for _, i := range eu.Others(l) {
			_, err := eu.Regions(i).PromoteRegion(ctx, &cofferv1.PromoteRegionRequest{Region: euWest})
			if status.Code(err) != codes.FailedPrecondition || server.ErrorMetadata(err)[server.MetaLeaderAPIAddress] != eu.Node(l).Addr() {
				t.Fatalf("%s: promote on follower %s: %s (metadata %v), want FailedPrecondition naming %s",
					why, eu.ID(i), describeErr(err), server.ErrorMetadata(err), eu.Node(l).Addr())
			}
		}
		if d, _ := describe(t, eu, l, "app/key"); d.GetPrimaryRegion() != usEast {
			t.Fatalf("%s: the replica was promoted", why)
		}
	}
	promoteNothing("primary healthy")

	rs.Cut(usEast, euWest)
	cut := time.Now()
	unshipped := put(t, us, created.GetArn(), "unshipped")
	// The replication link is cut but us-east-1 is alive in the WAN pool:
	// still reachable, still nothing to promote.
	promoteNothing("link cut, primary alive")
	lost := time.Now()
	for _, i := range us.Running() {
		us.Stop(i)
	}

	// Nothing is promoted while the primary region looks reachable; the
	// dry run lists the replica once it does not, and changes nothing.
	var dry *cofferv1.PromoteRegionResponse
	wait.Until(t, clustertest.ConvergeTimeout, func() error {
		dry, err = eu.Regions(eu.Leader()).PromoteRegion(ctx, &cofferv1.PromoteRegionRequest{Region: euWest, DryRun: true})
		if err != nil {
			return err
		}
		if len(dry.GetPromoted()) != 1 {
			return fmt.Errorf("dry run lists %d replicas", len(dry.GetPromoted()))
		}
		return nil
	})
	if d, _ := describe(t, eu, eu.Leader(), "app/key"); d.GetPrimaryRegion() != usEast {
		t.Fatal("the dry run promoted the replica")
	}
	promoted, err := eu.Regions(eu.Leader()).PromoteRegion(ctx, &cofferv1.PromoteRegionRequest{Region: euWest})
	if err != nil || len(promoted.GetPromoted()) != 1 {
		t.Fatalf("promote: %v %s", promoted, describeErr(err))
	}
	after := put(t, eu, "app/key", "after failover")
	t.Logf("region loss to promoted and writable: %s (link cut %s before the loss)",
		time.Since(lost).Round(time.Millisecond), lost.Sub(cut).Round(time.Millisecond))

	rs.Heal()
	us.RestartStopped()
	wait.Until(t, clustertest.ConvergeTimeout, func() error {
		d, err := describe(t, us, us.Leader(), "app/key")
		if err != nil {
			return err
		}
		if d.GetPrimaryRegion() != euWest {
			return fmt.Errorf("old primary's copy has primary region %s", d.GetPrimaryRegion())
		}
		st := stagesOf(d)
		if st[after] != "AWSCURRENT" || st[unshipped] != "COFFER_DIVERGED_us-east-1" {
			return fmt.Errorf("old primary's labels %v", st)
		}
		return nil
	})
	wantValue(t, us, "app/key", "", "after failover")
	wantValue(t, us, "app/key", "COFFER_DIVERGED_us-east-1", "unshipped")
	bad := "x"
	if _, err := us.Client(0).PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: "app/key", SecretString: &bad, ClientRequestToken: newToken()}); !strings.Contains(fmt.Sprint(err), "region: eu-west-1") {
		t.Fatalf("write to the demoted copy: %s", describeErr(err))
	}
	// The new primary never took the old region's unshipped write.
	if vs, _ := versionIDs(eu, eu.Leader(), "app/key"); slices.Contains(vs, unshipped) {
		t.Fatal("the unshipped write reached the new primary")
	}
}

// TestThreeRegionPromotion: us-east-1 replicates a secret to eu-west-1 and
// ap-south-1 (all three paired) and is lost. Promoting eu-west-1 makes its
// copy the primary replicating to us-east-1 and ap-south-1: ap-south-1's
// replica follows the new primary (its ARN unchanged, the new value
// arrives), us-east-1 converges when it returns, and the new primary's
// feed is trimmed once both acknowledged.
func TestThreeRegionPromotion(t *testing.T) {
	rs := clustertest.StartRegions(t, 3, usEast, euWest, apSout)
	rs.Pair(usEast, euWest)
	rs.Pair(usEast, apSout)
	rs.Pair(euWest, apSout)
	us, eu, ap := rs.Region(usEast), rs.Region(euWest), rs.Region(apSout)
	ctx, cancel := clustertest.RPCContext()
	defer cancel()
	v := "before"
	created, err := us.Client(us.Leader()).CreateSecret(ctx, &cofferv1.CreateSecretRequest{
		Name: "multi", SecretString: &v, ClientRequestToken: newToken(),
		AddReplicaRegions: []*cofferv1.ReplicaRegion{{Region: euWest}, {Region: apSout}},
	})
	if err != nil {
		t.Fatal(describeErr(err))
	}
	arn := created.GetArn()
	waitReplica(t, rs, usEast, euWest, arn)
	waitReplica(t, rs, usEast, apSout, arn)

	for _, i := range us.Running() {
		us.Stop(i)
	}
	wait.Until(t, clustertest.ConvergeTimeout, func() error {
		dry, err := eu.Regions(eu.Leader()).PromoteRegion(ctx, &cofferv1.PromoteRegionRequest{Region: euWest, DryRun: true})
		if err != nil {
			return err
		}
		if len(dry.GetPromoted()) != 1 {
			return fmt.Errorf("dry run lists %d replicas", len(dry.GetPromoted()))
		}
		return nil
	})
	if resp, err := eu.Regions(eu.Leader()).PromoteRegion(ctx, &cofferv1.PromoteRegionRequest{Region: euWest}); err != nil || len(resp.GetPromoted()) != 1 {
		t.Fatalf("promote: %v %s", resp, describeErr(err))
	}
	after := put(t, eu, "multi", "after failover")

	// ap-south-1 follows the new primary.
	wait.Until(t, clustertest.ConvergeTimeout, func() error {
		d, err := describe(t, ap, ap.Leader(), "multi")
		if err != nil {
			return errors.New(describeErr(err))
		}
		if d.GetPrimaryRegion() != euWest || d.GetArn() != storage.WithRegion(arn, apSout) || stagesOf(d)[after] != "AWSCURRENT" {
			return fmt.Errorf("ap-south-1's replica: primary %s, ARN %s, labels %v", d.GetPrimaryRegion(), d.GetArn(), stagesOf(d))
		}
		return nil
	})
	wantValue(t, ap, "multi", "", "after failover")
	if d, _ := describe(t, eu, eu.Leader(), "multi"); len(d.GetReplicationStatus()) != 2 {
		t.Fatalf("the new primary replicates to %d regions, want 2", len(d.GetReplicationStatus()))
	}

	us.RestartStopped()
	wait.Until(t, clustertest.ConvergeTimeout, func() error {
		d, err := describe(t, us, us.Leader(), "multi")
		if err != nil {
			return errors.New(describeErr(err))
		}
		if d.GetPrimaryRegion() != euWest || stagesOf(d)[after] != "AWSCURRENT" {
			return fmt.Errorf("us-east-1's copy: primary %s, labels %v", d.GetPrimaryRegion(), stagesOf(d))
		}
		if n := eu.Node(eu.Leader()).Store().FeedLength(); n != 0 {
			return fmt.Errorf("eu-west-1's feed still holds %d entries", n)
		}
		return nil
	})
	wantValue(t, us, "multi", "", "after failover")
}
