package rabbitoutbox_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience/contrib/rabbitoutbox"
	"github.com/resilience-go/resilience/internal/servicetest"
	"github.com/resilience-go/resilience/outbox"
)

const waitFor = 10 * time.Second

// broker returns the broker's URL and a channel of the test's own, for
// declaring, inspecting and consuming.
func broker(t testing.TB) (string, *amqp.Channel) {
	t.Helper()
	url := servicetest.AMQPURL(t)
	conn, err := amqp.Dial(url)
	require.NoError(t, err, "connect to %s", url)
	t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	require.NoError(t, err)
	return url, ch
}

// topology is a direct exchange and a queue, both named name, bound with
// routing key name: a message whose Topic is name reaches the queue through
// the exchange, or through the default exchange.
type topology struct{ name string }

// declare declares a topology of a unique name, deleted when the test ends.
func declare(t testing.TB, url string, ch *amqp.Channel, durable bool, queueArgs amqp.Table) topology {
	t.Helper()
	name := servicetest.UniqueName(t)
	require.NoError(t, ch.ExchangeDeclare(name, amqp.ExchangeDirect, durable, false, false, false, nil))
	_, err := ch.QueueDeclare(name, durable, false, false, false, queueArgs)
	require.NoError(t, err)
	require.NoError(t, ch.QueueBind(name, name, name, false, nil))
	t.Cleanup(func() {
		// A channel of its own: the test's may be closed by now.
		conn, err := amqp.Dial(url)
		if err != nil {
			t.Errorf("clean-up: %v", err)
			return
		}
		defer conn.Close()
		c, err := conn.Channel()
		if err != nil {
			t.Errorf("clean-up: %v", err)
			return
		}
		if _, err := c.QueueDelete(name, false, false, false); err != nil {
			t.Errorf("clean-up: delete queue %s: %v", name, err)
		}
		if err := c.ExchangeDelete(name, false, false); err != nil {
			t.Errorf("clean-up: delete exchange %s: %v", name, err)
		}
	})
	return topology{name}
}

// drainQueue takes every message in the queue.
func drainQueue(t testing.TB, ch *amqp.Channel, queue string) []amqp.Delivery {
	t.Helper()
	var got []amqp.Delivery
	for {
		d, ok, err := ch.Get(queue, true)
		require.NoError(t, err)
		if !ok {
			return got
		}
		got = append(got, d)
	}
}

func depth(t testing.TB, ch *amqp.Channel, queue string) int {
	t.Helper()
	q, err := ch.QueueDeclarePassive(queue, false, false, false, false, nil)
	require.NoError(t, err)
	return q.Messages
}

// waitDepth waits until the queue holds n messages.
func waitDepth(t testing.TB, ch *amqp.Channel, queue string, n int) {
	t.Helper()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		q, err := ch.QueueDeclarePassive(queue, false, false, false, false, nil)
		if assert.NoError(c, err) {
			assert.Equal(c, n, q.Messages, "messages in queue %s", queue)
		}
	}, waitFor, 10*time.Millisecond)
}

func ids(ds []amqp.Delivery) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.MessageId
	}
	return out
}

func messages(topic, prefix string, n int) []outbox.Message {
	msgs := make([]outbox.Message, n)
	for i := range msgs {
		msgs[i] = outbox.Message{ID: fmt.Sprintf("%s-%03d", prefix, i), Topic: topic, Payload: fmt.Appendf(nil, `{"n":%d}`, i)}
	}
	return msgs
}

func msgIDs(msgs []outbox.Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.ID
	}
	return out
}

func dial(t testing.TB, url string, opts ...rabbitoutbox.Option) *rabbitoutbox.Publisher {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	p, err := rabbitoutbox.Dial(ctx, url, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { p.Close() })
	return p
}

func publish(t testing.TB, p *rabbitoutbox.Publisher, msgs []outbox.Message) []error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	errs := p.Publish(ctx, msgs)
	if errs != nil {
		require.Len(t, errs, len(msgs), "a slice as long as msgs, or nil")
	}
	return errs
}

func TestBatchArrivesInOrderWithIDsHeadersAndPayloads(t *testing.T) {
	url, ch := broker(t)
	top := declare(t, url, ch, false, nil)
	p := dial(t, url, rabbitoutbox.WithExchange(top.name), rabbitoutbox.WithContentType("application/json"))
	msgs := []outbox.Message{
		{ID: "a", Topic: top.name, Key: "order-1", Payload: []byte(`{"a":1}`), Headers: map[string]string{"trace": "t1", "tenant": "acme"}},
		{ID: "b", Topic: top.name, Payload: []byte(`{"b":2}`)},
		{ID: "c", Topic: top.name, Key: "order-1", Payload: nil, Headers: map[string]string{rabbitoutbox.KeyHeader: "overridden"}},
		{ID: "d", Topic: top.name, Payload: bytes.Repeat([]byte{0, 1, 2, 255}, 50_000)}, // several frames
		{ID: "e", Topic: top.name, Key: "order-2", Payload: []byte("plain")},
	}
	assert.Nil(t, publish(t, p, msgs), "every message confirmed")

	got := drainQueue(t, ch, top.name)
	require.Equal(t, msgIDs(msgs), ids(got), "all arrive, in order")
	for i, d := range got {
		m := msgs[i]
		assert.Equal(t, top.name, d.Exchange, m.ID)
		assert.Equal(t, top.name, d.RoutingKey, m.ID)
		assert.Equal(t, "application/json", d.ContentType, m.ID)
		assert.Equal(t, amqp.Persistent, d.DeliveryMode, m.ID)
		assert.True(t, bytes.Equal(m.Payload, d.Body), "payload of %s", m.ID)
		back := rabbitoutbox.Decode(d)
		assert.Equal(t, m.ID, back.ID)
		assert.Equal(t, m.Topic, back.Topic)
		assert.Equal(t, m.Key, back.Key, m.ID)
	}
	assert.Equal(t, amqp.Table{"trace": "t1", "tenant": "acme", rabbitoutbox.KeyHeader: "order-1"}, got[0].Headers)
	assert.Empty(t, got[1].Headers, "no key, no headers")
	assert.Equal(t, amqp.Table{rabbitoutbox.KeyHeader: "order-1"}, got[2].Headers, "the key header carries the key")
	assert.Equal(t, map[string]string{"trace": "t1", "tenant": "acme"}, rabbitoutbox.Decode(got[0]).Headers)

	assert.Nil(t, p.Publish(context.Background(), nil), "an empty batch")
}

