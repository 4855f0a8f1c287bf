package projection

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/resilience-go/resilience/eventstore"
	"github.com/resilience-go/resilience/internal/sqlstore"
)

// Projection describes a read model: a table of the application's design
// that Apply keeps up to date from the events of a store.
type Projection struct {
	// Name names the read model: readers query the view of that name, which
	// shows the table of the projection's current generation, Name_1,
	// Name_2, and so on. A plain identifier of at most 40 bytes.
	Name string
	// Create returns the statements that create the read model's table,
	// named table, and its indexes. Each must be safe to repeat (CREATE
	// TABLE IF NOT EXISTS): a start after a crash runs them again.
	Create func(table string) []string
	// Apply applies a batch of events, in position order, to the table
	// named table, through tx: the transaction that also moves the
	// projection's checkpoint. It must honour ctx, and write nothing
	// outside tx.
	Apply func(ctx context.Context, tx *sql.Tx, table string, events []eventstore.Event) error
}

// maxName is the longest projection name: the table adds a generation,
// and the store's name must fit the subscriptions.
const maxName = 40

// Projector keeps one projection's read model up to date ([Projector.Run])
// and rebuilds it from the first event ([Projector.Rebuild]) while the
// current read model goes on serving. Make one with [New]. It is safe for
// concurrent use; run Run in every process that should take over when
// another dies (one at a time does the work), and Rebuild in one.
type Projector struct {
	s  *eventstore.Store
	p  Projection
	db *sql.DB
	d  *sqlstore.Dialect
}

// New returns the projector of p over the events of s. It panics if s is
// nil, or p has a bad name or no Create or Apply.
func New(s *eventstore.Store, p Projection) *Projector {
	if s == nil {
		panic("projection: New: nil Store")
	}
	if err := sqlstore.CheckIdent(p.Name); err != nil || strings.Contains(p.Name, ".") || len(p.Name) > maxName {
		panic(fmt.Sprintf("projection: New: name %q: want an identifier of at most %d bytes, without a schema", p.Name, maxName))
	}
	if p.Create == nil || p.Apply == nil {
		panic(fmt.Sprintf("projection: New: %s: Create and Apply are required", p.Name))
	}
	return &Projector{s: s, p: p, db: s.DB(), d: dialectOf(s)}
}

// dialectOf returns the SQL dialect of the store's database.
func dialectOf(s *eventstore.Store) *sqlstore.Dialect {
	name := s.Dialect().Database()
	for _, d := range sqlstore.Dialects {
		if d.Name == name {
			return d
		}
	}
	panic("projection: a store on an unknown database: " + name)
}

// registry is the table of the store's projections and their generations.
func registry(s *eventstore.Store) string { return s.Dialect().Table() + "_projections" }

// table is the read model's table of generation g.
func (pr *Projector) table(g int64) string { return pr.p.Name + "_" + strconv.FormatInt(g, 10) }

// subscription is the name of the subscription that fills generation g.
func subscription(name string, g int64) string {
	return "projection:" + name + ":" + strconv.FormatInt(g, 10)
}

// Migrate creates the projection's registry row, the table of its current
// generation and the view readers query, if they are missing. The store
// must be migrated first. It is safe to call at every start, from several
// processes at once.
func (pr *Projector) Migrate(ctx context.Context) error {
	d := pr.d
	if err := sqlstore.CheckServer(ctx, pr.db, d); err != nil {
		return fmt.Errorf("projection: Migrate: %w", err)
	}
	reg := registry(pr.s)
	if _, err := pr.db.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS "+reg+
		" (name VARCHAR(64) NOT NULL PRIMARY KEY, generation BIGINT NOT NULL)"); err != nil {
		return fmt.Errorf("projection: Migrate: %w", err)
	}
	if _, err := pr.db.ExecContext(ctx, d.InsertIgnore(reg, []string{"name", "generation"}, "?, 1"), pr.p.Name); err != nil {
		return fmt.Errorf("projection: Migrate: %w", err)
	}
	g, err := pr.generation(ctx, pr.db)
	if err != nil {
		return err
	}
	if err := pr.create(ctx, g); err != nil {
		return err
	}
	return pr.showView(ctx, g)
}

// create creates the table of generation g.
func (pr *Projector) create(ctx context.Context, g int64) error {
	for _, st := range pr.p.Create(pr.table(g)) {
		if _, err := pr.db.ExecContext(ctx, st); err != nil {
			return fmt.Errorf("projection: %s: create %s: %w", pr.p.Name, pr.table(g), err)
		}
	}
	return nil
}

// showView points the view at the table of generation g.
func (pr *Projector) showView(ctx context.Context, g int64) error {
	if err := views[pr.d](ctx, pr.db, pr.p.Name, pr.table(g)); err != nil {
		return fmt.Errorf("projection: %s: view on %s: %w", pr.p.Name, pr.table(g), err)
	}
	return nil
}

// views points a view at a table, in one step that readers see whole:
// one per database.
var views = map[*sqlstore.Dialect]func(ctx context.Context, db *sql.DB, view, table string) error{
	sqlstore.Postgres: replaceViewInTx,
	sqlstore.SQLite:   replaceViewInTx,
	// MySQL commits each DDL statement; CREATE OR REPLACE is one.
	sqlstore.MySQL: func(ctx context.Context, db *sql.DB, view, table string) error {
		_, err := db.ExecContext(ctx, "CREATE OR REPLACE VIEW "+view+" AS SELECT * FROM "+table)
		return err
	},
}

