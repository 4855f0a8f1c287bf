package redislimit

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/resilience-go/resilience/internal/servicetest"
)

// bucketModel is the script's bucket in Go: the same float64 arithmetic
// in the same order, so that it must give the same answers to the bit.
type bucketModel struct {
	interval, burst float64
	tat             float64 // -Inf: the key is gone, the bucket full
}

// apply does what the script does with ARGV[3] = arg (and ARGV[4] = mine,
// the tat of the token to give back) at the server's time now, and returns
// what the script should answer, and the tat of a token taken.
func (m *bucketModel) apply(arg, now int64, mine float64) (reply, float64) {
	n := float64(now)
	if arg < 0 {
		// Only the latest token taken, and before it is due.
		if m.tat != mine || n >= mine-m.interval*m.burst {
			return reply{now: now}, 0
		}
		if tat := mine - m.interval; tat > n {
			m.tat = tat
		} else {
			m.tat = math.Inf(-1)
		}
		return reply{taken: true, now: now}, 0
	}
	tat := max(m.tat, n)
	next := tat + m.interval
	wait := next - n - float64(m.interval*m.burst)
	if wait > float64(arg) {
		return reply{wait: time.Duration(math.Ceil(wait)) * time.Microsecond, now: now}, 0
	}
	m.tat = next
	return reply{taken: true, wait: time.Duration(math.Ceil(max(wait, 0))) * time.Microsecond, now: now}, next
}

// The script gives the model's answers, step for step, on random
// sequences of takes (with random waits allowed) and give-backs (of the
// latest token taken, or of an earlier one, which the script must refuse),
// on buckets whose interval is near a round trip, so that tokens come back
// between calls. The model reads the server's time from each answer.
func TestScriptMatchesModel(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: servicetest.RedisAddr(t), ContextTimeoutEnabled: true})
	defer c.Close()
	ctx := context.Background()
	prefix := servicetest.UniqueName(t) + ":"
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	const runs, steps = 20, 200
	for run := range runs {
		interval, burst := 1+rng.Float64()*2000, 1+rng.IntN(4)
		s := &store{client: c}
		s.interval, s.burst = bucketArgs(interval, burst)
		parsed, err := strconv.ParseFloat(s.interval, 64)
		require.NoError(t, err)
		require.Equal(t, interval, parsed, "the interval reaches the script exactly")
		m := bucketModel{interval: parsed, burst: float64(burst), tat: math.Inf(-1)}
		keys := []string{fmt.Sprint(prefix, run)}
		taken, givenBack := 0, 0
		var tokens []string // the tats of the tokens taken, in order
		for step := range steps {
			arg, mine := int64(giveBackArg), ""
			if rng.IntN(5) > 0 || len(tokens) == 0 {
				arg = rng.Int64N(int64(3*interval) + 1)
			} else {
				mine = tokens[len(tokens)-1-rng.IntN(min(len(tokens), 2))] // the latest, or the one before
			}
			got, err := s.eval(ctx, keys, arg, mine)
			require.NoError(t, err)
			mineTat := math.NaN()
			if mine != "" {
				mineTat, err = strconv.ParseFloat(mine, 64)
				require.NoError(t, err)
			}
			want, next := m.apply(arg, got.now, mineTat)
			if arg >= 0 && got.taken {
				gotNext, err := strconv.ParseFloat(got.tat, 64)
				require.NoError(t, err, "the tat %q", got.tat)
				require.Equal(t, next, gotNext, "run %d, step %d: the token's tat", run, step)
				want.tat = got.tat
				tokens = append(tokens, got.tat)
				taken++
			}
			require.Equal(t, want, got, "run %d (interval %vµs, burst %d), step %d, ARGV[3] %d, ARGV[4] %q", run, interval, burst, step, arg, mine)
			if arg < 0 && got.taken {
				givenBack++
				tokens = tokens[:len(tokens)-1]
			}
		}
		assert.Positive(t, taken, "run %d took tokens", run)
		t.Logf("run %d: %d taken, %d given back", run, taken, givenBack)
		require.NoError(t, c.Del(ctx, keys[0]).Err())
	}
}

// healthModel is what health should do.
type healthModel struct {
	probe int64
	down  bool
	until int64 // while down, the time of the next probe
	gen   int   // counts the failures and the probes
}

// ask returns whether a call at now asks Redis, and the generation it asks
// in.
func (m *healthModel) ask(now int64) (int, bool) {
	if !m.down || m.probe == 0 {
		return m.gen, true
	}
	if now < m.until {
		return 0, false
	}
	m.until = now + m.probe
	m.gen++
	return m.gen, true
}

func (m *healthModel) fail(now int64) bool {
	first := !m.down
	m.down, m.until = true, now+m.probe
	m.gen++
	return first
}

