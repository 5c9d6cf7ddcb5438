package jobs

import (
	"testing"
	"time"

	"github.com/tandemdata/tandem/internal/quartz"
)

func TestDueTicksFiresTheNewestAndReportsStaleOnes(t *testing.T) {
	hourly, _ := quartz.Parse("0 0 * * * ?")
	secondly, _ := quartz.Parse("* * * * * ?")
	base := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	cases := []struct {
		name      string
		q         *quartz.Schedule
		last, now time.Time
		fire      time.Time
		missed    int
	}{
		{"nothing due", hourly, base, base.Add(30 * time.Minute), time.Time{}, 0},
		{"one tick due", hourly, base, base.Add(61 * time.Minute), base.Add(time.Hour), 0},
		{"down for three hours", hourly, base, base.Add(3*time.Hour + time.Minute), base.Add(3 * time.Hour), 2},
		{"two ticks inside the grace fire in order", secondly, base, base.Add(2 * time.Second), base.Add(time.Second), 0},
		{"exactly on the tick", hourly, base, base.Add(time.Hour), base.Add(time.Hour), 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fire, missed := dueTicks(c.q, time.UTC, c.last, c.now)
			if !fire.Equal(c.fire) || len(missed) != c.missed {
				t.Fatalf("dueTicks = %s, %d missed; want %s, %d", fire, len(missed), c.fire, c.missed)
			}
		})
	}
}
