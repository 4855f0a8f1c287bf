package main

import (
	"bytes"
	"encoding/xml"
	"errors"
	"flag"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// table returns the rows of the printed table under the line that starts
// with title: the numbers of each row, by its number of clients.
func table(t *testing.T, out, title string) map[int][]float64 {
	t.Helper()
	_, rest, ok := strings.Cut(out, "\n"+title)
	require.True(t, ok, "no table %q in:\n%s", title, out)
	lines := strings.Split(rest, "\n")[2:] // the title's end and the header
	rows := map[int][]float64{}
	for _, line := range lines {
		clients, cells, ok := strings.Cut(line, "|")
		if !ok {
			break
		}
		n, err := strconv.Atoi(strings.TrimSpace(clients))
		require.NoError(t, err, line)
		for _, cell := range strings.Fields(cells) {
			v, err := strconv.ParseFloat(strings.TrimSuffix(cell, "%"), 64)
			require.NoError(t, err, line)
			rows[n] = append(rows[n], v)
		}
	}
	return rows
}

// The program runs small: its tables have a row per number of clients and
// a column per strategy, every client either completes or gives up, full
// jitter costs the server fewer writes than plain exponential and no
// backoff, and its chart is an SVG document with a line per strategy in
// each of its two panels.
func TestRun(t *testing.T) {
	svg := filepath.Join(t.TempDir(), "jitter.svg")
	var out, errOut bytes.Buffer
	s, err := run([]string{"-min", "20", "-max", "80", "-step", "30", "-runs", "12", "-seed", "3", "-svg", svg}, &out, &errOut)
	require.NoError(t, err, errOut.String())
	text := out.String()
	require.Equal(t, []int{20, 50, 80}, s.clients)

	for i, st := range strategies {
		for c, n := range s.clients {
			o := s.sums[i][c]
			assert.Equal(t, n*12, o.completed+o.gaveUp, "%s, %d clients: every client completes or gives up", st.name, n)
			if !st.budget {
				assert.Zero(t, o.gaveUp, "%s, %d clients: only a budget gives up", st.name, n)
			}
			assert.GreaterOrEqual(t, o.writes, o.completed, "%s, %d clients: a write per completion at least", st.name, n)
		}
	}

	full, expo, none := strategyIndex("full jitter"), strategyIndex("exponential"), strategyIndex("none")
	budget := strategyIndex("full jitter+budget")
	work := table(t, text, "Writes per completed client")
	times := table(t, text, "Completion time")
	require.Len(t, work, 3, text)
	require.Len(t, times, 3, text)
	for _, n := range s.clients {
		require.Len(t, work[n], len(strategies)+1, "a column per strategy and the share that gave up:\n%s", text)
		require.Len(t, times[n], len(strategies), text)
	}
	assert.Less(t, work[80][full], work[80][expo], "full jitter needs fewer writes than exponential at 80 clients:\n%s", text)
	assert.Less(t, work[80][full], work[80][none], "full jitter needs fewer writes than no backoff at 80 clients:\n%s", text)
	assert.Less(t, times[80][full], times[80][expo], "full jitter finishes before exponential at 80 clients:\n%s", text)
	assert.Greater(t, work[80][len(strategies)], 50.0, "the budget refuses most retries of 80 contending clients:\n%s", text)
	o := s.sums[budget][2]
	assert.Contains(t, text, "With a budget, "+strconv.Itoa(o.completed)+" of 960 clients completed and "+
		strconv.Itoa(o.gaveUp)+" gave up")
	assert.Contains(t, text, "At 80 clients, full jitter made ")
	assert.Contains(t, text, "Chart written to "+svg)

	b, err := os.ReadFile(svg)
	require.NoError(t, err)
	lines := polylines(t, b)
	require.Equal(t, []string{"work", "time"}, keys(lines))
	for panel, names := range lines {
		var want []string
		for _, st := range strategies {
			want = append(want, st.name)
		}
		assert.Equal(t, want, names, "panel %s: one polyline per strategy", panel)
	}
}

// polylines parses an SVG document and returns the strategies of the
// polylines in each group, by the group's id, in the order of the groups.
func polylines(t *testing.T, doc []byte) map[string][]string {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(doc))
	lines := map[string][]string{}
	var group string
	root := true
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err, "well-formed XML")
		el, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		if root {
			require.Equal(t, xml.Name{Space: "http://www.w3.org/2000/svg", Local: "svg"}, el.Name)
			root = false
		}
		attr := func(name string) string {
			for _, a := range el.Attr {
				if a.Name.Local == name {
					return a.Value
				}
			}
			return ""
		}
		switch el.Name.Local {
		case "g":
			group = attr("id")
			lines[group] = nil
		case "polyline":
			points := strings.Fields(attr("points"))
			assert.Len(t, points, 3, "a point per number of clients")
			lines[group] = append(lines[group], attr("data-strategy"))
		}
	}
	return lines
}

// keys returns the ids of the groups: "work" then "time" when the chart
// has both and nothing else.
func keys(m map[string][]string) []string {
	var ks []string
	for _, k := range []string{"work", "time"} {
		if _, ok := m[k]; ok {
			ks = append(ks, k)
		}
	}
	if len(ks) != len(m) {
		ks = append(ks, "others")
	}
	return ks
}

// The chart in docs is the one the program draws with its default flags,
// as `go run ./examples/jitter -svg docs/jitter.svg` makes it. The program
// runs in a process of its own, without the race detector, which would
// make its minute of simulation many.
func TestCommittedChart(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the full sweep takes seconds")
	}
	want, err := os.ReadFile(filepath.Join("..", "..", "docs", "jitter.svg"))
	require.NoError(t, err)
	svg := filepath.Join(t.TempDir(), "jitter.svg")
	cmd := exec.Command("go", "run", ".", "-svg", svg)
	cmd.Env = append(os.Environ(), "GOFLAGS=")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	got, err := os.ReadFile(svg)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(want, got), "docs/jitter.svg is not what the program draws: "+
		"run go run ./examples/jitter -svg docs/jitter.svg")
}

// Bad flags are refused with a message that says what is wrong.
func TestBadFlags(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-min", "0"}, "-min 0: want 1 to 10000 clients"},
		{[]string{"-min", "50", "-max", "40"}, "-max 40: want -min (50) to 10000 clients"},
		{[]string{"-step", "0"}, "-step 0: want at least 1"},
		{[]string{"-runs", "0"}, "-runs 0: want 1 to 100000"},
		{[]string{"extra"}, `unexpected argument "extra"`},
		{[]string{"-clients", "5"}, "flag provided but not defined: -clients"},
	}
	for _, tt := range tests {
		var out, errOut bytes.Buffer
		_, err := run(tt.args, &out, &errOut)
		var usage usageError
		require.ErrorAs(t, err, &usage, "%v", tt.args)
		assert.Contains(t, errOut.String(), tt.want, "%v", tt.args)
		assert.Empty(t, out.String(), "%v", tt.args)
	}
	_, err := run([]string{"-h"}, io.Discard, io.Discard)
	assert.ErrorIs(t, err, flag.ErrHelp)
}
