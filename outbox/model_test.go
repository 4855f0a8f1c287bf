package outbox_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/resilience-go/resilience/internal/servicetest"
	"github.com/resilience-go/resilience/outbox"
)

// The model of the relay, checked on SQLite with actions drawn by rapid
// (TestRelayModel) or read from the fuzzer's bytes (FuzzRelay). A run picks
// a mode (unordered or ordered), a batch size, a maximum of attempts and one
// to three relays, then takes actions:
//
//   - enqueue one to three messages with keys from a small set, some
//     keyless, in a transaction that commits or rolls back;
//   - Process on one relay, the Publisher accepting, refusing, or accepting
//     and losing the acknowledgement of each message, as drawn;
//   - crash a relay: it dies at a drawn point of its next Process (or
//     between batches), its leases lapse, and it comes back under a new ID;
//   - let time pass: every backoff ends;
//   - act as an operator: Retry or Discard a dead message.
//
// The model predicts the store row by row (which messages are pending, dead
// or gone, and their attempts), each relay's Stats, and each batch of an
// unordered claim, and checks, when the Publisher is handed a message, that
// it committed, was not acknowledged, discarded or dead, is not backing off,
// and carries the attempt it is on; in ordered mode, that its lane is not
// blocked and every older message of its lane was published earlier in the
// same pass, and that no message of a key is published for the first time
// before every older message of that key was published at least once.
// After the last action every relay stops, time passes, and a healthy relay
// drains the outbox: every committed message was then published at least
// once, or is dead after its attempts, or was discarded, or (in ordered
// mode) waits in its lane behind a dead message, as it must until an
// operator acts.

// modelT is what the model reports to: a *rapid.T or a *testing.T.
type modelT interface {
	Helper()
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	FailNow()
}

// chooser draws the model's choices.
type chooser interface {
	// intn returns a choice in [0, n); 0 is the simplest.
	intn(n int, label string) int
	// more reports whether the chooser has choices left to make.
	more() bool
}

type rapidChooser struct{ t *rapid.T }

func (c rapidChooser) intn(n int, label string) int { return rapid.IntRange(0, n-1).Draw(c.t, label) }
func (c rapidChooser) more() bool                   { return true }

// byteChooser reads one choice from each byte; past the end, every choice
// is 0.
type byteChooser struct{ data []byte }

func (c *byteChooser) intn(n int, _ string) int {
	if len(c.data) == 0 {
		return 0
	}
	b := c.data[0]
	c.data = c.data[1:]
	return int(b) % n
}

func (c *byteChooser) more() bool { return len(c.data) > 0 }

// laneOf returns the lane of a key: FNV-1a mod Lanes.
func laneOf(key string) int {
	h := uint32(2166136261)
	for i := range len(key) {
		h ^= uint32(key[i])
		h *= 16777619
	}
	return int(h % outbox.Lanes)
}

// modelOutbox is the one outbox every run of the model uses, emptied before
// each run: a run costs two statements, not a new database.
type modelOutbox struct {
	db *sql.DB
	ob *outbox.Outbox
	// keys: none, two keys that share a lane, and a key of another lane.
	keys  []string
	lanes [2]int
}

func newModelOutbox(t testing.TB) *modelOutbox {
	t.Helper()
	// A test database needs no durability: without a sync per commit, a
	// step costs CPU time alone.
	db, err := sql.Open("sqlite", servicetest.SQLite(t).DSN+"&_pragma=synchronous(OFF)")
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	d, err := outbox.SQLite.WithTable("model")
	require.NoError(t, err)
	ob := outbox.New(db, d)
	require.NoError(t, ob.Migrate(context.Background()))
	o := &modelOutbox{db: db, ob: ob, keys: []string{"", "a"}}
	for i := 0; len(o.keys) < 4; i++ {
		k := fmt.Sprint("k", i)
		same := laneOf(k) == laneOf("a")
		if same && len(o.keys) == 2 || !same && len(o.keys) == 3 {
			o.keys = append(o.keys, k)
		}
	}
	o.lanes = [2]int{laneOf(o.keys[1]), laneOf(o.keys[3])}
	return o
}

