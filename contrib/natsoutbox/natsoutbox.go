package natsoutbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/resilience-go/resilience/outbox"
)

// KeyHeader is the NATS header that carries [outbox.Message.Key].
const KeyHeader = "Outbox-Key"

// ErrNotConnected is the error, wrapped, of every message of a batch that
// [Publisher.Publish] could not see through because its connection was not
// connected: reconnecting, closed or draining when the call began, or lost
// while it sent the batch or before the acknowledgements came. Publish
// sends nothing more once the connection is lost: the rest of the batch
// fails at once.
var ErrNotConnected = errors.New("natsoutbox: not connected")

// Publisher publishes the messages of an [outbox.Relay] to NATS JetStream:
// it is an [outbox.Publisher]. Make one with [New]; the zero value is not
// usable: its methods panic. It is safe for concurrent use: each call to
// [Publisher.Publish] waits for its own acknowledgements.
type Publisher struct {
	nc     *nats.Conn
	cfg    config
	stream []string // the value of the Nats-Expected-Stream header, or nil
}

var _ outbox.Publisher = (*Publisher)(nil)

// New returns a Publisher that publishes through the connection of js,
// configured by opts. It panics if js, its connection or an option is nil.
func New(js jetstream.JetStream, opts ...Option) *Publisher {
	if js == nil {
		panic("natsoutbox: New: nil JetStream")
	}
	if js.Conn() == nil {
		panic("natsoutbox: New: nil js.Conn()")
	}
	cfg := defaultConfig()
	for _, o := range opts {
		if o == nil {
			panic("natsoutbox: New: nil Option")
		}
		o.apply(&cfg)
	}
	p := &Publisher{nc: js.Conn(), cfg: cfg}
	if cfg.stream != "" {
		p.stream = []string{cfg.stream}
	}
	return p
}

// NewMsg returns the NATS message that carries m to subject: m's payload,
// m's headers, m's ID, if any, in the [jetstream.MsgIDHeader] (Nats-Msg-Id)
// header and m's key, if any, in the [KeyHeader] header. Entries of
// m.Headers with either of these two names are left out. [Publisher.Publish]
// sends what NewMsg returns for each message.
func NewMsg(subject string, m outbox.Message) *nats.Msg {
	n := len(m.Headers)
	if m.ID != "" {
		n++
	}
	if m.Key != "" {
		n++
	}
	if n == 0 {
		return &nats.Msg{Subject: subject, Data: m.Payload}
	}
	h := make(nats.Header, n)
	values := make([]string, 0, n) // one array for all the values
	set := func(k, v string) {
		values = append(values, v)
		h[k] = values[len(values)-1 : len(values) : len(values)]
	}
	for k, v := range m.Headers {
		if k != jetstream.MsgIDHeader && k != KeyHeader {
			set(k, v)
		}
	}
	if m.ID != "" {
		set(jetstream.MsgIDHeader, m.ID)
	}
	if m.Key != "" {
		set(KeyHeader, m.Key)
	}
	return &nats.Msg{Subject: subject, Header: h, Data: m.Payload}
}

