package projection

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/resilience-go/resilience/internal/sqlstore"
)

// Every database has its way to point a view at a table.
func TestViewsCoverEveryDatabase(t *testing.T) {
	for _, d := range sqlstore.Dialects {
		assert.NotNil(t, views[d], d.Name)
	}
	assert.Len(t, views, len(sqlstore.Dialects))
}
