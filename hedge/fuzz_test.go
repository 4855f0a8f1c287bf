package hedge_test

import (
	"testing"
	"testing/synctest"
)

// FuzzHedge runs the calls the input spells out through a Hedger and the
// model of TestModel, and requires that they agree on every call: when
// each attempt starts, what Do returns and when, and which values are
// discarded.
func FuzzHedge(f *testing.F) {
	f.Add([]byte{0, 5, 40, 1, 2, 3, 7, 8, 9})
	f.Add([]byte{0x13, 0x41, 0x42, 0x43, 0x44, 0x05, 0x86, 0x07, 0x48, 0x09, 0x8a})
	f.Add([]byte{0xff, 0x7f, 0x7e, 0x7d, 0x7c, 0x7b, 0x01, 0x02, 0x03, 0x04, 0x05})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 1 {
			return
		}
		synctest.Test(t, func(t *testing.T) {
			maxHedges := int(data[0]&3) + 1
			r := newModelRun(maxHedges, []float64{0.1, 0.5, 1, 4}[data[0]>>2&3])
			data = data[1:]
			// Each byte is a step: its low 6 bits the milliseconds (1 to
			// 64), its high 2 the outcome.
			for len(data) >= maxHedges+1 {
				steps := make([]modelStep, maxHedges+1)
				for i := range steps {
					steps[i] = modelStep{ms: int(data[i]&63) + 1, outcome: int(data[i]>>6) % 3}
				}
				data = data[maxHedges+1:]
				if err := r.call(steps); err != nil {
					t.Fatal(err)
				}
			}
		})
	})
}
