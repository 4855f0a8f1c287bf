package main

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/resilience-go/resilience/retry"
)

// record is one row to import.
type record struct {
	key   string
	name  string
	value int64
}

var names = []string{"ada", "alan", "barbara", "edsger", "grace", "john", "ken", "margaret", "niklaus", "rob"}

// generate returns n records, keyed rec-0000001 and on, with names and
// values drawn from seed.
func generate(n int, seed uint64) []record {
	rnd := rand.New(rand.NewPCG(seed, 0))
	rs := make([]record, n)
	for i := range rs {
		rs[i] = record{key: fmt.Sprintf("rec-%07d", i+1), name: names[rnd.IntN(len(names))], value: rnd.Int64N(1_000_000)}
	}
	return rs
}

// readCSV reads records from r: a header line "key,name,value", then a
// record a line. A key seen before is skipped, and counted in dups.
func readCSV(r io.Reader) (rs []record, dups int, err error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = 3
	cr.ReuseRecord = true
	head, err := cr.Read()
	if err != nil {
		return nil, 0, fmt.Errorf("line 1: %w (want the header key,name,value)", err)
	}
	if strings.Join(head, ",") != "key,name,value" {
		return nil, 0, fmt.Errorf("line 1: header %q, want key,name,value", strings.Join(head, ","))
	}
	seen := map[string]bool{}
	for {
		f, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return rs, dups, nil
		}
		line, _ := cr.FieldPos(0)
		if err != nil {
			return nil, 0, err // the csv package says which line
		}
		if f[0] == "" {
			return nil, 0, fmt.Errorf("line %d: empty key", line)
		}
		v, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil {
			return nil, 0, fmt.Errorf("line %d: value %q: want an integer", line, f[2])
		}
		if seen[f[0]] {
			dups++
			continue
		}
		seen[f[0]] = true
		rs = append(rs, record{key: f[0], name: f[1], value: v})
	}
}

// enricher is the flaky enrichment service, in process. Whether an attempt
// for a record fails, and how long it takes, are drawn from the seed, the
// record's key and the attempt's number, so that a run repeats another's
// draws whatever the order of the calls.
type enricher struct {
	seed    uint64
	latency time.Duration // the mean of a call's latency
	fail    float64       // share of attempts that fail
	slow    float64       // share of attempts that take slowFor
	slowFor time.Duration
	invalid float64 // share of records it refuses, every time
}

var (
	errUnavailable = errors.New("enrich: 503 service unavailable")
	errInvalid     = errors.New("enrich: 422 invalid record")
)

// enrich returns a record's score, or fails: with errInvalid, marked
// retry.Permanent, for an invalid record, with errUnavailable now and then,
// or with ctx's error when ctx ends before the answer.
func (e *enricher) enrich(ctx context.Context, r record, attempt int) (int64, error) {
	h := fnv.New64a()
	h.Write([]byte(r.key))
	key := h.Sum64()
	if rand.New(rand.NewPCG(e.seed, key)).Float64() < e.invalid {
		return 0, retry.Permanent(errInvalid)
	}
	rnd := rand.New(rand.NewPCG(e.seed^key, uint64(attempt)))
	d := time.Duration(float64(e.latency) * (0.5 + rnd.Float64())) // half to one and a half the mean
	failed := rnd.Float64() < e.fail
	if rnd.Float64() < e.slow {
		d = e.slowFor
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-t.C:
	}
	if failed {
		return 0, errUnavailable
	}
	return r.value%997 + int64(len(r.name)), nil
}