// Publish sends msgs to the subjects their topics map to (see
// [WithSubject]) without waiting between them, then waits for the stream's
// acknowledgement of each. It returns nil if every message was accepted,
// or a slice as long as msgs with each message's error (nil for those
// accepted).
//
// A message is accepted when a stream acknowledged it (a PubAck), which
// the stream does once a quorum of its replicas has stored the message, or
// once it has recognised its ID as a duplicate of one it stored within its
// duplicate window. A message fails when the stream refuses it (the error
// wraps the server's *[jetstream.APIError]: too large, limits reached, a
// wrong expected stream), when the client refuses it (a bad subject or
// header, the connection's payload limit), when the connection is not
// connected or is lost ([ErrNotConnected]), or when ctx is done before its
// acknowledgement came (the error wraps ctx's cause). A message whose
// acknowledgement did not come may have been stored all the same: the
// relay publishes it again, and the stream drops the copy if it comes
// within the duplicate window.
//
// When nothing at all is subscribed to a message's subject, the server says
// so at once, and the message fails with an error that wraps
// [jetstream.ErrNoStreamResponse]. When the subject has plain NATS
// subscribers but no stream, or a stream that does not acknowledge (NoAck),
// no acknowledgement comes, and the message fails only when ctx ends: ctx
// must therefore have a deadline, as the relay gives each call
// ([outbox.WithPublishTimeout]). The first answer to a message decides it:
// nothing but the stream should answer on its subjects.
//
// Publish returns once every message is accounted for; it starts no
// goroutine, and its subscription to the acknowledgements ends before it
// returns, so that none is left pending.
func (p *Publisher) Publish(ctx context.Context, msgs []outbox.Message) []error {
	if p.nc == nil {
		panic("natsoutbox: zero Publisher; use New")
	}
	if len(msgs) == 0 {
		return nil
	}
	b := batch{n: len(msgs)}
	if err := ctx.Err(); err != nil {
		b.failRest(0, fmt.Errorf("natsoutbox: not sent: %w", context.Cause(ctx)))
		return b.errs
	}
	status := p.nc.StatusChanged(nats.DISCONNECTED, nats.RECONNECTING, nats.CLOSED)
	defer p.nc.RemoveStatusListener(status)
	if s := p.nc.Status(); s != nats.CONNECTED {
		b.failRest(0, fmt.Errorf("%w: connection %v", ErrNotConnected, s))
		return b.errs
	}

	// Acknowledgements come to inbox.<index>. The stream answers each
	// message once, so the channel, with room for one answer per message,
	// never fills; the client would drop an answer it had no room for.
	inbox := p.nc.NewInbox() + "."
	reply := []byte(inbox)
	replies := make(chan *nats.Msg, len(msgs))
	sub, err := p.nc.ChanSubscribe(inbox+"*", replies)
	if err != nil {
		if connectionLost(err) {
			err = fmt.Errorf("%w: %w, not sent", ErrNotConnected, err)
		} else {
			err = fmt.Errorf("natsoutbox: subscribe to acknowledgements: %w", err)
		}
		b.failRest(0, err)
		return b.errs
	}
	defer sub.Unsubscribe() //nolint:errcheck // only fails on a closed connection, which drops it anyway

	acked := make([]bool, len(msgs))
	next, inFlight, done := 0, 0, 0
	// answer records r, if it is the first answer to a message of the batch.
	answer := func(r *nats.Msg) {
		i, err := strconv.Atoi(r.Subject[min(len(inbox), len(r.Subject)):])
		if err != nil || i < 0 || i >= next || acked[i] {
			return // not an answer to this batch, or a second one
		}
		acked[i] = true
		inFlight--
		done++
		if err := ackError(r); err != nil {
			b.fail(i, fmt.Errorf("natsoutbox: publish to %q: %w", p.cfg.subject(msgs[i].Topic), err))
		}
	}
	// abort takes the answers that have already come, so that no message
	// the stream acknowledged is reported as failed, then fails the
	// messages sent and not acknowledged with pending, and those not sent
	// with unsent.
	abort := func(pending, unsent error) []error {
	drain:
		for {
			select {
			case r := <-replies:
				answer(r)
			default:
				break drain
			}
		}
		b.failPending(acked, next, pending)
		b.failRest(next, unsent)
		return b.errs
	}
	for done < len(msgs) {
		for next < len(msgs) && inFlight < p.cfg.maxInFlight {
			subject := p.cfg.subject(msgs[next].Topic)
			m := NewMsg(subject, msgs[next])
			if p.stream != nil {
				if m.Header == nil {
					m.Header = make(nats.Header, 1)
				}
				m.Header[jetstream.ExpectedStreamHeader] = p.stream
			}
			reply = strconv.AppendInt(reply[:len(inbox)], int64(next), 10)
			m.Reply = string(reply)
			if err := p.nc.PublishMsg(m); err != nil {
				if connectionLost(err) {
					return abort(fmt.Errorf("%w: %w before the acknowledgement", ErrNotConnected, err),
						fmt.Errorf("%w: %w, not sent", ErrNotConnected, err))
				}
				b.fail(next, fmt.Errorf("natsoutbox: publish to %q: %w", subject, err))
				acked[next] = true
				done++
			} else {
				inFlight++
			}
			next++
		}
		if inFlight == 0 {
			continue
		}
		select {
		case r := <-replies:
			answer(r)
		case s := <-status:
			return abort(fmt.Errorf("%w: connection %v before the acknowledgement", ErrNotConnected, s),
				fmt.Errorf("%w: connection %v, not sent", ErrNotConnected, s))
		case <-ctx.Done():
			return abort(fmt.Errorf("natsoutbox: no acknowledgement: %w", context.Cause(ctx)),
				fmt.Errorf("natsoutbox: not sent: %w", context.Cause(ctx)))
		}
	}
	return b.errs
}

