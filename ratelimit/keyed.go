package ratelimit

import (
	"context"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/internal/stripe"
)

// Keyed limits each key (a tenant, a client address, a route) to its own
// token bucket of the same rate and burst. Make one with [NewKeyed]; it is
// safe for concurrent use. The zero value is not usable; use NewKeyed: its
// methods panic. Most callers want [Keyed.DoKey], or [Keyed.Policy] to place
// it in a chain.
//
// Memory stays bounded however many keys come and go: a key whose bucket
// has refilled (it has been idle for burst/r) holds nothing worth keeping
// and is dropped on the next sweep, and [WithMaxKeys] caps the keys kept at
// once. A sweep runs when that cap is passed, or when more keys were added
// since the last sweep than it kept, so that the keys kept at most double
// between sweeps and a sweep's cost is spread over the keys added. A key
// dropped at the very moment it is used again may admit one call more than
// its bucket would have.
type Keyed struct {
	interval time.Duration
	burst    int
	inf      bool
	start    time.Time
	maxWait  time.Duration
	maxKeys  int64
	name     string
	observer resilience.Observer

	seed     maphash.Seed
	shards   [shards]shard
	keys     atomic.Int64 // keys kept, in all shards
	added    atomic.Int64 // keys added since the last sweep
	kept     atomic.Int64 // keys kept after the last sweep
	sweeping sync.Mutex
	rejected stripe.Counter
}

// shards splits the keys so that goroutines reading different keys seldom
// share a lock.
const shards = 64

type shard struct {
	mu sync.RWMutex
	m  map[string]*bucket
	_  [32]byte // a shard per cache line pair
}

type bucket struct {
	g   gcra
	err LimitedError
}

// NewKeyed returns a Keyed limiter that gives each key r tokens a second and
// bursts of burst, configured by opts, with the same ranges as [New].
func NewKeyed(r rate.Limit, burst int, opts ...Option) *Keyed {
	c := newConfig("NewKeyed", config{maxKeys: 100_000}, opts)
	k := &Keyed{burst: burst, start: time.Now(), maxWait: c.maxWait, maxKeys: int64(c.maxKeys),
		name: c.name, observer: c.observer, seed: maphash.MakeSeed(), rejected: stripe.NewCounter()}
	for i := range k.shards {
		k.shards[i].m = make(map[string]*bucket)
	}
	if r == rate.Inf {
		k.inf = true
	} else {
		k.interval = interval("NewKeyed", r, burst)
	}
	return k
}

// mustBeMade panics if k is the zero Keyed.
func (k *Keyed) mustBeMade() {
	if k.maxKeys == 0 {
		panic("ratelimit: zero Keyed; use NewKeyed")
	}
}

// bucket returns key's bucket, making it if need be, and whether a sweep is
// due. The caller takes its token first, and then sweeps: a sweep drops full
// buckets, as a bucket just made is.
func (k *Keyed) bucket(key string) (*bucket, bool) {
	sh := &k.shards[maphash.String(k.seed, key)%shards]
	sh.mu.RLock()
	b := sh.m[key]
	sh.mu.RUnlock()
	if b != nil {
		return b, false
	}
	sh.mu.Lock()
	if b = sh.m[key]; b != nil {
		sh.mu.Unlock()
		return b, false
	}
	b = new(bucket)
	b.g.init(k.interval, k.burst)
	b.err = LimitedError{key: key, keyed: true, g: &b.g, start: k.start}
	sh.m[key] = b
	sh.mu.Unlock()
	n := k.keys.Add(1)
	return b, n > k.maxKeys || k.added.Add(1) > k.kept.Load()
}

// sweep drops the keys whose bucket is full and, if the cap is still
// passed, others, down to three quarters of the cap. Each shard's map is
// made anew with the keys it keeps, so that the room of dropped keys is
// given back. One sweep runs at a time; a call that finds one running goes
// on.
func (k *Keyed) sweep() {
	if !k.sweeping.TryLock() {
		return
	}
	defer k.sweeping.Unlock()
	k.added.Store(0)
	now := int64(time.Since(k.start))
	target := k.maxKeys - k.maxKeys/4
	for i := range k.shards {
		sh := &k.shards[i]
		sh.mu.Lock()
		m := make(map[string]*bucket, len(sh.m))
		for key, b := range sh.m {
			if b.g.full(now) {
				continue
			}
			m[key] = b
		}
		k.keys.Add(int64(len(m) - len(sh.m)))
		sh.m = m
		sh.mu.Unlock()
	}
	if k.keys.Load() > k.maxKeys {
		for i := 0; i < shards && k.keys.Load() > target; i++ {
			sh := &k.shards[i]
			sh.mu.Lock()
			for key := range sh.m {
				if k.keys.Load() <= target {
					break
				}
				delete(sh.m, key)
				k.keys.Add(-1)
			}
			sh.mu.Unlock()
		}
	}
	k.kept.Store(k.keys.Load())
}