// Every nil is a confirm: a batch larger than a window reaches a durable
// queue whole, and a batch whose confirms never come fails whole though the
// broker holds it.
func TestNilOnlyForConfirmedMessages(t *testing.T) {
	url, ch := broker(t)
	top := declare(t, url, ch, true, nil)
	proxied, px := servicetest.ProxyURL(t, url, "5672")
	p := dial(t, proxied)

	msgs := messages(top.name, "m", 600)
	assert.Nil(t, publish(t, p, msgs))
	assert.Equal(t, 600, depth(t, ch, top.name), "the broker holds every confirmed message")

	px.Pause() // the broker's confirms are held back
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	late := messages(top.name, "late", 10)
	errs := p.Publish(ctx, late)
	require.Len(t, errs, len(late))
	for i, err := range errs {
		assert.ErrorIs(t, err, rabbitoutbox.ErrUnconfirmed, "message %d", i)
		assert.ErrorIs(t, err, context.DeadlineExceeded, "message %d", i)
	}
	waitDepth(t, ch, top.name, 610) // the broker has them, but did not confirm them in time

	// The channel was given up; opening the next one waits on the broker,
	// and within ctx only.
	ctx, cancel = context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	errs = p.Publish(ctx, late)
	require.Len(t, errs, len(late))
	for i, err := range errs {
		assert.ErrorIs(t, err, context.DeadlineExceeded, "message %d", i)
	}
	px.Restore()

	assert.Nil(t, publish(t, p, messages(top.name, "after", 3)), "the next Publish works, on a new channel")
	got := ids(drainQueue(t, ch, top.name))
	assert.Len(t, got, 613)
	assert.Equal(t, []string{"after-000", "after-001", "after-002"}, got[610:])
}

func TestUnroutableMessageFailsAloneWhenMandatory(t *testing.T) {
	url, ch := broker(t)
	top := declare(t, url, ch, false, nil)
	p := dial(t, url, rabbitoutbox.WithExchange(top.name))
	msgs := []outbox.Message{
		{ID: "1", Topic: top.name},
		{ID: "2", Topic: "nowhere"},
		{ID: "3", Topic: top.name},
		{ID: "4", Topic: "nowhere"},
		{ID: "5", Topic: top.name},
	}
	errs := publish(t, p, msgs)
	require.Len(t, errs, len(msgs))
	for _, i := range []int{0, 2, 4} {
		assert.NoError(t, errs[i], "message %s is routable", msgs[i].ID)
	}
	for _, i := range []int{1, 3} {
		var re *rabbitoutbox.ReturnedError
		if assert.ErrorAs(t, errs[i], &re, "message %s", msgs[i].ID) {
			assert.Equal(t, rabbitoutbox.ReturnedError{Exchange: top.name, RoutingKey: "nowhere", Code: 312, Reason: "NO_ROUTE"}, *re)
		}
	}
	assert.Equal(t, []string{"1", "3", "5"}, ids(drainQueue(t, ch, top.name)))

	assert.Nil(t, publish(t, p, msgs[:1]), "the channel goes on")
	drainQueue(t, ch, top.name)

	// Across windows of confirms.
	many := messages(top.name, "w", 600)
	for i := 0; i < len(many); i += 50 {
		many[i].Topic = "nowhere"
	}
	errs = publish(t, p, many)
	require.Len(t, errs, len(many))
	var routed []string
	for i, err := range errs {
		if i%50 == 0 {
			assert.IsType(t, (*rabbitoutbox.ReturnedError)(nil), err, "message %d", i)
			continue
		}
		assert.NoError(t, err, "message %d", i)
		routed = append(routed, many[i].ID)
	}
	assert.Equal(t, routed, ids(drainQueue(t, ch, top.name)))

	lax := dial(t, url, rabbitoutbox.WithExchange(top.name), rabbitoutbox.WithMandatory(false))
	assert.Nil(t, publish(t, lax, msgs), "without the mandatory flag the broker confirms and drops")
	assert.Equal(t, []string{"1", "3", "5"}, ids(drainQueue(t, ch, top.name)))
}

