package failover

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// Drill modes.
const (
	ModeSwitchover = "switchover"
	ModeFailover   = "failover"
)

// CanaryPrefix starts the name of every canary secret a drill writes:
// coffer-drill/<drill id>/canary-<n>. A policy can allow a drill operator
// secretsmanager:* on these names and the coffer: region actions, and no
// other secret's value.
const CanaryPrefix = "coffer-drill/"

// DrillConfig describes one drill.
type DrillConfig struct {
	// Primary is the region primary now; Secondary the paired region that
	// takes over for the drill and hands back.
	Primary, Secondary Region
	// Mode is ModeSwitchover (planned, RPO 0) or ModeFailover (the primary
	// is fenced and the secondary promoted without waiting).
	Mode string
	// SecretsPrefix, when set, names real secrets to watch: their current
	// version must be in the new primary after each transition (metadata
	// only; their values are never read).
	SecretsPrefix string
	// Canaries is how many canary secrets are written (default 5).
	Canaries int
	// MaxRTO and MaxRPO are the targets of the verdict; MaxRPO < 0 means
	// no RPO target.
	MaxRTO time.Duration
	MaxRPO int
	// ConvergeTimeout bounds each wait for the regions to converge
	// (default 60s).
	ConvergeTimeout time.Duration
	// Progress receives each step as it happens.
	Progress Progress
}

// Event is one step of the drill's timeline.
type Event struct {
	At   time.Time `json:"at"`
	Step string    `json:"step"`
}

// LostWrite is a canary write the old primary acknowledged that the new
// primary did not have when it took over.
type LostWrite struct {
	Canary         string    `json:"canary"`
	VersionID      string    `json:"versionId"`
	AcknowledgedAt time.Time `json:"acknowledgedAt"`
	// DivergedAfterFailback is true when the old primary listed it as a
	// diverged version once it returned.
	DivergedAfterFailback bool `json:"divergedAfterFailback"`
}

// RPO is what the cut left behind.
type RPO struct {
	// UnshippedAtCut counts the changes for the secondary the primary had
	// not had acknowledged when it was cut (fenced, or switched over: 0).
	UnshippedAtCut uint64 `json:"unshippedAtCut"`
	// UnshippedSecrets names the secrets of those changes.
	UnshippedSecrets []string `json:"unshippedSecrets,omitempty"`
	// LostWrites are the acknowledged canary writes missing in the new
	// primary after the promotion.
	LostWrites []LostWrite `json:"lostWrites,omitempty"`
	// Changes is the RPO judged against the target: lost canary writes,
	// or the unshipped changes at the cut when larger.
	Changes int `json:"changes"`
}

// CanaryStats accounts for every canary write.
type CanaryStats struct {
	Secrets      []string       `json:"secrets"`
	Attempted    int            `json:"writesAttempted"`
	Acknowledged int            `json:"writesAcknowledged"`
	ByRegion     map[string]int `json:"acknowledgedByRegion"`
	// Accounted counts acknowledged writes found in the final primary
	// (Diverged of them under a COFFER_DIVERGED_ label).
	Accounted int `json:"accounted"`
	Diverged  int `json:"diverged"`
	// Unaccounted lists acknowledged writes found nowhere (canary/version).
	Unaccounted []string `json:"unaccounted,omitempty"`
	// Errors counts refused or failed writes by region and error type.
	Errors map[string]int `json:"errors,omitempty"`
	// CleanedUp is true once every canary was deleted in both regions.
	CleanedUp bool `json:"cleanedUp"`
}

// Watched is a real secret followed by prefix.
type Watched struct {
	Name             string `json:"name"`
	CurrentVersionID string `json:"currentVersionId"`
	Problem          string `json:"problem,omitempty"`
}

// Check is one verification and its outcome.
type Check struct {
	Name   string `json:"name"`
	Passed bool   `json:"passed"`
	Detail string `json:"detail,omitempty"`
}

