package main

import (
	"strings"
	"testing"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// cluster check prints every server's index, hash and verdict, and exits
// 0 only when they all matched.
func TestClusterCheck(t *testing.T) {
	admin, addr := startFakeAdmin(t)
	hash := strings.Repeat("ab", 32)
	other := strings.Repeat("cd", 32)
	admin.set(func(a *fakeAdmin) {
		a.check = &cofferv1.CheckConsistencyResponse{Index: 812, Consistent: true, Servers: []*cofferv1.ServerConsistency{
			{NodeId: "n1", Index: 812, Hash: hash, Verdict: "match"},
			{NodeId: "n2", Index: 812, Hash: hash, Verdict: "match", Detail: "matches again: diverged mark cleared"},
		}}
	})
	r := runCLI(t, "", "--endpoint", addr, "cluster", "check")
	mustSucceed(t, r)
	want := `checked at index 812
NODE  INDEX  HASH              VERDICT  DETAIL
n1    812    abababababababab  match    -
n2    812    abababababababab  match    matches again: diverged mark cleared
`
	if r.stdout != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", r.stdout, want)
	}
	if calls := admin.received(); len(calls) != 1 || calls[0].method != "CheckConsistency" {
		t.Errorf("calls %v, want one CheckConsistency", calls)
	}

	admin.set(func(a *fakeAdmin) {
		a.check = &cofferv1.CheckConsistencyResponse{Index: 900, Servers: []*cofferv1.ServerConsistency{
			{NodeId: "n1", Index: 900, Hash: hash, Verdict: "match"},
			{NodeId: "n2", Index: 900, Hash: other, Verdict: "diverged", Detail: "marked diverged"},
			{NodeId: "n3", Verdict: "unknown", Detail: "peer unreachable"},
		}}
	})
	r = runCLI(t, "", "--endpoint", addr, "cluster", "check")
	if r.code != exitFailure || !strings.Contains(r.stderr, "do not all hash the same") {
		t.Fatalf("a failed check: exit %d, stderr %q; want exit 1", r.code, r.stderr)
	}
	for _, w := range []string{"n2    900    cdcdcdcdcdcdcdcd  diverged  marked diverged", "n3    -      -                 unknown   peer unreachable"} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("stdout lacks %q:\n%s", w, r.stdout)
		}
	}
	r = runCLI(t, "", "--endpoint", addr, "-o", "json", "cluster", "check")
	if r.code != exitFailure || !strings.Contains(r.stdout, `"hash": "`+other+`"`) || !strings.Contains(r.stdout, `"verdict": "diverged"`) {
		t.Errorf("json: exit %d\n%s", r.code, r.stdout)
	}
	if r := runCLI(t, "", "--endpoint", addr, "cluster", "check", "n1"); r.code != exitUsage {
		t.Errorf("check with an argument: exit %d, want %d", r.code, exitUsage)
	}
}
