package resiliencehttp

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/netip"
	"reflect"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/ratelimit"
)

// Handler returns middleware that protects next from more requests than it
// can serve. Each option adds one check; they run cheapest first, each only
// for a request the one before admitted:
//
//  1. The rate limit of the request's key ([WithRateLimit], [WithKey],
//     [WithTrustedProxies]): a refusal is answered 429 Too Many Requests.
//  2. Load shedding ([WithLoadShedding]): a refusal is answered 503 Service
//     Unavailable.
//  3. The request timeout ([WithRequestTimeout]): a request whose handler
//     has written nothing by the deadline is answered 503, or 504 Gateway
//     Timeout with [WithGateway].
//  4. next.
//
// Refusals carry a Retry-After header in whole seconds, at least 1. With
// [WithFallback] they, and timeouts, are answered by the fallback instead.
// A refusal whose request's ctx is done (its client went away) is not
// answered at all.
//
// next runs on the goroutine that called ServeHTTP. A panic in next, or in
// the fallback, is not recovered: it reaches the caller of ServeHTTP with
// its value, so that net/http's handling of [http.ErrAbortHandler] holds,
// once the timer is stopped and the load shedder has released what it
// holds.
//
// The handler is safe for concurrent use. With no option, it calls next.
// Handler panics if next or an option is nil.
func Handler(next http.Handler, opts ...HandlerOption) http.Handler {
	if next == nil {
		panic("resiliencehttp: Handler: nil next")
	}
	var c handlerConfig
	for _, o := range opts {
		if o == nil {
			panic("resiliencehttp: Handler: nil HandlerOption")
		}
		o.applyHandler(&c)
	}
	h := &handler{next: next, shedder: c.shedder, timeout: c.timeout, fallback: c.fallback,
		timeoutAnswer: &answer503}
	if c.perSecond > 0 {
		h.limiter = ratelimit.NewKeyed(rate.Limit(c.perSecond), c.burst)
		h.policy = []string{fmt.Sprintf(`"default";q=%d;w=%d`, c.burst, policyWindow(c.perSecond, c.burst))}
		switch {
		case c.key != nil:
			h.key = c.key
		case len(c.trusted) > 0:
			h.trusted = c.trusted
			h.key = h.forwardedClient
		default:
			h.key = remoteAddrHost
		}
	}
	if h.shedder != nil {
		h.calls.New = func() any {
			c := &shedCall{h: h}
			c.op = c.run
			return c
		}
	}
	if h.timeout > 0 {
		h.cause = &requestTimeoutError{d: h.timeout}
		if c.gateway {
			h.timeoutAnswer = &answer504
		}
	}
	return h
}

// A HandlerOption configures the middleware made by [Handler].
type HandlerOption interface{ applyHandler(*handlerConfig) }

type handlerOptionFunc func(*handlerConfig)

func (f handlerOptionFunc) applyHandler(c *handlerConfig) { f(c) }

type handlerConfig struct {
	perSecond float64
	burst     int
	key       func(*http.Request) string
	trusted   []netip.Prefix
	shedder   resilience.Policy
	timeout   time.Duration
	gateway   bool
	fallback  http.Handler
}

// WithRateLimit limits each key (by default, each client address; see
// [WithKey]) to perSecond requests a second, with bursts of burst: a token
// bucket per key, as [ratelimit.Keyed] keeps, which forgets idle keys and
// keeps at most 100 000 at once. A request over the limit is answered
// 429 Too Many Requests with a short text body and the headers
//
//	Retry-After: <s>
//	RateLimit-Policy: "default";q=<burst>;w=<burst/perSecond, rounded up>
//	RateLimit: "default";r=0;t=<s>
//
// where s is the number of seconds until the key's next token, rounded
// up, at least 1, and the two RateLimit fields are those of
// draft-ietf-httpapi-ratelimit-headers (draft 08 and later). A client that
// spaces its bursts of q requests w seconds apart is never refused.
// Default: no rate limit. perSecond must be at least 1e-6 (one request in
// about eleven days) and finite, and burst at least 1.
func WithRateLimit(perSecond float64, burst int) HandlerOption {
	if !(perSecond >= 1e-6) || math.IsInf(perSecond, 0) {
		panic(fmt.Sprintf("resiliencehttp: WithRateLimit(%v, %d): want finite perSecond >= 1e-6", perSecond, burst))
	}
	if burst < 1 {
		panic(fmt.Sprintf("resiliencehttp: WithRateLimit(%v, %d): want burst >= 1", perSecond, burst))
	}
	return handlerOptionFunc(func(c *handlerConfig) { c.perSecond, c.burst = perSecond, burst })
}