// connectionLost reports whether err, returned by the connection, means
// that it can send nothing more for now: it is closed, draining, or
// reconnecting with its buffer full, or a write to its socket failed.
func connectionLost(err error) bool {
	switch {
	case errors.Is(err, nats.ErrConnectionClosed),
		errors.Is(err, nats.ErrConnectionDraining),
		errors.Is(err, nats.ErrConnectionReconnecting),
		errors.Is(err, nats.ErrReconnectBufExceeded),
		errors.Is(err, nats.ErrDisconnected):
		return true
	}
	var netErr net.Error
	return errors.As(err, &netErr)
}

// batch collects the errors of one call to Publish.
type batch struct {
	errs []error
	n    int
}

func (b *batch) fail(i int, err error) {
	if b.errs == nil {
		b.errs = make([]error, b.n)
	}
	b.errs[i] = err
}

// failPending fails the messages before next that were sent and not
// acknowledged.
func (b *batch) failPending(acked []bool, next int, err error) {
	for i := range next {
		if !acked[i] {
			b.fail(i, err)
		}
	}
}

// failRest fails the messages from i on, which were not sent.
func (b *batch) failRest(i int, err error) {
	for ; i < b.n; i++ {
		b.fail(i, err)
	}
}

// pubAckResponse is the part of JetStream's answer to a publish that says
// whether the message was accepted: a PubAck names the stream, an error
// says why not.
type pubAckResponse struct {
	Error  *jetstream.APIError `json:"error"`
	Stream string              `json:"stream"`
}

// ackError returns nil if r acknowledges a message, or why it does not,
// without the package's prefix, which the error that wraps it has.
func ackError(r *nats.Msg) error {
	if len(r.Data) == 0 {
		switch status := r.Header.Get("Status"); status {
		case "503":
			return jetstream.ErrNoStreamResponse
		case "":
		default:
			return fmt.Errorf("status %s %s", status, r.Header.Get("Description"))
		}
	}
	if isPubAck(r.Data) {
		return nil
	}
	return decodeAck(r.Data)
}

// decodeAck returns nil if data, JetStream's answer to a publish, is a
// PubAck, or why it is not. ackError calls it for the answers that isPubAck
// cannot vouch for.
func decodeAck(data []byte) error {
	var resp pubAckResponse
	if err := json.Unmarshal(data, &resp); err != nil {
		return fmt.Errorf("%w: %v", jetstream.ErrInvalidJSAck, err)
	}
	if resp.Error != nil {
		return resp.Error
	}
	if resp.Stream == "" {
		return jetstream.ErrInvalidJSAck
	}
	return nil
}

// isPubAck reports, without decoding it, whether data is surely a PubAck:
// whether decoding it into a pubAckResponse would succeed with a stream
// name and no error. It says so for what servers send, an object that
// begins with the stream's name and has no escapes; for anything else it
// reports false, and ackError decodes data in full. FuzzIsPubAck checks
// that it agrees with the decoder.
func isPubAck(data []byte) bool {
	const prefix = `{"stream":"`
	if !bytes.HasPrefix(data, []byte(prefix)) || bytes.IndexByte(data, '\\') >= 0 {
		return false
	}
	// Without escapes, quotes delimit every string exactly. The first is
	// the key "stream" and the second its value, which must not be empty.
	// No other string may be "stream" or "error" in any case: the decoder
	// would take it for one of these keys.
	for i, n := 0, 0; ; n++ {
		start := bytes.IndexByte(data[i:], '"')
		if start < 0 {
			break
		}
		start += i + 1
		end := bytes.IndexByte(data[start:], '"')
		if end < 0 {
			return false
		}
		end += start
		s := data[start:end]
		if n == 1 && len(s) == 0 || n > 0 && (bytes.EqualFold(s, []byte("stream")) || bytes.EqualFold(s, []byte("error"))) {
			return false
		}
		i = end + 1
	}
	return json.Valid(data)
}
