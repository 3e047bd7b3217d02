package failover

import (
	"context"
	"fmt"
	"time"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// Progress receives one line per step of a procedure, as it happens.
type Progress func(at time.Time, step string)

func (p Progress) say(format string, args ...any) {
	if p != nil {
		p(time.Now(), fmt.Sprintf(format, args...))
	}
}

// SwitchoverResult is what a switchover did.
type SwitchoverResult struct {
	From, To string
	// ThroughSeq is the feed position of From that To acknowledged before
	// anything was promoted: every change accepted in From.
	ThroughSeq uint64
	// Moved names the secrets handed over; Failed those whose replica in
	// To was Failed (they stay primary in From).
	Moved, Failed []string
	// Promoted counts the replicas To promoted.
	Promoted int
	// Began is when writes stopped, Drained when To acknowledged every
	// change, Promoted when To took over, Done when From was its replica.
	Began, Drained, PromotedAt, Done time.Time
}

// Switchover hands primacy of the secrets from replicates to to: from
// refuses writes to them (retryably, naming to), waits until to has
// acknowledged every change (lag 0), to promotes its replicas of them
// (higher epoch) after checking it applied everything from acknowledged,
// and from becomes their replica. No acknowledged write is left behind.
// A failure before to promoted anything aborts the switchover (writes go
// on in from); after, running it again finishes it.
func Switchover(ctx context.Context, from, to Region, progress Progress) (*SwitchoverResult, error) {
	res := &SwitchoverResult{From: from.Name, To: to.Name, Began: time.Now()}
	progress.say("switchover %s → %s: %s stops writes to the secrets it replicates to %s and drains its feed", from.Name, to.Name, from.Name, to.Name)
	begin, err := retry(ctx, func(ctx context.Context) (*cofferv1.BeginSwitchoverResponse, error) {
		return from.regions().BeginSwitchover(ctx, &cofferv1.BeginSwitchoverRequest{Region: from.Name, ToRegion: to.Name})
	})
	if err != nil {
		abort(from, to, progress)
		return res, fmt.Errorf("begin the switchover in %s: %w", from.Name, err)
	}
	res.Drained, res.ThroughSeq, res.Moved, res.Failed = time.Now(), begin.GetThroughSeq(), begin.GetSecrets(), begin.GetFailed()
	progress.say("%s acknowledged every change through position %d (lag 0): %d secret(s) to hand over, %d with a Failed replica stay", to.Name, res.ThroughSeq, len(res.Moved), len(res.Failed))
	promoted, err := retry(ctx, func(ctx context.Context) (*cofferv1.PromoteRegionResponse, error) {
		return onLeader(to, func(c cofferv1.RegionServiceClient) (*cofferv1.PromoteRegionResponse, error) {
			return c.PromoteRegion(ctx, &cofferv1.PromoteRegionRequest{Region: to.Name, FromRegion: from.Name, Planned: true, MinAppliedSeq: res.ThroughSeq})
		})
	})
	if err != nil {
		abort(from, to, progress)
		return res, fmt.Errorf("promote in %s: %w", to.Name, err)
	}
	res.PromotedAt, res.Promoted = time.Now(), len(promoted.GetPromoted())
	progress.say("%s promoted %d replica(s) of %s: it is their primary now", to.Name, res.Promoted, from.Name)
	done, err := retry(ctx, func(ctx context.Context) (*cofferv1.CompleteSwitchoverResponse, error) {
		return from.regions().CompleteSwitchover(ctx, &cofferv1.CompleteSwitchoverRequest{Region: from.Name, ToRegion: to.Name})
	})
	if err != nil {
		return res, fmt.Errorf("complete the switchover in %s (run it again to finish): %w", from.Name, err)
	}
	res.Done = time.Now()
	progress.say("%s holds %d replica(s) of %s; switchover complete in %s", from.Name, done.GetHandedOver(), to.Name, res.Done.Sub(res.Began).Round(time.Millisecond))
	return res, nil
}

// abort ends a switchover that promoted nothing, so from takes writes again.
func abort(from, to Region, progress Progress) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := retry(ctx, func(ctx context.Context) (*cofferv1.CompleteSwitchoverResponse, error) {
		return from.regions().CompleteSwitchover(ctx, &cofferv1.CompleteSwitchoverRequest{Region: from.Name, ToRegion: to.Name, Abort: true})
	})
	if err != nil {
		progress.say("aborting the switchover in %s failed (run coffer region switchover --abort): %v", from.Name, err)
		return
	}
	progress.say("switchover aborted: %s takes writes again", from.Name)
}

// Failback makes old, the primary region before a failover to current,
// primary again: old must have returned as current's replica; it is
// unfenced (a fenced region takes nothing over) and current switches over
// to it, which waits until old has caught up (lag 0) before promoting.
func Failback(ctx context.Context, current, old Region, progress Progress) (*SwitchoverResult, error) {
	st, err := retry(ctx, func(ctx context.Context) (*cofferv1.GetFailoverStatusResponse, error) {
		return old.regions().GetFailoverStatus(ctx, &cofferv1.GetFailoverStatusRequest{})
	})
	if err != nil {
		return nil, fmt.Errorf("status of %s: %w", old.Name, err)
	}
	if st.GetStatus().GetFenced() {
		progress.say("unfencing %s before it takes over again", old.Name)
		if _, err := retry(ctx, func(ctx context.Context) (*cofferv1.UnfenceRegionResponse, error) {
			return old.regions().UnfenceRegion(ctx, &cofferv1.UnfenceRegionRequest{Region: old.Name})
		}); err != nil {
			return nil, fmt.Errorf("unfence %s: %w", old.Name, err)
		}
	}
	return Switchover(ctx, current, old, progress)
}
