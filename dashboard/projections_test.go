package dashboard_test

import (
	"context"
	"database/sql"
	"fmt"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience/dashboard"
	"github.com/resilience-go/resilience/eventstore"
	"github.com/resilience-go/resilience/internal/servicetest"
	"github.com/resilience-go/resilience/projection"
)

// positions is a projection that keeps the position of each event it
// applied.
func positions(name string) projection.Projection {
	return projection.Projection{
		Name: name,
		Create: func(table string) []string {
			return []string{"CREATE TABLE IF NOT EXISTS " + table + " (position BIGINT NOT NULL PRIMARY KEY)"}
		},
		Apply: func(ctx context.Context, tx *sql.Tx, table string, events []eventstore.Event) error {
			for _, e := range events {
				if _, err := tx.ExecContext(ctx, fmt.Sprintf("INSERT INTO %s (position) VALUES (%d)", table, e.Position)); err != nil {
					return err
				}
			}
			return nil
		},
	}
}

// newStore returns an event store on db, migrated, with the projectors
// of the projections named names, migrated too.
func newStore(t testing.TB, db *servicetest.DB, names ...string) (*eventstore.Store, []*projection.Projector) {
	t.Helper()
	ctx := context.Background()
	d := map[string]eventstore.Dialect{"postgres": eventstore.Postgres, "sqlite": eventstore.SQLite}[db.Dialect]
	s := eventstore.New(db.DB, d)
	require.NoError(t, s.Migrate(ctx))
	var prs []*projection.Projector
	for _, name := range names {
		pr := projection.New(s, positions(name))
		require.NoError(t, pr.Migrate(ctx))
		prs = append(prs, pr)
	}
	return s, prs
}

// appendEvents appends n events to a stream of s, in one transaction.
func appendEvents(t testing.TB, s *eventstore.Store, n int) {
	t.Helper()
	ctx := context.Background()
	tx, err := s.DB().BeginTx(ctx, nil)
	require.NoError(t, err)
	events := make([]eventstore.Event, n)
	for i := range events {
		events[i] = eventstore.Event{Type: "Received", Payload: []byte("1")}
	}
	_, err = s.Append(ctx, tx, "stock-1", eventstore.Any, events...)
	require.NoError(t, err)
	require.NoError(t, tx.Commit())
}

// projectionRE matches the row of a projection on the page: its name,
// generation, position, head and lag, and the age of its oldest event not
// applied, as a pattern.
func projectionRE(name string, position, head, lag int64, waited string) *regexp.Regexp {
	class, warn := "projection", ""
	if lag > 0 {
		class, warn = "projection behind", " warn"
	}
	return regexp.MustCompile(regexp.QuoteMeta(fmt.Sprintf(`<tr class="%s" data-projection="%s" data-lag="%d">`+"\n"+
		`<td>%s</td><td>1 <span class="id">%s_1</span></td><td class="num">%d</td><td class="num">%d</td><td class="num lag%s">%d</td><td class="age">`,
		class, name, lag, name, name, position, head, warn, lag)) + waited + `</td><td>`)
}

