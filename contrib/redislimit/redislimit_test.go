package redislimit_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/contrib/redislimit"
	"github.com/resilience-go/resilience/internal/policytest"
	"github.com/resilience-go/resilience/internal/servicetest"
	"github.com/resilience-go/resilience/ratelimit"
)

func nop(context.Context) error { return nil }

// TestMain keeps go-redis quiet: the tests cut Redis off on purpose, and it
// logs each dial that fails.
func TestMain(m *testing.M) {
	redis.SetLogger(quiet{})
	m.Run()
}

type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

// newClient returns a client of the Redis at addr with the options the
// limiters need, and without retries, so that a call takes at most one
// token; it is closed when the test ends.
func newClient(t testing.TB, addr string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true, MaxRetries: -1})
	t.Cleanup(func() { c.Close() })
	return c
}

// oneConnClient returns a client as newClient does, whose pool holds one
// connection: a call made while another has it waits until the other has
// its answer.
func oneConnClient(t testing.TB, addr string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true, MaxRetries: -1,
		PoolSize: 1, PoolTimeout: time.Minute})
	t.Cleanup(func() { c.Close() })
	return c
}

// answered waits until every call made with c, a oneConnClient, has its
// answer: until c's one connection is free.
func answered(t *testing.T, c *redis.Client) {
	t.Helper()
	require.NoError(t, c.Ping(context.Background()).Err(), "the calls made with the client have their answers")
}

// redisClient returns a client of the Redis named by RESILIENCE_REDIS_ADDR,
// and a prefix for keys of the test's own, which are deleted when the test
// ends. It skips the test when the variable is unset.
func redisClient(t testing.TB) (*redis.Client, string) {
	t.Helper()
	c := newClient(t, servicetest.RedisAddr(t))
	return c, keyPrefix(t, c)
}

// keyPrefix returns a prefix for keys of the test's own, and deletes the
// keys that have it when the test ends.
func keyPrefix(t testing.TB, c *redis.Client) string {
	t.Helper()
	prefix := servicetest.UniqueName(t) + ":"
	t.Cleanup(func() {
		ctx := context.Background()
		iter := c.Scan(ctx, 0, prefix+"*", 100).Iterator()
		for iter.Next(ctx) {
			if err := c.Del(ctx, iter.Val()).Err(); err != nil {
				t.Errorf("delete %s: %v", iter.Val(), err)
			}
		}
		if err := iter.Err(); err != nil {
			t.Errorf("scan %s*: %v", prefix, err)
		}
	})
	return prefix
}

// warmClient returns a client whose pool holds n connections, each used
// once, and room for no more: calls made from a synctest bubble by up to n
// goroutines then neither dial nor wait for a connection, and so start no
// goroutine and no timer that would outlive the bubble.
func warmClient(t *testing.T, n int) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: servicetest.RedisAddr(t), ContextTimeoutEnabled: true,
		MaxRetries: -1, PoolSize: n, ConnMaxIdleTime: -1})
	t.Cleanup(func() { c.Close() })
	conns := make([]*redis.Conn, n)
	for i := range conns {
		conns[i] = c.Conn()
		require.NoError(t, conns[i].Ping(context.Background()).Err(), "connection %d", i)
	}
	for _, cn := range conns {
		require.NoError(t, cn.Close())
	}
	return c
}

// ttl returns how long until key expires: for a bucket, until it is full.
// It may be called from any goroutine.
func ttl(t *testing.T, c *redis.Client, key string) time.Duration {
	t.Helper()
	d, err := c.PTTL(context.Background(), key).Result()
	assert.NoError(t, err, "PTTL %s", key)
	return d
}

// timeout is ample for a Redis that answers, on a machine busy with -race
// and other tests.
var timeout = redislimit.WithTimeout(10 * time.Second)

// decided returns opts after the options of a limiter whose calls Redis
// must decide: an ample timeout, and failing closed, so that a call Redis
// did not decide is refused, and a test that checks the counts, or that
// no call failed, says so.
func decided(opts ...redislimit.Option) []redislimit.Option {
	return append([]redislimit.Option{timeout, redislimit.WithFailClosed()}, opts...)
}

// hourly is a rate at which no token comes back during a test: its
// refusals and waits depend on no timing.
var hourly = rate.Every(time.Hour)

