package ops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/storage"
	"github.com/cofferhq/coffer/test/testkit"
	"github.com/cofferhq/coffer/test/testkit/clustertest"
	"github.com/cofferhq/coffer/test/wait"
)

const (
	usEast = "us-east-1"
	euWest = "eu-west-1"
)

// rulesFile is the alert rules shipped in deploy/monitoring, which the
// Prometheus under test loads: a rule it cannot parse fails the start.
const rulesFile = "../../deploy/monitoring/coffer-alerts.yml"

// TestPrometheusScrapesRegions starts Debian's prometheus against two
// paired 3-node regions, runs a workload (writes replicated to the other
// region, reads, a request with a forged signature) and asks Prometheus's
// HTTP API for the request, Raft and replication series. Then it walks
// every node's exposition and fails on any label that carries the
// secret's name or value or a credential.
func TestPrometheusScrapesRegions(t *testing.T) {
	promBin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatalf("Debian's prometheus is needed (scripts/deps.sh installs it): %v", err)
	}
	rs := clustertest.StartRegionsWith(t, 3, []string{usEast, euWest}, withOps())
	rs.Pair(usEast, euWest)
	us, eu := rs.Region(usEast), rs.Region(euWest)

	// The workload. The name and the value are what no label may hold.
	const name, value1, value2 = "payments/stripe-live-key", "sk_live_canary_4242", "sk_live_canary_4343"
	ctx, cancel := clustertest.RPCContext()
	defer cancel()
	v := value1
	created, err := us.Client(us.Leader()).CreateSecret(ctx, &cofferv1.CreateSecretRequest{
		Name: name, SecretString: &v, ClientRequestToken: "token-0000000000000000000000000000001",
		AddReplicaRegions: []*cofferv1.ReplicaRegion{{Region: euWest}},
	})
	if err != nil {
		t.Fatal(err)
	}
	v2 := value2
	if _, err := us.Client(us.Leader()).PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: name, SecretString: &v2,
		ClientRequestToken: "token-0000000000000000000000000000002"}); err != nil {
		t.Fatal(err)
	}
	for i := range us.N() {
		got, err := us.Client(i).GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: name})
		if err != nil || got.GetSecretString() != value2 {
			t.Fatalf("read on node %d: %q %v", i, got.GetSecretString(), err)
		}
	}
	wait.Until(t, clustertest.ConvergeTimeout, func() error {
		ctx, cancel := clustertest.RPCContext()
		defer cancel()
		got, err := eu.Client(eu.Leader()).DescribeSecret(ctx, &cofferv1.DescribeSecretRequest{SecretId: name})
		if err != nil {
			return err
		}
		if got.GetArn() != storage.WithRegion(created.GetArn(), euWest) {
			return fmt.Errorf("replica ARN %s", got.GetArn())
		}
		return nil
	})
	forged := forgedRequest(t, us.Node(0).AWSAddr(), name)
	if forged != http.StatusBadRequest && forged != http.StatusForbidden {
		t.Fatalf("a forged signature was answered %d", forged)
	}

	// Prometheus scrapes every node every second.
	var cfg strings.Builder
	cfg.WriteString("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - " + mustAbs(t, rulesFile) + "\nscrape_configs:\n  - job_name: coffer\n    static_configs:\n")
	for _, region := range []string{usEast, euWest} {
		c := rs.Region(region)
		var targets []string
		for i := range c.N() {
			targets = append(targets, strconv.Quote(c.Node(i).MetricsAddr()))
		}
		fmt.Fprintf(&cfg, "      - targets: [%s]\n        labels: {region: %s}\n", strings.Join(targets, ", "), region)
	}
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	promAddr := testkit.FreeAddr(t)
	pctx, pcancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(pctx, promBin, "--config.file="+cfgPath, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+promAddr, "--log.level=warn")
	var plog strings.Builder
	cmd.Stdout, cmd.Stderr = &plog, &plog
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		pcancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("prometheus log:\n%s", plog.String())
		}
	})
	wait.Until(t, clustertest.ReadyTimeout, func() error {
		resp, err := http.Get("http://" + promAddr + "/-/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("prometheus not ready: %d", resp.StatusCode)
		}
		return nil
	})

	// What an operator's first dashboard asks.
	expect := []struct {
		query string
		check func(r []promSample) error
	}{
		{`sum by (region) (coffer_raft_is_leader)`, perRegion(func(v float64) bool { return v == 1 }, "one leader")},
		{`count by (region) (coffer_raft_has_leader == 1)`, perRegion(func(v float64) bool { return v == 3 }, "3 nodes knowing a leader")},
		{`min by (region) (coffer_raft_term)`, perRegion(func(v float64) bool { return v >= 1 }, "a term")},
		{`sum by (region) (coffer_raft_applied_index)`, perRegion(func(v float64) bool { return v > 0 }, "applied entries")},
		{`sum(coffer_requests_total{region="us-east-1",api="grpc",operation="CreateSecret",code="OK"})`, atLeast(1)},
		{`sum(coffer_requests_total{region="us-east-1",api="grpc",operation="GetSecretValue",code="OK"})`, atLeast(3)},
		{`sum(coffer_request_duration_seconds_count{region="us-east-1",operation="PutSecretValue"})`, atLeast(1)},
		{`sum(coffer_auth_failures_total{region="us-east-1"})`, atLeast(1)},
		{`sum(coffer_raft_commit_duration_seconds_count{region="us-east-1"})`, atLeast(2)},
		{`sum(coffer_disk_log_fsync_duration_seconds_count{region="us-east-1"})`, atLeast(1)},
		{`sum(coffer_replication_shipments_total{region="us-east-1",destination="eu-west-1"})`, atLeast(1)},
		{`max(coffer_replication_last_contact_timestamp_seconds{region="us-east-1",destination="eu-west-1"})`, atLeast(1)},
		{`count(coffer_replication_pending_changes{region="us-east-1",destination="eu-west-1"})`, atLeast(3)},
		{`max(coffer_secrets{region="eu-west-1",state="replica"})`, atLeast(1)},
		{`max(coffer_secrets{region="us-east-1",state="active"})`, atLeast(1)},
	}
	for _, e := range expect {
		wait.Until(t, clustertest.ConvergeTimeout, func() error {
			r, err := promQuery(promAddr, e.query)
			if err != nil {
				return err
			}
			if err := e.check(r); err != nil {
				return fmt.Errorf("%s: %w (got %v)", e.query, err, r)
			}
			return nil
		})
	}

	// Every dashboard query parses and finds series in a live region.
	for _, q := range dashboardQueries(t) {
		if _, err := promQuery(promAddr, q); err != nil {
			t.Errorf("dashboard query: %v", err)
		}
	}

	// No label anywhere carries the secret, its value or a credential.
	forbidden := []string{name, "stripe-live", value1, value2, clustertest.RootSecretAccessKey, clustertest.RootAccessKeyID}
	for _, region := range []string{usEast, euWest} {
		c := rs.Region(region)
		for i := range c.N() {
			fams := scrape(t, c.Node(i).MetricsAddr())
			if leaks := leakingLabels(fams, forbidden); len(leaks) > 0 {
				t.Errorf("%s/%s exposes:\n%s", region, c.ID(i), strings.Join(leaks, "\n"))
			}
			if _, ok := fams["coffer_requests_total"]; !ok && i == us.Leader() {
				t.Errorf("%s/%s: no coffer_requests_total", region, c.ID(i))
			}
		}
	}
}

