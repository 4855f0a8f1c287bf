package hedge

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/internal/event"
	"github.com/resilience-go/resilience/internal/keep"
	"github.com/resilience-go/resilience/internal/race"
)

// Hedger runs an op, and when the op has not ended after a delay, or
// failed in a way worth another try, runs it again beside the first,
// keeping the first result that is not such a failure. Make one with [New]
// and share it between the calls to one dependency: it learns their
// latencies. It is safe for concurrent use. The zero value is not usable;
// use New: its methods panic. Most callers want [Hedger.Do], or
// [resilience.Do] for an op that returns a value.
//
// Hedge only idempotent operations: a hedged op runs more than once, at
// the same time.
type Hedger struct {
	cfg   config
	epoch time.Time  // the hedger reads the monotonic clock as time since
	lat   *latencies // nil with WithDelay
	load  *loadCap
	calls sync.Pool // of *call, each with its timer
}

var _ resilience.Policy = (*Hedger)(nil)

// New returns a Hedger configured by opts. With no options it hedges a
// call once, after the 95th percentile of the latencies of the last 30
// seconds, and at once after a failure, within an extra load of 5% of the
// calls. New panics if an option is nil.
func New(opts ...Option) *Hedger {
	cfg := defaultConfig()
	for _, o := range opts {
		if o == nil {
			panic("hedge: New: nil Option")
		}
		o.apply(&cfg)
	}
	h := &Hedger{cfg: cfg, epoch: time.Now(), load: newLoadCap(cfg.extraLoad)}
	if cfg.quantile > 0 {
		h.lat = newLatencies(cfg.quantile, cfg.window)
	}
	return h
}

// Delay returns the delay after which a call that starts now is hedged,
// and false when it is hedged only after a failure: with
// [WithQuantileDelay], while too few latencies are known.
func (h *Hedger) Delay() (time.Duration, bool) {
	if h.load == nil {
		panic("hedge: zero Hedger; use New")
	}
	return h.delay(h.now())
}

// now returns the time since the hedger's epoch: a read of the monotonic
// clock, half the price of time.Now.
func (h *Hedger) now() time.Duration { return time.Since(h.epoch) }

func (h *Hedger) delay(now time.Duration) (time.Duration, bool) {
	if h.lat == nil {
		return h.cfg.delay, true
	}
	return h.lat.quantile(now)
}

