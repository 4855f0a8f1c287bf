package main

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience/internal/servicetest"
)

// small returns a configuration that runs in a moment: n records, a busy
// service, progress lines.
func small(n int) config {
	return config{
		n: n, prefix: "batch_", workers: 16, concurrency: 8, attempts: 3, timeout: 20 * time.Millisecond,
		service: enricher{seed: 7, latency: 200 * time.Microsecond, fail: 0.2, slow: 0.01, slowFor: 100 * time.Millisecond,
			invalid: 0.02},
	}
}

// progressLine is a plain progress line; its groups are the records done,
// the total, the share, the rate, the ETA, the retries and the failures.
var progressLine = regexp.MustCompile(`^progress: (\d+)/(\d+) records \((\d+\.\d)%\), (\d+) records/s, ETA (\S+), ` +
	`retried (\d+), failed (\d+)$`)

// checkLines reads back the output of a run in plain lines: the first
// line, progress lines whose counts never go back and whose last one says
// all is done, and the summary.
func checkLines(t *testing.T, out string, total, before int) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	require.NotEmpty(t, lines)
	assert.Regexp(t, fmt.Sprintf(`^Importing %d records into .* \(tables \w+records, \w+dead_letters\): %d done before, %d to do\.$`,
		total, before, total-before), lines[0])
	var last []string
	prevDone, prevRetried, prevFailed := 0, 0, 0
	for _, line := range lines[1:] {
		if !strings.HasPrefix(line, "progress:") {
			continue
		}
		m := progressLine.FindStringSubmatch(line)
		require.NotNil(t, m, "a progress line: %q", line)
		done, _ := strconv.Atoi(m[1])
		retried, _ := strconv.Atoi(m[6])
		failed, _ := strconv.Atoi(m[7])
		assert.Equal(t, strconv.Itoa(total), m[2], line)
		assert.GreaterOrEqual(t, done, max(prevDone, before), "records done never go back: %q", line)
		assert.GreaterOrEqual(t, retried, prevRetried, line)
		assert.GreaterOrEqual(t, failed, prevFailed, line)
		prevDone, prevRetried, prevFailed = done, retried, failed
		last = m
	}
	require.NotNil(t, last, "progress lines in:\n%s", out)
	assert.Equal(t, strconv.Itoa(total), last[1], "the last progress line: all done")
	assert.Equal(t, "100.0", last[3])
	assert.Equal(t, "0s", last[5])
	assert.Regexp(t, `(?m)^Imported \d+ and dead-lettered \d+ records in \S+ \(\d+ records/s\), with \d+ retries\.$`, out)
	assert.Regexp(t, fmt.Sprintf(`(?m)^.* holds \d+ records and \d+ dead letters: %d of the %d records\.$`, total, total), out)
}

// The program runs small on SQLite: every record is imported or
// dead-lettered with its error, the progress lines say so as they go, and a
// rerun finds everything done.
func TestRun(t *testing.T) {
	cfg := small(3000)
	cfg.db = filepath.Join(t.TempDir(), "batch.db")
	var out bytes.Buffer
	rep, err := run(context.Background(), cfg, &out)
	require.NoError(t, err, out.String())
	assert.Equal(t, 3000, rep.total)
	assert.Equal(t, 3000, rep.imported+rep.failed, out.String())
	assert.Equal(t, rep.imported, rep.records)
	assert.Equal(t, rep.failed, rep.deadLetts)
	assert.Positive(t, rep.retried, "a fifth of the calls fail, and are retried")
	assert.Positive(t, rep.byError[errInvalid.Error()], "invalid records are dead-lettered: %v", rep.byError)
	assert.Positive(t, rep.byError["retry: gave up after 3 attempts (max attempts): "+errUnavailable.Error()],
		"records whose every attempt failed are dead-lettered: %v", rep.byError)
	checkLines(t, out.String(), 3000, 0)
	assert.Contains(t, out.String(), "Dead letters of this run, by error:\n")
	assert.Contains(t, out.String(), "  "+errInvalid.Error()+"\n")

	db, err := sql.Open("sqlite", "file:"+cfg.db)
	require.NoError(t, err)
	defer db.Close()
	checkExactlyOnce(t, db, "batch_", 3000)
	var attempts int
	require.NoError(t, db.QueryRow("SELECT MAX(attempts) FROM batch_records").Scan(&attempts))
	assert.LessOrEqual(t, attempts, 3)
	require.NoError(t, db.QueryRow("SELECT COUNT(*) FROM batch_dead_letters WHERE error = ?", errInvalid.Error()).Scan(&attempts))
	assert.Equal(t, rep.byError[errInvalid.Error()], attempts, "the dead letters keep their error")

	out.Reset()
	again, err := run(context.Background(), cfg, &out)
	require.NoError(t, err, out.String())
	assert.Equal(t, 3000, again.before, "the rerun finds every record done")
	assert.Zero(t, again.imported+again.failed)
	checkLines(t, out.String(), 3000, 3000)
	assert.Contains(t, out.String(), "Imported 0 and dead-lettered 0 records")
}

