package redislimit_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/contrib/redislimit"
	"github.com/resilience-go/resilience/internal/servicetest"
	"github.com/resilience-go/resilience/ratelimit"
)

// Redis is cut off mid-run, then made to hang, then given back. With each
// fallback, the calls made meanwhile are decided as documented, and once
// Redis answers again the limiter uses it.
func TestRedisCut(t *testing.T) {
	const (
		burst        = 8
		timeout      = 3 * time.Second
		probe        = 20 * time.Millisecond
		callsWhenCut = 8
		hungCalls    = 2
	)
	// 4 an hour; with WithLocalFallback(4), 1 an hour and bursts of 2: no
	// token comes back during the test.
	r := rate.Every(15 * time.Minute)
	tests := []struct {
		name string
		opt  redislimit.Option
		// cut checks the calls made while Redis was cut off: how many ran,
		// and the errors of the others.
		cut func(t *testing.T, ran int, errs []error)
	}{
		{"FailOpen", redislimit.WithFailOpen(), func(t *testing.T, ran int, errs []error) {
			assert.Equal(t, callsWhenCut, ran, "every call admitted, over the limit: %v", errs)
		}},
		{"FailClosed", redislimit.WithFailClosed(), func(t *testing.T, ran int, errs []error) {
			assert.Zero(t, ran, "every call refused")
			for _, err := range errs {
				assert.ErrorIs(t, err, redislimit.ErrUnavailable)
				assert.ErrorIs(t, err, resilience.ErrRejected, "a refusal, not a failure of the dependency")
				assert.NotErrorIs(t, err, ratelimit.ErrLimited, "the caller is not over the limit")
				_, hinted := resilience.RetryAfter(err)
				assert.False(t, hinted, "no retry-after hint: nobody knows when Redis is back")
			}
		}},
		{"LocalFallback", redislimit.WithLocalFallback(4), func(t *testing.T, ran int, errs []error) {
			assert.Equal(t, 2, ran, "this instance's share of the burst: 8/4")
			for _, err := range errs {
				assert.ErrorIs(t, err, ratelimit.ErrLimited)
				var le *redislimit.LimitedError
				if assert.ErrorAs(t, err, &le) {
					assert.Positive(t, le.RetryAfter(), "a token is due within the local limiter's interval, an hour")
					assert.LessOrEqual(t, le.RetryAfter(), time.Hour)
				}
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := servicetest.NewProxy(t, servicetest.RedisAddr(t))
			_, prefix := redisClient(t)
			c := newClient(t, p.Addr())
			var (
				mu     sync.Mutex
				events []redislimit.Event
			)
			l := redislimit.New(c, prefix+"cut", r, burst, tt.opt,
				redislimit.WithTimeout(timeout), redislimit.WithProbeInterval(probe),
				redislimit.WithObserver(func(e redislimit.Event) { mu.Lock(); events = append(events, e); mu.Unlock() }))
			kinds := func() []redislimit.EventKind {
				mu.Lock()
				defer mu.Unlock()
				var ks []redislimit.EventKind
				for _, e := range events {
					ks = append(ks, e.Kind)
				}
				return ks
			}
			ctx := context.Background()
			// call makes one call. A call waits for Redis up to its
			// timeout; one that hangs far longer fails the test.
			call := func() (ran bool, err error) {
				start := time.Now()
				err = l.Do(ctx, func(context.Context) error { ran = true; return nil })
				assert.Less(t, time.Since(start), timeout+10*time.Second, "a call that hangs (err %v)", err)
				return ran, err
			}

			// Redis answers: the burst, then a refusal.
			for i := range burst {
				_, err := call()
				require.NoError(t, err, "token %d", i)
			}
			_, err := call()
			require.ErrorIs(t, err, ratelimit.ErrLimited)
			require.Equal(t, redislimit.Metrics{Admitted: burst, Rejected: 1}, l.Metrics())

			// Cut: the proxy closes its connections and refuses new ones.
			p.Cut()
			ran, errs := 0, []error(nil)
			for range callsWhenCut {
				switch ok, err := call(); {
				case ok:
					ran++
				case err != nil:
					errs = append(errs, err)
				}
			}
			tt.cut(t, ran, errs)
			m := l.Metrics()
			assert.Equal(t, int64(callsWhenCut), m.Fallback, "every call decided by the fallback")
			assert.Positive(t, m.Errors)
			assert.Equal(t, []redislimit.EventKind{redislimit.Unavailable}, kinds())

			// Hang: the proxy takes requests to Redis and lets no answer
			// back. The calls that ask Redis (those that fail: the others
			// come within the probe interval) wait for the timeout; the
			// fallback decides them all.
			p.Hold()
			hung, start := 0, time.Now()
			for hung < hungCalls && time.Since(start) < time.Minute {
				before := l.Metrics()
				_, err := call()
				after := l.Metrics()
				assert.Equal(t, before.Fallback+1, after.Fallback, "decided by the fallback: %v", err)
				if after.Errors == before.Errors {
					continue // not asked
				}
				hung++
				if err != nil && !errors.Is(err, ratelimit.ErrLimited) {
					assert.NotErrorIs(t, err, context.DeadlineExceeded, "the limiter's timeout is not the caller's deadline")
					assert.ErrorContains(t, err, "no answer within 3s")
				}
			}
			assert.Equal(t, hungCalls, hung, "calls waited for an answer that did not come")
			assert.Equal(t, []redislimit.EventKind{redislimit.Unavailable}, kinds(), "Redis is still down")

			// Back: Redis answers again, and decides the calls.
			p.Restore()
			require.Eventually(t, func() bool {
				before := l.Metrics().Fallback
				call()
				return l.Metrics().Fallback == before
			}, 30*time.Second, 10*time.Millisecond, "a call decided by Redis")
			assert.Equal(t, []redislimit.EventKind{redislimit.Unavailable, redislimit.Available}, kinds())
			before := l.Metrics()
			refused := false
			for range 100 {
				if _, err := call(); err != nil {
					assert.ErrorIs(t, err, ratelimit.ErrLimited)
					refused = true
					break
				}
			}
			assert.True(t, refused, "Redis's bucket is empty")
			after := l.Metrics()
			assert.Equal(t, before.Fallback, after.Fallback, "Redis decided")
			assert.Equal(t, before.Errors, after.Errors)
		})
	}
}

// Allow falls back as Do does.
func TestAllowFallsBack(t *testing.T) {
	ctx := context.Background()
	c := newClient(t, "127.0.0.1:1") // nothing listens there
	probe := redislimit.WithProbeInterval(time.Hour)
	open := redislimit.New(c, "k", 1, 1, redislimit.WithFailOpen(), probe)
	closed := redislimit.New(c, "k", 1, 1, redislimit.WithFailClosed(), probe)
	// With WithLocalFallback(2): one an hour, bursts of 1.
	local := redislimit.New(c, "k", rate.Every(30*time.Minute), 2, redislimit.WithLocalFallback(2), probe)
	for range 3 {
		assert.True(t, open.Allow(ctx))
		assert.False(t, closed.Allow(ctx))
	}
	assert.True(t, local.Allow(ctx))
	assert.False(t, local.Allow(ctx))
	assert.Equal(t, redislimit.Metrics{Admitted: 3, Fallback: 3, Errors: 1}, open.Metrics())
	assert.Equal(t, redislimit.Metrics{Rejected: 3, Fallback: 3, Errors: 1}, closed.Metrics())
	assert.Equal(t, redislimit.Metrics{Admitted: 1, Rejected: 1, Fallback: 2, Errors: 1}, local.Metrics())

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	assert.False(t, open.Allow(cancelled), "a done ctx takes no token, even failing open")
}

// Without Redis, a refusal for want of it names the key and says why.
func TestUnavailableError(t *testing.T) {
	ctx := context.Background()
	c := newClient(t, "127.0.0.1:1")
	k := redislimit.NewKeyed(c, "p:", 1, 1, redislimit.WithFailClosed(), redislimit.WithProbeInterval(0))
	err := k.DoKey(ctx, "alice", nop)
	var ue *redislimit.UnavailableError
	require.ErrorAs(t, err, &ue)
	assert.Equal(t, "alice", ue.Key())
	assert.True(t, strings.HasPrefix(err.Error(), `redislimit: Redis unavailable (key "alice"): `), err.Error())
	assert.Error(t, errors.Unwrap(err), "the client's error")
	assert.ErrorIs(t, err, redislimit.ErrUnavailable)
	assert.ErrorIs(t, err, resilience.ErrRejected)
	assert.NotErrorIs(t, err, ratelimit.ErrLimited)
	assert.ErrorIs(t, redislimit.ErrUnavailable, resilience.ErrRejected)
	assert.Equal(t, redislimit.Metrics{Rejected: 1, Fallback: 1, Errors: 1}, k.Metrics())

	l := redislimit.New(c, "k", 1, 1, redislimit.WithFailClosed())
	err = l.Do(ctx, nop)
	require.ErrorAs(t, err, &ue)
	assert.Empty(t, ue.Key())
	assert.True(t, strings.HasPrefix(err.Error(), "redislimit: Redis unavailable: "), err.Error())
}

// An error reply fails its call alone: Redis answered, so the limiter does
// not take it for down, and the calls for other keys, and the next call
// for the same key, ask it.
func TestErrorReplyFailsOnlyItsCall(t *testing.T) {
	c, prefix := redisClient(t)
	ctx := context.Background()
	require.NoError(t, c.LPush(ctx, prefix+"{alice}", "not a bucket").Err(), "a key of another type where alice's bucket goes")
	var events atomic.Int64
	k := redislimit.NewKeyed(c, prefix, hourly, 1, decided(redislimit.WithObserver(func(redislimit.Event) { events.Add(1) }))...)

	err := k.DoKey(ctx, "alice", func(context.Context) error { t.Error("op ran, failing closed"); return nil })
	var reply redis.Error
	require.ErrorAs(t, err, &reply, "Redis's error reply")
	assert.ErrorContains(t, err, "WRONGTYPE")
	assert.ErrorIs(t, err, redislimit.ErrUnavailable)
	var ue *redislimit.UnavailableError
	require.ErrorAs(t, err, &ue)
	assert.Equal(t, "alice", ue.Key())

	assert.NoError(t, k.DoKey(ctx, "bob", nop), "Redis decides bob's calls")
	assert.ErrorIs(t, k.DoKey(ctx, "bob", nop), ratelimit.ErrLimited, "bob's burst is spent")
	assert.ErrorAs(t, k.DoKey(ctx, "alice", nop), &reply, "alice's next call asks Redis again")
	assert.False(t, k.AllowKey(ctx, "alice"), "failing closed")
	assert.Equal(t, redislimit.Metrics{Admitted: 1, Rejected: 4, Fallback: 3, Errors: 3}, k.Metrics())
	assert.Zero(t, events.Load(), "Redis answered every call: no event")

	// Failing open, the call is admitted.
	open := redislimit.NewKeyed(c, prefix, hourly, 1, timeout)
	assert.NoError(t, open.DoKey(ctx, "alice", nop))
	assert.Equal(t, redislimit.Metrics{Admitted: 1, Fallback: 1, Errors: 1}, open.Metrics())
}

// A call whose ctx's deadline passes while Redis does not answer ends with
// ctx's error: the caller's deadline is not a failure of Redis.
func TestCallersDeadlineIsNotAFailure(t *testing.T) {
	p := servicetest.NewProxy(t, servicetest.RedisAddr(t))
	_, prefix := redisClient(t)
	c := newClient(t, p.Addr())
	require.NoError(t, c.Ping(context.Background()).Err(), "a connection, made and set up before Redis hangs")
	var events atomic.Int64
	l := redislimit.New(c, prefix+"deadline", hourly, 1, redislimit.WithTimeout(time.Hour), redislimit.WithFailClosed(),
		redislimit.WithObserver(func(redislimit.Event) { events.Add(1) }))
	p.Hold()

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := l.Do(ctx, func(context.Context) error { t.Error("op ran"); return nil })
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.NotErrorIs(t, err, resilience.ErrRejected, "not a refusal")

	ctx, cancel = context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	assert.False(t, l.Allow(ctx))

	assert.Equal(t, redislimit.Metrics{}, l.Metrics(), "neither decided nor a failure of Redis")
	assert.Zero(t, events.Load())
}

// With WithMaxWait, a token that Redis reserves within the deadline, but
// whose answer comes too late for the wait to fit what is left of it, is
// given back at once, and the call refused before the deadline.
func TestMaxWaitAnswerTooLate(t *testing.T) {
	const latency = 2 * time.Second
	direct, prefix := redisClient(t)
	key := prefix + "late"
	p := servicetest.NewProxy(t, servicetest.RedisAddr(t))
	slow := newClient(t, p.Addr())
	require.NoError(t, slow.Ping(context.Background()).Err(), "a connection, made and set up before the answers slow down")
	p.Delay(latency)
	l := redislimit.New(slow, key, hourly, 1, redislimit.WithMaxWait(2*time.Hour), redislimit.WithTimeout(10*latency),
		redislimit.WithFailClosed())
	// The first token, taken without the latency.
	require.True(t, redislimit.New(direct, key, hourly, 1, decided()...).Allow(context.Background()))

	// The deadline leaves room for the token, due in an hour, when the
	// call is sent, and none when the answer arrives, a latency later: by
	// half a latency either way, so that the call needs only to be sent,
	// and the first token to have been taken, within a second.
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour+latency/2)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- l.Do(ctx, func(context.Context) error { t.Error("op ran past the deadline"); return nil })
	}()
	assert.Eventually(t, func() bool { return ttl(t, direct, key) > 90*time.Minute }, 30*time.Second, 5*time.Millisecond,
		"Redis reserves the token due in an hour")
	err := <-done
	assert.NoError(t, ctx.Err(), "refused before the deadline")
	assert.ErrorIs(t, err, ratelimit.ErrLimited)
	assert.LessOrEqual(t, ttl(t, direct, key), time.Hour+time.Millisecond, "the reserved token was given back: one token out")
	assert.Equal(t, redislimit.Metrics{Rejected: 1}, l.Metrics())
}