// WithKey sets the key that [WithRateLimit] limits, such as a tenant or an
// API key found in the request, or a client's IPv6 /64 rather than its
// address; the empty string is a key like any other. keyOf is called once
// per request, before anything else. The limiter keeps the keys it sees for
// a while: keyOf should not return a small part of a large string. WithKey
// replaces the default key, the client's address, and with it
// [WithTrustedProxies]. Default: the host of the request's RemoteAddr. keyOf
// must not be nil.
func WithKey(keyOf func(*http.Request) string) HandlerOption {
	if keyOf == nil {
		panic("resiliencehttp: WithKey: nil keyOf")
	}
	return handlerOptionFunc(func(c *handlerConfig) { c.key = keyOf })
}

// WithTrustedProxies names the proxies whose X-Forwarded-For header the
// default key of [WithRateLimit] believes. When the request comes from an
// address in one of prefixes, the key is the rightmost address of
// X-Forwarded-For (all its lines, read as one list) that is not in one of
// them: the client as seen by the last trusted proxy, which a client cannot
// forge by sending a header of its own. When every address in the header is
// trusted, the key is the leftmost; when an entry is not an IP address
// (optionally with a port), the key is the trusted address to its right,
// the proxy that wrote it. IPv4 addresses mapped into IPv6 are compared as
// IPv4. Default: none; X-Forwarded-For is ignored and the key is the host of
// RemoteAddr. Every prefix must be valid, as netip.ParsePrefix returns it.
func WithTrustedProxies(prefixes ...netip.Prefix) HandlerOption {
	trusted := make([]netip.Prefix, len(prefixes))
	for i, p := range prefixes {
		if !p.IsValid() {
			panic(fmt.Sprintf("resiliencehttp: WithTrustedProxies: invalid prefix %v at index %d", p, i))
		}
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		trusted[i] = p.Masked()
	}
	return handlerOptionFunc(func(c *handlerConfig) { c.trusted = trusted })
}

// WithLoadShedding runs each request that passed the rate limit under p,
// typically a [bulkhead.Bulkhead] that bounds the requests served at once.
// A request that p does not run (p refused it, with an error that matches
// [resilience.ErrRejected]) is answered 503 Service Unavailable with a short
// text body and a Retry-After header of p's hint ([resilience.RetryAfter]),
// in seconds rounded up, or 1 when p gives none. The op that p runs serves
// the request through the timeout and next; it returns nil, or, if the
// request timed out, an error that matches [timeout.ErrExceeded], so that a
// circuit breaker counts it as a failure. p should run op at most once: a
// second call returns the first one's error and does not serve the request
// again. Default: none. p must not be nil.
//
// [bulkhead.Bulkhead]: https://pkg.go.dev/github.com/resilience-go/resilience/bulkhead#Bulkhead
func WithLoadShedding(p resilience.Policy) HandlerOption {
	if p == nil {
		panic("resiliencehttp: WithLoadShedding: nil Policy")
	}
	switch v := reflect.ValueOf(p); v.Kind() {
	case reflect.Pointer, reflect.Func, reflect.Map, reflect.Slice, reflect.Chan:
		if v.IsNil() {
			panic("resiliencehttp: WithLoadShedding: nil Policy")
		}
	}
	return handlerOptionFunc(func(c *handlerConfig) { c.shedder = p })
}

// WithRequestTimeout gives next d to write its response. At the deadline
// next's ctx is cancelled with a cause that matches [timeout.ErrExceeded]
// (context.Cause reports it) and, if next has written nothing yet, the
// request is answered 503 Service Unavailable (504 with [WithGateway]) at
// once, with a short text body and a Content-Length, even while next is
// still running; from then on next's writes are dropped and return
// [http.ErrHandlerTimeout]. A response that next began before the deadline
// is left to next to end, and so is a request whose own ctx ended first.
// ServeHTTP returns only when next has returned: an HTTP/1.x client has
// the whole answer at the deadline, but an HTTP/2 stream ends only then.
//
// While the timeout runs, next writes through a ResponseWriter that
// serializes its calls with the timeout's answer. Its Header is next's own
// copy, given to the real one when next writes, and its Unwrap method gives
// [http.ResponseController] the real one; Flush and Hijack go through it.
// Default: none. d must be positive.
func WithRequestTimeout(d time.Duration) HandlerOption {
	if d <= 0 {
		panic(fmt.Sprintf("resiliencehttp: WithRequestTimeout(%v): want d > 0", d))
	}
	return handlerOptionFunc(func(c *handlerConfig) { c.timeout = d })
}

