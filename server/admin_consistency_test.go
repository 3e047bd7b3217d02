package server

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	replicationv1 "github.com/cofferhq/coffer/proto/coffer/replication/v1"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/replication"
)

// checkedCluster is a region of three where n3 is marked diverged.
type checkedCluster struct {
	Cluster
	clears []bool
}

func (c *checkedCluster) ClusterID() string { return "c0ffee" }
func (c *checkedCluster) Leader() string    { return "n1" }

func (c *checkedCluster) Status(context.Context) ([]replication.ServerStatus, error) {
	st := func(id string, diverged bool) replication.ServerStatus {
		return replication.ServerStatus{ID: id, Voter: true, Leader: id == "n1", Status: &replicationv1.NodeStatusResponse{
			NodeId: id, State: "Follower", CommitIndex: 40, AppliedIndex: 40, ClusterId: "c0ffee", Diverged: diverged,
		}}
	}
	return []replication.ServerStatus{st("n1", false), st("n2", false), st("n3", true)}, nil
}

func (c *checkedCluster) CheckConsistency(_ context.Context, clear bool) (*replication.ConsistencyReport, error) {
	c.clears = append(c.clears, clear)
	return &replication.ConsistencyReport{Index: 41, Nodes: []replication.NodeConsistency{
		{NodeID: "n1", Hash: []byte{0xab, 0xcd}, Verdict: replication.VerdictMatch},
		{NodeID: "n2", Hash: []byte{0xab, 0xcd}, Verdict: replication.VerdictMatch},
		{NodeID: "n3", Hash: []byte{0x12, 0x34}, Verdict: replication.VerdictDiverged, Detail: "marked diverged"},
		{NodeID: "n4", Verdict: replication.VerdictUnknown, Detail: "unreachable"},
	}}, nil
}

// Cluster status names the cluster id and shows a diverged server as
// such; the admin check is the operator's (it may clear marks) and
// reports every server; it is authorized as coffer:CheckConsistency.
func TestAdminClusterIDAndConsistencyCheck(t *testing.T) {
	svc, store := newTestService(t)
	iam := NewIAM(svc, store)
	cluster := &checkedCluster{}
	gs, _ := NewGRPCServer(Services{Admin: NewAdmin(cluster, "us-east-1", "n1"), IAM: iam}, slog.New(slog.NewTextHandler(io.Discard, nil)),
		NewGRPCAuth(GRPCAuthConfig{IAM: iam, Region: svc.Region()}), &Gate{Authz: iam.Authorizer(), Node: "n1"})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	s := &authzServer{svc: svc, iam: iam, addr: lis.Addr().String(), keys: map[string][3]string{}}
	s.principal(t, "checker", nil, `{"Effect":"Allow","Action":["coffer:CheckConsistency","coffer:ClusterStatus"],"Resource":"*"}`)
	s.principal(t, "watcher", nil, `{"Effect":"Allow","Action":"coffer:ClusterStatus","Resource":"*"}`)
	ctx := t.Context()

	st, err := cofferv1.NewAdminServiceClient(s.conn(t, "watcher")).ClusterStatus(ctx, &cofferv1.ClusterStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st.GetClusterId() != "c0ffee" {
		t.Errorf("cluster id %q", st.GetClusterId())
	}
	for _, srv := range st.GetServers() {
		wantHealth := "healthy"
		if srv.GetNodeId() == "n3" {
			wantHealth = "diverged"
		}
		if srv.GetHealth() != wantHealth || srv.GetDiverged() != (srv.GetNodeId() == "n3") || srv.GetClusterId() != "c0ffee" {
			t.Errorf("%s: health %q diverged %v cluster %q, want %s", srv.GetNodeId(), srv.GetHealth(), srv.GetDiverged(), srv.GetClusterId(), wantHealth)
		}
	}

	_, err = cofferv1.NewAdminServiceClient(s.conn(t, "watcher")).CheckConsistency(ctx, &cofferv1.CheckConsistencyRequest{})
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "coffer:CheckConsistency") {
		t.Fatalf("check without coffer:CheckConsistency: %v, want AccessDenied naming the action", err)
	}
	if len(cluster.clears) != 0 {
		t.Fatal("a denied check ran")
	}
	rep, err := cofferv1.NewAdminServiceClient(s.conn(t, "checker")).CheckConsistency(ctx, &cofferv1.CheckConsistencyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(cluster.clears) != 1 || !cluster.clears[0] {
		t.Errorf("the admin check ran with clear %v, want the operator's check (clear)", cluster.clears)
	}
	var got []string
	for _, sc := range rep.GetServers() {
		got = append(got, sc.GetNodeId()+" "+sc.GetVerdict()+" "+sc.GetHash()+" "+sc.GetDetail()+" "+strings.Repeat("i", int(sc.GetIndex())/41))
	}
	want := []string{"n1 match abcd  i", "n2 match abcd  i", "n3 diverged 1234 marked diverged i", "n4 unknown  unreachable "}
	if rep.GetIndex() != 41 || rep.GetConsistent() || strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("report index %d consistent %v servers %q, want %q", rep.GetIndex(), rep.GetConsistent(), got, want)
	}
}
