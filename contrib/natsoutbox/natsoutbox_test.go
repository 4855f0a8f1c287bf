package natsoutbox_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience/contrib/natsoutbox"
	"github.com/resilience-go/resilience/internal/servicetest"
	"github.com/resilience-go/resilience/outbox"
)

const setupTimeout = 10 * time.Second

// connect returns a connection to the NATS server of RESILIENCE_NATS_URL and
// its JetStream handle, closed when the test ends.
func connect(t testing.TB) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	url := servicetest.NATSURL(t)
	nc, err := nats.Connect(url)
	require.NoError(t, err, "connect to %s", url)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	return nc, js
}

// newStream creates a stream of the test's own that takes the subjects
// name.>, with the given changes to its configuration, and deletes it when
// the test ends. It returns the stream and its name.
func newStream(t testing.TB, js jetstream.JetStream, configure ...func(*jetstream.StreamConfig)) (jetstream.Stream, string) {
	t.Helper()
	name := servicetest.UniqueName(t)
	cfg := jetstream.StreamConfig{
		Name:       name,
		Subjects:   []string{name + ".>"},
		Storage:    jetstream.MemoryStorage,
		Duplicates: time.Minute,
	}
	for _, f := range configure {
		f(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	s, err := js.CreateStream(ctx, cfg)
	require.NoError(t, err, "create stream %s", name)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
		defer cancel()
		if err := js.DeleteStream(ctx, name); err != nil {
			t.Errorf("delete stream %s: %v", name, err)
		}
	})
	return s, name
}

// stored returns the messages of stream s, in order.
func stored(t testing.TB, s jetstream.Stream) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	info, err := s.Info(ctx)
	require.NoError(t, err)
	var msgs []*jetstream.RawStreamMsg
	if info.State.Msgs == 0 {
		return nil
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		require.NoError(t, err, "message %d", seq)
		msgs = append(msgs, m)
	}
	return msgs
}

// storedIDs returns the Nats-Msg-Id of each message of stream s, in order.
func storedIDs(t testing.TB, s jetstream.Stream) []string {
	t.Helper()
	var ids []string
	for _, m := range stored(t, s) {
		ids = append(ids, m.Header.Get(jetstream.MsgIDHeader))
	}
	return ids
}

// publishCtx returns the context for a test's calls to Publish: it ends
// after a minute, so that a lost acknowledgement fails the test instead of
// hanging it.
func publishCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// respond subscribes f to subject, on a connection of its own, until the
// test ends: something other than a stream that takes the subject. f
// receives the messages one at a time, in order, and answers them or not.
func respond(t *testing.T, subject string, f nats.MsgHandler) {
	t.Helper()
	nc, _ := connect(t)
	_, err := nc.Subscribe(subject, f)
	require.NoError(t, err)
	require.NoError(t, nc.Flush())
}

// connectThroughProxy returns a connection to the NATS server through a
// proxy that the test can cut, with the proxy. The connection reconnects
// every few milliseconds, and closes when the test ends.
func connectThroughProxy(t *testing.T) (*nats.Conn, jetstream.JetStream, *servicetest.Proxy) {
	t.Helper()
	proxied, proxy := servicetest.ProxyURL(t, servicetest.NATSURL(t), "4222")
	nc, err := nats.Connect(proxied,
		nats.MaxReconnects(-1), nats.ReconnectWait(10*time.Millisecond), nats.IgnoreDiscoveredServers())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	return nc, js, proxy
}

func TestBatchArrivesIntactAndInOrder(t *testing.T) {
	t.Parallel()
	_, js := connect(t)
	s, name := newStream(t, js)
	msgs := []outbox.Message{
		{ID: "m1", Topic: name + ".orders", Key: "o-1", Payload: []byte(`{"id":1}`),
			Headers: map[string]string{"Trace-Id": "abc", "Content-Type": "application/json"}},
		{ID: "m2", Topic: name + ".orders", Key: "o-2", Payload: []byte(`{"id":2}`)},
		{ID: "m3", Topic: name + ".audit"},
		{ID: "m4", Topic: name + ".orders", Key: "o-1", Payload: []byte("\x00binary\r\n\xff")},
	}
	pub := natsoutbox.New(js)
	assert.Nil(t, pub.Publish(publishCtx(t), msgs))
	assert.Nil(t, pub.Publish(publishCtx(t), nil), "an empty batch")

	got := stored(t, s)
	require.Len(t, got, len(msgs))
	for i, m := range got {
		want := msgs[i]
		assert.Equal(t, want.Topic, m.Subject, "message %s", want.ID)
		assert.Equal(t, string(want.Payload), string(m.Data), "message %s", want.ID)
		assert.Equal(t, want.ID, m.Header.Get(jetstream.MsgIDHeader), "message %s", want.ID)
		assert.Equal(t, want.Key, m.Header.Get(natsoutbox.KeyHeader), "message %s", want.ID)
		for k, v := range want.Headers {
			assert.Equal(t, v, m.Header.Get(k), "message %s header %s", want.ID, k)
		}
	}
	assert.NotContains(t, got[2].Header, natsoutbox.KeyHeader, "a message without a key has no key header")
}

