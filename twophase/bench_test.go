package twophase_test

import (
	"context"
	"database/sql"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience/internal/servicetest"
	"github.com/resilience-go/resilience/saga"
)

// BenchmarkTransfer moves 1 from an account in PostgreSQL to one in
// MariaDB, one transfer at a time, as a two-phase commit (PostgreSQL the
// home) and as the same transfer run as a durable saga (its log in
// PostgreSQL; each step a local transaction behind a barrier, so that it
// takes effect once, with a compensation). Both report transfers/s.
func BenchmarkTransfer(b *testing.B) {
	ctx := context.Background()
	b.Run("twophase", func(b *testing.B) {
		bk := newBank(b)
		c, ps := bk.coordinator(b, "bench", pgName, []string{myName})
		b.ReportAllocs()
		for b.Loop() {
			if err := transfer(ctx, c, 1, ps[pgName], ps[myName]); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "transfers/s")
		b.StopTimer()
		require.Equal(b, int64(2*initial), bk.balance(b, pgName)+bk.balance(b, myName))
	})
	b.Run("saga", func(b *testing.B) {
		bk := newBank(b)
		pg, my := bk.dbs[pgName], bk.dbs[myName]
		require.NoError(b, saga.Migrate(ctx, pg.DB, saga.Postgres))
		require.NoError(b, saga.Migrate(ctx, my.DB, saga.MySQL))
		move := func(db *servicetest.DB, d saga.Dialect, sign int64) saga.StepFunc {
			barrier := saga.NewBarrier(d)
			q := "UPDATE twophase_accounts SET balance = balance + ? WHERE id = 'acct'"
			if db.Dialect == "postgres" {
				q = "UPDATE twophase_accounts SET balance = balance + $1 WHERE id = 'acct'"
			}
			return func(ctx context.Context, call *saga.Call) error {
				return inTx(ctx, db.DB, func(tx *sql.Tx) error {
					return barrier.Call(ctx, tx, call.Key, func(ctx context.Context) error {
						_, err := tx.ExecContext(ctx, q, sign)
						return err
					})
				})
			}
		}
		def := saga.Define("twophase-bench-transfer", 1,
			saga.Step("debit", move(pg, saga.Postgres, -1), move(pg, saga.Postgres, +1)),
			saga.Step("credit", move(my, saga.MySQL, +1), move(my, saga.MySQL, -1)))
		c := saga.New(saga.WithStore(pg.DB, saga.Postgres))
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			i++
			if err := c.Run(ctx, def, fmt.Sprint("transfer-", i), nil); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "transfers/s")
		b.StopTimer()
		require.Equal(b, int64(2*initial), bk.balance(b, pgName)+bk.balance(b, myName))
	})
}

// inTx runs f in a transaction of db, and commits it if f succeeds.
func inTx(ctx context.Context, db *sql.DB, f func(*sql.Tx) error) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := f(tx); err != nil {
		tx.Rollback() //nolint:errcheck // the error that matters is err
		return err
	}
	return tx.Commit()
}

// BenchmarkRecover is one pass of recovery with nothing to do: what
// RunRecovery costs every interval.
func BenchmarkRecover(b *testing.B) {
	bk := newBank(b)
	c, _ := bk.coordinator(b, "bench-recover", pgName, []string{myName})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Recover(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
