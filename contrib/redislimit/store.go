package redislimit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/time/rate"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/internal/wait"
	"github.com/resilience-go/resilience/ratelimit"
)

// store is what a [Limiter] and a [Keyed] limiter share: the Redis client
// and the bucket's shape, the timeout, what to do when Redis does not
// answer, whether it answered last time, and the counts.
type store struct {
	client   redis.UniversalClient
	inf      bool     // rate.Inf: every call admitted, Redis never asked
	keyed    bool     // a Keyed limiter's: the bucket of key k is prefix+"{"+k+"}"
	prefix   string   // a Keyed limiter's
	key      []string // a Limiter's bucket, as the script takes it
	interval string   // ARGV[1]
	burst    string   // ARGV[2]
	maxWait  time.Duration
	timeout  time.Duration
	mode     mode
	local    local // the fallback's limiter, for localMode
	observe  func(Event)
	start    time.Time         // the origin of health's clock
	noAnswer *UnavailableError // why a call failed when the timeout ran out

	health health
	// failure is why the last call that got no answer failed: the refusal,
	// failing closed, of a Limiter's calls made while Redis is not asked.
	failure atomic.Pointer[UnavailableError]
	// limited is a Limiter's refusal by its local fallback, made at the
	// first.
	limited atomic.Pointer[LimitedError]

	admitted, rejected, fellBack, errs atomic.Int64
}

// mode says what a limiter does with a call when Redis does not answer.
type mode uint8

const (
	openMode   mode = iota // admit it
	closedMode             // refuse it with an UnavailableError
	localMode              // ask a limiter of this process
)

// local is the fallback's in-process limiter: a *ratelimit.Limiter for a
// Limiter, a *ratelimit.Keyed for a Keyed limiter. allow takes a token if
// one is available now; wait takes one, waiting for it as the limiter's Do
// does, and returns nil, the limiter's own *ratelimit.LimitedError, or
// ctx's error.
type local interface {
	allow(key string) bool
	wait(ctx context.Context, key string) error
}

type localLimiter struct{ l *ratelimit.Limiter }

func (l localLimiter) allow(string) bool                        { return l.l.Allow() }
func (l localLimiter) wait(ctx context.Context, _ string) error { return l.l.Do(ctx, admit) }

type localKeyed struct{ k *ratelimit.Keyed }

func (l localKeyed) allow(key string) bool                      { return l.k.AllowKey(key) }
func (l localKeyed) wait(ctx context.Context, key string) error { return l.k.DoKey(ctx, key, admit) }

// admit is the op of the local limiter's Do: the call's own op runs after
// it returns, outside the local limiter, so that an error of op's is never
// taken for the local limiter's refusal.
func admit(context.Context) error { return nil }

// newStore checks the arguments of the constructor fn and returns a store
// configured by opts, for a Keyed limiter if keyed.
func newStore(fn string, keyed bool, client redis.UniversalClient, r rate.Limit, burst int, opts []Option) *store {
	if client == nil {
		panic(fmt.Sprintf("redislimit: %s: nil client", fn))
	}
	if on, known := contextTimeouts(client); known && !on {
		panic(fmt.Sprintf("redislimit: %s: the client's ContextTimeoutEnabled is false: set it, "+
			"or a call to a Redis that does not answer outlasts WithTimeout", fn))
	}
	c := config{timeout: 100 * time.Millisecond, probe: time.Second}
	for _, o := range opts {
		if o == nil {
			panic(fmt.Sprintf("redislimit: %s: nil Option", fn))
		}
		o.apply(&c)
	}
	s := &store{client: client, keyed: keyed, maxWait: c.maxWait, timeout: c.timeout,
		mode: c.mode, observe: c.observe, start: time.Now(), health: health{probe: int64(c.probe)},
		noAnswer: &UnavailableError{err: fmt.Errorf("no answer within %v", c.timeout)}}
	if r == rate.Inf {
		s.inf = true
		return s
	}
	if !(r >= 1e-6 && r <= 1e6) {
		panic(fmt.Sprintf("redislimit: %s(%v, %d): want rate.Inf or 1e-6 <= r <= 1e6", fn, float64(r), burst))
	}
	if burst < 1 {
		panic(fmt.Sprintf("redislimit: %s(%v, %d): want burst >= 1", fn, float64(r), burst))
	}
	s.interval, s.burst = bucketArgs(1e6/float64(r), burst)
	if s.mode == localMode {
		// r and burst shared among the instances, the burst rounded up.
		lr := r / rate.Limit(c.instances)
		if lr < 1e-6 {
			panic(fmt.Sprintf("redislimit: WithLocalFallback(%d): want r/instances >= 1e-6, have %v/%d", c.instances, float64(r), c.instances))
		}
		lb := int(math.Ceil(float64(burst) / float64(c.instances)))
		if keyed {
			s.local = localKeyed{ratelimit.NewKeyed(lr, lb, ratelimit.WithMaxWait(c.maxWait))}
		} else {
			s.local = localLimiter{ratelimit.New(lr, lb, ratelimit.WithMaxWait(c.maxWait))}
		}
	}
	return s
}

