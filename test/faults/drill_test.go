package faults

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/failover"
)

// TestDrill runs `coffer drill` as an operator would — the coffer binary
// up.sh built for this host, against the published ports of the two
// regions, each with its own CA and root credentials — in both modes, and
// checks the report it writes: PASS, RPO 0 for a switchover, RTO and
// failback RTO within the bound given, every acknowledged canary write
// accounted for, the canaries cleaned up, and the watched real secrets
// back under us-east-1 without a problem. Each Markdown report is printed
// and written to COFFER_FAULTS_REPORTS (a directory) when that is set.
func TestDrill(t *testing.T) {
	setup(t)
	us, eu := dep.regions[usEast], dep.regions[euWest]
	// Real secrets the drill watches (metadata only): they move to
	// eu-west-1 and back with everything else us-east-1 replicates there.
	newWorkload(t, dep, us, "drillreal", 2, euWest)
	dep.waitReplicaCaughtUp(t, us, euWest)

	bin := filepath.Join(dep.out, "coffer")
	reports := os.Getenv("COFFER_FAULTS_REPORTS")
	if reports == "" {
		reports = t.TempDir()
	} else if err := os.MkdirAll(reports, 0o755); err != nil {
		t.Fatal(err)
	}
	const maxRTO = "30s"
	for _, mode := range []string{failover.ModeSwitchover, failover.ModeFailover} {
		t.Run(mode, func(t *testing.T) {
			md := filepath.Join(reports, "drill-"+mode+".md")
			maxRPO := "0"
			if mode == failover.ModeFailover {
				maxRPO = "-1" // a failover may lose what was not shipped; the report lists it
			}
			args := []string{
				"--endpoint", us.nodes[0].grpcAddr, "--tls", "--ca-file", filepath.Join(dep.out, usEast+"-ca.crt"),
				"--credentials-file", filepath.Join(dep.out, usEast+".credentials"), "--region", usEast,
				"drill", "--primary", usEast, "--secondary", euWest,
				"--secondary-endpoint", eu.nodes[0].grpcAddr, "--secondary-tls", "--secondary-ca-file", filepath.Join(dep.out, euWest+"-ca.crt"),
				"--secondary-credentials-file", filepath.Join(dep.out, euWest+".credentials"), "--secondary-region", euWest,
				"--mode", mode, "--secrets", "drillreal/", "--canary", "5",
				"--report", md, "--json", "--max-rto", maxRTO, "--max-rpo", maxRPO,
			}
			cmd := exec.Command(bin, args...)
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
				t.Fatalf("RTO %dms, failback %dms, want within %s", rep.RTOMillis, rep.FailbackRTOMillis, maxRTO)
			case mode == failover.ModeSwitchover && (rep.RPO.Changes != 0 || len(rep.RPO.LostWrites) != 0):
				t.Fatalf("switchover RPO %+v, want 0", rep.RPO)
			case c.Acknowledged == 0 || c.Accounted != c.Acknowledged || len(c.Unaccounted) != 0 || !c.CleanedUp:
				t.Fatalf("canaries %+v", c)
			case c.ByRegion[euWest] == 0 || c.ByRegion[usEast] == 0:
				t.Fatalf("canary writes by region %v: both regions must have taken writes", c.ByRegion)
			case len(rep.Watched) != 2:
				t.Fatalf("watched %+v, want the 2 drillreal/ secrets", rep.Watched)
			case rep.SecretsMoved < len(c.Secrets)+2 || rep.SecretsMovedBack < len(c.Secrets)+2:
				t.Fatalf("moved %d, back %d: want at least the canaries and the watched secrets", rep.SecretsMoved, rep.SecretsMovedBack)
			}
			for _, w := range rep.Watched {
				if w.Problem != "" {
					t.Fatalf("watched secret %s: %s", w.Name, w.Problem)
				}
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
			if !strings.Contains(stderr.String(), fmt.Sprintf("RTO: canary writes succeed in %s", euWest)) {
				t.Fatalf("no progress on stderr:\n%s", stderr.String())
			}
			t.Logf("FIGURE drill %s on the compose deployment: RTO %dms, failback RTO %dms, RPO %d, %d canary writes (%v); report %s",
				mode, rep.RTOMillis, rep.FailbackRTOMillis, rep.RPO.Changes, c.Acknowledged, c.ByRegion, md)
			t.Logf("report:\n%s", b)
		})
	}
	dep.waitHealthy(t)
	checkDrillAudited(t)
}

// checkDrillAudited reads every node's audit log (docker cp: the image has
// no shell) and wants each step of the drills there as an allowed,
// successful call: the fence, both halves of each switchover and the
// promotions, in the region that took them.
func checkDrillAudited(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	seen := map[string]map[string]int{} // region → operation → successful calls
	for _, n := range dep.all() {
		path := filepath.Join(dir, n.name+".log")
		mustDocker(t, "cp", n.container+":/data/audit.log", path)
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			var e struct{ Operation, Decision, Outcome string }
			if err := json.Unmarshal([]byte(line), &e); err != nil {
				t.Fatalf("%s: audit line %q: %v", n, line, err)
			}
			if e.Decision == "allow" && e.Outcome == "success" {
				if seen[n.region] == nil {
					seen[n.region] = map[string]int{}
				}
				seen[n.region][e.Operation]++
			}
		}
	}
	want := map[string][]string{
		usEast: {"FenceRegion", "UnfenceRegion", "BeginSwitchover", "CompleteSwitchover", "PromoteRegion", "GetFailoverStatus"},
		euWest: {"BeginSwitchover", "CompleteSwitchover", "PromoteRegion", "GetFailoverStatus"},
	}
	for region, ops := range want {
		for _, op := range ops {
			if seen[region][op] == 0 {
				t.Errorf("no successful %s in %s's audit logs (seen %v)", op, region, seen[region])
			}
		}
	}
}
