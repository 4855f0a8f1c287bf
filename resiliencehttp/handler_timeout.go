package resiliencehttp

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"maps"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/resilience-go/resilience/timeout"
)

// requestTimeoutError is the cause of a request's ctx at its deadline; one
// per Handler, so that its own deadline is told from the caller's.
type requestTimeoutError struct{ d time.Duration }

func (e *requestTimeoutError) Error() string {
	return "resiliencehttp: request timeout " + e.d.String() + " exceeded"
}

// Is reports whether target is timeout.ErrExceeded or
// context.DeadlineExceeded.
func (*requestTimeoutError) Is(target error) bool {
	return target == timeout.ErrExceeded || target == context.DeadlineExceeded
}

// serveTimeout runs next under the request timeout, as WithRequestTimeout
// says, and returns the timeout's cause if the deadline passed before next
// returned.
//
// next runs here, on the caller's goroutine. The deadline's answer is
// written by expire, which context.AfterFunc runs on a goroutine of its own,
// or, if next returns first, here; either way after the writer has marked
// the request timed out, under its lock, so that next's writes from then on
// are dropped and the real ResponseWriter has one writer at a time.
func (h *handler) serveTimeout(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := context.WithTimeoutCause(r.Context(), h.timeout, h.cause)
	defer cancel()
	tw := &timeoutWriter{w: w, header: w.Header().Clone(), ctx: ctx, cause: h.cause}
	if tw.header == nil {
		tw.header = make(http.Header)
	}
	tw.expiring.Add(1)
	stop := context.AfterFunc(ctx, func() {
		defer tw.expiring.Done()
		h.expire(tw, r)
	})
	expired := tw.run(h.next, r.WithContext(ctx), stop, func() { h.answerTimeout(w, r) })
	// expire has returned, or will never run: the fields are ours.
	if tw.panicked != nil {
		panic(tw.panicked)
	}
	switch {
	case tw.answered:
	case expired && !tw.wrote:
		// next wrote nothing in time and returned before expire could
		// answer.
		h.answerTimeout(w, r)
	default:
		// Headers set after the response began (trailers), or set
		// without writing.
		syncHeader(w.Header(), tw.header)
	}
	if expired {
		return h.cause
	}
	return nil
}

// expire answers the request at its deadline, unless next has written or
// returned, or the request's own ctx ended first (its client went away).
func (h *handler) expire(tw *timeoutWriter, r *http.Request) {
	if context.Cause(tw.ctx) != h.cause {
		return
	}
	tw.mu.Lock()
	if tw.done || tw.wrote || tw.answered {
		tw.mu.Unlock()
		return
	}
	tw.timedOut, tw.answered = true, true
	tw.mu.Unlock()
	// next's writes are dropped from here on: the real writer is ours.
	defer func() {
		if v := recover(); v != nil {
			tw.panicked = v // for ServeHTTP to panic with
		}
	}()
	h.answerTimeout(tw.w, r)
}

// answerTimeout writes the timeout's answer, or the fallback's, and
// flushes it, so that the client has it while next runs. The fallback's
// answer is collected and written whole, with its length, so that it
// reaches the client complete even if next then ends the connection (a
// ReverseProxy whose write failed panics with http.ErrAbortHandler, which
// closes the connection after what was written).
func (h *handler) answerTimeout(w http.ResponseWriter, r *http.Request) {
	if h.fallback != nil {
		a := collectedAnswer{header: w.Header()}
		h.fallback.ServeHTTP(&a, withRefusal(r, h.cause))
		if a.header.Get("Content-Length") == "" && a.header.Get("Transfer-Encoding") == "" {
			a.header.Set("Content-Length", strconv.Itoa(a.body.Len()))
		}
		w.WriteHeader(cmp.Or(a.status, http.StatusOK))
		_, _ = w.Write(a.body.Bytes())
	} else {
		w.Header()["Content-Length"] = h.timeoutAnswer.length
		h.timeoutAnswer.write(w)
	}
	_ = http.NewResponseController(w).Flush()
}

// syncHeader makes dst hold what src holds.
func syncHeader(dst, src http.Header) {
	for k := range dst {
		if _, ok := src[k]; !ok {
			delete(dst, k)
		}
	}
	maps.Copy(dst, src)
}

// timeoutWriter is the ResponseWriter of next under a request timeout. It
// gives next a header of its own, and serializes next's calls with the
// timeout's answer.
type timeoutWriter struct {
	w      http.ResponseWriter
	header http.Header // next's; copied to w's when next writes
	ctx    context.Context
	cause  error

	expiring sync.WaitGroup // expire, until it returns
	panicked any            // what the fallback panicked with in expire

	mu       sync.Mutex
	wrote    bool // next began its response
	timedOut bool // next wrote nothing by the deadline: its writes are dropped
	answered bool // the timeout's answer is written, or being written
	done     bool // next returned
}

