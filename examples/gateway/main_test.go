package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// side is what a row says of one gateway.
type side struct {
	admitted, limited, shed, fallback, errors int
	p50, p99                                  string
}

// tableRow is a row of a table: its label and a side per gateway.
type tableRow struct {
	label string
	sides []side
}

// parseTables reads the per-second table and the summary table back from
// out: the rows under the header whose first column is "second", and those
// under the one whose first column is "client", each up to a blank line.
func parseTables(t *testing.T, out string) (seconds, clients []tableRow) {
	t.Helper()
	var into *[]tableRow
	for line := range strings.Lines(out) {
		line = strings.TrimRight(line, "\n")
		fields := strings.Fields(line)
		switch {
		case len(fields) == 0:
			into = nil
		case fields[0] == "second":
			into = &seconds
		case fields[0] == "client":
			into = &clients
		case into != nil:
			*into = append(*into, parseRow(t, line))
		}
	}
	return seconds, clients
}

func parseRow(t *testing.T, line string) tableRow {
	t.Helper()
	parts := strings.Split(line, "|")
	row := tableRow{label: strings.TrimSpace(parts[0])}
	for _, p := range parts[1:] {
		f := strings.Fields(p)
		require.Len(t, f, 7, "a side has 7 columns: %q", line)
		n := make([]int, 5)
		for i := range n {
			var err error
			n[i], err = strconv.Atoi(f[i])
			require.NoError(t, err, "column %d of %q", i+1, line)
		}
		row.sides = append(row.sides, side{n[0], n[1], n[2], n[3], n[4], f[5], f[6]})
	}
	return row
}

func (s side) answers() int { return s.admitted + s.limited + s.shed + s.fallback + s.errors }

// The program runs small, its tables add up, and they show what the
// protected gateway is for: the greedy client limited, the wave answered
// by the fallback, fewer 5xx than the bare gateway.
func TestRun(t *testing.T) {
	before := runtime.NumGoroutine()
	var out, logged bytes.Buffer
	err := run(context.Background(), []string{"-duration", "2s", "-seed", "7"}, &out, &logged)
	require.NoError(t, err)
	text := out.String()
	t.Log("\n" + text)
	assert.Empty(t, logged.String(), "the servers logged nothing")

	for line := range strings.Lines(text) {
		assert.LessOrEqual(t, len(strings.TrimRight(line, "\n")), 120, "a line fits in 120 columns: %q", line)
	}
	for _, want := range []string{"bare: ReverseProxy alone", "protected: resiliencehttp Handler and Transport",
		"admitted", "limited", "shed", "fallback", "5xx", "p50", "p99"} {
		assert.Contains(t, text, want)
	}

	seconds, summary := parseTables(t, text)
	require.Len(t, seconds, 2, "a row per second of -duration 2s:\n%s", text)
	for i, r := range seconds {
		assert.Equal(t, strconv.Itoa(i+1), r.label, "rows are numbered by second")
		require.Len(t, r.sides, 2, "a side per gateway: %v", r)
	}
	byName := map[string]tableRow{}
	for _, r := range summary {
		require.Len(t, r.sides, 2, "a side per gateway: %v", r)
		byName[r.label] = r
	}
	require.Len(t, byName, len(clients)+1, "a row per client and one for all: %v", summary)
	all := byName["all"]

	for g := range 2 {
		var perSecond, perClient side
		for _, r := range seconds {
			perSecond = perSecond.plus(r.sides[g])
		}
		for _, c := range clients {
			perClient = perClient.plus(byName[c.name].sides[g])
		}
		want := all.sides[g]
		want.p50, want.p99 = "", ""
		assert.Equal(t, want, perSecond, "gateway %d: the seconds add up to all", g)
		assert.Equal(t, want, perClient, "gateway %d: the clients add up to all", g)
	}

	bare, protected := all.sides[0], all.sides[1]
	assert.Positive(t, bare.answers(), "the bare gateway answered")
	assert.Zero(t, bare.limited+bare.shed+bare.fallback, "the bare gateway neither limits, sheds nor falls back")
	assert.Positive(t, bare.errors, "the wave's 5xx reach the bare gateway's clients")
	assert.Less(t, protected.errors, bare.errors, "the protected gateway lets fewer 5xx through")

	assert.Positive(t, byName["greedy"].sides[1].limited, "the greedy client is rate limited")
	for _, c := range clients {
		if c.name != "greedy" {
			assert.Zero(t, byName[c.name].sides[1].limited, "%s, polite, is never limited", c.name)
		}
	}
	assert.Positive(t, seconds[1].sides[1].fallback, "the wave, from %v, is answered by the fallback", waveStart)

	goroutinesEnd(t, before)
}

