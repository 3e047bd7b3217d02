package ops

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cofferhq/coffer/node"
	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/replication"
	"github.com/cofferhq/coffer/storage"
	"github.com/cofferhq/coffer/test/testkit/clustertest"
	"github.com/cofferhq/coffer/test/wait"
)

// sysHealth is node i's /v1/sys/health code on the metrics listener, with
// query q.
func sysHealth(t *testing.T, c *clustertest.Cluster, i int, q string) int {
	t.Helper()
	code, _ := get(t, http.MethodGet, "http://"+c.Node(i).MetricsAddr()+"/v1/sys/health"+q)
	return code
}

func waitCode(t *testing.T, c *clustertest.Cluster, i int, path string, want int) string {
	t.Helper()
	var body string
	wait.Until(t, clustertest.ConvergeTimeout, func() error {
		var code int
		code, body = get(t, http.MethodGet, "http://"+c.Node(i).MetricsAddr()+path)
		if code != want {
			return fmt.Errorf("%s on %s: %d %q, want %d", path, c.ID(i), code, body, want)
		}
		return nil
	})
	return body
}

// TestHealthEndpoints: on a healthy region the leader answers
// /v1/sys/health 200 and followers 429 (both overridable, HEAD too) and
// /readyz passes with every check listed under ?verbose, on the metrics and
// the AWS listener alike. A partitioned leader's side knows no leader (474,
// /readyz failing its leader check) while the majority elects one; after
// healing, a region that lost two of three nodes leaves the last one
// leaderless. A node fenced by a consistency check answers 503.
func TestHealthEndpoints(t *testing.T) {
	c := clustertest.Start(t, 3, withOps(), clustertest.WithRaft(func(rc *replication.Config) { rc.ConsistencyCheckInterval = checkInterval }))
	leader := c.Leader()
	for i := range c.N() {
		want := http.StatusTooManyRequests
		if i == leader {
			want = http.StatusOK
		}
		if got := sysHealth(t, c, i, ""); got != want {
			t.Fatalf("sys/health on %s: %d, want %d", c.ID(i), got, want)
		}
		if code, body := get(t, http.MethodHead, "http://"+c.Node(i).MetricsAddr()+"/v1/sys/health"); code != want || body != "" {
			t.Fatalf("HEAD sys/health on %s: %d %q", c.ID(i), code, body)
		}
		if code, body := get(t, http.MethodGet, "http://"+c.Node(i).AWSAddr()+"/readyz"); code != http.StatusOK || body != "ok\n" {
			t.Fatalf("readyz on the AWS listener of %s: %d %q", c.ID(i), code, body)
		}
		if code, body := get(t, http.MethodGet, "http://"+c.Node(i).AWSAddr()+"/livez"); code != http.StatusOK || body != "ok\n" {
			t.Fatalf("livez on %s: %d %q", c.ID(i), code, body)
		}
	}
	follower := c.Others(leader)[0]
	if got := sysHealth(t, c, follower, "?standbyok=true"); got != http.StatusOK {
		t.Errorf("standbyok on a follower: %d", got)
	}
	if got := sysHealth(t, c, follower, "?standbycode=204"); got != http.StatusNoContent {
		t.Errorf("standbycode=204 on a follower: %d", got)
	}
	if got := sysHealth(t, c, leader, "?activecode=299"); got != 299 {
		t.Errorf("activecode=299 on the leader: %d", got)
	}
	_, body := get(t, http.MethodGet, "http://"+c.Node(leader).MetricsAddr()+"/readyz?verbose")
	for _, check := range []string{"[+]started ok", "[+]leader ok", "[+]applied ok", "[+]audit ok", "[+]not_fenced ok", "readyz check passed"} {
		if !strings.Contains(body, check) {
			t.Errorf("readyz?verbose lacks %q:\n%s", check, body)
		}
	}

	// Partition the leader from the others.
	others := c.Others(leader)
	c.Net.Partition([]int{leader}, others)
	waitCode(t, c, leader, "/v1/sys/health", 474)
	body = waitCode(t, c, leader, "/readyz?verbose", http.StatusServiceUnavailable)
	if !strings.Contains(body, "[-]leader failed: no leader known") {
		t.Errorf("partitioned readyz:\n%s", body)
	}
	// Excluding the failing check passes, and says so.
	if code, body := get(t, http.MethodGet, "http://"+c.Node(leader).MetricsAddr()+"/readyz?verbose&exclude=leader&exclude=nosuch"); code != http.StatusOK ||
		!strings.Contains(body, "[+]leader excluded: ok") || !strings.Contains(body, `no matches for "nosuch"`) {
		t.Errorf("readyz excluding leader while partitioned: %d\n%s", code, body)
	}
	newLeader := c.WaitLeader(others...)
	waitCode(t, c, newLeader, "/v1/sys/health", http.StatusOK)
	c.Net.Heal()
	for i := range c.N() {
		waitCode(t, c, i, "/readyz", http.StatusOK)
	}

	// Fence a follower: a write applied only there makes it diverge.
	leader = c.Leader()
	odd := slices.DeleteFunc(c.Others(leader), func(i int) bool { return i == 0 })[0]
	ctx, cancel := clustertest.RPCContext()
	defer cancel()
	v := "v"
	if _, err := c.Client(leader).CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: "app/db", SecretString: &v,
		ClientRequestToken: "token-0000000000000000000000000000009"}); err != nil {
		t.Fatal(err)
	}
	store := c.Node(odd).Store()
	rogue := &raftv1.Command{Header: &raftv1.Header{Time: timestamppb.Now()}, Op: &raftv1.Command_CreateSecret{CreateSecret: &raftv1.CreateSecret{
		Name: "rogue", Arn: storage.SecretARN("aws", clustertest.DefaultRegion, clustertest.Account, "rogue", "RoGuE1"), PrimaryRegion: clustertest.DefaultRegion,
	}}}
	wait.Until(t, clustertest.ConvergeTimeout, func() error {
		if res := store.Apply(store.AppliedIndex()+1, rogue); res.Skipped || res.Err != nil {
			return fmt.Errorf("the rogue write was skipped or failed: %+v", res)
		}
		return nil
	})
	wait.Until(t, clustertest.ConvergeTimeout, func() error {
		if c.Node(odd).Raft().Diverged() == nil {
			return errors.New("not fenced yet")
		}
		return nil
	})
	body = waitCode(t, c, odd, "/readyz?verbose", http.StatusServiceUnavailable)
	if !strings.Contains(body, "[-]not_fenced failed") {
		t.Errorf("fenced readyz:\n%s", body)
	}
	waitCode(t, c, odd, "/v1/sys/health", http.StatusServiceUnavailable)

	// Lose the leader and the fenced node: the last, healthy node knows no
	// leader.
	last := c.Others(leader, odd)[0]
	c.Stop(odd)
	c.Stop(leader)
	waitCode(t, c, last, "/v1/sys/health", 474)
	body = waitCode(t, c, last, "/readyz?verbose", http.StatusServiceUnavailable)
	if !strings.Contains(body, "[-]leader failed: no leader known") || !strings.Contains(body, "[+]not_fenced ok") {
		t.Errorf("leaderless readyz:\n%s", body)
	}
}