// checkExactlyOnce checks that the tables with prefix hold each of the n
// generated records exactly once: imported or dead-lettered, never both.
func checkExactlyOnce(t *testing.T, db *sql.DB, prefix string, n int) {
	t.Helper()
	count := func(q string) int {
		var c int
		require.NoError(t, db.QueryRow(strings.ReplaceAll(q, "$", prefix)).Scan(&c), q)
		return c
	}
	records, dead := count("SELECT COUNT(*) FROM $records"), count("SELECT COUNT(*) FROM $dead_letters")
	assert.Equal(t, records, count("SELECT COUNT(DISTINCT key) FROM $records"), "each record imported once")
	assert.Equal(t, dead, count("SELECT COUNT(DISTINCT key) FROM $dead_letters"), "each dead letter once")
	assert.Zero(t, count("SELECT COUNT(*) FROM $records r JOIN $dead_letters d ON r.key = d.key"),
		"no record both imported and dead-lettered")
	assert.Equal(t, n, records+dead, "dead letters and imported records are all the records")
	assert.Equal(t, n, count("SELECT COUNT(*) FROM (SELECT key FROM $records UNION SELECT key FROM $dead_letters) k "+
		"WHERE key BETWEEN 'rec-0000001' AND '"+fmt.Sprintf("rec-%07d", n)+"'"), "the keys are those generated")
	assert.Zero(t, count("SELECT COUNT(*) FROM $dead_letters WHERE error = ''"), "every dead letter has its error")
}

// The variables that tell TestChildImport what to do.
const (
	childDB     = "BATCH_TEST_DB"
	childDSN    = "BATCH_TEST_DSN"
	childPrefix = "BATCH_TEST_PREFIX"
)

// killable is the configuration of the run that is killed and resumed: slow
// enough that the kill comes midway.
func killable() config {
	cfg := small(6000)
	cfg.workers, cfg.concurrency = 4, 4
	cfg.service.latency = 2 * time.Millisecond
	return cfg
}

// TestChildImport is the import that TestResumeAfterKill kills: it runs only
// in a child process.
func TestChildImport(t *testing.T) {
	if !servicetest.IsChild(t) {
		t.Skip("runs in a child process of TestResumeAfterKill")
	}
	cfg := killable()
	cfg.db, cfg.dsn, cfg.prefix = os.Getenv(childDB), os.Getenv(childDSN), os.Getenv(childPrefix)
	_, err := run(context.Background(), cfg, os.Stdout)
	require.NoError(t, err)
}

