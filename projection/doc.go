// Package projection keeps read models (the query side of CQRS) from the
// events of an [eventstore.Store]: a [Projection] is a table of the
// application's design, a function that creates it and a function that
// applies a batch of events to it. A [Projector] keeps the table up to
// date through a subscription whose handler writes the table in the
// transaction that moves the checkpoint, so each event takes effect
// exactly once, whatever crashes.
//
//	stock := projection.New(store, projection.Projection{
//		Name:   "stock",
//		Create: func(table string) []string { return []string{"CREATE TABLE IF NOT EXISTS " + table + " (...)"} },
//		Apply:  applyStock,
//	})
//	err := stock.Migrate(ctx)
//	go stock.Run(ctx) // in every instance: one at a time does the work
//	// Readers query the view: SELECT ... FROM stock
//
// # Rebuilds
//
// Readers query a view named after the projection, which shows the table
// of the current generation (stock_1, stock_2, ...). [Projector.Rebuild]
// replays every event into the table of the next generation while the view
// goes on showing the current one, then points the view at the new table
// in one step, drops the old one, and Run goes on with the new generation:
// readers never see an empty or half-built read model.
//
// # Lag
//
// [Status] tells, for every projection of a store, the last event applied,
// the store's head, and how far behind the read model is, in events and in
// time; and whether a rebuild is under way.
package projection