// A projection that has applied 3 of 5 events shows 2 behind, with the
// age of the oldest it has yet to apply; one never run shows every event
// behind, for an age not known; once they catch up, they show none
// behind, on the page, its stream and snapshot.json.
func TestProjections(t *testing.T) {
	for _, database := range []servicetest.Database{{Dialect: "sqlite", Open: servicetest.SQLite}, {Dialect: "postgres", Open: servicetest.Postgres}} {
		t.Run(database.Dialect, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			s, prs := newStore(t, database.Open(t), "stock", "totals")
			stock, totals := prs[0], prs[1]
			appendEvents(t, s, 3)
			require.NoError(t, stock.Run(ctx, eventstore.UntilCaughtUp()))
			appendEvents(t, s, 2)

			assert.PanicsWithValue(t, `dashboard: New: two event stores named "inventory"`, func() {
				dashboard.New(dashboard.WithProjections("inventory", s), dashboard.WithProjections("inventory", s))
			})
			d := dashboard.New(dashboard.WithProjections("inventory", s))
			srv := httptest.NewServer(d)
			defer srv.Close()
			// SQLite's clock counts milliseconds: the 4th event has waited
			// for none until the next one.
			require.Eventually(t, func() bool { return d.Snapshot(ctx).Projections[0].Projections[0].LagTime > 0 },
				10*time.Second, time.Millisecond, "the 4th event waits")

			_, body := get(t, srv.Client(), srv.URL+"/snapshot.json")
			assert.Contains(t, body, `"projections":[{"name":"inventory","behind":2,"projections":[`+
				`{"name":"stock","generation":1,"table":"stock_1","position":3,"head":5,"lag":2,"lagTime":`)
			assert.Contains(t, body, `{"name":"totals","generation":1,"table":"totals_1","position":0,"head":5,"lag":5,"lagTime":0,"owner":"","rebuilding":false,"rebuildPosition":0}]}]`)
			v := snapshot(t, srv.Client(), srv.URL+"/").Projections
			require.Len(t, v, 1)
			assert.Empty(t, v[0].Error)
			require.Len(t, v[0].Projections, 2)
			assert.Positive(t, v[0].Projections[0].LagTime, "the 4th event has waited since it was appended")
			assert.Empty(t, v[0].Projections[0].Owner, "no Run holds the lease")

			_, page := get(t, srv.Client(), srv.URL+"/")
			stream := strings.ReplaceAll(readStream(t, srv.URL+"/events", "projections"), "\ndata: ", "\n")
			for name, body := range map[string]string{"page": page, "stream": stream} {
				assert.Contains(t, body, `<div class="projections" data-name="inventory">`+"\n<h3>inventory</h3>\n"+
					`<p class="summary"><span class="num warn">2</span> of 2 behind</p>`, name)
				assert.Regexp(t, projectionRE("stock", 3, 5, 2, `(\d+s|\d+m\d\ds)`), body, name)
				assert.Regexp(t, projectionRE("totals", 0, 5, 5, regexp.QuoteMeta(`<span title="not known before the projection's first Run">–</span>`)), body, name)
			}

			require.NoError(t, stock.Run(ctx, eventstore.UntilCaughtUp()))
			require.NoError(t, totals.Run(ctx, eventstore.UntilCaughtUp()))
			_, body = get(t, srv.Client(), srv.URL+"/snapshot.json")
			assert.Contains(t, body, `"projections":[{"name":"inventory","behind":0,"projections":[`+
				`{"name":"stock","generation":1,"table":"stock_1","position":5,"head":5,"lag":0,"lagTime":0,"owner":"","rebuilding":false,"rebuildPosition":0},`+
				`{"name":"totals","generation":1,"table":"totals_1","position":5,"head":5,"lag":0,"lagTime":0,"owner":"","rebuilding":false,"rebuildPosition":0}]}]`)
			_, page = get(t, srv.Client(), srv.URL+"/")
			assert.Contains(t, page, `<p class="summary"><span class="num">0</span> of 2 behind</p>`)
			assert.Regexp(t, projectionRE("stock", 5, 5, 0, "0s"), page)
			assert.Regexp(t, projectionRE("totals", 5, 5, 0, "0s"), page)
			assert.NotContains(t, page, `class="projection behind"`)
		})
	}
}

// When the projections cannot be read, here before any projection of the
// store has migrated, the page shows why, and shows them once they can be.
func TestProjectionsError(t *testing.T) {
	ctx := context.Background()
	db := servicetest.SQLite(t)
	s, _ := newStore(t, db)
	d := dashboard.New(dashboard.WithProjections("inventory", s))
	srv := httptest.NewServer(d)
	defer srv.Close()

	v := d.Snapshot(ctx).Projections[0]
	assert.Contains(t, v.Error, "projection: status: ")
	assert.Contains(t, v.Error, s.Dialect().Table()+"_projections")
	assert.Empty(t, v.Projections)
	_, page := get(t, srv.Client(), srv.URL+"/")
	assert.Regexp(t, `<div class="projections" data-name="inventory">\n<h3>inventory</h3>\n<p class="error">projection: status: [^<]+</p>`, page)
	assert.NotContains(t, page, `<tr class="projection`)

	require.NoError(t, projection.New(s, positions("stock")).Migrate(ctx))
	v = d.Snapshot(ctx).Projections[0]
	assert.Empty(t, v.Error)
	assert.Equal(t, []dashboard.ProjectionView{{Name: "stock", Generation: 1, Table: "stock_1"}}, v.Projections)
	_, page = get(t, srv.Client(), srv.URL+"/")
	assert.Regexp(t, projectionRE("stock", 0, 0, 0, "0s"), page)
	assert.NotContains(t, page, `class="error"`)
}