// A responder holds the messages until it has three, or the last, and then
// answers them: the publisher keeps three unanswered, never more.
func TestManyMessagesThroughASmallWindow(t *testing.T) {
	t.Parallel()
	nc, js := connect(t)
	subject := servicetest.UniqueName(t) + ".t"
	const n, window = 100, 3
	var msgs []outbox.Message
	var ids []string
	for i := range n {
		id := "m" + strconv.Itoa(i)
		msgs = append(msgs, outbox.Message{ID: id, Topic: subject, Payload: []byte(id)})
		ids = append(ids, id)
	}

	var (
		mu         sync.Mutex
		got        []string // the payloads received, in order
		held       []*nats.Msg
		answered   uint64
		maxOut     uint64 // the most messages sent and not yet answered
		respondErr error
	)
	base := nc.Stats().OutMsgs
	respond(t, subject, func(m *nats.Msg) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, string(m.Data))
		held = append(held, m)
		// The publisher may send a message only once it has the answer to
		// the one three before it. Its connection counts a message as sent
		// when Publish hands it over, so the count never lags behind.
		maxOut = max(maxOut, nc.Stats().OutMsgs-base-answered)
		if len(held) < window && len(got) < n {
			return
		}
		for _, h := range held {
			answered++
			respondErr = errors.Join(respondErr, h.Respond([]byte(`{"stream":"S", "seq":1}`)))
		}
		held = held[:0]
	})

	pub := natsoutbox.New(js, natsoutbox.WithMaxInFlight(window))
	assert.Nil(t, pub.Publish(publishCtx(t), msgs))
	mu.Lock()
	defer mu.Unlock()
	require.NoError(t, respondErr)
	assert.Equal(t, ids, got, "all, in order")
	assert.Equal(t, uint64(window), maxOut, "three at a time: %d unanswered at most", maxOut)
}

func TestSubjectMappingAndExpectedStream(t *testing.T) {
	t.Parallel()
	_, js := connect(t)
	s, name := newStream(t, js)
	prefix := natsoutbox.WithSubject(func(topic string) string { return name + "." + topic })
	msg := outbox.Message{ID: "m1", Topic: "orders.created", Payload: []byte("x")}

	assert.Nil(t, natsoutbox.New(js, prefix, natsoutbox.WithExpectStream(name)).Publish(publishCtx(t), []outbox.Message{msg}))
	got := stored(t, s)
	require.Len(t, got, 1)
	assert.Equal(t, name+".orders.created", got[0].Subject)

	msg.ID = "m2"
	errs := natsoutbox.New(js, prefix, natsoutbox.WithExpectStream("elsewhere")).Publish(publishCtx(t), []outbox.Message{msg})
	require.Len(t, errs, 1)
	var apiErr *jetstream.APIError
	if assert.ErrorAs(t, errs[0], &apiErr) {
		assert.Equal(t, 400, apiErr.Code, "the stream refuses a message meant for another: %v", apiErr)
	}
	assert.Len(t, stored(t, s), 1)
}

// A message with no ID, key or headers carries the expected stream all the
// same.
func TestExpectedStreamOfABareMessage(t *testing.T) {
	t.Parallel()
	_, js := connect(t)
	s, name := newStream(t, js)
	bare := []outbox.Message{{Topic: name + ".t"}}

	assert.Nil(t, natsoutbox.New(js, natsoutbox.WithExpectStream(name)).Publish(publishCtx(t), bare))
	errs := natsoutbox.New(js, natsoutbox.WithExpectStream("elsewhere")).Publish(publishCtx(t), bare)
	require.Len(t, errs, 1)
	var apiErr *jetstream.APIError
	if assert.ErrorAs(t, errs[0], &apiErr) {
		assert.Equal(t, jetstream.ErrorCode(10060), apiErr.ErrorCode, "expected stream does not match: %v", apiErr)
	}
	got := stored(t, s)
	require.Len(t, got, 1)
	assert.Equal(t, name, got[0].Header.Get(jetstream.ExpectedStreamHeader))
	assert.Empty(t, got[0].Header.Get(jetstream.MsgIDHeader))
	assert.Nil(t, bare[0].Headers, "the message is left as it was")
}