// A token reserved by a waiting call is not given back to a Redis known to
// be down: the call does not wait for a Redis that does not answer.
func TestNoGiveBackWhileRedisIsDown(t *testing.T) {
	direct, prefix := redisClient(t)
	key := prefix + "down"
	p := servicetest.NewProxy(t, servicetest.RedisAddr(t))
	c := oneConnClient(t, p.Addr())
	l := redislimit.New(c, key, hourly, 1, redislimit.WithMaxWait(2*time.Hour), timeout, redislimit.WithFailClosed(),
		redislimit.WithProbeInterval(time.Hour))
	require.True(t, l.Allow(context.Background()))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- l.Do(ctx, func(context.Context) error { t.Error("op ran before its token was due"); return nil })
	}()
	require.Eventually(t, func() bool { return ttl(t, direct, key) > 90*time.Minute }, 30*time.Second, 5*time.Millisecond,
		"the waiting call reserves the token due in an hour")
	answered(t, c) // and waits for it

	p.Cut()
	require.ErrorIs(t, l.Do(context.Background(), nop), redislimit.ErrUnavailable, "a call finds Redis down")
	require.Equal(t, int64(1), l.Metrics().Errors)
	cancel()
	assert.Equal(t, context.Canceled, <-done)
	assert.Equal(t, int64(1), l.Metrics().Errors, "no call to give the token back")
	assert.Greater(t, ttl(t, direct, key), 90*time.Minute, "the reserved token is spent")
}