func TestNackedMessagesFailAlone(t *testing.T) {
	url, ch := broker(t)
	top := declare(t, url, ch, false, amqp.Table{"x-max-length": int32(2), "x-overflow": "reject-publish"})
	p := dial(t, url)
	errs := publish(t, p, messages(top.name, "m", 4))
	require.Len(t, errs, 4)
	assert.NoError(t, errs[0])
	assert.NoError(t, errs[1])
	assert.ErrorIs(t, errs[2], rabbitoutbox.ErrNacked)
	assert.ErrorIs(t, errs[3], rabbitoutbox.ErrNacked)
	assert.Equal(t, []string{"m-000", "m-001"}, ids(drainQueue(t, ch, top.name)))
}

// A message counts as published only when its confirm came in before the
// Publisher's last look at the broker's returns: batches of unroutable
// messages, cut short by ctx at any moment while the broker answers, report
// none of them published.
func TestReturnedMessagesNeverPublishedWhenCtxEnds(t *testing.T) {
	url, ch := broker(t)
	top := declare(t, url, ch, false, nil)
	p := dial(t, url, rabbitoutbox.WithExchange(top.name))
	msgs := messages("nowhere", "m", 256)
	var whole time.Duration // the longest time a batch takes, to end ctx within
	for range 5 {
		start := time.Now()
		require.Len(t, p.Publish(context.Background(), msgs), len(msgs))
		whole = max(whole, time.Since(start))
	}
	for run := range 500 {
		timeout := rand.N(whole)
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		errs := p.Publish(ctx, msgs)
		cancel()
		require.Len(t, errs, len(msgs), "run %d, ctx of %v", run, timeout)
		for i, err := range errs {
			require.Error(t, err, "run %d, ctx of %v: message %d matches no queue", run, timeout, i)
		}
	}
}

// The Publisher checks an exchange before it first publishes to it on a
// channel: a message for one that does not exist fails alone, with the
// broker's error, and is not sent, in whichever window it is.
func TestMissingExchangeFailsAlone(t *testing.T) {
	url, ch := broker(t)
	top := declare(t, url, ch, false, nil)
	missing := "no-such-exchange-" + top.name
	byKey := rabbitoutbox.WithRouting(func(m outbox.Message) (string, string) {
		if m.Key == "bad" {
			return missing, m.Topic
		}
		return top.name, m.Topic
	})
	conn, err := amqp.Dial(url)
	require.NoError(t, err)
	defer conn.Close()
	p, err := rabbitoutbox.New(conn, byKey)
	require.NoError(t, err)
	defer p.Close()

	msgs := messages(top.name, "m", 600)
	bad := map[int]bool{0: true, 3: true, 4: true, 300: true, 599: true}
	for i := range bad {
		msgs[i].Key = "bad"
	}
	errs := publish(t, p, msgs)
	require.Len(t, errs, len(msgs))
	var want []string
	for i, err := range errs {
		if !bad[i] {
			assert.NoError(t, err, "message %d", i)
			want = append(want, msgs[i].ID)
			continue
		}
		var ae *amqp.Error
		if assert.ErrorAs(t, err, &ae, "message %d", i) {
			assert.Equal(t, amqp.NotFound, ae.Code, "message %d: %v", i, err)
		}
		assert.ErrorContains(t, err, missing, "message %d", i)
	}
	assert.Equal(t, want, ids(drainQueue(t, ch, top.name)), "every other message, once")

	// Through a relay: the others are published at their first attempt,
	// however few attempts a message has.
	db := servicetest.SQLite(t)
	require.NoError(t, outbox.New(db.DB, outbox.SQLite).Migrate(context.Background()))
	batch := messages(top.name, "r", 6)
	batch[2].Key = "bad"
	for i := range batch {
		batch[i].ID = ""
	}
	enqueue(t, db.DB, outbox.SQLite, batch...)
	relay := outbox.New(db.DB, outbox.SQLite).NewRelay(p, outbox.WithMaxAttempts(1))
	n, err := relay.Process(context.Background())
	require.NoError(t, err)
	assert.Equal(t, 5, n)
	assert.Equal(t, outbox.Stats{Published: 5, Failed: 1, Dead: 1}, relay.Stats())
	assert.Len(t, drainQueue(t, ch, top.name), 5)
}

// An exchange deleted after the Publisher checked it: the publish to it
// makes the broker close the channel, and the messages of the batch not
// confirmed by then fail with the broker's error. The next Publish opens a
// new channel, checks again, and fails that exchange's messages alone.
func TestExchangeDeletedAfterCheck(t *testing.T) {
	url, ch := broker(t)
	top := declare(t, url, ch, false, nil)
	gone := "deleted-" + top.name
	require.NoError(t, ch.ExchangeDeclare(gone, amqp.ExchangeDirect, false, false, false, false, nil))
	require.NoError(t, ch.QueueBind(top.name, top.name, gone, false, nil))
	p := dial(t, url, rabbitoutbox.WithRouting(func(m outbox.Message) (string, string) {
		if m.Key == "gone" {
			return gone, m.Topic
		}
		return top.name, m.Topic
	}))
	msgs := messages(top.name, "m", 6)
	msgs[2].Key = "gone"
	assert.Nil(t, publish(t, p, msgs), "both exchanges exist")
	drainQueue(t, ch, top.name)
	require.NoError(t, ch.ExchangeDelete(gone, false, false))

	errs := publish(t, p, msgs)
	require.Len(t, errs, len(msgs))
	got := ids(drainQueue(t, ch, top.name))
	for i, err := range errs {
		if err == nil {
			assert.Less(t, i, 2, "message %d: before the publish that closed the channel", i)
			assert.Contains(t, got, msgs[i].ID, "a message reported published is in the queue")
			continue
		}
		var ae *amqp.Error
		if assert.ErrorAs(t, err, &ae, "message %d", i) {
			assert.Equal(t, amqp.NotFound, ae.Code, "message %d: %v", i, err)
		}
	}
	assert.NotContains(t, got, msgs[2].ID)

	errs = publish(t, p, msgs)
	require.Len(t, errs, len(msgs))
	for i, err := range errs {
		if i == 2 {
			assert.ErrorContains(t, err, gone, "checked again on the new channel")
			continue
		}
		assert.NoError(t, err, "message %d", i)
	}
	assert.Len(t, drainQueue(t, ch, top.name), 5)
}