func TestDuplicateIDIsStoredOnce(t *testing.T) {
	t.Parallel()
	_, js := connect(t)
	s, name := newStream(t, js)
	pub := natsoutbox.New(js)
	a := outbox.Message{ID: "a", Topic: name + ".t", Payload: []byte("first")}
	b := outbox.Message{ID: "b", Topic: name + ".t", Payload: []byte("second")}
	again := a
	again.Payload = []byte("first, published again")

	assert.Nil(t, pub.Publish(publishCtx(t), []outbox.Message{a, a, b}), "a duplicate in the batch is acknowledged")
	assert.Nil(t, pub.Publish(publishCtx(t), []outbox.Message{again}), "and so is one in a later batch")

	got := stored(t, s)
	require.Len(t, got, 2)
	assert.Equal(t, "a", got[0].Header.Get(jetstream.MsgIDHeader))
	assert.Equal(t, "first", string(got[0].Data), "the first copy is the one kept")
	assert.Equal(t, "b", got[1].Header.Get(jetstream.MsgIDHeader))
}

func TestRefusedMessagesFailAloneAndTheRestArrive(t *testing.T) {
	t.Parallel()
	_, js := connect(t)
	s, name := newStream(t, js, func(c *jetstream.StreamConfig) { c.MaxMsgSize = 256 })
	pub := natsoutbox.New(js)
	nowhere := servicetest.UniqueName(t) + ".t" // no stream takes it
	msgs := []outbox.Message{
		{ID: "ok-1", Topic: name + ".t", Payload: []byte("fine")},
		{ID: "no-stream", Topic: nowhere, Payload: []byte("lost")},
		{ID: "ok-2", Topic: name + ".t", Payload: []byte("fine")},
		{ID: "too-large", Topic: name + ".t", Payload: make([]byte, 1024)},
		{ID: "bad-subject", Topic: name + ". t", Payload: []byte("x")},
		{ID: "ok-3", Topic: name + ".t", Payload: []byte("fine")},
	}
	errs := pub.Publish(publishCtx(t), msgs)
	require.Len(t, errs, len(msgs))
	assert.NoError(t, errs[0])
	assert.ErrorIs(t, errs[1], jetstream.ErrNoStreamResponse)
	assert.NoError(t, errs[2])
	var apiErr *jetstream.APIError
	if assert.ErrorAs(t, errs[3], &apiErr, "the stream refuses a message over its size limit") {
		assert.Equal(t, jetstream.JSErrCodeStreamMessageExceedsMaximum, apiErr.ErrorCode, "%v", apiErr)
	}
	assert.ErrorIs(t, errs[4], nats.ErrBadSubject)
	assert.NoError(t, errs[5])
	for i, err := range errs {
		if err != nil {
			assert.Contains(t, err.Error(), "natsoutbox: publish to ", "message %s", msgs[i].ID)
		}
	}
	assert.Equal(t, []string{"ok-1", "ok-2", "ok-3"}, storedIDs(t, s))
}

// expiring is a context whose deadline passes when expire is called, or
// after a minute at the latest: Done closes, and Err returns
// context.DeadlineExceeded. It has no values.
type expiring struct {
	context.Context // context.Background()
	done            chan struct{}
	expire          func()
}

func newExpiring(t *testing.T) *expiring {
	c := &expiring{Context: context.Background(), done: make(chan struct{})}
	c.expire = sync.OnceFunc(func() { close(c.done) })
	timer := time.AfterFunc(time.Minute, c.expire)
	t.Cleanup(func() { timer.Stop() })
	return c
}

func (c *expiring) Done() <-chan struct{} { return c.done }

func (c *expiring) Err() error {
	select {
	case <-c.done:
		return context.DeadlineExceeded
	default:
		return nil
	}
}

