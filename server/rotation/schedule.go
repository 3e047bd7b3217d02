package rotation

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// Limits of RotationRules, as AWS documents them.
const (
	MinDays      = 1
	MaxDays      = 1000
	MinInterval  = 4 * time.Hour // "at most every four hours"
	MaxWindow    = 24 * time.Hour
	maxCronYears = 5 // how far ahead a cron schedule is searched
)

// ErrInvalidRules is wrapped by every RotationRules validation failure; the
// message is the one a caller should read.
var ErrInvalidRules = errors.New("invalid rotation rules")

func rulesErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidRules, fmt.Sprintf(format, args...))
}

// Schedule is a parsed RotationRules: when rotation windows open and how
// long each stays open. All times are UTC.
//
// Windows open as AWS documents them: a whole-day schedule
// (AutomaticallyAfterDays, rate(N days)) at midnight UTC N days after the
// anchor's day; rate(N hours) on a fixed grid of every N hours counted
// from midnight UTC (1970-01-01), so rate(6 hours) opens at 00:00, 06:00,
// 12:00 and 18:00 every day; cron at the times it names. Without a
// Duration a window in hours (rate in hours, or a cron that fires at more
// than one hour of the day) closes after one hour, and a window in days
// closes at the end of its UTC day. A Duration never lets a window reach
// into the next UTC day or the next window: ParseRules refuses one that
// would.
type Schedule struct {
	every    time.Duration // rate and AutomaticallyAfterDays; 0 for cron
	days     bool          // a whole-day rate: windows open at midnight UTC
	cron     *cronExpr
	window   time.Duration // 0: the default for the schedule's kind
	explicit bool          // window came from Duration
}

// hourlyWindow is how long a window of a schedule in hours stays open
// without a Duration.
const hourlyWindow = time.Hour

var (
	ratePattern     = regexp.MustCompile(`^rate\(\s*([0-9]+)\s+(hour|hours|day|days)\s*\)$`)
	cronPattern     = regexp.MustCompile(`^cron\((.*)\)$`)
	durationPattern = regexp.MustCompile(`^([0-9]{1,2})h$`)
)