// New does no I/O: the first Publish opens the channel, and a Publisher on
// a closed connection fails every Publish.
func TestNewOpensOnFirstPublish(t *testing.T) {
	url, ch := broker(t)
	top := declare(t, url, ch, false, nil)
	conn, err := amqp.Dial(url)
	require.NoError(t, err)
	defer conn.Close()
	p, err := rabbitoutbox.New(conn, rabbitoutbox.WithExchange(top.name))
	require.NoError(t, err)
	defer p.Close()
	assert.Nil(t, publish(t, p, messages(top.name, "m", 2)))
	assert.Equal(t, []string{"m-000", "m-001"}, ids(drainQueue(t, ch, top.name)))

	conn.Close()
	errs := publish(t, p, messages(top.name, "dead", 2))
	assert.Equal(t, []error{rabbitoutbox.ErrConnectionClosed, rabbitoutbox.ErrConnectionClosed}, errs)

	late, err := rabbitoutbox.New(conn)
	require.NoError(t, err, "New does not use the connection")
	defer late.Close()
	errs = publish(t, late, messages(top.name, "late", 1))
	assert.Equal(t, []error{rabbitoutbox.ErrConnectionClosed}, errs)
}

// The connection drops while a batch waits for its confirms: every message
// fails though the broker has them all, and once the broker is back the
// same Publisher connects again.
func TestConnectionLostMidPublishFailsAllAndReconnects(t *testing.T) {
	url, ch := broker(t)
	top := declare(t, url, ch, false, nil)
	proxied, px := servicetest.ProxyURL(t, url, "5672")
	p := dial(t, proxied)
	require.Nil(t, publish(t, p, messages(top.name, "warm", 1)))
	drainQueue(t, ch, top.name)

	px.Pause()
	msgs := messages(top.name, "m", 50)
	result := make(chan []error)
	go func() { result <- p.Publish(context.Background(), msgs) }()
	waitDepth(t, ch, top.name, len(msgs))
	px.Cut()
	errs := <-result
	require.Len(t, errs, len(msgs))
	for i, err := range errs {
		assert.ErrorIs(t, err, rabbitoutbox.ErrUnconfirmed, "message %d was not confirmed", i)
	}

	errs = publish(t, p, msgs)
	require.Len(t, errs, len(msgs), "the broker is still away")
	assert.ErrorContains(t, errs[0], "rabbitoutbox: dial")

	px.Restore()
	assert.Nil(t, publish(t, p, msgs), "connected again")
	got := ids(drainQueue(t, ch, top.name))
	assert.Equal(t, append(msgIDs(msgs), msgIDs(msgs)...), got,
		"the unconfirmed batch, then the batch again: at least once")
}

func TestConcurrentPublishes(t *testing.T) {
	url, ch := broker(t)
	top := declare(t, url, ch, false, nil)
	p := dial(t, url)
	var wg sync.WaitGroup
	errs := make([][]error, 4)
	for g := range errs {
		wg.Go(func() { errs[g] = publish(t, p, messages(top.name, fmt.Sprint("g", g), 100)) })
	}
	wg.Wait()
	for g := range errs {
		assert.Nil(t, errs[g], "goroutine %d", g)
	}
	got := ids(drainQueue(t, ch, top.name))
	assert.Len(t, got, 400)
	seen := make(map[string]bool)
	for _, id := range got {
		assert.False(t, seen[id], "duplicate %s", id)
		seen[id] = true
	}
}

// makers are the two ways to make a Publisher, for the tests of both.
var makers = []struct {
	name string
	make func(t testing.TB, url string) *rabbitoutbox.Publisher
}{
	{"Dial", func(t testing.TB, url string) *rabbitoutbox.Publisher { return dial(t, url) }},
	{"New", func(t testing.TB, url string) *rabbitoutbox.Publisher {
		t.Helper()
		conn, err := amqp.Dial(url)
		require.NoError(t, err)
		t.Cleanup(func() { conn.CloseDeadline(time.Now().Add(waitFor)) })
		p, err := rabbitoutbox.New(conn)
		require.NoError(t, err)
		t.Cleanup(func() { p.Close() })
		return p
	}},
}

// result waits for a Publish running on another goroutine.
func result(t testing.TB, c <-chan []error, msgs []outbox.Message) []error {
	t.Helper()
	select {
	case errs := <-c:
		require.Len(t, errs, len(msgs))
		return errs
	case <-time.After(waitFor):
		t.Fatal("Publish has not returned")
		return nil
	}
}

