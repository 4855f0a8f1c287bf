package projection

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/resilience-go/resilience/eventstore"
)

// State is where a projection stands, for operators.
type State struct {
	Name string
	// Generation counts the projection's rebuilds, from 1; Table is the
	// table of that generation, behind the view named Name.
	Generation int64
	Table      string
	// Position is the last event applied to the read model, and Head the
	// last event committed to the store.
	Position, Head int64
	// Lag is how many events the read model has yet to apply, and LagTime
	// how long the oldest of them has waited (zero before the first Run).
	Lag     int64
	LagTime time.Duration
	// Owner is the process whose Run holds the projection's lease, or "".
	Owner string
	// Rebuilding is set while a Rebuild replays the next generation, which
	// has reached RebuildPosition.
	Rebuilding      bool
	RebuildPosition int64
}

// Status returns the state of every projection of the store s, by name.
func Status(ctx context.Context, s *eventstore.Store) ([]State, error) {
	subs, err := s.Subscriptions(ctx)
	if err != nil {
		return nil, err
	}
	byName := map[string]eventstore.SubscriptionStatus{}
	for _, st := range subs {
		byName[st.Name] = st
	}
	head, err := s.Head(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := s.DB().QueryContext(ctx, "SELECT name, generation FROM "+registry(s)+" ORDER BY name")
	if err != nil {
		return nil, fmt.Errorf("projection: status: %w", err)
	}
	defer rows.Close()
	var out []State
	for rows.Next() {
		var st State
		if err := rows.Scan(&st.Name, &st.Generation); err != nil {
			return nil, fmt.Errorf("projection: status: %w", err)
		}
		st.Table = st.Name + "_" + strconv.FormatInt(st.Generation, 10)
		st.Head, st.Lag = head, head
		if sub, ok := byName[subscription(st.Name, st.Generation)]; ok {
			st.Position, st.Lag, st.LagTime, st.Owner = sub.Position, sub.Lag, sub.LagTime, sub.Owner
		}
		if next, ok := byName[subscription(st.Name, st.Generation+1)]; ok {
			st.Rebuilding, st.RebuildPosition = true, next.Position
		}
		out = append(out, st)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("projection: status: %w", err)
	}
	return out, nil
}

// String formats the state in one line, as an operator's listing shows it.
func (st State) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s (table %s): at %d of %d, %d behind", st.Name, st.Table, st.Position, st.Head, st.Lag)
	if st.Rebuilding {
		fmt.Fprintf(&b, ", rebuilding at %d", st.RebuildPosition)
	}
	return b.String()
}
