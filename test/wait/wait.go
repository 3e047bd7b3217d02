package wait

import (
	"testing"
	"time"
)

// Interval is how often a condition is polled.
const Interval = 10 * time.Millisecond

// Until polls cond until it returns nil, failing tb with cond's last error
// once timeout has passed. Call it from the test goroutine.
func Until(tb testing.TB, timeout time.Duration, cond func() error) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(Interval)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("not so after %s: %v", timeout, err)
		}
		<-tick.C
	}
}

// True is Until for a condition that only says yes or no; what names it
// in the failure.
func True(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	Until(tb, timeout, func() error {
		if cond() {
			return nil
		}
		return unmet(what)
	})
}

type unmet string

func (u unmet) Error() string { return "still waiting for " + string(u) }
