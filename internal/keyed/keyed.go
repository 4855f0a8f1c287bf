// Package keyed keeps a policy per key (an HTTP host, a gRPC method or
// target), made the first time the key is called, in bounded memory. It
// lies behind resiliencehttp.PerHost and grpcresilience.PerMethod and
// PerTarget, which read the key from the ctx and keep their own names,
// options and docs.
//
// # Bounds
//
// A key's policy unused for the idle timeout is dropped at the next sweep,
// and the cap on keys drops the least recently used once passed, down to
// three quarters of it. A sweep runs when the cap is passed, or when more
// keys were added since the last sweep than it kept, so that its cost is
// spread over the keys added. A sweep never drops the key whose addition
// brought it, so that a key called twice in a row keeps its policy even
// when every key kept was last used in the same second.
//
// # Cost
//
// A call to a key kept takes a read lock on one of 16 shards and writes
// the key's time of use at most once a second, so that calls to busy keys
// seldom pass cache lines around; it allocates nothing.
package keyed

import (
	"fmt"
	"hash/maphash"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/resilience-go/resilience"
)

// shards splits the keys so that calls with different keys seldom share a
// lock.
const shards = 16

// Map is a policy per key, made by its newPolicy the first time the key is
// called. Make one with [New], or ready a zero one with [Map.Init]; the
// zero value is not otherwise usable. A Map is safe for concurrent use.
type Map struct {
	name      string
	newPolicy func(key string) resilience.Policy
	maxKeys   int64
	idle      int64 // nanoseconds
	start     time.Time
	seed      maphash.Seed

	shards   [shards]shard
	keys     atomic.Int64 // keys kept, in all shards
	added    atomic.Int64 // keys added since the last sweep
	kept     atomic.Int64 // keys kept after the last sweep
	sweeping sync.Mutex
}

type shard struct {
	mu sync.RWMutex
	m  map[string]*entry
	_  [32]byte // a shard per cache line pair
}

type entry struct {
	p    resilience.Policy
	used atomic.Int64 // when it was last called, in nanoseconds since start, to the second
}

// New returns a Map that keeps at most maxKeys keys and drops a key's
// policy unused for idle. name, such as "resiliencehttp: PerHost", begins
// the messages of the Map's panics. New panics if newPolicy is nil, and if
// maxKeys or idle is out of range, which the callers' options rule out.
func New(name string, newPolicy func(key string) resilience.Policy, maxKeys int, idle time.Duration) *Map {
	m := new(Map)
	m.Init(name, newPolicy, maxKeys, idle)
	return m
}

// Init readies a zero Map as [New] does, for a Map held by value in the
// policy that calls it, which saves a pointer's load on every call. Init
// is called once, before any other method.
func (m *Map) Init(name string, newPolicy func(key string) resilience.Policy, maxKeys int, idle time.Duration) {
	if newPolicy == nil {
		panic(name + ": nil newPolicy")
	}
	if maxKeys < 1 || idle <= 0 {
		panic(fmt.Sprintf("%s: maxKeys %d, idle %v: want maxKeys >= 1 and idle > 0", name, maxKeys, idle))
	}
	m.name, m.newPolicy, m.maxKeys, m.idle = name, newPolicy, int64(maxKeys), int64(idle)
	m.start, m.seed = time.Now(), maphash.MakeSeed()
	for i := range m.shards {
		m.shards[i].m = make(map[string]*entry)
	}
}

// Policy returns key's policy, making it if need be. When calls to a new
// key race, newPolicy may be called more than once for it; one result is
// kept and returned to all. newPolicy is called with no lock held. Policy
// panics if newPolicy returns nil, or a nil pointer or func.
func (m *Map) Policy(key string) resilience.Policy {
	now := int64(time.Since(m.start))
	sh := &m.shards[maphash.String(m.seed, key)%shards]
	sh.mu.RLock()
	e := sh.m[key]
	sh.mu.RUnlock()
	if e == nil {
		e = m.add(sh, key, now)
	}
	// Write the time of use only once a second, so that busy keys do not
	// pass the cache line around on every call.
	if now-e.used.Load() >= int64(time.Second) {
		e.used.Store(now)
	}
	return e.p
}

