package servicetest_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience/internal/servicetest"
)

func TestDatabasesAreIsolated(t *testing.T) {
	for _, d := range servicetest.Databases {
		t.Run(d.Dialect, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			a, b := d.Open(t), d.Open(t)
			assert.Equal(t, d.Dialect, a.Dialect)
			assert.NotEqual(t, a.DSN, b.DSN, "two databases share a DSN")

			_, err := a.ExecContext(ctx, "CREATE TABLE things (id INTEGER PRIMARY KEY, name VARCHAR(20))")
			require.NoError(t, err)
			_, err = a.ExecContext(ctx, "INSERT INTO things (id, name) VALUES (1, 'one')")
			require.NoError(t, err)
			var name string
			require.NoError(t, a.QueryRowContext(ctx, "SELECT name FROM things WHERE id = 1").Scan(&name))
			assert.Equal(t, "one", name)

			_, err = b.ExecContext(ctx, "SELECT name FROM things")
			assert.Error(t, err, "a table made in one test database is visible in another")
		})
	}
}

func TestDatabaseIsDroppedWhenTheTestEnds(t *testing.T) {
	tests := []struct {
		dialect string
		open    func(testing.TB) *servicetest.DB
		exists  func(t *testing.T, db *servicetest.DB, name string) bool
		name    func(t *testing.T, dsn string) string
	}{
		{
			"postgres", servicetest.Postgres,
			func(t *testing.T, db *servicetest.DB, name string) bool {
				var n int
				require.NoError(t, db.QueryRow("SELECT count(*) FROM information_schema.schemata WHERE schema_name = $1", name).Scan(&n))
				return n == 1
			},
			func(t *testing.T, dsn string) string {
				u, err := url.Parse(dsn)
				require.NoError(t, err)
				return u.Query().Get("search_path")
			},
		},
		{
			"mysql", servicetest.MySQL,
			func(t *testing.T, db *servicetest.DB, name string) bool {
				var n int
				require.NoError(t, db.QueryRow("SELECT count(*) FROM information_schema.schemata WHERE schema_name = ?", name).Scan(&n))
				return n == 1
			},
			func(t *testing.T, dsn string) string {
				cfg, err := mysql.ParseDSN(dsn)
				require.NoError(t, err)
				return cfg.DBName
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.dialect, func(t *testing.T) {
			observer := tt.open(t)
			var name string
			t.Run("user", func(t *testing.T) {
				db := tt.open(t)
				name = tt.name(t, db.DSN)
				require.NotEmpty(t, name)
				assert.True(t, tt.exists(t, observer, name), "%s does not exist while the test runs", name)
			})
			assert.False(t, tt.exists(t, observer, name), "%s still exists after the test ended", name)
		})
	}
}

func TestBrokerAddressesAnswer(t *testing.T) {
	tests := []struct {
		name string
		addr func(testing.TB) string
	}{
		{"redis", servicetest.RedisAddr},
		{"nats", func(t testing.TB) string { return hostOf(t, servicetest.NATSURL(t)) }},
		{"amqp", func(t testing.TB) string { return hostOf(t, servicetest.AMQPURL(t)) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := tt.addr(t)
			conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
			require.NoError(t, err, "dial %s", addr)
			conn.Close()
		})
	}
}

func hostOf(t testing.TB, rawURL string) string {
	u, err := url.Parse(rawURL)
	require.NoError(t, err)
	return u.Host
}

func TestUniqueName(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		n := servicetest.UniqueName(t)
		assert.Regexp(t, `^[a-z][a-z0-9_]*$`, n)
		assert.False(t, seen[n], "name %s given twice", n)
		seen[n] = true
	}
}

// TestLookupChild calls Lookup in a child process of TestLookupSkipsOrFails.
func TestLookupChild(t *testing.T) {
	if os.Getenv("SERVICETEST_CHILD") != "1" {
		t.Skip("runs only in a child process of TestLookupSkipsOrFails")
	}
	servicetest.Lookup(t, "RESILIENCE_TEST_UNSET_VARIABLE")
	t.Log("Lookup returned")
}

