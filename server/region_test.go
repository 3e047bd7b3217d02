package server

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/replication"
	"github.com/cofferhq/coffer/storage"
	"github.com/cofferhq/coffer/test/testkit"
)

// followerReplicator is a direct replicator on a node that does not lead.
type followerReplicator struct{ *testkit.DirectReplicator }

func (followerReplicator) IsLeader() bool { return false }

// shipClock is a clock the replication tests move by hand.
type shipClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *shipClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *shipClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// regionService is a service of region over a fresh store, on clock.
func regionService(tb testing.TB, region string, clock *shipClock, follower bool) (*Service, *storage.Store) {
	tb.Helper()
	store, err := storage.Open(filepath.Join(tb.TempDir(), "state.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = store.Close() })
	root := make([]byte, 32)
	if _, err := rand.Read(root); err != nil {
		tb.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.AccountID, cfg.Region, cfg.Clock = "123456789012", region, clock.Now
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	direct := &testkit.DirectReplicator{Store: store}
	svc, err := New(cfg, direct, store, lockedRoot(tb, root), log)
	if err != nil {
		tb.Fatal(err)
	}
	if err := svc.EnsureKeyring(context.Background()); err != nil {
		tb.Fatal(err)
	}
	if follower { // the same region seen from a node that does not lead
		if svc, err = New(cfg, followerReplicator{direct}, store, lockedRoot(tb, root), log); err != nil {
			tb.Fatal(err)
		}
	}
	return svc, store
}

// pairServices pairs two services' regions both ways (CA and addresses are
// the region API's concern; shipping only needs the public keys).
func pairServices(t *testing.T, a, b *Service) {
	t.Helper()
	for _, p := range [][2]*Service{{a, b}, {b, a}} {
		pub, err := p[1].PairingPublicKey()
		if err != nil {
			t.Fatal(err)
		}
		if err := p[0].PairRegion(context.Background(), &storagev1.RegionPeer{Region: p[1].Region(), PublicKey: pub, Addresses: []string{"127.0.0.1:1"}}); err != nil {
			t.Fatal(err)
		}
	}
}

// link ships from's feed for to's region the way the shipper does and
// records the answer; it returns the change times the batch covered.
func link(t *testing.T, from, to *Service) []time.Time {
	t.Helper()
	ctx := context.Background()
	req, times, err := from.ExportBatch(to.Region(), from.FeedAck(to.Region()), 1024)
	if err != nil {
		t.Fatalf("export to %s: %v", to.Region(), err)
	}
	resp, err := to.ImportBatch(ctx, req)
	if err != nil {
		t.Fatalf("import in %s: %v", to.Region(), err)
	}
	if err := from.AckBatch(ctx, to.Region(), req.GetGeneration(), resp); err != nil {
		t.Fatalf("ack from %s: %v", to.Region(), err)
	}
	return times
}

// TestRestoreShipsToReplicaPastItsDeletionDate: the primary schedules a
// deletion (it ships), then restores the secret while the link is cut; the
// replica region's maintenance runs past the deletion date and must not
// purge the replica on its own clock. When the link heals the replica is
// restored, readable, and the primary reports it InSync, not Failed.
func TestRestoreShipsToReplicaPastItsDeletionDate(t *testing.T) {
	ctx := context.Background()
	clock := &shipClock{now: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
	euClock := &shipClock{now: clock.Now()}
	us, _ := regionService(t, "us-east-1", clock, false)
	eu, _ := regionService(t, "eu-west-1", euClock, false)
	pairServices(t, us, eu)

	val := "v1"
	created, err := us.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: "db", ClientRequestToken: tokA, SecretString: &val,
		AddReplicaRegions: []*cofferv1.ReplicaRegion{{Region: "eu-west-1"}}})
	if err != nil {
		t.Fatal(err)
	}
	link(t, us, eu)
	if _, err := us.DeleteSecret(ctx, &cofferv1.DeleteSecretRequest{SecretId: created.GetArn(), RecoveryWindowInDays: proto.Int64(7)}); err != nil {
		t.Fatal(err)
	}
	link(t, us, eu)
	if d, err := eu.DescribeSecret(ctx, &cofferv1.DescribeSecretRequest{SecretId: "db"}); err != nil || d.GetDeletedDate() == nil {
		t.Fatalf("replica after the scheduled deletion shipped: %v, %v", d, err)
	}

	// Link cut: the restore stays in us-east-1 while eu-west-1's clock
	// passes the deletion date and its maintenance runs.
	clock.Add(24 * time.Hour)
	if _, err := us.RestoreSecret(ctx, &cofferv1.RestoreSecretRequest{SecretId: created.GetArn()}); err != nil {
		t.Fatal(err)
	}
	euClock.Add(8 * 24 * time.Hour)
	if n := eu.PurgeExpired(ctx); n != 0 {
		t.Fatalf("eu-west-1 purged %d replicas on its own clock", n)
	}
	if _, err := eu.DescribeSecret(ctx, &cofferv1.DescribeSecretRequest{SecretId: "db"}); err != nil {
		t.Fatalf("replica gone before the primary decided: %v", err)
	}

	link(t, us, eu) // healed
	d, err := eu.DescribeSecret(ctx, &cofferv1.DescribeSecretRequest{SecretId: "db"})
	if err != nil || d.GetDeletedDate() != nil {
		t.Fatalf("replica after the restore shipped: deleted %v, %v", d.GetDeletedDate(), err)
	}
	got, err := eu.GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: "db"})
	if err != nil || got.GetSecretString() != "v1" {
		t.Fatalf("replica value after the restore: %q, %v", got.GetSecretString(), err)
	}
	pd, err := us.DescribeSecret(ctx, &cofferv1.DescribeSecretRequest{SecretId: created.GetArn()})
	if err != nil {
		t.Fatal(err)
	}
	if st := pd.GetReplicationStatus(); len(st) != 1 || st[0].GetStatus() != ReplicaInSync {
		t.Fatalf("primary's replication status %v", st)
	}
}

