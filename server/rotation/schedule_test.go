package rotation

import (
	"errors"
	"strings"
	"testing"
	"time"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

func ptr[T any](v T) *T { return &v }

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestParseRulesRejects(t *testing.T) {
	t.Parallel()
	for _, r := range []*cofferv1.RotationRules{
		nil,
		{},
		{AutomaticallyAfterDays: ptr[int64](0)},
		{AutomaticallyAfterDays: ptr[int64](1001)},
		{AutomaticallyAfterDays: ptr[int64](7), ScheduleExpression: "rate(7 days)"},
		{ScheduleExpression: "rate(3 hours)"},
		{ScheduleExpression: "rate(0 days)"},
		{ScheduleExpression: "rate(1 week)"},
		{ScheduleExpression: "every day"},
		{ScheduleExpression: "cron(0 * * * ? *)"},    // hourly
		{ScheduleExpression: "cron(0,30 8 * * ? *)"}, // twice an hour
		{ScheduleExpression: "cron(0 8,10 * * ? *)"}, // two hours apart
		{ScheduleExpression: "cron(0 1,22 * * ? *)"}, // three hours apart across midnight
		{ScheduleExpression: "cron(0 8 * * * *)"},    // both day fields
		{ScheduleExpression: "cron(0 8 ? * ? *)"},    // neither
		{ScheduleExpression: "cron(0 8 * *)"},        // too few fields
		{ScheduleExpression: "cron(0 25 * * ? *)"},   // no hour 25
		{ScheduleExpression: "rate(10 days)", Duration: "25h"},
		{ScheduleExpression: "rate(4 hours)", Duration: "5h"},
		{ScheduleExpression: "rate(10 days)", Duration: "3d"},
		// Windows that would reach into the next window or the next UTC day.
		{ScheduleExpression: "rate(5 hours)", Duration: "2h"},      // the grid opens one at 23:00 on some days
		{ScheduleExpression: "rate(36 hours)", Duration: "13h"},    // opens at 00:00 and 12:00
		{ScheduleExpression: "cron(0 22 * * ? *)", Duration: "3h"}, // 22:00 + 3h is tomorrow
		{ScheduleExpression: "cron(0 */4 * * ? *)", Duration: "5h"},
		{ScheduleExpression: "cron(0 6,12 * * ? *)", Duration: "7h"},
	} {
		if _, err := ParseRules(r); !errors.Is(err, ErrInvalidRules) {
			t.Errorf("ParseRules(%v) = %v, want ErrInvalidRules", r, err)
		}
	}
}

// TestScheduleWindows checks when windows open and close, and that a
// missed window is skipped for the next one rather than run late.
func TestScheduleWindows(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name               string
		rules              *cofferv1.RotationRules
		anchor, now        string
		wantStart, wantEnd string
		due                bool
	}{
		{"days: window is the whole UTC day N days on", &cofferv1.RotationRules{AutomaticallyAfterDays: ptr[int64](30)},
			"2026-01-01T15:04:05Z", "2026-01-20T00:00:00Z", "2026-01-31T00:00:00Z", "2026-02-01T00:00:00Z", false},
		{"days: due inside the window", &cofferv1.RotationRules{AutomaticallyAfterDays: ptr[int64](30)},
			"2026-01-01T15:04:05Z", "2026-01-31T09:00:00Z", "2026-01-31T00:00:00Z", "2026-02-01T00:00:00Z", true},
		{"days with Duration", &cofferv1.RotationRules{AutomaticallyAfterDays: ptr[int64](1), Duration: "2h"},
			"2026-01-01T15:04:05Z", "2026-01-02T03:00:00Z", "2026-01-03T00:00:00Z", "2026-01-03T02:00:00Z", false},
		{"rate hours: windows on the grid from midnight, open for an hour", &cofferv1.RotationRules{ScheduleExpression: "rate(6 hours)"},
			"2026-01-01T10:00:00Z", "2026-01-01T12:30:00Z", "2026-01-01T12:00:00Z", "2026-01-01T13:00:00Z", true},
		{"rate hours: the window closed after an hour", &cofferv1.RotationRules{ScheduleExpression: "rate(6 hours)"},
			"2026-01-01T10:00:00Z", "2026-01-01T13:00:00Z", "2026-01-01T18:00:00Z", "2026-01-01T19:00:00Z", false},
		{"rate hours with Duration", &cofferv1.RotationRules{ScheduleExpression: "rate(12 hours)", Duration: "12h"},
			"2026-01-01T10:00:00Z", "2026-01-01T23:59:00Z", "2026-01-01T12:00:00Z", "2026-01-02T00:00:00Z", true},
		{"rate hours skips missed intervals", &cofferv1.RotationRules{ScheduleExpression: "rate(6 hours)", Duration: "1h"},
			"2026-01-01T10:00:00Z", "2026-01-03T05:30:00Z", "2026-01-03T06:00:00Z", "2026-01-03T07:00:00Z", false},
		{"rate days", &cofferv1.RotationRules{ScheduleExpression: "rate(10 days)"},
			"2026-01-01T10:00:00Z", "2026-01-11T00:00:00Z", "2026-01-11T00:00:00Z", "2026-01-12T00:00:00Z", true},
		{"cron at 04:00 on the first Sunday", &cofferv1.RotationRules{ScheduleExpression: "cron(0 4 ? * SUN#1 *)", Duration: "3h"},
			"2026-01-05T00:00:00Z", "2026-01-05T00:00:00Z", "2026-02-01T04:00:00Z", "2026-02-01T07:00:00Z", false},
		{"cron window defaults to the end of its day", &cofferv1.RotationRules{ScheduleExpression: "cron(30 20 * * ? *)"},
			"2026-01-05T21:00:00Z", "2026-01-06T23:00:00Z", "2026-01-06T20:30:00Z", "2026-01-07T00:00:00Z", true},
		{"cron last day of month", &cofferv1.RotationRules{ScheduleExpression: "cron(0 0 L * ? *)", Duration: "4h"},
			"2026-02-01T00:00:00Z", "2026-02-01T00:00:00Z", "2026-02-28T00:00:00Z", "2026-02-28T04:00:00Z", false},
		{"cron every 4 hours on weekdays", &cofferv1.RotationRules{ScheduleExpression: "cron(0 */4 ? * MON-FRI *)", Duration: "1h"},
			"2026-01-09T21:00:00Z", "2026-01-10T12:00:00Z", "2026-01-12T00:00:00Z", "2026-01-12T01:00:00Z", false},
		{"cron in hours: window closes after an hour", &cofferv1.RotationRules{ScheduleExpression: "cron(0 */4 ? * MON-FRI *)"},
			"2026-01-09T21:00:00Z", "2026-01-12T00:30:00Z", "2026-01-12T00:00:00Z", "2026-01-12T01:00:00Z", true},
		{"cron in hours: after the hour, the next window", &cofferv1.RotationRules{ScheduleExpression: "cron(0 */4 ? * MON-FRI *)"},
			"2026-01-09T21:00:00Z", "2026-01-12T01:00:00Z", "2026-01-12T04:00:00Z", "2026-01-12T05:00:00Z", false},
		{"cron missed window moves to the next", &cofferv1.RotationRules{ScheduleExpression: "cron(0 6 * * ? *)", Duration: "2h"},
			"2026-01-01T00:00:00Z", "2026-01-03T09:00:00Z", "2026-01-04T06:00:00Z", "2026-01-04T08:00:00Z", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := ParseRules(c.rules)
			if err != nil {
				t.Fatal(err)
			}
			start, end, ok := s.Window(at(c.anchor), at(c.now))
			if !ok || !start.Equal(at(c.wantStart)) || !end.Equal(at(c.wantEnd)) {
				t.Fatalf("window = [%v, %v) %v, want [%s, %s)", start, end, ok, c.wantStart, c.wantEnd)
			}
			if got := s.Due(at(c.anchor), at(c.now)); got != c.due {
				t.Fatalf("Due = %v, want %v", got, c.due)
			}
		})
	}
}