// An import killed midway (SIGKILL) resumes where it stopped: the rerun
// skips what was written, does the rest, and each record ends up imported
// or dead-lettered exactly once. On SQLite, and on PostgreSQL with
// RESILIENCE_POSTGRES_DSN.
func TestResumeAfterKill(t *testing.T) {
	for _, name := range []string{"sqlite", "postgres"} {
		t.Run(name, func(t *testing.T) {
			cfg := killable()
			cfg.prefix = servicetest.UniqueName(t) + "_"
			var db *sql.DB
			if name == "postgres" {
				pg := servicetest.Postgres(t) // a schema of its own
				cfg.dsn, db = pg.DSN, pg.DB
			} else {
				cfg.db = filepath.Join(t.TempDir(), "batch.db")
				var err error
				db, err = sql.Open("sqlite", "file:"+cfg.db+"?_pragma=busy_timeout(10000)")
				require.NoError(t, err)
				defer db.Close()
			}
			child := servicetest.StartChild(t, "TestChildImport",
				childDB+"="+cfg.db, childDSN+"="+cfg.dsn, childPrefix+"="+cfg.prefix)
			imported := func() int {
				var n int
				if err := db.QueryRow("SELECT COUNT(*) FROM " + cfg.prefix + "records").Scan(&n); err != nil {
					return 0 // not created yet
				}
				return n
			}
			deadline := time.Now().Add(2 * time.Minute)
			for imported() < 600 {
				select {
				case <-child.Done():
					t.Fatalf("the import ended before it was killed:\n%s", child.Output())
				default:
				}
				require.True(t, time.Now().Before(deadline), "no 600 records imported in 2 minutes:\n%s", child.Output())
				time.Sleep(10 * time.Millisecond)
			}
			child.Kill()
			before := imported()
			require.Less(t, before, 6000, "killed midway")
			assert.Regexp(t, `(?m)^Importing 6000 records into .*: 0 done before, 6000 to do\.$`, child.Output())
			assert.NotContains(t, child.Output(), "Imported ", "the killed import printed no summary")

			var out bytes.Buffer
			rep, err := run(context.Background(), cfg, &out)
			require.NoError(t, err, out.String())
			assert.GreaterOrEqual(t, rep.before, before, "the rerun skips what was written")
			assert.Equal(t, 6000, rep.before+rep.imported+rep.failed, out.String())
			checkLines(t, out.String(), 6000, rep.before)
			checkExactlyOnce(t, db, cfg.prefix, 6000)
		})
	}
}

// A CSV file is imported in its order; a key that came before is skipped
// and counted; a bad line stops the run with its line number.
func TestCSV(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.csv")
	csv := "key,name,value\nrec-0000001,ada,10\nrec-0000002,grace,20\nrec-0000001,ada,10\nrec-0000003,\"rob, jr\",30\n"
	require.NoError(t, os.WriteFile(in, []byte(csv), 0o644))
	cfg := small(0)
	cfg.in, cfg.db, cfg.service.invalid = in, filepath.Join(dir, "batch.db"), 0
	var out bytes.Buffer
	rep, err := run(context.Background(), cfg, &out)
	require.NoError(t, err, out.String())
	assert.Equal(t, 3, rep.total)
	assert.Equal(t, 1, rep.dups)
	assert.Contains(t, out.String(), "Skipped 1 lines of "+in+" whose key came before.")
	checkLines(t, out.String(), 3, 0)

	tests := []struct{ csv, want string }{
		{"", "line 1: EOF (want the header key,name,value)"},
		{"id,name,value\n", `line 1: header "id,name,value", want key,name,value`},
		{"key,name,value\na,b,1\nc,d\n", "record on line 3: wrong number of fields"},
		{"key,name,value\na,b,x\n", `line 2: value "x": want an integer`},
		{"key,name,value\n,b,1\n", "line 2: empty key"},
	}
	for _, tt := range tests {
		require.NoError(t, os.WriteFile(in, []byte(tt.csv), 0o644))
		_, err := run(context.Background(), cfg, &out)
		require.Error(t, err, tt.csv)
		assert.Equal(t, in+": "+tt.want, err.Error(), tt.csv)
	}
}

