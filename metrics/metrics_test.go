package metrics

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestRequestDoneAllocatesNothing: recording a request on the hot path
// allocates nothing once its series exist.
func TestRequestDoneAllocatesNothing(t *testing.T) {
	m := New()
	m.RequestStarted("grpc")
	m.RequestDone("grpc", "GetSecretValue", "OK", time.Millisecond)
	allocs := testing.AllocsPerRun(1000, func() {
		m.RequestStarted("grpc")
		m.RequestDone("grpc", "GetSecretValue", "OK", time.Millisecond)
	})
	if allocs != 0 {
		t.Fatalf("RequestStarted+RequestDone allocate %v times per request", allocs)
	}
}

// TestExposition: the families an operator's alerts name are exposed with
// their base-unit names, and the node collector reports its state.
func TestExposition(t *testing.T) {
	m := New()
	m.RequestStarted("aws")
	m.RequestDone("aws", "GetSecretValue", "ResourceNotFoundException", 2*time.Millisecond)
	m.AuthFailure("UnrecognizedClientException")
	m.ObserveCommit(time.Millisecond, false)
	m.ObserveCommit(time.Millisecond, true)
	m.ObserveShipment("eu-west-1", nil)
	m.RotationStepFailed("setSecret")
	c := NewNodeCollector(func() NodeState {
		return NodeState{Raft: RaftState{HasLeader: true, IsLeader: true, Term: 7, CommitIndex: 42, AppliedIndex: 42},
			Replication: []Destination{{Region: "eu-west-1", Pending: 3, Oldest: time.Unix(100, 0), Reachable: true}},
			Secrets:     SecretCounts{Active: 5, Replicas: 2}, Ready: true,
			Certificates: map[string]time.Time{"cluster": time.Unix(2000000000, 0)}}
	})
	c.now = func() time.Time { return time.Unix(160, 0) }
	m.Registry().MustRegister(c)
	want := `
# HELP coffer_raft_term The Raft term this node is in.
# TYPE coffer_raft_term gauge
coffer_raft_term 7
# HELP coffer_replication_lag_seconds Age of the oldest change not yet acknowledged by a paired region (0 when it is caught up).
# TYPE coffer_replication_lag_seconds gauge
coffer_replication_lag_seconds{destination="eu-west-1"} 60
# HELP coffer_requests_total Requests answered, by API (grpc, aws), operation and result code (OK or the AWS error type).
# TYPE coffer_requests_total counter
coffer_requests_total{api="aws",code="ResourceNotFoundException",operation="GetSecretValue"} 1
# HELP coffer_raft_proposals_failed_total Proposals that were not committed (no leader, lost leadership, timeout, shutdown).
# TYPE coffer_raft_proposals_failed_total counter
coffer_raft_proposals_failed_total 1
# HELP coffer_secrets Secrets in the region's state, by state (active, scheduled_for_deletion, replica).
# TYPE coffer_secrets gauge
coffer_secrets{state="active"} 5
coffer_secrets{state="replica"} 2
coffer_secrets{state="scheduled_for_deletion"} 0
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want),
		"coffer_raft_term", "coffer_replication_lag_seconds", "coffer_requests_total", "coffer_raft_proposals_failed_total", "coffer_secrets"); err != nil {
		t.Fatal(err)
	}
	if n, err := testutil.GatherAndCount(m.Registry(), "coffer_tls_certificate_expiry_timestamp_seconds", "coffer_auth_failures_total",
		"coffer_rotation_failures_total", "coffer_replication_shipments_total", "coffer_raft_commit_duration_seconds"); err != nil || n != 5 {
		t.Fatalf("families: %d %v", n, err)
	}
}

// BenchmarkRequestObserve is what one request's metrics cost: the in-flight
// gauge up and down, the counter and the histogram.
func BenchmarkRequestObserve(b *testing.B) {
	m := New()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.RequestStarted("grpc")
			m.RequestDone("grpc", "GetSecretValue", "OK", time.Millisecond)
		}
	})
}

// TestSealCollector: a sealed Shamir node reports sealed, its seal and its
// unseal progress; an unsealed file-seal node reports 0 and no share
// gauges.
func TestSealCollector(t *testing.T) {
	for _, tc := range []struct {
		name  string
		state SealState
		want  string
	}{
		{"sealed shamir", SealState{Type: "shamir", Sealed: true, Progress: 2, Threshold: 3}, `
# HELP coffer_sealed 1 while the node is sealed: it waits for its root key and serves only health and unseal; 0 once unsealed.
# TYPE coffer_sealed gauge
coffer_sealed 1
# HELP coffer_seal_info Always 1; the label names the seal that releases the root key (file, shamir, pkcs11).
# TYPE coffer_seal_info gauge
coffer_seal_info{type="shamir"} 1
# HELP coffer_unseal_progress_shares Key shares entered on a sealed node (coffer operator unseal), 0 once unsealed.
# TYPE coffer_unseal_progress_shares gauge
coffer_unseal_progress_shares 2
# HELP coffer_unseal_threshold_shares Key shares that unseal the node (the Shamir seal's threshold).
# TYPE coffer_unseal_threshold_shares gauge
coffer_unseal_threshold_shares 3
`},
		{"unsealed file", SealState{Type: "file"}, `
# HELP coffer_sealed 1 while the node is sealed: it waits for its root key and serves only health and unseal; 0 once unsealed.
# TYPE coffer_sealed gauge
coffer_sealed 0
# HELP coffer_seal_info Always 1; the label names the seal that releases the root key (file, shamir, pkcs11).
# TYPE coffer_seal_info gauge
coffer_seal_info{type="file"} 1
`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := New()
			m.Registry().MustRegister(NewSealCollector(func() SealState { return tc.state }))
			if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(tc.want),
				"coffer_sealed", "coffer_seal_info", "coffer_unseal_progress_shares", "coffer_unseal_threshold_shares"); err != nil {
				t.Fatal(err)
			}
		})
	}
}
