package main

import (
	"fmt"
	"math"
	"strings"
)

// The chart's size, and each panel's plotting area.
const (
	chartW, chartH      = 960, 460
	panelW, panelH      = 380, 300
	panelTop            = 60
	leftWork, leftTime  = 70, 550
	legendTop, legendDx = 424, 130
)

// colors of the strategies' lines, in the order of strategies.
var colors = []string{"#7f7f7f", "#bcbd22", "#d62728", "#ff7f0e", "#2ca02c", "#1f77b4", "#9467bd"}

// chart returns the sweep drawn as an SVG document: the writes per
// completed client on the left, the completion time on a log scale on the
// right, a line per strategy in each, the clients across.
func (s *sweep) chart() []byte {
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" `+
		`font-family="sans-serif" font-size="12">`+"\n", chartW, chartH, chartW, chartH)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", chartW, chartH)
	fmt.Fprintf(&b, `<text x="%d" y="24" font-size="15">Clients contending on one row: package retry's strategies `+
		`(%d runs per point, seed %d)</text>`+"\n", leftWork, s.cfg.runs, s.cfg.seed)

	maxWork := 1.0
	minTime, maxTime := math.Inf(1), 0.0
	for i := range strategies {
		for c := range s.clients {
			maxWork = max(maxWork, s.perCompletion(i, c))
			ms := s.meanTime(i, c).Seconds() * 1000
			minTime, maxTime = min(minTime, ms), max(maxTime, ms)
		}
	}
	work := logAxis(1, maxWork)
	times := logAxis(minTime, maxTime)
	s.panel(&b, "work", leftWork, "writes per completed client (log scale)", work, func(i, c int) float64 { return s.perCompletion(i, c) })
	s.panel(&b, "time", leftTime, "completion time (ms, log scale)", times, func(i, c int) float64 {
		return s.meanTime(i, c).Seconds() * 1000
	})

	for i, st := range strategies {
		x := leftWork + (i%4)*legendDx*2
		y := legendTop + (i/4)*20
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2"%s/>`+
			`<text x="%d" y="%d">%s</text>`+"\n", x, y, x+24, y, colors[i], dash(st), x+30, y+4, st.name)
	}
	b.WriteString("</svg>\n")
	return []byte(b.String())
}

// dash returns the attribute that dashes the budget's line.
func dash(st strategy) string {
	if st.budget {
		return ` stroke-dasharray="6 3"`
	}
	return ""
}

// axis maps values onto a panel's height and says where its ticks go.
type axis struct {
	pos   func(v float64) float64 // 0 at the bottom, 1 at the top
	ticks []float64
}

// logAxis returns a log-scale axis from the round number (1, 2 or 5 times
// a power of ten) at or below lo to the one at or above hi.
func logAxis(lo, hi float64) axis {
	lo, hi = max(lo, 1), max(hi, 1)
	var round []float64
	for e := math.Floor(math.Log10(lo)); e <= math.Ceil(math.Log10(hi)); e++ {
		for _, m := range []float64{1, 2, 5} {
			round = append(round, m*math.Pow(10, e))
		}
	}
	var a axis
	for _, v := range round {
		switch {
		case v <= lo:
			a.ticks = a.ticks[:0]
			a.ticks = append(a.ticks, v)
		case len(a.ticks) < 2 || a.ticks[len(a.ticks)-1] < hi:
			a.ticks = append(a.ticks, v)
		}
	}
	from, to := math.Log10(a.ticks[0]), math.Log10(a.ticks[len(a.ticks)-1])
	a.pos = func(v float64) float64 { return (math.Log10(max(v, 1)) - from) / (to - from) }
	return a
}

// panel draws one panel, id, at left: its axes, its ticks and a polyline
// per strategy of value(strategy, clients index).
func (s *sweep) panel(b *strings.Builder, id string, left int, title string, y axis, value func(i, c int) float64) {
	bottom := panelTop + panelH
	fmt.Fprintf(b, `<g id="%s">`+"\n", id)
	fmt.Fprintf(b, `<text x="%d" y="%d" font-size="13">%s</text>`+"\n", left, panelTop-12, title)
	fmt.Fprintf(b, `<path d="M%d %dV%dH%d" fill="none" stroke="black"/>`+"\n", left, panelTop, bottom, left+panelW)
	for _, t := range y.ticks {
		py := float64(bottom) - y.pos(t)*panelH
		fmt.Fprintf(b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>`+
			`<text x="%d" y="%.1f" text-anchor="end">%g</text>`+"\n", left, py, left+panelW, py, left-6, py+4, t)
	}
	x := func(c int) float64 {
		if len(s.clients) == 1 {
			return float64(left) + panelW/2
		}
		return float64(left) + float64(c)*panelW/float64(len(s.clients)-1)
	}
	for c, n := range s.clients {
		if len(s.clients) > 10 && c%2 == 1 {
			continue // every other label, when they would crowd
		}
		fmt.Fprintf(b, `<text x="%.1f" y="%d" text-anchor="middle">%d</text>`+"\n", x(c), bottom+16, n)
	}
	fmt.Fprintf(b, `<text x="%d" y="%d" text-anchor="middle">clients</text>`+"\n", left+panelW/2, bottom+34)
	for i, st := range strategies {
		var pts []string
		for c := range s.clients {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(c), float64(bottom)-y.pos(value(i, c))*panelH))
		}
		fmt.Fprintf(b, `<polyline data-strategy="%s" points="%s" fill="none" stroke="%s" stroke-width="2"%s/>`+"\n",
			st.name, strings.Join(pts, " "), colors[i], dash(st))
	}
	b.WriteString("</g>\n")
}