func TestContextEndsPublishAndLeavesNothingBehind(t *testing.T) {
	t.Parallel()
	nc, js := connect(t)
	s, name := newStream(t, js)
	pub := natsoutbox.New(js, natsoutbox.WithMaxInFlight(1)) // one at a time: the order of events is known
	msg := func(id, topic string) outbox.Message {
		return outbox.Message{ID: id, Topic: topic, Payload: []byte(id)}
	}

	// Warm up the connection, then count.
	require.Nil(t, pub.Publish(publishCtx(t), []outbox.Message{msg("warm-up", name+".t")}))
	subs := nc.NumSubscriptions()

	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancelCause(publishCtx(t))
		errShutdown := errors.New("shutting down")
		// ok-1 and ok-2 are acknowledged, the third comes here and waits.
		blackHole := servicetest.UniqueName(t)
		respond(t, blackHole+".>", func(*nats.Msg) { cancel(errShutdown) })
		errs := pub.Publish(ctx, []outbox.Message{
			msg("ok-1", name+".t"), msg("ok-2", name+".t"), msg("unanswered", blackHole+".t"), msg("unsent", name+".t"),
		})
		require.Len(t, errs, 4)
		assert.NoError(t, errs[0])
		assert.NoError(t, errs[1])
		assert.ErrorIs(t, errs[2], errShutdown, "the cause of the cancellation")
		assert.ErrorContains(t, errs[2], "no acknowledgement")
		assert.ErrorIs(t, errs[3], errShutdown)
		assert.ErrorContains(t, errs[3], "not sent")
	})

	t.Run("deadline", func(t *testing.T) {
		ctx := newExpiring(t)
		var heard atomic.Bool
		blackHole := servicetest.UniqueName(t)
		respond(t, blackHole+".>", func(*nats.Msg) {
			heard.Store(true)
			ctx.expire()
		})
		errs := pub.Publish(ctx, []outbox.Message{msg("ok-3", name+".t"), msg("unanswered-2", blackHole+".t")})
		require.True(t, heard.Load(), "the deadline passed while unanswered-2 awaited its acknowledgement")
		require.Len(t, errs, 2)
		assert.NoError(t, errs[0])
		assert.ErrorIs(t, errs[1], context.DeadlineExceeded)
		assert.ErrorContains(t, errs[1], "no acknowledgement")
	})

	t.Run("already done", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		errs := pub.Publish(ctx, []outbox.Message{msg("never", name+".t")})
		require.Len(t, errs, 1)
		assert.ErrorIs(t, errs[0], context.Canceled)
		assert.ErrorContains(t, errs[0], "not sent")
	})

	assert.Equal(t, subs, nc.NumSubscriptions(), "no subscription for acknowledgements is left")
	assert.Equal(t, []string{"warm-up", "ok-1", "ok-2", "ok-3"}, storedIDs(t, s))
}