// reset empties the outbox, and gives every lane no key of the model uses
// to a relay outside the model, for ever: a relay's pass reads two lanes,
// not 64.
func (o *modelOutbox) reset(t modelT) {
	t.Helper()
	ctx := context.Background()
	_, err := o.db.ExecContext(ctx, "DELETE FROM model")
	require.NoError(t, err)
	_, err = o.db.ExecContext(ctx, `UPDATE model_lanes SET blocked_until = 0,
		owner = CASE WHEN lane IN (?, ?) THEN NULL ELSE 'outsider' END,
		lease_until = CASE WHEN lane IN (?, ?) THEN 0 ELSE ? END`,
		o.lanes[0], o.lanes[1], o.lanes[0], o.lanes[1], int64(1)<<62)
	require.NoError(t, err)
}

type msgState uint8

const (
	pending msgState = iota
	acked            // published and acknowledged: gone from the store
	dead
	discarded
)

func (s msgState) String() string { return [...]string{"pending", "acked", "dead", "discarded"}[s] }

// modelMsg is what the model knows of a message.
type modelMsg struct {
	id        string
	key       string
	lane      int // -1 without a key
	committed bool
	state     msgState
	// attempts is the store's count, as the model predicts it. A claim
	// (unordered mode, and keyless messages in ordered mode) counts each
	// claim; a lane counts each failure.
	attempts  int
	fails     int // failures handed back to a relay, since the last Retry
	crashed   int // claims by relays that died with the message in hand, since the last Retry
	delivered int // copies the broker accepted
	backoff   bool
}

// modelRelay is a relay and what the model expects of it.
type modelRelay struct {
	relay   *outbox.Relay
	id      string
	healthy bool // the Publisher accepts everything
	want    outbox.Stats
}

// modelBackoff is the backoff of every failure: long enough that no backoff
// ends before the model lets time pass (the chance that the random backoff
// ends within the millisecond of a step is about 1e-11).
const modelBackoff = 365 * 24 * time.Hour

// relayDied is the panic with which a Publisher stands for its relay's
// death.
type relayDied struct{}

var (
	errRefused = errors.New("broker: refused")
	errAckLost = errors.New("broker: acknowledgement lost")
)

// modelPublisher is the broker as a relay sees it.
type modelPublisher struct {
	m *relayModel
	r *modelRelay
}

func (p modelPublisher) Publish(_ context.Context, msgs []outbox.Message) []error {
	return p.m.publish(p.r, msgs)
}

type relayModel struct {
	t           modelT
	o           *modelOutbox
	c           chooser
	ordered     bool
	batch       int
	maxAttempts int

	relays  []*modelRelay // the live relays
	all     []*modelRelay // every relay made, for the totals
	made    int
	msgs    []*modelMsg // in enqueue order, rolled back ones included
	byID    map[string]*modelMsg
	blocked map[int]bool // lanes that wait for a backoff

	failures, deaths int64

	// The Process call in progress.
	call struct {
		relay   *modelRelay
		handed  int // messages handed to the Publisher
		diesAt  int // the relay dies when handed its diesAt+1st message; -1: never
		acked   int
		claimed bool
		lane    int         // the lane of the pass in progress, or -1
		passed  []*modelMsg // what that pass published so far
	}
}