// answer brings Redis back if it is down, and nothing happened since the
// call asked in generation gen.
func (m *healthModel) answer(gen int) bool {
	if !m.down || gen != m.gen {
		return false
	}
	m.down = false
	return true
}

// asked is a call that asked Redis and waits for its answer: the state
// health gave it, and the model's generation.
type asked struct {
	seen *downState
	gen  int
}

func TestHealthMatchesModel(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		probe := rapid.Int64Range(0, 100).Draw(t, "probe")
		h, m := health{probe: probe}, healthModel{probe: probe}
		now := rapid.Int64Range(0, 1000).Draw(t, "start")
		var calls []asked
		t.Repeat(map[string]func(*rapid.T){
			"tick": func(t *rapid.T) { now += rapid.Int64Range(0, 150).Draw(t, "dt") },
			"ask": func(t *rapid.T) {
				seen, got := h.ask(now)
				gen, want := m.ask(now)
				if got != want {
					t.Fatalf("ask at %d: %v, want %v", now, got, want)
				}
				if got {
					calls = append(calls, asked{seen, gen})
				}
			},
			"fail": func(t *rapid.T) {
				if got, want := h.fail(now), m.fail(now); got != want {
					t.Fatalf("fail at %d: first %v, want %v", now, got, want)
				}
			},
			"answer": func(t *rapid.T) {
				if len(calls) == 0 {
					t.Skip("no call waits for an answer")
				}
				i := rapid.IntRange(0, len(calls)-1).Draw(t, "call")
				c := calls[i]
				calls = append(calls[:i], calls[i+1:]...)
				if got, want := h.answer(c.seen), m.answer(c.gen); got != want {
					t.Fatalf("answer at %d to call %d: back %v, want %v", now, i, got, want)
				}
			},
		})
	})
}

// FuzzHealth runs health and its model on sequences of operations read
// from the input, two bytes each: the operation (and, for an answer, which
// waiting call gets it), and the time that passes.
func FuzzHealth(f *testing.F) {
	f.Add(int64(10), []byte{2, 0, 1, 5, 0, 0, 1, 10, 0, 0, 2, 0, 5, 0})
	f.Add(int64(0), []byte{0, 0, 1, 0, 0, 0, 2, 0, 1, 0, 5, 0})
	f.Fuzz(func(t *testing.T, probe int64, ops []byte) {
		if probe < 0 || probe > 1<<40 {
			return
		}
		h, m := health{probe: probe}, healthModel{probe: probe}
		var (
			now   int64
			calls []asked
		)
		for i := 0; i+1 < len(ops); i += 2 {
			now += int64(ops[i+1])
			switch ops[i] % 3 {
			case 0:
				seen, got := h.ask(now)
				gen, want := m.ask(now)
				if got != want {
					t.Fatalf("op %d: ask at %d: %v, want %v", i/2, now, got, want)
				}
				if got {
					calls = append(calls, asked{seen, gen})
				}
			case 1:
				if got, want := h.fail(now), m.fail(now); got != want {
					t.Fatalf("op %d: fail at %d: first %v, want %v", i/2, now, got, want)
				}
			case 2:
				if len(calls) == 0 {
					continue
				}
				j := int(ops[i]/3) % len(calls)
				c := calls[j]
				calls = append(calls[:j], calls[j+1:]...)
				if got, want := h.answer(c.seen), m.answer(c.gen); got != want {
					t.Fatalf("op %d: answer to call %d: back %v, want %v", i/2, j, got, want)
				}
			}
		}
	})
}

// While Redis is down, one call per probe interval asks it, however many
// come at once.
func TestHealthOneProbeAtATime(t *testing.T) {
	h := health{probe: 100}
	h.fail(0)
	var probes atomic.Int32
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			if _, ok := h.ask(100); ok {
				probes.Add(1)
			}
		})
	}
	wg.Wait()
	assert.Equal(t, int32(1), probes.Load())
	_, ok := h.ask(199)
	assert.False(t, ok)
	_, ok = h.ask(200)
	assert.True(t, ok)
}

// An answer to a call that asked before the last failure does not bring
// Redis back: a newer call failed since.
func TestHealthIgnoresStaleAnswers(t *testing.T) {
	h := health{probe: 100}
	before, ok := h.ask(0)
	require.True(t, ok, "Redis answers")
	require.True(t, h.fail(1), "another call fails")
	assert.False(t, h.answer(before), "the answer to the call that asked before")
	assert.False(t, h.up())

	probe, ok := h.ask(101)
	require.True(t, ok, "the probe")
	assert.False(t, h.fail(102), "another call fails: not the first failure")
	assert.False(t, h.answer(probe), "the answer to the probe, after a newer failure")
	probe, ok = h.ask(202)
	require.True(t, ok, "the next probe")
	assert.True(t, h.answer(probe), "Redis is back")
	assert.True(t, h.up())
	assert.False(t, h.answer(probe), "once")
}
