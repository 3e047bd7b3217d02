package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cofferhq/coffer/failover"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server"
	"github.com/cofferhq/coffer/test/testkit/clustertest"
	"github.com/cofferhq/coffer/test/wait"
)

// Failover transitions on two in-process regions, each with a concurrent
// writer: fence and unfence, switchover both ways, failover and failback
// with diverged versions listed and resolved, and coffer drill itself.

// asRegion is a failover.Region reaching c's leader; a follower's referral
// to the leader is followed through c's own connections.
func asRegion(c *clustertest.Cluster, name string) failover.Region {
	return failover.Region{Name: name, Conn: c.Conn(c.Leader()), Dial: func(addr string) (grpc.ClientConnInterface, error) {
		for _, i := range c.Running() {
			if c.Node(i).Addr() == addr {
				return struct{ grpc.ClientConnInterface }{c.Conn(i)}, nil // not closed by the caller
			}
		}
		return nil, fmt.Errorf("no node at %s", addr)
	}}
}

// acked is one acknowledged write of the test writer.
type acked struct{ secret, version, region string }

// drillWriter writes to its secrets round robin, in the region target names,
// until stopped, and keeps every acknowledged write and every refusal.
type drillWriter struct {
	mu      sync.Mutex
	target  string
	clients map[string]cofferv1.SecretsManagerServiceClient
	acks    []acked
	refused map[string]int // AWS error type → count
	samples map[string]string
	stop    chan struct{}
	done    chan struct{}
}

func startDrillWriter(t *testing.T, secrets []string, target string, clients map[string]cofferv1.SecretsManagerServiceClient) *drillWriter {
	w := &drillWriter{target: target, clients: clients, refused: map[string]int{}, samples: map[string]string{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for i := 0; ; i++ {
			select {
			case <-w.stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			name := secrets[i%len(secrets)]
			tok, v := newToken(), fmt.Sprintf("write %d", i)
			w.mu.Lock()
			region := w.target
			w.mu.Unlock()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			resp, err := w.clients[region].PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: name, SecretString: &v, ClientRequestToken: tok})
			cancel()
			w.mu.Lock()
			if err == nil {
				w.acks = append(w.acks, acked{name, resp.GetVersionId(), region})
			} else {
				typ := server.TypeOf(err)
				w.refused[typ]++
				w.samples[typ] = status.Convert(err).Message()
			}
			w.mu.Unlock()
		}
	}()
	return w
}

func (w *drillWriter) retarget(region string) {
	w.mu.Lock()
	w.target = region
	w.mu.Unlock()
}

func (w *drillWriter) count(region string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, a := range w.acks {
		if a.region == region {
			n++
		}
	}
	return n
}

// waitWrites waits until the writer has n more acknowledged writes in region.
func (w *drillWriter) waitWrites(t *testing.T, region string, n int) {
	t.Helper()
	base := w.count(region)
	wait.Until(t, clustertest.ConvergeTimeout, func() error {
		if got := w.count(region) - base; got < n {
			return fmt.Errorf("%d of %d writes acknowledged in %s", got, n, region)
		}
		return nil
	})
}

func (w *drillWriter) halt() []acked {
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.acks)
}

// allVersions maps each version id of a secret in c (deprecated included)
// to its labels.
func allVersions(t *testing.T, c *clustertest.Cluster, id string) map[string][]string {
	t.Helper()
	ctx, cancel := clustertest.RPCContext()
	defer cancel()
	out := map[string][]string{}
	req := &cofferv1.ListSecretVersionIdsRequest{SecretId: id, IncludeDeprecated: true}
	for {
		resp, err := c.Client(c.Leader()).ListSecretVersionIds(ctx, req)
		if err != nil {
			t.Fatalf("versions of %s: %s", id, describeErr(err))
		}
		for _, v := range resp.GetVersions() {
			out[v.GetVersionId()] = append([]string{}, v.GetVersionStages()...) // non-nil: present
		}
		if resp.GetNextToken() == "" {
			return out
		}
		req.NextToken = resp.GetNextToken()
	}
}

