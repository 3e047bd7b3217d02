package replication

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	replicationv1 "github.com/cofferhq/coffer/proto/coffer/replication/v1"
)

func TestJudge(t *testing.T) {
	a, b, c := []byte("hash-a"), []byte("hash-b"), []byte("hash-c")
	answer := func(id string, h []byte) NodeConsistency { return NodeConsistency{NodeID: id, Hash: h} }
	for _, tc := range []struct {
		name       string
		answers    []NodeConsistency
		verdicts   string // per node, in id order
		consistent bool
	}{
		{"all the same", []NodeConsistency{answer("n1", a), answer("n2", a), answer("n3", a)}, "match match match", true},
		{"one odd out", []NodeConsistency{answer("n2", b), answer("n1", a), answer("n3", a)}, "match diverged match", false},
		{"the leader odd out", []NodeConsistency{answer("n1", b), answer("n2", a), answer("n3", a)}, "diverged match match", false},
		{"no majority", []NodeConsistency{answer("n1", a), answer("n2", b), answer("n3", c)}, "undecided undecided undecided", false},
		{"two of three answered, and differ", []NodeConsistency{answer("n1", a), answer("n2", b), answer("n3", nil)}, "undecided undecided unknown", false},
		{"two of three answered, and agree", []NodeConsistency{answer("n1", a), answer("n2", a), answer("n3", nil)}, "match match unknown", false},
		{"two of five agree: no majority", []NodeConsistency{answer("n1", a), answer("n2", a), answer("n3", b), answer("n4", nil), answer("n5", nil)},
			"undecided undecided undecided unknown unknown", false},
		{"alone", []NodeConsistency{answer("n1", a)}, "match", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := judge(7, tc.answers)
			var got []string
			for _, n := range rep.Nodes {
				got = append(got, n.Verdict)
			}
			if s := strings.Join(got, " "); s != tc.verdicts || rep.Consistent != tc.consistent || rep.Index != 7 {
				t.Errorf("verdicts %q consistent %v, want %q %v", s, rep.Consistent, tc.verdicts, tc.consistent)
			}
		})
	}
}

// A single node checks itself: the hash is its state's at the check point.
// A mark persists across a restart; an automatic check leaves it, an
// operator's check that passes clears it.
func TestConsistencyCheckAndDivergedMark(t *testing.T) {
	dir, addr := t.TempDir(), freeAddr(t)
	tn := startTestNode(t, dir, addr)
	t.Cleanup(func() { tn.stop() })
	ctx := context.Background()
	for i := range 5 {
		if _, err := tn.node.Apply(ctx, createCmd(i)); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := tn.node.CheckConsistency(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	want, err := tn.store.Hash()
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Consistent || len(rep.Nodes) != 1 || rep.Nodes[0].Verdict != VerdictMatch || string(rep.Nodes[0].Hash) != string(want[:]) {
		t.Fatalf("report %+v, want one match with the state's hash", rep)
	}
	if rep.Index != tn.store.AppliedIndex() {
		t.Fatalf("check point %d, applied %d", rep.Index, tn.store.AppliedIndex())
	}
	if _, err := tn.node.stateHashAt(ctx, rep.Index-1); !errors.Is(err, ErrNoCheckpoint) {
		t.Fatalf("hash at an index that is no check point: %v, want ErrNoCheckpoint", err)
	}

	tn.node.applyDivergedMark(&replicationv1.SetDivergedRequest{Diverged: true, Index: rep.Index, Hash: []byte{1}, MajorityHash: []byte{2}, LeaderId: "n0"})
	marker := filepath.Join(dir, "raft", "diverged")
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("no marker after the mark: %v", err)
	}
	tn.stop()
	tn = startTestNode(t, dir, addr)
	d := tn.node.Diverged()
	if d == nil || d.Index != rep.Index || d.Hash != "01" || d.MajorityHash != "02" || !errors.Is(d, ErrDiverged) {
		t.Fatalf("after a restart: divergence %+v", d)
	}
	if st := tn.node.localStatus(); !st.GetDiverged() || st.GetDivergedReason() == "" || st.GetClusterId() != tn.node.ClusterID() {
		t.Fatalf("status %+v", st)
	}
	rep, err = tn.node.CheckConsistency(ctx, false)
	if err != nil || tn.node.Diverged() == nil || rep.Nodes[0].Detail == "" {
		t.Fatalf("an automatic check changed the mark: %v %+v", err, rep)
	}
	rep, err = tn.node.CheckConsistency(ctx, true)
	if err != nil || tn.node.Diverged() != nil || rep.Nodes[0].Detail != "matches again: diverged mark cleared" {
		t.Fatalf("an operator's passing check did not clear the mark: %v %+v", err, rep)
	}
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("marker still there after clearing: %v", err)
	}
}
