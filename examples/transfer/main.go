// Command transfer moves money between an account in PostgreSQL and one in
// MariaDB (or MySQL), each move one two-phase commit, and prints the sum of
// the two balances, which no move changes.
//
//	go run ./examples/transfer -n 20
//
// With -crash it kills itself (SIGKILL) at a point of the protocol of its
// last move, as a process that dies there would; the next run recovers
// what it left, all or nothing, before it moves anything:
//
//	go run ./examples/transfer -n 3 -crash after-prepare   # killed: a branch stays prepared
//	go run ./examples/transfer -n 0                        # rolled back after the grace period
//	go run ./examples/transfer -n 3 -crash after-decision  # killed: committed, not yet everywhere
//	go run ./examples/transfer -n 0                        # committed everywhere
//
// The DSNs default to $RESILIENCE_POSTGRES_DSN and $RESILIENCE_MYSQL_DSN.
// PostgreSQL needs max_prepared_transactions > 0, MariaDB 10.5.2 or later.
package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"syscall"
	"time"

	_ "github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/resilience-go/resilience/internal/wait"
	"github.com/resilience-go/resilience/twophase"
)

type config struct {
	pgDSN, mysqlDSN string
	id              string        // the coordinator's ID, the same from run to run
	transfers       int           // moves to make
	crash           string        // a point of the protocol to die at in the last move; "": none
	grace           time.Duration // how old an undecided transaction is presumed dead
	seed            uint64        // chooses the amounts
}

func main() {
	var cfg config
	flag.StringVar(&cfg.pgDSN, "pg", os.Getenv("RESILIENCE_POSTGRES_DSN"), "PostgreSQL DSN (the bank, which keeps the decisions)")
	flag.StringVar(&cfg.mysqlDSN, "mysql", os.Getenv("RESILIENCE_MYSQL_DSN"), "MariaDB or MySQL DSN (the ledger)")
	flag.StringVar(&cfg.id, "id", "transfer", "the coordinator's ID: the same in every run")
	flag.IntVar(&cfg.transfers, "n", 10, "moves to make")
	flag.StringVar(&cfg.crash, "crash", "", "die with SIGKILL at this point of the last move: before-prepare, after-prepare, before-decision, after-decision, after-commit")
	flag.DurationVar(&cfg.grace, "grace", time.Second, "how long after it began an undecided transaction is presumed dead")
	flag.Uint64Var(&cfg.seed, "seed", 1, "chooses the amounts")
	flag.Parse()
	if err := run(context.Background(), cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "transfer:", err)
		os.Exit(1)
	}
}

// The two accounts, one in each database.
const (
	bankAccount   = "alice"
	ledgerAccount = "bob"
	opening       = 1000
)

// run recovers what an earlier run left in doubt, makes cfg.transfers
// moves, and checks that the sum of the balances holds.
func run(ctx context.Context, cfg config, out io.Writer) error {
	if cfg.pgDSN == "" || cfg.mysqlDSN == "" {
		return errors.New("set -pg and -mysql, or RESILIENCE_POSTGRES_DSN and RESILIENCE_MYSQL_DSN")
	}
	crashAt, err := pointNamed(cfg.crash)
	if err != nil {
		return err
	}
	pgDB, err := sql.Open("pgx", cfg.pgDSN)
	if err != nil {
		return err
	}
	defer pgDB.Close()
	myDB, err := sql.Open("mysql", cfg.mysqlDSN)
	if err != nil {
		return err
	}
	defer myDB.Close()
	bank, ledger := twophase.Postgres("bank", pgDB), twophase.MySQL("ledger", myDB)
	lastMove := false
	opts := []twophase.Option{twophase.WithGrace(cfg.grace)}
	if crashAt != 0 {
		opts = append(opts, twophase.WithHook(func(_ context.Context, at twophase.Point, participant string) error {
			if lastMove && at == crashAt {
				fmt.Fprintf(out, "killed %s on %s\n", at, participant)
				syscall.Kill(os.Getpid(), syscall.SIGKILL) //nolint:errcheck // it does not return
			}
			return nil
		}))
	}
	c, err := twophase.New(ctx, cfg.id, bank, []*twophase.Participant{ledger}, opts...)
	if err != nil {
		return err
	}

	// First, as the branches left prepared hold their rows' locks.
	if err := recoverAll(ctx, c, cfg.grace, out); err != nil {
		return err
	}
	if err := setUp(ctx, pgDB, myDB); err != nil {
		return err
	}
	before, err := balances(ctx, pgDB, myDB)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "before: bank %d + ledger %d = %d\n", before[0], before[1], before[0]+before[1])

	rnd := rand.New(rand.NewPCG(cfg.seed, 0))
	committed, aborted := 0, 0
	for i := range cfg.transfers {
		lastMove = i == cfg.transfers-1
		amount := 1 + rnd.Int64N(10)
		if i%2 == 1 {
			amount = -amount // from the ledger to the bank
		}
		switch err := move(ctx, c, bank, ledger, amount); {
		case err == nil:
			committed++
		case errors.Is(err, twophase.ErrAborted):
			aborted++
			fmt.Fprintln(out, err)
		default:
			return err
		}
	}
	after, err := balances(ctx, pgDB, myDB)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "%d moves committed, %d rolled back\n", committed, aborted)
	fmt.Fprintf(out, "after: bank %d + ledger %d = %d\n", after[0], after[1], after[0]+after[1])
	if after[0]+after[1] != 2*opening {
		return fmt.Errorf("the sum is %d, not %d", after[0]+after[1], 2*opening)
	}
	fmt.Fprintf(out, "the sum holds: %d\n", 2*opening)
	return nil
}

