package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience/dashboard"
	"github.com/resilience-go/resilience/internal/servicetest"
)

// The program runs small, on SQLite and on PostgreSQL, and its numbers add
// up: every order completed or compensated, each with the events of what
// happened to it in order, and the stock sold is the stock gone.
func TestRun(t *testing.T) {
	for _, name := range []string{"sqlite", "postgres"} {
		t.Run(name, func(t *testing.T) {
			dsn := "" // SQLite in a temporary directory
			if name == "postgres" {
				dsn = servicetest.Postgres(t).DSN // a schema of its own
			}
			var out bytes.Buffer
			cfg := config{dsn: dsn, orders: 16, decline: 0.3, flaky: 0.4, workers: 4, seed: 7, initStock: 100}
			rep, err := run(context.Background(), cfg, &out)
			require.NoError(t, err, out.String())
			assert.Equal(t, 16, rep.completed+rep.compensated, out.String())
			assert.Positive(t, rep.compensated, "some cards are declined")
			assert.Positive(t, rep.completed)
			assert.Positive(t, rep.timeouts, "some charges time out, and are retried")
			completed, compensated := 0, 0
			for id, events := range rep.events {
				switch len(events) {
				case 3:
					assert.Equal(t, []string{"stock.reserved", "payment.charged", "shipment.created"}, events, id)
					completed++
				default:
					assert.Equal(t, []string{"stock.reserved", "stock.released"}, events, id)
					compensated++
				}
			}
			assert.Equal(t, rep.completed, completed)
			assert.Equal(t, rep.compensated, compensated)
			assert.Equal(t, rep.stockBefore-rep.sold, rep.stockNow)
			assert.Contains(t, out.String(), "adds up")
		})
	}
}

// lines is a Writer that calls f with each line written to it.
type lines struct {
	buf bytes.Buffer
	f   func(line string)
}

func (w *lines) Write(p []byte) (int, error) {
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

// With -http the program serves the dashboard of its outbox and its sagas
// while it runs, and after, until interrupted.
func TestRunDashboard(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var (
		base string
		snap dashboard.Snapshot
		out  strings.Builder
	)
	w := &lines{f: func(line string) {
		out.WriteString(line + "\n")
		if url, ok := strings.CutPrefix(line, "dashboard: http://"); ok {
			base = "http://" + url
		}
		if line != "dashboard: serving until interrupted" {
			return
		}
		defer cancel() // as an interrupt would
		resp, err := http.Get(base + "snapshot.json")
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&snap))
	}}
	cfg := config{orders: 8, decline: 0.3, flaky: 0.4, workers: 2, seed: 7, initStock: 100, http: "127.0.0.1:0"}
	rep, err := run(ctx, cfg, w)
	require.NoError(t, err, out.String())
	assert.Equal(t, 8, rep.completed+rep.compensated)
	assert.True(t, strings.HasPrefix(base, "http://127.0.0.1:"), out.String())
	require.Len(t, snap.Outboxes, 1, out.String())
	assert.Equal(t, "events", snap.Outboxes[0].Name)
	assert.Empty(t, snap.Outboxes[0].Error)
	assert.Equal(t, int64(0), snap.Outboxes[0].Pending, "the relay published every event")
	require.Len(t, snap.Sagas, 1)
	assert.Equal(t, "checkout", snap.Sagas[0].Name)
	assert.Empty(t, snap.Sagas[0].Error)
	assert.Empty(t, snap.Sagas[0].Instances, "every saga ended")

	_, err = http.Get(base)
	assert.Error(t, err, "the server stopped when the program was interrupted")
}