// replicatedSecrets creates n secrets in primary replicated to replica
// and waits for their replicas.
func replicatedSecrets(t *testing.T, rs *clustertest.RegionSet, primary, replica string, n int) []string {
	t.Helper()
	c := rs.Region(primary)
	ctx, cancel := clustertest.RPCContext()
	defer cancel()
	var names []string
	for i := range n {
		v := "first"
		name := fmt.Sprintf("drill/s%d", i)
		resp, err := c.Client(c.Leader()).CreateSecret(ctx, &cofferv1.CreateSecretRequest{
			Name: name, SecretString: &v, ClientRequestToken: newToken(), AddReplicaRegions: []*cofferv1.ReplicaRegion{{Region: replica}},
		})
		if err != nil {
			t.Fatal(describeErr(err))
		}
		waitReplica(t, rs, primary, replica, resp.GetArn())
		names = append(names, name)
	}
	return names
}

func twoRegions(t *testing.T) (*clustertest.RegionSet, *clustertest.Cluster, *clustertest.Cluster) {
	rs := clustertest.StartRegions(t, 1, usEast, euWest)
	rs.Pair(usEast, euWest)
	return rs, rs.Region(usEast), rs.Region(euWest)
}

func clientsOf(us, eu *clustertest.Cluster) map[string]cofferv1.SecretsManagerServiceClient {
	return map[string]cofferv1.SecretsManagerServiceClient{usEast: us.Client(us.Leader()), euWest: eu.Client(eu.Leader())}
}

// TestFenceRefusesWritesUntilLifted: a fenced region refuses writes to its
// primary secrets and new secrets with a retryable ServiceUnavailable,
// reports the fence (who, why, what was unshipped), keeps replicating what
// it accepted, and takes writes again once unfenced.
func TestFenceRefusesWritesUntilLifted(t *testing.T) {
	rs, us, eu := twoRegions(t)
	names := replicatedSecrets(t, rs, usEast, euWest, 2)
	w := startDrillWriter(t, names, usEast, clientsOf(us, eu))
	w.waitWrites(t, usEast, 20)
	ctx, cancel := clustertest.RPCContext()
	defer cancel()

	if _, err := us.Regions(0).FenceRegion(ctx, &cofferv1.FenceRegionRequest{Region: euWest}); server.TypeOf(err) != server.TypeInvalidParameter {
		t.Fatalf("fencing another region here: %s", describeErr(err))
	}
	fenced, err := us.Regions(0).FenceRegion(ctx, &cofferv1.FenceRegionRequest{Region: usEast, Reason: "drill"})
	if err != nil {
		t.Fatal(describeErr(err))
	}
	st := fenced.GetStatus()
	if !st.GetFenced() || st.GetFenceReason() != "drill" || !strings.HasSuffix(st.GetFencedBy(), ":user/root") || st.GetPrimarySecrets() != 2 {
		t.Fatalf("status after fence: %v", st)
	}
	before := w.count(usEast)
	v := "x"
	_, err = us.Client(0).PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: names[0], SecretString: &v, ClientRequestToken: newToken()})
	if server.TypeOf(err) != server.TypeServiceUnavailable || status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "fenced (drill)") {
		t.Fatalf("write in a fenced region: %s", describeErr(err))
	}
	_, err = us.Client(0).CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: "new", SecretString: &v, ClientRequestToken: newToken()})
	if server.TypeOf(err) != server.TypeServiceUnavailable {
		t.Fatalf("create in a fenced region: %s", describeErr(err))
	}
	// The writer meets the fence too before it stops; everything it
	// acknowledged still reaches the replica region.
	wait.True(t, clustertest.ConvergeTimeout, "the writer to be refused by the fence", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.refused[server.TypeServiceUnavailable] > 0
	})
	acks := w.halt()
	if got := len(acks); got > before+1 {
		t.Fatalf("%d writes acknowledged after the fence (at most the one in flight)", got-before)
	}
	wait.Until(t, clustertest.ConvergeTimeout, func() error {
		for _, name := range names {
			have := allVersions(t, eu, name)
			for _, a := range acks {
				if a.secret == name && have[a.version] == nil {
					d, _ := describe(t, us, 0, name)
					return fmt.Errorf("%s version %s acknowledged in %s not in %s (us has it: %v; us %d versions, eu %d; replication %v)",
						name, a.version, usEast, euWest, allVersions(t, us, name)[a.version] != nil, len(allVersions(t, us, name)), len(have), d.GetReplicationStatus())
				}
			}
		}
		return nil
	})
	if s, _ := us.Regions(0).GetFailoverStatus(ctx, &cofferv1.GetFailoverStatusRequest{}); s.GetStatus().GetPending()[0].GetPendingChanges() != 0 {
		t.Fatalf("a fenced region stopped shipping: %v", s.GetStatus().GetPending())
	}

	if _, err := us.Regions(0).UnfenceRegion(ctx, &cofferv1.UnfenceRegionRequest{Region: usEast}); err != nil {
		t.Fatal(describeErr(err))
	}
	put(t, us, names[0], "after unfence")
}

