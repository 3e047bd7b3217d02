package rotation

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// cronExpr is an AWS cron expression: minutes hours day-of-month month
// day-of-week year, in UTC. It supports lists, ranges, steps, month and
// day names, "?" and "*", "L" (last day of the month) and "d#n" (the nth
// weekday d of the month). Days of the week run 1 (SUN) to 7 (SAT).
type cronExpr struct {
	minutes, hours []int // sorted
	dom            []bool
	lastDom        bool
	domAny         bool
	months         []bool
	dow            []bool
	dowNth         [2]int // weekday, n; n == 0 when unused
	dowAny         bool
	years          []bool // index year-1970; nil matches every year
}

var (
	monthNames = map[string]int{"JAN": 1, "FEB": 2, "MAR": 3, "APR": 4, "MAY": 5, "JUN": 6, "JUL": 7, "AUG": 8, "SEP": 9, "OCT": 10, "NOV": 11, "DEC": 12}
	dayNames   = map[string]int{"SUN": 1, "MON": 2, "TUE": 3, "WED": 4, "THU": 5, "FRI": 6, "SAT": 7}
)

func parseCron(src string) (*cronExpr, error) {
	f := strings.Fields(src)
	if len(f) != 6 {
		return nil, fmt.Errorf("want 6 fields (minutes hours day-of-month month day-of-week year), got %d", len(f))
	}
	c := &cronExpr{}
	mins, err := parseField(f[0], 0, 59, nil)
	if err != nil {
		return nil, fmt.Errorf("minutes: %w", err)
	}
	hours, err := parseField(f[1], 0, 23, nil)
	if err != nil {
		return nil, fmt.Errorf("hours: %w", err)
	}
	c.minutes, c.hours = indexes(mins, 0), indexes(hours, 0)
	switch {
	case f[2] == "?" && f[4] == "?":
		return nil, errors.New("only one of day-of-month and day-of-week can be ?")
	case f[2] != "?" && f[4] != "?":
		return nil, errors.New("one of day-of-month and day-of-week must be ?")
	}
	switch {
	case f[2] == "?":
		c.domAny = true
	case f[2] == "L":
		c.lastDom = true
	default:
		if c.dom, err = parseField(f[2], 1, 31, nil); err != nil {
			return nil, fmt.Errorf("day-of-month: %w", err)
		}
	}
	if c.months, err = parseField(f[3], 1, 12, monthNames); err != nil {
		return nil, fmt.Errorf("month: %w", err)
	}
	switch {
	case f[4] == "?":
		c.dowAny = true
	case strings.Contains(f[4], "#"):
		d, n, _ := strings.Cut(f[4], "#")
		wd, err1 := nameOrNumber(d, dayNames)
		k, err2 := strconv.Atoi(n)
		if err1 != nil || err2 != nil || wd < 1 || wd > 7 || k < 1 || k > 5 {
			return nil, fmt.Errorf("day-of-week: %q is not weekday#n", f[4])
		}
		c.dowNth = [2]int{wd, k}
	default:
		if c.dow, err = parseField(f[4], 1, 7, dayNames); err != nil {
			return nil, fmt.Errorf("day-of-week: %w", err)
		}
	}
	if f[5] != "*" {
		if c.years, err = parseField(f[5], 1970, 2199, nil); err != nil {
			return nil, fmt.Errorf("year: %w", err)
		}
	}
	if err := c.checkSpacing(); err != nil {
		return nil, err
	}
	return c, nil
}

// checkSpacing refuses schedules that could rotate more often than every
// four hours: several minutes in an hour, or hours closer than four apart
// (counting the gap across midnight).
func (c *cronExpr) checkSpacing() error {
	if len(c.minutes) > 1 {
		return errors.New("it rotates more often than every four hours (more than one minute value)")
	}
	for i, h := range c.hours {
		next := c.hours[0] + 24
		if i+1 < len(c.hours) {
			next = c.hours[i+1]
		}
		if next-h < int(MinInterval/time.Hour) && len(c.hours) > 1 {
			return errors.New("it rotates more often than every four hours")
		}
	}
	return nil
}

// timesOfDay lists, in order, the times of day the schedule fires at on
// the days it fires: the same on every such day.
func (c *cronExpr) timesOfDay() []time.Duration {
	var out []time.Duration
	for _, h := range c.hours {
		for _, m := range c.minutes {
			out = append(out, time.Duration(h)*time.Hour+time.Duration(m)*time.Minute)
		}
	}
	return out
}

func indexes(set []bool, lo int) []int {
	var out []int
	for i, ok := range set {
		if ok && i >= lo {
			out = append(out, i)
		}
	}
	return out
}

func nameOrNumber(s string, names map[string]int) (int, error) {
	if n, ok := names[strings.ToUpper(s)]; ok {
		return n, nil
	}
	return strconv.Atoi(s)
}

// parseField parses a comma list of *, N, A-B, */S, N/S and A-B/S into a
// set indexed by value (index lo..hi used).
func parseField(field string, lo, hi int, names map[string]int) ([]bool, error) {
	set := make([]bool, hi+1)
	for part := range strings.SplitSeq(field, ",") {
		rng, stepStr, hasStep := strings.Cut(part, "/")
		step := 1
		if hasStep {
			n, err := strconv.Atoi(stepStr)
			if err != nil || n < 1 {
				return nil, fmt.Errorf("bad step in %q", part)
			}
			step = n
		}
		a, b := lo, hi
		switch {
		case rng == "*":
		case strings.Contains(rng, "-"):
			x, y, _ := strings.Cut(rng, "-")
			var err1, err2 error
			a, err1 = nameOrNumber(x, names)
			b, err2 = nameOrNumber(y, names)
			if err1 != nil || err2 != nil {
				return nil, fmt.Errorf("bad range %q", part)
			}
		default:
			n, err := nameOrNumber(rng, names)
			if err != nil {
				return nil, fmt.Errorf("bad value %q", part)
			}
			a = n
			if !hasStep {
				b = n
			}
		}
		if a < lo || b > hi || a > b {
			return nil, fmt.Errorf("%q is outside %d-%d", part, lo, hi)
		}
		for v := a; v <= b; v += step {
			set[v] = true
		}
	}
	if !slices.Contains(set, true) {
		return nil, fmt.Errorf("%q matches nothing", field)
	}
	return set, nil
}

// matchDay reports whether the schedule fires on day d (UTC midnight).
func (c *cronExpr) matchDay(d time.Time) bool {
	if c.years != nil {
		y := d.Year()
		if y >= len(c.years) || !c.years[y] {
			return false
		}
	}
	if !c.months[int(d.Month())] {
		return false
	}
	wd := int(d.Weekday()) + 1 // AWS: 1 = SUN
	switch {
	case c.lastDom:
		return d.AddDate(0, 0, 1).Day() == 1
	case !c.domAny:
		return c.dom[d.Day()]
	case c.dowNth[1] > 0:
		return wd == c.dowNth[0] && (d.Day()-1)/7+1 == c.dowNth[1]
	case !c.dowAny:
		return c.dow[wd]
	}
	return true
}

// next is the first time the schedule fires strictly after t, or the zero
// time when it never does within maxCronYears.
func (c *cronExpr) next(t time.Time) time.Time {
	day := utcDay(t)
	for range maxCronYears * 366 {
		if c.matchDay(day) {
			for _, h := range c.hours {
				for _, m := range c.minutes {
					if at := day.Add(time.Duration(h)*time.Hour + time.Duration(m)*time.Minute); at.After(t) {
						return at
					}
				}
			}
		}
		day = day.AddDate(0, 0, 1)
	}
	return time.Time{}
}