// Report is a drill's outcome, for the operator and the auditor.
type Report struct {
	ID        string    `json:"id"`
	Mode      string    `json:"mode"`
	Primary   string    `json:"primary"`
	Secondary string    `json:"secondary"`
	Started   time.Time `json:"started"`
	Finished  time.Time `json:"finished"`
	Timeline  []Event   `json:"timeline"`
	// LagBeforeCut is the primary's backlog for the secondary just before
	// the cut.
	PendingBeforeCut uint64    `json:"pendingBeforeCut"`
	LagBeforeCutSecs float64   `json:"lagBeforeCutSeconds"`
	Cut              time.Time `json:"cut"`
	// RTOMillis is the time from the cut until a canary write succeeded in
	// the secondary; FailbackRTOMillis the same for the hand-back.
	RTOMillis         int64 `json:"rtoMillis"`
	FailbackRTOMillis int64 `json:"failbackRtoMillis"`
	RPO               RPO   `json:"rpo"`
	// SecretsMoved is how many secrets the secondary took over;
	// SecretsMovedBack how many the primary took back.
	SecretsMoved     int         `json:"secretsMoved"`
	SecretsMovedBack int         `json:"secretsMovedBack"`
	Watched          []Watched   `json:"watched,omitempty"`
	Canaries         CanaryStats `json:"canaries"`
	Checks           []Check     `json:"checks"`
	MaxRTOMillis     int64       `json:"maxRtoMillis"`
	MaxRPO           int         `json:"maxRpo"`
	// Verdict is PASS when every check passed.
	Verdict string   `json:"verdict"`
	Errors  []string `json:"errors,omitempty"`
}

type write struct {
	canary, version, region string
	at                      time.Time
}

// drill is one run.
type drill struct {
	cfg     DrillConfig
	r       *Report
	names   []string
	mu      sync.Mutex
	writes  []write
	errs    map[string]int
	tries   int
	last    map[string]write // canary → last acknowledged write
	stop    chan struct{}
	stopped chan struct{}
}

// RunDrill runs a complete drill and returns its report. An error means
// the drill could not run to its end; the report then says how far it got
// (its verdict is FAIL), and the canaries are deleted where possible.
func RunDrill(ctx context.Context, cfg DrillConfig) (*Report, error) {
	if cfg.Canaries <= 0 {
		cfg.Canaries = 5
	}
	if cfg.ConvergeTimeout <= 0 {
		cfg.ConvergeTimeout = 60 * time.Second
	}
	switch {
	case cfg.Mode != ModeSwitchover && cfg.Mode != ModeFailover:
		return nil, fmt.Errorf("drill mode %q: want %s or %s", cfg.Mode, ModeSwitchover, ModeFailover)
	case cfg.Primary.Name == "" || cfg.Secondary.Name == "" || cfg.Primary.Name == cfg.Secondary.Name:
		return nil, errors.New("a drill needs two distinct regions, primary and secondary")
	case cfg.Canaries > 100:
		return nil, errors.New("at most 100 canaries")
	}
	var idb [4]byte
	_, _ = rand.Read(idb[:])
	d := &drill{cfg: cfg, errs: map[string]int{}, last: map[string]write{}}
	d.r = &Report{
		ID: time.Now().UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(idb[:]), Mode: cfg.Mode,
		Primary: cfg.Primary.Name, Secondary: cfg.Secondary.Name, Started: time.Now(),
		MaxRTOMillis: cfg.MaxRTO.Milliseconds(), MaxRPO: cfg.MaxRPO,
	}
	for i := range cfg.Canaries {
		d.names = append(d.names, fmt.Sprintf("%s%s/canary-%d", CanaryPrefix, d.r.ID, i))
	}
	d.r.Canaries.Secrets = d.names
	err := d.run(ctx)
	d.stopWriter()
	d.account()
	d.cleanup()
	if err != nil {
		d.r.Errors = append(d.r.Errors, err.Error())
		d.step("drill stopped: %v", err)
	}
	d.judge()
	d.r.Finished = time.Now()
	d.step("verdict: %s", d.r.Verdict)
	return d.r, err
}

func (d *drill) step(format string, args ...any) {
	e := Event{At: time.Now(), Step: fmt.Sprintf(format, args...)}
	d.mu.Lock()
	d.r.Timeline = append(d.r.Timeline, e)
	d.mu.Unlock()
	if d.cfg.Progress != nil {
		d.cfg.Progress(e.At, e.Step)
	}
}

func (d *drill) check(name string, ok bool, format string, args ...any) {
	d.r.Checks = append(d.r.Checks, Check{Name: name, Passed: ok, Detail: fmt.Sprintf(format, args...)})
}