// goroutinesEnd checks that the goroutines are back to before within a
// few seconds: connections and servers end asynchronously once closed.
// (assert.Eventually would not do: it counts its own goroutine.)
func goroutinesEnd(t *testing.T, before int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); runtime.NumGoroutine() > before && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		var stacks strings.Builder
		pprof.Lookup("goroutine").WriteTo(&stacks, 1) //nolint:errcheck // into memory
		t.Errorf("%d goroutines left, %d before:\n%s", n, before, stacks.String())
	}
}

func (s side) plus(o side) side {
	return side{s.admitted + o.admitted, s.limited + o.limited, s.shed + o.shed, s.fallback + o.fallback,
		s.errors + o.errors, "", ""}
}

// syncBuffer is a bytes.Buffer safe for concurrent use, to read what run
// has printed while it runs.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// With -http, the program serves a dashboard of the protected gateway's
// breakers and load shedder while it runs, and prints its URL first.
func TestRunDashboard(t *testing.T) {
	before := runtime.NumGoroutine()
	var out, logged syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(context.Background(), []string{"-duration", "1s", "-http", "127.0.0.1:0"}, &out, &logged)
	}()

	var dashURL string
	require.Eventually(t, func() bool {
		for line := range strings.Lines(out.String()) {
			if u, ok := strings.CutPrefix(strings.TrimSpace(line), "dashboard: "); ok {
				dashURL = u
				return true
			}
		}
		return false
	}, 5*time.Second, 5*time.Millisecond, "run prints the dashboard's URL")
	assert.True(t, strings.HasPrefix(out.String(), "dashboard: http://127.0.0.1:"), "first:\n%s", out.String())
	require.True(t, strings.HasSuffix(dashURL, "/resilience/"), dashURL)

	resp, err := http.Get(dashURL + "snapshot.json")
	require.NoError(t, err)
	var snap struct {
		Breakers  []struct{ Name string } `json:"breakers"`
		Bulkheads []struct{ Name string } `json:"bulkheads"`
	}
	err = json.NewDecoder(resp.Body).Decode(&snap)
	resp.Body.Close()
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	var breakers, bulkheads []string
	for _, b := range snap.Breakers {
		breakers = append(breakers, b.Name)
	}
	for _, b := range snap.Bulkheads {
		bulkheads = append(bulkheads, b.Name)
	}
	assert.ElementsMatch(t, []string{"users", "orders"}, breakers)
	assert.Equal(t, []string{"gateway"}, bulkheads)

	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return")
	}
	text := out.String()
	seconds, summary := parseTables(t, text)
	assert.Len(t, seconds, 1, "the table follows the URL:\n%s", text)
	assert.Len(t, summary, len(clients)+1, "and the summary:\n%s", text)
	assert.Empty(t, logged.String(), "the servers logged nothing")
	_, err = http.Get(dashURL + "snapshot.json") //nolint:bodyclose // it fails
	assert.Error(t, err, "the dashboard stops with the run")
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	goroutinesEnd(t, before)
}

func TestRunFlags(t *testing.T) {
	tests := []struct {
		args []string
		want func(error) bool
		says string
	}{
		{[]string{"-h"}, func(err error) bool { return errors.Is(err, flag.ErrHelp) }, "-duration"},
		{[]string{"-duration", "soon"}, func(err error) bool { return errors.As(err, new(usageError)) }, "invalid value"},
		{[]string{"-duration", "0s"}, func(err error) bool { return errors.As(err, new(usageError)) }, "want a positive"},
		{[]string{"extra"}, func(err error) bool { return errors.As(err, new(usageError)) }, "unexpected argument"},
	}
	for _, tt := range tests {
		var out, usage bytes.Buffer
		err := run(context.Background(), tt.args, &out, &usage)
		assert.True(t, tt.want(err), "%v: got %v", tt.args, err)
		assert.Contains(t, usage.String(), tt.says, "%v", tt.args)
		assert.Empty(t, out.String(), "%v: no table", tt.args)
	}
}

