package pgnotify_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience/internal/servicetest"
)

// BenchmarkWake measures a notification from its commit to the return of
// Wait: "commit" is a pg_notify in a transaction of its own, from another
// connection, to a channel nobody listens on; "commit-to-wake" is the same
// commit on the Waker's channel followed by the Wait it ends.
func BenchmarkWake(b *testing.B) {
	db := servicetest.Postgres(b)
	channel := channelName(b)
	w := newWaker(b, db.DSN, channel, nil)
	listen(b, w)
	ctx := context.Background()
	sender, err := pgx.Connect(ctx, db.DSN)
	require.NoError(b, err)
	b.Cleanup(func() { sender.Close(context.Background()) })

	b.Run("commit", func(b *testing.B) {
		nobody := channelName(b)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := sender.Exec(ctx, "SELECT pg_notify($1, '')", nobody); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("commit-to-wake", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := sender.Exec(ctx, "SELECT pg_notify($1, '')", channel); err != nil {
				b.Fatal(err)
			}
			if err := w.Wait(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
}