// runModel runs the model for up to maxSteps actions drawn from c.
func runModel(t modelT, o *modelOutbox, c chooser, maxSteps int) {
	t.Helper()
	o.reset(t)
	m := &relayModel{t: t, o: o, c: c, byID: map[string]*modelMsg{}, blocked: map[int]bool{}}
	m.ordered = c.intn(2, "ordered") == 1
	m.batch = 1 + c.intn(3, "batch")
	m.maxAttempts = 1 + c.intn(3, "maxAttempts")
	for range 1 + c.intn(3, "relays") {
		m.relays = append(m.relays, m.newRelay())
	}
	steps := 1 + c.intn(maxSteps, "steps")
	for i := 0; i < steps && c.more(); i++ {
		switch a := c.intn(10, "action"); {
		case a < 3:
			m.enqueue()
		case a < 7:
			m.process(m.relays[c.intn(len(m.relays), "relay")], -1)
		case a == 7:
			m.crash(c.intn(len(m.relays), "relay"), c.intn(3, "diesAt"))
		case a == 8:
			m.passTime()
		default:
			m.operate()
		}
		m.checkStore()
	}
	m.drain()
}

func (m *relayModel) newRelay() *modelRelay {
	m.made++
	r := &modelRelay{id: fmt.Sprint("r", m.made)}
	opts := []outbox.Option{outbox.WithRelayID(r.id), outbox.WithBatchSize(m.batch), outbox.WithMaxAttempts(m.maxAttempts),
		outbox.WithRetryBackoff(modelBackoff, modelBackoff), outbox.WithOnEvent(m.event)}
	if m.ordered {
		opts = append(opts, outbox.WithOrdered())
	}
	r.relay = m.o.ob.NewRelay(modelPublisher{m, r}, opts...)
	m.all = append(m.all, r)
	return r
}

func (m *relayModel) event(e outbox.Event) {
	m.t.Helper()
	if e.Kind == outbox.Stale || e.Kind == outbox.Error {
		m.t.Fatalf("relay %s: unexpected event %+v", m.call.relay.id, e)
	}
}

func (m *relayModel) enqueue() {
	t := m.t
	t.Helper()
	ctx := context.Background()
	commit := m.c.intn(4, "rollback") != 3
	msgs := make([]outbox.Message, 1+m.c.intn(3, "messages"))
	for i := range msgs {
		msgs[i] = outbox.Message{ID: fmt.Sprint("m", len(m.msgs)+i), Topic: "t", Key: m.o.keys[m.c.intn(len(m.o.keys), "key")]}
	}
	tx, err := m.o.db.BeginTx(ctx, nil)
	require.NoError(t, err)
	require.NoError(t, m.o.ob.Enqueue(ctx, tx, msgs...))
	if commit {
		require.NoError(t, tx.Commit())
	} else {
		require.NoError(t, tx.Rollback())
	}
	for _, msg := range msgs {
		mm := &modelMsg{id: msg.ID, key: msg.Key, lane: -1, committed: commit}
		if msg.Key != "" {
			mm.lane = laneOf(msg.Key)
		}
		m.msgs = append(m.msgs, mm)
		m.byID[mm.id] = mm
	}
}

// process runs one Process of r, whose relay dies when handed its
// diesAt+1st message (never if diesAt < 0), and reports whether it died.
func (m *relayModel) process(r *modelRelay, diesAt int) (died bool) {
	t := m.t
	t.Helper()
	m.call.relay, m.call.handed, m.call.diesAt, m.call.acked, m.call.claimed = r, 0, diesAt, 0, false
	m.call.lane, m.call.passed = -1, nil
	defer func() { m.call.relay = nil }()
	n, err := func() (n int, err error) {
		defer func() {
			if v := recover(); v != nil {
				if _, ok := v.(relayDied); !ok {
					panic(v)
				}
				died = true
			}
		}()
		return r.relay.Process(context.Background())
	}()
	if died {
		m.call.lane, m.call.passed = -1, nil // published, never acknowledged
		if got := r.relay.Stats(); got != r.want {
			t.Fatalf("relay %s died: Stats %+v, want %+v", r.id, got, r.want)
		}
		return true
	}
	require.NoError(t, err)
	m.endPass()
	if n != m.call.acked {
		t.Fatalf("relay %s: Process returned %d, want %d acknowledged", r.id, n, m.call.acked)
	}
	if got := r.relay.Stats(); got != r.want {
		t.Fatalf("relay %s: Stats %+v, want %+v", r.id, got, r.want)
	}
	if due := m.claimable(); !m.call.claimed && len(due) > 0 {
		t.Fatalf("relay %s: Process claimed nothing, and %s are due", r.id, ids(due))
	}
	return false
}

