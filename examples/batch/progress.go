package main

import (
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"time"
)

// progress counts what a run has done, and shows it: a bar redrawn in
// place on a terminal, or a line a second for a log.
type progress struct {
	out    io.Writer
	tty    bool
	total  int // records in the input
	before int // of those, done by an earlier run
	start  time.Time

	done    atomic.Int64 // records written by this run, imported or dead-lettered
	failed  atomic.Int64 // of those, dead-lettered
	retried atomic.Int64 // retries of enrichment calls
}

// every returns how often the progress is shown.
func (p *progress) every() time.Duration {
	if p.tty {
		return 200 * time.Millisecond
	}
	return time.Second
}

// show writes the progress at now: the bar, back at the start of the line,
// or a line.
func (p *progress) show(now time.Time) {
	done := p.before + int(p.done.Load())
	share := 1.0
	if p.total > 0 {
		share = float64(done) / float64(p.total)
	}
	rate := 0.0
	if elapsed := now.Sub(p.start).Seconds(); elapsed > 0 {
		rate = float64(p.done.Load()) / elapsed
	}
	eta := "-"
	if left := p.total - done; left == 0 {
		eta = "0s"
	} else if rate > 0 {
		eta = (time.Duration(float64(left)/rate*float64(time.Second)) + time.Second/2).Truncate(time.Second).String()
	}
	if !p.tty {
		fmt.Fprintf(p.out, "progress: %d/%d records (%.1f%%), %.0f records/s, ETA %s, retried %d, failed %d\n",
			done, p.total, 100*share, rate, eta, p.retried.Load(), p.failed.Load())
		return
	}
	const width = 30
	full := int(share * width)
	bar := strings.Repeat("=", full) + strings.Repeat(" ", width-full)
	if full < width {
		bar = bar[:full] + ">" + bar[full+1:]
	}
	// \r goes back to the start of the line, \x1b[K clears the rest of it.
	fmt.Fprintf(p.out, "\r\x1b[K[%s] %5.1f%% %d/%d  %.0f records/s  ETA %s  retried %d  failed %d",
		bar, 100*share, done, p.total, rate, eta, p.retried.Load(), p.failed.Load())
}

// finish shows the progress a last time, and ends the bar's line.
func (p *progress) finish(now time.Time) {
	p.show(now)
	if p.tty {
		fmt.Fprintln(p.out)
	}
}