// A message answered twice, as when a subscriber that responds shares a
// stream's subject, is decided by its first answer: the second one neither
// changes its fate nor counts for another message. One message at a time,
// so that the second answers cannot fill the channel of the answers.
func TestOnlyTheFirstAnswerCounts(t *testing.T) {
	t.Parallel()
	_, js := connect(t)
	subject := servicetest.UniqueName(t) + ".t"
	const (
		ack     = `{"stream":"S", "seq":1}`
		refusal = `{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"},"stream":"S","seq":0}`
	)
	var mu sync.Mutex
	var respondErr error
	respond(t, subject, func(m *nats.Msg) {
		first, second := ack, refusal
		if string(m.Data) == "refused" {
			first, second = refusal, ack
		}
		err := errors.Join(m.Respond([]byte(first)), m.Respond([]byte(second)))
		mu.Lock()
		respondErr = errors.Join(respondErr, err)
		mu.Unlock()
	})
	var msgs []outbox.Message
	for i := range 8 {
		payload := "accepted"
		if i%2 == 1 {
			payload = "refused"
		}
		msgs = append(msgs, outbox.Message{ID: strconv.Itoa(i), Topic: subject, Payload: []byte(payload)})
	}

	errs := natsoutbox.New(js, natsoutbox.WithMaxInFlight(1)).Publish(publishCtx(t), msgs)
	require.Len(t, errs, len(msgs))
	for i, err := range errs {
		if string(msgs[i].Payload) == "accepted" {
			assert.NoError(t, err, "message %d", i)
			continue
		}
		var apiErr *jetstream.APIError
		if assert.ErrorAs(t, err, &apiErr, "message %d", i) {
			assert.Equal(t, jetstream.ErrorCode(10077), apiErr.ErrorCode, "message %d: %v", i, apiErr)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	assert.NoError(t, respondErr)
}

func TestConnectionLostWhileAwaitingAcknowledgements(t *testing.T) {
	t.Parallel()
	_, js := connect(t)
	s, name := newStream(t, js)
	nc, lost := connect(t) // the publisher's own connection
	blackHole := servicetest.UniqueName(t)
	respond(t, blackHole+".>", func(*nats.Msg) { nc.Close() }) // ok is acknowledged, the second waits
	pub := natsoutbox.New(lost, natsoutbox.WithMaxInFlight(1))
	ctx := publishCtx(t)
	errs := pub.Publish(ctx, []outbox.Message{
		{ID: "ok", Topic: name + ".t"}, {ID: "unanswered", Topic: blackHole + ".t"}, {ID: "unsent", Topic: name + ".t"},
	})
	require.Len(t, errs, 3)
	assert.NoError(t, errs[0])
	assert.ErrorIs(t, errs[1], natsoutbox.ErrNotConnected)
	assert.ErrorIs(t, errs[2], natsoutbox.ErrNotConnected)
	assert.NoError(t, ctx.Err(), "Publish returned when the connection closed, not when ctx ended")
	assert.Equal(t, []string{"ok"}, storedIDs(t, s))
}

// The network between the publisher and the server fails: the client
// notices, and Publish returns without waiting for ctx.
func TestConnectionCutWhileAwaitingAcknowledgements(t *testing.T) {
	t.Parallel()
	_, js := connect(t)
	s, name := newStream(t, js)
	nc, cut, proxy := connectThroughProxy(t)
	pub := natsoutbox.New(cut, natsoutbox.WithMaxInFlight(1))
	blackHole := servicetest.UniqueName(t)
	respond(t, blackHole+".>", func(*nats.Msg) { proxy.Cut() }) // ok is acknowledged, the second waits

	ctx := publishCtx(t)
	errs := pub.Publish(ctx, []outbox.Message{
		{ID: "ok", Topic: name + ".t"}, {ID: "unanswered", Topic: blackHole + ".t"}, {ID: "unsent", Topic: name + ".t"},
	})
	require.Len(t, errs, 3)
	assert.NoError(t, errs[0])
	assert.ErrorIs(t, errs[1], natsoutbox.ErrNotConnected)
	assert.ErrorContains(t, errs[1], "before the acknowledgement")
	assert.ErrorIs(t, errs[2], natsoutbox.ErrNotConnected)
	assert.ErrorContains(t, errs[2], "not sent")
	assert.NoError(t, ctx.Err(), "Publish returned when the connection was cut, not when ctx ended")

	// Once the client has reconnected, the same Publisher works again.
	reconnected := nc.StatusChanged(nats.CONNECTED)
	defer nc.RemoveStatusListener(reconnected)
	proxy.Restore()
	if nc.Status() != nats.CONNECTED {
		select {
		case <-reconnected:
		case <-ctx.Done():
			require.FailNow(t, "no reconnection", "status %v", nc.Status())
		}
	}
	assert.Nil(t, pub.Publish(ctx, []outbox.Message{{ID: "again", Topic: name + ".t"}}))
	assert.Equal(t, []string{"ok", "again"}, storedIDs(t, s))
}

// The connection closes while Publish sends a batch: the message being sent
// and those after it fail at once, and nothing more is tried.
func TestConnectionClosedWhileSending(t *testing.T) {
	t.Parallel()
	_, js := connect(t)
	s, name := newStream(t, js)
	nc, own := connect(t)
	var mapped []string
	subject := natsoutbox.WithSubject(func(topic string) string {
		mapped = append(mapped, topic)
		if topic == "t2" {
			nc.Close()
		}
		return name + "." + topic
	})
	pub := natsoutbox.New(own, subject, natsoutbox.WithMaxInFlight(1)) // t0 and t1 are acknowledged before t2 is sent
	var msgs []outbox.Message
	for i := range 5 {
		topic := "t" + strconv.Itoa(i)
		msgs = append(msgs, outbox.Message{ID: topic, Topic: topic})
	}

	errs := pub.Publish(publishCtx(t), msgs)
	require.Len(t, errs, len(msgs))
	assert.NoError(t, errs[0])
	assert.NoError(t, errs[1])
	for i := 2; i < len(msgs); i++ {
		assert.ErrorIs(t, errs[i], natsoutbox.ErrNotConnected, "message %d", i)
		assert.ErrorIs(t, errs[i], nats.ErrConnectionClosed, "message %d", i)
		assert.ErrorContains(t, errs[i], "not sent", "message %d", i)
	}
	assert.Equal(t, []string{"t0", "t1", "t2"}, mapped, "nothing is tried after t2")
	assert.Equal(t, []string{"t0", "t1"}, storedIDs(t, s))
}

// Publish ends, with its context or its connection, while the
// acknowledgements of all but the last message wait to be read: they
// count, and only the last message fails.
func TestAcknowledgementsThatCameCount(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// end ends the call, once the acknowledgements have come.
		end     func(t *testing.T, cancel context.CancelFunc, nc *nats.Conn, proxy *servicetest.Proxy)
		wantErr error
	}{
		{"context cancelled", func(_ *testing.T, cancel context.CancelFunc, _ *nats.Conn, _ *servicetest.Proxy) {
			cancel()
		}, context.Canceled},
		{"connection cut", func(t *testing.T, _ context.CancelFunc, nc *nats.Conn, proxy *servicetest.Proxy) {
			down := nc.StatusChanged(nats.DISCONNECTED, nats.RECONNECTING)
			defer nc.RemoveStatusListener(down)
			proxy.Cut()
			select {
			case <-down:
			case <-time.After(time.Minute):
				require.FailNow(t, "the client did not notice the cut")
			}
		}, natsoutbox.ErrNotConnected},
		{"connection closed", func(_ *testing.T, _ context.CancelFunc, nc *nats.Conn, _ *servicetest.Proxy) {
			nc.Close()
		}, natsoutbox.ErrNotConnected},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			nc, js, proxy := connectThroughProxy(t)
			base := servicetest.UniqueName(t)
			const answered = 10

			// The responder answers the messages but the last, then sends a
			// marker to the publisher's connection, which reads it after the
			// acknowledgements.
			markers, err := nc.SubscribeSync(base + ".marker")
			require.NoError(t, err)
			require.NoError(t, nc.Flush())
			var (
				mu         sync.Mutex
				n          int
				respondErr error
			)
			responder, _ := connect(t)
			_, err = responder.Subscribe(base+".t", func(m *nats.Msg) {
				mu.Lock()
				defer mu.Unlock()
				if n++; n > answered {
					return
				}
				respondErr = errors.Join(respondErr, m.Respond([]byte(`{"stream":"S", "seq":1}`)))
				if n == answered {
					respondErr = errors.Join(respondErr, responder.Publish(base+".marker", nil))
				}
			})
			require.NoError(t, err)
			require.NoError(t, responder.Flush())

			// Publish sends the batch without waiting: while it maps the
			// subject of the last message, the others have been sent, and
			// their acknowledgements come before the marker.
			ctx, cancel := context.WithCancel(publishCtx(t))
			defer cancel()
			subject := natsoutbox.WithSubject(func(topic string) string {
				if topic == "last" {
					_, err := markers.NextMsg(time.Minute)
					require.NoError(t, err, "the marker")
					tt.end(t, cancel, nc, proxy)
				}
				return base + ".t"
			})
			msgs := make([]outbox.Message, answered+1)
			for i := range msgs {
				msgs[i] = outbox.Message{ID: strconv.Itoa(i), Topic: "answered"}
			}
			msgs[answered].Topic = "last"

			errs := natsoutbox.New(js, subject).Publish(ctx, msgs)
			require.Len(t, errs, len(msgs))
			for i := range answered {
				assert.NoError(t, errs[i], "message %d", i)
			}
			assert.ErrorIs(t, errs[answered], tt.wantErr)
			mu.Lock()
			defer mu.Unlock()
			assert.NoError(t, respondErr)
		})
	}
}

