package projection_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	_ "modernc.org/sqlite"

	"github.com/resilience-go/resilience/eventstore"
	"github.com/resilience-go/resilience/projection"
)

// A read model of carts' item counts: kept up to date, rebuilt while it
// serves, and watched for lag.
func Example() {
	dir, _ := os.MkdirTemp("", "projection-example-")
	defer os.RemoveAll(dir)
	db, _ := sql.Open("sqlite", "file:"+filepath.Join(dir, "events.db")+"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)")
	defer db.Close()
	ctx := context.Background()
	store := eventstore.New(db, eventstore.SQLite)
	_ = store.Migrate(ctx)

	items := projection.New(store, projection.Projection{
		Name: "cart_items",
		Create: func(table string) []string {
			return []string{"CREATE TABLE IF NOT EXISTS " + table + " (cart TEXT PRIMARY KEY, items INTEGER NOT NULL)"}
		},
		Apply: func(ctx context.Context, tx *sql.Tx, table string, events []eventstore.Event) error {
			for _, e := range events {
				n, _ := strconv.Atoi(string(e.Payload))
				if _, err := tx.ExecContext(ctx, "INSERT INTO "+table+` (cart, items) VALUES (?, ?)
					ON CONFLICT (cart) DO UPDATE SET items = items + excluded.items`, e.Stream, n); err != nil {
					return err
				}
			}
			return nil
		},
	})
	_ = items.Migrate(ctx)

	for i, n := range []string{"2", "3", "1"} {
		tx, _ := db.BeginTx(ctx, nil)
		_, _ = store.Append(ctx, tx, fmt.Sprint("cart-", i%2), eventstore.Any, eventstore.Event{Type: "ItemAdded", Payload: []byte(n)})
		_ = tx.Commit()
	}
	states, _ := projection.Status(ctx, store)
	fmt.Println(states[0])

	// Run follows the store until ctx is done; here, until caught up.
	_ = items.Run(ctx, eventstore.UntilCaughtUp())
	var carts, total int
	_ = db.QueryRowContext(ctx, "SELECT COUNT(*), SUM(items) FROM cart_items").Scan(&carts, &total)
	fmt.Println(carts, "carts,", total, "items")

	_ = items.Rebuild(ctx)
	states, _ = projection.Status(ctx, store)
	fmt.Println(states[0])
	// Output:
	// cart_items (table cart_items_1): at 0 of 3, 3 behind
	// 2 carts, 6 items
	// cart_items (table cart_items_2): at 3 of 3, 0 behind
}
