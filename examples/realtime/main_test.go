package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"regexp"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The environment variables that name the services, and the one that
// requires them, as in internal/servicetest.
const (
	mqttURLVar = "RESILIENCE_MQTT_URL"
	requireVar = "RESILIENCE_REQUIRE_SERVICES"
)

// lookup returns the value of the environment variable name. When it is
// unset it skips the test, or fails it if RESILIENCE_REQUIRE_SERVICES=1.
func lookup(t *testing.T, name string) string {
	t.Helper()
	if v := os.Getenv(name); v != "" {
		return v
	}
	if os.Getenv(requireVar) == "1" {
		t.Fatalf("%s is not set, and %s=1 requires the service", name, requireVar)
	}
	t.Skipf("%s is not set: skipping a test that needs the service (see README, integration tests)", name)
	return ""
}

// uniqueTopic returns a topic prefix no other run uses.
func uniqueTopic(t *testing.T) string {
	t.Helper()
	var b [6]byte
	_, err := rand.Read(b[:])
	require.NoError(t, err)
	return "test.realtime." + hex.EncodeToString(b[:])
}

// row is a row of the per-second table.
type row struct {
	second                   int
	down                     bool
	in, enriched, stale, raw int
	states                   []string
}

// result is what a run printed, read back.
type result struct {
	rows                                      []row
	published, subscribers, got, sent, served int
	enriched, stale, raw                      int
	byBreaker, byTimeout, byError             int
	opened, halfOpened, closed, calls         int
}

var (
	summaryRE = regexp.MustCompile(`^Published (\d+) quotes to (\d+) subscribers; they got (\d+) of (\d+) ` +
		`and served (\d+): (\d+) enriched, (\d+) stale, (\d+) raw\.$`)
	causesRE  = regexp.MustCompile(`^Stale answers, by cause: breaker open (\d+), timeout (\d+), error (\d+)\.$`)
	changesRE = regexp.MustCompile(`^The breaker opened (\d+) times?, went half-open (\d+) times? and closed (\d+) times?; ` +
		`the enrichment service got (\d+) calls\.$`)
)

// parseOutput reads the table and the summary back from out.
func parseOutput(t *testing.T, out string) result {
	t.Helper()
	var r result
	ints := func(line string, re *regexp.Regexp, into ...*int) bool {
		m := re.FindStringSubmatch(line)
		if m == nil {
			return false
		}
		for i, p := range into {
			n, err := strconv.Atoi(m[i+1])
			require.NoError(t, err, line)
			*p = n
		}
		return true
	}
	var seen [3]bool
	inTable := false
	for line := range strings.Lines(out) {
		line = strings.TrimRight(line, "\n")
		assert.LessOrEqual(t, len(line), 120, "a line fits in 120 columns: %q", line)
		f := strings.Fields(line)
		switch {
		case len(f) == 0:
			inTable = false
		case f[0] == "second":
			inTable = true
			assert.Equal(t, []string{"second", "enrichment", "in", "enriched", "stale", "raw", "p50", "p99", "breaker"}, f)
		case inTable:
			require.Len(t, f, 9, "a row has 9 columns: %q", line)
			n := make([]int, 5)
			for i, col := range []int{0, 2, 3, 4, 5} {
				var err error
				n[i], err = strconv.Atoi(f[col])
				require.NoError(t, err, "column %d of %q", col+1, line)
			}
			require.Contains(t, []string{"up", "down"}, f[1], line)
			for _, p := range f[6:8] {
				assert.Regexp(t, `^\d+(\.\d+)?ms$`, p, line)
			}
			r.rows = append(r.rows, row{n[0], f[1] == "down", n[1], n[2], n[3], n[4], strings.Split(f[8], ">")})
		default:
			seen[0] = seen[0] || ints(line, summaryRE, &r.published, &r.subscribers, &r.got, &r.sent, &r.served,
				&r.enriched, &r.stale, &r.raw)
			seen[1] = seen[1] || ints(line, causesRE, &r.byBreaker, &r.byTimeout, &r.byError)
			seen[2] = seen[2] || ints(line, changesRE, &r.opened, &r.halfOpened, &r.closed, &r.calls)
		}
	}
	require.Equal(t, [3]bool{true, true, true}, seen, "the summary has its three lines:\n%s", out)
	return r
}

