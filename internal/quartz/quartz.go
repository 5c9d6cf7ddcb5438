// Package quartz parses Quartz cron expressions, the schedule syntax of
// Databricks jobs, and computes their fire times in a time zone. It supports
// the whole Quartz syntax: seconds and an optional year field, names of
// months and days, ranges, lists and steps, "?" for day-of-month or
// day-of-week, "L" (last day of the month, last given weekday, "L-n"), "W"
// (nearest weekday, "LW") and "#" (nth weekday of the month). robfig/cron
// parses none of L, W, # or the year field, which is why this exists.
package quartz

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Schedule is a parsed Quartz expression.
type Schedule struct {
	expr    string
	seconds set // 0-59
	minutes set // 0-59
	hours   set // 0-23
	months  set // 1-12
	years   set // 1970-2099; empty means every year

	dom domRule
	dow dowRule
}

type set map[int]bool

// domRule is the day-of-month field.
type domRule struct {
	any        bool // "?" or "*"
	days       set
	last       bool // L
	lastOffset int  // L-n
	weekday    int  // nW: nearest weekday to day n (0 if unused)
	lastWeek   bool // LW
}

// dowRule is the day-of-week field (1 = Sunday ... 7 = Saturday).
type dowRule struct {
	any  bool
	days set
	last int // nL: last weekday n of the month
	nth  int // n#k: weekday n ...
	k    int // ... the kth one
}

var monthNames = map[string]int{"JAN": 1, "FEB": 2, "MAR": 3, "APR": 4, "MAY": 5, "JUN": 6, "JUL": 7, "AUG": 8, "SEP": 9, "OCT": 10, "NOV": 11, "DEC": 12}
var dayNames = map[string]int{"SUN": 1, "MON": 2, "TUE": 3, "WED": 4, "THU": 5, "FRI": 6, "SAT": 7}

// Parse parses a Quartz expression: "sec min hour day-of-month month
// day-of-week [year]". As Quartz requires, one of day-of-month and
// day-of-week must be "?".
func Parse(expr string) (*Schedule, error) {
	fields := strings.Fields(strings.ToUpper(expr))
	if len(fields) != 6 && len(fields) != 7 {
		return nil, fmt.Errorf("a Quartz cron expression has 6 or 7 fields (seconds minutes hours day-of-month month day-of-week [year]), %q has %d", expr, len(fields))
	}
	s := &Schedule{expr: strings.Join(fields, " ")}
	var err error
	if s.seconds, err = parseField(fields[0], "seconds", 0, 59, nil); err != nil {
		return nil, err
	}
	if s.minutes, err = parseField(fields[1], "minutes", 0, 59, nil); err != nil {
		return nil, err
	}
	if s.hours, err = parseField(fields[2], "hours", 0, 23, nil); err != nil {
		return nil, err
	}
	if s.dom, err = parseDOM(fields[3]); err != nil {
		return nil, err
	}
	if s.months, err = parseField(fields[4], "month", 1, 12, monthNames); err != nil {
		return nil, err
	}
	if s.dow, err = parseDOW(fields[5]); err != nil {
		return nil, err
	}
	if len(fields) == 7 {
		if s.years, err = parseField(fields[6], "year", 1970, 2099, nil); err != nil {
			return nil, err
		}
	}
	domQ, dowQ := fields[3] == "?", fields[5] == "?"
	if domQ == dowQ {
		return nil, fmt.Errorf("use '?' in exactly one of day-of-month and day-of-week (%q)", expr)
	}
	return s, nil
}

// String returns the expression in canonical (upper-case, single-spaced) form.
func (s *Schedule) String() string { return s.expr }

