package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/cofferhq/coffer/failover"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// Failover commands: fence, unfence, status, switchover, failback,
// diverged, and drill. The multi-step ones run failover's procedures;
// each step is one authorized, audited RPC.

// peerFlags are the flags naming a second region's endpoint, as pair has.
type peerFlags struct {
	endpoint, profile, creds, caFile, region *string
	tls                                      *bool
}

func (l *leaf) peerFlags(prefix, what string) peerFlags {
	return peerFlags{
		endpoint: l.fs.String(prefix+"-endpoint", "", what+" API `HOST:PORT`"),
		profile:  l.fs.String(prefix+"-profile", "", "credentials `PROFILE` for "+what),
		creds:    l.fs.String(prefix+"-credentials-file", "", "credentials `FILE` for "+what+" (default: --credentials-file)"),
		caFile:   l.fs.String(prefix+"-ca-file", "", "CA `FILE` to verify "+what+" over TLS"),
		tls:      l.fs.Bool(prefix+"-tls", false, "use TLS to "+what),
		region:   l.fs.String(prefix+"-region", "", "region `NAME` calls to "+what+" are signed for (default: the one its node names)"),
	}
}

// options are the global options with the peer's endpoint and
// credentials; the environment's access key is for --endpoint's region
// unless the peer is --endpoint itself.
func (p peerFlags) options(base options) options {
	o := base
	if *p.endpoint == "" || *p.endpoint == base.endpoint {
		return o
	}
	o.endpoint, o.tls, o.caFile, o.region = *p.endpoint, *p.tls, *p.caFile, *p.region
	if *p.profile != "" || *p.creds != "" {
		o.accessKeyID, o.secretAccessKey, o.sessionToken = "", "", ""
		o.profile = *p.profile
		if *p.creds != "" {
			o.credentialsFile = *p.creds
		}
	}
	return o
}