func (d *drill) run(ctx context.Context) error {
	p, s := d.cfg.Primary, d.cfg.Secondary
	d.step("drill %s: %s of %s → %s and back, %d canaries", d.r.ID, d.cfg.Mode, p.Name, s.Name, len(d.names))
	for _, reg := range []Region{p, s} {
		st, err := retry(ctx, func(ctx context.Context) (*cofferv1.GetFailoverStatusResponse, error) {
			return reg.regions().GetFailoverStatus(ctx, &cofferv1.GetFailoverStatusRequest{})
		})
		if err != nil {
			return fmt.Errorf("status of %s: %w", reg.Name, err)
		}
		if st.GetStatus().GetFenced() || st.GetStatus().GetSwitchoverTo() != "" {
			return fmt.Errorf("%s is fenced or switching over already; unfence it or finish the switchover first", reg.Name)
		}
	}
	if err := d.watch(ctx); err != nil {
		return err
	}
	if err := d.createCanaries(ctx); err != nil {
		return err
	}
	d.startWriter()
	time.Sleep(time.Second) // canary writes flow before the cut
	if st, err := p.regions().GetFailoverStatus(ctx, &cofferv1.GetFailoverStatusRequest{}); err == nil {
		for _, ps := range st.GetStatus().GetPending() {
			if ps.GetRegion() == s.Name {
				d.r.PendingBeforeCut = ps.GetPendingChanges()
				if ps.GetOldestPending() != nil {
					d.r.LagBeforeCutSecs = time.Since(ps.GetOldestPending().AsTime()).Seconds()
				}
			}
		}
	}
	d.step("replication lag before the cut: %d change(s) pending, %.3fs", d.r.PendingBeforeCut, d.r.LagBeforeCutSecs)

	d.r.Cut = time.Now()
	if d.cfg.Mode == ModeSwitchover {
		res, err := Switchover(ctx, p, s, d.say)
		if err != nil {
			return err
		}
		d.r.SecretsMoved = res.Promoted
		if err := d.findLost(ctx); err != nil {
			return err
		}
	} else {
		d.step("cut: fencing %s (it refuses writes to its primary secrets)", p.Name)
		fenced, err := retry(ctx, func(ctx context.Context) (*cofferv1.FenceRegionResponse, error) {
			return p.regions().FenceRegion(ctx, &cofferv1.FenceRegionRequest{Region: p.Name, Reason: "coffer drill " + d.r.ID})
		})
		if err != nil {
			return fmt.Errorf("fence %s: %w", p.Name, err)
		}
		for _, ps := range fenced.GetStatus().GetPending() {
			if ps.GetRegion() == s.Name {
				d.r.RPO.UnshippedAtCut, d.r.RPO.UnshippedSecrets = ps.GetPendingChanges(), ps.GetSecrets()
			}
		}
		d.step("%s fenced with %d change(s) for %s unshipped", p.Name, d.r.RPO.UnshippedAtCut, s.Name)
		promoted, err := retry(ctx, func(ctx context.Context) (*cofferv1.PromoteRegionResponse, error) {
			return onLeader(s, func(c cofferv1.RegionServiceClient) (*cofferv1.PromoteRegionResponse, error) {
				return c.PromoteRegion(ctx, &cofferv1.PromoteRegionRequest{Region: s.Name, FromRegion: p.Name, Planned: true})
			})
		})
		if err != nil {
			return fmt.Errorf("promote %s: %w", s.Name, err)
		}
		d.r.SecretsMoved = len(promoted.GetPromoted())
		d.step("%s promoted %d replica(s) of %s without waiting (failover)", s.Name, d.r.SecretsMoved, p.Name)
		if err := d.findLost(ctx); err != nil {
			return err
		}
	}
	rto, err := d.waitWrite(ctx, s.Name, d.r.Cut)
	if err != nil {
		return err
	}
	d.r.RTOMillis = rto.Milliseconds()
	d.step("RTO: canary writes succeed in %s %s after the cut", s.Name, rto.Round(time.Millisecond))
	d.verify(ctx, s, p, "after "+d.cfg.Mode)

	if d.cfg.Mode == ModeFailover {
		if err := d.checkDiverged(ctx); err != nil {
			return err
		}
	}
	back := time.Now()
	d.step("failback: %s hands primacy back to %s", s.Name, p.Name)
	res, err := Failback(ctx, s, p, d.say)
	if err != nil {
		return err
	}
	d.r.SecretsMovedBack = res.Promoted
	rto, err = d.waitWrite(ctx, p.Name, back)
	if err != nil {
		return err
	}
	d.r.FailbackRTOMillis = rto.Milliseconds()
	d.step("failback RTO: canary writes succeed in %s %s after the failback began", p.Name, rto.Round(time.Millisecond))
	d.verify(ctx, p, s, "after failback")
	return nil
}

