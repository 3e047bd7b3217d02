package failover

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// WriteMarkdown renders the report for people: targets and verdict first,
// then the figures, the checks and the timeline.
func (r *Report) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# Coffer drill %s: %s %s → %s → %s\n\n", r.ID, r.Mode, r.Primary, r.Secondary, r.Primary)
	fmt.Fprintf(&b, "**Verdict: %s**\n\n", r.Verdict)
	fmt.Fprintf(&b, "| | |\n|---|---|\n")
	row := func(k, v string) { fmt.Fprintf(&b, "| %s | %s |\n", k, v) }
	row("Started", r.Started.UTC().Format(time.RFC3339Nano))
	row("Finished", r.Finished.UTC().Format(time.RFC3339Nano))
	row("Cut", r.Cut.UTC().Format(time.RFC3339Nano))
	row("Lag before the cut", fmt.Sprintf("%d change(s) pending, %.3fs", r.PendingBeforeCut, r.LagBeforeCutSecs))
	rtoTarget := "none"
	if r.MaxRTOMillis > 0 {
		rtoTarget = (time.Duration(r.MaxRTOMillis) * time.Millisecond).String()
	}
	row("RTO (cut → canary writes succeed in "+r.Secondary+")", fmt.Sprintf("%dms (target %s)", r.RTOMillis, rtoTarget))
	row("Failback RTO (→ canary writes succeed in "+r.Primary+")", fmt.Sprintf("%dms (target %s)", r.FailbackRTOMillis, rtoTarget))
	rpoTarget := "none"
	if r.MaxRPO >= 0 {
		rpoTarget = fmt.Sprint(r.MaxRPO)
	}
	row("RPO", fmt.Sprintf("%d change(s) (target %s); unshipped at the cut: %d; acknowledged canary writes lost at the promotion: %d",
		r.RPO.Changes, rpoTarget, r.RPO.UnshippedAtCut, len(r.RPO.LostWrites)))
	row("Secrets moved", fmt.Sprintf("%d to %s, %d back to %s", r.SecretsMoved, r.Secondary, r.SecretsMovedBack, r.Primary))
	c := r.Canaries
	row("Canaries", fmt.Sprintf("%d secrets; %d writes attempted, %d acknowledged (%s), %d accounted for (%d diverged), %d missing; cleaned up: %v",
		len(c.Secrets), c.Attempted, c.Acknowledged, counts(c.ByRegion), c.Accounted, c.Diverged, len(c.Unaccounted), c.CleanedUp))
	row("Errors seen by the canary writers", counts(c.Errors))
	if len(r.RPO.UnshippedSecrets) > 0 {
		fmt.Fprintf(&b, "\n## Unshipped at the cut\n\n%s\n", strings.Join(r.RPO.UnshippedSecrets, ", "))
	}
	if len(r.RPO.LostWrites) > 0 {
		fmt.Fprintf(&b, "\n## Writes lost at the promotion\n\n| Canary | Version | Acknowledged | Diverged after failback |\n|---|---|---|---|\n")
		for _, l := range r.RPO.LostWrites {
			fmt.Fprintf(&b, "| %s | %s | %s | %v |\n", l.Canary, l.VersionID, l.AcknowledgedAt.UTC().Format(time.RFC3339Nano), l.DivergedAfterFailback)
		}
	}
	if len(c.Unaccounted) > 0 {
		fmt.Fprintf(&b, "\n## Acknowledged writes not found\n\n%s\n", strings.Join(c.Unaccounted, "\n"))
	}
	if len(r.Watched) > 0 {
		fmt.Fprintf(&b, "\n## Watched secrets\n\n| Secret | Current version | Problem |\n|---|---|---|\n")
		for _, w := range r.Watched {
			fmt.Fprintf(&b, "| %s | %s | %s |\n", w.Name, w.CurrentVersionID, w.Problem)
		}
	}
	fmt.Fprintf(&b, "\n## Checks\n\n| Check | Result | Detail |\n|---|---|---|\n")
	for _, ch := range r.Checks {
		res := "pass"
		if !ch.Passed {
			res = "**FAIL**"
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", ch.Name, res, strings.ReplaceAll(ch.Detail, "|", "\\|"))
	}
	if len(r.Errors) > 0 {
		fmt.Fprintf(&b, "\n## Errors\n\n")
		for _, e := range r.Errors {
			fmt.Fprintf(&b, "- %s\n", e)
		}
	}
	fmt.Fprintf(&b, "\n## Timeline\n\n| Time (UTC) | +s | Step |\n|---|---|---|\n")
	for _, e := range r.Timeline {
		fmt.Fprintf(&b, "| %s | %.3f | %s |\n", e.At.UTC().Format("15:04:05.000"), e.At.Sub(r.Started).Seconds(), strings.ReplaceAll(e.Step, "|", "\\|"))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func counts(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s: %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}