// crash makes relay i die at its next Process, when handed its diesAt+1st
// message, or after that Process if it is handed fewer: its leases lapse, as
// the store sees them, and it comes back under a new ID.
func (m *relayModel) crash(i, diesAt int) {
	r := m.relays[i]
	m.process(r, diesAt)
	m.lapse(r.id)
	m.relays[i] = m.newRelay()
}

// lapse ends the leases and the announcement of the relay with ID id, as if
// they ran out.
func (m *relayModel) lapse(id string) {
	t := m.t
	t.Helper()
	ctx := context.Background()
	_, err := m.o.db.ExecContext(ctx, "UPDATE model SET locked_until = 0 WHERE locked_by LIKE ?", id+":%")
	require.NoError(t, err)
	_, err = m.o.db.ExecContext(ctx, "UPDATE model_lanes SET lease_until = 0 WHERE owner = ?", id)
	require.NoError(t, err)
	_, err = m.o.db.ExecContext(ctx, "UPDATE model_relays SET seen_until = 0 WHERE relay = ?", id)
	require.NoError(t, err)
}

// passTime ends every backoff, as the store sees it.
func (m *relayModel) passTime() {
	t := m.t
	t.Helper()
	ctx := context.Background()
	_, err := m.o.db.ExecContext(ctx, "UPDATE model SET available_at = 0 WHERE status = 0")
	require.NoError(t, err)
	_, err = m.o.db.ExecContext(ctx, "UPDATE model_lanes SET blocked_until = 0")
	require.NoError(t, err)
	for _, mm := range m.msgs {
		mm.backoff = false
	}
	clear(m.blocked)
}

// operate retries or discards a dead message, if there is one.
func (m *relayModel) operate() {
	t := m.t
	t.Helper()
	var deadMsgs []*modelMsg
	for _, mm := range m.msgs {
		if mm.state == dead {
			deadMsgs = append(deadMsgs, mm)
		}
	}
	if len(deadMsgs) == 0 {
		return
	}
	mm := deadMsgs[m.c.intn(len(deadMsgs), "dead")]
	ctx := context.Background()
	if m.c.intn(2, "discard") == 1 {
		n, err := m.o.ob.Discard(ctx, mm.id)
		require.NoError(t, err)
		if n != 1 {
			t.Fatalf("Discard(%s) = %d, want 1", mm.id, n)
		}
		mm.state = discarded
		if mm.lane >= 0 {
			delete(m.blocked, mm.lane) // the lane goes on without it
		}
		return
	}
	n, err := m.o.ob.Retry(ctx, mm.id)
	require.NoError(t, err)
	if n != 1 {
		t.Fatalf("Retry(%s) = %d, want 1", mm.id, n)
	}
	mm.state, mm.attempts, mm.fails, mm.crashed, mm.backoff = pending, 0, 0, 0, false
	if mm.lane >= 0 {
		delete(m.blocked, mm.lane)
	}
}

// claimable returns the messages a claim takes next, oldest first.
func (m *relayModel) claimable() []*modelMsg {
	var due []*modelMsg
	for _, mm := range m.msgs {
		if mm.committed && mm.state == pending && !mm.backoff && (!m.ordered || mm.key == "") {
			due = append(due, mm)
		}
	}
	return due
}