// WithGateway answers a request that timed out ([WithRequestTimeout]) with
// 504 Gateway Timeout instead of 503, as a proxy whose upstream did not
// answer in time should. Default: 503.
func WithGateway() HandlerOption {
	return handlerOptionFunc(func(c *handlerConfig) { c.gateway = true })
}

// WithFallback hands to h, instead of answering with an error status, every
// request that the rate limit or the load shedder refuses, and every request
// that timed out before next wrote anything. h may learn why with
// [Refusal]. For a refusal, h finds the headers of the answer it replaces
// already set (Retry-After, and for a rate limit RateLimit and
// RateLimit-Policy), which it may keep, change or delete. For a timeout, h
// runs at the deadline on a goroutine of its own, with the request's ctx of
// before the timeout, while next may still be running; its answer is
// collected and written whole, with a Content-Length, once h returns, so
// that it reaches the client complete however next ends; ServeHTTP returns
// after both have. A fallback answers timeouts in place of [WithGateway]'s
// 504 as well. A panic in h there reaches the caller of ServeHTTP.
// Default: none. h must not be nil.
func WithFallback(h http.Handler) HandlerOption {
	if h == nil {
		panic("resiliencehttp: WithFallback: nil Handler")
	}
	return handlerOptionFunc(func(c *handlerConfig) { c.fallback = h })
}

// Refusal returns the error for which a [Handler] handed r to its fallback
// ([WithFallback]): a [*ratelimit.LimitedError], the load shedder's error,
// or the request timeout's cause, which matches [timeout.ErrExceeded]. For
// any other request it returns nil.
func Refusal(r *http.Request) error {
	err, _ := r.Context().Value(refusalKey{}).(error)
	return err
}

type refusalKey struct{}

// handler is the middleware that Handler returns.
type handler struct {
	next     http.Handler
	fallback http.Handler

	limiter *ratelimit.Keyed
	key     func(*http.Request) string
	trusted []netip.Prefix
	policy  []string // the RateLimit-Policy header's value

	shedder resilience.Policy
	calls   sync.Pool // of *shedCall

	timeout       time.Duration
	cause         error // the cause of a request's ctx at its deadline
	timeoutAnswer *answer
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.limiter != nil {
		if key := h.key(r); !h.limiter.AllowKey(key) && !h.admitLate(w, r, key) {
			return
		}
	}
	if h.shedder == nil {
		h.serve(w, r)
		return
	}
	c := h.calls.Get().(*shedCall)
	c.w, c.r = w, r
	err := h.shedder.Do(r.Context(), c.op)
	ran := c.ran
	*c = shedCall{h: h, op: c.op}
	h.calls.Put(c)
	if !ran && r.Context().Err() == nil {
		h.refuseShed(w, r, err)
	}
}

// admitLate asks the rate limit again for a request it just refused, now
// for the refusal's error, and answers the refusal. A token that came in
// between admits the request.
func (h *handler) admitLate(w http.ResponseWriter, r *http.Request, key string) bool {
	err := h.limiter.DoKey(r.Context(), key, tokenTaken)
	switch {
	case err == nil:
		return true
	case errors.Is(err, ratelimit.ErrLimited):
		h.refuseLimited(w, r, err)
	}
	return false
}

// tokenTaken is the op run under the rate limit: taking the token is all.
func tokenTaken(context.Context) error { return nil }

// serve runs next, under the request timeout if there is one, and returns
// the timeout's cause if the request timed out.
func (h *handler) serve(w http.ResponseWriter, r *http.Request) error {
	if h.timeout == 0 {
		h.next.ServeHTTP(w, r)
		return nil
	}
	return h.serveTimeout(w, r)
}