// take takes a token of key's bucket, or reserves one due within maxWait.
func (k *Keyed) take(key string, maxWait int64) (b *bucket, wait, next int64, ok bool) {
	k.mustBeMade() // for AllowKey, which stays small enough to inline
	b, sweep := k.bucket(key)
	wait, next, ok = b.g.take(k.start, maxWait)
	if sweep {
		k.sweep()
	}
	return b, wait, next, ok
}

// AllowKey takes a token from key's bucket if one is available now, and
// reports whether it did. It never waits.
func (k *Keyed) AllowKey(key string) bool {
	if k.inf {
		return true
	}
	_, _, _, ok := k.take(key, 0)
	return ok
}

// DoKey runs op if key's bucket has a token for it, waiting as [Limiter.Do]
// does. A refusal is a [*LimitedError] that names the key. DoKey panics if
// op is nil.
func (k *Keyed) DoKey(ctx context.Context, key string, op resilience.Op) error {
	if op == nil {
		panic("ratelimit: Keyed.DoKey: nil Op")
	}
	k.mustBeMade()
	if err := ctx.Err(); err != nil {
		return err
	}
	if k.observer != nil {
		return k.doObserved(ctx, key, op)
	}
	if k.inf {
		return op(ctx)
	}
	b, r := k.reserve(ctx, key, k.maxWait)
	return await(ctx, r, op, k.rejected, &b.err)
}

// doObserved is DoKey with an observer.
func (k *Keyed) doObserved(ctx context.Context, key string, op resilience.Op) error {
	start := time.Now()
	var err error
	var refused *LimitedError
	if k.inf {
		err = op(ctx)
	} else {
		b, r := k.reserve(ctx, key, k.maxWait)
		refused = &b.err
		err = await(ctx, r, op, k.rejected, refused)
	}
	observe(ctx, k.observer, k.name, start, err, refused)
	return err
}

// ReserveKey reserves a token of key's bucket as [Limiter.Reserve] does.
func (k *Keyed) ReserveKey(key string, maxWait time.Duration) Reservation {
	k.mustBeMade()
	if k.inf {
		return Reservation{ok: maxWait >= 0}
	}
	_, r := k.reserve(context.Background(), key, maxWait)
	return r
}

// reserve reserves a token of key's bucket due within maxWait and,
// strictly, before ctx's deadline.
func (k *Keyed) reserve(ctx context.Context, key string, maxWait time.Duration) (*bucket, Reservation) {
	if maxWait = fit(ctx, maxWait); maxWait < 0 { // no time left to use a token
		b, sweep := k.bucket(key) // for its error, which names the key
		if sweep {
			k.sweep()
		}
		return b, Reservation{}
	}
	b, wait, next, ok := k.take(key, int64(maxWait))
	if !ok {
		return b, Reservation{}
	}
	return b, Reservation{ok: true, delay: time.Duration(wait), g: &b.g, start: k.start, next: next}
}

// Policy returns a [resilience.Policy] that limits each call by the key
// keyOf finds in its ctx, such as a tenant set by middleware. Policy panics
// if keyOf is nil.
func (k *Keyed) Policy(keyOf func(ctx context.Context) string) resilience.Policy {
	if keyOf == nil {
		panic("ratelimit: Keyed.Policy: nil keyOf")
	}
	k.mustBeMade()
	return resilience.PolicyFunc(func(ctx context.Context, op resilience.Op) error {
		return k.DoKey(ctx, keyOf(ctx), op)
	})
}

// KeyedMetrics is a snapshot of a Keyed limiter's counts.
type KeyedMetrics struct {
	// Rejected counts the calls refused since the limiter was made.
	Rejected int64
	// Keys counts the keys kept.
	Keys int64
}

// Metrics returns the limiter's counts.
func (k *Keyed) Metrics() KeyedMetrics {
	k.mustBeMade()
	return KeyedMetrics{Rejected: k.rejected.Sum(), Keys: k.keys.Load()}
}