// TestSwitchoverBothWaysLosesNoWrite: a writer keeps writing through two
// switchovers (us → eu → us), moving to the new primary when the old one
// refuses; every acknowledged write is in the final primary, no version
// diverged, and the refusals during the hand-over were retryable and named
// the new primary.
func TestSwitchoverBothWaysLosesNoWrite(t *testing.T) {
	rs, us, eu := twoRegions(t)
	names := replicatedSecrets(t, rs, usEast, euWest, 3)
	w := startDrillWriter(t, names, usEast, clientsOf(us, eu))
	w.waitWrites(t, usEast, 20)
	ctx, cancel := context.WithTimeout(context.Background(), 2*clustertest.ConvergeTimeout)
	defer cancel()
	var steps []string
	progress := func(_ time.Time, s string) { steps = append(steps, s) }

	res, err := failover.Switchover(ctx, asRegion(us, usEast), asRegion(eu, euWest), progress)
	if err != nil {
		t.Fatalf("switchover us → eu: %v\n%s", err, strings.Join(steps, "\n"))
	}
	if res.Promoted != 3 || len(res.Moved) != 3 {
		t.Fatalf("switchover moved %v, promoted %d", res.Moved, res.Promoted)
	}
	for _, name := range names {
		if d, _ := describe(t, us, 0, name); d.GetPrimaryRegion() != euWest {
			t.Fatalf("%s in us after switchover: primary %s", name, d.GetPrimaryRegion())
		}
	}
	// Every write us acknowledged is in eu now.
	for _, a := range w.halt() {
		if allVersions(t, eu, a.secret)[a.version] == nil {
			t.Fatalf("%s version %s acknowledged in %s is not in %s after the switchover", a.secret, a.version, a.region, euWest)
		}
	}
	w2 := startDrillWriter(t, names, euWest, clientsOf(us, eu))
	w2.waitWrites(t, euWest, 20)
	// Retarget as soon as us takes writes back (the switchover reports the
	// promotion); until then, refusals from eu say whom to call.
	back := func(at time.Time, step string) {
		progress(at, step)
		if strings.HasPrefix(step, usEast+" promoted ") {
			w2.retarget(usEast)
		}
	}
	if _, err := failover.Switchover(ctx, asRegion(eu, euWest), asRegion(us, usEast), back); err != nil {
		t.Fatalf("switchover eu → us: %v\n%s", err, strings.Join(steps, "\n"))
	}
	w2.waitWrites(t, usEast, 20)
	acks := w2.halt()
	for _, a := range acks {
		if allVersions(t, us, a.secret)[a.version] == nil {
			t.Fatalf("%s version %s acknowledged in %s is not in %s after switching back", a.secret, a.version, a.region, usEast)
		}
	}
	w2.mu.Lock()
	for typ, msg := range w2.samples {
		if typ != server.TypeServiceUnavailable && typ != server.TypeInvalidParameter {
			t.Errorf("writer refused with %s: %s", typ, msg)
		}
		if typ == server.TypeServiceUnavailable && !strings.Contains(msg, "handed over to region us-east-1") {
			t.Errorf("hand-over refusal does not name the new primary: %s", msg)
		}
	}
	t.Logf("writer: %d acknowledged, refusals %v", len(acks), w2.refused)
	w2.mu.Unlock()
	for _, c := range []*clustertest.Cluster{us, eu} {
		d, err := c.Regions(0).ListDivergedVersions(ctx, &cofferv1.ListDivergedVersionsRequest{})
		if err != nil || len(d.GetSecrets()) != 0 {
			t.Fatalf("diverged after switchovers: %v %s", d, describeErr(err))
		}
	}
	// Both regions hold the same versions.
	wait.Until(t, clustertest.ConvergeTimeout, func() error {
		for _, name := range names {
			a, b := allVersions(t, us, name), allVersions(t, eu, name)
			if !maps.EqualFunc(a, b, slices.Equal) {
				return fmt.Errorf("%s: us %d versions, eu %d", name, len(a), len(b))
			}
		}
		return nil
	})
	t.Logf("steps:\n%s", strings.Join(steps, "\n"))
}