func parseField(f, name string, lo, hi int, names map[string]int) (set, error) {
	out := set{}
	for _, part := range strings.Split(f, ",") {
		if part == "" {
			return nil, fmt.Errorf("%s field %q has an empty list item", name, f)
		}
		rng, step := part, 1
		if i := strings.Index(part, "/"); i >= 0 {
			rng = part[:i]
			n, err := strconv.Atoi(part[i+1:])
			if err != nil || n <= 0 {
				return nil, fmt.Errorf("%s field %q: step %q must be a positive number", name, f, part[i+1:])
			}
			step = n
		}
		from, to := lo, hi
		switch {
		case rng == "*" || rng == "?":
			if rng == "?" && name != "day-of-month" && name != "day-of-week" {
				return nil, fmt.Errorf("'?' is allowed only in day-of-month and day-of-week, not in %s", name)
			}
		case strings.Contains(rng, "-"):
			i := strings.Index(rng, "-")
			a, err := value(rng[:i], name, lo, hi, names)
			if err != nil {
				return nil, err
			}
			b, err := value(rng[i+1:], name, lo, hi, names)
			if err != nil {
				return nil, err
			}
			from, to = a, b
		default:
			v, err := value(rng, name, lo, hi, names)
			if err != nil {
				return nil, err
			}
			from, to = v, v
			if strings.Contains(part, "/") {
				to = hi // "5/15" means from 5 every 15
			}
		}
		if from <= to {
			for v := from; v <= to; v += step {
				out[v] = true
			}
		} else {
			// Quartz allows ranges that wrap, such as FRI-MON or 22-2.
			span := hi - lo + 1
			for i := 0; i <= (to-from+span)%span; i += step {
				out[lo+(from-lo+i)%span] = true
			}
		}
	}
	return out, nil
}

func value(s, name string, lo, hi int, names map[string]int) (int, error) {
	if v, ok := names[s]; ok {
		return v, nil
	}
	v, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%s value %q is not a number", name, s)
	}
	if v < lo || v > hi {
		return 0, fmt.Errorf("%s value %d is outside %d-%d", name, v, lo, hi)
	}
	return v, nil
}

func parseDOM(f string) (domRule, error) {
	switch {
	case f == "?" || f == "*":
		return domRule{any: true}, nil
	case f == "L":
		return domRule{last: true}, nil
	case f == "LW":
		return domRule{lastWeek: true}, nil
	case strings.HasPrefix(f, "L-"):
		n, err := strconv.Atoi(f[2:])
		if err != nil || n < 0 || n > 30 {
			return domRule{}, fmt.Errorf("day-of-month %q: the offset after L- must be 0-30", f)
		}
		return domRule{last: true, lastOffset: n}, nil
	case strings.HasSuffix(f, "W"):
		n, err := strconv.Atoi(strings.TrimSuffix(f, "W"))
		if err != nil || n < 1 || n > 31 {
			return domRule{}, fmt.Errorf("day-of-month %q: W needs a single day 1-31 before it", f)
		}
		return domRule{weekday: n}, nil
	}
	days, err := parseField(f, "day-of-month", 1, 31, nil)
	return domRule{days: days}, err
}

func parseDOW(f string) (dowRule, error) {
	switch {
	case f == "?" || f == "*":
		return dowRule{any: true}, nil
	case strings.Contains(f, "#"):
		i := strings.Index(f, "#")
		d, err := value(f[:i], "day-of-week", 1, 7, dayNames)
		if err != nil {
			return dowRule{}, err
		}
		k, err := strconv.Atoi(f[i+1:])
		if err != nil || k < 1 || k > 5 {
			return dowRule{}, fmt.Errorf("day-of-week %q: the number after # must be 1-5", f)
		}
		return dowRule{nth: d, k: k}, nil
	case f == "L":
		return dowRule{days: set{7: true}}, nil // "L" alone is Saturday
	case strings.HasSuffix(f, "L"):
		d, err := value(strings.TrimSuffix(f, "L"), "day-of-week", 1, 7, dayNames)
		if err != nil {
			return dowRule{}, err
		}
		return dowRule{last: d}, nil
	}
	days, err := parseField(f, "day-of-week", 1, 7, dayNames)
	return dowRule{days: days}, err
}