func TestConcurrentPublishes(t *testing.T) {
	t.Parallel()
	_, js := connect(t)
	s, name := newStream(t, js)
	pub := natsoutbox.New(js)
	ctx := publishCtx(t)
	var wg sync.WaitGroup
	errs := make([][]error, 8)
	for g := range errs {
		wg.Go(func() {
			var msgs []outbox.Message
			for i := range 50 {
				msgs = append(msgs, outbox.Message{ID: fmt.Sprintf("g%d-%d", g, i), Topic: name + ".t"})
			}
			errs[g] = pub.Publish(ctx, msgs)
		})
	}
	wg.Wait()
	for g := range errs {
		assert.Nil(t, errs[g], "goroutine %d", g)
	}
	assert.Len(t, stored(t, s), 8*50)
}

// enqueue writes n messages to topic in transactions of 500, and returns
// their IDs.
func enqueue(t testing.TB, db *sql.DB, topic string, n int) []string {
	t.Helper()
	ctx := context.Background()
	ob := outbox.New(db, outbox.Postgres)
	var ids []string
	for start := 0; start < n; start += 500 {
		msgs := make([]outbox.Message, min(500, n-start))
		for i := range msgs {
			msgs[i] = outbox.Message{Topic: topic, Key: "k" + strconv.Itoa((start+i)%10), Payload: []byte(`{"n":` + strconv.Itoa(start+i) + `}`)}
		}
		tx, err := db.BeginTx(ctx, nil)
		require.NoError(t, err)
		require.NoError(t, ob.Enqueue(ctx, tx, msgs...))
		require.NoError(t, tx.Commit())
		for _, m := range msgs {
			ids = append(ids, m.ID)
		}
	}
	return ids
}