func (d *drill) say(at time.Time, step string) {
	d.mu.Lock()
	d.r.Timeline = append(d.r.Timeline, Event{At: at, Step: step})
	d.mu.Unlock()
	if d.cfg.Progress != nil {
		d.cfg.Progress(at, step)
	}
}

// watch notes the real secrets under the prefix that replicate to the
// secondary, and their current versions.
func (d *drill) watch(ctx context.Context) error {
	if d.cfg.SecretsPrefix == "" {
		return nil
	}
	token := ""
	for {
		resp, err := retry(ctx, func(ctx context.Context) (*cofferv1.ListSecretsResponse, error) {
			return d.cfg.Primary.secrets().ListSecrets(ctx, &cofferv1.ListSecretsRequest{
				Filters: []*cofferv1.Filter{{Key: "name", Values: []string{d.cfg.SecretsPrefix}}}, NextToken: token,
			})
		})
		if err != nil {
			return fmt.Errorf("list secrets %s* in %s: %w", d.cfg.SecretsPrefix, d.cfg.Primary.Name, err)
		}
		for _, e := range resp.GetSecretList() {
			if !strings.HasPrefix(e.GetName(), d.cfg.SecretsPrefix) || e.GetPrimaryRegion() != d.cfg.Primary.Name {
				continue
			}
			cur := ""
			for id, st := range e.GetSecretVersionsToStages() {
				if slices.Contains(st.GetStages(), "AWSCURRENT") {
					cur = id
				}
			}
			d.r.Watched = append(d.r.Watched, Watched{Name: e.GetName(), CurrentVersionID: cur})
		}
		if token = resp.GetNextToken(); token == "" {
			break
		}
	}
	d.step("watching %d secret(s) under %s", len(d.r.Watched), d.cfg.SecretsPrefix)
	return nil
}

func newToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func (d *drill) canaryValue(name, version string) string {
	return "coffer drill canary " + name + " " + version
}

// createCanaries creates the canaries in the primary, replicated to the
// secondary, and waits for their replicas.
func (d *drill) createCanaries(ctx context.Context) error {
	p, s := d.cfg.Primary, d.cfg.Secondary
	for _, name := range d.names {
		tok := newToken()
		v := d.canaryValue(name, tok)
		_, err := retry(ctx, func(ctx context.Context) (*cofferv1.CreateSecretResponse, error) {
			return p.secrets().CreateSecret(ctx, &cofferv1.CreateSecretRequest{
				Name: name, SecretString: &v, ClientRequestToken: tok, Description: "coffer drill canary; deleted when the drill ends",
				AddReplicaRegions: []*cofferv1.ReplicaRegion{{Region: s.Name}},
			})
		})
		if err != nil {
			return fmt.Errorf("create canary %s in %s: %w", name, p.Name, err)
		}
		d.mu.Lock()
		d.tries++
		d.mu.Unlock()
		d.ack(write{canary: name, version: tok, region: p.Name, at: time.Now()})
	}
	d.step("created %d canaries in %s, replicated to %s", len(d.names), p.Name, s.Name)
	for _, name := range d.names {
		w := d.lastWrite(name)
		if err := d.waitRead(ctx, s, w, p.Name); err != nil {
			return err
		}
	}
	d.step("every canary replica is readable in %s", s.Name)
	return nil
}

func (d *drill) ack(w write) {
	d.mu.Lock()
	d.writes = append(d.writes, w)
	d.last[w.canary] = w
	d.mu.Unlock()
}

func (d *drill) lastWrite(name string) write {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.last[name]
}

