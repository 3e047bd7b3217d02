package cluster

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server"
	"github.com/cofferhq/coffer/storage"
	"github.com/cofferhq/coffer/test/testkit/clustertest"
	"github.com/cofferhq/coffer/test/wait"
)

const (
	usEast = "us-east-1"
	euWest = "eu-west-1"
	apSout = "ap-south-1"
)

func describe(t *testing.T, c *clustertest.Cluster, i int, id string) (*cofferv1.DescribeSecretResponse, error) {
	t.Helper()
	ctx, cancel := clustertest.RPCContext()
	defer cancel()
	return c.Client(i).DescribeSecret(ctx, &cofferv1.DescribeSecretRequest{SecretId: id})
}

func stagesOf(d *cofferv1.DescribeSecretResponse) map[string]string {
	out := map[string]string{}
	for id, st := range d.GetVersionIdsToStages() {
		l := slices.Clone(st.GetStages())
		slices.Sort(l)
		out[id] = strings.Join(l, ",")
	}
	return out
}

func tagsOf(d *cofferv1.DescribeSecretResponse) map[string]string {
	out := map[string]string{}
	for _, tg := range d.GetTags() {
		out[tg.GetKey()] = tg.GetValue()
	}
	return out
}

// versionIDs lists every version id of a secret, deprecated ones too.
func versionIDs(c *clustertest.Cluster, i int, id string) ([]string, error) {
	ctx, cancel := clustertest.RPCContext()
	defer cancel()
	var out []string
	req := &cofferv1.ListSecretVersionIdsRequest{SecretId: id, IncludeDeprecated: true}
	for {
		resp, err := c.Client(i).ListSecretVersionIds(ctx, req)
		if err != nil {
			return nil, err
		}
		for _, v := range resp.GetVersions() {
			out = append(out, v.GetVersionId())
		}
		if resp.GetNextToken() == "" {
			slices.Sort(out)
			return out, nil
		}
		req.NextToken = resp.GetNextToken()
	}
}

// waitReplica waits until region's replica of the primary secret (ARN
// primaryARN) shows the primary's versions, labels and tags, with the
// replica ARN, on every node of the region.
func waitReplica(t *testing.T, rs *clustertest.RegionSet, primaryRegion, region, primaryARN string) {
	t.Helper()
	p, r := rs.Region(primaryRegion), rs.Region(region)
	wait.Until(t, clustertest.ConvergeTimeout, func() error {
		want, err := describe(t, p, p.Leader(), primaryARN)
		if err != nil {
			return err
		}
		for _, i := range r.Running() {
			got, err := describe(t, r, i, want.GetName())
			if err != nil {
				return fmt.Errorf("%s/%s: %s", region, r.ID(i), describeErr(err))
			}
			switch {
			case got.GetArn() != storage.WithRegion(primaryARN, region):
				return fmt.Errorf("replica ARN %s", got.GetArn())
			case got.GetPrimaryRegion() != primaryRegion:
				return fmt.Errorf("replica primary region %s", got.GetPrimaryRegion())
			case !maps.Equal(stagesOf(got), stagesOf(want)):
				return fmt.Errorf("%s/%s labels %v, primary %v", region, r.ID(i), stagesOf(got), stagesOf(want))
			case !maps.Equal(tagsOf(got), tagsOf(want)):
				return fmt.Errorf("tags %v, primary %v", tagsOf(got), tagsOf(want))
			}
		}
		return nil
	})
}

func wantValue(t *testing.T, c *clustertest.Cluster, id, stage, want string) {
	t.Helper()
	ctx, cancel := clustertest.RPCContext()
	defer cancel()
	got, err := c.Client(c.Leader()).GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: id, VersionStage: stage})
	if err != nil {
		t.Fatalf("GetSecretValue(%s, %s): %s", id, stage, describeErr(err))
	}
	if got.GetSecretString() != want {
		t.Fatalf("GetSecretValue(%s, %s) = %q, want %q", id, stage, got.GetSecretString(), want)
	}
}

func put(t *testing.T, c *clustertest.Cluster, id, value string) string {
	t.Helper()
	ctx, cancel := clustertest.RPCContext()
	defer cancel()
	resp, err := c.Client(c.Leader()).PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: id, SecretString: &value, ClientRequestToken: newToken()})
	if err != nil {
		t.Fatalf("PutSecretValue(%s): %s", id, describeErr(err))
	}
	return resp.GetVersionId()
}