// Close alone ends a Publish that waits for confirms: its messages fail
// as unconfirmed, closed, while the broker's answers are held back.
func TestCloseFailsPublishInProgress(t *testing.T) {
	for _, tt := range makers {
		t.Run(tt.name, func(t *testing.T) {
			url, ch := broker(t)
			top := declare(t, url, ch, false, nil)
			proxied, px := servicetest.ProxyURL(t, url, "5672")
			p := tt.make(t, proxied)
			require.Nil(t, publish(t, p, messages(top.name, "warm", 1)))
			drainQueue(t, ch, top.name)

			px.Pause() // no confirm comes
			msgs := messages(top.name, "m", 50)
			published := make(chan []error)
			go func() { published <- p.Publish(context.Background(), msgs) }()
			waitDepth(t, ch, top.name, len(msgs))
			closed := make(chan error)
			go func() { closed <- p.Close() }()
			for i, err := range result(t, published, msgs) {
				assert.ErrorIs(t, err, rabbitoutbox.ErrUnconfirmed, "message %d", i)
				assert.ErrorIs(t, err, rabbitoutbox.ErrClosed, "message %d", i)
				assert.EqualError(t, err, "rabbitoutbox: no confirm from the broker: publisher closed", "message %d", i)
			}
			px.Restore() // the broker's answer to Close
			assert.NoError(t, <-closed)
			assert.Equal(t, []error{rabbitoutbox.ErrClosed}, p.Publish(context.Background(), msgs[:1]))
		})
	}
}

// Close waits for a broker that does not answer no longer than its time
// bound; what it leaves waiting ends once the connection is gone.
func TestCloseIsBounded(t *testing.T) {
	for _, tt := range makers {
		t.Run(tt.name, func(t *testing.T) {
			url, ch := broker(t)
			top := declare(t, url, ch, false, nil)
			proxied, px := servicetest.ProxyURL(t, url, "5672")
			p := tt.make(t, proxied)
			require.Nil(t, publish(t, p, messages(top.name, "warm", 1)), "the channel is open")

			px.Pause()
			rabbitoutbox.SetCloseTimeout(p, 100*time.Millisecond)
			assert.ErrorIs(t, p.Close(), os.ErrDeadlineExceeded)
			assert.NoError(t, p.Close(), "a second Close")
			px.Cut()
			assertNoLeftovers(t, ownCode)
		})
	}
}

// Code whose goroutines a closed Publisher leaves none of.
const (
	ownCode     = "/contrib/rabbitoutbox." // not rabbitoutbox_test.
	libraryCode = "github.com/rabbitmq/amqp091-go."
)

// leftovers returns the stacks of the goroutines that run any of code.
func leftovers(code []string) []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var found []string
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		for _, c := range code {
			if strings.Contains(g, c) {
				found = append(found, g)
				break
			}
		}
	}
	return found
}

// assertNoLeftovers checks that no goroutine runs any of code, once those
// ending have ended.
func assertNoLeftovers(t testing.TB, code ...string) {
	t.Helper()
	if !assert.Eventually(t, func() bool { return len(leftovers(code)) == 0 }, waitFor, 10*time.Millisecond) {
		t.Logf("goroutines left:\n\n%s", strings.Join(leftovers(code), "\n\n"))
	}
}

// Close ends every goroutine of the Publisher, those that closed the
// channels Publish gave up on and those that opened or checked on a broker
// that did not answer in time included.
func TestCloseEndsEverything(t *testing.T) {
	url := servicetest.AMQPURL(t)
	conn, err := amqp.Dial(url)
	require.NoError(t, err)
	defer conn.Close()
	ch, err := conn.Channel()
	require.NoError(t, err)
	top := declare(t, url, ch, false, nil)
	proxied, px := servicetest.ProxyURL(t, url, "5672")
	p, err := rabbitoutbox.Dial(context.Background(), proxied, rabbitoutbox.WithRouting(func(m outbox.Message) (string, string) {
		return m.Key, m.Topic // the default exchange, unless the key names another
	}))
	require.NoError(t, err)
	require.Nil(t, publish(t, p, messages(top.name, "a", 3)))

	short := func(msgs []outbox.Message) []error {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		return p.Publish(ctx, msgs)
	}
	px.Pause()
	assert.Len(t, short(messages(top.name, "b", 3)), 3, "gives up on its confirms")
	assert.Len(t, short(messages(top.name, "c", 3)), 3, "gives up opening a channel")
	px.Restore()
	require.Nil(t, publish(t, p, messages(top.name, "d", 1)), "on a new channel")
	px.Pause()
	checked := messages(top.name, "e", 1)
	checked[0].Key = top.name
	assert.Len(t, short(checked), 1, "gives up checking the exchange")
	px.Restore()

	require.NoError(t, p.Close())
	assert.Equal(t, []error{rabbitoutbox.ErrClosed}, p.Publish(context.Background(), checked))
	require.NoError(t, conn.Close()) // the test's own: no connection is left
	assertNoLeftovers(t, ownCode, libraryCode)
}

