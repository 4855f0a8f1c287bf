package resiliencehttp_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience/bulkhead"
	"github.com/resilience-go/resilience/resiliencehttp"
	"github.com/resilience-go/resilience/timeout"
)

// timeoutRecorder is a ResponseWriter safe for use by the goroutine of a timeout
// and the test's, which reports a call made after ServeHTTP returned.
type timeoutRecorder struct {
	t        *testing.T
	header   http.Header
	returned atomic.Bool // ServeHTTP returned

	mu       sync.Mutex
	statuses []int
	body     strings.Builder
	flushes  int
}

func newTimeoutRecorder(t *testing.T) *timeoutRecorder {
	return &timeoutRecorder{t: t, header: make(http.Header)}
}

func (w *timeoutRecorder) check() {
	if w.returned.Load() {
		w.t.Error("ResponseWriter called after ServeHTTP returned")
	}
}

func (w *timeoutRecorder) Header() http.Header { return w.header }

func (w *timeoutRecorder) WriteHeader(code int) {
	w.check()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.statuses = append(w.statuses, code)
}

func (w *timeoutRecorder) Write(p []byte) (int, error) {
	w.check()
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.statuses) == 0 {
		w.statuses = append(w.statuses, http.StatusOK)
	}
	return w.body.Write(p)
}

func (w *timeoutRecorder) Flush() {
	w.check()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.flushes++
}

// recordedResponse is what a timeoutRecorder was sent.
type recordedResponse struct {
	statuses []int
	body     string
	flushed  bool
}

func (w *timeoutRecorder) recorded() recordedResponse {
	w.mu.Lock()
	defer w.mu.Unlock()
	return recordedResponse{statuses: w.statuses, body: w.body.String(), flushed: w.flushes > 0}
}

// assertNoneServing checks, once every goroutine of the bubble is blocked
// or gone, that none of the bubble's runs code of the Handler: no goroutine
// outlived ServeHTTP. Goroutines outside the bubble, such as the servers of
// other tests, are not its business.
func assertNoneServing(t *testing.T) {
	t.Helper()
	synctest.Wait()
	buf := make([]byte, 1<<20)
	stacks := strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n")
	// The first stack is the caller's, whose header names its bubble:
	// "goroutine 10 [running, synctest bubble 1]:".
	header, _, _ := strings.Cut(stacks[0], "\n")
	_, bubble, ok := strings.Cut(header, ", synctest bubble ")
	require.True(t, ok, "assertNoneServing runs in a synctest bubble: %s", header)
	for _, g := range stacks[1:] {
		header, _, _ := strings.Cut(g, "\n")
		if strings.HasSuffix(header, ", synctest bubble "+bubble) {
			assert.NotContains(t, g, "resilience/resiliencehttp.", "a goroutine outlived ServeHTTP")
		}
	}
}

// serveInBubble serves r with h on a goroutine, and returns a channel closed
// when ServeHTTP has returned.
func serveInBubble(h http.Handler, w *timeoutRecorder) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.ServeHTTP(w, newServerRequest())
		w.returned.Store(true)
	}()
	return done
}

func TestHandlerTimeoutAnswersWhileNextIgnoresItsCtx(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release, late := make(chan struct{}), make(chan error, 1)
		next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			<-release
			_, err := io.WriteString(w, "late")
			late <- err
		})
		w := newTimeoutRecorder(t)
		done := serveInBubble(resiliencehttp.Handler(next, resiliencehttp.WithRequestTimeout(time.Second)), w)

		time.Sleep(time.Second - 1)
		synctest.Wait()
		assert.Equal(t, recordedResponse{}, w.recorded(), "nothing before the deadline")

		time.Sleep(time.Nanosecond)
		synctest.Wait()
		assert.Equal(t, recordedResponse{statuses: []int{http.StatusServiceUnavailable}, body: "Service Unavailable\n", flushed: true},
			w.recorded(), "answered at the deadline, while next runs")
		assert.Equal(t, "20", w.header.Get("Content-Length"))
		select {
		case <-done:
			t.Fatal("ServeHTTP returned before next")
		default:
		}

		close(release)
		<-done
		assert.ErrorIs(t, <-late, http.ErrHandlerTimeout)
		assert.Equal(t, "Service Unavailable\n", w.recorded().body)
		assertNoneServing(t)
	})
}

