package main

import (
	"math"
	"math/rand/v2"
	"time"

	"github.com/resilience-go/resilience/retry"
)

// The model of the AWS simulator: one row with a version number on a
// server; each message takes |Normal(10ms, 2ms)|; each client reads the
// version, then writes once with it, and on a conflict waits a message's
// delay plus its backoff and reads again.
const (
	netMean = 10 * time.Millisecond
	netSD   = 2 * time.Millisecond
	base    = 5 * time.Millisecond // the article's base
	maxWait = 2 * time.Second      // the article's cap
)

// strategy is how a client waits after a conflict: a retry.Backoff, and
// whether its clients share a retry.Budget.
type strategy struct {
	name    string
	backoff retry.Backoff
	budget  bool
}

// strategies are those the program compares. The article's expo(n) is
// base·2ⁿ, the first retry being n = 1, where package retry's is
// base·2ⁿ⁻¹: the exponential strategies get 2·base to wait what the
// article's do. Its decorrelated jitter starts at base, as ours does.
var strategies = []strategy{
	{name: "none", backoff: retry.Constant(0)},
	{name: "constant", backoff: retry.Constant(2 * base)},
	{name: "exponential", backoff: retry.Exponential(2*base, maxWait)},
	{name: "equal jitter", backoff: retry.EqualJitter(2*base, maxWait)},
	{name: "full jitter", backoff: retry.FullJitter(2*base, maxWait)},
	{name: "decorrelated", backoff: retry.DecorrelatedJitter(base, maxWait)},
	{name: "full jitter+budget", backoff: retry.FullJitter(2*base, maxWait), budget: true},
}

// outcome is what one run, or the sum of several, counted.
type outcome struct {
	writes    int           // write calls at the server: the work
	completed int           // clients whose write succeeded
	gaveUp    int           // clients the budget refused a retry
	time      time.Duration // when the last client finished
}

func (o *outcome) add(p outcome) {
	o.writes += p.writes
	o.completed += p.completed
	o.gaveUp += p.gaveUp
	o.time += p.time
}

// What a message does when it arrives.
const (
	serverRead  = iota // the server reads the version and answers
	readAnswer         // the client sends its write with the version it read
	serverWrite        // the server writes if the version matches, and answers
	writeAnswer        // the client is done, or waits and reads again
)

type message struct {
	at      time.Duration
	seq     uint64 // the order of sending, between messages that arrive at once
	client  int32
	version int32 // read, or to write
	kind    uint8
	ok      bool
}

// queue is a min-heap of messages by arrival, then by order of sending.
type queue []message

func (q queue) less(i, j int) bool {
	return q[i].at < q[j].at || q[i].at == q[j].at && q[i].seq < q[j].seq
}

func (q *queue) push(m message) {
	*q = append(*q, m)
	h := *q
	for i := len(h) - 1; i > 0; {
		p := (i - 1) / 2
		if !h.less(i, p) {
			break
		}
		h[i], h[p] = h[p], h[i]
		i = p
	}
}

func (q *queue) pop() message {
	h := *q
	top := h[0]
	last := len(h) - 1
	h[0] = h[last]
	h = h[:last]
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < len(h) && h.less(l, m) {
			m = l
		}
		if r < len(h) && h.less(r, m) {
			m = r
		}
		if m == i {
			break
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
	*q = h
	return top
}

// simulate runs clients on the synthetic clock once, their network delays
// and waits drawn from rnd, and returns what it counted.
func simulate(s strategy, clients int, rnd *rand.Rand, q *queue) outcome {
	var (
		budget  *retry.Budget
		start   time.Time // the budget's clock at the synthetic zero
		version int32
		seq     uint64
		out     outcome
	)
	if s.budget {
		budget = retry.NewBudget(0.2, 10) // a Retrier's default
		// The synthetic zero, on the budget's clock: read after NewBudget,
		// whose floor starts full, so the real moment between them adds
		// nothing and the run repeats exactly.
		start = time.Now()
	}
	attempts := make([]int, clients)
	prev := make([]time.Duration, clients) // each client's last wait
	delay := func() time.Duration {
		return time.Duration(math.Abs(float64(netMean) + rnd.NormFloat64()*float64(netSD)))
	}
	send := func(m message) {
		seq++
		m.seq = seq
		q.push(m)
	}
	*q = (*q)[:0]
	for c := range clients {
		if budget != nil {
			budget.Deposit() // each client makes one call
		}
		send(message{at: delay(), client: int32(c), kind: serverRead})
	}
	for len(*q) > 0 {
		m := q.pop()
		out.time = m.at
		switch m.kind {
		case serverRead:
			send(message{at: m.at + delay(), client: m.client, kind: readAnswer, version: version})
		case readAnswer:
			send(message{at: m.at + delay(), client: m.client, kind: serverWrite, version: m.version})
		case serverWrite:
			out.writes++
			ok := m.version == version
			if ok {
				version++
			}
			send(message{at: m.at + delay(), client: m.client, kind: writeAnswer, ok: ok})
		case writeAnswer:
			if m.ok {
				out.completed++
				continue
			}
			if budget != nil && !budget.Withdraw(start.Add(m.at)) {
				out.gaveUp++
				continue
			}
			attempts[m.client]++
			wait := s.backoff.DelayRand(attempts[m.client], prev[m.client], rnd)
			prev[m.client] = wait
			send(message{at: m.at + delay() + wait, client: m.client, kind: serverRead})
		}
	}
	return out
}