// Dial gives up within ctx, or the URL's connection_timeout, on a broker
// that does not answer the handshake.
func TestDialHandshakeEnds(t *testing.T) {
	url, _ := broker(t)
	proxied, px := servicetest.ProxyURL(t, url, "5672")
	px.Pause()
	tests := []struct {
		name string
		opts []rabbitoutbox.Option
	}{
		{"own dialer", nil},
		{"dialer of WithDialConfig", []rabbitoutbox.Option{rabbitoutbox.WithDialConfig(amqp.Config{Dial: amqp.DefaultDial(time.Minute)})}},
	}
	for _, tt := range tests {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		_, err := rabbitoutbox.Dial(ctx, proxied, tt.opts...)
		cancel()
		assert.ErrorIs(t, err, context.DeadlineExceeded, tt.name)
	}

	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	_, err := rabbitoutbox.Dial(ctx, proxied+"?connection_timeout=100")
	require.Error(t, err)
	assert.NotErrorIs(t, err, context.DeadlineExceeded, "connection_timeout ends the handshake, not ctx: %v", err)
	assert.ErrorContains(t, err, "rabbitoutbox: dial")
}

func TestDialFails(t *testing.T) {
	url, _ := broker(t)
	proxied, px := servicetest.ProxyURL(t, url, "5672")
	px.Cut()
	_, err := rabbitoutbox.Dial(context.Background(), proxied)
	assert.ErrorContains(t, err, "rabbitoutbox: dial")

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = rabbitoutbox.Dial(ctx, url)
	assert.ErrorIs(t, err, context.Canceled)

	_, err = rabbitoutbox.Dial(context.Background(), "http://example.com/")
	assert.Error(t, err, "not an AMQP URL")
}

// databases are those the end-to-end tests run against: SQLite always,
// PostgreSQL when RESILIENCE_POSTGRES_DSN names one.
var databases = []struct {
	name    string
	open    func(testing.TB) *servicetest.DB
	dialect outbox.Dialect
}{
	{"sqlite", servicetest.SQLite, outbox.SQLite},
	{"postgres", servicetest.Postgres, outbox.Postgres},
}

func enqueue(t testing.TB, db *sql.DB, d outbox.Dialect, msgs ...outbox.Message) {
	t.Helper()
	tx, err := db.BeginTx(context.Background(), nil)
	require.NoError(t, err)
	require.NoError(t, outbox.New(db, d).Enqueue(context.Background(), tx, msgs...))
	require.NoError(t, tx.Commit())
}

// process runs r.Process until a pass publishes nothing.
func process(t testing.TB, r *outbox.Relay) int {
	t.Helper()
	total := 0
	for {
		n, err := r.Process(context.Background())
		require.NoError(t, err)
		if n == 0 {
			return total
		}
		total += n
	}
}

func TestRelayPublishesEveryMessageOnce(t *testing.T) {
	url, ch := broker(t)
	for _, database := range databases {
		t.Run(database.name, func(t *testing.T) {
			db := database.open(t)
			require.NoError(t, outbox.New(db.DB, database.dialect).Migrate(context.Background()))
			top := declare(t, url, ch, true, nil)
			var want []string
			for tx := range 5 {
				var msgs []outbox.Message
				for i := range 60 {
					msgs = append(msgs, outbox.Message{
						Topic: top.name, Key: fmt.Sprint("k", i%7), Payload: fmt.Appendf(nil, "%d/%d", tx, i),
						Headers: map[string]string{"tx": fmt.Sprint(tx)},
					})
				}
				enqueue(t, db.DB, database.dialect, msgs...)
				want = append(want, msgIDs(msgs)...)
			}
			p := dial(t, url, rabbitoutbox.WithExchange(top.name))
			relay := outbox.New(db.DB, database.dialect).NewRelay(p, outbox.WithBatchSize(64))
			assert.Equal(t, len(want), process(t, relay))
			assert.Equal(t, outbox.Stats{Published: int64(len(want))}, relay.Stats())

			got := drainQueue(t, ch, top.name)
			assert.Equal(t, want, ids(got), "each message once, in the order written")
			if len(got) == len(want) {
				m := rabbitoutbox.Decode(got[len(got)-1])
				assert.Equal(t, outbox.Message{ID: want[len(want)-1], Topic: top.name, Key: "k3", Payload: []byte("4/59"),
					Headers: map[string]string{"tx": "4"}}, m)
			}
			b, err := outbox.New(db.DB, database.dialect).Backlog(context.Background())
			require.NoError(t, err)
			assert.Equal(t, outbox.Backlog{}, b)
		})
	}
}

