package twophase_test

import (
	"context"
	"database/sql"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience/internal/servicetest"
	"github.com/resilience-go/resilience/twophase"
)

// tester is what the helpers need of a *testing.T or a *rapid.T.
type tester interface {
	require.TestingT
	Helper()
}

// initial is every account's balance to begin with.
const initial = 1000

// bank is one account in each of four databases: two PostgreSQL schemas
// and two MariaDB databases, so that a server holds two participants.
type bank struct {
	dbs map[string]*servicetest.DB // by participant name
}

// The participants' names.
const (
	pgName  = "pg"
	pg2Name = "pg2"
	myName  = "maria"
	my2Name = "maria2"
)

var accountsTable = map[string]string{
	"postgres": "CREATE TABLE twophase_accounts (id VARCHAR(32) PRIMARY KEY, balance BIGINT NOT NULL)",
	"mysql":    "CREATE TABLE twophase_accounts (id VARCHAR(32) PRIMARY KEY, balance BIGINT NOT NULL) ENGINE=InnoDB",
}

// newBank opens the four databases, each with its account.
func newBank(t testing.TB) *bank {
	t.Helper()
	b := &bank{dbs: map[string]*servicetest.DB{
		pgName: servicetest.Postgres(t), pg2Name: servicetest.Postgres(t),
		myName: servicetest.MySQL(t), my2Name: servicetest.MySQL(t),
	}}
	for _, db := range b.dbs {
		_, err := db.Exec(accountsTable[db.Dialect])
		require.NoError(t, err)
		_, err = db.Exec("INSERT INTO twophase_accounts (id, balance) VALUES ('acct', 1000)")
		require.NoError(t, err)
	}
	return b
}

// participant returns the participant of the database named name, on db
// (a handle of b's, or another one on the same database).
func participant(name string, db *servicetest.DB, handle *sql.DB) *twophase.Participant {
	if db.Dialect == "postgres" {
		return twophase.Postgres(name, handle)
	}
	return twophase.MySQL(name, handle)
}

// p returns the participant named name on b's handle.
func (b *bank) p(name string) *twophase.Participant {
	return participant(name, b.dbs[name], b.dbs[name].DB)
}

// coordinator makes a coordinator of ID id whose home is home, over home
// and others.
func (b *bank) coordinator(t testing.TB, id, home string, others []string, opts ...twophase.Option) (*twophase.Coordinator, map[string]*twophase.Participant) {
	t.Helper()
	ps := map[string]*twophase.Participant{home: b.p(home)}
	var os []*twophase.Participant
	for _, name := range others {
		ps[name] = b.p(name)
		os = append(os, ps[name])
	}
	c, err := twophase.New(context.Background(), id, ps[home], os, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { b.rollBackLeftovers(t, id) })
	return c, ps
}

// balance returns the account's balance in the database named name.
func (b *bank) balance(t tester, name string) int64 {
	t.Helper()
	var n int64
	require.NoError(t, b.dbs[name].QueryRow("SELECT balance FROM twophase_accounts WHERE id = 'acct'").Scan(&n))
	return n
}

// balances returns every account's balance, by database.
func (b *bank) balances(t tester) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for name := range b.dbs {
		out[name] = b.balance(t, name)
	}
	return out
}

// sum returns the sum of the balances: 4000 whatever the transfers.
func sum(balances map[string]int64) int64 {
	var s int64
	for _, n := range balances {
		s += n
	}
	return s
}

// add adds amount to the account through branch br.
func add(ctx context.Context, br *twophase.Branch, amount int64) error {
	q := "UPDATE twophase_accounts SET balance = balance + ? WHERE id = 'acct'"
	if isPostgres(br.Participant()) {
		q = strings.Replace(q, "?", "$1", 1)
	}
	_, err := br.ExecContext(ctx, q, amount)
	return err
}

var postgresNames = map[string]bool{pgName: true, pg2Name: true}

func isPostgres(p *twophase.Participant) bool { return postgresNames[p.Name()] }

// transfer moves amount from the account of from to each of to's, in one
// transaction of c.
func transfer(ctx context.Context, c *twophase.Coordinator, amount int64, from *twophase.Participant, to ...*twophase.Participant) error {
	tx, err := twophase.Begin(ctx, c, append([]*twophase.Participant{from}, to...)...)
	if err != nil {
		return err
	}
	if err := add(ctx, tx.On(from), -amount*int64(len(to))); err != nil {
		tx.Rollback(ctx) //nolint:errcheck // the error that matters is err
		return err
	}
	for _, p := range to {
		if err := add(ctx, tx.On(p), amount); err != nil {
			tx.Rollback(ctx) //nolint:errcheck // the error that matters is err
			return err
		}
	}
	return tx.Commit(ctx)
}

// rawPrepared returns the branches of coordinator id that the servers
// hold prepared, read from pg_prepared_xacts and XA RECOVER directly.
func (b *bank) rawPrepared(t tester, id string) []string {
	t.Helper()
	prefix := "tp." + id + "."
	gids, err := column(b.dbs[pgName].DB, "SELECT gid FROM pg_prepared_xacts WHERE gid LIKE $1", prefix+"%")
	require.NoError(t, err)
	rows, err := b.dbs[myName].Query("XA RECOVER")
	require.NoError(t, err)
	defer rows.Close()
	for rows.Next() {
		var format, glen, blen int
		var data string
		require.NoError(t, rows.Scan(&format, &glen, &blen, &data))
		if strings.HasPrefix(data, prefix) {
			gids = append(gids, data)
		}
	}
	require.NoError(t, rows.Err())
	return gids
}

func column(db *sql.DB, q string, args ...any) ([]string, error) {
	rows, err := db.Query(q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// rollBackLeftovers rolls back the branches of coordinator id that a
// failed test left prepared, which would hold their locks, and keep the
// test's databases from being dropped.
func (b *bank) rollBackLeftovers(t testing.TB, id string) {
	prefix := "tp." + id + "."
	gids, err := column(b.dbs[pgName].DB, "SELECT gid FROM pg_prepared_xacts WHERE gid LIKE $1", prefix+"%")
	if err != nil {
		t.Errorf("list the prepared transactions: %v", err)
	}
	for _, gid := range gids {
		if _, err := b.dbs[pgName].Exec("ROLLBACK PREPARED '" + gid + "'"); err != nil {
			t.Errorf("roll back %s: %v", gid, err)
		}
	}
	rows, err := b.dbs[myName].Query("XA RECOVER")
	if err != nil {
		t.Errorf("XA RECOVER: %v", err)
		return
	}
	var xids []string
	for rows.Next() {
		var format, glen, blen int
		var data string
		if err := rows.Scan(&format, &glen, &blen, &data); err == nil && strings.HasPrefix(data, prefix) {
			xids = append(xids, "'"+data[:glen]+"','"+data[glen:]+"'")
		}
	}
	rows.Close()
	for _, x := range xids {
		if _, err := b.dbs[myName].Exec("XA ROLLBACK " + x); err != nil {
			t.Errorf("XA ROLLBACK %s: %v", x, err)
		}
	}
}
