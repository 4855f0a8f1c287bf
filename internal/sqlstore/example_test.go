package sqlstore_test

import (
	"fmt"

	"github.com/resilience-go/resilience/internal/sqlstore"
)

func ExampleDialect() {
	q := "UPDATE outbox SET lease_until = ? WHERE id IN (" + sqlstore.Marks(3) + ")"
	fmt.Println(sqlstore.Postgres.Rebind(q))
	fmt.Println(sqlstore.MySQL.Rebind(q))
	// Output:
	// UPDATE outbox SET lease_until = $1 WHERE id IN ($2, $3, $4)
	// UPDATE outbox SET lease_until = ? WHERE id IN (?, ?, ?)
}

func ExampleDialect_insertIgnore() {
	for _, d := range sqlstore.Dialects {
		fmt.Println(d.InsertIgnore("inbox", []string{"consumer", "message_id"}, "?, ?"))
	}
	// Output:
	// INSERT INTO inbox (consumer, message_id) VALUES ($1, $2) ON CONFLICT DO NOTHING
	// INSERT IGNORE INTO inbox (consumer, message_id) VALUES (?, ?)
	// INSERT OR IGNORE INTO inbox (consumer, message_id) VALUES (?, ?)
}

func ExampleCheckIdent() {
	fmt.Println(sqlstore.CheckIdent("app.outbox"))
	fmt.Println(sqlstore.CheckIdent("outbox; DROP TABLE users"))
	// Output:
	// <nil>
	// "outbox; DROP TABLE users": not a valid SQL identifier
}