// checkInterval makes consistency checks frequent enough for the fencing
// case.
const checkInterval = 300 * time.Millisecond

// TestReadyzBrokenAuditLog: a node whose audit log cannot be written
// refuses requests, and says so on /readyz (503, audit failed) and
// /v1/sys/health (503).
func TestReadyzBrokenAuditLog(t *testing.T) {
	dir := t.TempDir()
	var auditPath string
	c := clustertest.Start(t, 1, withOps(), clustertest.WithNode(func(o *node.Options) {
		auditPath = filepath.Join(dir, "audit.log")
		o.AuditPath = auditPath
	}))
	waitCode(t, c, 0, "/readyz", http.StatusOK)
	if err := os.Remove(auditPath); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(auditPath, 0o700); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := clustertest.RPCContext()
	defer cancel()
	if _, err := c.Client(0).ListSecrets(ctx, &cofferv1.ListSecretsRequest{}); err == nil {
		t.Fatal("a request was served with an unwritable audit log")
	}
	body := waitCode(t, c, 0, "/readyz?verbose", http.StatusServiceUnavailable)
	if !strings.Contains(body, "[-]audit failed: the audit log cannot be written") || strings.Contains(body, dir) {
		t.Errorf("readyz with a broken audit log:\n%s", body)
	}
	if got := sysHealth(t, c, 0, ""); got != http.StatusServiceUnavailable {
		t.Errorf("sys/health with a broken audit log: %d", got)
	}
	fams := scrape(t, c.Node(0).MetricsAddr())
	if v, _ := value(fams, "coffer_audit_write_failures_total", nil); v < 1 {
		t.Errorf("coffer_audit_write_failures_total %v", v)
	}
}
