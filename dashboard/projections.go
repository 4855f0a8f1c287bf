package dashboard

import (
	"context"
	"time"

	"github.com/resilience-go/resilience/eventstore"
	"github.com/resilience-go/resilience/projection"
)

// ProjectionsView is the projections of an event store, as
// [projection.Status] reports them.
type ProjectionsView struct {
	Name string `json:"name"`
	// Behind counts the projections whose read model has events yet to
	// apply.
	Behind int `json:"behind"`
	// Projections are the store's projections, by name.
	Projections []ProjectionView `json:"projections"`
	Error       string           `json:"error,omitempty"`
}

// ProjectionView is a projection; see [projection.State].
type ProjectionView struct {
	Name string `json:"name"`
	// Generation counts the projection's rebuilds, from 1; Table is the
	// table of that generation.
	Generation int64  `json:"generation"`
	Table      string `json:"table"`
	// Position is the last event applied to the read model, and Head the
	// last event committed to the store.
	Position int64 `json:"position"`
	Head     int64 `json:"head"`
	// Lag is how many events the read model has yet to apply, and LagTime
	// how long the oldest of them has waited: zero before the projection's
	// first Run, when it is not known.
	Lag     int64         `json:"lag"`
	LagTime time.Duration `json:"lagTime"`
	// Owner is the process whose Run holds the projection's lease, or "".
	Owner string `json:"owner"`
	// Rebuilding is set while a Rebuild replays the next generation, which
	// has reached RebuildPosition.
	Rebuilding      bool  `json:"rebuilding"`
	RebuildPosition int64 `json:"rebuildPosition"`
}

func projectionsView(ctx context.Context, name string, s *eventstore.Store) ProjectionsView {
	states, err := projection.Status(ctx, s)
	return statesView(name, states, err)
}

// statesView returns the view of the projections of states, or of err.
func statesView(name string, states []projection.State, err error) ProjectionsView {
	v := ProjectionsView{Name: name, Projections: []ProjectionView{}}
	if err != nil {
		v.Error = clip(err.Error())
		return v
	}
	for _, st := range states {
		if st.Lag > 0 {
			v.Behind++
		}
		v.Projections = append(v.Projections, ProjectionView{Name: st.Name, Generation: st.Generation, Table: st.Table,
			Position: st.Position, Head: st.Head, Lag: st.Lag, LagTime: st.LagTime, Owner: st.Owner,
			Rebuilding: st.Rebuilding, RebuildPosition: st.RebuildPosition})
	}
	return v
}