// An unset variable skips the test, unless services are required.
func TestLookupSkipsOrFails(t *testing.T) {
	run := func(require string) (string, error) {
		cmd := exec.CommandContext(context.Background(), os.Args[0], "-test.run=^TestLookupChild$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), "SERVICETEST_CHILD=1", "RESILIENCE_TEST_UNSET_VARIABLE=",
			fmt.Sprintf("%s=%s", servicetest.RequireVar, require))
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	out, err := run("")
	assert.NoError(t, err, "an unset variable must skip, not fail:\n%s", out)
	assert.Contains(t, out, "--- SKIP: TestLookupChild")
	assert.Contains(t, out, "RESILIENCE_TEST_UNSET_VARIABLE is not set")
	assert.NotContains(t, out, "Lookup returned")

	out, err = run("1")
	assert.Error(t, err, "with %s=1 an unset variable must fail:\n%s", servicetest.RequireVar, out)
	assert.Contains(t, out, "--- FAIL: TestLookupChild")
	assert.Contains(t, out, "RESILIENCE_TEST_UNSET_VARIABLE is not set")
	assert.NotContains(t, out, "Lookup returned")
}

// echo starts a server on loopback that sends back what it reads, and
// reports on the returned channel each time it has sent something back.
func echo(t *testing.T) (addr string, sent <-chan struct{}) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ch := make(chan struct{}, 16)
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				buf := make([]byte, 1024)
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					if _, err := c.Write(buf[:n]); err != nil {
						return
					}
					ch <- struct{}{}
				}
			})
		}
	})
	return ln.Addr().String(), ch
}

func TestProxyPauseKeepsAnswersUntilRestore(t *testing.T) {
	addr, sent := echo(t)
	p := servicetest.NewProxy(t, addr)
	conn, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	defer conn.Close()

	p.Pause()
	p.Pause() // a second pause keeps what the first one holds
	_, err = conn.Write([]byte("ping"))
	require.NoError(t, err)
	<-sent
	p.Restore()
	got := make([]byte, 4)
	_, err = io.ReadFull(conn, got)
	require.NoError(t, err)
	assert.Equal(t, "ping", string(got), "the answer kept during the pause")
}

func TestProxyCutDropsWhatPauseKept(t *testing.T) {
	addr, sent := echo(t)
	p := servicetest.NewProxy(t, addr)
	conn, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	defer conn.Close()

	p.Pause()
	_, err = conn.Write([]byte("ping"))
	require.NoError(t, err)
	<-sent
	p.Cut()
	got, _ := io.ReadAll(conn) // ends when the proxy closes the connection
	assert.Empty(t, got, "nothing kept during the pause gets out after the cut")
}

// TestTickingChild counts in its output until it is killed; it runs only as
// TestChildStopsAndContinues's child.
func TestTickingChild(t *testing.T) {
	if !servicetest.IsChild(t) {
		t.Skip("runs only as the child of TestChildStopsAndContinues")
	}
	for i := 0; ; i++ {
		fmt.Println("tick", i)
		time.Sleep(time.Millisecond)
	}
}

// A stopped child writes nothing until it is continued, and then goes on.
func TestChildStopsAndContinues(t *testing.T) {
	child := servicetest.StartChild(t, "TestTickingChild")
	require.Eventually(t, func() bool { return strings.Contains(child.Output(), "tick 10\n") }, time.Minute, time.Millisecond)
	child.Stop(t)
	stopped := child.Output()
	time.Sleep(50 * time.Millisecond) // a child that still ran would tick about 50 times
	assert.Equal(t, stopped, child.Output(), "a stopped child wrote")
	child.Continue()
	require.Eventually(t, func() bool { return len(child.Output()) > len(stopped) }, time.Minute, time.Millisecond,
		"a continued child goes on")
	child.Kill()
	select {
	case <-child.Done():
	default:
		t.Fatal("a killed child has not ended")
	}
}