// connectRegion dials o and learns the region's name from it.
func connectRegion(ctx context.Context, o options) (failover.Region, func(), error) {
	conn, err := o.dial()
	if err != nil {
		return failover.Region{}, nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	st, err := cofferv1.NewRegionServiceClient(conn).GetFailoverStatus(cctx, &cofferv1.GetFailoverStatusRequest{})
	if err != nil {
		conn.Close()
		return failover.Region{}, nil, fmt.Errorf("%s: %w", o.endpoint, err)
	}
	r := failover.Region{Name: st.GetStatus().GetRegion(), Conn: conn, Dial: func(addr string) (grpc.ClientConnInterface, error) {
		lo := o
		lo.endpoint = addr
		return lo.dial()
	}}
	return r, func() { conn.Close() }, nil
}

func progressTo(l *leaf) failover.Progress {
	return func(at time.Time, step string) {
		fmt.Fprintf(l.inv.stderr, "%s  %s\n", at.UTC().Format("15:04:05.000"), step)
	}
}

func runRegionFence(l *leaf, args []string) error {
	reason := l.fs.String("reason", "", "a note shown in refusals and the status")
	pos, err := l.parse(args, "REGION")
	if err != nil {
		return err
	}
	resp, err := callRegion(l, regionClient.FenceRegion, &cofferv1.FenceRegionRequest{Region: pos[0], Reason: *reason})
	if err != nil {
		return err
	}
	if l.inv.opts.output == outputTable {
		fmt.Fprintf(l.inv.stdout, "fenced %s: its primary secrets refuse writes until coffer region unfence %s\n", pos[0], pos[0])
	}
	return printStatus(l, resp, resp.GetStatus())
}

func runRegionUnfence(l *leaf, args []string) error {
	pos, err := l.parse(args, "REGION")
	if err != nil {
		return err
	}
	resp, err := callRegion(l, regionClient.UnfenceRegion, &cofferv1.UnfenceRegionRequest{Region: pos[0]})
	if err != nil {
		return err
	}
	if l.inv.opts.output == outputTable {
		fmt.Fprintf(l.inv.stdout, "unfenced %s\n", pos[0])
	}
	return printStatus(l, resp, resp.GetStatus())
}

func runRegionStatus(l *leaf, args []string) error {
	if _, err := l.parse(args); err != nil {
		return err
	}
	resp, err := callRegion(l, regionClient.GetFailoverStatus, &cofferv1.GetFailoverStatusRequest{})
	if err != nil {
		return err
	}
	return printStatus(l, resp, resp.GetStatus())
}

func printStatus(l *leaf, resp proto.Message, st *cofferv1.FailoverStatus) error {
	return l.print(resp, func(t *table) {
		t.field("Region", st.GetRegion())
		fence := "no"
		if st.GetFenced() {
			fence = fmt.Sprintf("yes, since %s by %s", formatTime(st.GetFencedDate()), st.GetFencedBy())
			if st.GetFenceReason() != "" {
				fence += " (" + st.GetFenceReason() + ")"
			}
		}
		t.field("Fenced", fence)
		sw := "none"
		if st.GetSwitchoverTo() != "" {
			sw = fmt.Sprintf("to %s, since %s", st.GetSwitchoverTo(), formatTime(st.GetSwitchoverDate()))
		}
		t.field("Switchover", sw)
		t.field("Primary secrets", fmt.Sprint(st.GetPrimarySecrets()))
		var reps []string
		for r, n := range st.GetReplicas() {
			reps = append(reps, fmt.Sprintf("%d of %s", n, r))
		}
		t.fieldLines("Replicas", reps)
		var pend []string
		for _, p := range st.GetPending() {
			line := fmt.Sprintf("%s: %d change(s) unacknowledged", p.GetRegion(), p.GetPendingChanges())
			if len(p.GetSecrets()) > 0 {
				line += " (" + strings.Join(p.GetSecrets(), ", ") + ")"
			}
			pend = append(pend, line)
		}
		t.fieldLines("Pending", pend)
	})
}

// switchoverRegions connects to --endpoint's region and the target's.
func switchoverRegions(l *leaf, to string, peer peerFlags) (from, target failover.Region, done func(), err error) {
	if *peer.endpoint == "" {
		return from, target, nil, l.usageErrorf("--to-endpoint is required: an API address of %s", to)
	}
	from, closeFrom, err := connectRegion(l.inv.ctx, l.inv.opts)
	if err != nil {
		return from, target, nil, err
	}
	target, closeTo, err := connectRegion(l.inv.ctx, peer.options(l.inv.opts))
	if err != nil {
		closeFrom()
		return from, target, nil, err
	}
	done = func() { closeFrom(); closeTo() }
	if target.Name != to {
		done()
		return from, target, nil, &exitError{code: exitRejected, msg: fmt.Sprintf("--to-endpoint %s is in region %s, not %s", *peer.endpoint, target.Name, to)}
	}
	return from, target, done, nil
}

func runRegionSwitchover(l *leaf, args []string) error {
	to := l.fs.String("to", "", "the paired `REGION` taking over (required)")
	abort := l.fs.Bool("abort", false, "end a switchover in progress that promoted nothing (writes resume here)")
	wait := l.fs.Duration("wait", 5*time.Minute, "give up after `DURATION`")
	peer := l.peerFlags("to", "the target region's")
	if _, err := l.parse(args); err != nil {
		return err
	}
	if *to == "" {
		return l.usageErrorf("--to is required")
	}
	if *abort {
		st, err := callRegion(l, regionClient.GetFailoverStatus, &cofferv1.GetFailoverStatusRequest{})
		if err != nil {
			return err
		}
		resp, err := callRegion(l, regionClient.CompleteSwitchover, &cofferv1.CompleteSwitchoverRequest{Region: st.GetStatus().GetRegion(), ToRegion: *to, Abort: true})
		if err != nil {
			return err
		}
		return l.printLine(resp, fmt.Sprintf("switchover to %s aborted: %d secret(s) still primary here, %d replica(s) of %s", *to, len(resp.GetStillPrimary()), resp.GetHandedOver(), *to))
	}
	from, target, done, err := switchoverRegions(l, *to, peer)
	if err != nil {
		return err
	}
	defer done()
	ctx, cancel := context.WithTimeout(l.inv.ctx, *wait)
	defer cancel()
	res, err := failover.Switchover(ctx, from, target, progressTo(l))
	if err != nil {
		return err
	}
	return printResult(l, res, fmt.Sprintf("switched over %s → %s: %d secret(s) moved in %s (RPO 0: %s acknowledged through position %d before promoting)",
		res.From, res.To, res.Promoted, res.Done.Sub(res.Began).Round(time.Millisecond), res.To, res.ThroughSeq))
}

func runRegionFailback(l *leaf, args []string) error {
	to := l.fs.String("to", "", "the old primary `REGION` taking its secrets back (required)")
	wait := l.fs.Duration("wait", 5*time.Minute, "give up after `DURATION`")
	peer := l.peerFlags("to", "the old primary region's")
	if _, err := l.parse(args); err != nil {
		return err
	}
	if *to == "" {
		return l.usageErrorf("--to is required")
	}
	current, old, done, err := switchoverRegions(l, *to, peer)
	if err != nil {
		return err
	}
	defer done()
	ctx, cancel := context.WithTimeout(l.inv.ctx, *wait)
	defer cancel()
	res, err := failover.Failback(ctx, current, old, progressTo(l))
	if err != nil {
		return err
	}
	return printResult(l, res, fmt.Sprintf("failed back %s → %s: %d secret(s) moved in %s; diverged versions: coffer region diverged (against %s)",
		res.From, res.To, res.Promoted, res.Done.Sub(res.Began).Round(time.Millisecond), res.To))
}

func printResult(l *leaf, v any, line string) error {
	if l.inv.opts.output == outputJSON {
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(l.inv.stdout, "%s\n", b)
		return err
	}
	_, err := fmt.Fprintln(l.inv.stdout, line)
	return err
}

func runRegionDiverged(l *leaf, args []string) error {
	prefix := l.fs.String("prefix", "", "only secrets whose name starts with `PREFIX`")
	if _, err := l.parse(args); err != nil {
		return err
	}
	resp, err := callRegion(l, regionClient.ListDivergedVersions, &cofferv1.ListDivergedVersionsRequest{NamePrefix: *prefix})
	if err != nil {
		return err
	}
	if l.inv.opts.output == outputTable && len(resp.GetSecrets()) == 0 {
		_, err := fmt.Fprintln(l.inv.stdout, "no diverged versions")
		return err
	}
	return l.print(resp, func(t *table) {
		t.row("SECRET", "VERSION", "LABELS", "CREATED", "RESOLVE")
		for _, s := range resp.GetSecrets() {
			for _, v := range s.GetVersions() {
				how := fmt.Sprintf("coffer region diverged adopt %s %s | discard %s %s", s.GetName(), v.GetVersionId(), s.GetName(), v.GetVersionId())
				if s.GetReplica() {
					how = fmt.Sprintf("replica of %s: fail back first (coffer region failback --to <this region>), or copy by hand: coffer secrets get %s --version-id %s, then coffer secrets put in %s",
						s.GetPrimaryRegion(), s.GetName(), v.GetVersionId(), s.GetPrimaryRegion())
				}
				t.row(s.GetName(), v.GetVersionId(), strings.Join(v.GetLabels(), ","), formatTime(v.GetCreatedDate()), how)
			}
		}
	})
}

func runDivergedResolve(adopt bool) func(l *leaf, args []string) error {
	return func(l *leaf, args []string) error {
		pos, err := l.parse(args, "ID", "VERSION_ID")
		if err != nil {
			return err
		}
		resp, err := callRegion(l, regionClient.ResolveDivergedVersion, &cofferv1.ResolveDivergedVersionRequest{SecretId: pos[0], VersionId: pos[1], Adopt: adopt})
		if err != nil {
			return err
		}
		verb := "discarded"
		if adopt {
			verb = "adopted (now AWSCURRENT)"
		}
		return l.printLine(resp, fmt.Sprintf("%s version %s of %s", verb, resp.GetVersionId(), resp.GetArn()))
	}
}

func runDrill(l *leaf, args []string) error {
	var (
		primary   = l.fs.String("primary", "", "the primary `REGION` now (required; --endpoint or --primary-endpoint reaches it)")
		secondary = l.fs.String("secondary", "", "the paired `REGION` that takes over and hands back (required)")
		mode      = l.fs.String("mode", failover.ModeSwitchover, "`switchover` (planned, RPO 0) or failover (fence the primary, promote at once)")
		prefix    = l.fs.String("secrets", "", "watch the real secrets whose names start with `PREFIX` (metadata only)")
		canaries  = l.fs.Int("canary", 5, "`N` canary secrets to write")
		report    = l.fs.String("report", "", "write the Markdown report to `FILE`")
		asJSON    = l.fs.Bool("json", false, "print the report as JSON on stdout (the same as -o json)")
		maxRTO    = l.fs.Duration("max-rto", 0, "RTO target (`DURATION`); 0: none")
		maxRPO    = l.fs.Int("max-rpo", -1, "RPO target in changes (`N`); -1: none")
		converge  = l.fs.Duration("converge-timeout", time.Minute, "bound on each wait for the regions to converge (`DURATION`)")
		primEP    = l.fs.String("primary-endpoint", "", "the primary region's API `HOST:PORT` (default: --endpoint)")
		sec       = l.peerFlags("secondary", "the secondary region's")
	)
	if _, err := l.parse(args); err != nil {
		return err
	}
	switch {
	case *primary == "" || *secondary == "":
		return l.usageErrorf("--primary and --secondary are required")
	case *sec.endpoint == "":
		return l.usageErrorf("--secondary-endpoint is required: an API address of %s", *secondary)
	case *mode != failover.ModeSwitchover && *mode != failover.ModeFailover:
		return l.usageErrorf("--mode %q: want switchover or failover", *mode)
	case *canaries < 1 || *canaries > 100:
		return l.usageErrorf("--canary %d: want 1 to 100", *canaries)
	}
	po := l.inv.opts
	if *primEP != "" {
		po.endpoint = *primEP
	}
	p, closeP, err := connectRegion(l.inv.ctx, po)
	if err != nil {
		return err
	}
	defer closeP()
	s, closeS, err := connectRegion(l.inv.ctx, sec.options(po))
	if err != nil {
		return err
	}
	defer closeS()
	if p.Name != *primary || s.Name != *secondary {
		return &exitError{code: exitRejected, msg: fmt.Sprintf("the endpoints are in regions %s and %s, not %s and %s", p.Name, s.Name, *primary, *secondary)}
	}
	rep, runErr := failover.RunDrill(l.inv.ctx, failover.DrillConfig{
		Primary: p, Secondary: s, Mode: *mode, SecretsPrefix: *prefix, Canaries: *canaries,
		MaxRTO: *maxRTO, MaxRPO: *maxRPO, ConvergeTimeout: *converge, Progress: progressTo(l),
	})
	if rep == nil {
		return runErr
	}
	if *report != "" {
		f, err := os.Create(*report)
		if err != nil {
			return err
		}
		if err := rep.WriteMarkdown(f); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	if *asJSON || l.inv.opts.output == outputJSON {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return err
		}
		fmt.Fprintf(l.inv.stdout, "%s\n", b)
	} else if *report == "" {
		if err := rep.WriteMarkdown(l.inv.stdout); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(l.inv.stdout, "drill %s: %s (RTO %dms, failback RTO %dms, RPO %d); report in %s\n", rep.ID, rep.Verdict, rep.RTOMillis, rep.FailbackRTOMillis, rep.RPO.Changes, *report)
	}
	if runErr != nil {
		return runErr
	}
	if rep.Verdict != "PASS" {
		return &exitError{code: exitFailure, msg: fmt.Sprintf("drill %s failed its checks (see the report)", rep.ID)}
	}
	return nil
}
