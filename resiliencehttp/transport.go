package resiliencehttp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/hedge"
	"github.com/resilience-go/resilience/internal/keep"
	"github.com/resilience-go/resilience/retry"
)

// Transport is an http.RoundTripper that runs each request through a
// [resilience.Policy], each attempt being a round trip through the next
// RoundTripper. Make one with [NewTransport] and put it in an
// http.Client; it is safe for concurrent use. The zero value is not
// usable; use NewTransport: its methods panic.
//
// See the package documentation for which requests are retried, which
// statuses are failures, and what RoundTrip returns.
type Transport struct {
	next     http.RoundTripper
	do       resilience.Op // the policy bound to attempt
	classify func(*http.Response) bool
	fail500  bool
	buffer   int64
	drain    int64
	hedge    *hedge.Hedger // nil without WithHedge
}

var _ http.RoundTripper = (*Transport)(nil)

// NewTransport returns a Transport that sends each request through next
// under the policy of [WithPolicy], [Standard]() by default. A nil next is
// http.DefaultTransport. NewTransport panics if an option is nil.
func NewTransport(next http.RoundTripper, opts ...Option) *Transport {
	cfg := config{drain: 4 << 10}
	for _, o := range opts {
		if o == nil {
			panic("resiliencehttp: NewTransport: nil Option")
		}
		o.apply(&cfg)
	}
	if next == nil {
		next = http.DefaultTransport
	}
	if cfg.policy == nil {
		cfg.policy = Standard()
	}
	t := &Transport{next: next, classify: cfg.classify, fail500: cfg.fail500, buffer: cfg.bufferMax, drain: cfg.drain}
	if cfg.hedged {
		t.hedge = hedge.New(slices.Concat(cfg.hedge, []hedge.Option{hedge.WithDiscard(t.discardResponse)})...)
	}
	t.do = resilience.Wrap(cfg.policy, t.attempt)
	return t
}

// CloseIdleConnections closes the idle connections of the next
// RoundTripper, if it has a CloseIdleConnections method, as
// http.Client.CloseIdleConnections asks.
func (t *Transport) CloseIdleConnections() {
	if ci, ok := t.next.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

// RoundTrip runs req through the policy. It returns the response of the
// attempt that succeeded or, when the policy gave up on a failing status,
// the last response, with a nil error and the body unread; a refusal by a
// policy matches [resilience.ErrRejected]. It closes req.Body, whatever
// happens, and does not modify req. See the package documentation.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.do == nil {
		panic("resiliencehttp: zero Transport; use NewTransport")
	}
	if req.URL == nil {
		closeBody(req.Body)
		return nil, errors.New("resiliencehttp: nil Request.URL")
	}
	c := &call{ctx: req.Context(), t: t, req: req, host: req.URL.Host, first: req.Body}
	if err := c.gate(); err != nil {
		return nil, err
	}
	return c.finish(t.do(c))
}

// errNoResponse is returned when the policy reports success without an
// attempt that obtained a response.
var errNoResponse = errors.New("resiliencehttp: the policy succeeded without a response")

// call is one RoundTrip: the state its attempts share, and the ctx the
// policy runs under, which answers for the call (and so for the host) to
// any attempt and to PerHost. Attempts of one call never overlap (the
// policy contract), so its fields need no lock.
//
// Its fields are ordered so that it fits the allocator's 512-byte class.
type call struct {
	ctx   context.Context // the request's
	t     *Transport
	req   *http.Request
	host  string
	buf   []byte        // the request body, read into memory by WithBufferBody
	first io.ReadCloser // the body of the first attempt that reaches next

	attempts int32
	replay   bool        // attempts after the first may be made
	sent     bool        // first went to next
	sparing  atomic.Bool // spare was handed out

	err  error          // the first attempt's error, for a call that is not replayed
	resp *http.Response // the response of the attempt that succeeded
	last *StatusError   // the failure of the last attempt, its body unread
	body keptBody       // resp's body, when its ctx is kept: in call, to save an allocation

	spare keep.Keeper // for the first attempt's timeout: in call, to save an allocation

	firstReq http.Request // the first attempt's copy of req: in call, to save an allocation
}

// callKey is the ctx key under which a call answers for itself.
type callKey struct{}

func (c *call) Deadline() (time.Time, bool) { return c.ctx.Deadline() }
func (c *call) Done() <-chan struct{}       { return c.ctx.Done() }
func (c *call) Err() error                  { return c.ctx.Err() }