// checkRun asserts what a run of seconds with subscribers must show: the
// breaker opened during the outage and closed again after it, the
// subscribers served stale answers meanwhile, and every quote published
// reached every subscriber and was served.
func checkRun(t *testing.T, out string, seconds, subscribers int) {
	t.Helper()
	r := parseOutput(t, out)
	require.Len(t, r.rows, seconds, "a row a second:\n%s", out)

	var in, served, staleDown, staleUp int
	var path []string
	for i, row := range r.rows {
		assert.Equal(t, i+1, row.second, "rows are numbered by second")
		in += row.in
		served += row.enriched + row.stale + row.raw
		if row.down {
			staleDown += row.stale
		} else {
			staleUp += row.stale
		}
		if i == 0 {
			assert.Equal(t, []string{"closed"}, row.states, "the breaker starts closed and stays so while the service answers")
			assert.False(t, row.down, "the service answers in the first second")
			path = row.states
			continue
		}
		require.NotEmpty(t, row.states)
		assert.Equal(t, path[len(path)-1], row.states[0], "a row starts in the state the last one ended in: %q", out)
		path = append(path, row.states[1:]...)
	}
	assert.False(t, r.rows[len(r.rows)-1].down, "the service answers again in the last second")

	// The breaker went open, half-open, and closed again.
	opened := strings.Index(strings.Join(path, ">"), "closed>open")
	closedAgain := strings.LastIndex(strings.Join(path, ">"), "half-open>closed")
	assert.True(t, opened >= 0 && closedAgain > opened, "the breaker opened, then closed again: %v", path)
	assert.Equal(t, "closed", path[len(path)-1], "the breaker ends closed")
	assert.Positive(t, r.opened)
	assert.Positive(t, r.halfOpened)
	assert.Positive(t, r.closed)
	assert.Equal(t, strings.Count(strings.Join(path, ">"), ">open"), r.opened, "the summary counts the table's opens")

	// Stale answers, during the outage.
	assert.Positive(t, staleDown, "stale answers while the service hung:\n%s", out)
	assert.Positive(t, r.stale)
	assert.Positive(t, r.byBreaker, "most stale answers come from the open breaker, at once")
	assert.Equal(t, r.stale, r.byBreaker+r.byTimeout+r.byError, "each stale answer has a cause")
	assert.Less(t, r.calls, r.got, "the breaker spared the service calls")

	// Nothing lost: each subscriber got and served every quote.
	assert.Equal(t, subscribers, r.subscribers)
	assert.Positive(t, r.published)
	assert.Equal(t, r.published*subscribers, r.sent)
	assert.Equal(t, r.sent, r.got, "every subscriber got every quote")
	assert.Equal(t, r.got, r.served, "and served it")
	assert.Equal(t, r.served, r.enriched+r.stale+r.raw)
	assert.Equal(t, r.got, in, "the rows add up to the summary")
	assert.Equal(t, r.served, served, "the rows add up to the summary")
	assert.NotContains(t, out, "did not deliver")
	assert.NotContains(t, out, "not JSON")
	assert.NotContains(t, out, "had not served")
}

// runSmall runs the program for 5s with 2 subscribers, on its own topic,
// with the broker args, and checks what it printed, and that it left no
// goroutine behind.
func runSmall(t *testing.T, broker ...string) {
	t.Helper()
	before := runtime.NumGoroutine()
	var out, errOut bytes.Buffer
	args := append([]string{"-duration", "5s", "-subscribers", "2", "-rate", "200", "-topic", uniqueTopic(t)}, broker...)
	err := run(context.Background(), args, &out, &errOut)
	t.Log("\n" + out.String())
	require.NoError(t, err, errOut.String())
	assert.Empty(t, errOut.String())
	checkRun(t, out.String(), 5, 2)
	goroutinesEnd(t, before)
}

// The program runs with a NATS server of its own.
func TestRunEmbedded(t *testing.T) {
	runSmall(t, "-embedded")
}

// goroutinesEnd checks that the goroutines are back to before within a
// few seconds: connections and servers end asynchronously once closed.
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

// The program runs against the NATS server of RESILIENCE_NATS_URL.
func TestRunNATS(t *testing.T) {
	runSmall(t, "-broker", lookup(t, natsURLVar))
}

// The program runs against the MQTT broker of RESILIENCE_MQTT_URL.
func TestRunMQTT(t *testing.T) {
	runSmall(t, "-broker", lookup(t, mqttURLVar))
}

// lines is a Writer that calls f with each line written to it.
type lines struct {
	buf, all bytes.Buffer
	f        func(line string)
}

func (w *lines) Write(p []byte) (int, error) {
	w.all.Write(p)
	w.buf.Write(p)
	for {
		line, err := w.buf.ReadString('\n')
		if err != nil { // no whole line yet
			w.buf.WriteString(line)
			return len(p), nil
		}
		w.f(strings.TrimSuffix(line, "\n"))
	}
}

