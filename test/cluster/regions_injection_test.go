package cluster

import (
	"context"
	"fmt"
	"strings"
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
	"github.com/cofferhq/coffer/test/testkit/clustertest"
	"github.com/cofferhq/coffer/test/wait"
)

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
			// An unreplicated primary has no PrimaryRegion, as AWS answers.
			if p := d.GetPrimaryRegion(); d.GetArn() != victim.GetArn() || (p != "" && p != usEast) || len(d.GetVersionIdsToStages()) != 2 {
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