func daysIn(year int, month time.Month) int {
	return time.Date(year, month+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

// quartzWeekday converts Go's weekday (Sunday = 0) to Quartz's (Sunday = 1).
func quartzWeekday(d time.Weekday) int { return int(d) + 1 }

// dayMatches reports whether a calendar day matches the day fields.
func (s *Schedule) dayMatches(y int, m time.Month, d int) bool {
	if len(s.years) > 0 && !s.years[y] {
		return false
	}
	if !s.months[int(m)] {
		return false
	}
	n := daysIn(y, m)
	wd := quartzWeekday(time.Date(y, m, d, 12, 0, 0, 0, time.UTC).Weekday())
	dom := s.dom
	switch {
	case dom.any:
	case dom.lastWeek:
		if d != nearestWeekday(y, m, n) {
			return false
		}
	case dom.last:
		if d != n-dom.lastOffset {
			return false
		}
	case dom.weekday > 0:
		target := dom.weekday
		if target > n {
			return false
		}
		if d != nearestWeekday(y, m, target) {
			return false
		}
	default:
		if !dom.days[d] {
			return false
		}
	}
	dow := s.dow
	switch {
	case dow.any:
	case dow.last > 0:
		if wd != dow.last || d+7 <= n {
			return false
		}
	case dow.nth > 0:
		if wd != dow.nth || (d-1)/7+1 != dow.k {
			return false
		}
	default:
		if !dow.days[wd] {
			return false
		}
	}
	return true
}

// nearestWeekday is Quartz's W: the weekday nearest to the given day within
// the same month.
func nearestWeekday(y int, m time.Month, day int) int {
	wd := time.Date(y, m, day, 12, 0, 0, 0, time.UTC).Weekday()
	n := daysIn(y, m)
	switch wd {
	case time.Saturday:
		if day == 1 {
			return 3 // Monday the 3rd: W never leaves the month
		}
		return day - 1
	case time.Sunday:
		if day == n {
			return day - 2
		}
		return day + 1
	}
	return day
}

func sorted(s set) []int {
	var out []int
	for v := 0; v <= 59; v++ {
		if s[v] {
			out = append(out, v)
		}
	}
	return out
}

// maxSearchYears bounds Next: an expression whose next time is further away
// (or that never fires, like Feb 30) reports none.
const maxSearchYears = 130

// Next returns the first fire time strictly after t in loc, and false if the
// expression never fires again. In a daylight-saving gap a wall-clock time
// that does not exist fires at the instant Go normalises it to (an hour
// later), once; a wall-clock time that happens twice fires once.
func (s *Schedule) Next(t time.Time, loc *time.Location) (time.Time, bool) {
	if loc == nil {
		loc = time.UTC
	}
	local := t.In(loc)
	hours, minutes, seconds := sorted(s.hours), sorted(s.minutes), sorted(s.seconds)
	y, m, d := local.Date()
	day := time.Date(y, m, d, 0, 0, 0, 0, time.UTC) // calendar arithmetic only
	end := day.AddDate(maxSearchYears, 0, 0)
	for ; day.Before(end); day = day.AddDate(0, 0, 1) {
		if len(s.years) > 0 && !s.years[day.Year()] {
			// Jump to the next January 1st.
			day = time.Date(day.Year()+1, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, -1)
			continue
		}
		if !s.months[int(day.Month())] {
			day = time.Date(day.Year(), day.Month()+1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, -1)
			continue
		}
		if !s.dayMatches(day.Year(), day.Month(), day.Day()) {
			continue
		}
		for _, h := range hours {
			for _, mi := range minutes {
				for _, sec := range seconds {
					c := wallTime(day.Year(), day.Month(), day.Day(), h, mi, sec, loc)
					if c.After(t) {
						return c, true
					}
				}
			}
		}
	}
	return time.Time{}, false
}

// wallTime is the instant of a wall-clock time in loc. A time that occurs
// twice (the hour repeated when clocks go back) is its first occurrence; a
// time that does not occur (skipped when clocks go forward) is moved forward
// by the gap, as Quartz's lenient calendar does: 02:30 becomes 03:30.
func wallTime(y int, m time.Month, d, h, mi, sec int, loc *time.Location) time.Time {
	u := time.Date(y, m, d, h, mi, sec, 0, time.UTC)
	_, before := u.Add(-36 * time.Hour).In(loc).Zone()
	_, after := u.Add(36 * time.Hour).In(loc).Zone()
	var best time.Time
	for _, off := range []int{before, after} {
		c := u.Add(-time.Duration(off) * time.Second)
		lc := c.In(loc)
		if lc.Hour() == h && lc.Minute() == mi && lc.Second() == sec && lc.Day() == d {
			if best.IsZero() || c.Before(best) {
				best = c
			}
		}
	}
	if best.IsZero() {
		// In the gap: the pre-transition offset lands just after it.
		return u.Add(-time.Duration(before) * time.Second).In(loc)
	}
	return best.In(loc)
}

// Between returns the fire times in (from, to], at most max of them.
func (s *Schedule) Between(from, to time.Time, loc *time.Location, max int) []time.Time {
	var out []time.Time
	for t := from; len(out) < max; {
		n, ok := s.Next(t, loc)
		if !ok || n.After(to) {
			break
		}
		out = append(out, n)
		t = n
	}
	return out
}
