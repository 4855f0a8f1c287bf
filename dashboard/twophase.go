package dashboard

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/resilience-go/resilience/twophase"
)

// TwoPhaseView is the branches in doubt on the participants of a two-phase
// commit coordinator, as [twophase.Coordinator.ListInDoubt] lists them.
type TwoPhaseView struct {
	Name string `json:"name"`
	// AlertAfter is the coordinator's alert threshold
	// ([twophase.WithAlertAfter]): a branch in doubt past it is an alert,
	// as recovery reports it.
	AlertAfter time.Duration `json:"alertAfter"`
	// InDoubt counts the branches in doubt; Alerts those of them in doubt
	// past AlertAfter.
	InDoubt int `json:"inDoubt"`
	Alerts  int `json:"alerts"`
	// Branches are the oldest branches in doubt, oldest first, at most
	// [InDoubtShown].
	Branches []InDoubtView `json:"branches"`
	// More says that there are more branches than Branches holds.
	More  bool   `json:"more"`
	Error string `json:"error,omitempty"`
}

// InDoubtShown is how many branches a [TwoPhaseView] holds at most.
const InDoubtShown = 100

// InDoubtView is a branch in doubt; see [twophase.InDoubt].
type InDoubtView struct {
	Participant string `json:"participant"`
	TxID        string `json:"txID"`
	Coordinator string `json:"coordinator"`
	// Age is how long ago its transaction began.
	Age time.Duration `json:"age"`
	// Decision is the decision recorded for its transaction by its name:
	// "undecided", "commit" or "abort".
	Decision string `json:"decision"`
	// Alert says that it has been in doubt past the view's AlertAfter.
	Alert bool `json:"alert"`
}

func twoPhaseView(ctx context.Context, name string, c *twophase.Coordinator) TwoPhaseView {
	list, err := c.ListInDoubt(ctx)
	return inDoubtView(name, c.AlertAfter(), list, err)
}

// inDoubtView returns the view of the branches of list, or of err.
func inDoubtView(name string, alertAfter time.Duration, list []twophase.InDoubt, err error) TwoPhaseView {
	v := TwoPhaseView{Name: name, AlertAfter: alertAfter, Branches: []InDoubtView{}}
	if err != nil {
		v.Error = clip(err.Error())
		return v
	}
	// Oldest first across the participants, of which ListInDoubt orders
	// each on its own.
	slices.SortStableFunc(list, func(a, b twophase.InDoubt) int { return cmp.Compare(b.Age, a.Age) })
	v.InDoubt = len(list)
	for i, d := range list {
		alert := d.Age >= alertAfter
		if alert {
			v.Alerts++
		}
		if i >= InDoubtShown {
			v.More = true
			continue
		}
		v.Branches = append(v.Branches, InDoubtView{Participant: d.Participant, TxID: d.TxID,
			Coordinator: d.Coordinator, Age: d.Age, Decision: d.Decision.String(), Alert: alert})
	}
	return v
}