// contextTimeouts reports whether client honours ctx deadlines, when it is
// a client whose options say.
func contextTimeouts(client redis.UniversalClient) (on, known bool) {
	switch c := client.(type) {
	case *redis.Client:
		return c.Options().ContextTimeoutEnabled, true
	case *redis.ClusterClient:
		return c.Options().ContextTimeoutEnabled, true
	case *redis.Ring:
		return c.Options().ContextTimeoutEnabled, true
	}
	return false, false
}

// now returns the time since s was made, in nanoseconds.
func (s *store) now() int64 { return int64(time.Since(s.start)) }

// keys returns the script's KEYS for the bucket of key name.
func (s *store) keys(name string) []string {
	if !s.keyed {
		return s.key
	}
	return []string{s.prefix + "{" + name + "}"}
}

// take asks Redis for a token of the bucket of key name, due within
// maxWait. Its error is ctx's when ctx is done or its deadline has passed,
// and otherwise an [*UnavailableError] without a key: Redis gave no answer,
// answered with an error, or was not asked because it failed within the
// probe interval.
func (s *store) take(ctx context.Context, name string, maxWait time.Duration) (reply, error) {
	seen, ok := s.health.ask(s.now())
	if !ok {
		return reply{}, s.failure.Load()
	}
	cctx, cancel := context.WithTimeout(ctx, s.timeout)
	r, err := s.eval(cctx, s.keys(name), int64(maxWait/time.Microsecond), "")
	deadline, _ := cctx.Deadline()
	cancel()
	if err != nil {
		if err := ctxErr(ctx); err != nil {
			return reply{}, err
		}
		return reply{}, s.failed(err, deadline)
	}
	if s.health.answer(seen) && s.observe != nil {
		s.observe(Event{Kind: Available})
	}
	return r, nil
}

// ctxErr returns ctx.Err(), or context.DeadlineExceeded if ctx's deadline
// has passed but its timer has not yet said so.
func ctxErr(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
		return context.DeadlineExceeded
	}
	return nil
}

// failed records a call to Redis that failed with err, when its ctx's
// deadline was deadline and the caller's ctx was not done, and returns the
// error of the call. An error reply fails that call alone: Redis answered,
// and is not down. Otherwise the limiter's calls are decided by the
// fallback until Redis answers again. A call that failed at or after its
// deadline got no answer in time: whatever the client said (a
// context.DeadlineExceeded, which would pass for the caller's own, or a raw
// i/o timeout), its error is the timeout's.
func (s *store) failed(err error, deadline time.Time) *UnavailableError {
	s.errs.Add(1)
	var reply redis.Error
	if errors.As(err, &reply) {
		return &UnavailableError{err: err}
	}
	u := s.noAnswer
	if time.Now().Before(deadline) {
		u = &UnavailableError{err: err}
	}
	s.failure.Store(u)
	if s.health.fail(s.now()) && s.observe != nil {
		s.observe(Event{Kind: Unavailable, Err: u.err})
	}
	return u
}

// giveBack gives back the token of the bucket of key name that set its tat
// to tat, taken but not used, if no token was taken after it (see gcra). It
// is best effort: a token not given back is spent. It does not ask a Redis
// that failed since it answered the call that took the token.
func (s *store) giveBack(ctx context.Context, name, tat string) {
	if !s.health.up() {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.timeout)
	defer cancel()
	if _, err := s.eval(ctx, s.keys(name), giveBackArg, tat); err != nil {
		deadline, _ := ctx.Deadline()
		s.failed(err, deadline)
	}
}

// health says whether to ask Redis: always while it answers, and once per
// probe interval after a call got no answer. Its methods take the time, in
// nanoseconds on the store's clock.
type health struct {
	probe int64 // nanoseconds; 0 asks on every call
	// down is nil while Redis answers. After a call that got no answer, it
	// holds the time until which calls are decided by the fallback without
	// asking Redis; the call that moves it on by a probe interval asks. Each
	// failure and each probe stores a new one, so that an answer tells
	// whether anything happened since its call asked.
	down atomic.Pointer[downState]
}

type downState struct{ until int64 }

