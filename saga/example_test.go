package saga_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	_ "modernc.org/sqlite" // registers "sqlite"

	"github.com/resilience-go/resilience/saga"
)

// A checkout whose payment is declined: the steps that ran are undone, in
// reverse, and the error names the step.
func Example() {
	step := func(name string, fail error) saga.Item {
		return saga.Step(name,
			func(ctx context.Context, c *saga.Call) error {
				fmt.Println("do", name)
				c.SetOutput([]byte(name + "-42"))
				return fail
			},
			func(ctx context.Context, c *saga.Call) error {
				fmt.Println("undo", name, string(c.Output))
				return nil
			})
	}
	declined := errors.New("card declined")
	checkout := saga.Define("checkout", 1,
		step("reserve", nil),
		step("charge", declined),
		step("ship", nil),
	)
	err := saga.New().Run(context.Background(), checkout, "order-1", nil)
	fmt.Println(err)
	fmt.Println(errors.Is(err, declined))
	// Output:
	// do reserve
	// do charge
	// undo charge charge-42
	// undo reserve reserve-42
	// saga order-1: step charge: card declined; compensated
	// true
}

// A transfer as try-confirm-cancel: both accounts are tried, then both
// confirmed.
func ExampleDefineTCC() {
	account := func(name string) saga.TCCItem {
		return saga.Participant(name,
			func(ctx context.Context, c *saga.Call) error { fmt.Println("try", name); return nil },
			func(ctx context.Context, c *saga.Call) error { return nil },
			func(ctx context.Context, c *saga.Call) error { fmt.Println("cancel", name); return nil })
	}
	transfer := saga.DefineTCC("transfer", 1, account("debit alice"), account("credit bob"))
	err := saga.New().Run(context.Background(), transfer, "transfer-7", nil)
	fmt.Println(err)
	// Output:
	// try debit alice
	// try credit bob
	// <nil>
}

// Every call carries a key to de-duplicate by: the saga, the step, the
// phase.
func ExampleIdempotencyKey() {
	def := saga.Define("notify", 1, saga.Step("email", func(ctx context.Context, c *saga.Call) error {
		k, _ := saga.IdempotencyKey(ctx)
		fmt.Println(k)
		return nil
	}, nil))
	_ = saga.New().Run(context.Background(), def, "order-9", nil)
	// Output: order-9/email/action
}

// A durable coordinator on SQLite: every step's intent and result are in
// the database before Run returns, and an instance runs once: Run with its
// ID again returns the outcome it recorded, and writes nothing.
func ExampleWithStore() {
	dir, _ := os.MkdirTemp("", "saga")
	defer os.RemoveAll(dir)
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "saga.db")+"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)")
	if err != nil {
		panic(err)
	}
	defer db.Close()
	ctx := context.Background()
	if err := saga.Migrate(ctx, db, saga.SQLite); err != nil {
		panic(err)
	}
	noop := func(context.Context, *saga.Call) error { return nil }
	checkout := saga.Define("checkout", 1, saga.Step("reserve", noop, noop), saga.Step("charge", noop, noop))

	c := saga.New(saga.WithStore(db, saga.SQLite))
	fmt.Println(c.Run(ctx, checkout, "order-1", nil))
	status, _ := c.InstanceStatus(ctx, "order-1")
	fmt.Println(status, c.Stats().Commits, "commits")
	fmt.Println(c.Run(ctx, checkout, "order-1", nil), c.Stats().Commits, "commits")
	// Output:
	// <nil>
	// succeeded 3 commits
	// <nil> 3 commits
}

// A participant guards its branches with a barrier in its own transaction:
// a cancel that arrives before its try does nothing, and the try, arriving
// late, is not run.
func ExampleBarrier() {
	dir, _ := os.MkdirTemp("", "barrier")
	defer os.RemoveAll(dir)
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "bank.db")+"?_pragma=busy_timeout(5000)")
	if err != nil {
		panic(err)
	}
	defer db.Close()
	ctx := context.Background()
	if err := saga.Migrate(ctx, db, saga.SQLite); err != nil {
		panic(err)
	}
	barrier := saga.NewBarrier(saga.SQLite)
	branch := func(k saga.Key) {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			panic(err)
		}
		defer tx.Rollback()
		ran := false
		err = barrier.Call(ctx, tx, k, func(ctx context.Context) error {
			ran = true // the branch's effect goes through tx here
			return nil
		})
		if err != nil {
			panic(err)
		}
		if err := tx.Commit(); err != nil {
			panic(err)
		}
		fmt.Println(k.Phase, "ran:", ran)
	}
	branch(saga.Key{SagaID: "t-1", Step: "debit", Phase: saga.Cancel}) // before its try
	branch(saga.Key{SagaID: "t-1", Step: "debit", Phase: saga.Try})    // late
	branch(saga.Key{SagaID: "t-2", Step: "debit", Phase: saga.Try})
	branch(saga.Key{SagaID: "t-2", Step: "debit", Phase: saga.Try}) // again
	// Output:
	// cancel ran: false
	// try ran: false
	// try ran: true
	// try ran: false
}

// An operator lists a durable coordinator's instances: where each stands,
// and at which step.
func ExampleCoordinator_List() {
	dir, _ := os.MkdirTemp("", "saga")
	defer os.RemoveAll(dir)
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "saga.db")+"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)")
	if err != nil {
		panic(err)
	}
	defer db.Close()
	ctx := context.Background()
	if err := saga.Migrate(ctx, db, saga.SQLite); err != nil {
		panic(err)
	}
	noop := func(context.Context, *saga.Call) error { return nil }
	declined := func(context.Context, *saga.Call) error { return errors.New("card declined") }
	c := saga.New(saga.WithStore(db, saga.SQLite))
	_ = c.Run(ctx, saga.Define("checkout", 1, saga.Step("reserve", noop, noop), saga.Step("charge", noop, noop)), "order-1", nil)
	_ = c.Run(ctx, saga.Define("checkout", 2, saga.Step("reserve", noop, noop), saga.Step("charge", declined, noop)), "order-2", nil)

	all, err := c.List(ctx, saga.Filter{})
	if err != nil {
		panic(err)
	}
	for _, in := range all {
		fmt.Printf("%s: %s v%d %s at %s %q\n", in.ID, in.Name, in.Version, in.Status, in.Step, in.Cause)
	}
	compensated, _ := c.List(ctx, saga.Filter{Status: []saga.Status{saga.Compensated}})
	fmt.Println(len(compensated), "compensated")
	orphaned, _ := c.List(ctx, saga.Filter{Orphaned: true})
	fmt.Println(len(orphaned), "orphaned")
	// Output:
	// order-1: checkout v1 succeeded at charge ""
	// order-2: checkout v2 compensated at charge "card declined"
	// 1 compensated
	// 0 orphaned
}