// publish is the Publisher of relay r: it checks what it is handed, and
// draws each message's fate.
func (m *relayModel) publish(r *modelRelay, msgs []outbox.Message) []error {
	t := m.t
	t.Helper()
	if m.call.relay != r {
		t.Fatalf("relay %s published outside its Process", r.id)
	}
	if len(msgs) == 0 {
		t.Fatalf("relay %s: Publish of no message", r.id)
	}
	lane := -1
	if m.ordered && msgs[0].Key != "" {
		lane = laneOf(msgs[0].Key)
	}
	if lane != m.call.lane {
		m.endPass() // the relay moved on to another lane, or to its claim
	}
	batch := make([]*modelMsg, len(msgs))
	for i, msg := range msgs {
		mm := m.byID[msg.ID]
		switch {
		case mm == nil:
			t.Fatalf("relay %s: unknown message %q", r.id, msg.ID)
		case !mm.committed:
			t.Fatalf("relay %s: message %s of a rolled-back transaction", r.id, mm.id)
		case mm.state != pending:
			t.Fatalf("relay %s: message %s is %v", r.id, mm.id, mm.state)
		case mm.backoff:
			t.Fatalf("relay %s: message %s before its backoff ended", r.id, mm.id)
		case msg.Key != mm.key || msg.Topic != "t":
			t.Fatalf("relay %s: message %s came back as %+v", r.id, mm.id, msg)
		}
		batch[i] = mm
	}
	if lane >= 0 {
		m.checkLane(r, batch, msgs[0].Attempts)
	} else {
		m.checkClaim(r, batch, msgs)
	}

	var errs []error
	for i, mm := range batch {
		if m.call.handed == m.call.diesAt {
			if lane < 0 {
				for _, mm := range batch {
					mm.crashed++ // its claim counted an attempt
				}
			}
			panic(relayDied{})
		}
		m.call.handed++
		outcome := 0
		if !r.healthy {
			outcome = m.c.intn(6, "outcome") // accepted 1/2, refused 1/3, acknowledgement lost 1/6
		}
		switch {
		case outcome < 3:
			m.deliver(mm)
			continue
		case outcome < 5:
			if errs == nil {
				errs = make([]error, len(batch))
			}
			errs[i] = errRefused
		default:
			m.deliver(mm)
			if errs == nil {
				errs = make([]error, len(batch))
			}
			errs[i] = errAckLost
		}
	}

	// The relay has the outcomes back: it acknowledges or puts back each.
	for i, mm := range batch {
		if errs == nil || errs[i] == nil {
			if lane >= 0 {
				m.call.passed = append(m.call.passed, mm)
			} else {
				m.ack(mm)
			}
			continue
		}
		r.want.Failed++
		m.failures++
		mm.fails++
		mm.attempts = msgs[i].Attempts
		if mm.attempts >= m.maxAttempts {
			mm.state = dead
			r.want.Dead++
			m.deaths++
		} else {
			mm.backoff = true
		}
		if lane >= 0 {
			m.blocked[lane] = true
			m.endPass() // the lane stops at its first failure
		}
	}
	return errs
}

// checkLane checks a message handed by a lane: alone, its lane not blocked,
// every older message of its lane published earlier in this pass, and on
// the attempt after those the store counted.
func (m *relayModel) checkLane(r *modelRelay, batch []*modelMsg, attempts int) {
	t := m.t
	t.Helper()
	mm := batch[0]
	if len(batch) != 1 {
		t.Fatalf("relay %s: a lane handed %d messages at once", r.id, len(batch))
	}
	if m.blocked[mm.lane] {
		t.Fatalf("relay %s: message %s of lane %d, which waits for a backoff", r.id, mm.id, mm.lane)
	}
	if m.call.lane != mm.lane {
		m.call.lane, m.call.passed = mm.lane, nil
	}
	for _, older := range m.msgs {
		if older == mm {
			break
		}
		if older.lane == mm.lane && older.committed && (older.state == pending || older.state == dead) &&
			!slices.Contains(m.call.passed, older) {
			t.Fatalf("relay %s: message %s of lane %d before %s (%v), which this pass did not publish",
				r.id, mm.id, mm.lane, older.id, older.state)
		}
	}
	if attempts != mm.attempts+1 {
		t.Fatalf("relay %s: message %s on attempt %d, want %d", r.id, mm.id, attempts, mm.attempts+1)
	}
}