func TestContract(t *testing.T) {
	c := warmClient(t, 72) // policytest's 64 goroutines, and room
	prefix := keyPrefix(t, c)
	var (
		mu    sync.Mutex
		n     int
		made  []interface{ Metrics() redislimit.Metrics }
		tests = []struct {
			name string
			new  func(key string) resilience.Policy
		}{
			{"New", func(key string) resilience.Policy {
				return track(&mu, &made, redislimit.New(c, key, 1000, 100, decided()...))
			}},
			{"waiting", func(key string) resilience.Policy {
				return track(&mu, &made, redislimit.New(c, key, 1000, 10, decided(redislimit.WithMaxWait(time.Second))...))
			}},
			{"Keyed", func(key string) resilience.Policy {
				k := track(&mu, &made, redislimit.NewKeyed(c, key, 1000, 100, decided()...))
				return k.Policy(func(context.Context) string { return "tenant" })
			}},
			{"FailOpen", func(key string) resilience.Policy {
				return track(&mu, &made, redislimit.New(c, key, 1000, 100, timeout, redislimit.WithFailOpen()))
			}},
			{"LocalFallback", func(key string) resilience.Policy {
				return track(&mu, &made, redislimit.New(c, key, 1000, 100, timeout, redislimit.WithLocalFallback(4)))
			}},
			{"Inf", func(key string) resilience.Policy { return redislimit.New(c, key, rate.Inf, 0) }},
		}
	)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			policytest.Run(t, func() resilience.Policy {
				mu.Lock()
				n++
				key := fmt.Sprint(prefix, n)
				mu.Unlock()
				return tt.new(key)
			})
		})
	}
	for i, l := range made {
		m := l.Metrics()
		assert.Zero(t, m.Errors, "limiter %d: every call to Redis was answered", i)
		assert.Zero(t, m.Fallback, "limiter %d: every call was decided by Redis", i)
	}
}

// track adds l to made, and returns it.
func track[L interface{ Metrics() redislimit.Metrics }](mu *sync.Mutex, made *[]interface{ Metrics() redislimit.Metrics }, l L) L {
	mu.Lock()
	defer mu.Unlock()
	*made = append(*made, l)
	return l
}

func TestBurstThenRefusal(t *testing.T) {
	c, prefix := redisClient(t)
	ctx := context.Background()
	l := redislimit.New(c, prefix+"b", hourly, 3, decided()...)
	for i := range 3 {
		assert.True(t, l.Allow(ctx), "burst token %d", i)
	}
	assert.False(t, l.Allow(ctx), "the burst is spent")
	assert.Equal(t, redislimit.Metrics{Admitted: 3, Rejected: 1}, l.Metrics())

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	other := redislimit.New(c, prefix+"other", hourly, 3, decided()...)
	assert.False(t, other.Allow(cancelled), "Allow with a done ctx")
	assert.Equal(t, redislimit.Metrics{}, other.Metrics(), "a done ctx is neither admitted nor refused")
}

func TestRefusalCarriesAHint(t *testing.T) {
	c, prefix := redisClient(t)
	ctx := context.Background()
	key := prefix + "hint"
	l := redislimit.New(c, key, hourly, 2, decided()...)
	require.True(t, l.Allow(ctx))
	require.True(t, l.Allow(ctx))
	calls := 0
	err := l.Do(ctx, func(context.Context) error { calls++; return nil })
	assert.Zero(t, calls)
	assert.ErrorIs(t, err, ratelimit.ErrLimited)
	assert.ErrorIs(t, err, resilience.ErrRejected)
	assert.NotErrorIs(t, err, redislimit.ErrUnavailable)
	assert.EqualError(t, err, "redislimit: limited")
	d, ok := resilience.RetryAfter(fmt.Errorf("send: %w", err))
	require.True(t, ok, "the refusal carries a hint")
	assert.LessOrEqual(t, d, time.Hour, "a token is due within an interval")
	assert.Greater(t, d, time.Hour-time.Minute, "the tokens were taken a moment ago")
	assert.Equal(t, redislimit.Metrics{Admitted: 2, Rejected: 1}, l.Metrics())

	// The hint is what the bucket says: a call that may wait for half of it
	// is refused, and a call that may wait for all of it reserves the token.
	half := redislimit.New(c, key, hourly, 2, decided(redislimit.WithMaxWait(d/2))...)
	assert.ErrorIs(t, half.Do(ctx, nop), ratelimit.ErrLimited, "the token is due in about %v", d)
	assert.Equal(t, redislimit.Metrics{Rejected: 1}, half.Metrics())
	one := oneConnClient(t, servicetest.RedisAddr(t))
	full := redislimit.New(one, key, hourly, 2, decided(redislimit.WithMaxWait(d))...)
	require.LessOrEqual(t, ttl(t, c, key), 2*time.Hour+time.Millisecond, "two tokens taken: the bucket is full in two hours")
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- full.Do(wctx, func(context.Context) error { t.Error("op ran before its token was due"); return nil })
	}()
	require.Eventually(t, func() bool { return ttl(t, c, key) > 2*time.Hour+time.Hour/2 }, 30*time.Second, 5*time.Millisecond,
		"the call that may wait %v reserves the token", d)
	answered(t, one) // and waits for it
	cancel()
	assert.Equal(t, context.Canceled, <-done)
	assert.Equal(t, redislimit.Metrics{}, full.Metrics())
}

