package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cofferhq/coffer/node"
	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/replication"
	"github.com/cofferhq/coffer/server"
	"github.com/cofferhq/coffer/storage"
	"github.com/cofferhq/coffer/test/testkit/clustertest"
	"github.com/cofferhq/coffer/test/wait"
)

// checkInterval is how often the leader checks consistency in these tests.
const checkInterval = 300 * time.Millisecond

// TestDivergenceIsDetected reproduces issue 12's silent divergence by
// hand: a follower applies a command at the next index on its own, as a
// node of a merged region had (the entry its leader then sends for that
// index is skipped as already applied). Both nodes have applied the same
// index, with different states. The leader's periodic check finds it: the
// follower is marked diverged, cluster status shows it, it refuses reads
// and health says NOT_SERVING, while the others serve. Wiping its data
// directory resyncs it, and an operator's check then passes and finds
// nothing marked.
func TestDivergenceIsDetected(t *testing.T) {
	c := clustertest.Start(t, 3, clustertest.WithRaft(func(rc *replication.Config) { rc.ConsistencyCheckInterval = checkInterval }),
		clustertest.WithNode(func(o *node.Options) { o.AWSAddr = "127.0.0.1:0" }))
	leader := c.Leader()
	createSecret(t, c, leader, "app/db", "v1")
	report := checkConsistency(t, c, leader)
	if !report.GetConsistent() || len(report.GetServers()) != 3 {
		t.Fatalf("a healthy region's check: %v", report)
	}

	// The odd node out: a follower that is not node 0 (node 0 bootstraps
	// the region again when it starts with an empty data directory).
	odd := slices.DeleteFunc(c.Others(leader), func(i int) bool { return i == 0 })[0]
	store := c.Node(odd).Store()
	rogue := &raftv1.Command{Header: &raftv1.Header{Time: timestamppb.Now()}, Op: &raftv1.Command_CreateSecret{CreateSecret: &raftv1.CreateSecret{
		Name: "rogue", Arn: storage.SecretARN("aws", clustertest.DefaultRegion, clustertest.Account, "rogue", "RoGuE1"), PrimaryRegion: clustertest.DefaultRegion,
	}}}
	wait.Until(t, clustertest.ConvergeTimeout, func() error {
		// Raft may apply the next index first; then take the one after.
		if res := store.Apply(store.AppliedIndex()+1, rogue); res.Skipped || res.Err != nil {
			return fmt.Errorf("the rogue write was skipped or failed: %+v", res)
		}
		return nil
	})

	wait.Until(t, clustertest.ConvergeTimeout, func() error {
		if c.Node(odd).Raft().Diverged() == nil {
			return errors.New("the odd node is not marked diverged yet")
		}
		return nil
	})
	d := c.Node(odd).Raft().Diverged()
	if d.LeaderID != c.ID(c.Leader()) || d.Hash == d.MajorityHash {
		t.Errorf("divergence %+v", d)
	}
	for _, i := range c.Others(odd) {
		if c.Node(i).Raft().Diverged() != nil {
			t.Errorf("%s is marked diverged too", c.ID(i))
		}
	}
	if _, err := os.Stat(filepath.Join(c.Member(odd).DataDir, "diverged")); err != nil {
		t.Errorf("no marker in the odd node's data directory: %v", err)
	}

	// Cluster status, asked anywhere, shows it.
	for _, i := range []int{leader, odd} {
		ctx, cancel := clustertest.RPCContext()
		st, err := c.Admin(i).ClusterStatus(ctx, &cofferv1.ClusterStatusRequest{})
		cancel()
		if err != nil {
			t.Fatalf("status on %s: %v", c.ID(i), err)
		}
		for _, s := range st.GetServers() {
			if want := s.GetNodeId() == c.ID(odd); s.GetDiverged() != want || (s.GetHealth() == "diverged") != want {
				t.Errorf("status on %s: %s diverged %v health %q", c.ID(i), s.GetNodeId(), s.GetDiverged(), s.GetHealth())
			}
		}
	}

	// It refuses reads, stale ones too, with the reason; the others serve.
	for _, md := range [][]string{nil, clustertest.StaleRead(0)} {
		ctx, cancel := clustertest.RPCContext(md...)
		_, err := c.Client(odd).GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: "app/db"})
		cancel()
		if server.TypeOf(err) != server.TypeServiceUnavailable || !strings.Contains(err.Error(), "diverged") {
			t.Errorf("read on the diverged node: %s, want ServiceUnavailable naming the divergence", describeErr(err))
		}
	}
	if got := healthOf(t, c.Member(odd).Ports.GRPC); got != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("the diverged node's health is %v, want NOT_SERVING", got)
	}
	// The AWS API too, before it looks at the (unsigned) request.
	req, err := http.NewRequest(http.MethodPost, "http://"+c.Node(odd).AWSAddr()+"/", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Amz-Target", "secretsmanager.ListSecrets")
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	resp, err := (&http.Client{Timeout: clustertest.RPCTimeout}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("X-Amzn-ErrorType") != server.TypeServiceUnavailable || !strings.Contains(string(body), "diverged") {
		t.Errorf("AWS API on the diverged node: %d %q %s, want 503 ServiceUnavailable naming the divergence", resp.StatusCode, resp.Header.Get("X-Amzn-ErrorType"), body)
	}
	for _, i := range c.Others(odd) {
		ctx, cancel := clustertest.RPCContext()
		out, err := c.Client(i).GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: "app/db"})
		cancel()
		if err != nil || out.GetSecretString() != "v1" {
			t.Errorf("read on %s: %s", c.ID(i), describeErr(err))
		}
	}

	// The documented fix: stop it, wipe its data directory, start it; it
	// resyncs from its region. The operator's check then passes.
	c.Stop(odd)
	if err := os.RemoveAll(c.Member(odd).DataDir); err != nil {
		t.Fatal(err)
	}
	c.Restart(odd)
	wait.Until(t, clustertest.ConvergeTimeout, func() error {
		rep := checkConsistency(t, c, odd)
		if !rep.GetConsistent() {
			return fmt.Errorf("check after the resync: %v", rep)
		}
		return nil
	})
	if c.Node(odd).Raft().Diverged() != nil {
		t.Fatal("the resynced node is still marked diverged")
	}
	ctx, cancel := clustertest.RPCContext()
	defer cancel()
	if out, err := c.Client(odd).GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: "app/db"}); err != nil || out.GetSecretString() != "v1" {
		t.Fatalf("read on the resynced node: %s", describeErr(err))
	}
	if _, err := c.Client(odd).DescribeSecret(ctx, &cofferv1.DescribeSecretRequest{SecretId: "rogue"}); server.TypeOf(err) != server.TypeResourceNotFound {
		t.Fatalf("the rogue secret survived the resync: %s", describeErr(err))
	}
	if got := healthOf(t, c.Member(odd).Ports.GRPC); got != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("the resynced node's health is %v, want SERVING", got)
	}
}

