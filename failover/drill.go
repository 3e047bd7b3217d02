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