// run calls next, then stops expire or waits for it to return, even if
// next panics, and reports whether the deadline passed before next
// returned. If next panics after the deadline having written nothing, and
// nothing answered the request yet, run calls answer before the panic goes
// on: a ReverseProxy whose late write was refused aborts with
// http.ErrAbortHandler, and its client should get the timeout's answer, not
// a connection cut short.
func (tw *timeoutWriter) run(next http.Handler, r *http.Request, stop func() bool, answer func()) (expired bool) {
	returned := false
	defer func() {
		tw.mu.Lock()
		tw.done = true
		expired = tw.expired()
		tw.mu.Unlock()
		if stop() {
			tw.expiring.Done()
		}
		tw.expiring.Wait()
		if !returned && expired && !tw.wrote && !tw.answered && tw.panicked == nil {
			tw.answered = true
			answer()
		}
	}()
	next.ServeHTTP(tw, r)
	returned = true
	return false
}

// expired reports whether the request's deadline has passed.
func (tw *timeoutWriter) expired() bool {
	return tw.ctx.Err() != nil && context.Cause(tw.ctx) == tw.cause
}

// begin is called, with mu held, before next's response goes to the real
// writer, and reports whether it may. The first time, it gives next's
// header to the real writer, unless the deadline has passed: then the
// request is timed out, and its answer is due.
func (tw *timeoutWriter) begin() bool {
	switch {
	case tw.timedOut:
		return false
	case tw.wrote:
		return true
	case tw.expired():
		tw.timedOut = true
		return false
	}
	syncHeader(tw.w.Header(), tw.header)
	tw.wrote = true
	return true
}

// Header returns next's header, which goes to the real writer when next
// begins its response.
func (tw *timeoutWriter) Header() http.Header { return tw.header }

// Write writes p, or returns http.ErrHandlerTimeout if the request timed
// out before next began its response.
func (tw *timeoutWriter) Write(p []byte) (int, error) {
	tw.mu.Lock()
	defer tw.mu.Unlock()
	if !tw.begin() {
		return 0, http.ErrHandlerTimeout
	}
	return tw.w.Write(p)
}

// WriteString is Write of a string, without copying it when the real
// writer has a WriteString of its own.
func (tw *timeoutWriter) WriteString(s string) (int, error) {
	tw.mu.Lock()
	defer tw.mu.Unlock()
	if !tw.begin() {
		return 0, http.ErrHandlerTimeout
	}
	if sw, ok := tw.w.(interface{ WriteString(string) (int, error) }); ok {
		return sw.WriteString(s)
	}
	return tw.w.Write([]byte(s))
}

// WriteHeader sends the status code, unless the request timed out before
// next began its response. An informational status (1xx but 101) is sent
// at once and does not begin the response.
func (tw *timeoutWriter) WriteHeader(code int) {
	tw.mu.Lock()
	defer tw.mu.Unlock()
	if code >= 100 && code <= 199 && code != http.StatusSwitchingProtocols && !tw.wrote {
		if tw.timedOut || tw.expired() {
			tw.timedOut = true
			return
		}
		syncHeader(tw.w.Header(), tw.header)
		tw.w.WriteHeader(code)
		return
	}
	if tw.begin() {
		tw.w.WriteHeader(code)
	}
}

// Flush flushes the real writer, as FlushError does.
func (tw *timeoutWriter) Flush() { _ = tw.FlushError() }

// FlushError flushes the real writer through [http.ResponseController], or
// returns http.ErrHandlerTimeout if the request timed out before next
// began its response.
func (tw *timeoutWriter) FlushError() error {
	tw.mu.Lock()
	defer tw.mu.Unlock()
	if !tw.begin() {
		return http.ErrHandlerTimeout
	}
	return http.NewResponseController(tw.w).Flush()
}

// Hijack hijacks the real writer's connection through
// [http.ResponseController], or returns http.ErrHandlerTimeout if the
// request timed out before next began its response. Once hijacked, the
// timeout answers nothing.
func (tw *timeoutWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	tw.mu.Lock()
	defer tw.mu.Unlock()
	if tw.timedOut || !tw.wrote && tw.expired() {
		tw.timedOut = true
		return nil, nil, http.ErrHandlerTimeout
	}
	conn, rw, err := http.NewResponseController(tw.w).Hijack()
	if err == nil {
		tw.wrote = true
	}
	return conn, rw, err
}

// Unwrap returns the real writer, for [http.ResponseController].
func (tw *timeoutWriter) Unwrap() http.ResponseWriter { return tw.w }

// collectedAnswer is the ResponseWriter of a fallback that answers a timeout:
// it writes the header to the real writer's and collects the status and the
// body, which answerTimeout then writes whole.
type collectedAnswer struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (a *collectedAnswer) Header() http.Header { return a.header }

func (a *collectedAnswer) Write(p []byte) (int, error) {
	if a.status == 0 {
		a.status = http.StatusOK
	}
	return a.body.Write(p)
}

func (a *collectedAnswer) WriteHeader(code int) {
	if a.status == 0 && (code < 100 || code > 199) {
		a.status = code
	}
}

// Flush does nothing: the answer goes out whole once the fallback returns.
func (a *collectedAnswer) Flush() {}