// replaceViewInTx is the view swap of the databases whose DDL is
// transactional: the view may change its columns.
func replaceViewInTx(ctx context.Context, db *sql.DB, view, table string) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it does nothing
	if _, err := tx.ExecContext(ctx, "DROP VIEW IF EXISTS "+view); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, "CREATE VIEW "+view+" AS SELECT * FROM "+table); err != nil {
		return err
	}
	return tx.Commit()
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// generation reads the projection's current generation through q.
func (pr *Projector) generation(ctx context.Context, q querier) (int64, error) {
	gs, err := sqlstore.Column[int64](ctx, q, pr.d.Rebind("SELECT generation FROM "+registry(pr.s)+" WHERE name = ?"), pr.p.Name)
	if err != nil {
		return 0, fmt.Errorf("projection: %s: generation: %w", pr.p.Name, err)
	}
	if len(gs) == 0 {
		return 0, fmt.Errorf("projection: %s: not migrated: call Migrate first", pr.p.Name)
	}
	return gs[0], nil
}

// Table returns the table behind the projection's view: the one that
// Run keeps up to date.
func (pr *Projector) Table(ctx context.Context) (string, error) {
	g, err := pr.generation(ctx, pr.db)
	if err != nil {
		return "", err
	}
	return pr.table(g), nil
}

// errMoved is how a batch of Run learns that a Rebuild moved the
// projection to another generation.
var errMoved = errors.New("projection: moved to a new generation")

// Run keeps the read model up to date until ctx is done, then returns nil:
// it applies each event to the table of the current generation, in the
// transaction that moves its checkpoint, so each event takes effect
// exactly once. After a [Projector.Rebuild] it goes on with the new
// generation. It takes the options of [eventstore.Store.Subscribe]; one
// process at a time does the work. With [eventstore.UntilCaughtUp] it
// returns once the read model has caught up with the store.
func (pr *Projector) Run(ctx context.Context, opts ...eventstore.SubscribeOption) error {
	for ctx.Err() == nil {
		g, err := pr.generation(ctx, pr.db)
		if err != nil {
			return err
		}
		if err := pr.create(ctx, g); err != nil {
			return err
		}
		if err := pr.showView(ctx, g); err != nil {
			return err
		}
		run, cancel := context.WithCancel(ctx)
		moved := false
		table := pr.table(g)
		err = pr.s.Subscribe(run, subscription(pr.p.Name, g), func(ctx context.Context, tx *sql.Tx, events []eventstore.Event) error {
			now, err := pr.generation(ctx, tx)
			if err != nil {
				return err
			}
			if now != g {
				moved = true
				cancel()
				return errMoved
			}
			return pr.p.Apply(ctx, tx, table, events)
		}, opts...)
		cancel()
		if err != nil || !moved {
			return err // ctx is done, or UntilCaughtUp caught up
		}
		// The old generation's subscription, which this Run may have made
		// anew after the Rebuild forgot it, goes with its table.
		if err := pr.s.DeleteSubscription(ctx, subscription(pr.p.Name, g)); err != nil {
			return err
		}
	}
	return nil
}

// Rebuild builds the read model anew from the first event, in the table of
// a new generation, while the view goes on showing the current one; once
// the new table has caught up with the store, it points the view at it
// and drops the old table, and Run goes on with the new generation. Use it
// after changing Create or Apply. Run one Rebuild of a projection at a
// time; one that fails can be run again. It takes the options of
// [eventstore.Store.Subscribe] for the replay.
func (pr *Projector) Rebuild(ctx context.Context, opts ...eventstore.SubscribeOption) error {
	old, err := pr.generation(ctx, pr.db)
	if err != nil {
		return err
	}
	g := old + 1
	// What a rebuild that failed left of this generation goes first.
	if err := pr.drop(ctx, g); err != nil {
		return err
	}
	if err := pr.create(ctx, g); err != nil {
		return err
	}
	table := pr.table(g)
	replay := append([]eventstore.SubscribeOption{eventstore.WithBatchSize(1000)}, opts...)
	replay = append(replay, eventstore.UntilCaughtUp())
	if err := pr.s.Subscribe(ctx, subscription(pr.p.Name, g), func(ctx context.Context, tx *sql.Tx, events []eventstore.Event) error {
		return pr.p.Apply(ctx, tx, table, events)
	}, replay...); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return fmt.Errorf("projection: %s: rebuild: %w", pr.p.Name, context.Cause(ctx))
	}
	res, err := pr.db.ExecContext(ctx, pr.d.Rebind("UPDATE "+registry(pr.s)+" SET generation = ? WHERE name = ? AND generation = ?"), g, pr.p.Name, old)
	if err != nil {
		return fmt.Errorf("projection: %s: rebuild: %w", pr.p.Name, err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return fmt.Errorf("projection: %s: rebuild: another rebuild moved the projection on (%v)", pr.p.Name, err)
	}
	if err := pr.showView(ctx, g); err != nil {
		return err
	}
	return pr.drop(ctx, old)
}

// drop drops the table of generation g and forgets its subscription.
func (pr *Projector) drop(ctx context.Context, g int64) error {
	if _, err := pr.db.ExecContext(ctx, "DROP TABLE IF EXISTS "+pr.table(g)); err != nil {
		return fmt.Errorf("projection: %s: drop %s: %w", pr.p.Name, pr.table(g), err)
	}
	if err := pr.s.DeleteSubscription(ctx, subscription(pr.p.Name, g)); err != nil {
		return fmt.Errorf("projection: %s: %w", pr.p.Name, err)
	}
	return nil
}