// Interrupted, the program stops the ticker, serves the quotes its
// subscribers got, and prints the summary.
func TestRunInterrupted(t *testing.T) {
	before := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := &lines{f: func(line string) {
		if f := strings.Fields(line); len(f) > 0 && f[0] == "1" {
			cancel() // after the first row, as an interrupt would
		}
	}}
	var errOut bytes.Buffer
	err := run(ctx, []string{"-embedded", "-duration", "1m", "-topic", uniqueTopic(t)}, w, &errOut)
	out := w.all.String()
	t.Log("\n" + out)
	require.NoError(t, err, errOut.String())
	r := parseOutput(t, out)
	require.Len(t, r.rows, 2, "the first row, and the last with what was served after the interrupt:\n%s", out)
	assert.Positive(t, r.published)
	assert.Equal(t, r.published*3, r.sent)
	assert.Equal(t, r.sent, r.got, "every subscriber got every quote")
	assert.Equal(t, r.got, r.served, "and served it")
	assert.Equal(t, r.served, r.enriched, "the service did not hang before the interrupt")
	assert.Zero(t, r.opened)
	goroutinesEnd(t, before)
}

// closedPort returns a loopback address where nothing listens.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// When no broker answers, the program says which address it tried and how
// to start one, and prints nothing else.
func TestRunNoBroker(t *testing.T) {
	t.Parallel()
	tests := []struct {
		scheme string
		want   []string
	}{
		{"nats", []string{"no NATS server answers at %s", "nats-server", "docker run -p 4222:4222 nats", "-embedded"}},
		{"mqtt", []string{"no MQTT broker answers at %s", "mosquitto -p 1883", "eclipse-mosquitto", "-embedded"}},
	}
	for _, tt := range tests {
		t.Run(tt.scheme, func(t *testing.T) {
			addr := closedPort(t)
			var out, errOut bytes.Buffer
			err := run(context.Background(), []string{"-broker", tt.scheme + "://" + addr}, &out, &errOut)
			require.Error(t, err)
			var usage usageError
			assert.False(t, errors.As(err, &usage), "not a usage error: %v", err)
			for _, w := range tt.want {
				if strings.Contains(w, "%s") {
					w = fmt.Sprintf(w, addr)
				}
				assert.Contains(t, err.Error(), w)
			}
			_, hint, ok := strings.Cut(err.Error(), "\n")
			require.True(t, ok, "the hint is on lines of its own: %q", err)
			for line := range strings.Lines(hint) {
				assert.LessOrEqual(t, len(strings.TrimRight(line, "\n")), 120, "fits in 120 columns: %q", line)
			}
			assert.Empty(t, out.String())
			assert.Empty(t, errOut.String())
		})
	}
}

// Bad command lines are refused, saying what is wrong, before anything runs.
func TestRunUsage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-duration", "500ms"}, "-duration 500ms: want at least 1s"},
		{[]string{"-rate", "0"}, "-rate 0: want 1 to 100000"},
		{[]string{"-subscribers", "65"}, "-subscribers 65: want 1 to 64"},
		{[]string{"-topic", "prices.>"}, `-topic "prices.>": want words`},
		{[]string{"-topic", "a..b"}, `-topic "a..b": want words`},
		{[]string{"-broker", "nats://127.0.0.1:4222", "-embedded"}, "want one of them"},
		{[]string{"extra"}, `unexpected argument "extra"`},
		{[]string{"-rate", "many"}, `invalid value "many" for flag -rate`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := run(context.Background(), tt.args, &out, &errOut)
			var usage usageError
			require.ErrorAs(t, err, &usage)
			assert.Contains(t, errOut.String(), tt.want)
			assert.Contains(t, errOut.String(), "usage: realtime")
			assert.Empty(t, out.String())
		})
	}

	bad := []struct{ broker, want string }{
		{"ftp://127.0.0.1:21", `scheme "ftp": want nats:// or mqtt://`},
		{"127.0.0.1:4222", "want nats://host:port or mqtt://host:port"},
	}
	for _, tt := range bad {
		err := run(context.Background(), []string{"-broker", tt.broker}, &bytes.Buffer{}, &bytes.Buffer{})
		require.Error(t, err, tt.broker)
		assert.Contains(t, err.Error(), tt.want)
	}

	var errOut bytes.Buffer
	err := run(context.Background(), []string{"-h"}, &bytes.Buffer{}, &errOut)
	assert.ErrorIs(t, err, flag.ErrHelp)
	assert.Contains(t, errOut.String(), "-embedded")
}

// -broker defaults to RESILIENCE_NATS_URL when it is set, and a topic of
// its own for each run.
func TestParseDefaults(t *testing.T) {
	t.Setenv(natsURLVar, "nats://192.0.2.1:4333")
	cfg, err := parse(nil, &bytes.Buffer{})
	require.NoError(t, err)
	assert.Equal(t, "nats://192.0.2.1:4333", cfg.broker)
	assert.Regexp(t, `^ticker\.[0-9a-f]{8}$`, cfg.topic)
	other, err := parse(nil, &bytes.Buffer{})
	require.NoError(t, err)
	assert.NotEqual(t, cfg.topic, other.topic, "each run has a topic of its own")

	t.Setenv(natsURLVar, "")
	cfg, err = parse(nil, &bytes.Buffer{})
	require.NoError(t, err)
	assert.Equal(t, "nats://127.0.0.1:4222", cfg.broker)
}