// waitRead waits until reg serves w's version of its canary with the
// right value and primary region.
func (d *drill) waitRead(ctx context.Context, reg Region, w write, primary string) error {
	wctx, cancel := context.WithTimeout(ctx, d.cfg.ConvergeTimeout)
	defer cancel()
	var last error
	for {
		cctx, ccancel := context.WithTimeout(wctx, 5*time.Second)
		got, err := reg.secrets().GetSecretValue(cctx, &cofferv1.GetSecretValueRequest{SecretId: w.canary, VersionId: w.version})
		var desc *cofferv1.DescribeSecretResponse
		if err == nil {
			desc, err = reg.secrets().DescribeSecret(cctx, &cofferv1.DescribeSecretRequest{SecretId: w.canary})
		}
		ccancel()
		switch {
		case err != nil:
			last = err
		case got.GetSecretString() != d.canaryValue(w.canary, w.version):
			return fmt.Errorf("canary %s version %s in %s has another value than written", w.canary, w.version, reg.Name)
		case desc.GetPrimaryRegion() != primary:
			last = fmt.Errorf("its primary region is %s, not yet %s", desc.GetPrimaryRegion(), primary)
		default:
			return nil
		}
		select {
		case <-wctx.Done():
			return fmt.Errorf("canary %s version %s not readable in %s with primary %s within %s: %v", w.canary, w.version, reg.Name, primary, d.cfg.ConvergeTimeout, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// startWriter runs the canary writer: round robin over the canaries, one
// write at a time, each canary written about once a second (so a drill of
// a minute stays far below the versions quota). A write goes to the
// region that took the last one; refused there, it is tried in the other
// region at once, with the same token, so the first region to take writes
// after a cut is found as soon as it does.
func (d *drill) startWriter() {
	d.stop, d.stopped = make(chan struct{}), make(chan struct{})
	interval := max(time.Second/time.Duration(len(d.names)), 20*time.Millisecond)
	go func() {
		defer close(d.stopped)
		regions := []Region{d.cfg.Primary, d.cfg.Secondary}
		pref := 0
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-d.stop:
				return
			case <-tick.C:
			}
			name := d.names[i%len(d.names)]
			tok := newToken()
			v := d.canaryValue(name, tok)
			// A write refused by both regions is retried (same token) every
			// 20 ms rather than at the next tick, so RTO is measured to
			// that resolution, not the write interval's.
			for done := false; !done; {
				done = d.writeOnce(regions, &pref, name, tok, v)
				if !done {
					select {
					case <-d.stop:
						return
					case <-time.After(20 * time.Millisecond):
					}
				}
			}
		}
	}()
}

// writeOnce tries one canary write in the preferred region, then the
// other; it reports whether one acknowledged it.
func (d *drill) writeOnce(regions []Region, pref *int, name, tok, v string) bool {
	for k := range 2 {
		reg := regions[(*pref+k)%2]
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := reg.secrets().PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: name, SecretString: &v, ClientRequestToken: tok})
		cancel()
		d.mu.Lock()
		d.tries++
		if err != nil {
			d.errs[reg.Name+": "+errType(err)]++
		}
		d.mu.Unlock()
		if err == nil {
			d.ack(write{canary: name, version: tok, region: reg.Name, at: time.Now()})
			*pref = (*pref + k) % 2
			return true
		}
	}
	return false
}

func (d *drill) stopWriter() {
	if d.stop != nil {
		close(d.stop)
		<-d.stopped
		d.stop = nil
	}
}

// errType is the AWS error type of a refusal, or its gRPC code.
func errType(err error) string {
	st, ok := status.FromError(err)
	if !ok {
		return "transport"
	}
	for _, det := range st.Details() {
		if t := reasonOf(det); t != "" {
			return t
		}
	}
	return st.Code().String()
}

// waitWrite waits for a canary write acknowledged by region after since.
func (d *drill) waitWrite(ctx context.Context, region string, since time.Time) (time.Duration, error) {
	wctx, cancel := context.WithTimeout(ctx, d.cfg.ConvergeTimeout)
	defer cancel()
	for {
		d.mu.Lock()
		for _, w := range d.writes {
			if w.region == region && w.at.After(since) {
				d.mu.Unlock()
				return w.at.Sub(since), nil
			}
		}
		d.mu.Unlock()
		select {
		case <-wctx.Done():
			return 0, fmt.Errorf("no canary write succeeded in %s within %s", region, d.cfg.ConvergeTimeout)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// versions lists every version id of a canary in reg, with its labels.
func versions(ctx context.Context, reg Region, name string) (map[string][]string, error) {
	out := map[string][]string{}
	token := ""
	for {
		resp, err := retry(ctx, func(ctx context.Context) (*cofferv1.ListSecretVersionIdsResponse, error) {
			return reg.secrets().ListSecretVersionIds(ctx, &cofferv1.ListSecretVersionIdsRequest{SecretId: name, IncludeDeprecated: true, NextToken: token})
		})
		if err != nil {
			return nil, err
		}
		for _, v := range resp.GetVersions() {
			out[v.GetVersionId()] = append([]string{}, v.GetVersionStages()...) // non-nil: present
		}
		if token = resp.GetNextToken(); token == "" {
			return out, nil
		}
	}
}

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