// add makes key's policy and keeps it in sh, unless a racing call kept one
// first, and returns the entry kept.
func (m *Map) add(sh *shard, key string, now int64) *entry {
	p := m.newPolicy(key)
	if IsNil(p) {
		panic(fmt.Sprintf("%s: newPolicy(%q) returned nil", m.name, key))
	}
	sh.mu.Lock()
	e, raced := sh.m[key]
	if !raced {
		e = &entry{p: p}
		e.used.Store(now)
		sh.m[key] = e
	}
	sh.mu.Unlock()
	if !raced {
		if n := m.keys.Add(1); n > m.maxKeys || m.added.Add(1) > m.kept.Load() {
			m.sweep(e)
		}
	}
	return e
}

// sweep drops the keys idle for the idle timeout and, if the cap is still
// passed, the least recently used others down to three quarters of the
// cap, but never fresh, the entry whose addition brought the sweep: the
// others may have been used in the same second. Each shard's map is made
// anew with the keys it keeps, so that the room of dropped keys is given
// back. One sweep runs at a time; a call that finds one running goes on,
// and the running one, once done, sweeps again while the cap is passed, so
// that keys added meanwhile are bounded too.
func (m *Map) sweep(fresh *entry) {
	for m.sweeping.TryLock() {
		m.sweepLocked(fresh)
		m.sweeping.Unlock()
		// A call that added a key past the cap while this sweep ran, and
		// found it running, did so before this load.
		if m.keys.Load() <= m.maxKeys {
			return
		}
		fresh = nil
	}
}

// sweepLocked is sweep, with m.sweeping held.
func (m *Map) sweepLocked(fresh *entry) {
	m.added.Store(0)
	now := int64(time.Since(m.start))
	m.filter(func(e *entry) bool { return e == fresh || now-e.used.Load() < m.idle })
	if n := m.keys.Load(); n > m.maxKeys {
		excess := n - (m.maxKeys - m.maxKeys/4)
		uses := make([]int64, 0, n)
		for i := range m.shards {
			sh := &m.shards[i]
			sh.mu.RLock()
			for _, e := range sh.m {
				if e != fresh {
					uses = append(uses, e.used.Load())
				}
			}
			sh.mu.RUnlock()
		}
		slices.Sort(uses)
		if excess = min(excess, int64(len(uses))); excess > 0 {
			newest := uses[excess-1] // the last use of the newest key to drop
			dropped := int64(0)
			m.filter(func(e *entry) bool {
				if e != fresh && dropped < excess && e.used.Load() <= newest {
					dropped++
					return false
				}
				return true
			})
		}
	}
	m.kept.Store(m.keys.Load())
}

// filter makes each shard's map anew with the entries keep keeps.
func (m *Map) filter(keep func(*entry) bool) {
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.Lock()
		kept := make(map[string]*entry, len(sh.m))
		for key, e := range sh.m {
			if keep(e) {
				kept[key] = e
			}
		}
		m.keys.Add(int64(len(kept) - len(sh.m)))
		sh.m = kept
		sh.mu.Unlock()
	}
}

// Len returns how many keys the Map keeps.
func (m *Map) Len() int { return int(m.keys.Load()) }

// Keys returns the keys the Map keeps, in no order. The keys of a Map in
// use change as it is read, so the result is exact only while no call
// runs.
func (m *Map) Keys() []string {
	var keys []string
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.RLock()
		for key := range sh.m {
			keys = append(keys, key)
		}
		sh.mu.RUnlock()
	}
	return keys
}

// IsNil reports whether p is nil, or holds a nil pointer or func, which
// would panic on its first call.
func IsNil(p resilience.Policy) bool {
	if p == nil {
		return true
	}
	switch v := reflect.ValueOf(p); v.Kind() {
	case reflect.Pointer, reflect.Func, reflect.Map, reflect.Slice, reflect.Interface, reflect.Chan:
		return v.IsNil()
	}
	return false
}