// Do runs op, and runs it again beside the attempts already running each
// time the delay passes without a result, and at once when an attempt
// fails with an error worth another try (see [WithRetryIf]), up to the
// number of hedges of [WithMaxHedges] and as far as the extra-load cap and
// the budget allow. The first attempt always runs. The first success ends
// the call, and so does an error not worth another try; when every attempt
// fails, Do returns the error of the last to end. Either way the other
// attempts' ctx is cancelled, and Do returns only once every attempt has
// returned. A panic in an attempt reaches the caller, once the others have
// returned. The ctx of each attempt is a child of ctx. A call whose first
// attempt ends before the delay costs a timer and the attempt's ctx. Do
// panics if op is nil.
func (h *Hedger) Do(ctx context.Context, op resilience.Op) error {
	if op == nil {
		panic("hedge: Hedger.Do: nil Op")
	}
	if h.load == nil {
		panic("hedge: zero Hedger; use New")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	h.load.deposit()
	if h.cfg.budget != nil {
		h.cfg.budget.Deposit()
	}
	c, _ := h.calls.Get().(*call)
	if c == nil {
		c = new(call)
		c.fire = c.hedgeAfterDelay
	}
	c.h, c.ctx, c.op = h, ctx, op
	if h.lat != nil || h.cfg.observer != nil {
		c.start = h.now()
	}
	c.delay, c.timed = h.delay(c.start)
	err := c.run()
	start, started := c.start, c.started
	c.free()
	if h.cfg.observer != nil {
		now, took := event.End(h.epoch.Add(start))
		h.cfg.observer.Observe(ctx, resilience.Event{Time: now, Policy: resilience.PolicyHedge, Name: h.cfg.name,
			Kind: event.Outcome(ctx, err), Attempt: started, Duration: took, Err: err})
	}
	return err
}

// allow takes a token for a hedge from the load cap and the budget, and
// reports whether both had one.
func (h *Hedger) allow() bool {
	if !h.load.withdraw() {
		return false
	}
	if h.cfg.budget != nil && !h.cfg.budget.Withdraw(time.Now()) {
		h.load.refund()
		return false
	}
	return true
}

// retryable reports whether err, an attempt's, is worth another attempt.
func (h *Hedger) retryable(ctx context.Context, err error) bool {
	if ctx.Err() != nil || errors.Is(err, resilience.ErrRejected) {
		return false
	}
	return h.cfg.retryIf == nil || h.cfg.retryIf(err)
}

// call is one call to Do: its attempts and who won. Each Hedger pools its
// calls, with their timer: a call that ended, and whose attempts kept
// nothing, is reused.
type call struct {
	h     *Hedger
	ctx   context.Context // the caller's
	op    resilience.Op
	start time.Duration // when the call started, if the hedger reads the clock
	delay time.Duration
	timed bool // hedge after delay

	// wg counts the attempts on other goroutines and the armed timer, so
	// that Do returns once they have.
	wg    sync.WaitGroup
	timer *time.Timer
	fire  func() // c.hedgeAfterDelay, made once

	mu       sync.Mutex // guards what follows; never held while op runs
	first    attempt
	hedges   [MaxHedges]*attempt
	started  int // attempts started
	running  int // attempts started that have not ended
	decided  bool
	winner   int // the attempt whose result Do returns, or -1
	err      error
	panicked bool
	panicVal any
	wake     chan struct{} // closed once decided, when the caller waits
	race     *races        // made when an attempt is asked for it
}

// free puts c back in the pool, unless an attempt's op kept its ctx.
func (c *call) free() {
	for i := range c.started {
		if c.attempt(i).Held() {
			return
		}
	}
	h := c.h
	*c = call{timer: c.timer, fire: c.fire, hedges: c.hedges}
	for i, a := range c.hedges {
		if a != nil {
			*a = attempt{c: c, i: i + 1}
		}
	}
	h.calls.Put(c)
}

// races is what resilience.Do reads of a call, made only for it: a call
// can be reused before resilience.Do reads it.
type races struct {
	race     race.Race
	attempts [MaxHedges + 1]race.Attempt
}

// attempt is the ctx of one attempt: a keep.Keeper, so that the op can
// keep it past its return (a response body), which answers for the race
// too.
type attempt struct {
	keep.Keeper
	c      *call
	i      int // its number, from 0
	cancel context.CancelFunc
	start  time.Duration // when it started, if the hedger reads the clock
	ended  bool
}

// Value returns the attempt's *race.Attempt for race.Key, and otherwise
// the value of the ctx beneath.
func (a *attempt) Value(key any) any {
	if key == (race.Key{}) {
		return a.c.raceAttempt(a.i)
	}
	return a.Keeper.Value(key)
}

// raceAttempt returns the race.Attempt of attempt i, and makes the call's
// races on the first request.
func (c *call) raceAttempt(i int) *race.Attempt {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.race == nil {
		r := &races{race: race.Race{Discard: c.h.cfg.discard}}
		outer := race.From(c.ctx)
		for j := range r.attempts {
			r.attempts[j] = race.Attempt{Race: &r.race, Outer: outer}
		}
		if c.winner >= 0 {
			r.race.Winner = &r.attempts[c.winner]
		}
		c.race = r
	}
	return &c.race.attempts[i]
}

// attempt returns attempt i.
func (c *call) attempt(i int) *attempt {
	if i == 0 {
		return &c.first
	}
	return c.hedges[i-1]
}

// run runs the first attempt on the calling goroutine and waits for the
// result and for every attempt.
func (c *call) run() error {
	c.winner = -1
	c.mu.Lock()
	a := c.launch()
	if c.timed {
		c.arm()
	}
	c.mu.Unlock()
	returned := false
	defer func() {
		if !returned { // op panicked: stop the others before the panic goes on
			c.end(a, nil, true, nil)
			c.join()
		}
	}()
	err := c.op(a)
	returned = true
	c.end(a, err, false, nil)
	c.mu.Lock()
	if !c.decided {
		c.wake = make(chan struct{})
		wake := c.wake
		c.mu.Unlock()
		<-wake // the attempts honour the caller's ctx
	} else {
		c.mu.Unlock()
	}
	c.join()
	if c.panicked {
		panic(c.panicVal)
	}
	return c.err
}

// join stops the timer and waits for every attempt. The call is decided.
func (c *call) join() {
	if c.timer != nil && c.timer.Stop() {
		c.wg.Done() // the armed timer that will not fire
	}
	c.wg.Wait()
}

// launch starts the next attempt and returns it. c.mu must be held.
func (c *call) launch() *attempt {
	i := c.started
	a := &c.first
	if i > 0 {
		if c.hedges[i-1] == nil {
			c.hedges[i-1] = &attempt{c: c, i: i}
		}
		a = c.hedges[i-1]
	}
	a.c, a.i = c, i
	ctx, cancel := context.WithCancel(c.ctx)
	a.Init(ctx, cancel)
	a.cancel = cancel
	if i == 0 {
		a.start = c.start
	} else if c.h.lat != nil || c.h.cfg.observer != nil {
		a.start = c.h.now()
	}
	c.started++
	c.running++
	return a
}

// arm sets the timer for the next hedge, if one may start. c.mu must be
// held.
func (c *call) arm() {
	if c.started > c.h.cfg.maxHedges {
		return
	}
	c.wg.Add(1)
	if c.delay <= 0 {
		// Due at once: a goroutine rather than a timer. (Inside a synctest
		// bubble a timer already due runs its func on the calling
		// goroutine, which Go 1.26's race detector crashes on:
		// go.dev/issue/78156.)
		go c.fire()
		return
	}
	if c.timer == nil {
		c.timer = time.AfterFunc(c.delay, c.fire)
	} else {
		c.timer.Reset(c.delay)
	}
}

// hedgeAfterDelay starts a hedge once the delay has passed, on the timer's
// goroutine.
func (c *call) hedgeAfterDelay() {
	defer c.wg.Done()
	c.mu.Lock()
	if c.decided || c.started > c.h.cfg.maxHedges || !c.h.allow() {
		c.mu.Unlock()
		return
	}
	a := c.launch()
	c.arm()
	c.mu.Unlock()
	c.hedge(a, c.delay)
}

// hedge runs attempt a, which started after delay, on the calling
// goroutine, which is not the caller's.
func (c *call) hedge(a *attempt, delay time.Duration) {
	if o := c.h.cfg.observer; o != nil {
		o.Observe(c.ctx, resilience.Event{Time: c.h.epoch.Add(a.start), Policy: resilience.PolicyHedge, Name: c.h.cfg.name,
			Kind: resilience.Started, Attempt: a.i + 1, Delay: delay})
	}
	returned := false
	defer func() {
		if !returned {
			c.end(a, nil, true, recover())
		}
	}()
	err := c.op(a)
	returned = true
	c.end(a, err, false, nil)
}

// end takes the result of attempt a: err, or a panic with value v. It
// decides the call when a's result ends it, and otherwise starts the next
// attempt at once if a failed and one may start.
func (c *call) end(a *attempt, err error, panicked bool, v any) {
	retryable := err != nil && c.h.retryable(c.ctx, err) // the user's classifier, outside the lock
	c.mu.Lock()
	defer c.mu.Unlock()
	defer a.End() // cancels a's ctx, unless op kept it
	a.ended = true
	c.running--
	if c.decided {
		return
	}
	switch {
	case panicked:
		c.panicked, c.panicVal = true, v
		c.decide(-1, nil)
	case !retryable:
		if err == nil && a.i == 0 && c.h.lat != nil {
			now := c.h.now()
			c.h.lat.record(now, now-a.start)
		}
		c.decide(a.i, err)
	case c.started <= c.h.cfg.maxHedges && c.h.allow():
		c.err = err
		b := c.launch()
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.hedge(b, 0)
		}()
	case c.running == 0:
		c.decide(a.i, err) // the last failure, and no attempt may start
	default:
		c.err = err
	}
}

// decide ends the call with the result of attempt i (or none, for -1) and
// err: it cancels the attempts still running, and wakes the caller. c.mu
// must be held.
func (c *call) decide(i int, err error) {
	c.decided, c.winner, c.err = true, i, err
	if i >= 0 && c.race != nil {
		c.race.race.Winner = &c.race.attempts[i]
	}
	for j := range c.started {
		if a := c.attempt(j); j != i && !a.ended {
			if j == 0 && c.h.lat != nil {
				// The first attempt was passed over: its latency is at
				// least this long, which the quantile must see.
				now := c.h.now()
				c.h.lat.record(now, now-a.start)
			}
			a.cancel()
		}
	}
	if c.wake != nil {
		close(c.wake)
	}
}