// On a terminal the progress is a bar redrawn in place.
func TestProgressBar(t *testing.T) {
	var out bytes.Buffer
	start := time.Now()
	p := &progress{out: &out, tty: true, total: 1000, before: 100, start: start}
	p.done.Store(400)
	p.retried.Store(12)
	p.failed.Store(3)
	p.show(start.Add(2 * time.Second))
	assert.Equal(t, "\r\x1b[K[===============>              ]  50.0% 500/1000  200 records/s  ETA 3s  retried 12  failed 3",
		out.String())
	out.Reset()
	p.done.Store(900)
	p.finish(start.Add(3 * time.Second))
	assert.Equal(t, "\r\x1b[K[==============================] 100.0% 1000/1000  300 records/s  ETA 0s  retried 12  failed 3\n",
		out.String())
}

// Bad flags are refused with a message that says what is wrong.
func TestBadFlags(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-n", "-1"}, "-n -1: want 0 or more records"},
		{[]string{"-prefix", "x; DROP TABLE y"}, `-prefix "x; DROP TABLE y": want letters, digits and underscores`},
		{[]string{"-workers", "0"}, "-workers 0: want at least 1"},
		{[]string{"-concurrency", "0"}, "-concurrency 0: want at least 1"},
		{[]string{"-attempts", "0"}, "-attempts 0: want at least 1"},
		{[]string{"-timeout", "0s"}, "-timeout 0s: want a positive duration"},
		{[]string{"-fail", "1.5"}, "-fail 1.5: want a share from 0 to 1"},
		{[]string{"-slow", "-0.1"}, "-slow -0.1: want a share from 0 to 1"},
		{[]string{"-invalid", "2"}, "-invalid 2: want a share from 0 to 1"},
		{[]string{"-latency", "-1ms"}, "-latency -1ms: want 0 or more"},
		{[]string{"extra"}, `unexpected argument "extra"`},
	}
	for _, tt := range tests {
		var errOut bytes.Buffer
		_, err := parse(tt.args, &errOut)
		var usage usageError
		require.ErrorAs(t, err, &usage, "%v", tt.args)
		assert.Contains(t, errOut.String(), tt.want, "%v", tt.args)
	}
	cfg, err := parse(nil, &bytes.Buffer{})
	require.NoError(t, err)
	assert.Equal(t, 100_000, cfg.n)
	assert.Equal(t, "batch.db", cfg.db)
}

// Interrupted, the import writes what it has processed, says how much, and
// stops; a rerun does the rest.
func TestInterrupt(t *testing.T) {
	cfg := killable()
	cfg.n = 4000
	cfg.db = filepath.Join(t.TempDir(), "batch.db")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out bytes.Buffer
	w := &cancelOnProgress{w: &out, cancel: cancel}
	rep, err := run(ctx, cfg, w)
	require.ErrorIs(t, err, context.Canceled, out.String())
	written := rep.imported + rep.failed
	assert.Positive(t, written, out.String())
	assert.Less(t, written, 4000, "interrupted midway")
	assert.Contains(t, out.String(), fmt.Sprintf("Interrupted after writing %d records; run again to resume.\n", written))

	db, err := sql.Open("sqlite", "file:"+cfg.db)
	require.NoError(t, err)
	defer db.Close()
	var n int
	require.NoError(t, db.QueryRow("SELECT (SELECT COUNT(*) FROM batch_records) + (SELECT COUNT(*) FROM batch_dead_letters)").Scan(&n))
	assert.Equal(t, written, n, "what the run says it wrote is in the tables")

	out.Reset()
	rep, err = run(context.Background(), cfg, &out)
	require.NoError(t, err, out.String())
	assert.Equal(t, written, rep.before)
	checkExactlyOnce(t, db, "batch_", 4000)
}

// cancelOnProgress passes what is written on to w, and cancels at the
// first progress line.
type cancelOnProgress struct {
	w      *bytes.Buffer
	cancel func()
}

func (c *cancelOnProgress) Write(p []byte) (int, error) {
	if bytes.HasPrefix(p, []byte("progress:")) {
		c.cancel()
	}
	return c.w.Write(p)
}
