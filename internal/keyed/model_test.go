package keyed

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"pgregory.net/rapid"

	"github.com/resilience-go/resilience"
)

// inBubble hands rapid a *testing.T it does not recognise, so that it does
// not ask for the test's deadline, which a synctest bubble forbids.
type inBubble struct{ *testing.T }

// keyPolicy is a policy made for one key, numbered in the order made.
type keyPolicy struct {
	key string
	n   int
}

func (*keyPolicy) Do(ctx context.Context, op resilience.Op) error { return op(ctx) }

// counted returns the keys m's maps hold, checking that m's count agrees.
func counted(m *Map) (int64, error) {
	n := int64(0)
	for i := range m.shards {
		n += int64(len(m.shards[i].m))
	}
	if kept := m.keys.Load(); kept != n {
		return n, fmt.Errorf("keys: counted %d, the maps hold %d", kept, n)
	}
	return n, nil
}

// A Map over random sequences of calls with a few dozen keys and clock
// advances, in virtual time: the keys kept never pass the cap, the count
// of keys agrees with the maps, each call gets its own key's policy, the
// one made last for it, a key just called is kept, a key called twice in a
// row keeps its policy, and so does one called within the idle timeout of
// its last call while fewer than three quarters of the cap were used since.
func TestModel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rapid.Check(inBubble{t}, func(rt *rapid.T) {
			maxKeys := rapid.IntRange(1, 20).Draw(rt, "maxKeys")
			const idle = time.Minute
			made := 0
			m := New("keyed: Model", func(key string) resilience.Policy {
				made++
				return &keyPolicy{key: key, n: made}
			}, maxKeys, idle)

			current := map[string]*keyPolicy{} // the policy made last per key
			lastCall := map[string]time.Time{}
			prev := ""
			rt.Repeat(map[string]func(*rapid.T){
				"call": func(rt *rapid.T) {
					key := fmt.Sprintf("/svc.S/M%d", rapid.IntRange(0, 30).Draw(rt, "key"))
					before := made
					p := m.Policy(key).(*keyPolicy)
					if p.key != key {
						rt.Fatalf("a call to %s got the policy of %s", key, p.key)
					}
					if !slices.Contains(m.Keys(), key) {
						rt.Fatalf("%s dropped by the call that made its policy", key)
					}
					remade := made != before
					if !remade && p != current[key] {
						rt.Fatalf("%s: got policy %d, the last made was %v", key, p.n, current[key])
					}
					if remade && key == prev {
						rt.Fatalf("%s called twice in a row: its policy was made anew", key)
					}
					// A key's time of use is its last call's, to the second. The
					// least recently used are dropped down to three quarters of
					// the cap, so a key is dropped only once that many others
					// were used as recently, to the second, or it was idle.
					if remade && current[key] != nil && time.Since(lastCall[key]) < idle-time.Second {
						recent := 0
						for other, at := range lastCall {
							if other != key && !at.Before(lastCall[key].Add(-time.Second)) {
								recent++
							}
						}
						if recent < maxKeys-maxKeys/4 {
							rt.Fatalf("%s dropped %v after its last call with %d keys used as recently, cap %d",
								key, time.Since(lastCall[key]), recent, maxKeys)
						}
					}
					current[key], lastCall[key], prev = p, time.Now(), key
				},
				"advance": func(rt *rapid.T) {
					time.Sleep(time.Duration(rapid.Int64Range(0, int64(90*time.Second)).Draw(rt, "advance")))
				},
				"": func(rt *rapid.T) {
					n, err := counted(m)
					if err != nil {
						rt.Fatal(err)
					}
					if n > int64(maxKeys) {
						rt.Fatalf("%d keys kept, cap %d", n, maxKeys)
					}
				},
			})
		})
	})
}

// FuzzMap drives a Map with calls and clock advances read from the input,
// in virtual time: the keys kept never pass the cap, their count agrees
// with the maps, each call gets its own key's policy, and the key just
// called is kept.
func FuzzMap(f *testing.F) {
	f.Add(uint8(3), []byte{1, 2, 3, 4, 5, 200, 1, 2})
	f.Add(uint8(1), []byte{0, 0, 1, 1, 255, 0})
	f.Add(uint8(7), []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 8}) // eight keys tied in time, then a ninth
	f.Fuzz(func(t *testing.T, maxKeys uint8, steps []byte) {
		synctest.Test(t, func(t *testing.T) {
			limit := int(maxKeys%16) + 1
			m := New("keyed: Fuzz", func(key string) resilience.Policy {
				return &keyPolicy{key: key}
			}, limit, time.Minute)
			for _, b := range steps {
				if b >= 192 { // an advance of up to 63 seconds
					time.Sleep(time.Duration(b-192) * time.Second)
					continue
				}
				key := fmt.Sprintf("/svc.S/M%d", b%48)
				if p := m.Policy(key).(*keyPolicy); p.key != key {
					t.Fatalf("a call to %s got the policy of %s", key, p.key)
				}
				if !slices.Contains(m.Keys(), key) {
					t.Fatalf("%s dropped by the call that made its policy", key)
				}
				n, err := counted(m)
				if err != nil {
					t.Fatal(err)
				}
				if n > int64(limit) {
					t.Fatalf("%d keys kept, cap %d", n, limit)
				}
			}
		})
	})
}
