//lint:file-ignore SA1019 the deprecated functions are what this file checks

package outbox_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience/internal/servicetest"
	"github.com/resilience-go/resilience/outbox"
)

// The functions of the outbox before it was a value go on working.
func TestDeprecatedFunctions(t *testing.T) {
	db := servicetest.SQLite(t)
	ctx := context.Background()
	d := outbox.SQLite
	require.NoError(t, outbox.Migrate(ctx, db.DB, d))
	tx, err := db.BeginTx(ctx, nil)
	require.NoError(t, err)
	require.NoError(t, outbox.Enqueue(ctx, tx, d, outbox.Message{ID: "m1", Topic: "t"}, outbox.Message{ID: "m2", Topic: "t"}))
	require.NoError(t, tx.Commit())
	b, err := outbox.ReadBacklog(ctx, db.DB, d)
	require.NoError(t, err)
	assert.Equal(t, int64(2), b.Pending)

	pub := &memPublisher{fail: func(m outbox.Message) error {
		if m.ID == "m1" {
			return errors.New("refused")
		}
		return nil
	}}
	relay := outbox.NewRelay(db.DB, d, pub, outbox.WithMaxAttempts(1))
	assert.Equal(t, 1, drain(t, relay))
	dead, err := outbox.ListDead(ctx, db.DB, d, 10)
	require.NoError(t, err)
	require.Len(t, dead, 1)
	assert.Equal(t, "m1", dead[0].ID)
	n, err := outbox.Retry(ctx, db.DB, d, "m1")
	require.NoError(t, err)
	assert.Equal(t, int64(1), n)
	n, err = outbox.Discard(ctx, db.DB, d, "m1")
	require.NoError(t, err)
	assert.Equal(t, int64(1), n)

	tx, err = db.BeginTx(ctx, nil)
	require.NoError(t, err)
	first, err := outbox.NewInbox(d, "billing").Receive(ctx, tx, "m2")
	require.NoError(t, err)
	assert.True(t, first)
	require.NoError(t, tx.Commit())
}
