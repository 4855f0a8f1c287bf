package saga

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/resilience-go/resilience/internal/sqlstore"
)

// Every database sets every field of the saga's and of its SQL dialect.
func TestDatabasesAreComplete(t *testing.T) {
	for _, d := range []Dialect{Postgres, MySQL, SQLite} {
		assert.NoError(t, d.db.sql.Check(), d.String())
		assert.Empty(t, sqlstore.Unset(d.db), "%s: fields of database not set", d)
	}
}

func TestPrefixLength(t *testing.T) {
	_, err := Postgres.WithPrefix(strings.Repeat("p", 47))
	assert.NoError(t, err)
	_, err = Postgres.WithPrefix(strings.Repeat("p", 48))
	assert.EqualError(t, err, `saga: table prefix: "`+strings.Repeat("p", 48)+`": 48 bytes, at most 47 on PostgreSQL: identifier too long`)
	_, err = MySQL.WithPrefix(strings.Repeat("p", 48))
	assert.NoError(t, err)
	_, err = Dialect{}.WithPrefix("p")
	assert.Error(t, err)
}
