// Package servicetest gives tests real services: a database of their own on
// PostgreSQL, MySQL (MariaDB) or SQLite, and the addresses of Redis, NATS and
// RabbitMQ.
//
// Each service is found through an environment variable:
//
//	RESILIENCE_POSTGRES_DSN  postgres://postgres@127.0.0.1:5432/test?sslmode=disable
//	RESILIENCE_MYSQL_DSN     root@tcp(127.0.0.1:3306)/test
//	RESILIENCE_REDIS_ADDR    127.0.0.1:6379
//	RESILIENCE_NATS_URL      nats://127.0.0.1:4222
//	RESILIENCE_AMQP_URL      amqp://guest:guest@127.0.0.1:5672/
//
// When a variable is unset the test is skipped with a message that names it,
// unless RESILIENCE_REQUIRE_SERVICES=1, which turns the skip into a failure.
// SQLite needs no variable and always runs.
//
// Every database a test gets is new and empty (a schema on PostgreSQL, a
// database on MySQL, a file on SQLite), so tests run in parallel, and it is
// dropped when the test ends.
//
// [StartChild] runs a test of the same binary in a process of its own, which
// a test may stop, continue or kill, as an operating system would.
package servicetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib" // registers "pgx"
	_ "modernc.org/sqlite"             // registers "sqlite"
)

// The environment variables that name the services, and the one that
// requires them.
const (
	PostgresDSNVar = "RESILIENCE_POSTGRES_DSN"
	MySQLDSNVar    = "RESILIENCE_MYSQL_DSN"
	RedisAddrVar   = "RESILIENCE_REDIS_ADDR"
	NATSURLVar     = "RESILIENCE_NATS_URL"
	AMQPURLVar     = "RESILIENCE_AMQP_URL"
	RequireVar     = "RESILIENCE_REQUIRE_SERVICES"
)

const (
	setupTimeout    = 30 * time.Second
	namePrefix      = "rt_"
	sqliteBusyMilli = 10000
)

// DB is a database of the test's own.
type DB struct {
	*sql.DB
	// Dialect is "postgres", "mysql" or "sqlite".
	Dialect string
	// Driver and DSN open more handles on the same database, from this
	// process or a child.
	Driver, DSN string
}

// Database names a kind of database and opens one for a test.
type Database struct {
	Dialect string
	Open    func(testing.TB) *DB
}

// Databases lists every kind of database, SQLite first, for tests that run
// against each.
var Databases = []Database{
	{"sqlite", SQLite},
	{"postgres", Postgres},
	{"mysql", MySQL},
}

// Lookup returns the value of the environment variable name. When it is
// unset it skips the test, or fails it if RESILIENCE_REQUIRE_SERVICES=1.
func Lookup(t testing.TB, name string) string {
	t.Helper()
	if v := os.Getenv(name); v != "" {
		return v
	}
	if os.Getenv(RequireVar) == "1" {
		t.Fatalf("%s is not set, and %s=1 requires the service", name, RequireVar)
	}
	t.Skipf("%s is not set: skipping a test that needs the service (see README, integration tests)", name)
	return ""
}

// RedisAddr returns the Redis server's host:port.
func RedisAddr(t testing.TB) string { t.Helper(); return Lookup(t, RedisAddrVar) }

// NATSURL returns the NATS server's URL.
func NATSURL(t testing.TB) string { t.Helper(); return Lookup(t, NATSURLVar) }

// AMQPURL returns the RabbitMQ server's URL.
func AMQPURL(t testing.TB) string { t.Helper(); return Lookup(t, AMQPURLVar) }

// UniqueName returns a name no other test uses, for keys, streams, queues
// and schemas: letters, digits and underscores, starting with a letter.
func UniqueName(t testing.TB) string {
	t.Helper()
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("servicetest: random name: %v", err)
	}
	return namePrefix + hex.EncodeToString(b[:])
}

// Postgres returns a new, empty schema on the PostgreSQL server named by
// RESILIENCE_POSTGRES_DSN; every connection of the handle has it as its
// search_path. The schema is dropped when the test ends.
func Postgres(t testing.TB) *DB {
	t.Helper()
	base := Lookup(t, PostgresDSNVar)
	admin := open(t, "pgx", base)
	schema := UniqueName(t)
	mustExec(t, admin, "CREATE SCHEMA "+schema)
	t.Cleanup(func() { drop(t, admin, "DROP SCHEMA "+schema+" CASCADE") })
	dsn, err := withPostgresParam(base, "search_path", schema)
	if err != nil {
		t.Fatalf("servicetest: %s: %v", PostgresDSNVar, err)
	}
	return &DB{DB: open(t, "pgx", dsn), Dialect: "postgres", Driver: "pgx", DSN: dsn}
}

// MySQL returns a new, empty database on the MySQL or MariaDB server named by
// RESILIENCE_MYSQL_DSN. The DSN it carries sets parseTime=true. The database
// is dropped when the test ends.
func MySQL(t testing.TB) *DB {
	t.Helper()
	base := Lookup(t, MySQLDSNVar)
	cfg, err := mysql.ParseDSN(base)
	if err != nil {
		t.Fatalf("servicetest: %s: %v", MySQLDSNVar, err)
	}
	admin := open(t, "mysql", base)
	name := UniqueName(t)
	mustExec(t, admin, "CREATE DATABASE "+name)
	t.Cleanup(func() { drop(t, admin, "DROP DATABASE "+name) })
	cfg.DBName = name
	cfg.ParseTime = true
	dsn := cfg.FormatDSN()
	return &DB{DB: open(t, "mysql", dsn), Dialect: "mysql", Driver: "mysql", DSN: dsn}
}

// SQLite returns a new SQLite database in a file under t.TempDir(), in WAL
// mode with a busy timeout, through the pure-Go modernc.org/sqlite driver.
func SQLite(t testing.TB) *DB {
	t.Helper()
	path := filepath.Join(t.TempDir(), "test.db")
	dsn := fmt.Sprintf("file:%s?_pragma=busy_timeout(%d)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)",
		path, sqliteBusyMilli)
	return &DB{DB: open(t, "sqlite", dsn), Dialect: "sqlite", Driver: "sqlite", DSN: dsn}
}

// open opens a handle, checks that the server answers, and closes the handle
// when the test ends (after the clean-ups registered later have run).
func open(t testing.TB, driver, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatalf("servicetest: open %s: %v", driver, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		t.Fatalf("servicetest: %s does not answer: %v", driver, err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func mustExec(t testing.TB, db *sql.DB, query string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	if _, err := db.ExecContext(ctx, query); err != nil {
		t.Fatalf("servicetest: %s: %v", query, err)
	}
}

// drop runs a clean-up statement; it reports a failure without stopping the
// other clean-ups.
func drop(t testing.TB, db *sql.DB, query string) {
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	if _, err := db.ExecContext(ctx, query); err != nil {
		t.Errorf("servicetest: %s: %v", query, err)
	}
}

// withPostgresParam adds a run-time parameter to a PostgreSQL DSN in URL or
// keyword/value form.
func withPostgresParam(dsn, key, value string) (string, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", err
		}
		q := u.Query()
		q.Set(key, value)
		u.RawQuery = q.Encode()
		return u.String(), nil
	}
	return dsn + " " + key + "=" + value, nil
}