// forgedRequest sends GetSecretValue with a signature made with a key that
// does not exist, and returns the status.
func forgedRequest(t *testing.T, awsAddr, secret string) int {
	t.Helper()
	body := `{"SecretId":"` + secret + `"}`
	req, _ := http.NewRequest(http.MethodPost, "http://"+awsAddr+"/", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	req.Header.Set("X-Amz-Target", "secretsmanager.GetSecretValue")
	req.Header.Set("X-Amz-Date", time.Now().UTC().Format("20060102T150405Z"))
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKIAFORGED0000000000/"+time.Now().UTC().Format("20060102")+
		"/us-east-1/secretsmanager/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature="+strings.Repeat("ab", 32))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func mustAbs(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(a); err != nil {
		t.Fatal(err)
	}
	return a
}

type promSample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

func (s promSample) float() float64 {
	str, _ := s.Value[1].(string)
	f, _ := strconv.ParseFloat(str, 64)
	return f
}

// promQuery runs an instant query through Prometheus's HTTP API.
func promQuery(addr, q string) ([]promSample, error) {
	resp, err := http.Get("http://" + addr + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []promSample `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, err
	}
	if out.Status != "success" {
		return nil, fmt.Errorf("query %s: %s", q, out.Error)
	}
	return out.Data.Result, nil
}

func atLeast(min float64) func([]promSample) error {
	return func(r []promSample) error {
		if len(r) == 0 {
			return errors.New("no series yet")
		}
		if v := r[0].float(); v < min {
			return fmt.Errorf("%v, want at least %v", v, min)
		}
		return nil
	}
}

func perRegion(ok func(float64) bool, what string) func([]promSample) error {
	return func(r []promSample) error {
		seen := map[string]bool{}
		for _, s := range r {
			if !ok(s.float()) {
				return fmt.Errorf("%s: %v, want %s", s.Metric["region"], s.float(), what)
			}
			seen[s.Metric["region"]] = true
		}
		if !seen[usEast] || !seen[euWest] {
			return fmt.Errorf("regions %v, want both", seen)
		}
		return nil
	}
}

// dashboardQueries are the Grafana dashboard's expressions with its
// variables filled in.
func dashboardQueries(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile("../../deploy/monitoring/coffer-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatal(err)
	}
	fill := strings.NewReplacer("$region", ".*", "$instance", ".*", "$__rate_interval", "1m")
	var out []string
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			out = append(out, fill.Replace(tg.Expr))
		}
	}
	if len(out) < 20 {
		t.Fatalf("the dashboard has %d queries", len(out))
	}
	return out
}
