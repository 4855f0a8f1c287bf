package circuitbreaker

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

// FuzzBreaker drives a breaker with the operations the input spells out,
// through its exported methods and through the state machine's, and checks
// its invariants after each: never more half-open probes out than
// configured; never closed, right after recording an outcome, while the
// window is over a threshold; counts never negative.
func FuzzBreaker(f *testing.F) {
	f.Add([]byte{0, 3, 2, 2, 2, 2, 2, 2, 250, 250, 0, 0, 0, 0, 9, 9, 9})
	f.Add([]byte{1, 1, 1, 10, 10, 10, 10, 250, 0, 0, 0, 0, 1, 9, 17, 4, 12, 20})
	f.Add([]byte{7, 2, 0, 0, 0, 0, 10, 10, 10, 10, 251, 251, 251, 0, 1, 5, 13, 21, 29})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 3 {
			return
		}
		synctest.Test(t, func(t *testing.T) { fuzzBreaker(t, data) })
	})
}

func fuzzBreaker(t *testing.T, data []byte) {
	cfgByte, probes, data := data[0], int(data[1]%4)+1, data[2:]
	opts := []Option{WithHalfOpenProbes(probes), WithBreakDuration(time.Second, 4*time.Second)}
	if cfgByte&1 == 0 {
		size := int(cfgByte>>1)%16 + 1
		opts = append(opts, WithCountWindow(size), WithFailureRate(0.5, size/2+1))
	} else {
		opts = append(opts, WithTimeWindow(4*time.Second, 4), WithFailureRate(0.5, int(cfgByte>>1)%8+1))
	}
	if cfgByte&2 != 0 {
		opts = append(opts, WithConsecutiveFailures(3))
	}
	if cfgByte&4 != 0 {
		opts = append(opts, WithSlowCalls(time.Second, 0.5))
	}
	b := New(opts...)

	type out struct {
		done func(error)
		ep   *epoch
	}
	var permits []out
	errFail := errors.New("fail")
	outcome := func(arg byte) error {
		switch arg % 3 {
		case 1:
			return errFail
		case 2:
			return context.Canceled
		}
		return nil
	}
	// checkRecorded checks the thresholds after an outcome was recorded in
	// the current epoch.
	checkRecorded := func(ep *epoch, err error) {
		if ep != b.cur.Load() || ep.state != Closed || errors.Is(err, context.Canceled) {
			return
		}
		c := ep.counts(b.now())
		if b.cfg.overThreshold(c) != 0 {
			t.Fatalf("closed right after an outcome while over a threshold: %+v", c)
		}
		if b.cfg.consecutive > 0 && ep.consec.Load() >= b.cfg.consecutive {
			t.Fatalf("closed after %d failures in a row", ep.consec.Load())
		}
	}
	for _, c := range data {
		op, arg := c%8, c/8
		switch op {
		case 0:
			ep := b.cur.Load()
			if done, err := b.Allow(); err == nil {
				permits = append(permits, out{done, ep})
			}
		case 1:
			if len(permits) == 0 {
				continue
			}
			i := int(arg) % len(permits)
			p := permits[i]
			permits = append(permits[:i], permits[i+1:]...)
			err := outcome(arg / 8)
			p.done(err)
			checkRecorded(p.ep, err)
		case 2:
			ep := b.cur.Load()
			err := outcome(arg)
			if b.Do(context.Background(), func(context.Context) error { return err }) != nil && err == nil {
				continue // rejected
			}
			checkRecorded(ep, err)
		case 3:
			time.Sleep(time.Duration(arg) * 100 * time.Millisecond)
			synctest.Wait()
		case 4:
			switch arg % 5 {
			case 0:
				b.Reset()
			case 1:
				b.ForceOpen()
			case 2:
				b.Disable()
			case 3:
				b.MetricsOnly()
			default:
				b.OpenFor(time.Duration(arg)*100*time.Millisecond - time.Second)
			}
		case 5:
			// A slow call.
			ep := b.cur.Load()
			err := outcome(arg)
			_ = b.Do(context.Background(), func(context.Context) error { time.Sleep(2 * time.Second); return err })
			checkRecorded(ep, err)
		case 6:
			_ = b.State()
		default:
			// A call admitted and recorded by the state machine's own
			// methods, given the time.
			p, err := b.admit(b.now())
			b.deliver(context.Background())
			if err == nil {
				permits = append(permits, out{func(err error) { b.record(p, b.classify(err), b.now()) }, p.ep})
			}
		}

		m := b.Metrics()
		if m.Calls < 0 || m.Failures < 0 || m.SlowCalls < 0 || m.Rejections < 0 || m.ConsecutiveFailures < 0 ||
			m.Failures > m.Calls || m.SlowCalls > m.Calls {
			t.Fatalf("bad counts: %+v", m)
		}
		b.mu.Lock()
		if ep := b.cur.Load(); len(ep.probes) > b.cfg.probes {
			t.Fatalf("%d probes out, at most %d allowed", len(ep.probes), b.cfg.probes)
		}
		b.mu.Unlock()
	}
}