// A call that may wait reserves the token due next. The call after it,
// whose token is due past its maximum wait, is refused at once, while the
// first still waits; the first, cancelled, gives its token back.
func TestMaxWait(t *testing.T) {
	c, prefix := redisClient(t)
	ctx := context.Background()
	key := prefix + "wait"
	one := oneConnClient(t, servicetest.RedisAddr(t))
	l := redislimit.New(one, key, hourly, 1, decided(redislimit.WithMaxWait(90*time.Minute))...)
	require.NoError(t, l.Do(ctx, nop), "the burst token")
	require.LessOrEqual(t, ttl(t, c, key), time.Hour+time.Millisecond, "one token taken: the bucket is full in an hour")

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- l.Do(wctx, func(context.Context) error { t.Error("op ran before its token was due"); return nil })
	}()
	require.Eventually(t, func() bool { return ttl(t, c, key) > 90*time.Minute }, 30*time.Second, 5*time.Millisecond,
		"the waiting call reserves the token due in an hour")
	answered(t, one) // and waits for it

	err := l.Do(ctx, func(context.Context) error {
		t.Error("op ran, though its token is due past the maximum wait")
		return nil
	})
	assert.ErrorIs(t, err, ratelimit.ErrLimited)
	hint, ok := resilience.RetryAfter(err)
	require.True(t, ok, "the refusal carries a hint")
	assert.Greater(t, hint, 90*time.Minute, "the refused call's token is due in two hours")
	assert.LessOrEqual(t, hint, 2*time.Hour)
	select {
	case err := <-done:
		t.Fatalf("the first call returned %v while its token was an hour away", err)
	default:
	}

	cancel()
	assert.Equal(t, context.Canceled, <-done)
	assert.LessOrEqual(t, ttl(t, c, key), time.Hour+time.Millisecond, "the reserved token was given back")
	assert.Equal(t, redislimit.Metrics{Admitted: 1, Rejected: 1}, l.Metrics())
}

// A call that gives up its wait does not hand its token to a later call
// ahead of one already waiting for a later token: its token is spent.
func TestCancelKeepsLaterWaitsInPlace(t *testing.T) {
	c, prefix := redisClient(t)
	ctx := context.Background()
	key := prefix + "queue"
	l := redislimit.New(c, key, hourly, 1, decided(redislimit.WithMaxWait(150*time.Minute))...)
	require.NoError(t, l.Do(ctx, nop), "the burst token")

	wait := func(ctx context.Context, reserved time.Duration) chan error {
		done := make(chan error, 1)
		go func() {
			done <- l.Do(ctx, func(context.Context) error { t.Error("op ran before its token was due"); return nil })
		}()
		require.Eventually(t, func() bool { return ttl(t, c, key) > reserved }, 30*time.Second, 5*time.Millisecond)
		return done
	}
	actx, cancelA := context.WithCancel(ctx)
	defer cancelA()
	bctx, cancelB := context.WithCancel(ctx)
	defer cancelB()
	a := wait(actx, 90*time.Minute)  // due in an hour
	b := wait(bctx, 150*time.Minute) // due in two
	cancelA()
	assert.Equal(t, context.Canceled, <-a)
	assert.Greater(t, ttl(t, c, key), 150*time.Minute, "b keeps its time: a's token is not given back")

	// A new call would need three hours: refused at once.
	err := l.Do(ctx, nop)
	assert.ErrorIs(t, err, ratelimit.ErrLimited)
	hint, _ := resilience.RetryAfter(err)
	assert.Greater(t, hint, 150*time.Minute)
	cancelB()
	assert.Equal(t, context.Canceled, <-b)
	assert.LessOrEqual(t, ttl(t, c, key), 2*time.Hour+time.Millisecond, "b, the latest, was given back")
}

