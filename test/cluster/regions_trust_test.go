package cluster

import (
	"fmt"
	"strings"
	"testing"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server"
	"github.com/cofferhq/coffer/storage"
	"github.com/cofferhq/coffer/test/testkit/clustertest"
	"github.com/cofferhq/coffer/test/wait"
)

// currentValue is id's AWSCURRENT value on node i of c, or "" and the error.
func currentValue(c *clustertest.Cluster, i int, id string) (string, error) {
	ctx, cancel := clustertest.RPCContext()
	defer cancel()
	got, err := c.Client(i).GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: id})
	if err != nil {
		return "", err
	}
	return got.GetSecretString(), nil
}

// replicaStatus is the primary's ReplicationStatus entry for region.
func replicaStatus(t *testing.T, c *clustertest.Cluster, id, region string) (*cofferv1.ReplicationStatus, error) {
	t.Helper()
	d, err := describe(t, c, c.Leader(), id)
	if err != nil {
		return nil, err
	}
	for _, st := range d.GetReplicationStatus() {
		if st.GetRegion() == region {
			return st, nil
		}
	}
	return nil, fmt.Errorf("%s lists no replica in %s", id, region)
}

// TestForcedOverwriteNeedsDestinationConsent (issue 13, item 1): a caller in
// us-east-1 asks for a replica of prod/db in eu-west-1 with
// ForceOverwriteReplicaSecret, where prod/db is eu-west-1's own primary.
// eu-west-1 never agreed (accept_overwrite is off by default): its secret
// stays, and us-east-1's replica status is Failed with the reason. Once
// eu-west-1 consents (SetPairingOptions) a new request replaces it.
func TestForcedOverwriteNeedsDestinationConsent(t *testing.T) {
	rs := clustertest.StartRegions(t, 1, usEast, euWest)
	rs.Pair(usEast, euWest)
	us, eu := rs.Region(usEast), rs.Region(euWest)
	ctx, cancel := clustertest.RPCContext()
	defer cancel()

	own, theirs := "eu-own", "us-value"
	euSecret, err := eu.Client(0).CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: "prod/db", SecretString: &own, ClientRequestToken: newToken()})
	if err != nil {
		t.Fatal(describeErr(err))
	}
	created, err := us.Client(0).CreateSecret(ctx, &cofferv1.CreateSecretRequest{
		Name: "prod/db", SecretString: &theirs, ClientRequestToken: newToken(),
		AddReplicaRegions: []*cofferv1.ReplicaRegion{{Region: euWest}}, ForceOverwriteReplicaSecret: true,
	})
	if err != nil {
		t.Fatal(describeErr(err))
	}
	wait.Until(t, clustertest.ConvergeTimeout, func() error {
		st, err := replicaStatus(t, us, created.GetArn(), euWest)
		if err != nil {
			return err
		}
		if st.GetStatus() != server.ReplicaFailed || !strings.Contains(st.GetStatusMessage(), "accept_overwrite") {
			return fmt.Errorf("replica in %s is %s %q, want Failed naming accept_overwrite", euWest, st.GetStatus(), st.GetStatusMessage())
		}
		return nil
	})
	d, err := describe(t, eu, 0, "prod/db")
	if err != nil {
		t.Fatal(describeErr(err))
	}
	// A secret without replicas has no PrimaryRegion (as AWS answers); a
	// replica would name us-east-1.
	if p := d.GetPrimaryRegion(); d.GetArn() != euSecret.GetArn() || (p != "" && p != euWest) {
		t.Fatalf("eu-west-1's own prod/db became %s (primary region %s) without its consent", d.GetArn(), d.GetPrimaryRegion())
	}
	if v, err := currentValue(eu, 0, "prod/db"); err != nil || v != own {
		t.Fatalf("eu-west-1's prod/db = %q, %v; want its own value", v, err)
	}

	// eu-west-1 consents; the request is made again and replaces it.
	if _, err := eu.Regions(0).SetPairingOptions(ctx, &cofferv1.SetPairingOptionsRequest{Region: usEast, AcceptOverwrite: true}); err != nil {
		t.Fatal(describeErr(err))
	}
	if _, err := us.Client(0).RemoveRegionsFromReplication(ctx, &cofferv1.RemoveRegionsFromReplicationRequest{SecretId: created.GetArn(), RemoveReplicaRegions: []string{euWest}}); err != nil {
		t.Fatal(describeErr(err))
	}
	if _, err := us.Client(0).ReplicateSecretToRegions(ctx, &cofferv1.ReplicateSecretToRegionsRequest{
		SecretId: created.GetArn(), AddReplicaRegions: []*cofferv1.ReplicaRegion{{Region: euWest}}, ForceOverwriteReplicaSecret: true,
	}); err != nil {
		t.Fatal(describeErr(err))
	}
	waitReplica(t, rs, usEast, euWest, created.GetArn())
	if v, err := currentValue(eu, 0, "prod/db"); err != nil || v != theirs {
		t.Fatalf("after consent eu-west-1's prod/db = %q, %v; want the primary's", v, err)
	}
}