// ask reports whether a call at now should ask Redis and, if it should,
// the state it asks in, for answer.
func (h *health) ask(now int64) (*downState, bool) {
	d := h.down.Load()
	if d == nil || h.probe == 0 {
		return d, true
	}
	if now < d.until {
		return nil, false
	}
	next := &downState{until: now + h.probe}
	if !h.down.CompareAndSwap(d, next) {
		return nil, false // another call probes
	}
	return next, true
}

// up reports whether Redis answered the last call that asked it.
func (h *health) up() bool { return h.down.Load() == nil }

// fail records a call that got no answer at now, and reports whether it is
// the first to fail since Redis last answered.
func (h *health) fail(now int64) bool {
	return h.down.Swap(&downState{until: now + h.probe}) == nil
}

// answer records an answer to a call that asked in state seen, and reports
// whether it brings Redis back. An answer to a call that asked while Redis
// answered changes nothing, and neither does one to a call that asked
// before the last failure or probe: it is older news.
func (h *health) answer(seen *downState) bool {
	return seen != nil && h.down.CompareAndSwap(seen, nil)
}

// allow takes a token of the bucket of key name if one is available now,
// and reports whether it did.
func (s *store) allow(ctx context.Context, name string) bool {
	if ctx.Err() != nil {
		return false
	}
	if s.inf {
		s.admitted.Add(1)
		return true
	}
	r, err := s.take(ctx, name, 0)
	if err == nil {
		s.count(r.taken)
		return r.taken
	}
	if _, ok := err.(*UnavailableError); !ok {
		return false // ctx's
	}
	s.fellBack.Add(1)
	var ok bool
	switch s.mode {
	case openMode:
		ok = true
	case localMode:
		ok = s.local.allow(name)
	}
	s.count(ok)
	return ok
}

func (s *store) count(admitted bool) {
	if admitted {
		s.admitted.Add(1)
	} else {
		s.rejected.Add(1)
	}
}

// do runs op if the bucket of key name has a token for it, or the fallback
// admits it.
func (s *store) do(ctx context.Context, name string, op resilience.Op) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.inf {
		s.admitted.Add(1)
		return op(ctx)
	}
	maxWait := s.maxWait
	if maxWait > 0 {
		if deadline, ok := ctx.Deadline(); ok {
			maxWait = max(min(maxWait, time.Until(deadline)-1), 0)
		}
	}
	r, err := s.take(ctx, name, maxWait)
	if err != nil {
		if u, ok := err.(*UnavailableError); ok {
			return s.fallback(ctx, name, op, u)
		}
		return err // ctx's
	}
	if r.taken && r.wait > 0 {
		if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) <= r.wait {
			// The answer came too late for the wait to fit.
			s.giveBack(ctx, name, r.tat)
			r.taken = false
		}
	}
	if !r.taken {
		s.rejected.Add(1)
		return &LimitedError{key: name, keyed: s.keyed, wait: r.wait, at: time.Now()}
	}
	if r.wait > 0 && !wait.Sleep(ctx, r.wait) {
		s.giveBack(ctx, name, r.tat)
		return ctx.Err()
	}
	s.admitted.Add(1)
	return op(ctx)
}

// fallback decides a call of key name that Redis did not, for the reason u
// gives. A refusal allocates nothing, but for a Keyed limiter, whose error
// names the key.
func (s *store) fallback(ctx context.Context, name string, op resilience.Op, u *UnavailableError) error {
	switch s.mode {
	case closedMode:
		s.fellBack.Add(1)
		s.rejected.Add(1)
		if s.keyed {
			return &UnavailableError{key: name, keyed: true, err: u.err}
		}
		return u
	case localMode:
		if err := s.local.wait(ctx, name); err != nil {
			le, ok := err.(*ratelimit.LimitedError)
			if !ok {
				return err // ctx's
			}
			s.fellBack.Add(1)
			s.rejected.Add(1)
			return s.limitedLocally(name, le)
		}
	}
	s.fellBack.Add(1)
	s.admitted.Add(1)
	return op(ctx)
}

// limitedLocally returns the refusal of a call of key name by the local
// fallback, whose own refusal is le: for a Limiter, one error made once.
func (s *store) limitedLocally(name string, le *ratelimit.LimitedError) *LimitedError {
	if s.keyed {
		return &LimitedError{key: name, keyed: true, local: le}
	}
	if e := s.limited.Load(); e != nil && e.local == le {
		return e
	}
	e := &LimitedError{local: le}
	s.limited.Store(e)
	return e
}

func (s *store) metrics() Metrics {
	return Metrics{Admitted: s.admitted.Load(), Rejected: s.rejected.Load(),
		Fallback: s.fellBack.Load(), Errors: s.errs.Load()}
}