func TestMaxWaitRespectsTheDeadline(t *testing.T) {
	c, prefix := redisClient(t)
	l := redislimit.New(c, prefix+"deadline", hourly, 1, decided(redislimit.WithMaxWait(2*time.Hour))...)
	require.True(t, l.Allow(context.Background()))

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := l.Do(ctx, func(context.Context) error { t.Error("op ran, though its token is due after the deadline"); return nil })
	assert.NoError(t, ctx.Err(), "refused at once, without waiting for the deadline")
	assert.ErrorIs(t, err, ratelimit.ErrLimited, "the token is due in an hour, after the deadline")
	assert.Equal(t, redislimit.Metrics{Admitted: 1, Rejected: 1}, l.Metrics())

	// A token due within the deadline is waited for.
	soon := redislimit.New(c, prefix+"soon", 1, 1, decided(redislimit.WithMaxWait(time.Minute))...) // a token a second
	require.True(t, soon.Allow(context.Background()))
	ctx, cancel = context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ran := false
	assert.NoError(t, soon.Do(ctx, func(context.Context) error { ran = true; return nil }), "due within the deadline")
	assert.True(t, ran)
	assert.Equal(t, redislimit.Metrics{Admitted: 2}, soon.Metrics())
}

func TestKeysAreIndependent(t *testing.T) {
	c, prefix := redisClient(t)
	ctx := context.Background()
	k := redislimit.NewKeyed(c, prefix, hourly, 2, decided()...)
	for _, key := range []string{"alice", "bob"} {
		assert.True(t, k.AllowKey(ctx, key))
		assert.True(t, k.AllowKey(ctx, key))
		assert.False(t, k.AllowKey(ctx, key), "%s's burst is spent", key)
	}
	err := k.DoKey(ctx, "alice", nop)
	assert.ErrorIs(t, err, ratelimit.ErrLimited)
	assert.EqualError(t, err, `redislimit: limited (key "alice")`)
	var le *redislimit.LimitedError
	require.ErrorAs(t, err, &le)
	assert.Equal(t, "alice", le.Key())
	assert.LessOrEqual(t, le.RetryAfter(), time.Hour)
	assert.Positive(t, le.RetryAfter())
	assert.NoError(t, k.DoKey(ctx, "carol", nop))
	assert.Equal(t, redislimit.Metrics{Admitted: 5, Rejected: 3}, k.Metrics())

	// A limiter with another prefix has buckets of its own.
	other := redislimit.NewKeyed(c, prefix+"other:", hourly, 2, decided()...)
	assert.True(t, other.AllowKey(ctx, "alice"))
	assert.Equal(t, redislimit.Metrics{Admitted: 1}, other.Metrics())

	keys, err := c.Keys(ctx, prefix+"*").Result()
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{prefix + "{alice}", prefix + "{bob}", prefix + "{carol}", prefix + "other:{alice}"}, keys,
		"one key per bucket, the caller's key its hash tag")
}

func TestIdleKeysExpire(t *testing.T) {
	c, prefix := redisClient(t)
	ctx := context.Background()
	const interval = time.Second
	k := redislimit.NewKeyed(c, prefix, rate.Every(interval), 5, decided()...)
	start := time.Now()
	for range 3 {
		require.True(t, k.AllowKey(ctx, "alice"))
	}
	key := prefix + "{alice}"
	left := ttl(t, c, key)
	elapsed := time.Since(start)
	// Three tokens taken: the bucket is full again three intervals after the
	// first, and the key expires then.
	assert.LessOrEqual(t, left, 3*interval+time.Millisecond, "the key expires when the bucket is full")
	assert.GreaterOrEqual(t, left, 3*interval-elapsed-time.Millisecond, "and not before: %v after the first token", elapsed)

	require.Eventually(t, func() bool { return c.Exists(ctx, key).Val() == 0 }, 30*time.Second, 10*time.Millisecond,
		"the key expires once the bucket is full")
	for i := range 5 {
		assert.True(t, k.AllowKey(ctx, "alice"), "token %d of the full bucket", i)
	}
	assert.Zero(t, k.Metrics().Errors)
}