// shedCall is one request run under the load shedder. Its op is bound once,
// when the pool makes it, so that a request allocates no closure.
type shedCall struct {
	h   *handler
	op  resilience.Op
	w   http.ResponseWriter
	r   *http.Request
	ran bool
	err error
}

func (c *shedCall) run(ctx context.Context) error {
	if c.ran {
		return c.err
	}
	c.ran = true
	r := c.r
	if ctx != r.Context() {
		r = r.WithContext(ctx)
	}
	c.err = c.h.serve(c.w, r)
	return c.err
}

func (h *handler) refuseLimited(w http.ResponseWriter, r *http.Request, err error) {
	d, _ := resilience.RetryAfter(err)
	s := answerSeconds(d)
	hd := w.Header()
	hd["Retry-After"], hd["Ratelimit"] = rateLimitHeaderValues(s)
	hd["Ratelimit-Policy"] = h.policy
	if h.fallback != nil {
		h.fallback.ServeHTTP(w, withRefusal(r, err))
		return
	}
	answer429.write(w)
}

func (h *handler) refuseShed(w http.ResponseWriter, r *http.Request, err error) {
	s := int64(1)
	if d, ok := resilience.RetryAfter(err); ok {
		s = answerSeconds(d)
	}
	w.Header()["Retry-After"] = answerSecondsValue(s)
	if h.fallback != nil {
		h.fallback.ServeHTTP(w, withRefusal(r, err))
		return
	}
	answer503.write(w)
}

func withRefusal(r *http.Request, err error) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), refusalKey{}, err))
}

// answer is the response to a refused request: a status and its text.
type answer struct {
	status int
	body   []byte
	length []string // the Content-Length header's value
}

var (
	answer429 = newAnswer(http.StatusTooManyRequests)
	answer503 = newAnswer(http.StatusServiceUnavailable)
	answer504 = newAnswer(http.StatusGatewayTimeout)
)

func newAnswer(status int) answer {
	body := http.StatusText(status) + "\n"
	return answer{status: status, body: []byte(body), length: []string{strconv.Itoa(len(body))}}
}

// Header values set by every answer. They, and those of answerSecondsValue and
// rateLimitHeaderValues, are shared by every response, as the header's values are
// only read: their length equals their capacity, so that an Add appends to
// a copy.
var (
	answerContentType = []string{"text/plain; charset=utf-8"}
	answerNoSniff     = []string{"nosniff"}
)

func (a *answer) write(w http.ResponseWriter) {
	hd := w.Header()
	hd["Content-Type"] = answerContentType
	hd["X-Content-Type-Options"] = answerNoSniff
	w.WriteHeader(a.status)
	_, _ = w.Write(a.body)
}

// answerSeconds returns d in whole seconds, rounded up, at least 1.
func answerSeconds(d time.Duration) int64 {
	return max(int64((d+time.Second-1)/time.Second), 1)
}

// policyWindow returns the window of the RateLimit-Policy header: the
// seconds a bucket of burst tokens takes to fill at perSecond, rounded up,
// at least 1 and at most the largest integer of a structured field.
func policyWindow(perSecond float64, burst int) int64 {
	return int64(min(max(math.Ceil(float64(burst)/perSecond), 1), 999_999_999_999_999))
}

// answerSecondsCached is how many values of Retry-After and RateLimit are made
// once: a refusal of a limiter of at least one token a second waits a
// second at most.
const answerSecondsCached = 60

var answerSecondsCache, rateLimitHeaderCache = func() (s, rl [answerSecondsCached + 1][]string) {
	for i := range s {
		s[i] = []string{strconv.Itoa(i)}
		rl[i] = []string{`"default";r=0;t=` + strconv.Itoa(i)}
	}
	return s, rl
}()

func answerSecondsValue(s int64) []string {
	if s <= answerSecondsCached {
		return answerSecondsCache[s]
	}
	return []string{strconv.FormatInt(s, 10)}
}

// rateLimitHeaderValues returns the values of Retry-After and RateLimit for a
// wait of s seconds.
func rateLimitHeaderValues(s int64) (retryAfter, rateLimit []string) {
	if s <= answerSecondsCached {
		return answerSecondsCache[s], rateLimitHeaderCache[s]
	}
	v := make([]string, 2)
	v[0] = strconv.FormatInt(s, 10)
	v[1] = `"default";r=0;t=` + v[0]
	return v[0:1:1], v[1:2:2]
}
