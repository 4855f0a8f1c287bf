package sqlstore_test

import (
	"testing"

	"github.com/resilience-go/resilience/internal/sqlstore"
)

// BenchmarkRebind rewrites a claim query of the outbox's size for
// PostgreSQL, as the stores do for every statement they build.
func BenchmarkRebind(b *testing.B) {
	q := "UPDATE outbox SET lease_owner = ?, lease_until = ? WHERE id IN (" + sqlstore.Marks(16) + ") AND lease_owner = ?"
	b.ReportAllocs()
	for b.Loop() {
		_ = sqlstore.Postgres.Rebind(q)
	}
}

func BenchmarkCheckIdent(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if err := sqlstore.CheckIdent("app.outbox_messages"); err != nil {
			b.Fatal(err)
		}
	}
}