// TestFailoverThenFailbackOnlyListedVersionsDiffer: us keeps taking writes
// after its link to eu is cut; eu is promoted; once the link heals us is
// eu's replica, and the versions us holds beyond eu's are exactly those it
// lists as diverged. A replica refuses to resolve them; after failback us
// adopts one and discards another, and eu follows.
func TestFailoverThenFailbackOnlyListedVersionsDiffer(t *testing.T) {
	rs, us, eu := twoRegions(t)
	names := replicatedSecrets(t, rs, usEast, euWest, 2)
	w := startDrillWriter(t, names, usEast, clientsOf(us, eu))
	w.waitWrites(t, usEast, 10)
	rs.Cut(usEast, euWest)
	w.waitWrites(t, usEast, 10) // these never ship
	ctx, cancel := clustertest.RPCContext()
	defer cancel()
	promoted, err := eu.Regions(0).PromoteRegion(ctx, &cofferv1.PromoteRegionRequest{Region: euWest, FromRegion: usEast, Planned: true})
	if err != nil || len(promoted.GetPromoted()) != 2 {
		t.Fatalf("promote eu: %v %s", promoted, describeErr(err))
	}
	w.retarget(euWest)
	w.waitWrites(t, euWest, 10)
	acks := w.halt()
	rs.Heal()

	var diverged *cofferv1.ListDivergedVersionsResponse
	wait.Until(t, clustertest.ConvergeTimeout, func() error {
		for _, name := range names {
			if d, err := describe(t, us, 0, name); err != nil || d.GetPrimaryRegion() != euWest {
				return fmt.Errorf("%s in us not yet eu's replica", name)
			}
		}
		if diverged, err = us.Regions(0).ListDivergedVersions(ctx, &cofferv1.ListDivergedVersionsRequest{NamePrefix: "drill/"}); err != nil {
			return err
		}
		// Only the versions listed differ, and nothing acknowledged is lost.
		for _, name := range names {
			have, theirs := allVersions(t, us, name), allVersions(t, eu, name)
			listed := map[string]bool{}
			for _, s := range diverged.GetSecrets() {
				if s.GetName() == name {
					for _, v := range s.GetVersions() {
						listed[v.GetVersionId()] = true
					}
				}
			}
			for id := range have {
				if theirs[id] == nil && !listed[id] {
					return fmt.Errorf("%s version %s only in us and not listed as diverged", name, id)
				}
			}
			for id := range theirs {
				if have[id] == nil {
					return fmt.Errorf("%s version %s of eu not in us yet", name, id)
				}
			}
			for id := range listed {
				if theirs[id] != nil {
					return fmt.Errorf("%s version %s listed as diverged but eu has it", name, id)
				}
			}
			for _, a := range acks {
				if a.secret == name && have[a.version] == nil {
					return fmt.Errorf("%s version %s acknowledged in %s is gone", name, a.version, a.region)
				}
			}
		}
		return nil
	})
	if len(diverged.GetSecrets()) != 2 {
		t.Fatalf("diverged listing: %v", diverged)
	}
	pick := func(i int) (string, string) {
		s := diverged.GetSecrets()[i]
		return s.GetName(), s.GetVersions()[0].GetVersionId()
	}
	n0, v0 := pick(0)
	n1, v1 := pick(1)
	_, err = us.Regions(0).ResolveDivergedVersion(ctx, &cofferv1.ResolveDivergedVersionRequest{SecretId: n0, VersionId: v0, Adopt: true})
	if server.TypeOf(err) != server.TypeInvalidRequest || !strings.Contains(err.Error(), "replica of eu-west-1") {
		t.Fatalf("resolving in the replica region: %s", describeErr(err))
	}

	fctx, fcancel := context.WithTimeout(context.Background(), 2*clustertest.ConvergeTimeout)
	defer fcancel()
	if _, err := failover.Failback(fctx, asRegion(eu, euWest), asRegion(us, usEast), nil); err != nil {
		t.Fatalf("failback: %v", err)
	}
	if _, err := us.Regions(0).ResolveDivergedVersion(ctx, &cofferv1.ResolveDivergedVersionRequest{SecretId: n0, VersionId: v0, Adopt: true}); err != nil {
		t.Fatalf("adopt: %s", describeErr(err))
	}
	if _, err := us.Regions(0).ResolveDivergedVersion(ctx, &cofferv1.ResolveDivergedVersionRequest{SecretId: n1, VersionId: v1}); err != nil {
		t.Fatalf("discard: %s", describeErr(err))
	}
	wait.Until(t, clustertest.ConvergeTimeout, func() error {
		if st := allVersions(t, eu, n0)[v0]; !slices.Contains(st, "AWSCURRENT") {
			return fmt.Errorf("adopted %s/%s in eu: labels %v", n0, v0, st)
		}
		if _, ok := allVersions(t, eu, n1)[v1]; ok {
			return fmt.Errorf("discarded %s/%s still in eu", n1, v1)
		}
		return nil
	})
}

