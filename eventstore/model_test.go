package eventstore_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/resilience-go/resilience/eventstore"
)

// appendOp is one step of the append state machine: an append of n events
// to one of three streams, with an expectation, committed or rolled back.
type appendOp struct {
	stream   int
	expect   int   // 0 Any, 1 NoStream, 2 StreamExists, 3 the version, 4 one below, 5 one above, 6 a given version
	version  int64 // for expect 6
	n        int
	rollback bool
}

// model is what the store must hold: each stream's events, and the log.
type model struct {
	streams map[string][]string // event IDs in version order
	log     []string            // event IDs in position order
}

// runAppendOps runs ops on s, whose streams are named after prefix, and
// checks every result against the model, and the store against the model
// at the end. It returns a description of the first difference.
func runAppendOps(ctx context.Context, s *eventstore.Store, prefix string, ops []appendOp) error {
	head, err := s.Head(ctx)
	if err != nil {
		return err
	}
	m := model{streams: map[string][]string{}}
	for i, op := range ops {
		stream := fmt.Sprintf("%s-%d", prefix, op.stream)
		actual := int64(len(m.streams[stream]))
		expected := map[int]int64{0: eventstore.Any, 1: eventstore.NoStream, 2: eventstore.StreamExists,
			3: actual, 4: actual - 1, 5: actual + 1, 6: op.version}[op.expect]
		var ok bool
		switch {
		case expected == eventstore.Any:
			ok = true
		case expected == eventstore.StreamExists:
			ok = actual > 0
		default:
			ok = expected == actual
		}
		events := make([]eventstore.Event, op.n)
		for j := range events {
			events[j] = eventstore.Event{ID: fmt.Sprintf("%s-%d-%d", prefix, i, j), Type: "T"}
		}
		tx, err := s.DB().BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		got, err := s.Append(ctx, tx, stream, expected, events...)
		if op.rollback || err != nil {
			if err := tx.Rollback(); err != nil {
				return err
			}
		} else if err := tx.Commit(); err != nil {
			return err
		}
		var conflict *eventstore.ConflictError
		switch {
		case errors.Is(err, eventstore.ErrBadExpected):
			if expected >= eventstore.StreamExists {
				return fmt.Errorf("op %d: %d refused as bad", i, expected)
			}
			continue
		case errors.As(err, &conflict):
			if ok {
				return fmt.Errorf("op %d: %v, but the stream is at %d, expecting %d", i, err, actual, expected)
			}
			if conflict.Actual != actual {
				return fmt.Errorf("op %d: conflict says version %d, the model %d", i, conflict.Actual, actual)
			}
			continue
		case err != nil:
			return fmt.Errorf("op %d: %w", i, err)
		case !ok:
			return fmt.Errorf("op %d: append expecting %d succeeded on a stream at %d", i, expected, actual)
		case got != actual+int64(op.n):
			return fmt.Errorf("op %d: new version %d, want %d", i, got, actual+int64(op.n))
		}
		if op.rollback {
			continue
		}
		for _, e := range events {
			m.streams[stream] = append(m.streams[stream], e.ID)
			m.log = append(m.log, e.ID)
		}
	}
	for stream, ids := range m.streams {
		events, err := s.ReadStream(ctx, stream, 1, 10_000)
		if err != nil {
			return err
		}
		if len(events) != len(ids) {
			return fmt.Errorf("stream %s holds %d events, want %d", stream, len(events), len(ids))
		}
		for i, e := range events {
			if e.ID != ids[i] || e.Version != int64(i+1) {
				return fmt.Errorf("stream %s version %d: %s at %d, want %s", stream, i+1, e.ID, e.Version, ids[i])
			}
		}
	}
	all, err := s.ReadAll(ctx, head+1, 10_000)
	if err != nil {
		return err
	}
	if len(all) != len(m.log) {
		return fmt.Errorf("the log holds %d new events, want %d", len(all), len(m.log))
	}
	for i, e := range all {
		if e.ID != m.log[i] || e.Position != head+int64(i)+1 {
			return fmt.Errorf("position %d: %s, want %s at %d", e.Position, e.ID, m.log[i], head+int64(i)+1)
		}
	}
	return nil
}

var (
	sharedMu     sync.Mutex
	sharedStores = map[string]*eventstore.Store{}
	sharedSeq    int
)

// modelStore returns the store named name, in an in-memory SQLite database
// that the runs of one property test (or of the fuzz target) share, and a
// stream prefix no other run uses.
func modelStore(t testing.TB, name string) (*eventstore.Store, string) {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	s, ok := sharedStores[name]
	if !ok {
		db, err := sql.Open("sqlite", ":memory:")
		require.NoError(t, err)
		db.SetMaxOpenConns(1) // one connection: one in-memory database
		s = eventstore.New(db, eventstore.SQLite)
		require.NoError(t, s.Migrate(context.Background()))
		sharedStores[name] = s
	}
	sharedSeq++
	return s, fmt.Sprint("m", sharedSeq)
}