// The protected gateway answers a GET its backend fails with the last good
// body of its path, or a default, and once the backend's breaker is open,
// answers from the fallback too, without reaching the backend.
func TestProtectedFallback(t *testing.T) {
	var failing atomic.Bool
	var reached atomic.Int64
	orders := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
		if failing.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"1"}`) //nolint:errcheck // the test reads it back
	}))
	defer orders.Close()
	target, err := url.Parse(orders.URL)
	require.NoError(t, err)
	transport := http.DefaultTransport.(*http.Transport).Clone()
	defer transport.CloseIdleConnections()
	gw := httptest.NewServer(newProtected(target, target, transport, log.New(t.Output(), "", 0)))
	defer gw.Close()

	get := func(path string) (status int, body, fallback, cause string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, gw.URL+path, nil)
		require.NoError(t, err)
		req.Header.Set("X-Api-Key", "tester")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(b), resp.Header.Get("X-Gateway-Fallback"), resp.Header.Get("X-Gateway-Fallback-Cause")
	}

	status, body, fallback, _ := get("/orders/1")
	assert.Equal(t, http.StatusOK, status)
	assert.JSONEq(t, `{"id":"1"}`, body)
	assert.Empty(t, fallback, "the backend answered")

	failing.Store(true)
	status, body, fallback, cause := get("/orders/1")
	assert.Equal(t, http.StatusOK, status)
	assert.JSONEq(t, `{"id":"1"}`, body, "the last good body")
	assert.Equal(t, "cached", fallback)
	assert.Equal(t, "upstream 503", cause, "after %d attempts", maxAttempts)

	status, body, fallback, _ = get("/orders/2")
	assert.Equal(t, http.StatusOK, status)
	assert.JSONEq(t, `{"path":"/orders/2","available":false}`, body, "no good body yet")
	assert.Equal(t, "default", fallback)

	// Every request fails all its attempts: the breaker, which opens when
	// half of at least 10 attempts failed, is open after a few.
	for range 5 {
		get("/orders/1")
	}
	n := reached.Load()
	_, body, fallback, cause = get("/orders/1")
	assert.Equal(t, "circuit open", cause, "the Transport's refusal goes to the fallback, not to a 502")
	assert.Equal(t, "cached", fallback)
	assert.JSONEq(t, `{"id":"1"}`, body)
	assert.Equal(t, n, reached.Load(), "the open breaker spares the backend")

	resp, err := http.Post(gw.URL+"/orders/1", "application/json", strings.NewReader(`{}`))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "a POST has no fallback: the refusal is a 503")
	assert.NotEmpty(t, resp.Header.Get("Retry-After"), "with the break's end")
	assert.Equal(t, n, reached.Load(), "the open breaker spares the backend")
}

func TestHistogram(t *testing.T) {
	for _, d := range []time.Duration{0, time.Microsecond, 31 * time.Microsecond, 64 * time.Microsecond,
		999 * time.Microsecond, 3 * time.Millisecond, 250 * time.Millisecond, 7 * time.Second, time.Hour} {
		var h histogram
		h.add(d)
		got := h.percentile(0.5)
		assert.InDelta(t, float64(d), float64(got), max(0.03*float64(d), float64(time.Microsecond)), "%v: got %v", d, got)
	}
	var h histogram
	for i := 1; i <= 100; i++ {
		h.add(time.Duration(i) * time.Millisecond)
	}
	assert.InDelta(t, float64(50*time.Millisecond), float64(h.percentile(0.50)), 0.03*float64(50*time.Millisecond))
	assert.InDelta(t, float64(99*time.Millisecond), float64(h.percentile(0.99)), 0.03*float64(99*time.Millisecond))
	assert.Zero(t, (&histogram{}).percentile(0.5), "empty")
}