// TestDrillCommand runs the coffer binary's drill against two in-process
// regions in both modes and checks the reports: PASS, RTO within the
// bound, RPO 0 for the switchover, every canary write accounted for and
// the canaries gone; a watched real secret is back in its primary.
func TestDrillCommand(t *testing.T) {
	rs, us, eu := twoRegions(t)
	replicatedSecrets(t, rs, usEast, euWest, 1)
	bin := filepath.Join(t.TempDir(), "coffer")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/cofferhq/coffer/cmd/coffer").CombinedOutput(); err != nil {
		t.Fatalf("go build coffer: %v\n%s", err, out)
	}
	for _, mode := range []string{failover.ModeSwitchover, failover.ModeFailover} {
		t.Run(mode, func(t *testing.T) {
			md := filepath.Join(t.TempDir(), "drill.md")
			maxRPO := "0"
			if mode == failover.ModeFailover {
				maxRPO = "-1"
			}
			cmd := exec.Command(bin, "drill", "--endpoint", us.Node(us.Leader()).Addr(), "--primary", usEast, "--secondary", euWest,
				"--secondary-endpoint", eu.Node(eu.Leader()).Addr(), "--mode", mode, "--secrets", "drill/", "--canary", "3",
				"--report", md, "--json", "--max-rto", "30s", "--max-rpo", maxRPO)
			cmd.Env = append(os.Environ(), "COFFER_ACCESS_KEY_ID="+clustertest.RootAccessKeyID, "COFFER_SECRET_ACCESS_KEY="+clustertest.RootSecretAccessKey)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("coffer drill --mode %s: %v\nstdout:\n%s\nstderr:\n%s", mode, err, out, stderr.String())
			}
			var rep failover.Report
			if err := json.Unmarshal(out, &rep); err != nil {
				t.Fatalf("report: %v\n%s", err, out)
			}
			c := rep.Canaries
			switch {
			case rep.Verdict != "PASS":
				t.Fatalf("verdict %s: %s", rep.Verdict, out)
			case rep.RTOMillis <= 0 || rep.RTOMillis > 30000 || rep.FailbackRTOMillis <= 0 || rep.FailbackRTOMillis > 30000:
				t.Fatalf("RTO %dms, failback %dms", rep.RTOMillis, rep.FailbackRTOMillis)
			case mode == failover.ModeSwitchover && (rep.RPO.Changes != 0 || len(rep.RPO.LostWrites) != 0):
				t.Fatalf("switchover RPO %+v", rep.RPO)
			case c.Acknowledged == 0 || c.Accounted != c.Acknowledged || len(c.Unaccounted) != 0 || !c.CleanedUp:
				t.Fatalf("canaries %+v", c)
			case c.ByRegion[euWest] == 0 || c.ByRegion[usEast] == 0:
				t.Fatalf("canary writes by region %v: both regions must have taken writes", c.ByRegion)
			case len(rep.Watched) != 1 || rep.Watched[0].Problem != "":
				t.Fatalf("watched %+v", rep.Watched)
			case rep.SecretsMoved < 4 || rep.SecretsMovedBack < 4:
				t.Fatalf("moved %d, back %d", rep.SecretsMoved, rep.SecretsMovedBack)
			}
			for _, l := range rep.RPO.LostWrites {
				if !l.DivergedAfterFailback {
					t.Fatalf("lost write %+v not listed as diverged", l)
				}
			}
			b, err := os.ReadFile(md)
			if err != nil || !strings.Contains(string(b), "**Verdict: PASS**") || !strings.Contains(string(b), "## Timeline") {
				t.Fatalf("markdown report: %v\n%s", err, b)
			}
			if !strings.Contains(stderr.String(), "RTO: canary writes succeed in eu-west-1") {
				t.Fatalf("no progress on stderr:\n%s", stderr.String())
			}
			t.Logf("%s: RTO %dms, failback RTO %dms, RPO %d, %d canary writes\n%s", mode, rep.RTOMillis, rep.FailbackRTOMillis, rep.RPO.Changes, c.Acknowledged, b)
		})
	}
}
