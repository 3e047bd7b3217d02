package failover

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// findLost lists the canary writes the primary acknowledged that the
// promoted secondary does not hold: the measured RPO of a failover.
func (d *drill) findLost(ctx context.Context) error {
	for _, name := range d.names {
		have, err := versions(ctx, d.cfg.Secondary, name)
		if err != nil {
			return fmt.Errorf("versions of %s in %s: %w", name, d.cfg.Secondary.Name, err)
		}
		d.mu.Lock()
		for _, w := range d.writes {
			if w.canary == name && w.region == d.cfg.Primary.Name && have[w.version] == nil {
				d.r.RPO.LostWrites = append(d.r.RPO.LostWrites, LostWrite{Canary: name, VersionID: w.version, AcknowledgedAt: w.at})
			}
		}
		d.mu.Unlock()
	}
	d.step("RPO: %d acknowledged canary write(s) of %s missing in %s after the promotion", len(d.r.RPO.LostWrites), d.cfg.Primary.Name, d.cfg.Secondary.Name)
	return nil
}

// checkDiverged waits until the old primary lists every lost write as a
// diverged version (it has become the new primary's replica).
func (d *drill) checkDiverged(ctx context.Context) error {
	p := d.cfg.Primary
	wctx, cancel := context.WithTimeout(ctx, d.cfg.ConvergeTimeout)
	defer cancel()
	prefix := CanaryPrefix + d.r.ID + "/"
	for {
		resp, err := retry(wctx, func(ctx context.Context) (*cofferv1.ListDivergedVersionsResponse, error) {
			return p.regions().ListDivergedVersions(ctx, &cofferv1.ListDivergedVersionsRequest{NamePrefix: prefix})
		})
		if err != nil {
			return fmt.Errorf("list diverged versions in %s: %w", p.Name, err)
		}
		listed := map[string]bool{}
		for _, s := range resp.GetSecrets() {
			for _, v := range s.GetVersions() {
				listed[s.GetName()+"/"+v.GetVersionId()] = true
			}
		}
		missing := 0
		for i, lw := range d.r.RPO.LostWrites {
			d.r.RPO.LostWrites[i].DivergedAfterFailback = listed[lw.Canary+"/"+lw.VersionID]
			if !d.r.RPO.LostWrites[i].DivergedAfterFailback {
				missing++
			}
		}
		if missing == 0 {
			d.step("%s returned as a replica of %s and lists %d diverged canary version(s): every lost write", p.Name, d.cfg.Secondary.Name, len(listed))
			d.check("lost writes kept as diverged versions", len(listed) == len(d.r.RPO.LostWrites), "%d lost, %d listed diverged in %s", len(d.r.RPO.LostWrites), len(listed), p.Name)
			return nil
		}
		select {
		case <-wctx.Done():
			d.check("lost writes kept as diverged versions", false, "%d of %d lost writes not listed as diverged in %s", missing, len(d.r.RPO.LostWrites), p.Name)
			return nil
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// verify reads each canary's last acknowledged version in the new primary
// and, once converged, in the other region, and checks the watched
// secrets' primary region and current version.
func (d *drill) verify(ctx context.Context, primary, other Region, when string) {
	var bad []string
	for _, name := range d.names {
		w := d.lastWrite(name)
		for _, reg := range []Region{primary, other} {
			if err := d.waitRead(ctx, reg, w, primary.Name); err != nil {
				bad = append(bad, err.Error())
			}
		}
	}
	d.check("canaries readable in both regions "+when, len(bad) == 0, "%d canaries, last acknowledged version of each read in %s (primary) and %s (replica)%s",
		len(d.names), primary.Name, other.Name, problems(bad))
	d.step("canary reads %s: %d problem(s)", when, len(bad))
	if len(d.r.Watched) == 0 {
		return
	}
	bad = nil
	for i, w := range d.r.Watched {
		desc, err := retry(ctx, func(ctx context.Context) (*cofferv1.DescribeSecretResponse, error) {
			return primary.secrets().DescribeSecret(ctx, &cofferv1.DescribeSecretRequest{SecretId: w.Name})
		})
		var have map[string][]string
		if err == nil {
			have, err = versions(ctx, primary, w.Name)
		}
		switch {
		case err != nil:
			d.r.Watched[i].Problem = err.Error()
		case desc.GetPrimaryRegion() != primary.Name:
			d.r.Watched[i].Problem = fmt.Sprintf("%s: primary region %s, want %s", when, desc.GetPrimaryRegion(), primary.Name)
		case have[w.CurrentVersionID] == nil:
			d.r.Watched[i].Problem = fmt.Sprintf("%s: version %s missing in %s", when, w.CurrentVersionID, primary.Name)
		}
		if d.r.Watched[i].Problem != "" {
			bad = append(bad, w.Name+": "+d.r.Watched[i].Problem)
		}
	}
	d.check("watched secrets in "+primary.Name+" "+when, len(bad) == 0, "%d secret(s) under %s%s", len(d.r.Watched), d.cfg.SecretsPrefix, problems(bad))
}

func problems(bad []string) string {
	if len(bad) == 0 {
		return ""
	}
	if len(bad) > 5 {
		bad = append(bad[:5:5], fmt.Sprintf("and %d more", len(bad)-5))
	}
	return "; problems: " + strings.Join(bad, "; ")
}

// account looks for every acknowledged canary write in the final primary.
func (d *drill) account() {
	c := &d.r.Canaries
	d.mu.Lock()
	writes := slices.Clone(d.writes)
	c.Attempted, c.Acknowledged, c.Errors, c.ByRegion = d.tries, len(writes), d.errs, map[string]int{}
	d.mu.Unlock()
	for _, w := range writes {
		c.ByRegion[w.region]++
	}
	ctx, cancel := context.WithTimeout(context.Background(), d.cfg.ConvergeTimeout)
	defer cancel()
	final := d.cfg.Primary
	for _, name := range d.names {
		have, err := versions(ctx, final, name)
		if err != nil {
			for _, w := range writes {
				if w.canary == name {
					c.Unaccounted = append(c.Unaccounted, name+"/"+w.version)
				}
			}
			continue
		}
		for _, w := range writes {
			if w.canary != name {
				continue
			}
			labels, ok := have[w.version]
			if !ok {
				c.Unaccounted = append(c.Unaccounted, name+"/"+w.version)
				continue
			}
			c.Accounted++
			if slices.ContainsFunc(labels, func(l string) bool { return strings.HasPrefix(l, "COFFER_DIVERGED_") }) {
				c.Diverged++
			}
		}
	}
	d.check("every acknowledged canary write accounted for", len(c.Unaccounted) == 0 && c.Acknowledged > 0,
		"%d acknowledged, %d found in %s (%d as diverged versions), %d missing", c.Acknowledged, c.Accounted, final.Name, c.Diverged, len(c.Unaccounted))
	d.step("canary accounting: %d acknowledged, %d accounted for, %d missing", c.Acknowledged, c.Accounted, len(c.Unaccounted))
}

// cleanup deletes the canaries in whichever region is their primary and
// waits until both regions have none.
func (d *drill) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), d.cfg.ConvergeTimeout)
	defer cancel()
	gone, force := 0, true
	for _, name := range d.names {
		for _, reg := range []Region{d.cfg.Primary, d.cfg.Secondary} {
			_, err := retry(ctx, func(ctx context.Context) (*cofferv1.DeleteSecretResponse, error) {
				return reg.secrets().DeleteSecret(ctx, &cofferv1.DeleteSecretRequest{SecretId: name, ForceDeleteWithoutRecovery: &force})
			})
			if err == nil || status.Code(err) == codes.NotFound {
				break
			}
		}
	}
	for _, name := range d.names {
		for _, reg := range []Region{d.cfg.Primary, d.cfg.Secondary} {
			for ctx.Err() == nil {
				_, err := reg.secrets().DescribeSecret(ctx, &cofferv1.DescribeSecretRequest{SecretId: name})
				if status.Code(err) == codes.NotFound {
					gone++
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
	d.r.Canaries.CleanedUp = gone == 2*len(d.names)
	d.check("canaries deleted in both regions", d.r.Canaries.CleanedUp, "%d of %d copies gone", gone, 2*len(d.names))
	d.step("cleanup: %d of %d canary copies deleted", gone, 2*len(d.names))
}

// judge sets the RPO figure and the verdict against the targets.
func (d *drill) judge() {
	r := d.r
	r.RPO.Changes = max(len(r.RPO.LostWrites), int(r.RPO.UnshippedAtCut))
	if r.Mode == ModeSwitchover {
		r.RPO.Changes = len(r.RPO.LostWrites)
	}
	if d.cfg.MaxRTO > 0 {
		d.check("RTO within target", r.RTOMillis > 0 && r.RTOMillis <= d.cfg.MaxRTO.Milliseconds() && r.FailbackRTOMillis > 0 && r.FailbackRTOMillis <= d.cfg.MaxRTO.Milliseconds(),
			"RTO %dms, failback RTO %dms, target %s", r.RTOMillis, r.FailbackRTOMillis, d.cfg.MaxRTO)
	}
	if d.cfg.MaxRPO >= 0 {
		d.check("RPO within target", r.RPO.Changes <= d.cfg.MaxRPO, "RPO %d change(s), target %d", r.RPO.Changes, d.cfg.MaxRPO)
	}
	r.Verdict = "PASS"
	if len(r.Errors) > 0 {
		r.Verdict = "FAIL"
	}
	for _, c := range r.Checks {
		if !c.Passed {
			r.Verdict = "FAIL"
		}
	}
}