// checkClaim checks a claimed batch: the oldest due messages, each on the
// attempt its claim counted.
func (m *relayModel) checkClaim(r *modelRelay, batch []*modelMsg, msgs []outbox.Message) {
	t := m.t
	t.Helper()
	due := m.claimable()
	if len(due) > m.batch {
		due = due[:m.batch]
	}
	if !slices.Equal(batch, due) {
		t.Fatalf("relay %s claimed %s, want %s", r.id, ids(batch), ids(due))
	}
	m.call.claimed = true
	for i, mm := range batch {
		mm.attempts++
		if msgs[i].Attempts != mm.attempts {
			t.Fatalf("relay %s: message %s on attempt %d, want %d", r.id, mm.id, msgs[i].Attempts, mm.attempts)
		}
	}
}

// deliver records that the broker accepted mm, and checks that, in ordered
// mode, every older message of its key was accepted at least once before
// its first copy.
func (m *relayModel) deliver(mm *modelMsg) {
	t := m.t
	t.Helper()
	if m.ordered && mm.key != "" && mm.delivered == 0 {
		for _, older := range m.msgs {
			if older == mm {
				break
			}
			if older.key == mm.key && older.committed && older.state != discarded && older.delivered == 0 {
				t.Fatalf("message %s of key %q published before %s (%v), never published", mm.id, mm.key, older.id, older.state)
			}
		}
	}
	mm.delivered++
}

func (m *relayModel) ack(mm *modelMsg) {
	mm.state = acked
	m.call.acked++
	m.call.relay.want.Published++
}

// endPass acknowledges what the lane pass in progress published.
func (m *relayModel) endPass() {
	for _, mm := range m.call.passed {
		m.ack(mm)
	}
	m.call.lane, m.call.passed = -1, nil
}