// TestImportRefusesForgedBatchBeforeProposing: a paired region's batch
// whose record is named differently from its change (which once
// overwrote the local secret of that name) or whose name cannot be stored
// is refused whole with ErrInvalidShipment, and nothing reaches the log.
func TestImportRefusesForgedBatchBeforeProposing(t *testing.T) {
	ctx := context.Background()
	clock := &shipClock{now: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
	us, _ := regionService(t, "us-east-1", clock, false)
	eu, euStore := regionService(t, "eu-west-1", clock, false)
	pairServices(t, us, eu)
	val := "mine"
	if _, err := eu.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: "victim", ClientRequestToken: tokA, SecretString: &val}); err != nil {
		t.Fatal(err)
	}
	if _, err := us.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: "db", ClientRequestToken: tokB, SecretString: &val,
		AddReplicaRegions: []*cofferv1.ReplicaRegion{{Region: "eu-west-1"}}}); err != nil {
		t.Fatal(err)
	}
	valid, _, err := us.ExportBatch("eu-west-1", 0, 1024)
	if err != nil || len(valid.GetChanges()) != 1 {
		t.Fatalf("export: %v, %v", valid, err)
	}
	for name, edit := range map[string]func(*storagev1.ChangeFeedEntry){
		"record of another secret": func(ch *storagev1.ChangeFeedEntry) { ch.Secret.Name = "victim" },
		"unstorable name": func(ch *storagev1.ChangeFeedEntry) {
			ch.Name = strings.Repeat("x", 40000)
			ch.Secret.Name = ch.Name
		},
	} {
		req := proto.CloneOf(valid)
		edit(req.Changes[0])
		before := euStore.AppliedIndex()
		_, err := eu.ImportBatch(ctx, req)
		if !errors.Is(err, storage.ErrInvalidShipment) {
			t.Fatalf("%s: ImportBatch = %v, want ErrInvalidShipment", name, err)
		}
		if after := euStore.AppliedIndex(); after != before {
			t.Fatalf("%s: a refused batch was proposed (index %d → %d)", name, before, after)
		}
	}
	if _, err := eu.ImportBatch(ctx, valid); err != nil {
		t.Fatalf("the valid batch after the forged ones: %v", err)
	}
	// Still eu-west-1's own, unreplicated secret (AWS omits PrimaryRegion
	// for one).
	if d, err := eu.DescribeSecret(ctx, &cofferv1.DescribeSecretRequest{SecretId: "victim"}); err != nil || d.GetPrimaryRegion() != "" ||
		!strings.Contains(d.GetArn(), ":eu-west-1:") || len(d.GetReplicationStatus()) != 0 {
		t.Fatalf("eu-west-1's own secret: %v, %v", d, err)
	}
}

