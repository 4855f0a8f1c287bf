package dashboard_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience/dashboard"
	"github.com/resilience-go/resilience/internal/servicetest"
	"github.com/resilience-go/resilience/twophase"
)

// inDoubt is a coordinator over a PostgreSQL home, a second PostgreSQL
// schema and a MariaDB database, which left two transactions in doubt,
// each with a branch prepared on pg and one on maria: committed, its
// branches not, and undecided.
type inDoubt struct {
	c                    *twophase.Coordinator
	home, pg, maria      *twophase.Participant
	mariaDB              *servicetest.DB
	committed, undecided string // the transactions' IDs
}

// newInDoubt makes an inDoubt whose coordinator has opts, and ends its
// branches when the test ends.
func newInDoubt(t testing.TB, opts ...twophase.Option) *inDoubt {
	t.Helper()
	ctx := context.Background()
	homeDB, pgDB, mariaDB := servicetest.Postgres(t), servicetest.Postgres(t), servicetest.MySQL(t)
	// Names of the test's own: the servers list the branches of every
	// test, by participant name.
	suffix := servicetest.UniqueName(t)[3:11]
	f := &inDoubt{
		home:    twophase.Postgres("home-"+suffix, homeDB.DB),
		pg:      twophase.Postgres("pg-"+suffix, pgDB.DB),
		maria:   twophase.MySQL("maria-"+suffix, mariaDB.DB),
		mariaDB: mariaDB,
	}
	for _, db := range []*servicetest.DB{pgDB, mariaDB} {
		_, err := db.Exec("CREATE TABLE dashboard_twophase (id VARCHAR(64) PRIMARY KEY)")
		require.NoError(t, err)
	}
	id := servicetest.UniqueName(t)
	var stopAt atomic.Value // of twophase.Point
	stopAt.Store(twophase.AfterDecision)
	stopped := errors.New("stopped by the test")
	hook := twophase.WithHook(func(_ context.Context, at twophase.Point, _ string) error {
		if at == stopAt.Load().(twophase.Point) {
			return stopped
		}
		return nil
	})
	c, err := twophase.New(ctx, id, f.home, []*twophase.Participant{f.pg, f.maria}, append(opts, hook)...)
	require.NoError(t, err)
	f.c = c
	t.Cleanup(func() { f.recover(t) }) // before the databases are dropped

	for _, at := range []twophase.Point{twophase.AfterDecision, twophase.BeforeDecision} {
		stopAt.Store(at)
		tx, err := twophase.Begin(ctx, c)
		require.NoError(t, err)
		_, err = tx.On(f.pg).ExecContext(ctx, "INSERT INTO dashboard_twophase (id) VALUES ($1)", tx.ID())
		require.NoError(t, err)
		_, err = tx.On(f.maria).ExecContext(ctx, "INSERT INTO dashboard_twophase (id) VALUES (?)", tx.ID())
		require.NoError(t, err)
		require.ErrorIs(t, tx.Commit(ctx), stopped, at)
		if at == twophase.AfterDecision {
			f.committed = tx.ID()
		} else {
			f.undecided = tx.ID()
		}
	}
	require.Eventually(t, func() bool {
		list, err := c.ListInDoubt(ctx)
		return err == nil && len(list) == 4
	}, 10*time.Second, 10*time.Millisecond, "two transactions, two branches each, in doubt")
	return f
}

// recover ends every branch of f's transactions, as recovery does past the
// grace period, and checks that none is left prepared.
func (f *inDoubt) recover(t testing.TB) {
	ctx := context.Background()
	c, err := twophase.New(ctx, f.c.ID(), f.home, []*twophase.Participant{f.pg, f.maria}, twophase.WithGrace(time.Nanosecond))
	if err != nil {
		t.Errorf("recover: %v", err)
		return
	}
	if _, err := c.Recover(ctx); err != nil {
		t.Errorf("recover: %v", err)
	}
	if list, err := c.ListInDoubt(ctx); err != nil || len(list) > 0 {
		t.Errorf("left in doubt after recovery: %v, %v", list, err)
	}
}