// drain runs r.Process until a pass publishes nothing, and returns how many
// messages it published.
func drain(t testing.TB, r *outbox.Relay) int {
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

func backlog(t testing.TB, db *sql.DB) outbox.Backlog {
	t.Helper()
	b, err := outbox.New(db, outbox.Postgres).Backlog(context.Background())
	require.NoError(t, err)
	return b
}

func TestRelayFromPostgresPublishesEachMessageOnce(t *testing.T) {
	t.Parallel()
	db := servicetest.Postgres(t)
	_, js := connect(t)
	s, name := newStream(t, js)
	require.NoError(t, outbox.New(db.DB, outbox.Postgres).Migrate(context.Background()))
	const n = 1000
	ids := enqueue(t, db.DB, name+".orders", n)

	pub := natsoutbox.New(js)
	relay := outbox.New(db.DB, outbox.Postgres).NewRelay(pub, outbox.WithBatchSize(128))
	assert.Equal(t, n, drain(t, relay))
	assert.Equal(t, outbox.Backlog{}, backlog(t, db.DB), "the outbox is empty")
	assert.ElementsMatch(t, ids, storedIDs(t, s), "every message, once")

	// A relay that published a batch and died before it could delete it
	// publishes it again: the stream keeps one copy.
	again := make([]outbox.Message, 100)
	for i := range again {
		again[i] = outbox.Message{ID: ids[i], Topic: name + ".orders"}
	}
	assert.Nil(t, pub.Publish(publishCtx(t), again))
	info, err := s.Info(context.Background())
	require.NoError(t, err)
	assert.Equal(t, uint64(n), info.State.Msgs)
}

// closedPort returns the address of a TCP port on which nothing listens.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

func TestBrokerDownKeepsMessagesUntilItIsBack(t *testing.T) {
	t.Parallel()
	db := servicetest.Postgres(t)
	_, js := connect(t)
	s, name := newStream(t, js)
	require.NoError(t, outbox.New(db.DB, outbox.Postgres).Migrate(context.Background()))
	const n = 20
	ids := enqueue(t, db.DB, name+".orders", n)

	closed, err := nats.Connect(servicetest.NATSURL(t))
	require.NoError(t, err)
	closed.Close()
	unreachable, err := nats.Connect("nats://"+closedPort(t), nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1))
	require.NoError(t, err)
	t.Cleanup(unreachable.Close)

	tests := []struct {
		name string
		nc   *nats.Conn
	}{
		{"closed connection", closed},
		{"server unreachable", unreachable},
	}
	for i, tt := range tests {
		down, err := jetstream.New(tt.nc)
		require.NoError(t, err)
		pub := natsoutbox.New(down)
		errs := pub.Publish(publishCtx(t), []outbox.Message{{ID: "x", Topic: name + ".orders"}, {ID: "y", Topic: name + ".orders"}})
		require.Len(t, errs, 2, tt.name)
		assert.ErrorIs(t, errs[0], natsoutbox.ErrNotConnected, tt.name)
		assert.ErrorIs(t, errs[1], natsoutbox.ErrNotConnected, tt.name)

		relay := outbox.New(db.DB, outbox.Postgres).NewRelay(pub, outbox.WithRetryBackoff(time.Microsecond, time.Microsecond))
		published, err := relay.Process(context.Background())
		require.NoError(t, err, tt.name)
		assert.Zero(t, published, tt.name)
		assert.Equal(t, outbox.Stats{Failed: n}, relay.Stats(), tt.name)
		assert.Equal(t, int64(n), backlog(t, db.DB).Pending, "%s: every message is kept", tt.name)
		dead, err := outbox.New(db.DB, outbox.Postgres).ListDead(context.Background(), n)
		require.NoError(t, err)
		assert.Empty(t, dead, tt.name)
		var attempts int
		require.NoError(t, db.QueryRow("SELECT MIN(attempts) FROM outbox_messages").Scan(&attempts))
		assert.Equal(t, i+1, attempts, "%s: each message has been tried once more", tt.name)
	}
	assert.Empty(t, stored(t, s))

	// The broker is back: the messages go out once their (microsecond)
	// backoff has passed.
	relay := outbox.New(db.DB, outbox.Postgres).NewRelay(natsoutbox.New(js))
	total := 0
	for deadline := time.Now().Add(setupTimeout); total < n && time.Now().Before(deadline); {
		total += drain(t, relay)
	}
	assert.Equal(t, n, total)
	assert.Equal(t, outbox.Backlog{}, backlog(t, db.DB))
	assert.ElementsMatch(t, ids, storedIDs(t, s))
}