// The store follows the model of expected-version appends: each append
// succeeds exactly when its expectation holds, returns the new version and
// writes its events, in order, to the stream and the log; a conflict says
// the actual version; a rolled-back append leaves nothing.
func TestAppendModel(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(rt *rapid.T) {
		s, prefix := modelStore(t, "model")
		ops := rapid.SliceOfN(rapid.Custom(func(rt *rapid.T) appendOp {
			return appendOp{
				stream:   rapid.IntRange(0, 2).Draw(rt, "stream"),
				expect:   rapid.IntRange(0, 6).Draw(rt, "expect"),
				version:  rapid.Int64Range(-4, 6).Draw(rt, "version"),
				n:        rapid.IntRange(0, 3).Draw(rt, "n"),
				rollback: rapid.Float64Range(0, 1).Draw(rt, "p") < 0.15,
			}
		}), 1, 12).Draw(rt, "ops")
		if err := runAppendOps(context.Background(), s, prefix, ops); err != nil {
			rt.Fatal(err)
		}
	})
}

// FuzzAppend drives the same state machine from bytes: three per append.
func FuzzAppend(f *testing.F) {
	f.Add([]byte{0x00, 0x10, 0x02, 0x31, 0x03, 0x01, 0x52, 0x00, 0x00})
	f.Add([]byte{0x14, 0x23, 0x01, 0x60, 0xff, 0x02})
	f.Fuzz(func(t *testing.T, data []byte) {
		var ops []appendOp
		for i := 0; i+2 < len(data) && len(ops) < 30; i += 3 {
			ops = append(ops, appendOp{
				stream:   int(data[i]>>4) % 3,
				expect:   int(data[i]&0x0f) % 7,
				version:  int64(int8(data[i+1])),
				n:        int(data[i+2]) % 4,
				rollback: data[i+2]&0x80 != 0,
			})
		}
		s, prefix := modelStore(t, "fuzz")
		if err := runAppendOps(context.Background(), s, prefix, ops); err != nil {
			t.Fatal(err)
		}
	})
}

// counter is the aggregate of the snapshot property: a running total and
// how many events made it.
type counter struct {
	Total, Events int64
}

func applyCounter(c counter, e eventstore.Event) counter {
	var n int64
	if err := json.Unmarshal(e.Payload, &n); err != nil {
		panic(err)
	}
	if e.Type == "Added" {
		c.Total += n
	} else {
		c.Total -= n
	}
	c.Events++
	return c
}

// A snapshot at any version, plus the events after it, gives what a replay
// of the whole stream gives.
func TestSnapshotPlusTailEqualsReplay(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(rt *rapid.T) {
		s, prefix := modelStore(t, "snapshot")
		ctx := context.Background()
		stream := prefix + "-counter"
		amounts := rapid.SliceOfN(rapid.Int64Range(-1000, 1000), 1, 25).Draw(rt, "amounts")
		var events []eventstore.Event
		for i, n := range amounts {
			typ := "Added"
			if i%3 == 2 {
				typ = "Removed"
			}
			events = append(events, eventstore.Event{Type: typ, Payload: fmt.Appendf(nil, "%d", n)})
		}
		if _, err := appendTx(ctx, s, stream, eventstore.NoStream, events...); err != nil {
			rt.Fatal(err)
		}
		at := rapid.Int64Range(1, int64(len(events))).Draw(rt, "snapshot at")
		head, _, err := eventstore.Fold(ctx, s, stream, counter{}, 0, func(c counter, e eventstore.Event) counter {
			if e.Version > at {
				return c
			}
			return applyCounter(c, e)
		})
		if err != nil {
			rt.Fatal(err)
		}
		state, err := json.Marshal(head)
		if err != nil {
			rt.Fatal(err)
		}
		if err := s.SaveSnapshot(ctx, stream, at, state); err != nil {
			rt.Fatal(err)
		}
		if err := s.SaveSnapshot(ctx, stream, at-1+boolInt(at == 1), []byte("older")); err != nil {
			rt.Fatal(err)
		}

		snap, err := s.LoadSnapshot(ctx, stream)
		if err != nil {
			rt.Fatal(err)
		}
		if snap.Version != at {
			rt.Fatalf("snapshot at %d, want %d: an older one replaced it", snap.Version, at)
		}
		var fromSnap counter
		if err := json.Unmarshal(snap.State, &fromSnap); err != nil {
			rt.Fatal(err)
		}
		got, gotVersion, err := eventstore.Fold(ctx, s, stream, fromSnap, snap.Version, applyCounter)
		if err != nil {
			rt.Fatal(err)
		}
		want, wantVersion, err := eventstore.Load(ctx, s, stream, applyCounter)
		if err != nil {
			rt.Fatal(err)
		}
		if got != want || gotVersion != wantVersion || wantVersion != int64(len(events)) {
			rt.Fatalf("snapshot + tail %+v at %d, replay %+v at %d", got, gotVersion, want, wantVersion)
		}
	})
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}
