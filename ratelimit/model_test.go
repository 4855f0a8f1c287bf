package ratelimit

import (
	"context"
	"errors"
	"hash/maphash"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/time/rate"
	"pgregory.net/rapid"

	"github.com/resilience-go/resilience"
)

// inBubble hands rapid a *testing.T it does not recognise, so that it does
// not ask for the test's deadline, which a synctest bubble forbids.
type inBubble struct{ *testing.T }

// underTest is a Limiter or a Keyed limiter, seen through its keyed
// methods; a Limiter has the one key "".
type underTest struct {
	allow    func(key string) bool
	reserve  func(key string, maxWait time.Duration) Reservation
	do       func(ctx context.Context, key string, op resilience.Op) error
	rejected func() int64
	bucket   func(key string) *gcra // nil when the key is not kept
}

func limiterUnderTest(l *Limiter) underTest {
	return underTest{
		allow:    func(string) bool { return l.Allow() },
		reserve:  func(_ string, maxWait time.Duration) Reservation { return l.Reserve(maxWait) },
		do:       func(ctx context.Context, _ string, op resilience.Op) error { return l.Do(ctx, op) },
		rejected: func() int64 { return l.Metrics().Rejected },
		bucket:   func(string) *gcra { return &l.g },
	}
}

func keyedUnderTest(k *Keyed) underTest {
	return underTest{
		allow:    k.AllowKey,
		reserve:  k.ReserveKey,
		do:       k.DoKey,
		rejected: func() int64 { return k.Metrics().Rejected },
		bucket: func(key string) *gcra {
			sh := &k.shards[maphash.String(k.seed, key)%shards]
			sh.mu.RLock()
			defer sh.mu.RUnlock()
			if b := sh.m[key]; b != nil {
				return &b.g
			}
			return nil
		},
	}
}

// keyModel is what the model test knows of one key: its bucket, and the due
// times of the calls it admitted, in the order taken.
type keyModel struct {
	m   *bucketModel
	due []int64
}

// outstanding is a reservation the model test holds and may cancel.
type outstanding struct {
	key string
	r   Reservation
	due int64
	i   int // its index in the key's due
}

