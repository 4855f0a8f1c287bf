package eventstore

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/resilience-go/resilience/internal/sqlstore"
)

// Every database sets every field of its value.
func TestDatabasesAreComplete(t *testing.T) {
	for _, d := range []Dialect{Postgres, MySQL, SQLite} {
		assert.Empty(t, sqlstore.Unset(d.db), d.String())
		assert.Equal(t, "events", d.Table())
	}
	assert.Equal(t, "PostgreSQL", Postgres.Database())
	assert.Equal(t, "zero Dialect", Dialect{}.String())
	assert.Empty(t, Dialect{}.Database())
}

// check is the expected-version rule that every database's append applies.
func TestCheck(t *testing.T) {
	tests := []struct {
		expected, actual int64
		ok               bool
	}{
		{Any, 0, true}, {Any, 7, true},
		{NoStream, 0, true}, {NoStream, 1, false},
		{StreamExists, 0, false}, {StreamExists, 3, true},
		{3, 3, true}, {3, 2, false}, {3, 4, false},
	}
	for _, tt := range tests {
		ok, err := check(tt.expected, tt.actual)
		assert.NoError(t, err)
		assert.Equal(t, tt.ok, ok, "expected %d, actual %d", tt.expected, tt.actual)
	}
	_, err := check(-3, 0)
	assert.ErrorIs(t, err, ErrBadExpected)
}