// checkStore compares the store, row by row, with the model.
func (m *relayModel) checkStore() {
	t := m.t
	t.Helper()
	rows, err := m.o.db.QueryContext(context.Background(), "SELECT message_id, status, attempts FROM model ORDER BY id")
	require.NoError(t, err)
	defer rows.Close()
	var got []string
	for rows.Next() {
		var (
			id               string
			status, attempts int
		)
		require.NoError(t, rows.Scan(&id, &status, &attempts))
		got = append(got, fmt.Sprintf("%s:%d:%d", id, status, attempts))
	}
	require.NoError(t, rows.Err())
	var want []string
	for _, mm := range m.msgs {
		switch {
		case !mm.committed:
		case mm.state == pending:
			want = append(want, fmt.Sprintf("%s:0:%d", mm.id, mm.attempts))
		case mm.state == dead:
			want = append(want, fmt.Sprintf("%s:2:%d", mm.id, mm.attempts))
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("store (id:status:attempts)\n got %v\nwant %v", got, want)
	}
}

// drain stops every relay, lets time pass, and has a healthy relay publish
// what is left; then it checks that nothing committed was lost, that a dead
// message used up its attempts (a lane counts its failures; a claim counts
// itself, a claim by a relay that died included, so a message that died in a
// claim failed its last attempt and every other one but those), and that the
// relays' Stats add up to what the Publisher handed back to them.
func (m *relayModel) drain() {
	t := m.t
	t.Helper()
	for _, r := range m.relays {
		m.lapse(r.id)
	}
	m.passTime()
	m.batch = 1000
	healthy := m.newRelay()
	healthy.healthy = true
	m.process(healthy, -1)
	m.checkStore()

	var published int64
	for _, mm := range m.msgs {
		if !mm.committed {
			continue
		}
		switch mm.state {
		case acked:
			published++
			if mm.delivered == 0 {
				t.Fatalf("message %s acknowledged, never published", mm.id)
			}
		case dead:
			if mm.lane >= 0 && m.ordered {
				if mm.fails != m.maxAttempts {
					t.Fatalf("message %s dead after %d failures, want %d", mm.id, mm.fails, m.maxAttempts)
				}
			} else if mm.fails+mm.crashed != mm.attempts || mm.attempts < m.maxAttempts ||
				mm.crashed == 0 && mm.attempts != m.maxAttempts {
				t.Fatalf("message %s dead after %d attempts (%d failed, %d with a relay that died), want %d",
					mm.id, mm.attempts, mm.fails, mm.crashed, m.maxAttempts)
			}
		case pending:
			if !m.ordered || mm.lane < 0 || !m.behindDead(mm) {
				t.Fatalf("message %s left pending after the drain", mm.id)
			}
		}
	}
	var total outbox.Stats
	for _, r := range m.all {
		s := r.relay.Stats()
		total.Published += s.Published
		total.Failed += s.Failed
		total.Dead += s.Dead
	}
	if want := (outbox.Stats{Published: published, Failed: m.failures, Dead: m.deaths}); total != want {
		t.Fatalf("the relays' Stats add up to %+v, want %+v", total, want)
	}
}

// behindDead reports whether an older message of mm's lane is dead.
func (m *relayModel) behindDead(mm *modelMsg) bool {
	for _, older := range m.msgs {
		if older == mm {
			return false
		}
		if older.lane == mm.lane && older.state == dead {
			return true
		}
	}
	return false
}

func ids(msgs []*modelMsg) string {
	s := make([]string, len(msgs))
	for i, mm := range msgs {
		s[i] = mm.id
	}
	return "[" + strings.Join(s, " ") + "]"
}

// TestRelayModel runs the model on one SQLite database, emptied between
// runs. A run takes up to 12 actions, whatever RAPID_STEPS says: each action
// costs a few SQLite statements, and a thousand runs under the race detector
// stay within a minute.
func TestRelayModel(t *testing.T) {
	o := newModelOutbox(t)
	rapid.Check(t, func(rt *rapid.T) {
		runModel(rt, o, rapidChooser{rt}, 12)
	})
}

// FuzzRelay runs the model on actions read from the input, one byte per
// choice: the mode, batch size, maximum of attempts, relays and number of
// actions, then each action and its choices (keys, outcomes, crash points).
func FuzzRelay(f *testing.F) {
	// Unordered, batch 1, one attempt, one relay: three messages; one
	// published, one refused (dead), retried and lost its acknowledgement
	// (dead again); a rolled-back transaction.
	f.Add([]byte{0, 0, 0, 0, 5, 0, 0, 2, 1, 1, 0, 3, 0, 0, 3, 0, 3, 9, 0, 0, 3, 0, 5, 0, 3, 0, 1})
	// Ordered, batch 2, two attempts, two relays: a lane stops at a refusal;
	// its owner dies and the other relay takes the lane over; the message
	// dies, holds up a newer one of its lane, and is discarded.
	f.Add([]byte{1, 1, 1, 1, 8, 0, 0, 2, 1, 2, 3, 3, 0, 0, 3, 0, 7, 0, 0, 8, 3, 1, 5, 0, 0, 0, 1, 9, 0, 1, 8, 3, 1, 0})
	// Unordered, batch 3, three attempts, three relays: a relay dies with
	// its batch half published; another claims it again at once.
	f.Add([]byte{0, 2, 2, 2, 5, 0, 0, 2, 0, 0, 0, 7, 1, 1, 0, 3, 2, 0, 3, 5, 8, 3, 0, 4, 0, 0, 3, 0, 0})
	// Ordered, batch 3, one attempt: a relay dies in the middle of a lane;
	// its successor publishes the lane again from its head, and the last
	// message dies, holding up the newer message of its lane.
	f.Add([]byte{1, 2, 0, 0, 4, 0, 0, 2, 1, 1, 1, 7, 0, 1, 0, 3, 0, 0, 0, 3, 0, 0, 1, 2, 3, 3, 0, 0})
	o := newModelOutbox(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		runModel(t, o, &byteChooser{data}, 24)
	})
}