// A Limiter, or a Keyed limiter's keys, agree with bucketModel at every
// step, over random sequences of Allow, Reserve, Cancel and Do calls (with
// WithMaxWait, ctx deadlines, cancelled ctxs and callers that cancel
// during the wait) and clock advances: the same verdicts, delays, retry-after
// hints, refusal counts and bucket states, and each op runs at the time the
// model says; a cancel gives a token back only when it is the latest taken
// and not yet due. No key admits more than length/interval + burst calls in
// any interval.
func TestLimiterModel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rapid.Check(inBubble{t}, func(rt *rapid.T) {
			r := rapid.SampledFrom([]rate.Limit{1, 2, 3, 4, 10, 100}).Draw(rt, "rate")
			burst := rapid.IntRange(1, 5).Draw(rt, "burst")
			maxWait := rapid.SampledFrom([]time.Duration{0, 100 * time.Millisecond, time.Second, 2 * time.Second}).Draw(rt, "maxWait")
			interval := int64(max(time.Duration(float64(time.Second)/float64(r)), 1))
			start := time.Now()
			var (
				lim  underTest
				keys = []string{""}
			)
			if rapid.Bool().Draw(rt, "keyed") {
				lim = keyedUnderTest(NewKeyed(r, burst, WithMaxWait(maxWait)))
				keys = []string{"a", "b", "c"}
			} else {
				lim = limiterUnderTest(New(r, burst, WithMaxWait(maxWait)))
			}
			models := make(map[string]*keyModel)
			for _, key := range keys {
				models[key] = &keyModel{m: newBucketModel(interval, burst)}
			}
			var (
				rejected int64
				out      []outstanding
			)
			now := func() int64 { return int64(time.Since(start)) }
			admit := func(k *keyModel, at int64) int {
				k.due = append(k.due, at)
				return len(k.due) - 1
			}
			// checkRefusal checks a refusal and its hint at now.
			checkRefusal := func(rt *rapid.T, key string, err error) {
				var le *LimitedError
				if !errors.As(err, &le) || !errors.Is(err, ErrLimited) || !errors.Is(err, resilience.ErrRejected) {
					rt.Fatalf("refusal %v: want a *LimitedError matching ErrLimited and ErrRejected", err)
				}
				if got, want := le.RetryAfter(), time.Duration(models[key].m.wait(now())); got != want {
					rt.Fatalf("key %q: RetryAfter %v, model %v", key, got, want)
				}
				if le.Key() != key {
					rt.Fatalf("refusal names key %q, want %q", le.Key(), key)
				}
			}

			rt.Repeat(map[string]func(*rapid.T){
				"": func(rt *rapid.T) {
					t := now()
					for _, key := range keys {
						m := models[key].m
						g := lim.bucket(key)
						if g == nil {
							if !m.full(t) {
								rt.Fatalf("key %q dropped at %v, model waits %v", key, time.Duration(t), time.Duration(m.wait(t)))
							}
							continue
						}
						if got, want := g.wait(t), m.wait(t); got != want {
							rt.Fatalf("key %q: wait %v, model %v", key, time.Duration(got), time.Duration(want))
						}
						if got, want := g.full(t), m.full(t); got != want {
							rt.Fatalf("key %q: full %v, model %v", key, got, want)
						}
					}
					if got := lim.rejected(); got != rejected {
						rt.Fatalf("Rejected %d, model %d", got, rejected)
					}
				},
				"allow": func(rt *rapid.T) {
					key := rapid.SampledFrom(keys).Draw(rt, "key")
					k, t := models[key], now()
					got := lim.allow(key)
					if _, want := k.m.take(t, 0); got != want {
						rt.Fatalf("key %q: Allow %v at %v, model %v", key, got, time.Duration(t), want)
					}
					if got {
						admit(k, t)
					}
				},
				"reserve": func(rt *rapid.T) {
					key := rapid.SampledFrom(keys).Draw(rt, "key")
					within := time.Duration(rapid.IntRange(-1, 2500).Draw(rt, "maxWaitMs")) * time.Millisecond
					k, t := models[key], now()
					res := lim.reserve(key, within)
					wait, ok := int64(0), false
					if within >= 0 {
						wait, ok = k.m.take(t, int64(within))
					}
					if res.OK() != ok || ok && res.Delay() != time.Duration(wait) {
						rt.Fatalf("key %q: Reserve(%v) at %v: %v, %v; model %v, %v", key, within, time.Duration(t),
							res.OK(), res.Delay(), ok, time.Duration(wait))
					}
					if !ok {
						res.Cancel() // does nothing
						return
					}
					out = append(out, outstanding{key: key, r: res, due: t + wait, i: admit(k, t+wait)})
				},
				// Cancels are of reservations not yet due: one past its due
				// time may have been used, and a full bucket that held it
				// forgotten by a Keyed limiter.
				"cancel": func(rt *rapid.T) {
					t := now()
					var later []int
					for i, o := range out {
						if o.due > t {
							later = append(later, i)
						}
					}
					if len(later) == 0 {
						rt.Skip("no reservation due later")
					}
					i := rapid.SampledFrom(later).Draw(rt, "reservation")
					o := out[i]
					out = append(out[:i], out[i+1:]...)
					k := models[o.key]
					o.r.Cancel()
					if o.i != len(k.due)-1 {
						return // a token was taken after it, and keeps its time: nothing given back
					}
					k.due = k.due[:o.i]
					k.m.giveBack(t)
				},
				"do": func(rt *rapid.T) {
					key := rapid.SampledFrom(keys).Draw(rt, "key")
					kind := rapid.SampledFrom([]string{"background", "deadline", "cancelled", "cancel during the wait"}).Draw(rt, "ctx")
					k, t := models[key], now()

					ctx, cancel := context.WithCancel(context.Background())
					defer cancel()
					var cancelAfter time.Duration // for "cancel during the wait"
					within := int64(maxWait)
					switch kind {
					case "deadline":
						d := time.Duration(rapid.IntRange(1, 2500).Draw(rt, "deadlineMs")) * time.Millisecond
						ctx, cancel = context.WithTimeout(ctx, d)
						defer cancel()
						if maxWait > 0 {
							within = min(within, int64(d)-1)
						}
					case "cancelled":
						cancel()
					case "cancel during the wait":
						cancelAfter = time.Duration(rapid.IntRange(1, 2500).Draw(rt, "cancelAfterMs")) * time.Millisecond
					}

					// What the model predicts.
					wait, ok := int64(0), false
					if kind != "cancelled" {
						wait, ok = k.m.take(t, within)
					}
					cancelled := ok && cancelAfter > 0 && int64(cancelAfter) < wait
					if ok && int64(cancelAfter) == wait {
						cancelAfter++ // not at the very time the token is due
					}

					// What the limiter does.
					ran := int64(-1)
					done := make(chan error, 1)
					go func() {
						done <- lim.do(ctx, key, func(context.Context) error { ran = now(); return nil })
					}()
					if cancelAfter > 0 {
						time.Sleep(cancelAfter)
						cancel()
					}
					err := <-done

					switch {
					case kind == "cancelled" || cancelled:
						if err != context.Canceled || ran >= 0 {
							rt.Fatalf("key %q, %s ctx: err %v, op ran %v; want context.Canceled, op not run", key, kind, err, ran >= 0)
						}
						if cancelled {
							k.m.giveBack(t + int64(cancelAfter))
						}
					case !ok:
						if ran >= 0 {
							rt.Fatalf("key %q, %s ctx: op ran, model refuses (wait %v)", key, kind, time.Duration(wait))
						}
						rejected++
						checkRefusal(rt, key, err)
					default:
						if err != nil || ran != t+wait {
							rt.Fatalf("key %q, %s ctx: err %v, op ran at %v; model runs it at %v", key, kind, err,
								time.Duration(ran), time.Duration(t+wait))
						}
						admit(k, ran)
					}
				},
				"sleep": func(rt *rapid.T) {
					if rapid.Bool().Draw(rt, "inIntervals") {
						time.Sleep(time.Duration(rapid.IntRange(1, 8).Draw(rt, "quarters")) * time.Duration(interval) / 4)
					} else {
						time.Sleep(time.Duration(rapid.IntRange(1, 2000).Draw(rt, "ms")) * time.Millisecond)
					}
				},
			})
			for _, k := range models {
				checkDue(rt, k.due, interval, burst)
			}
		})
	})
}