// ParseRules validates rules and returns their schedule. Exactly one of
// AutomaticallyAfterDays and ScheduleExpression must be set.
func ParseRules(r *cofferv1.RotationRules) (*Schedule, error) {
	if r == nil {
		return nil, rulesErr("You must specify AutomaticallyAfterDays or ScheduleExpression.")
	}
	hasDays, expr := r.AutomaticallyAfterDays != nil, strings.TrimSpace(r.GetScheduleExpression())
	var s *Schedule
	switch {
	case hasDays && expr != "":
		return nil, rulesErr("You can't specify both AutomaticallyAfterDays and ScheduleExpression.")
	case hasDays:
		d := r.GetAutomaticallyAfterDays()
		if d < MinDays || d > MaxDays {
			return nil, rulesErr("AutomaticallyAfterDays must be between %d and %d.", MinDays, MaxDays)
		}
		s = &Schedule{every: time.Duration(d) * 24 * time.Hour, days: true}
	case expr == "":
		return nil, rulesErr("You must specify AutomaticallyAfterDays or ScheduleExpression.")
	case ratePattern.MatchString(expr):
		m := ratePattern.FindStringSubmatch(expr)
		n, err := strconv.Atoi(m[1])
		if err != nil || n < 1 {
			return nil, rulesErr("The rate expression %s needs a positive whole number.", expr)
		}
		if strings.HasPrefix(m[2], "day") {
			if n > MaxDays {
				return nil, rulesErr("A rate expression can rotate at most every %d days.", MaxDays)
			}
			s = &Schedule{every: time.Duration(n) * 24 * time.Hour, days: true}
		} else {
			if n > MaxDays*24 {
				return nil, rulesErr("A rate expression can rotate at most every %d days.", MaxDays)
			}
			s = &Schedule{every: time.Duration(n) * time.Hour}
		}
		if s.every < MinInterval {
			return nil, rulesErr("The schedule expression %s rotates more often than every four hours.", expr)
		}
	case cronPattern.MatchString(expr):
		c, err := parseCron(cronPattern.FindStringSubmatch(expr)[1])
		if err != nil {
			return nil, rulesErr("The schedule expression %s is not valid: %v.", expr, err)
		}
		s = &Schedule{cron: c}
	default:
		return nil, rulesErr("The schedule expression %s must be rate(N hours|days) or cron(...).", expr)
	}
	if d := r.GetDuration(); d != "" {
		m := durationPattern.FindStringSubmatch(d)
		if m == nil {
			return nil, rulesErr("Duration %s must be a number of hours, such as 3h.", d)
		}
		h, _ := strconv.Atoi(m[1])
		if h < 1 || h > 24 {
			return nil, rulesErr("Duration must be between 1h and 24h.")
		}
		s.window, s.explicit = time.Duration(h)*time.Hour, true
		if err := s.checkWindow(expr, d); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// checkWindow refuses a Duration that would let a window reach into the
// next rotation window or into the next UTC day, as AWS does. Every
// window of a schedule opens at one of a fixed set of times of day, so
// checking those times checks every window.
func (s *Schedule) checkWindow(expr, d string) error {
	if expr == "" {
		expr = "AutomaticallyAfterDays"
	}
	switch {
	case s.days:
		// Windows open at midnight and are at least a day apart; a
		// Duration of at most 24h (checked above) fits.
		return nil
	case s.cron != nil:
		times := s.cron.timesOfDay()
		last := times[len(times)-1]
		for i := 1; i < len(times); i++ {
			if gap := times[i] - times[i-1]; s.window > gap {
				return rulesErr("The rotation window (Duration %s) must not extend into the next rotation window: %s opens windows %s apart (%s and %s UTC).",
					d, expr, fmtHours(gap), clock(times[i-1]), clock(times[i]))
			}
		}
		if last+s.window > 24*time.Hour {
			return rulesErr("The rotation window (Duration %s) must not extend into the next UTC day: %s opens a window at %s UTC.", d, expr, clock(last))
		}
		return nil
	}
	if s.window > s.every {
		return rulesErr("The rotation window (Duration %s) must not extend into the next rotation window: %s opens one every %s.", d, expr, fmtHours(s.every))
	}
	// The grid's windows open at every multiple of gcd(N, 24) hours of the
	// day, the latest 24h minus that; a window must close by midnight.
	if step := time.Duration(gcd(int(s.every/time.Hour), 24)) * time.Hour; s.window > step {
		return rulesErr("The rotation window (Duration %s) must not extend into the next UTC day: %s opens a window at %s UTC on some days.",
			d, expr, clock(24*time.Hour-step))
	}
	return nil
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// clock renders a time of day as HH:MM.
func clock(d time.Duration) string {
	return fmt.Sprintf("%02d:%02d", int(d/time.Hour), int(d%time.Hour/time.Minute))
}

// fmtHours renders a duration as AWS writes Durations, 3h, or 3h30m.
func fmtHours(d time.Duration) string {
	if d%time.Hour == 0 {
		return fmt.Sprintf("%dh", int(d/time.Hour))
	}
	return fmt.Sprintf("%dh%dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
}

// windowAt is how long the window that opens at start stays open.
func (s *Schedule) windowAt(start time.Time) time.Duration {
	switch {
	case s.explicit:
		return s.window
	case s.cron != nil && len(s.cron.hours) > 1:
		// A cron schedule in hours: its window closes after an hour.
		return hourlyWindow
	case s.cron != nil:
		// A cron schedule in days closes at the end of its UTC day.
		return utcDay(start).Add(24 * time.Hour).Sub(start)
	case !s.days:
		return hourlyWindow
	}
	return 24 * time.Hour
}

// next is the first window start strictly after t.
func (s *Schedule) next(t time.Time) time.Time {
	t = t.UTC()
	switch {
	case s.cron != nil:
		return s.cron.next(t)
	case s.days:
		return utcDay(t).Add(s.every)
	}
	// The next point of the grid of every s.every from the Unix epoch,
	// which is a UTC midnight.
	since := t.Sub(time.Unix(0, 0).UTC())
	return time.Unix(0, 0).UTC().Add((since/s.every + 1) * s.every)
}

// Window returns the rotation window that follows anchor (the last
// rotation, or when rotation was configured) as it stands at now: the
// first window after anchor, or, when that one has closed without a
// rotation (the region had no leader, say), the next one still open or
// ahead. ok is false when the schedule has no further window.
func (s *Schedule) Window(anchor, now time.Time) (start, end time.Time, ok bool) {
	start = s.next(anchor)
	for range 100000 {
		if start.IsZero() {
			return time.Time{}, time.Time{}, false
		}
		end = start.Add(s.windowAt(start))
		if now.Before(end) {
			return start, end, true
		}
		if s.cron == nil && !s.days {
			// Skip whole missed intervals at once.
			if k := now.Sub(start) / s.every; k > 1 {
				start = start.Add((k - 1) * s.every)
				continue
			}
		}
		start = s.next(start)
	}
	return time.Time{}, time.Time{}, false
}

// Due reports whether a rotation should start at now.
func (s *Schedule) Due(anchor, now time.Time) bool {
	start, _, ok := s.Window(anchor, now)
	return ok && !now.Before(start)
}

func utcDay(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}