// While Redis is down, within the probe interval, the fallback decides a
// call with no round trip, and allocates nothing: but for the refusals of
// a Keyed limiter, whose error names the key.
func TestFallbackAllocatesNothing(t *testing.T) {
	ctx := context.Background()
	c := newClient(t, "127.0.0.1:1") // nothing listens there
	probe := redislimit.WithProbeInterval(time.Hour)
	// The admitting local limiters have a burst no test spends, and a
	// bucket that is not full again within the test: a Keyed one keeps
	// the key, rather than drop it as idle and make it anew.
	var (
		open        = redislimit.New(c, "k", 1, 1, probe)
		closed      = redislimit.New(c, "k", 1, 1, redislimit.WithFailClosed(), probe)
		admitting   = redislimit.New(c, "k", hourly, 1<<30, redislimit.WithLocalFallback(1), probe)
		limiting    = redislimit.New(c, "k", hourly, 1, redislimit.WithLocalFallback(1), probe)
		keyed       = redislimit.NewKeyed(c, "p:", hourly, 1<<30, redislimit.WithLocalFallback(1), probe)
		closedKeyed = redislimit.NewKeyed(c, "p:", 1, 1, redislimit.WithFailClosed(), probe)
		limitKeyed  = redislimit.NewKeyed(c, "p:", hourly, 1, redislimit.WithLocalFallback(1), probe)
	)
	// The first call of each finds Redis down; the first of the limiting
	// ones takes the local burst.
	require.NoError(t, open.Do(ctx, nop))
	require.ErrorIs(t, closed.Do(ctx, nop), redislimit.ErrUnavailable)
	require.NoError(t, admitting.Do(ctx, nop))
	require.NoError(t, limiting.Do(ctx, nop))
	require.NoError(t, keyed.DoKey(ctx, "alice", nop))
	require.ErrorIs(t, closedKeyed.DoKey(ctx, "alice", nop), redislimit.ErrUnavailable)
	require.NoError(t, limitKeyed.DoKey(ctx, "alice", nop))

	err := limiting.Do(ctx, nop)
	require.ErrorIs(t, err, ratelimit.ErrLimited)
	d, ok := resilience.RetryAfter(err)
	assert.True(t, ok, "a hint from the local limiter")
	assert.Positive(t, d)
	assert.LessOrEqual(t, d, time.Hour)
	assert.Same(t, err, limiting.Do(ctx, nop), "the refusals share one error")
	require.ErrorIs(t, limitKeyed.DoKey(ctx, "alice", nop), ratelimit.ErrLimited)

	tests := []struct {
		name   string
		allocs float64
		f      func()
	}{
		{"Do, failing open", 0, func() { _ = open.Do(ctx, nop) }},
		{"Allow, failing open", 0, func() { open.Allow(ctx) }},
		{"Do, failing closed", 0, func() { _ = closed.Do(ctx, nop) }},
		{"Allow, failing closed", 0, func() { closed.Allow(ctx) }},
		{"Do, admitted by the local fallback", 0, func() { _ = admitting.Do(ctx, nop) }},
		{"Do, refused by the local fallback", 0, func() { _ = limiting.Do(ctx, nop) }},
		{"Allow, refused by the local fallback", 0, func() { limiting.Allow(ctx) }},
		{"DoKey, admitted by the local fallback", 0, func() { _ = keyed.DoKey(ctx, "alice", nop) }},
		{"AllowKey, failing closed", 0, func() { closedKeyed.AllowKey(ctx, "alice") }},
		{"DoKey, failing closed", 1, func() { _ = closedKeyed.DoKey(ctx, "alice", nop) }},
		{"DoKey, refused by the local fallback", 1, func() { _ = limitKeyed.DoKey(ctx, "alice", nop) }},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.allocs, testing.AllocsPerRun(1000, tt.f), tt.name)
	}
	for _, m := range []redislimit.Metrics{open.Metrics(), closed.Metrics(), limiting.Metrics(), closedKeyed.Metrics()} {
		assert.Equal(t, int64(1), m.Errors, "one call asked Redis: %+v", m)
	}
}
