package quartz

import (
	"strings"
	"testing"
	"time"
)

func mustLoc(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func TestNextFireTimes(t *testing.T) {
	utc := time.UTC
	at := func(s string) time.Time {
		v, err := time.Parse("2006-01-02 15:04:05", s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	cases := []struct {
		expr  string
		after string
		want  []string // successive fire times, UTC
	}{
		{"0 0 12 * * ?", "2026-03-10 12:00:00", []string{"2026-03-11 12:00:00", "2026-03-12 12:00:00"}},
		{"0 0/5 14 * * ?", "2026-03-10 14:52:00", []string{"2026-03-10 14:55:00", "2026-03-11 14:00:00"}},
		{"0 15 10 ? * MON-FRI", "2026-03-13 11:00:00", []string{"2026-03-16 10:15:00", "2026-03-17 10:15:00"}}, // Fri -> Mon
		{"0 15 10 ? * 6L", "2026-03-01 00:00:00", []string{"2026-03-27 10:15:00", "2026-04-24 10:15:00"}},      // last Fridays
		{"0 15 10 ? * 6#3", "2026-03-01 00:00:00", []string{"2026-03-20 10:15:00", "2026-04-17 10:15:00"}},     // third Fridays
		{"0 15 10 L * ?", "2026-02-01 00:00:00", []string{"2026-02-28 10:15:00", "2026-03-31 10:15:00"}},
		{"0 15 10 L-2 * ?", "2026-02-01 00:00:00", []string{"2026-02-26 10:15:00", "2026-03-29 10:15:00"}},
		{"0 0 0 15W * ?", "2026-08-01 00:00:00", []string{"2026-08-14 00:00:00", "2026-09-15 00:00:00"}}, // Aug 15 2026 is a Saturday
		{"0 0 0 1W * ?", "2026-07-31 00:00:00", []string{"2026-08-03 00:00:00"}},                         // Aug 1 is a Saturday: Monday the 3rd
		{"0 0 0 LW * ?", "2026-05-01 00:00:00", []string{"2026-05-29 00:00:00", "2026-06-30 00:00:00"}},  // May 31 2026 is a Sunday
		{"0 0 12 1/10 * ?", "2026-01-01 12:00:00", []string{"2026-01-11 12:00:00", "2026-01-21 12:00:00", "2026-01-31 12:00:00", "2026-02-01 12:00:00"}},
		{"0 11 11 11 11 ?", "2026-01-01 00:00:00", []string{"2026-11-11 11:11:00", "2027-11-11 11:11:00"}},
		{"0 0 0 1 1 ? 2030", "2026-01-01 00:00:00", []string{"2030-01-01 00:00:00"}},
		{"0 0 0 29 2 ?", "2026-01-01 00:00:00", []string{"2028-02-29 00:00:00"}},
		{"30 * * * * ?", "2026-01-01 00:00:30", []string{"2026-01-01 00:01:30"}},
		{"0 0 22-2 * * ?", "2026-01-01 21:00:00", []string{"2026-01-01 22:00:00", "2026-01-01 23:00:00", "2026-01-02 00:00:00", "2026-01-02 01:00:00", "2026-01-02 02:00:00", "2026-01-02 22:00:00"}},
		{"0 0 9 ? * FRI-MON", "2026-03-10 00:00:00", []string{"2026-03-13 09:00:00", "2026-03-14 09:00:00", "2026-03-15 09:00:00", "2026-03-16 09:00:00", "2026-03-20 09:00:00"}},
		{"0 0 9 ? JAN,JUL SUN", "2026-06-29 00:00:00", []string{"2026-07-05 09:00:00"}},
	}
	for _, c := range cases {
		s, err := Parse(c.expr)
		if err != nil {
			t.Errorf("Parse(%q): %v", c.expr, err)
			continue
		}
		cur := at(c.after)
		for i, w := range c.want {
			got, ok := s.Next(cur, utc)
			if !ok || !got.Equal(at(w)) {
				t.Errorf("%q fire %d after %s = %s (%v), want %s", c.expr, i+1, cur.Format(time.DateTime), got.Format(time.DateTime), ok, w)
				break
			}
			cur = got
		}
	}
}

func TestNeverFiringExpressionEnds(t *testing.T) {
	s, err := Parse("0 0 0 30 2 ?")
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := s.Next(time.Now(), time.UTC); ok {
		t.Errorf("February 30th fired at %s", got)
	}
	s, _ = Parse("0 0 0 1 1 ? 2020")
	if _, ok := s.Next(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), time.UTC); ok {
		t.Error("a past year fired")
	}
}

func TestTimeZonesAndDaylightSaving(t *testing.T) {
	ny := mustLoc(t, "America/New_York")
	s, _ := Parse("0 30 2 * * ?") // 02:30 does not exist on 2026-03-08 in New York
	after := time.Date(2026, 3, 7, 12, 0, 0, 0, ny)
	var got []string
	cur := after
	for i := 0; i < 3; i++ {
		n, _ := s.Next(cur, ny)
		got = append(got, n.In(ny).Format("01-02 15:04 MST"))
		cur = n
	}
	if strings.Join(got, "|") != "03-08 03:30 EDT|03-09 02:30 EDT|03-10 02:30 EDT" {
		t.Errorf("spring-forward fires = %v", got)
	}
	// 01:30 happens twice on 2026-11-01 in New York: it fires once.
	s, _ = Parse("0 30 1 * * ?")
	fires := s.Between(time.Date(2026, 10, 31, 12, 0, 0, 0, ny), time.Date(2026, 11, 2, 12, 0, 0, 0, ny), ny, 10)
	if len(fires) != 2 {
		t.Fatalf("fall-back fires = %v, want one on Nov 1 and one on Nov 2", fires)
	}
	if _, off := fires[0].Zone(); off != -4*3600 {
		t.Errorf("the repeated 01:30 fired at its second occurrence (%s)", fires[0])
	}
	// The same expression in two zones fires at different instants.
	s, _ = Parse("0 0 9 * * ?")
	ber := mustLoc(t, "Europe/Berlin")
	base := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	a, _ := s.Next(base, ny)
	b, _ := s.Next(base, ber)
	if a.Sub(b) != 6*time.Hour {
		t.Errorf("New York 09:00 - Berlin 09:00 = %s, want 6h", a.Sub(b))
	}
}

func TestParseRejectsBadExpressions(t *testing.T) {
	for _, bad := range []string{
		"",
		"* * * * *",         // five fields: Unix cron, not Quartz
		"0 0 12 * * *",      // neither day field is ?
		"0 0 12 ? * ?",      // both are ?
		"60 0 12 * * ?",     // second out of range
		"0 60 12 * * ?",     //
		"0 0 24 * * ?",      //
		"0 0 12 32 * ?",     //
		"0 0 12 * 13 ?",     //
		"0 0 12 ? * 8",      //
		"0 0 12 ? * 6#6",    // no sixth Friday
		"0 0 12 ? * FOO",    // unknown name
		"0 0 12 ? BAR *",    //
		"0 0/0 12 * * ?",    // zero step
		"0 0 12 * * ? 1969", // year out of range
		"0 0 12 L-40 * ?",   //
		"0 0 12 1,,2 * ?",   // empty list item
		"? 0 12 * * ?",      // ? outside day fields
		"0 0 12 5-10W * ?",  // W needs one day
		"0 0 12 * * ? 2030 EXTRA",
	} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) succeeded", bad)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"0 0 12 * * ?", "0 15 10 ? * 6L", "0 0 0 LW * ? 2030", "1-5/2 * * L-3 JAN-MAR ?", "0 0 0 ? * 1#5"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, expr string) {
		s, err := Parse(expr)
		if err != nil {
			return
		}
		from := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		if n, ok := s.Next(from, time.UTC); ok && !n.After(from) {
			t.Fatalf("%q: Next(%s) = %s is not after it", expr, from, n)
		}
	})
}