// rowRE matches the row of a branch on the page: its transaction,
// participant, decision, and age, marked or not as an alert.
func rowRE(tx, participant, decision string, alert bool) *regexp.Regexp {
	class, mark := "in-doubt", ""
	if alert {
		class, mark = "in-doubt alert", ` <span class="status status-alert">alert</span>`
	}
	return regexp.MustCompile(regexp.QuoteMeta(`<tr class="`+class+`" data-tx="`+tx+`" data-participant="`+participant+
		`" data-decision="`+decision+`">`) + `\n<td>` + regexp.QuoteMeta(participant+`</td><td class="id">`+tx+`</td>`) +
		`<td>[^<]+</td><td class="age">(\d+s|\d+m\d\ds)` + regexp.QuoteMeta(mark+`</td><td><span class="status status-`+decision+`">`+decision+`</span></td>`))
}

// The page, its stream and snapshot.json show the branches in doubt, oldest
// first, with their decision and age; those past the coordinator's alert
// threshold are marked, and the others not. Recovery's alerts are events
// of the page; once recovery ends the branches, none is left.
func TestTwoPhase(t *testing.T) {
	ctx := context.Background()
	events := new(dashboard.Events)
	f := newInDoubt(t, twophase.WithAlertAfter(time.Nanosecond), twophase.WithObserver(events)) // every branch is an alert
	// Another coordinator on the same participants, with the default
	// threshold, which none of them is past.
	watch, err := twophase.New(ctx, servicetest.UniqueName(t), f.home, []*twophase.Participant{f.pg, f.maria})
	require.NoError(t, err)
	assert.PanicsWithValue(t, `dashboard: New: two coordinators of two-phase commit named "ledger"`, func() {
		dashboard.New(dashboard.WithTwoPhase("ledger", f.c), dashboard.WithTwoPhase("ledger", watch))
	})
	d := dashboard.New(dashboard.WithEvents(events), dashboard.WithTwoPhase("ledger", f.c), dashboard.WithTwoPhase("watch", watch))
	srv := httptest.NewServer(d)
	defer srv.Close()

	_, body := get(t, srv.Client(), srv.URL+"/snapshot.json")
	assert.Contains(t, body, `"two_phase":[{"name":"ledger","alertAfter":1,"inDoubt":4,"alerts":4,"branches":[{"participant":"`)
	assert.Contains(t, body, `","coordinator":"`+f.c.ID()+`","age":`)
	assert.Contains(t, body, `,"decision":"undecided","alert":true}`)
	assert.Contains(t, body, `{"name":"watch","alertAfter":300000000000,"inDoubt":4,"alerts":0,"branches":[`)
	s := snapshot(t, srv.Client(), srv.URL+"/")
	require.Len(t, s.TwoPhase, 2)
	for i, alert := range []bool{true, false} {
		v := s.TwoPhase[i]
		assert.Empty(t, v.Error, v.Name)
		assert.Equal(t, 4, v.InDoubt, v.Name)
		assert.False(t, v.More, v.Name)
		require.Len(t, v.Branches, 4, v.Name)
		want := map[string]string{} // decision by transaction and participant
		for _, tx := range []string{f.committed, f.undecided} {
			decision := "commit"
			if tx == f.undecided {
				decision = "undecided"
			}
			for _, p := range []*twophase.Participant{f.pg, f.maria} {
				want[tx+"/"+p.Name()] = decision
			}
		}
		for j, b := range v.Branches {
			assert.Equal(t, want[b.TxID+"/"+b.Participant], b.Decision, "%s: %+v", v.Name, b)
			delete(want, b.TxID+"/"+b.Participant)
			assert.Equal(t, f.c.ID(), b.Coordinator, v.Name)
			assert.Positive(t, b.Age, v.Name)
			assert.Equal(t, alert, b.Alert, v.Name)
			if j > 0 {
				assert.LessOrEqual(t, b.Age, v.Branches[j-1].Age, "%s: oldest first", v.Name)
			}
		}
		assert.Empty(t, want, "%s: every branch, once", v.Name)
		assert.Equal(t, f.committed, v.Branches[0].TxID, "%s: the older transaction first", v.Name)
	}
	assert.Equal(t, time.Nanosecond, s.TwoPhase[0].AlertAfter)
	assert.Equal(t, 4, s.TwoPhase[0].Alerts)
	assert.Equal(t, 5*time.Minute, s.TwoPhase[1].AlertAfter)
	assert.Zero(t, s.TwoPhase[1].Alerts)

	_, page := get(t, srv.Client(), srv.URL+"/")
	stream := readStream(t, srv.URL+"/events", "twophase")
	stream = strings.ReplaceAll(stream, "\ndata: ", "\n")
	for name, body := range map[string]string{"page": page, "stream": stream} {
		ledger, watched, ok := strings.Cut(body, `<div class="twophase" data-name="watch">`)
		require.True(t, ok, "%s: both coordinators: %s", name, body)
		assert.Contains(t, ledger, `<div class="twophase" data-name="ledger">`, name)
		assert.Contains(t, ledger, `<span class="num warn">4</span> in doubt · <span class="num bad">4</span> in doubt for 0s or more`, name)
		assert.Contains(t, watched, `<span class="num warn">4</span> in doubt · <span class="num">0</span> in doubt for 5m00s or more`, name)
		for _, p := range []*twophase.Participant{f.pg, f.maria} {
			assert.Regexp(t, rowRE(f.committed, p.Name(), "commit", true), ledger, name)
			assert.Regexp(t, rowRE(f.undecided, p.Name(), "undecided", true), ledger, name)
			assert.Regexp(t, rowRE(f.committed, p.Name(), "commit", false), watched, name)
			assert.Regexp(t, rowRE(f.undecided, p.Name(), "undecided", false), watched, name)
		}
		assert.NotContains(t, body, `class="more"`, name)
	}

	// The coordinator's recovery commits the committed transaction, and
	// alerts on the undecided one, within its grace period: the page lists
	// the alerts among its events.
	_, err = f.c.Recover(ctx)
	require.NoError(t, err)
	s = snapshot(t, srv.Client(), srv.URL+"/")
	assert.Equal(t, 2, s.TwoPhase[0].InDoubt)
	for _, b := range s.TwoPhase[0].Branches {
		assert.Equal(t, f.undecided, b.TxID)
	}
	_, page = get(t, srv.Client(), srv.URL+"/")
	for _, p := range []*twophase.Participant{f.pg, f.maria} {
		assert.Contains(t, page, "twophase: transaction "+f.undecided+" in doubt on "+p.Name()+" for ")
		assert.Regexp(t, rowRE(f.undecided, p.Name(), "undecided", true), page)
		assert.NotRegexp(t, rowRE(f.committed, p.Name(), "commit", true), page)
	}

	f.recover(t)
	s = snapshot(t, srv.Client(), srv.URL+"/")
	for _, v := range s.TwoPhase {
		assert.Zero(t, v.InDoubt, v.Name)
		assert.Empty(t, v.Branches, v.Name)
	}
	_, page = get(t, srv.Client(), srv.URL+"/")
	assert.NotContains(t, page, `<tr class="in-doubt`)
	assert.Contains(t, page, `<span class="num">0</span> in doubt ·`)
}