// The buckets run on the Redis server's clock: inside a synctest bubble the
// process's clock stands still, and the bucket refills all the same, once
// the server's clock has moved on by an interval.
func TestServerClock(t *testing.T) {
	const interval = 100 * time.Millisecond
	c := warmClient(t, 1)
	key := keyPrefix(t, c) + "clock"
	began := time.Now()
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		l := redislimit.New(c, key, rate.Every(interval), 1, decided()...)
		start := time.Now()
		require.True(t, l.Allow(ctx))
		refilled := false
		for range 1_000_000 {
			if refilled = l.Allow(ctx); refilled {
				break
			}
		}
		assert.True(t, refilled, "the bucket refilled")
		assert.Zero(t, time.Since(start), "while the process's clock stood still")
		m := l.Metrics()
		assert.Zero(t, m.Errors)
		assert.Equal(t, int64(2), m.Admitted)
	})
	assert.GreaterOrEqual(t, time.Since(began), interval-time.Millisecond, "the second token came an interval after the first")
}

// Four processes, each with its own client and connections, share one
// bucket: together they get no more than it holds, r·t + burst, and, while
// they keep asking, within 5% of that. The burst is a second of tokens, so
// that clients that go unscheduled for less than a second, as on a loaded
// machine, lose none; the lower bound is checked when no gap between calls
// was longer.
func TestSharedAcrossClients(t *testing.T) {
	_, prefix := redisClient(t)
	const (
		r           = 100
		burst       = 100
		d           = 4 * time.Second // at least
		minRejected = 100             // and until demand has exceeded supply this often
		hang        = time.Minute
	)
	var (
		admitted, rejected atomic.Int64
		wg                 sync.WaitGroup
		limiters           []*redislimit.Limiter
		mu                 sync.Mutex
		calls              []time.Duration // when each call was made, since start
	)
	start := time.Now()
	for range 4 {
		c := newClient(t, servicetest.RedisAddr(t))
		l := redislimit.New(c, prefix+"shared", r, burst, decided()...)
		limiters = append(limiters, l)
		for range 2 {
			wg.Go(func() {
				var mine []time.Duration
				for (time.Since(start) < d || rejected.Load() < minRejected) && time.Since(start) < hang {
					mine = append(mine, time.Since(start))
					if l.Allow(context.Background()) {
						admitted.Add(1)
					} else {
						rejected.Add(1)
					}
				}
				mu.Lock()
				calls = append(calls, mine...)
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	got, most := admitted.Load(), r*elapsed.Seconds()+burst
	slices.Sort(calls)
	var gap time.Duration
	for i := 1; i < len(calls); i++ {
		gap = max(gap, calls[i]-calls[i-1])
	}
	asked := r*(calls[len(calls)-1]-calls[0]).Seconds() + burst
	t.Logf("admitted %d, refused %d in %v: at most %.0f; %.0f while the clients asked, longest gap %v",
		got, rejected.Load(), elapsed, most, asked, gap)
	assert.LessOrEqual(t, float64(got), most+1, "admitted %d in %v", got, elapsed)
	if gap < time.Second*burst/r {
		assert.GreaterOrEqual(t, float64(got), 0.95*asked, "within 5%% of what the clients asked for")
	}
	assert.GreaterOrEqual(t, rejected.Load(), int64(minRejected), "the clients asked for more than the bucket holds")
	for i, l := range limiters {
		m := l.Metrics()
		assert.Zero(t, m.Errors, "limiter %d", i)
		assert.Zero(t, m.Fallback, "limiter %d", i)
	}
}

func TestBadArgumentsPanic(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", ContextTimeoutEnabled: true})
	defer c.Close()
	plain := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer plain.Close()
	const noCtx = "the client's ContextTimeoutEnabled is false: set it, or a call to a Redis that does not answer outlasts WithTimeout"
	tests := []struct {
		want string
		f    func()
	}{
		{"redislimit: New(0, 1): want rate.Inf or 1e-6 <= r <= 1e6", func() { redislimit.New(c, "k", 0, 1) }},
		{"redislimit: New(-1, 1): want rate.Inf or 1e-6 <= r <= 1e6", func() { redislimit.New(c, "k", -1, 1) }},
		{"redislimit: New(2e+06, 1): want rate.Inf or 1e-6 <= r <= 1e6", func() { redislimit.New(c, "k", 2e6, 1) }},
		{"redislimit: New(10, 0): want burst >= 1", func() { redislimit.New(c, "k", 10, 0) }},
		{"redislimit: NewKeyed(10, 0): want burst >= 1", func() { redislimit.NewKeyed(c, "p:", 10, 0) }},
		{"redislimit: New: empty key", func() { redislimit.New(c, "", 10, 1) }},
		{"redislimit: New: nil client", func() { redislimit.New(nil, "k", 10, 1) }},
		{"redislimit: NewKeyed: nil client", func() { redislimit.NewKeyed(nil, "p:", 10, 1) }},
		{"redislimit: New: " + noCtx, func() { redislimit.New(plain, "k", 10, 1) }},
		{"redislimit: NewKeyed: " + noCtx, func() { redislimit.NewKeyed(plain, "p:", 10, 1) }},
		{"redislimit: WithLocalFallback(4): want r/instances >= 1e-6, have 1e-06/4", func() {
			redislimit.New(c, "k", 1e-6, 1, redislimit.WithLocalFallback(4))
		}},
		{"redislimit: WithMaxWait(-1s): want d >= 0", func() { redislimit.WithMaxWait(-time.Second) }},
		{"redislimit: WithTimeout(0s): want d > 0", func() { redislimit.WithTimeout(0) }},
		{"redislimit: WithProbeInterval(-1ms): want d >= 0", func() { redislimit.WithProbeInterval(-time.Millisecond) }},
		{"redislimit: WithLocalFallback(0): want instances >= 1", func() { redislimit.WithLocalFallback(0) }},
		{"redislimit: WithObserver: nil f", func() { redislimit.WithObserver(nil) }},
		{"redislimit: New: nil Option", func() { redislimit.New(c, "k", 10, 1, nil) }},
		{"redislimit: NewKeyed: nil Option", func() { redislimit.NewKeyed(c, "p:", 10, 1, nil) }},
		{"redislimit: Keyed.Policy: nil keyOf", func() { redislimit.NewKeyed(c, "p:", 10, 1).Policy(nil) }},
		{"redislimit: Limiter.Do: nil Op", func() { _ = redislimit.New(c, "k", 10, 1).Do(context.Background(), nil) }},
		{"redislimit: Keyed.DoKey: nil Op", func() { _ = redislimit.NewKeyed(c, "p:", 10, 1).DoKey(context.Background(), "a", nil) }},
	}
	for _, tt := range tests {
		assert.PanicsWithValue(t, tt.want, tt.f)
	}
}

// The methods of a zero Limiter and a zero Keyed panic at once.
func TestZeroValuesPanic(t *testing.T) {
	ctx := context.Background()
	op := func(context.Context) error { return nil }

	var l redislimit.Limiter
	const wantLimiter = "redislimit: zero Limiter; use New"
	assert.PanicsWithValue(t, wantLimiter, func() { l.Allow(ctx) })
	assert.PanicsWithValue(t, wantLimiter, func() { _ = l.Do(ctx, op) })
	assert.PanicsWithValue(t, wantLimiter, func() { l.Metrics() })

	var k redislimit.Keyed
	const wantKeyed = "redislimit: zero Keyed; use NewKeyed"
	assert.PanicsWithValue(t, wantKeyed, func() { k.AllowKey(ctx, "a") })
	assert.PanicsWithValue(t, wantKeyed, func() { _ = k.DoKey(ctx, "a", op) })
	assert.PanicsWithValue(t, wantKeyed, func() { k.Policy(func(context.Context) string { return "a" }) })
	assert.PanicsWithValue(t, wantKeyed, func() { k.Metrics() })
}

func TestEventKindString(t *testing.T) {
	tests := []struct {
		k    redislimit.EventKind
		want string
	}{
		{redislimit.Unavailable, "unavailable"},
		{redislimit.Available, "available"},
		{redislimit.EventKind(0), "EventKind(0)"},
		{redislimit.Available + 1, "EventKind(3)"},
		{redislimit.EventKind(255), "EventKind(255)"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, tt.k.String(), "EventKind %d", uint8(tt.k))
	}
}