// SpareKeeper hands the call's spare Keeper out once (keep.Spare).
func (c *call) SpareKeeper() *keep.Keeper {
	if c.sparing.CompareAndSwap(false, true) {
		return &c.spare
	}
	return nil
}

func (c *call) Value(key any) any {
	if key == (callKey{}) {
		return c
	}
	return c.ctx.Value(key)
}

// hostOf returns the host of the request whose attempt ctx is, or "" when
// ctx is not a Transport's.
func hostOf(ctx context.Context) string {
	if c, ok := ctx.Value(callKey{}).(*call); ok {
		return c.host
	}
	return ""
}

// gate decides, before the first attempt, whether later attempts may be
// made: the method is idempotent or the request carries an idempotency key,
// and the body can be sent again. With WithBufferBody it reads a body that
// cannot into memory.
func (c *call) gate() error {
	req := c.req
	if !idempotent(req) {
		return nil
	}
	switch {
	case req.Body == nil || req.Body == http.NoBody || req.GetBody != nil:
		c.replay = true
	case c.t.buffer > 0 && req.ContentLength <= c.t.buffer:
		data, err := io.ReadAll(io.LimitReader(req.Body, c.t.buffer+1))
		if err != nil {
			req.Body.Close()
			return fmt.Errorf("resiliencehttp: read request body: %w", err)
		}
		if int64(len(data)) > c.t.buffer { // too long: sent whole, once
			c.first = readCloser{io.MultiReader(bytes.NewReader(data), req.Body), req.Body}
			return nil
		}
		req.Body.Close()
		c.buf, c.first, c.replay = data, io.NopCloser(bytes.NewReader(data)), true
	}
	return nil
}

// idempotent reports whether req may be sent more than once: its method is
// idempotent (RFC 9110 §9.2.2), or it carries an Idempotency-Key or
// X-Idempotency-Key header, even an empty one, as net/http's own retries
// read them.
func idempotent(req *http.Request) bool {
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	if _, ok := req.Header["Idempotency-Key"]; ok {
		return true
	}
	_, ok := req.Header["X-Idempotency-Key"]
	return ok
}

type readCloser struct {
	io.Reader
	io.Closer
}

// attempt is the op the policy runs: one round trip through next.
func (t *Transport) attempt(ctx context.Context) error {
	c, ok := ctx.Value(callKey{}).(*call)
	if !ok {
		panic("resiliencehttp: the policy called its op with a ctx that is not a child of the one it was given")
	}
	c.attempts++
	if c.attempts > 1 {
		if !c.replay {
			return c.err // the first attempt's, without a round trip
		}
		c.discard()
	}
	r, err := c.request(ctx)
	if err != nil {
		return err
	}
	resp, err := c.roundTrip(ctx, r)
	if err != nil {
		return c.fail(err)
	}
	if resp == nil {
		return c.fail(errors.New("resiliencehttp: next RoundTripper returned neither a response nor an error"))
	}
	failed := t.failed(resp)
	var se *StatusError
	if failed {
		se = &StatusError{Response: resp, StatusCode: resp.StatusCode}
		now := time.Now()
		if d, ok := ParseRetryAfter(resp.Header, now); ok { // before any read of the body
			se.retryAt = now.Add(d)
		}
	}
	if resp.Body != nil && resp.Body != http.NoBody {
		if k := keep.Find(ctx); k != nil && k.Keep() {
			b := &c.body
			if failed {
				b = new(keptBody)
			}
			b.rc, b.k = resp.Body, k
			b.released.Store(false)
			if w, ok := resp.Body.(io.Writer); ok { // a 101 Switching Protocols
				resp.Body = &keptReadWriter{b, w}
			} else {
				resp.Body = b
			}
		}
	}
	if !failed {
		c.resp = resp
		return nil
	}
	c.last = se
	return c.fail(se)
}

// failed reports whether resp is a failure for the policies.
func (t *Transport) failed(resp *http.Response) bool {
	if t.classify != nil {
		return t.classify(resp)
	}
	return failing(resp.StatusCode, t.fail500)
}

// fail returns err for an attempt that failed. For a call that is not
// replayed it marks err as permanent, so that a retry gives up at once,
// and keeps it for any later attempt to return.
func (c *call) fail(err error) error {
	if !c.replay {
		err = retry.Permanent(err)
		c.err = err
	}
	return err
}

