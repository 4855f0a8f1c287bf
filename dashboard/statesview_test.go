package dashboard

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience/projection"
)

// renderProjections renders the page's section of v.
func renderProjections(t *testing.T, v ProjectionsView) string {
	t.Helper()
	var b bytes.Buffer
	require.NoError(t, page.ExecuteTemplate(&b, "projections", view{Snapshot: &Snapshot{Projections: []ProjectionsView{v}}}))
	return b.String()
}

// A projection being rebuilt shows the position its next generation has
// reached, and the process whose Run holds it; one behind shows for how
// long; those caught up count for none behind.
func TestStatesView(t *testing.T) {
	v := statesView("inventory", []projection.State{
		{Name: "stock", Generation: 2, Table: "stock_2", Position: 90, Head: 100, Lag: 10, LagTime: 65 * time.Second,
			Owner: "node-1", Rebuilding: true, RebuildPosition: 40},
		{Name: "totals", Generation: 1, Table: "totals_1", Position: 100, Head: 100, Owner: "node-2"},
	}, nil)
	assert.Equal(t, 1, v.Behind)
	assert.Equal(t, []ProjectionView{
		{Name: "stock", Generation: 2, Table: "stock_2", Position: 90, Head: 100, Lag: 10, LagTime: 65 * time.Second,
			Owner: "node-1", Rebuilding: true, RebuildPosition: 40},
		{Name: "totals", Generation: 1, Table: "totals_1", Position: 100, Head: 100, Owner: "node-2"},
	}, v.Projections)

	html := renderProjections(t, v)
	assert.Contains(t, html, `<p class="summary"><span class="num warn">1</span> of 2 behind</p>`)
	assert.Contains(t, html, `<tr class="projection behind" data-projection="stock" data-lag="10">`+"\n"+
		`<td>stock</td><td>2 <span class="id">stock_2</span> <span class="status status-rebuilding">rebuilding, at 40</span></td>`+
		`<td class="num">90</td><td class="num">100</td><td class="num lag warn">10</td><td class="age">1m05s</td><td>node-1</td>`)
	assert.Contains(t, html, `<tr class="projection" data-projection="totals" data-lag="0">`+"\n"+
		`<td>totals</td><td>1 <span class="id">totals_1</span></td>`+
		`<td class="num">100</td><td class="num">100</td><td class="num lag">0</td><td class="age">0s</td><td>node-2</td>`)

	empty := statesView("inventory", nil, nil)
	assert.Equal(t, ProjectionsView{Name: "inventory", Projections: []ProjectionView{}}, empty)
	assert.Contains(t, renderProjections(t, empty), `<p class="empty">No projection.</p>`)
}

// An error's text is clipped, and shown instead of the projections.
func TestStatesViewError(t *testing.T) {
	long := "projection: status: " + string(bytes.Repeat([]byte("x"), 2*maxText))
	v := statesView("inventory", []projection.State{{Name: "stock"}}, errors.New(long))
	assert.Equal(t, ProjectionsView{Name: "inventory", Projections: []ProjectionView{}, Error: clip(long)}, v)
	html := renderProjections(t, v)
	assert.Contains(t, html, `<p class="error">projection: status: xxx`)
	assert.NotContains(t, html, `class="summary"`)
	assert.NotContains(t, html, "<tr")
}
