package dashboard_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience/circuitbreaker"
	"github.com/resilience-go/resilience/dashboard"
)

// streamWriter is a ResponseWriter that a test reads while a handler
// writes to it.
type streamWriter struct {
	header http.Header
	mu     sync.Mutex
	buf    bytes.Buffer
	status int
}

func newStreamWriter() *streamWriter { return &streamWriter{header: http.Header{}} }

func (w *streamWriter) Header() http.Header { return w.header }
func (w *streamWriter) WriteHeader(code int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.status = code
}
func (w *streamWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}
func (w *streamWriter) Flush() {}

// take returns what was written since the last take.
func (w *streamWriter) take() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.buf.String()
	w.buf.Reset()
	return s
}

// serve runs d's handler for a GET of path in a goroutine of its own, and
// returns the writer and a channel closed when the handler returns.
func serve(d *dashboard.Dashboard, ctx context.Context, path string, header http.Header) (*streamWriter, <-chan struct{}) {
	w := newStreamWriter()
	r := httptest.NewRequestWithContext(ctx, http.MethodGet, path, nil)
	for k, v := range header {
		r.Header[k] = v
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.ServeHTTP(w, r)
	}()
	return w, done
}

func fail(context.Context) error { return errors.New("down") }

// The stream sends the sections at once, then each second those whose
// HTML changed; it ends when its client goes away, and no goroutine of it
// outlives it.
func TestStream(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := circuitbreaker.New(circuitbreaker.WithName("payments"), circuitbreaker.WithConsecutiveFailures(3))
		d := dashboard.New(dashboard.WithBreaker(b))
		ctx, cancel := context.WithCancel(t.Context())
		w, done := serve(d, ctx, "/resilience/events", nil)
		synctest.Wait()
		first := w.take()
		assert.Equal(t, "text/event-stream", w.header.Get("Content-Type"))
		assert.True(t, strings.HasPrefix(first, "retry: 2000\n\nevent: breakers\ndata: "), first)
		assert.Contains(t, first, `data: <tr class="breaker" data-name="payments" data-state="closed">`)
		assert.Contains(t, first, "event: events\n")
		assert.Contains(t, first, "event: tick\ndata: 2000-01-01T")
		assert.NotContains(t, first, "event: outboxes", "no section of what the dashboard does not show")

		for range 3 {
			_ = b.Do(ctx, fail)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		next := w.take()
		assert.Contains(t, next, `data: <tr class="breaker" data-name="payments" data-state="open">`)
		assert.Contains(t, next, "event: tick\n")
		assert.NotContains(t, next, "event: events\n", "the events did not change")

		time.Sleep(time.Second / 2)
		synctest.Wait()
		assert.Empty(t, w.take(), "a push a second")

		cancel()
		synctest.Wait()
		select {
		case <-done:
		default:
			t.Fatal("the stream goes on after its client went away")
		}
	})
}

// Close ends the streams, and refuses new ones.
func TestStreamClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := dashboard.New()
		_, done1 := serve(d, t.Context(), "/events", nil)
		_, done2 := serve(d, t.Context(), "/events", nil)
		synctest.Wait()
		d.Close()
		synctest.Wait()
		for _, done := range []<-chan struct{}{done1, done2} {
			select {
			case <-done:
			default:
				t.Fatal("a stream goes on after Close")
			}
		}
		w, done := serve(d, t.Context(), "/events", nil)
		<-done
		assert.Equal(t, http.StatusServiceUnavailable, w.status)
		d.Close() // again: nothing
	})
}

// An operator's action is pushed to every stream at once, not at the next
// second.
func TestStreamAction(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := circuitbreaker.New(circuitbreaker.WithName("payments"))
		d := dashboard.New(dashboard.WithBreaker(b), dashboard.WithActions(func(*http.Request) bool { return true }))

		// Load the page, for its cookie and token.
		page := httptest.NewRecorder()
		d.ServeHTTP(page, httptest.NewRequest(http.MethodGet, "/", nil))
		cookies := page.Result().Cookies()
		require.Len(t, cookies, 1)
		m := tokenRE.FindStringSubmatch(page.Body.String())
		require.NotNil(t, m)

		w, done := serve(d, t.Context(), "/events", nil)
		synctest.Wait()
		assert.Contains(t, w.take(), `data-do="breaker-open" data-name="payments"`, "the stream's sections have buttons")

		time.Sleep(time.Second / 4)
		form := url.Values{"do": {"breaker-open"}, "name": {"payments"}}
		r := httptest.NewRequest(http.MethodPost, "/action", strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.Header.Set("X-Resilience-Token", m[1])
		r.AddCookie(cookies[0])
		rec := httptest.NewRecorder()
		d.ServeHTTP(rec, r)
		require.Equal(t, http.StatusNoContent, rec.Code, rec.Body.String())
		synctest.Wait()
		pushed := w.take()
		assert.Contains(t, pushed, `data-state="forced-open"`)
		assert.Contains(t, pushed, "force open", "the action is an event")

		d.Close()
		<-done
	})
}

// A server's Shutdown does not wait for the streams when Close is
// registered with it.
func TestStreamShutdown(t *testing.T) {
	d := dashboard.New()
	srv := httptest.NewUnstartedServer(d)
	srv.Config.RegisterOnShutdown(d.Close)
	srv.Start()
	defer srv.Close()

	resp, err := srv.Client().Get(srv.URL + "/events")
	require.NoError(t, err)
	defer resp.Body.Close()
	buf := make([]byte, 1024)
	var got strings.Builder
	for !strings.Contains(got.String(), "event: tick") {
		n, err := resp.Body.Read(buf)
		got.Write(buf[:n])
		require.NoError(t, err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, srv.Config.Shutdown(ctx), "Shutdown waited for the stream")
	_, err = io.Copy(io.Discard, resp.Body)
	assert.NoError(t, err, "the stream ended")
}

// A server's WriteTimeout does not cut a stream whose client reads.
func TestStreamWriteTimeout(t *testing.T) {
	d := dashboard.New()
	srv := httptest.NewUnstartedServer(d)
	srv.Config.WriteTimeout = 100 * time.Millisecond
	srv.Start()
	defer srv.Close()
	defer d.Close()

	resp, err := srv.Client().Get(srv.URL + "/events")
	require.NoError(t, err)
	defer resp.Body.Close()
	buf := make([]byte, 1024)
	var got strings.Builder
	for strings.Count(got.String(), "event: tick") < 3 { // two seconds, and more
		n, err := resp.Body.Read(buf)
		got.Write(buf[:n])
		require.NoError(t, err, "the stream goes on past the WriteTimeout")
	}
}