func TestNewMsg(t *testing.T) {
	tests := []struct {
		name    string
		msg     outbox.Message
		headers nats.Header
	}{
		{"bare", outbox.Message{Topic: "t"}, nil},
		{"ID", outbox.Message{ID: "m1", Topic: "t"}, nats.Header{"Nats-Msg-Id": {"m1"}}},
		{"ID, key and headers", outbox.Message{ID: "m1", Topic: "t", Key: "k", Headers: map[string]string{"a": "1"}},
			nats.Header{"Nats-Msg-Id": {"m1"}, "Outbox-Key": {"k"}, "a": {"1"}}},
		{"ours win", outbox.Message{ID: "m1", Topic: "t", Key: "k", Headers: map[string]string{"Nats-Msg-Id": "other", "Outbox-Key": "other"}},
			nats.Header{"Nats-Msg-Id": {"m1"}, "Outbox-Key": {"k"}}},
		{"headers only", outbox.Message{Topic: "t", Headers: map[string]string{"a": "1"}}, nats.Header{"a": {"1"}}},
		{"no ID, none from the headers", outbox.Message{Topic: "t", Headers: map[string]string{"Nats-Msg-Id": "other", "a": "1"}},
			nats.Header{"a": {"1"}}},
	}
	for _, tt := range tests {
		m := natsoutbox.NewMsg("subject", tt.msg)
		assert.Equal(t, "subject", m.Subject, tt.name)
		assert.Equal(t, tt.headers, m.Header, tt.name)
		assert.Empty(t, m.Reply, tt.name)
	}
	payload := []byte("payload")
	assert.Equal(t, payload, natsoutbox.NewMsg("s", outbox.Message{Payload: payload}).Data)
}

func TestBadOptionsPanic(t *testing.T) {
	tests := []struct {
		want string
		f    func()
	}{
		{"natsoutbox: WithMaxInFlight(0): want n >= 1", func() { natsoutbox.WithMaxInFlight(0) }},
		{"natsoutbox: WithSubject: nil f", func() { natsoutbox.WithSubject(nil) }},
		{`natsoutbox: WithExpectStream(""): want a stream name`, func() { natsoutbox.WithExpectStream("") }},
		{`natsoutbox: WithExpectStream("a.b"): want a stream name`, func() { natsoutbox.WithExpectStream("a.b") }},
		{"natsoutbox: New: nil JetStream", func() { natsoutbox.New(nil) }},
		{"natsoutbox: New: nil js.Conn()", func() { natsoutbox.New(connOnly{}) }},
		{"natsoutbox: New: nil Option", func() { natsoutbox.New(connOnly{nc: new(nats.Conn)}, nil) }},
	}
	for _, tt := range tests {
		assert.PanicsWithValue(t, tt.want, tt.f)
	}
}

// connOnly is a JetStream that has only a connection, which New asks for.
type connOnly struct {
	jetstream.JetStream
	nc *nats.Conn
}

func (c connOnly) Conn() *nats.Conn { return c.nc }

func TestZeroPublisherPanics(t *testing.T) {
	var p natsoutbox.Publisher
	assert.PanicsWithValue(t, "natsoutbox: zero Publisher; use New", func() { p.Publish(context.Background(), nil) })
}