func TestRelayKeepsMessagesWhileBrokerIsDown(t *testing.T) {
	url, ch := broker(t)
	top := declare(t, url, ch, true, nil)
	db := servicetest.SQLite(t)
	require.NoError(t, outbox.New(db.DB, outbox.SQLite).Migrate(context.Background()))
	proxied, px := servicetest.ProxyURL(t, url, "5672")
	p := dial(t, proxied, rabbitoutbox.WithExchange(top.name))
	relay := outbox.New(db.DB, outbox.SQLite).NewRelay(p, outbox.WithRetryBackoff(time.Microsecond, time.Microsecond))

	msgs := messages(top.name, "m", 40)
	for i := range msgs {
		msgs[i].ID = ""
	}
	enqueue(t, db.DB, outbox.SQLite, msgs...)
	px.Cut()
	n, err := relay.Process(context.Background())
	require.NoError(t, err, "a broker outage is the messages' failure, not the relay's")
	assert.Zero(t, n)
	assert.Equal(t, outbox.Stats{Failed: 40}, relay.Stats())
	b, err := outbox.New(db.DB, outbox.SQLite).Backlog(context.Background())
	require.NoError(t, err)
	assert.Equal(t, int64(40), b.Pending, "nothing lost")
	assert.Zero(t, depth(t, ch, top.name))

	px.Restore()
	published := 0 // once the microsecond backoff has passed
	for deadline := time.Now().Add(waitFor); published < 40 && time.Now().Before(deadline); {
		published += process(t, relay)
	}
	assert.Equal(t, 40, published)
	assert.Equal(t, msgIDs(msgs), ids(drainQueue(t, ch, top.name)), "every message, once, after recovery")
	b, err = outbox.New(db.DB, outbox.SQLite).Backlog(context.Background())
	require.NoError(t, err)
	assert.Equal(t, outbox.Backlog{}, b)
}

func TestEncode(t *testing.T) {
	m := outbox.Message{ID: "id-1", Topic: "orders", Key: "o-1", Payload: []byte("{}"), Headers: map[string]string{"trace": "t"}}
	tests := []struct {
		name         string
		opts         []rabbitoutbox.Option
		msg          outbox.Message
		exchange     string
		key          string
		mode         uint8
		contentType  string
		headers      amqp.Table
		wantErr      error
		wantErrField string
	}{
		{name: "defaults", msg: m, key: "orders", mode: amqp.Persistent,
			headers: amqp.Table{"trace": "t", rabbitoutbox.KeyHeader: "o-1"}},
		{name: "exchange, transient, content type", msg: m,
			opts:     []rabbitoutbox.Option{rabbitoutbox.WithExchange("events"), rabbitoutbox.WithPersistent(false), rabbitoutbox.WithContentType("application/json")},
			exchange: "events", key: "orders", mode: amqp.Transient, contentType: "application/json",
			headers: amqp.Table{"trace": "t", rabbitoutbox.KeyHeader: "o-1"}},
		{name: "routing by topic and key", msg: m,
			opts:     []rabbitoutbox.Option{rabbitoutbox.WithExchange("ignored"), rabbitoutbox.WithRouting(func(m outbox.Message) (string, string) { return m.Topic, m.Key })},
			exchange: "orders", key: "o-1", mode: amqp.Persistent,
			headers: amqp.Table{"trace": "t", rabbitoutbox.KeyHeader: "o-1"}},
		{name: "the last of WithRouting and WithExchange wins", msg: m,
			opts:     []rabbitoutbox.Option{rabbitoutbox.WithRouting(func(m outbox.Message) (string, string) { return m.Topic, m.Key }), rabbitoutbox.WithExchange("events")},
			exchange: "events", key: "orders", mode: amqp.Persistent,
			headers: amqp.Table{"trace": "t", rabbitoutbox.KeyHeader: "o-1"}},
		{name: "no key drops a key header", msg: outbox.Message{Topic: "t", Headers: map[string]string{rabbitoutbox.KeyHeader: "x"}},
			key: "t", mode: amqp.Persistent, headers: amqp.Table{}},
		{name: "nothing to carry", msg: outbox.Message{Topic: "t"}, key: "t", mode: amqp.Persistent},
		{name: "long header name", msg: outbox.Message{Topic: "t", Headers: map[string]string{strings.Repeat("h", 256): "v"}},
			wantErr: rabbitoutbox.ErrFieldTooLong, wantErrField: "header name"},
		{name: "long routing key", msg: outbox.Message{Topic: strings.Repeat("t", 256)},
			wantErr: rabbitoutbox.ErrFieldTooLong, wantErrField: "routing key"},
		{name: "long ID", msg: outbox.Message{ID: strings.Repeat("i", 256), Topic: "t"},
			wantErr: rabbitoutbox.ErrFieldTooLong, wantErrField: "ID"},
		{name: "long routed exchange", msg: m,
			opts:    []rabbitoutbox.Option{rabbitoutbox.WithRouting(func(outbox.Message) (string, string) { return strings.Repeat("x", 256), "" })},
			wantErr: rabbitoutbox.ErrFieldTooLong, wantErrField: "exchange"},
	}
	for _, tt := range tests {
		exchange, key, pub, err := rabbitoutbox.Encode(tt.msg, tt.opts...)
		if tt.wantErr != nil {
			assert.ErrorIs(t, err, tt.wantErr, tt.name)
			assert.ErrorContains(t, err, tt.wantErrField, tt.name)
			continue
		}
		require.NoError(t, err, tt.name)
		assert.Equal(t, tt.exchange, exchange, tt.name)
		assert.Equal(t, tt.key, key, tt.name)
		assert.Equal(t, tt.mode, pub.DeliveryMode, tt.name)
		assert.Equal(t, tt.contentType, pub.ContentType, tt.name)
		assert.Equal(t, tt.headers, pub.Headers, tt.name)
		assert.Equal(t, tt.msg.ID, pub.MessageId, tt.name)
		assert.Equal(t, tt.msg.Payload, pub.Body, tt.name)
	}
}

// delivery is what a consumer gets for a publishing.
func delivery(key string, p amqp.Publishing) amqp.Delivery {
	return amqp.Delivery{RoutingKey: key, MessageId: p.MessageId, Headers: p.Headers, Body: p.Body}
}