// TestExportBatchTimesEveryChange: a batch merges a secret's changes into
// one, but reports the command time of each, the oldest included.
func TestExportBatchTimesEveryChange(t *testing.T) {
	ctx := context.Background()
	clock := &shipClock{now: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
	us, _ := regionService(t, "us-east-1", clock, false)
	eu, _ := regionService(t, "eu-west-1", clock, false)
	pairServices(t, us, eu)
	start := clock.Now()
	val := "v"
	created, err := us.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: "db", ClientRequestToken: tokA, SecretString: &val,
		AddReplicaRegions: []*cofferv1.ReplicaRegion{{Region: "eu-west-1"}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{tokB, tokC} {
		clock.Add(time.Second)
		if _, err := us.PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: created.GetArn(), ClientRequestToken: tok, SecretString: &val}); err != nil {
			t.Fatal(err)
		}
	}
	req, times, err := us.ExportBatch("eu-west-1", 0, 1024)
	if err != nil {
		t.Fatal(err)
	}
	if len(req.GetChanges()) != 1 || len(times) != 3 {
		t.Fatalf("batch of %d merged changes with %d times, want 1 and 3", len(req.GetChanges()), len(times))
	}
	if !times[0].Equal(start) || !times[2].Equal(start.Add(2*time.Second)) {
		t.Fatalf("times %v, want from %v to two seconds later", times, start)
	}
}

// TestPromotionReplicatesOnlyToPairedRegions: a replica whose old primary
// also replicated to a region this one is not paired with is promoted
// with the paired regions only (an unpaired region could never be shipped
// to, and its feed entries would never be acknowledged).
func TestPromotionReplicatesOnlyToPairedRegions(t *testing.T) {
	ctx := context.Background()
	clock := &shipClock{now: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
	us, _ := regionService(t, "us-east-1", clock, false)
	eu, euStore := regionService(t, "eu-west-1", clock, false)
	ap, _ := regionService(t, "ap-south-1", clock, false)
	pairServices(t, us, eu)
	pairServices(t, us, ap) // ap-south-1 is paired with us-east-1 only
	val := "v"
	if _, err := us.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: "db", ClientRequestToken: tokA, SecretString: &val,
		AddReplicaRegions: []*cofferv1.ReplicaRegion{{Region: "eu-west-1"}, {Region: "ap-south-1"}}}); err != nil {
		t.Fatal(err)
	}
	link(t, us, eu)
	cands, err := eu.PromoteCandidates(func(string) bool { return false })
	if err != nil || len(cands) != 1 {
		t.Fatalf("candidates %v, %v", cands, err)
	}
	if _, err := eu.PromoteRegionReplicas(ctx, cands); err != nil {
		t.Fatal(err)
	}
	sec, err := euStore.Secret("db")
	if err != nil {
		t.Fatal(err)
	}
	var regions []string
	for _, r := range sec.GetReplicas() {
		regions = append(regions, r.GetRegion())
	}
	if sec.GetReplica() || len(regions) != 1 || regions[0] != "us-east-1" {
		t.Fatalf("promoted secret replicates to %v (replica %v), want [us-east-1]", regions, sec.GetReplica())
	}
	if st, _ := euStore.FeedStatus("ap-south-1"); st.Pending != 0 {
		t.Fatalf("%d changes queued for unpaired ap-south-1", st.Pending)
	}
}

// fakeRegions is the region API's view of replication, fixed by the test.
type fakeRegions struct {
	ca                   []byte
	reachable            map[string]bool
	leaderID, leaderAddr string
}

