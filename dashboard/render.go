package dashboard

import (
	"fmt"
	"html/template"
	"strconv"
	"strings"
	"time"

	"github.com/resilience-go/resilience"
)

// funcs are the page template's functions.
var funcs = template.FuncMap{
	"age":       age,
	"clock":     func(t time.Time) string { return t.Format("15:04:05.000") },
	"since":     func(t, now time.Time) time.Duration { return now.Sub(t) },
	"percent":   func(f float64) string { return strconv.FormatFloat(100*f, 'f', 0, 64) + "%" },
	"dur":       func(d time.Duration) string { return d.Round(time.Millisecond).String() },
	"spark":     spark,
	"delayWord": delayWord,
}

// delayWord says what an event's Delay is, by the event's kind.
func delayWord(kind string) string {
	switch kind {
	case resilience.StateChange.String():
		return "for"
	case resilience.Retry.String():
		return "next after"
	case resilience.Rejected.String():
		return "retry after"
	}
	return "delay"
}

// age returns d for a person, to the second: "0s", "42s", "3m05s",
// "2h03m", "4d02h".
func age(d time.Duration) string {
	s := int64(max(d, 0) / time.Second)
	switch {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm%02ds", s/60, s%60)
	case s < 86400:
		return fmt.Sprintf("%dh%02dm", s/3600, s%3600/60)
	}
	return fmt.Sprintf("%dd%02dh", s/86400, s%86400/3600)
}

// The size of a sparkline, in the SVG's units.
const (
	sparkWidth  = 120
	sparkHeight = 24
)

// spark returns the points of the polylines of a sparkline of h: the
// last minute up to now from left to right, and the failure rate from 0 at
// the bottom to 1 at the top. Each run of samples a second apart is a
// polyline of its own, so that a second with no sample is a gap; a lone
// sample is a dash two units wide.
func spark(h []Sample, now time.Time) []string {
	type point struct{ x, y float64 }
	var (
		lines []string
		run   []point
	)
	end := func() {
		if len(run) == 1 {
			run = []point{{run[0].x - 1, run[0].y}, {run[0].x + 1, run[0].y}}
		}
		var b strings.Builder
		for i, p := range run {
			if i > 0 {
				b.WriteByte(' ')
			}
			fmt.Fprintf(&b, "%.1f,%.1f", p.x, p.y)
		}
		if len(run) > 0 {
			lines = append(lines, b.String())
		}
		run = run[:0]
	}
	for i, s := range h {
		if i > 0 && s.Time.Sub(h[i-1].Time) > time.Second {
			end()
		}
		x := sparkWidth * (1 - now.Sub(s.Time).Seconds()/historyLen)
		y := (sparkHeight - 1) - (sparkHeight-2)*min(max(s.FailureRate, 0), 1)
		run = append(run, point{min(max(x, 1), sparkWidth-1), y})
	}
	end()
	return lines
}