func FuzzEncodeDecode(f *testing.F) {
	f.Add("id", "topic", "key", []byte("payload"), "h", "v")
	f.Add("", "t", "", []byte(nil), rabbitoutbox.KeyHeader, "v")
	f.Fuzz(func(t *testing.T, id, topic, key string, payload []byte, hk, hv string) {
		m := outbox.Message{ID: id, Topic: topic, Key: key, Payload: payload, Headers: map[string]string{hk: hv}}
		_, rk, pub, err := rabbitoutbox.Encode(m)
		if len(id) > 255 || len(topic) > 255 || len(hk) > 255 {
			assert.ErrorIs(t, err, rabbitoutbox.ErrFieldTooLong)
			return
		}
		require.NoError(t, err)
		require.NoError(t, pub.Headers.Validate())
		back := rabbitoutbox.Decode(delivery(rk, pub))
		want := m
		want.Headers = map[string]string{hk: hv}
		delete(want.Headers, rabbitoutbox.KeyHeader)
		if len(want.Headers) == 0 {
			want.Headers = nil
		}
		assert.Equal(t, want.ID, back.ID)
		assert.Equal(t, want.Topic, back.Topic)
		assert.Equal(t, want.Key, back.Key)
		assert.Equal(t, want.Headers, back.Headers)
		assert.True(t, bytes.Equal(want.Payload, back.Payload))
	})
}

func TestBadOptionsPanic(t *testing.T) {
	assert.PanicsWithValue(t, "rabbitoutbox: WithRouting: nil f", func() { rabbitoutbox.WithRouting(nil) })
	assert.PanicsWithValue(t, "rabbitoutbox: WithDialConfig: want cfg.Recovery nil; the Publisher reconnects by itself",
		func() { rabbitoutbox.WithDialConfig(amqp.Config{Recovery: &amqp.Recovery{}}) })
	assert.PanicsWithValue(t, "rabbitoutbox: New: nil connection", func() { rabbitoutbox.New(nil) })
	assert.PanicsWithValue(t, "rabbitoutbox: New: WithDialConfig is for Dial; New's connection is made",
		func() { rabbitoutbox.New(&amqp.Connection{}, rabbitoutbox.WithDialConfig(amqp.Config{})) })
	assert.PanicsWithValue(t, "rabbitoutbox: New: nil Option", func() { rabbitoutbox.New(&amqp.Connection{}, nil) })
	assert.PanicsWithValue(t, "rabbitoutbox: Dial: nil Option",
		func() { rabbitoutbox.Dial(context.Background(), "amqp://127.0.0.1:1/", nil) })
	assert.PanicsWithValue(t, "rabbitoutbox: Encode: nil Option", func() { rabbitoutbox.Encode(outbox.Message{}, nil) })
}

func TestZeroPublisherPanics(t *testing.T) {
	var p rabbitoutbox.Publisher
	const want = "rabbitoutbox: zero Publisher; use Dial or New"
	assert.PanicsWithValue(t, want, func() { p.Publish(context.Background(), nil) })
	assert.PanicsWithValue(t, want, func() { p.Close() })
}

// Names that come from configuration are errors of Dial, New and Encode
// when AMQP cannot carry them, not panics.
func TestLongOptionValuesAreErrors(t *testing.T) {
	long := strings.Repeat("x", 256)
	tests := []struct {
		name string
		opt  rabbitoutbox.Option
		want string
	}{
		{"WithExchange", rabbitoutbox.WithExchange(long), "WithExchange of 256 bytes"},
		{"WithContentType", rabbitoutbox.WithContentType(long), "WithContentType of 256 bytes"},
	}
	for _, tt := range tests {
		_, err := rabbitoutbox.Dial(context.Background(), "amqp://127.0.0.1:1/", tt.opt)
		assert.ErrorIs(t, err, rabbitoutbox.ErrFieldTooLong, "Dial, %s", tt.name)
		assert.ErrorContains(t, err, tt.want, "Dial")
		_, err = rabbitoutbox.New(&amqp.Connection{}, tt.opt)
		assert.ErrorIs(t, err, rabbitoutbox.ErrFieldTooLong, "New, %s", tt.name)
		assert.ErrorContains(t, err, tt.want, "New")
		_, _, _, err = rabbitoutbox.Encode(outbox.Message{Topic: "t"}, tt.opt)
		assert.ErrorIs(t, err, rabbitoutbox.ErrFieldTooLong, "Encode, %s", tt.name)
		assert.ErrorContains(t, err, tt.want, "Encode")
	}
	_, _, pub, err := rabbitoutbox.Encode(outbox.Message{Topic: "t"}, rabbitoutbox.WithExchange(long[:255]), rabbitoutbox.WithContentType(long[:255]))
	assert.NoError(t, err, "255 bytes")
	assert.Equal(t, long[:255], pub.ContentType)
}

func TestErrors(t *testing.T) {
	err := error(&rabbitoutbox.ReturnedError{Exchange: "events", RoutingKey: "orders", Code: 312, Reason: "NO_ROUTE"})
	assert.EqualError(t, err, `rabbitoutbox: returned by the broker: 312 NO_ROUTE (exchange "events", routing key "orders")`)
	assert.False(t, errors.Is(err, rabbitoutbox.ErrNacked))
}
