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

// shipAs sends req to node i of region to over its region replication
// port, presenting the cluster certificate of region from's first node.
func shipAs(from, to *clustertest.Cluster, i int, req *replicationv1.ShipRequest) error {
	cfg := from.Member(0).TLS.RegionClientConfig(nil)
	cfg.InsecureSkipVerify = true // the sender does not care who answers
	cc, err := grpc.NewClient(to.Member(i).Ports.Region, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		return err
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = replicationv1.NewRegionReplicationServiceClient(cc).Ship(ctx, req)
	return err
}

// testMalformedBatchRefused: ap-south-1 is paired with us-east-1, so its
// batches pass authentication there; batches whose entries are forged or
// malformed (a record named after another secret, which once overwrote
// us-east-1's own secret; an empty name and a name bbolt cannot store,
// which once panicked every node on apply and again on replay) are refused
// with InvalidArgument, nothing is proposed, and every node keeps serving
// reads and writes.
func testMalformedBatchRefused(t *testing.T, rs *clustertest.RegionSet) {
	us, ap := rs.Region(usEast), rs.Region(apSout)
	ctx, cancel := clustertest.RPCContext()
	defer cancel()
	mine := "us-east-1's own"
	victim, err := us.Client(us.Leader()).CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: "victim", SecretString: &mine, ClientRequestToken: newToken()})
	if err != nil {
		t.Fatal(describeErr(err))
	}
	arnIn := func(name string) string {
		return "arn:aws:secretsmanager:ap-south-1:123456789012:secret:" + name + "-AAAAAA"
	}
	entry := func(name, recordName string) *storagev1.ChangeFeedEntry {
		return &storagev1.ChangeFeedEntry{Seq: 1 << 40, Name: name, Arn: arnIn(name), Destinations: []string{usEast},
			Secret: &storagev1.Secret{Name: recordName, Arn: arnIn(name), PrimaryRegion: apSout}}
	}
	long := strings.Repeat("x", 40000)
	for what, ch := range map[string]*storagev1.ChangeFeedEntry{
		"record named after a local secret": entry("innocent", "victim"),
		"empty name":                        entry("", ""),
		"name bbolt cannot store":           entry(long, long),
	} {
		for _, i := range us.Running() {
			err := shipAs(ap, us, i, &replicationv1.ShipRequest{SourceRegion: apSout, DestinationRegion: usEast, ThroughSeq: 1 << 40,
				Changes: []*storagev1.ChangeFeedEntry{ch}})
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "Refused a batch") {
				t.Fatalf("%s shipped to %s: %v, want InvalidArgument", what, us.ID(i), err)
			}
		}
	}
	// Every node is up and answers; a write commits on all of them.
	if n := len(us.Running()); n != us.N() {
		t.Fatalf("%d of %d us-east-1 nodes running after the malformed batches", n, us.N())
	}
	after := "still writable"
	if _, err := us.Client(us.Leader()).PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: victim.GetArn(), SecretString: &after, ClientRequestToken: newToken()}); err != nil {
		t.Fatalf("write after the malformed batches: %s", describeErr(err))
	}
	for _, i := range us.Running() {
		wait.Until(t, clustertest.ConvergeTimeout, func() error {
			d, err := describe(t, us, i, "victim")
			if err != nil {
				return fmt.Errorf("%s: %s", us.ID(i), describeErr(err))
			}
			if d.GetArn() != victim.GetArn() || d.GetPrimaryRegion() != usEast || len(d.GetVersionIdsToStages()) != 2 {
				return fmt.Errorf("%s: victim is %s (primary %s, %d versions)", us.ID(i), d.GetArn(), d.GetPrimaryRegion(), len(d.GetVersionIdsToStages()))
			}
			return nil
		})
	}
	if pos := us.Node(us.Leader()).Store().ReplicaPosition(apSout); pos != 0 {
		t.Fatalf("us-east-1's position from ap-south-1 is %d after refused batches", pos)
	}
	wantValue(t, us, "victim", "", after)
}

// testInjectionRefused: eu-west-1 and ap-south-1 are not paired. The API
// refuses to replicate between them, and a batch shipped straight to a
// region port by an unpaired region, by a paired region claiming to be
// another, or with no client certificate, is refused and changes nothing.
func testInjectionRefused(t *testing.T, rs *clustertest.RegionSet) {
	eu, ap, us := rs.Region(euWest), rs.Region(apSout), rs.Region(usEast)
	ctx, cancel := clustertest.RPCContext()
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
	ship := func(cert *replication.ClusterTLS, withCert bool, to *clustertest.Cluster) error {
		cfg := cert.RegionClientConfig(nil)
		cfg.InsecureSkipVerify = true // the attacker does not care who answers
		if !withCert {
			cfg.Certificates = nil
		}
		cc, err := grpc.NewClient(to.Member(0).Ports.Region, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
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
	if err := ship(ap.Member(0).TLS, true, eu); err == nil || status.Code(err) != codes.Unavailable {
		t.Fatalf("unpaired region's batch: %v", err)
	}
	// No client certificate at all.
	if err := ship(ap.Member(0).TLS, false, eu); err == nil {
		t.Fatal("a batch without a client certificate was accepted")
	}
	// ap-south-1 is paired with us-east-1, but claims to ship for eu-west-1.
	forged.SourceRegion, forged.DestinationRegion = euWest, usEast
	forged.Changes[0].Secret.PrimaryRegion = euWest
	if err := ship(ap.Member(0).TLS, true, us); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("batch under another region's name: %v", err)
	}
	for _, c := range []*clustertest.Cluster{eu, us} {
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
