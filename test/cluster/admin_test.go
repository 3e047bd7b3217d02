package cluster

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server"
	"github.com/cofferhq/coffer/test/testkit/clustertest"
	"github.com/cofferhq/coffer/test/wait"
)

// createSecret creates name=value through node i and returns the write's
// index.
func createSecret(t *testing.T, c *clustertest.Cluster, i int, name, value string) uint64 {
	t.Helper()
	ctx, cancel := clustertest.RPCContext()
	defer cancel()
	var hdr metadata.MD
	if _, err := c.Client(i).CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: name, SecretString: proto.String(value)}, grpc.Header(&hdr)); err != nil {
		t.Fatalf("CreateSecret %s on %s: %s", name, c.ID(i), describeErr(err))
	}
	return answeredIndex(t, hdr)
}

// TestAdminOperations drives the AdminService: status, leadership
// transfer, snapshot save and restore, and removing a peer.
func TestAdminOperations(t *testing.T) {
	c := clustertest.Start(t, 3)
	leader := c.Leader()
	asked := c.Others(leader)[0]

	wait.Until(t, clustertest.ConvergeTimeout, func() error {
		ctx, cancel := clustertest.RPCContext()
		defer cancel()
		st, err := c.Admin(asked).ClusterStatus(ctx, &cofferv1.ClusterStatusRequest{})
		if err != nil {
			return err
		}
		if st.GetRegion() != clustertest.DefaultRegion || st.GetLeaderId() != c.ID(leader) || st.GetAnsweredBy() != c.ID(asked) || st.GetTerm() == 0 {
			return fmt.Errorf("status: region %q leader %q answered by %q term %d", st.GetRegion(), st.GetLeaderId(), st.GetAnsweredBy(), st.GetTerm())
		}
		if len(st.GetServers()) != 3 {
			return fmt.Errorf("%d servers, want 3", len(st.GetServers()))
		}
		var leaders []string
		var lo, hi uint64
		for k, s := range st.GetServers() {
			if !s.GetVoter() || s.GetHealth() != "healthy" || s.GetRaftAddress() == "" || s.GetApiAddress() == "" {
				return fmt.Errorf("server %+v", s)
			}
			if s.GetLeader() {
				leaders = append(leaders, s.GetNodeId())
				if s.GetState() != "Leader" {
					return fmt.Errorf("leader %s reports state %q", s.GetNodeId(), s.GetState())
				}
			} else if s.GetState() != "Follower" {
				return fmt.Errorf("%s reports state %q", s.GetNodeId(), s.GetState())
			}
			if k == 0 || s.GetAppliedIndex() < lo {
				lo = s.GetAppliedIndex()
			}
			hi = max(hi, s.GetAppliedIndex())
		}
		if !slices.Equal(leaders, []string{c.ID(leader)}) {
			return fmt.Errorf("servers flagged leader: %v, want [%s]", leaders, c.ID(leader))
		}
		if lo == 0 || hi-lo > 2 {
			return fmt.Errorf("applied indexes from %d to %d", lo, hi)
		}
		return nil
	})

	// Leadership goes to a named follower, asked through the other one.
	target := c.Others(leader, asked)[0]
	ctx, cancel := clustertest.RPCContext()
	tr, err := c.Admin(asked).TransferLeadership(ctx, &cofferv1.TransferLeadershipRequest{NodeId: c.ID(target)})
	cancel()
	if err != nil {
		t.Fatalf("TransferLeadership to %s via %s: %s", c.ID(target), c.ID(asked), describeErr(err))
	}
	if tr.GetLeaderId() != c.ID(target) {
		t.Errorf("TransferLeadership answered leader %q, want %s", tr.GetLeaderId(), c.ID(target))
	}
	if got := c.Leader(); got != target {
		t.Fatalf("after the transfer %s leads, want %s", c.ID(got), c.ID(target))
	}
	leader = target

	// Save from a follower, between writes A and B.
	aIdx := createSecret(t, c, leader, "admin/a", "A")
	follower := c.Others(leader)[0]
	ctx, cancel = clustertest.RPCContext()
	stream, err := c.Admin(follower).SaveSnapshot(ctx, &cofferv1.SaveSnapshotRequest{})
	if err != nil {
		t.Fatalf("SaveSnapshot: %s", describeErr(err))
	}
	first, err := stream.Recv()
	if err != nil || first.GetInfo() == nil {
		t.Fatalf("SaveSnapshot's first message = %v, %s; want the info", first, describeErr(err))
	}
	info := first.GetInfo()
	var saved []byte
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("SaveSnapshot stream: %s", describeErr(err))
		}
		if m.GetChunk() == nil {
			t.Fatalf("SaveSnapshot sent %v after the info, want chunks", m)
		}
		saved = append(saved, m.GetChunk()...)
	}
	cancel()
	if int64(len(saved)) != info.GetSize() || info.GetSize() == 0 {
		t.Fatalf("SaveSnapshot streamed %d bytes, info says %d", len(saved), info.GetSize())
	}
	if info.GetIndex() < aIdx {
		// Restoring it could not show A; the rest would only repeat this.
		t.Fatalf("snapshot index %d is before write A's %d, though it is a linearizable read point", info.GetIndex(), aIdx)
	}
	t.Logf("saved a %d-byte snapshot at index %d from %s", info.GetSize(), info.GetIndex(), c.ID(follower))

	createSecret(t, c, follower, "admin/b", "B")

	// Restore through the other follower; the whole region rolls back.
	via := c.Others(leader, follower)[0]
	ctx, cancel = clustertest.RPCContext()
	up, err := c.Admin(via).RestoreSnapshot(ctx)
	if err != nil {
		t.Fatalf("RestoreSnapshot: %s", describeErr(err))
	}
	if err := up.Send(&cofferv1.RestoreSnapshotRequest{Part: &cofferv1.RestoreSnapshotRequest_Size{Size: int64(len(saved))}}); err != nil {
		t.Fatalf("RestoreSnapshot send size: %v", err)
	}
	for rest := saved; len(rest) > 0; {
		n := min(len(rest), 64<<10)
		if err := up.Send(&cofferv1.RestoreSnapshotRequest{Part: &cofferv1.RestoreSnapshotRequest_Chunk{Chunk: rest[:n]}}); err != nil {
			t.Fatalf("RestoreSnapshot send chunk: %v", err)
		}
		rest = rest[n:]
	}
	restored, err := up.CloseAndRecv()
	cancel()
	if err != nil {
		t.Fatalf("RestoreSnapshot via %s: %s", c.ID(via), describeErr(err))
	}
	t.Logf("restored at index %d", restored.GetIndex())

	for i := range c.N() {
		wait.Until(t, clustertest.ConvergeTimeout, func() error {
			ctx, cancel := clustertest.RPCContext()
			defer cancel()
			a, _, err := getValue(ctx, c.Client(i), "admin/a", "")
			if err != nil || a.GetSecretString() != "A" {
				return fmt.Errorf("%s: admin/a = %q, %s; want %q", c.ID(i), a.GetSecretString(), describeErr(err), "A")
			}
			if _, _, err := getValue(ctx, c.Client(i), "admin/b", ""); server.TypeOf(err) != server.TypeResourceNotFound {
				return fmt.Errorf("%s: admin/b after the restore: %s, want %s", c.ID(i), describeErr(err), server.TypeResourceNotFound)
			}
			return nil
		})
	}

	// New writes apply normally everywhere, on top of the restored state.
	for i := range c.N() {
		name := "admin/after/" + c.ID(i)
		createSecret(t, c, i, name, "C")
		ctx, cancel := clustertest.RPCContext()
		_, err := c.Client(i).PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: "admin/a", SecretString: proto.String("A-" + c.ID(i))})
		cancel()
		if err != nil {
			t.Fatalf("PutSecretValue admin/a on %s after the restore: %s", c.ID(i), describeErr(err))
		}
		for j := range c.N() {
			ctx, cancel := clustertest.RPCContext()
			got, _, err := getValue(ctx, c.Client(j), name, "")
			a, _, aerr := getValue(ctx, c.Client(j), "admin/a", "")
			cancel()
			if err != nil || got.GetSecretString() != "C" || aerr != nil || a.GetSecretString() != "A-"+c.ID(i) {
				t.Errorf("on %s after the restore: %s = %q (%s), admin/a = %q (%s)", c.ID(j), name, got.GetSecretString(), describeErr(err),
					a.GetSecretString(), describeErr(aerr))
			}
		}
	}

	// A stopped follower is removed from the configuration.
	leader = c.Leader()
	victim := c.Others(leader)[0]
	c.Stop(victim)
	ctx, cancel = clustertest.RPCContext()
	_, err = c.Admin(c.Others(victim, leader)[0]).RemovePeer(ctx, &cofferv1.RemovePeerRequest{NodeId: c.ID(victim)})
	cancel()
	if err != nil {
		t.Fatalf("RemovePeer %s: %s", c.ID(victim), describeErr(err))
	}
	for _, i := range c.Running() {
		wait.Until(t, clustertest.ConvergeTimeout, func() error {
			ctx, cancel := clustertest.RPCContext()
			defer cancel()
			st, err := c.Admin(i).ClusterStatus(ctx, &cofferv1.ClusterStatusRequest{})
			if err != nil {
				return err
			}
			var ids []string
			for _, s := range st.GetServers() {
				ids = append(ids, s.GetNodeId())
			}
			if want := c.IDs(c.Others(victim)); !slices.Equal(ids, want) {
				return fmt.Errorf("%s lists servers %v, want %v", c.ID(i), ids, want)
			}
			return nil
		})
	}
	ctx, cancel = clustertest.RPCContext()
	_, err = c.Admin(leader).RemovePeer(ctx, &cofferv1.RemovePeerRequest{NodeId: c.ID(victim)})
	cancel()
	if server.TypeOf(err) != server.TypeResourceNotFound {
		t.Errorf("RemovePeer of a server no longer in the region: %s, want %s", describeErr(err), server.TypeResourceNotFound)
	}
	createSecret(t, c, c.Others(victim, leader)[0], "admin/two-voters", "D")
}