// TestRestoredPrimaryKeepsReplicating (issue 13, item 2) is the runbook of
// docs/OPERATIONS.md: the primary region restores yesterday's backup while
// its replica region holds newer state. Changes made after the restore
// must reach the replica, the primary must not report the replica InSync
// while it is behind, and the replica converges to the primary's exact
// versions. Then the replica region restores an old backup of its own, and
// converges again.
func TestRestoredPrimaryKeepsReplicating(t *testing.T) {
	rs := clustertest.StartRegions(t, 1, usEast, euWest)
	rs.Pair(usEast, euWest)
	us, eu := rs.Region(usEast), rs.Region(euWest)
	ctx, cancel := clustertest.RPCContext()
	defer cancel()

	v1 := "v1"
	created, err := us.Client(0).CreateSecret(ctx, &cofferv1.CreateSecretRequest{
		Name: "app/db", SecretString: &v1, ClientRequestToken: newToken(),
		AddReplicaRegions: []*cofferv1.ReplicaRegion{{Region: euWest}},
	})
	if err != nil {
		t.Fatal(describeErr(err))
	}
	arn := created.GetArn()
	waitReplica(t, rs, usEast, euWest, arn)
	yesterday := saveSnapshot(t, us, 0)
	euYesterday := saveSnapshot(t, eu, 0)

	// Today's changes reach the replica: it is ahead of yesterday's feed.
	for _, v := range []string{"v2", "v3", "v4"} {
		put(t, us, arn, v)
	}
	today, err := us.Client(0).CreateSecret(ctx, &cofferv1.CreateSecretRequest{
		Name: "app/today", SecretString: &v1, ClientRequestToken: newToken(),
		AddReplicaRegions: []*cofferv1.ReplicaRegion{{Region: euWest}},
	})
	if err != nil {
		t.Fatal(describeErr(err))
	}
	waitReplica(t, rs, usEast, euWest, arn)
	waitReplica(t, rs, usEast, euWest, today.GetArn())

	if err := restoreSnapshot(t, us, 0, yesterday); err != nil {
		t.Fatalf("restore us-east-1: %s", describeErr(err))
	}
	wait.Until(t, clustertest.ConvergeTimeout, func() error {
		v, err := currentValue(us, 0, arn)
		if err != nil || v != "v1" {
			return fmt.Errorf("us-east-1 after the restore: %q, %v", v, err)
		}
		return nil
	})
	put(t, us, arn, "after-restore")
	// Never InSync while the replica lacks the change; then converged.
	wait.Until(t, clustertest.ConvergeTimeout, func() error {
		st, err := replicaStatus(t, us, arn, euWest)
		if err != nil {
			return err
		}
		v, err := currentValue(eu, 0, "app/db")
		if err != nil {
			return err
		}
		if st.GetStatus() == server.ReplicaInSync && v != "after-restore" {
			t.Fatalf("us-east-1 reports its replica InSync while eu-west-1 reads %q", v)
		}
		if v != "after-restore" || st.GetStatus() != server.ReplicaInSync {
			return fmt.Errorf("replica reads %q, status %s %s", v, st.GetStatus(), st.GetStatusMessage())
		}
		return nil
	})
	waitExactVersions(t, us, eu, arn)
	// app/today is not in the restored state: its replica goes too.
	wait.Until(t, clustertest.ConvergeTimeout, func() error {
		if _, err := describe(t, eu, 0, "app/today"); server.TypeOf(err) != server.TypeResourceNotFound {
			return fmt.Errorf("eu-west-1 still has app/today, which us-east-1 restored away: %s", describeErr(err))
		}
		return nil
	})

	// The replica region restores its own old backup: it then holds
	// yesterday's copy and positions of a feed that moved on.
	if err := restoreSnapshot(t, eu, 0, euYesterday); err != nil {
		t.Fatalf("restore eu-west-1: %s", describeErr(err))
	}
	put(t, us, arn, "after-both")
	wait.Until(t, clustertest.ConvergeTimeout, func() error {
		if v, err := currentValue(eu, 0, "app/db"); err != nil || v != "after-both" {
			return fmt.Errorf("eu-west-1 reads %q, %v", v, err)
		}
		return nil
	})
	waitExactVersions(t, us, eu, arn)
}

// waitExactVersions waits until the replica in eu holds exactly the
// primary's versions and labels.
func waitExactVersions(t *testing.T, us, eu *clustertest.Cluster, arn string) {
	t.Helper()
	wait.Until(t, clustertest.ConvergeTimeout, func() error {
		want, err := versionIDs(us, 0, arn)
		if err != nil {
			return err
		}
		got, err := versionIDs(eu, 0, storage.WithRegion(arn, euWest))
		if err != nil {
			return err
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			return fmt.Errorf("replica versions %v, primary %v", got, want)
		}
		pd, err := describe(t, us, 0, arn)
		if err != nil {
			return err
		}
		rd, err := describe(t, eu, 0, "app/db")
		if err != nil {
			return err
		}
		if fmt.Sprint(stagesOf(pd)) != fmt.Sprint(stagesOf(rd)) {
			return fmt.Errorf("replica labels %v, primary %v", stagesOf(rd), stagesOf(pd))
		}
		return nil
	})
}