func (f fakeRegions) LocalCA() []byte              { return f.ca }
func (f fakeRegions) LocalAddresses() []string     { return []string{"127.0.0.1:7401"} }
func (f fakeRegions) WANRegions() []WANRegion      { return nil }
func (f fakeRegions) Reachable(region string) bool { return f.reachable[region] }
func (f fakeRegions) Leader() (id, apiAddr string) { return f.leaderID, f.leaderAddr }

func newCAPEM(t *testing.T, name string) []byte {
	t.Helper()
	ca, err := replication.NewCA(name, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return ca.CertPEM
}

// TestPairRegionPinsTheCA: pairing needs the fingerprint of the peer's CA
// certificate, as its operator read it, and refuses an offer whose CA has
// another one; the fingerprint may be written as openssl prints it.
func TestPairRegionPinsTheCA(t *testing.T) {
	ctx := context.Background()
	clock := &shipClock{now: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
	us, _ := regionService(t, "us-east-1", clock, false)
	api := NewRegionAPI(us, fakeRegions{ca: newCAPEM(t, "us")})
	caEU, caMITM := newCAPEM(t, "eu"), newCAPEM(t, "man in the middle")
	fpEU, err := CAFingerprint(caEU)
	if err != nil {
		t.Fatal(err)
	}
	req := func(ca []byte, fp string) *cofferv1.PairRegionRequest {
		return &cofferv1.PairRegionRequest{PeerCaSha256: fp,
			Peer: &cofferv1.PairingOffer{Region: "eu-west-1", CaPem: ca, PublicKey: make([]byte, 32), Addresses: []string{"127.0.0.1:9"}}}
	}
	for _, c := range []struct {
		name string
		req  *cofferv1.PairRegionRequest
		want string
	}{
		{"no fingerprint", req(caEU, ""), "peer_ca_sha256 is required"},
		{"another CA", req(caMITM, fpEU), "not " + fpEU},
		{"a wrong fingerprint", req(caEU, strings.Repeat("ab", 32)), "refusing to pair with eu-west-1"},
	} {
		_, err := api.PairRegion(ctx, c.req)
		if apiType(err) != TypeInvalidParameter || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("%s: %v; want InvalidParameter mentioning %q", c.name, err, c.want)
		}
		if us.paired("eu-west-1") {
			t.Fatalf("%s: eu-west-1 paired anyway", c.name)
		}
	}
	var colons []string
	for i := 0; i < len(fpEU); i += 2 {
		colons = append(colons, strings.ToUpper(fpEU[i:i+2]))
	}
	if _, err := api.PairRegion(ctx, req(caEU, strings.Join(colons, ":"))); err != nil {
		t.Fatalf("the right fingerprint, as openssl prints it: %v", err)
	}
	if !us.paired("eu-west-1") {
		t.Fatal("eu-west-1 not paired")
	}
}

// TestPairRegionRefusesSharedCA: a peer offering this region's own CA, or
// the CA of another paired region, or this region's name, is refused —
// it could ship as that region. Re-pairing a region with its CA is fine.
func TestPairRegionRefusesSharedCA(t *testing.T) {
	ctx := context.Background()
	clock := &shipClock{now: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
	us, _ := regionService(t, "us-east-1", clock, false)
	own, caEU, caAP := newCAPEM(t, "us"), newCAPEM(t, "eu"), newCAPEM(t, "ap")
	api := NewRegionAPI(us, fakeRegions{ca: own})
	key := make([]byte, 32)
	offer := func(region string, ca []byte) *cofferv1.PairRegionRequest {
		fp, err := CAFingerprint(ca)
		if err != nil {
			t.Fatal(err)
		}
		return &cofferv1.PairRegionRequest{Peer: &cofferv1.PairingOffer{Region: region, CaPem: ca, PublicKey: key, Addresses: []string{"127.0.0.1:9"}},
			PeerCaSha256: fp}
	}
	refused := func(req *cofferv1.PairRegionRequest, want string) {
		t.Helper()
		_, err := api.PairRegion(ctx, req)
		if apiType(err) != TypeInvalidParameter || !strings.Contains(err.Error(), want) {
			t.Fatalf("pairing %s: %v, want InvalidParameter mentioning %q", req.GetPeer().GetRegion(), err, want)
		}
	}
	refused(offer("eu-west-1", own), "this region's own CA")
	refused(offer("us-east-1", caEU), "itself")
	if _, err := api.PairRegion(ctx, offer("eu-west-1", caEU)); err != nil {
		t.Fatal(err)
	}
	refused(offer("ap-south-1", caEU), "paired region eu-west-1")
	if _, err := api.PairRegion(ctx, offer("eu-west-1", caEU)); err != nil {
		t.Fatalf("re-pairing eu-west-1 with its own CA: %v", err)
	}
	if _, err := api.PairRegion(ctx, offer("ap-south-1", caAP)); err != nil {
		t.Fatal(err)
	}

	// Unpairing forgets the region; a second time it is not paired.
	resp, err := api.UnpairRegion(ctx, &cofferv1.UnpairRegionRequest{Region: "ap-south-1"})
	if err != nil || resp.GetDroppedChanges() != 0 || resp.GetFailedSecrets() != 0 {
		t.Fatalf("unpair: %v, %v", resp, err)
	}
	if us.paired("ap-south-1") {
		t.Fatal("ap-south-1 still paired")
	}
	if _, err := api.UnpairRegion(ctx, &cofferv1.UnpairRegionRequest{Region: "ap-south-1"}); apiType(err) != TypeResourceNotFound {
		t.Fatalf("unpairing an unpaired region: %v", err)
	}
}

// TestRegionViewIsTheLeaders: on a follower, PromoteRegion (dry run too)
// and ListRegions refuse with FailedPrecondition naming the leader's API
// address, and promote nothing: only the leader ships, so only its view
// of which regions are reachable counts.
func TestRegionViewIsTheLeaders(t *testing.T) {
	ctx := context.Background()
	clock := &shipClock{now: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
	eu, euStore := regionService(t, "eu-west-1", clock, true)
	// A replica of a us-east-1 secret, applied as a shipment would be.
	if _, err := eu.propose(ctx, &raftv1.Command{Op: &raftv1.Command_PairRegion{PairRegion: &raftv1.PairRegion{Peer: &storagev1.RegionPeer{Region: "us-east-1"}}}}); err != nil {
		t.Fatal(err)
	}
	arn := "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf"
	if _, err := eu.propose(ctx, &raftv1.Command{Op: &raftv1.Command_ApplyReplicaChanges{ApplyReplicaChanges: &raftv1.ApplyReplicaChanges{
		SourceRegion: "us-east-1", Region: "eu-west-1", ThroughSeq: 1,
		Changes: []*storagev1.ChangeFeedEntry{{Seq: 1, Name: "db", Arn: arn, Secret: &storagev1.Secret{Name: "db", Arn: arn, PrimaryRegion: "us-east-1"}}},
	}}}); err != nil {
		t.Fatal(err)
	}
	// This follower's own (stale) view calls us-east-1 unreachable.
	api := NewRegionAPI(eu, fakeRegions{reachable: map[string]bool{}, leaderID: "n1", leaderAddr: "10.0.0.1:7400"})
	for _, dry := range []bool{true, false} {
		_, err := api.PromoteRegion(ctx, &cofferv1.PromoteRegionRequest{Region: "eu-west-1", DryRun: dry})
		if status.Code(err) != codes.FailedPrecondition || ErrorMetadata(err)[MetaLeaderAPIAddress] != "10.0.0.1:7400" {
			t.Fatalf("promote (dry run %v) on a follower: %v (metadata %v)", dry, err, ErrorMetadata(err))
		}
	}
	if _, err := api.ListRegions(ctx, &cofferv1.ListRegionsRequest{}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("list on a follower: %v", err)
	}
	if sec, err := euStore.Secret("db"); err != nil || !sec.GetReplica() {
		t.Fatalf("replica after promotion was asked of a follower: %v, %v", sec, err)
	}
	// With no leader known, the answer is to retry.
	api = NewRegionAPI(eu, fakeRegions{})
	if _, err := api.PromoteRegion(ctx, &cofferv1.PromoteRegionRequest{Region: "eu-west-1"}); status.Code(err) != codes.Unavailable {
		t.Fatalf("promote with no leader: %v", err)
	}
}
