package twophase_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	_ "github.com/go-sql-driver/mysql" // registers "mysql"
	_ "github.com/jackc/pgx/v5/stdlib" // registers "pgx"

	"github.com/resilience-go/resilience/twophase"
)

// Ten moves from an account in PostgreSQL to one in MariaDB, each all or
// nothing. It needs the two servers, so it is compiled, not run.
func Example() {
	ctx := context.Background()
	pgDB, err := sql.Open("pgx", os.Getenv("RESILIENCE_POSTGRES_DSN"))
	if err != nil {
		log.Fatal(err)
	}
	myDB, err := sql.Open("mysql", os.Getenv("RESILIENCE_MYSQL_DSN"))
	if err != nil {
		log.Fatal(err)
	}
	bank := twophase.Postgres("bank", pgDB) // the home: it keeps the decisions
	ledger := twophase.MySQL("ledger", myDB)
	host, _ := os.Hostname()
	c, err := twophase.New(ctx, host, bank, []*twophase.Participant{ledger})
	if err != nil {
		log.Fatal(err) // such as "max_prepared_transactions is 0 ...: set it ..."
	}
	go c.RunRecovery(ctx) //nolint:errcheck // it returns nil when ctx is done

	for range 10 {
		tx, err := twophase.Begin(ctx, c, ledger, bank)
		if err != nil {
			log.Fatal(err)
		}
		if _, err := tx.On(bank).ExecContext(ctx, "UPDATE accounts SET balance = balance - $1 WHERE id = $2", 10, "alice"); err != nil {
			tx.Rollback(ctx) //nolint:errcheck // the error that matters is err
			log.Fatal(err)
		}
		if _, err := tx.On(ledger).ExecContext(ctx, "UPDATE accounts SET balance = balance + ? WHERE id = ?", 10, "bob"); err != nil {
			tx.Rollback(ctx) //nolint:errcheck // the error that matters is err
			log.Fatal(err)
		}
		switch err := tx.Commit(ctx); {
		case errors.Is(err, twophase.ErrAborted):
			log.Print("rolled back: ", err)
		case errors.Is(err, twophase.ErrInDoubt):
			log.Print("recovery decides: ", err)
		case err != nil:
			log.Fatal(err)
		}
	}
}

// The points of the protocol where a Hook is called, in the order Commit
// passes them: each branch but the home's is prepared, the home commits
// with the decision, and the prepared branches commit.
func ExamplePoint() {
	for _, p := range twophase.Points() {
		fmt.Println(p)
	}
	// Output:
	// before-prepare
	// after-prepare
	// before-decision
	// after-decision
	// after-commit
}

// A demonstration that kills its process after the decision, so that the
// next process's recovery commits the prepared branches.
func ExampleWithHook() {
	crashAt := twophase.WithHook(func(_ context.Context, at twophase.Point, participant string) error {
		if at == twophase.AfterDecision {
			fmt.Println("dying", at, "on", participant)
			os.Exit(3)
		}
		return nil
	})
	_ = crashAt // twophase.New(ctx, id, home, others, crashAt)
}

// An alert for a branch left in doubt, as an observer receives it.
func ExampleInDoubtError() {
	var err error = &twophase.InDoubtError{TxID: "tp.node-1.mhx0k2ts.9f2c41d07a3be815", Participant: "ledger",
		Age: 6 * time.Minute, Err: errors.New("XA COMMIT: connection refused")}
	fmt.Println(err)
	fmt.Println(errors.Is(err, twophase.ErrInDoubt))
	// Output:
	// twophase: transaction tp.node-1.mhx0k2ts.9f2c41d07a3be815 in doubt on ledger for 6m0s: XA COMMIT: connection refused
	// true
}

// An operator's view of the branches in doubt, and a recovery pass; it
// needs the servers, so it is compiled, not run.
func ExampleCoordinator_ListInDoubt() {
	ctx := context.Background()
	pgDB, _ := sql.Open("pgx", os.Getenv("RESILIENCE_POSTGRES_DSN"))
	myDB, _ := sql.Open("mysql", os.Getenv("RESILIENCE_MYSQL_DSN"))
	bank, ledger := twophase.Postgres("bank", pgDB), twophase.MySQL("ledger", myDB)
	c, err := twophase.New(ctx, "node-1", bank, []*twophase.Participant{ledger})
	if err != nil {
		log.Fatal(err)
	}
	doubt, err := c.ListInDoubt(ctx)
	if err != nil {
		log.Fatal(err)
	}
	for _, d := range doubt {
		fmt.Printf("%s on %s: %s, began %v ago by %s\n", d.TxID, d.Participant, d.Decision, d.Age.Round(time.Second), d.Coordinator)
	}
	r, err := c.Recover(ctx)
	fmt.Println(r, err) // such as "1 committed, 0 rolled back, 0 waiting <nil>"
}
