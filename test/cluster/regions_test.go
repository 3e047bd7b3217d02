package cluster

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	replicationv1 "github.com/cofferhq/coffer/proto/coffer/replication/v1"
	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/replication"
	"github.com/cofferhq/coffer/server"
	"github.com/cofferhq/coffer/server/node"
	"github.com/cofferhq/coffer/storage"
)

const (
	usEast = "us-east-1"
	euWest = "eu-west-1"
	apSout = "ap-south-1"
)

func describe(t *testing.T, c *Cluster, i int, id string) (*cofferv1.DescribeSecretResponse, error) {
	t.Helper()
	ctx, cancel := rpcContext()
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
func versionIDs(c *Cluster, i int, id string) ([]string, error) {
	ctx, cancel := rpcContext()
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
func waitReplica(t *testing.T, rs *RegionSet, primaryRegion, region, primaryARN string) {
	t.Helper()
	p, r := rs.Region(primaryRegion), rs.Region(region)
	waitFor(t, convergeTimeout, func() error {
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

func wantValue(t *testing.T, c *Cluster, id, stage, want string) {
	t.Helper()
	ctx, cancel := rpcContext()
	defer cancel()
	got, err := c.Client(c.Leader()).GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: id, VersionStage: stage})
	if err != nil {
		t.Fatalf("GetSecretValue(%s, %s): %s", id, stage, describeErr(err))
	}
	if got.GetSecretString() != want {
		t.Fatalf("GetSecretValue(%s, %s) = %q, want %q", id, stage, got.GetSecretString(), want)
	}
}

func put(t *testing.T, c *Cluster, id, value string) string {
	t.Helper()
	ctx, cancel := rpcContext()
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
	rs := StartRegions(t, 3, usEast, euWest, apSout)
	rs.Pair(usEast, euWest)
	rs.Pair(usEast, apSout)
	us, eu := rs.Region(usEast), rs.Region(euWest)

	ctx, cancel := rpcContext()
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
	waitFor(t, convergeTimeout, func() error {
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
		waitFor(t, convergeTimeout, func() error {
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
}

// testInjectionRefused: eu-west-1 and ap-south-1 are not paired. The API
// refuses to replicate between them, and a batch shipped straight to a
// region port by an unpaired region, by a paired region claiming to be
// another, or with no client certificate, is refused and changes nothing.
func testInjectionRefused(t *testing.T, rs *RegionSet) {
	eu, ap, us := rs.Region(euWest), rs.Region(apSout), rs.Region(usEast)
	ctx, cancel := rpcContext()
	defer cancel()
	v := "eu"
	if _, err := eu.Client(eu.Leader()).CreateSecret(ctx, &cofferv1.CreateSecretRequest{
		Name: "eu-only", SecretString: &v, ClientRequestToken: newToken(), AddReplicaRegions: []*cofferv1.ReplicaRegion{{Region: apSout}},
	}); server.TypeOf(err) != server.TypeInvalidParameter || !strings.Contains(err.Error(), "not paired") {
		t.Fatalf("replicating to an unpaired region: %s", describeErr(err))
	}

	forged := &replicationv1.ShipRequest{SourceRegion: usEast, DestinationRegion: euWest, ThroughSeq: 1 << 40, Changes: []*storagev1.ChangeFeedEntry{{
		Seq: 1 << 40, Name: "injected", Arn: "arn:aws:secretsmanager:us-east-1:123456789012:secret:injected-AAAAAA",
		Destinations: []string{euWest},
		Secret:       &storagev1.Secret{Name: "injected", Arn: "arn:aws:secretsmanager:us-east-1:123456789012:secret:injected-AAAAAA", PrimaryRegion: usEast},
	}}}
	ship := func(cert *replication.ClusterTLS, withCert bool, to *Cluster) error {
		cfg := cert.RegionClientConfig(nil)
		cfg.InsecureSkipVerify = true // the attacker does not care who answers
		if !withCert {
			cfg.Certificates = nil
		}
		cc, err := grpc.NewClient(to.members[0].regionAddr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			return err
		}
		defer cc.Close()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err = replicationv1.NewRegionReplicationServiceClient(cc).Ship(sctx, forged)
		return err
	}
	// ap-south-1 is not paired with eu-west-1: the handshake fails.
	if err := ship(ap.members[0].tls, true, eu); err == nil || status.Code(err) != codes.Unavailable {
		t.Fatalf("unpaired region's batch: %v", err)
	}
	// No client certificate at all.
	if err := ship(ap.members[0].tls, false, eu); err == nil {
		t.Fatal("a batch without a client certificate was accepted")
	}
	// ap-south-1 is paired with us-east-1, but claims to ship for eu-west-1.
	forged.SourceRegion, forged.DestinationRegion = euWest, usEast
	forged.Changes[0].Secret.PrimaryRegion = euWest
	if err := ship(ap.members[0].tls, true, us); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("batch under another region's name: %v", err)
	}
	for _, c := range []*Cluster{eu, us} {
		if _, err := describe(t, c, c.Leader(), "injected"); server.TypeOf(err) != server.TypeResourceNotFound {
			t.Fatalf("injected secret visible: %s", describeErr(err))
		}
	}
}

// writer puts values into a secret in the background, recording every
// version the primary acknowledged.
type writer struct {
	mu    sync.Mutex
	acked []string
	stop  chan struct{}
	done  chan struct{}
}

func startWriter(t *testing.T, c *Cluster, id string, every time.Duration) *writer {
	w := &writer{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for n := 0; ; n++ {
			select {
			case <-w.stop:
				return
			case <-time.After(every):
			}
			l := c.currentLeader()
			if l < 0 {
				continue
			}
			nd := c.Node(l)
			if nd == nil {
				continue
			}
			ctx, cancel := rpcContext()
			v := fmt.Sprintf("value-%d", n)
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

func (w *writer) halt() []string {
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.acked)
}

func (w *writer) waitMore(t *testing.T, n int) {
	t.Helper()
	target := w.count() + n
	waitFor(t, convergeTimeout, func() error {
		if got := w.count(); got < target {
			return fmt.Errorf("%d writes acknowledged, want %d", got, target)
		}
		return nil
	})
}

// TestReplicaConvergesAfterPartitionAndLeaderLoss: under a write load,
// cut the link between the regions and heal it, then kill the primary
// region's leader: the replica ends with exactly the primary's versions —
// none missing, none twice — and the feed is trimmed.
func TestReplicaConvergesAfterPartitionAndLeaderLoss(t *testing.T) {
	rs := StartRegions(t, 3, usEast, euWest)
	rs.Pair(usEast, euWest)
	us, eu := rs.Region(usEast), rs.Region(euWest)
	ctx, cancel := rpcContext()
	defer cancel()
	v := "seed"
	created, err := us.Client(us.Leader()).CreateSecret(ctx, &cofferv1.CreateSecretRequest{
		Name: "load", SecretString: &v, ClientRequestToken: newToken(), AddReplicaRegions: []*cofferv1.ReplicaRegion{{Region: euWest}},
	})
	if err != nil {
		t.Fatal(describeErr(err))
	}
	waitReplica(t, rs, usEast, euWest, created.GetArn())

	w := startWriter(t, us, created.GetArn(), 20*time.Millisecond)
	w.waitMore(t, 5)
	rs.Cut(usEast, euWest)
	w.waitMore(t, 15)
	rs.Heal()
	w.waitMore(t, 5)
	old := us.Leader()
	us.Stop(old) // the leader dies mid-stream
	w.waitMore(t, 10)
	acked := w.halt()
	if len(acked) > 90 {
		t.Fatalf("%d writes: too many for the 100-version limit this test relies on", len(acked))
	}
	us.Restart(old)

	waitReplica(t, rs, usEast, euWest, created.GetArn())
	waitFor(t, convergeTimeout, func() error {
		want, err := versionIDs(us, us.Leader(), created.GetArn())
		if err != nil {
			return err
		}
		got, err := versionIDs(eu, eu.Leader(), "load")
		if err != nil {
			return err
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("replica has %d versions, primary %d", len(got), len(want))
		}
		if len(slices.Compact(slices.Clone(got))) != len(got) {
			return errors.New("a version is listed twice")
		}
		for _, id := range acked {
			if !slices.Contains(got, id) {
				return fmt.Errorf("acknowledged version %s missing on the replica", id)
			}
		}
		if n := us.Node(us.Leader()).Store().FeedLength(); n != 0 {
			return fmt.Errorf("the primary's feed still holds %d entries", n)
		}
		return nil
	})
	t.Logf("%d writes, link cut and healed, leader %s killed: replica converged", len(acked), us.ID(old))
}

// restartAll starts every stopped node of c at once (a region coming back
// needs a quorum before any node is ready) and waits until they serve.
func restartAll(t *testing.T, c *Cluster) {
	t.Helper()
	var started []*node.Node
	for i := range c.members {
		if c.Node(i) != nil {
			continue
		}
		nd, err := node.Start(c.options(i))
		if err != nil {
			t.Fatalf("restart %s: %v", c.ID(i), err)
		}
		c.mu.Lock()
		c.members[i].node = nd
		c.mu.Unlock()
		started = append(started, nd)
	}
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	for _, nd := range started {
		if err := nd.WaitReady(ctx); err != nil {
			t.Fatalf("restarted node never became ready: %v", err)
		}
	}
}

// TestFailoverDrill: the primary region is lost with a write it never
// shipped; the replica region is promoted and takes writes; when the old
// region returns it becomes a replica of the new primary and keeps its
// unshipped write under COFFER_DIVERGED_us-east-1.
func TestFailoverDrill(t *testing.T) {
	rs := StartRegions(t, 3, usEast, euWest)
	rs.Pair(usEast, euWest)
	us, eu := rs.Region(usEast), rs.Region(euWest)
	ctx, cancel := rpcContext()
	defer cancel()
	v := "before"
	created, err := us.Client(us.Leader()).CreateSecret(ctx, &cofferv1.CreateSecretRequest{
		Name: "app/key", SecretString: &v, ClientRequestToken: newToken(), AddReplicaRegions: []*cofferv1.ReplicaRegion{{Region: euWest}},
	})
	if err != nil {
		t.Fatal(describeErr(err))
	}
	waitReplica(t, rs, usEast, euWest, created.GetArn())

	rs.Cut(usEast, euWest)
	cut := time.Now()
	unshipped := put(t, us, created.GetArn(), "unshipped")
	lost := time.Now()
	for _, i := range us.Running() {
		us.Stop(i)
	}

	// Nothing is promoted while the primary region looks reachable; the
	// dry run lists the replica once it does not, and changes nothing.
	var dry *cofferv1.PromoteRegionResponse
	waitFor(t, convergeTimeout, func() error {
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
	restartAll(t, us)
	waitFor(t, convergeTimeout, func() error {
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