// move moves amount from the bank's account to the ledger's.
func move(ctx context.Context, c *twophase.Coordinator, bank, ledger *twophase.Participant, amount int64) error {
	tx, err := twophase.Begin(ctx, c, ledger, bank)
	if err != nil {
		return err
	}
	if _, err := tx.On(bank).ExecContext(ctx, "UPDATE transfer_accounts SET balance = balance - $1 WHERE id = $2", amount, bankAccount); err != nil {
		tx.Rollback(ctx) //nolint:errcheck // the error that matters is err
		return err
	}
	if _, err := tx.On(ledger).ExecContext(ctx, "UPDATE transfer_accounts SET balance = balance + ? WHERE id = ?", amount, ledgerAccount); err != nil {
		tx.Rollback(ctx) //nolint:errcheck // the error that matters is err
		return err
	}
	return tx.Commit(ctx)
}

// recoverAll resolves what an earlier run of the coordinator left in
// doubt: the undecided once their grace period is over.
func recoverAll(ctx context.Context, c *twophase.Coordinator, grace time.Duration, out io.Writer) error {
	var total twophase.Recovered
	deadline := time.Now().Add(grace + 30*time.Second)
	for first := true; ; first = false {
		doubt, err := c.ListInDoubt(ctx)
		if err != nil {
			return err
		}
		mine := 0
		for _, d := range doubt {
			if d.Coordinator != c.ID() {
				continue
			}
			mine++
			if first {
				fmt.Fprintf(out, "in doubt: %s on %s, %s, began %v ago\n", d.TxID, d.Participant, d.Decision, d.Age.Round(time.Millisecond))
			}
		}
		if mine == 0 {
			if !first {
				fmt.Fprintf(out, "recovered: %d committed, %d rolled back\n", total.Committed, total.RolledBack)
			}
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d branches still in doubt", mine)
		}
		r, err := c.Recover(ctx)
		if err != nil {
			return err
		}
		total.Committed += r.Committed
		total.RolledBack += r.RolledBack
		wait.Sleep(ctx, 100*time.Millisecond)
	}
}

// setUp creates the accounts if they are not there.
func setUp(ctx context.Context, pgDB, myDB *sql.DB) error {
	for _, st := range []struct {
		db  *sql.DB
		sql []string
	}{
		{pgDB, []string{
			"CREATE TABLE IF NOT EXISTS transfer_accounts (id VARCHAR(32) PRIMARY KEY, balance BIGINT NOT NULL)",
			fmt.Sprintf("INSERT INTO transfer_accounts (id, balance) VALUES ('%s', %d) ON CONFLICT DO NOTHING", bankAccount, opening),
		}},
		{myDB, []string{
			"CREATE TABLE IF NOT EXISTS transfer_accounts (id VARCHAR(32) PRIMARY KEY, balance BIGINT NOT NULL) ENGINE=InnoDB",
			fmt.Sprintf("INSERT IGNORE INTO transfer_accounts (id, balance) VALUES ('%s', %d)", ledgerAccount, opening),
		}},
	} {
		for _, q := range st.sql {
			if _, err := st.db.ExecContext(ctx, q); err != nil {
				return err
			}
		}
	}
	return nil
}

// balances returns the bank's and the ledger's balances.
func balances(ctx context.Context, pgDB, myDB *sql.DB) ([2]int64, error) {
	var b [2]int64
	if err := pgDB.QueryRowContext(ctx, "SELECT balance FROM transfer_accounts WHERE id = $1", bankAccount).Scan(&b[0]); err != nil {
		return b, err
	}
	err := myDB.QueryRowContext(ctx, "SELECT balance FROM transfer_accounts WHERE id = ?", ledgerAccount).Scan(&b[1])
	return b, err
}

// pointNamed returns the point named name, or 0 for "".
func pointNamed(name string) (twophase.Point, error) {
	if name == "" {
		return 0, nil
	}
	for _, p := range twophase.Points() {
		if p.String() == name {
			return p, nil
		}
	}
	return 0, fmt.Errorf("-crash %q: want one of %v", name, twophase.Points())
}