// TestReplicasFollowPrimaryAcrossThreeRegions: a secret created in
// us-east-1 with replicas in two regions is readable in each with the
// replica's ARN and the primary's versions and labels; puts, label moves,
// tags and deletion follow; replicas refuse writes.
func TestReplicasFollowPrimaryAcrossThreeRegions(t *testing.T) {
	rs := clustertest.StartRegions(t, 3, usEast, euWest, apSout)
	rs.Pair(usEast, euWest)
	rs.Pair(usEast, apSout)
	us, eu := rs.Region(usEast), rs.Region(euWest)

	ctx, cancel := clustertest.RPCContext()
	defer cancel()
	v1 := "v1"
	created, err := us.Client(us.Leader()).CreateSecret(ctx, &cofferv1.CreateSecretRequest{
		Name: "db/main", SecretString: &v1, ClientRequestToken: newToken(),
		AddReplicaRegions: []*cofferv1.ReplicaRegion{{Region: euWest}, {Region: apSout}},
	})
	if err != nil {
		t.Fatalf("CreateSecret with replicas: %s", describeErr(err))
	}
	if n := len(created.GetReplicationStatus()); n != 2 {
		t.Fatalf("CreateSecret reports %d replicas, want 2", n)
	}
	arn := created.GetArn()
	for _, r := range []string{euWest, apSout} {
		waitReplica(t, rs, usEast, r, arn)
		wantValue(t, rs.Region(r), "db/main", "", "v1")
	}

	v2 := put(t, us, arn, "v2")
	if _, err := us.Client(us.Leader()).UpdateSecretVersionStage(ctx, &cofferv1.UpdateSecretVersionStageRequest{
		SecretId: arn, VersionStage: "BLUE", MoveToVersionId: created.GetVersionId(),
	}); err != nil {
		t.Fatal(describeErr(err))
	}
	if _, err := us.Client(us.Leader()).TagResource(ctx, &cofferv1.TagResourceRequest{SecretId: arn, Tags: []*cofferv1.Tag{{Key: "team", Value: "payments"}}}); err != nil {
		t.Fatal(describeErr(err))
	}
	for _, r := range []string{euWest, apSout} {
		waitReplica(t, rs, usEast, r, arn)
		wantValue(t, rs.Region(r), "db/main", "", "v2")
		wantValue(t, rs.Region(r), "db/main", "BLUE", "v1")
	}
	// Both replicas were read above: the primary reports them in sync, and
	// the day they were read.
	wait.Until(t, clustertest.ConvergeTimeout, func() error {
		d, err := describe(t, us, us.Leader(), arn)
		if err != nil {
			return err
		}
		for _, st := range d.GetReplicationStatus() {
			if st.GetStatus() != server.ReplicaInSync {
				return fmt.Errorf("replica %s is %s %s", st.GetRegion(), st.GetStatus(), st.GetStatusMessage())
			}
			if st.GetLastAccessedDate() == nil {
				return fmt.Errorf("replica %s has no LastAccessedDate", st.GetRegion())
			}
		}
		return nil
	})

	// A replica refuses writes and names the primary region.
	bad := "x"
	_, err = eu.Client(0).PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: "db/main", SecretString: &bad, ClientRequestToken: newToken()})
	if server.TypeOf(err) != server.TypeInvalidParameter || !strings.Contains(err.Error(), "Call must be made in primary secret's region: us-east-1") {
		t.Fatalf("write to a replica: %s", describeErr(err))
	}
	if vs, _ := versionIDs(eu, 0, "db/main"); !slices.Contains(vs, v2) || len(vs) != 2 {
		t.Fatalf("replica versions %v after a refused write", vs)
	}

	// Deletion follows.
	if _, err := us.Client(us.Leader()).DeleteSecret(ctx, &cofferv1.DeleteSecretRequest{SecretId: arn, ForceDeleteWithoutRecovery: new(true)}); err != nil {
		t.Fatal(describeErr(err))
	}
	for _, r := range []string{euWest, apSout} {
		c := rs.Region(r)
		wait.Until(t, clustertest.ConvergeTimeout, func() error {
			_, err := describe(t, c, c.Leader(), "db/main")
			if server.TypeOf(err) != server.TypeResourceNotFound {
				return fmt.Errorf("%s still has the replica: %s", r, describeErr(err))
			}
			return nil
		})
	}

	t.Run("unpaired and unauthenticated regions cannot inject", func(t *testing.T) {
		testInjectionRefused(t, rs)
	})
	t.Run("a paired region's malformed batch is refused and the region keeps serving", func(t *testing.T) {
		testMalformedBatchRefused(t, rs)
	})
}