// TestCheckClearsAMarkAfterAManualResync: a node marked diverged whose state
// matches again (an operator resynced it by hand) is cleared by the
// operator's check, not by an automatic one.
func TestCheckClearsAMarkAfterAManualResync(t *testing.T) {
	c := clustertest.Start(t, 3, clustertest.WithRaft(func(rc *replication.Config) { rc.ConsistencyCheckInterval = checkInterval }))
	createSecret(t, c, c.Leader(), "app/db", "v1")
	marked := c.Others(c.Leader())[0]
	// A marker as a check leaves it; the node's state is in fact the
	// region's (as after a manual resync).
	c.Stop(marked)
	marker := `{"index":1,"hash":"00","majority_hash":"11","leader_id":"n0","detected":"2026-01-01T00:00:00Z"}`
	if err := os.WriteFile(filepath.Join(c.Member(marked).DataDir, "diverged"), []byte(marker), 0o600); err != nil {
		t.Fatal(err)
	}
	c.Restart(marked)
	if c.Node(marked).Raft().Diverged() == nil {
		t.Fatal("the marker did not survive the restart")
	}
	ctx, cancel := clustertest.RPCContext()
	_, err := c.Client(marked).ListSecrets(ctx, &cofferv1.ListSecretsRequest{})
	cancel()
	if server.TypeOf(err) != server.TypeServiceUnavailable {
		t.Fatalf("a marked node served: %s", describeErr(err))
	}
	rep := checkConsistency(t, c, c.Others(marked)[0])
	var verdict *cofferv1.ServerConsistency
	for _, s := range rep.GetServers() {
		if s.GetNodeId() == c.ID(marked) {
			verdict = s
		}
	}
	if !rep.GetConsistent() || verdict.GetVerdict() != replication.VerdictMatch || !strings.Contains(verdict.GetDetail(), "cleared") {
		t.Fatalf("operator's check: %v", rep)
	}
	if c.Node(marked).Raft().Diverged() != nil {
		t.Fatal("the mark is still there")
	}
}

func checkConsistency(t *testing.T, c *clustertest.Cluster, i int) *cofferv1.CheckConsistencyResponse {
	t.Helper()
	ctx, cancel := clustertest.RPCContext()
	defer cancel()
	rep, err := c.Admin(i).CheckConsistency(ctx, &cofferv1.CheckConsistencyRequest{})
	if err != nil {
		t.Fatalf("check through %s: %s", c.ID(i), describeErr(err))
	}
	return rep
}

func healthOf(t *testing.T, addr string) healthpb.HealthCheckResponse_ServingStatus {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), clustertest.RPCTimeout)
	defer cancel()
	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: cofferv1.SecretsManagerService_ServiceDesc.ServiceName})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetStatus()
}