func TestHandlerTimeoutOutcomes(t *testing.T) {
	const d = time.Second
	timedOut := recordedResponse{statuses: []int{http.StatusServiceUnavailable}, body: "Service Unavailable\n", flushed: true}
	tests := []struct {
		name string
		next func(t *testing.T, w http.ResponseWriter, r *http.Request)
		want recordedResponse
	}{
		{
			name: "returns in time without writing",
			next: func(t *testing.T, w http.ResponseWriter, r *http.Request) {},
			want: recordedResponse{},
		},
		{
			name: "writes in time",
			next: func(t *testing.T, w http.ResponseWriter, r *http.Request) {
				time.Sleep(d - 1)
				_, err := io.WriteString(w, "in time")
				assert.NoError(t, err)
			},
			want: recordedResponse{statuses: []int{http.StatusOK}, body: "in time"},
		},
		{
			name: "returns late without writing",
			next: func(t *testing.T, w http.ResponseWriter, r *http.Request) { time.Sleep(2 * d) },
			want: timedOut,
		},
		{
			name: "writes late, ignoring its ctx",
			next: func(t *testing.T, w http.ResponseWriter, r *http.Request) {
				time.Sleep(2 * d)
				w.WriteHeader(http.StatusTeapot)
				_, err := io.WriteString(w, "late")
				assert.ErrorIs(t, err, http.ErrHandlerTimeout)
			},
			want: timedOut,
		},
		{
			name: "answers its ctx's end itself",
			next: func(t *testing.T, w http.ResponseWriter, r *http.Request) {
				<-r.Context().Done()
				assert.ErrorIs(t, context.Cause(r.Context()), timeout.ErrExceeded)
				http.Error(w, "next's timeout", http.StatusGatewayTimeout)
				assert.ErrorIs(t, http.NewResponseController(w).Flush(), http.ErrHandlerTimeout)
			},
			want: timedOut,
		},
		{
			name: "began in time, ends late",
			next: func(t *testing.T, w http.ResponseWriter, r *http.Request) {
				_, _ = io.WriteString(w, "began")
				<-r.Context().Done()
				_, err := io.WriteString(w, ", ended")
				assert.NoError(t, err)
			},
			want: recordedResponse{statuses: []int{http.StatusOK}, body: "began, ended"},
		},
		{
			name: "sent early hints in time",
			next: func(t *testing.T, w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Link", "</style.css>; rel=preload")
				w.WriteHeader(http.StatusEarlyHints)
				<-r.Context().Done()
			},
			want: recordedResponse{statuses: []int{http.StatusEarlyHints, http.StatusServiceUnavailable},
				body: "Service Unavailable\n", flushed: true},
		},
		{
			name: "cannot hijack",
			next: func(t *testing.T, w http.ResponseWriter, r *http.Request) {
				_, _, err := http.NewResponseController(w).Hijack()
				assert.ErrorIs(t, err, http.ErrNotSupported)
				<-r.Context().Done()
				_, _, err = http.NewResponseController(w).Hijack()
				assert.ErrorIs(t, err, http.ErrHandlerTimeout)
			},
			want: timedOut,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { tt.next(t, w, r) })
				w := newTimeoutRecorder(t)
				<-serveInBubble(resiliencehttp.Handler(next, resiliencehttp.WithRequestTimeout(d)), w)
				assert.Equal(t, tt.want, w.recorded())
				assertNoneServing(t)
			})
		})
	}
}

func TestHandlerPanicsPropagate(t *testing.T) {
	fallback := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "fallback") })
	tests := []struct {
		name string
		opts func(*bulkhead.Bulkhead) []resiliencehttp.HandlerOption
	}{
		{name: "no option", opts: func(*bulkhead.Bulkhead) []resiliencehttp.HandlerOption { return nil }},
		{name: "every option", opts: func(bh *bulkhead.Bulkhead) []resiliencehttp.HandlerOption {
			return []resiliencehttp.HandlerOption{
				resiliencehttp.WithRateLimit(1, 10), resiliencehttp.WithLoadShedding(bh),
				resiliencehttp.WithRequestTimeout(time.Second), resiliencehttp.WithFallback(fallback),
			}
		}},
	}
	for _, tt := range tests {
		for _, value := range []any{http.ErrAbortHandler, "boom"} {
			for _, late := range []bool{false, true} {
				if late && tt.name == "no option" {
					continue // no deadline to be late for
				}
				t.Run(fmt.Sprintf("%s, %v, late %v", tt.name, value, late), func(t *testing.T) {
					synctest.Test(t, func(t *testing.T) {
						next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
							if late {
								<-r.Context().Done()
							}
							panic(value)
						})
						bh := bulkhead.New(1)
						h := resiliencehttp.Handler(next, tt.opts(bh)...)
						assert.PanicsWithValue(t, value, func() { h.ServeHTTP(newTimeoutRecorder(t), newServerRequest()) },
							"panic %v, after the deadline %v", value, late)
						assert.Equal(t, bulkhead.Metrics{}, bh.Metrics(), "the slot is released")
						assertNoneServing(t)
					})
				})
			}
		}
	}
}

func TestHandlerWaitsForTheFallback(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		fallback := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			<-release
			_, _ = io.WriteString(w, "fallback")
		})
		next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
		w := newTimeoutRecorder(t)
		done := serveInBubble(resiliencehttp.Handler(next, resiliencehttp.WithRequestTimeout(time.Second),
			resiliencehttp.WithFallback(fallback)), w)
		time.Sleep(time.Second)
		synctest.Wait()
		select {
		case <-done:
			t.Fatal("ServeHTTP returned while the fallback ran")
		default:
		}
		close(release)
		<-done
		assert.Equal(t, recordedResponse{statuses: []int{http.StatusOK}, body: "fallback", flushed: true}, w.recorded())
		assertNoneServing(t)
	})
}

func TestHandlerFallbackPanicAtTheDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fallback := http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic(http.ErrAbortHandler) })
		next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			<-r.Context().Done()
			// The fallback has the writer: this waits on it, then is
			// dropped.
			_, err := io.WriteString(w, "late")
			assert.ErrorIs(t, err, http.ErrHandlerTimeout)
		})
		h := resiliencehttp.Handler(next, resiliencehttp.WithRequestTimeout(time.Second), resiliencehttp.WithFallback(fallback))
		assert.PanicsWithValue(t, http.ErrAbortHandler, func() { h.ServeHTTP(newTimeoutRecorder(t), newServerRequest()) })
		assertNoneServing(t)
	})
}

func TestHandlerTimeoutAfterTheClientLeft(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancelCause(context.Background())
		gone := errors.New("client gone")
		next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			cancel(gone)
			<-r.Context().Done()
			assert.ErrorIs(t, context.Cause(r.Context()), gone)
		})
		w := newTimeoutRecorder(t)
		h := resiliencehttp.Handler(next, resiliencehttp.WithRequestTimeout(time.Second))
		h.ServeHTTP(w, newServerRequest().WithContext(ctx))
		require.Equal(t, recordedResponse{}, w.recorded(), "no timeout answer for a request cancelled by its own ctx")
	})
}