// When the branches cannot be listed, the page shows why, and shows them
// again once they can.
func TestTwoPhaseError(t *testing.T) {
	ctx := context.Background()
	f := newInDoubt(t)
	cut, proxy := servicetest.ThroughProxy(t, f.mariaDB)
	c, err := twophase.New(ctx, servicetest.UniqueName(t), f.home,
		[]*twophase.Participant{f.pg, twophase.MySQL(f.maria.Name(), cut.DB)})
	require.NoError(t, err)
	d := dashboard.New(dashboard.WithTwoPhase("ledger", c))
	srv := httptest.NewServer(d)
	defer srv.Close()

	proxy.Cut()
	v := d.Snapshot(ctx).TwoPhase[0]
	assert.Contains(t, v.Error, "twophase: list the prepared branches on "+f.maria.Name())
	assert.Empty(t, v.Branches)
	_, page := get(t, srv.Client(), srv.URL+"/")
	assert.Regexp(t, `<div class="twophase" data-name="ledger">\n<h3>ledger</h3>\n<p class="error">twophase: list the prepared branches on `+f.maria.Name()+`: [^<]+</p>`, page)
	assert.NotContains(t, page, `<tr class="in-doubt`)

	proxy.Restore()
	v = d.Snapshot(ctx).TwoPhase[0]
	assert.Empty(t, v.Error)
	assert.Len(t, v.Branches, 4)
}
