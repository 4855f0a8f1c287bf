package throttle_test

import (
	"testing"
	"testing/synctest"
	"time"
)

// FuzzThrottle drives a throttle and the model of TestModel with the calls
// and waits the input spells out, and requires that they agree on every
// rejection and count, and that the counts stay in range: accepts never
// more than requests, the rejection in [0, ceiling].
func FuzzThrottle(f *testing.F) {
	f.Add([]byte{3, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 9, 0, 0})
	f.Add([]byte{0x25, 1, 2, 3, 0x83, 0x47, 2, 2, 0xfe, 0, 3, 3, 3})
	f.Add([]byte{0xff, 0x22, 0x22, 0x22, 0x22, 0x66, 0xa2, 0x12, 0xf3})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 1 {
			return
		}
		synctest.Test(t, func(t *testing.T) {
			cfg, data := data[0], data[1:]
			r := newPair([]int{1, 2, 5, 10}[cfg&3], []int{0, 1, 2, 5}[cfg>>6], []float64{1, 1.5, 2, 3}[cfg>>2&3],
				[]float64{0, 0.5, 0.9, 1}[cfg>>4&3], uint64(cfg))
			for _, b := range data {
				// The low two bits: call, call spanning a bucket, wait, check.
				switch arg := int(b >> 2); b & 3 {
				case 0:
					if err := r.call(arg%outcomes, 0); err != nil {
						t.Fatal(err)
					}
				case 1:
					if err := r.call(arg%outcomes, time.Duration(arg)*50*time.Millisecond); err != nil {
						t.Fatal(err)
					}
				case 2:
					time.Sleep(time.Duration(arg) * 250 * time.Millisecond)
				case 3:
					m := r.th.Metrics()
					if m.Accepts < 0 || m.Accepts > m.Requests || m.Rejection < 0 || m.Rejection > r.m.ceiling {
						t.Fatalf("metrics out of range: %+v, ceiling %v", m, r.m.ceiling)
					}
					if err := r.check(); err != nil {
						t.Fatal(err)
					}
				}
			}
		})
	})
}