// request returns the request of an attempt: the caller's own, or a
// shallow copy with the attempt's ctx, for the first that reaches next, and
// a clone with a fresh body for each later one.
func (c *call) request(ctx context.Context) (*http.Request, error) {
	req := c.req
	if !c.sent {
		c.sent = true
		if ctx == context.Context(c) && c.first == req.Body {
			return req, nil
		}
		c.firstReq = *req.WithContext(ctx) // the copy WithContext makes stays on the stack
		r := &c.firstReq
		if c.first != req.Body {
			r.Body = c.first
			if c.buf != nil {
				r.ContentLength, r.GetBody = int64(len(c.buf)), c.getBody
			}
		}
		return r, nil
	}
	return c.clone(ctx)
}

// clone returns a clone of the caller's request with ctx and a fresh body.
func (c *call) clone(ctx context.Context) (*http.Request, error) {
	req := c.req
	r := req.Clone(ctx)
	switch {
	case c.buf != nil:
		r.Body, _ = c.getBody()
		r.ContentLength, r.GetBody = int64(len(c.buf)), c.getBody
	case req.Body != nil && req.Body != http.NoBody:
		body, err := req.GetBody()
		if err != nil {
			return nil, fmt.Errorf("resiliencehttp: GetBody: %w", err)
		}
		r.Body = body
	}
	return r, nil
}

// getBody returns a reader of the buffered body.
func (c *call) getBody() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(c.buf)), nil }

// discard drains and closes the responses of earlier attempts, before
// another attempt or when the call ends without them.
func (c *call) discard() {
	if c.last != nil {
		c.t.drainClose(c.last.Response)
		c.last = nil
	}
	if c.resp != nil {
		c.t.drainClose(c.resp)
		c.resp = nil
	}
}

// drainClose reads up to the drain limit of resp's body, so that its
// connection can be reused, and closes it.
func (t *Transport) drainClose(resp *http.Response) {
	if resp.Body == nil {
		return
	}
	if t.drain > 0 {
		_, _ = io.CopyN(io.Discard, resp.Body, t.drain)
	}
	resp.Body.Close()
}

// finish turns the policy's result into RoundTrip's.
func (c *call) finish(err error) (*http.Response, error) {
	if !c.sent {
		closeBody(c.first)
	}
	if err == nil {
		switch {
		case c.resp != nil:
			return c.resp, nil
		case c.last != nil: // a policy answered for the failure, as a fallback does
			return c.last.Response, nil
		}
		return nil, errNoResponse
	}
	last := c.last
	if last != nil && errors.Is(err, last) && !errors.Is(err, resilience.ErrRejected) &&
		!errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		if c.resp != nil {
			c.t.drainClose(c.resp)
		}
		return last.Response, nil // the policies gave up on a failing status
	}
	c.discard()
	if last != nil && !errors.Is(err, last) && errors.Is(err, resilience.ErrRejected) {
		return nil, &rejectedError{err: err, status: last}
	}
	return nil, err
}

// rejectedError is a refusal by a policy that came after a failing status.
type rejectedError struct {
	err    error
	status *StatusError
}

func (e *rejectedError) Error() string   { return fmt.Sprintf("%v (after %v)", e.err, e.status) }
func (e *rejectedError) Unwrap() []error { return []error{e.err, e.status} }

func closeBody(b io.ReadCloser) {
	if b != nil && b != http.NoBody {
		b.Close()
	}
}

// keptBody is the body of a response whose attempt ctx was kept: reading
// it to its end or closing it releases that ctx.
type keptBody struct {
	rc       io.ReadCloser
	k        *keep.Keeper
	released atomic.Bool
}

func (b *keptBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	switch {
	case err == io.EOF:
		b.release()
	case err != nil:
		err = withCause(err, b.k)
	}
	return n, err
}

// withCause returns err, a read's error, with the cause of ctx's end
// attached when err is only ctx's error: HTTP/1.1 reports the cause, such
// as timeout.ErrExceeded, and HTTP/2 only context.DeadlineExceeded.
func withCause(err error, ctx context.Context) error {
	ctxErr := ctx.Err()
	if ctxErr == nil || !errors.Is(err, ctxErr) {
		return err
	}
	if cause := context.Cause(ctx); cause != ctxErr && !errors.Is(err, cause) {
		return fmt.Errorf("%w (%w)", err, cause)
	}
	return err
}

func (b *keptBody) Close() error {
	err := b.rc.Close()
	b.release()
	return err
}

func (b *keptBody) release() {
	if b.released.CompareAndSwap(false, true) {
		b.k.Release()
	}
}

// keptReadWriter is a keptBody that can be written to, as the body of a
// 101 Switching Protocols response is.
type keptReadWriter struct {
	*keptBody
	w io.Writer
}

func (b *keptReadWriter) Write(p []byte) (int, error) { return b.w.Write(p) }
