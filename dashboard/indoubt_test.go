package dashboard

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience/twophase"
)

// The view of many branches in doubt on two participants, each listed
// oldest first on its own: the oldest InDoubtShown of all, oldest first,
// those past the threshold marked and counted, all of them, and the rest
// said to be more. The page says how many it shows of how many.
func TestInDoubtView(t *testing.T) {
	const n = InDoubtShown + 50
	var list []twophase.InDoubt
	for _, p := range []string{"ledger", "orders"} {
		for i := range n / 2 {
			age := time.Duration(n-2*i) * time.Minute // ledger: 150m, 148m, ...; orders: 149m, ...
			if p == "orders" {
				age -= time.Minute
			}
			list = append(list, twophase.InDoubt{TxID: fmt.Sprintf("tp.node-1.%d", age/time.Minute), Participant: p,
				Coordinator: "node-1", Age: age, Decision: twophase.Commit})
		}
	}
	v := inDoubtView("bank", 60*time.Minute, list, nil)
	assert.Empty(t, v.Error)
	assert.Equal(t, n, v.InDoubt)
	assert.Equal(t, n-59, v.Alerts, "those of 60m and more")
	assert.True(t, v.More)
	require.Len(t, v.Branches, InDoubtShown)
	for i, b := range v.Branches {
		age := time.Duration(n-i) * time.Minute
		assert.Equal(t, InDoubtView{Participant: []string{"ledger", "orders"}[i%2], TxID: fmt.Sprintf("tp.node-1.%d", n-i),
			Coordinator: "node-1", Age: age, Decision: "commit", Alert: age >= 60*time.Minute}, b, i)
	}

	var page bytes.Buffer
	require.NoError(t, pageTemplate(t, &page, v))
	assert.Equal(t, 91, strings.Count(page.String(), `<tr class="in-doubt alert"`), "150m to 60m")
	assert.Equal(t, 9, strings.Count(page.String(), `<tr class="in-doubt"`), "59m to 51m")
	assert.Contains(t, page.String(), `<span class="num warn">150</span> in doubt · <span class="num bad">91</span> in doubt for 1h00m or more`)
	assert.Contains(t, page.String(), `<p class="more">The oldest 100 of 150.</p>`)
}

// A list that failed is the error, clipped, and no branch.
func TestInDoubtViewError(t *testing.T) {
	v := inDoubtView("bank", time.Minute, nil, errors.New("twophase: list the prepared branches on ledger: "+strings.Repeat("x", 2*maxText)))
	assert.Equal(t, TwoPhaseView{Name: "bank", AlertAfter: time.Minute, Branches: []InDoubtView{},
		Error: clip("twophase: list the prepared branches on ledger: " + strings.Repeat("x", 2*maxText))}, v)
	assert.LessOrEqual(t, len(v.Error), maxText+len("…"))

	var page bytes.Buffer
	require.NoError(t, pageTemplate(t, &page, v))
	assert.Contains(t, page.String(), `<p class="error">twophase: list the prepared branches on ledger: xxx`)
	assert.NotContains(t, page.String(), "in doubt ·")
}

// pageTemplate renders the page's section of v.
func pageTemplate(t *testing.T, w *bytes.Buffer, v TwoPhaseView) error {
	t.Helper()
	return page.ExecuteTemplate(w, "twophase", view{Snapshot: &Snapshot{TwoPhase: []TwoPhaseView{v}}})
}