func TestCronYearEnds(t *testing.T) {
	t.Parallel()
	s, err := ParseRules(&cofferv1.RotationRules{ScheduleExpression: "cron(0 12 1 JAN ? 2027)"})
	if err != nil {
		t.Fatal(err)
	}
	if start, _, ok := s.Window(at("2026-06-01T00:00:00Z"), at("2026-06-01T00:00:00Z")); !ok || !start.Equal(at("2027-01-01T12:00:00Z")) {
		t.Fatalf("first window %v %v", start, ok)
	}
	if _, _, ok := s.Window(at("2027-01-02T00:00:00Z"), at("2027-01-02T00:00:00Z")); ok {
		t.Fatal("a schedule confined to 2027 has a window after it")
	}
}

// TestParseRulesWindowLimits: Durations that end exactly at the next window
// or at midnight are accepted; one hour more is refused with a message
// that says which limit it crossed.
func TestParseRulesWindowLimits(t *testing.T) {
	t.Parallel()
	for _, r := range []*cofferv1.RotationRules{
		{ScheduleExpression: "rate(6 hours)", Duration: "6h"},   // 18:00 + 6h is midnight
		{ScheduleExpression: "rate(5 hours)", Duration: "1h"},   // the default window fits any grid
		{ScheduleExpression: "rate(36 hours)", Duration: "12h"}, // 12:00 + 12h
		{ScheduleExpression: "rate(1 days)", Duration: "24h"},
		{AutomaticallyAfterDays: ptr[int64](3), Duration: "24h"},
		{ScheduleExpression: "cron(0 20 * * ? *)", Duration: "4h"},
		{ScheduleExpression: "cron(0 6,12 * * ? *)", Duration: "6h"},
		{ScheduleExpression: "cron(30 */4 * * ? *)", Duration: "3h"}, // 20:30 + 3h
	} {
		if _, err := ParseRules(r); err != nil {
			t.Errorf("ParseRules(%v) = %v, want it accepted", r, err)
		}
	}
	for _, c := range []struct {
		rules *cofferv1.RotationRules
		msg   string
	}{
		{&cofferv1.RotationRules{ScheduleExpression: "rate(5 hours)", Duration: "2h"},
			"The rotation window (Duration 2h) must not extend into the next UTC day: rate(5 hours) opens a window at 23:00 UTC on some days."},
		{&cofferv1.RotationRules{ScheduleExpression: "rate(4 hours)", Duration: "5h"},
			"The rotation window (Duration 5h) must not extend into the next rotation window: rate(4 hours) opens one every 4h."},
		{&cofferv1.RotationRules{ScheduleExpression: "cron(30 21 * * ? *)", Duration: "3h"},
			"The rotation window (Duration 3h) must not extend into the next UTC day: cron(30 21 * * ? *) opens a window at 21:30 UTC."},
		{&cofferv1.RotationRules{ScheduleExpression: "cron(0 6,12 * * ? *)", Duration: "7h"},
			"The rotation window (Duration 7h) must not extend into the next rotation window: cron(0 6,12 * * ? *) opens windows 6h apart (06:00 and 12:00 UTC)."},
	} {
		_, err := ParseRules(c.rules)
		if !errors.Is(err, ErrInvalidRules) || !strings.HasSuffix(err.Error(), ": "+c.msg) {
			t.Errorf("ParseRules(%v) = %v, want %q", c.rules, err, c.msg)
		}
	}
}
