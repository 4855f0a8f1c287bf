package twophase

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/internal/sqlstore"
)

// Participant is a database that takes part in transactions: a PostgreSQL
// database ([Postgres]) or a MySQL or MariaDB database ([MySQL]), under a
// name that identifies it in the transactions' branch IDs. Its zero value
// is not usable. It is safe for concurrent use.
type Participant struct {
	name string
	db   *sql.DB
	p    *protocol
}

// Name returns the participant's name.
func (p *Participant) Name() string { return p.name }

func (p *Participant) String() string { return p.name + " (" + p.p.name + ")" }

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)

// newParticipant checks name, which the program gives: a bad one panics.
func newParticipant(fn, name string, db *sql.DB, p *protocol) *Participant {
	if !nameRE.MatchString(name) {
		panic(fmt.Sprintf("twophase: %s(%q): want a name of 1 to 32 letters, digits, '_' or '-'", fn, name))
	}
	if db == nil {
		panic(fmt.Sprintf("twophase: %s(%q): nil *sql.DB", fn, name))
	}
	return &Participant{name: name, db: db, p: p}
}

// Coordinator runs two-phase commits over a set of participants, one of
// which, its home, holds its decisions. Make one with [New]; its zero value
// is not usable. It is safe for concurrent use: transactions and recovery
// run at once. Most callers want [Begin] and [Tx.Commit], and
// [Coordinator.RunRecovery] in the background.
type Coordinator struct {
	id    string
	home  *Participant
	parts []*Participant // every participant, home last
	cfg   config

	insertDecision string // within the home transaction: gid
	fenceDecision  string // outside it: gid; does nothing if a decision exists
	readDecision   string // gid
}

// A coordinator's ID: it is part of every transaction ID, so that it fits
// MySQL's 64-byte gtrid with the rest (see newXID).
var idRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)

// New returns a coordinator whose ID is id, whose decisions are kept in
// home's database, and which runs transactions over home and others. It
// checks that every participant's server can take part (see the package
// doc, Preconditions), and creates the decision table in home if it is not
// there.
//
// id names the coordinator in the IDs of its transactions, and
// [Coordinator.Recover] resolves only the transactions of its own ID: a
// process that restarts must come back with the same ID (a host or pod
// name), and two processes that run at once must have different IDs. It
// is 1 to 32 letters, digits, '_' or '-'.
func New(ctx context.Context, id string, home *Participant, others []*Participant, opts ...Option) (*Coordinator, error) {
	if !idRE.MatchString(id) {
		return nil, fmt.Errorf("twophase: coordinator ID %q: want 1 to 32 letters, digits, '_' or '-'", id)
	}
	if home == nil {
		return nil, errors.New("twophase: New: nil home participant")
	}
	cfg := defaultConfig()
	for _, o := range opts {
		o.apply(&cfg)
	}
	if cfg.retention <= cfg.grace {
		return nil, fmt.Errorf("twophase: WithRetention(%v) must be longer than WithGrace(%v)", cfg.retention, cfg.grace)
	}
	c := &Coordinator{id: id, home: home, cfg: cfg}
	seen := map[string]bool{home.name: true}
	for _, p := range others {
		if p == nil {
			return nil, errors.New("twophase: New: nil participant")
		}
		if seen[p.name] {
			return nil, fmt.Errorf("twophase: New: two participants named %q", p.name)
		}
		seen[p.name] = true
		c.parts = append(c.parts, p)
	}
	c.parts = append(c.parts, home)
	for _, p := range c.parts {
		if err := p.p.check(ctx, p.db); err != nil {
			return nil, fmt.Errorf("twophase: participant %s: %w", p.name, err)
		}
	}
	d, table := home.p.store, cfg.table
	if err := d.CheckLength(table, len("_migrations")); err != nil {
		return nil, fmt.Errorf("twophase: WithTable: %w", err)
	}
	c.insertDecision = d.Rebind("INSERT INTO " + table + " (gid, outcome, decided_at) VALUES (?, " + strconv.Itoa(int(Commit)) + ", " + d.Now + ")")
	c.fenceDecision = d.InsertIgnore(table, []string{"gid", "outcome", "decided_at"}, "?, "+strconv.Itoa(int(Abort))+", "+d.Now)
	c.readDecision = d.Rebind("SELECT outcome FROM " + table + " WHERE gid = ?")
	migrations := []sqlstore.Migration{{Version: 1, Statements: []string{
		home.p.decisionTable(table),
	}}}
	if err := sqlstore.Migrate(ctx, home.db, d, "twophase:"+table, table+"_migrations", migrations); err != nil {
		return nil, fmt.Errorf("twophase: create %s in %s: %w", table, home.name, err)
	}
	return c, nil
}

// ID returns the coordinator's ID.
func (c *Coordinator) ID() string { return c.id }

// participant returns the coordinator's participant p, or nil.
func (c *Coordinator) participant(p *Participant) *Participant {
	for _, q := range c.parts {
		if q == p {
			return q
		}
	}
	return nil
}

// Decision is the outcome a coordinator recorded for a transaction.
type Decision uint8

// The decisions.
const (
	// Undecided: no decision is recorded (yet).
	Undecided Decision = iota
	// Commit: the transaction committed; its prepared branches are to be
	// committed.
	Commit
	// Abort: recovery found the transaction undecided past the grace
	// period and aborted it; its prepared branches are to be rolled back.
	Abort
)

func (d Decision) String() string {
	switch d {
	case Undecided:
		return "undecided"
	case Commit:
		return "commit"
	case Abort:
		return "abort"
	}
	return fmt.Sprintf("Decision(%d)", uint8(d))
}

// decision reads the decision recorded for gtrid.
func (c *Coordinator) decision(ctx context.Context, gtrid string) (Decision, error) {
	var d Decision
	err := c.home.db.QueryRowContext(ctx, c.readDecision, gtrid).Scan(&d)
	if errors.Is(err, sql.ErrNoRows) {
		return Undecided, nil
	}
	return d, err
}

// settle makes the decision on gtrid final: it records Abort unless a
// decision is recorded, and returns the one recorded. A commit of the
// decision under way holds the row, so settle waits for it and then finds
// it; a decision recorded by settle stops the commit from recording its
// own. It is the fence between a coordinator that is slow to decide and
// recovery, which presumes it dead.
func (c *Coordinator) settle(ctx context.Context, gtrid string) (Decision, error) {
	if _, err := c.home.db.ExecContext(ctx, c.fenceDecision, gtrid); err != nil {
		return Undecided, fmt.Errorf("record abort: %w", err)
	}
	return c.decision(ctx, gtrid)
}

// observe sends ev to the observer, if there is one.
func (c *Coordinator) observe(ctx context.Context, ev resilience.Event) {
	if c.cfg.observer == nil {
		return
	}
	ev.Time, ev.Policy, ev.Name = time.Now(), resilience.PolicyTwoPhase, c.cfg.name
	c.cfg.observer.Observe(ctx, ev)
}

// xid identifies a transaction (gtrid, as MySQL calls it: the same for
// every branch) and one branch of it (bqual: the participant's name). A
// branch's ID in PostgreSQL is the two joined by a dot.
type xid struct {
	gtrid, bqual string
}

// gtridPrefix starts the ID of every transaction of this package, so that
// recovery can tell its branches from any other prepared transaction.
const gtridPrefix = "tp."

// newGTRID returns a new transaction ID of the coordinator: the prefix, the
// coordinator's ID, when it began (milliseconds since the epoch, base 36)
// and 64 random bits, dot-separated: at most 62 bytes.
func newGTRID(coordinator string, began time.Time, random uint64) string {
	return gtridPrefix + coordinator + "." + strconv.FormatInt(began.UnixMilli(), 36) + "." + fmt.Sprintf("%016x", random)
}

// parseGTRID reads a transaction ID made by newGTRID, spelt as newGTRID
// spells it.
func parseGTRID(gtrid string) (coordinator string, began time.Time, ok bool) {
	rest, ok := strings.CutPrefix(gtrid, gtridPrefix)
	if !ok {
		return "", time.Time{}, false
	}
	f := strings.Split(rest, ".")
	if len(f) != 3 || !idRE.MatchString(f[0]) || len(f[2]) != 16 {
		return "", time.Time{}, false
	}
	ms, err := strconv.ParseInt(f[1], 36, 64)
	if err != nil || ms < 0 || strconv.FormatInt(ms, 36) != f[1] {
		return "", time.Time{}, false
	}
	for _, c := range []byte(f[2]) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return "", time.Time{}, false
		}
	}
	return f[0], time.UnixMilli(ms), true
}

// pgGID returns the PostgreSQL branch ID of x.
func (x xid) pgGID() string { return x.gtrid + "." + x.bqual }

// parsePGGID splits a PostgreSQL branch ID into its xid.
func parsePGGID(gid string) (xid, bool) {
	i := strings.LastIndexByte(gid, '.')
	if i < 0 {
		return xid{}, false
	}
	x := xid{gid[:i], gid[i+1:]}
	if _, _, ok := parseGTRID(x.gtrid); !ok || !nameRE.MatchString(x.bqual) {
		return xid{}, false
	}
	return x, true
}

// mysqlXID returns x as XA statements take it: two quoted strings. Both
// parts hold only letters, digits, '_', '-' and '.', which need no escape.
func (x xid) mysqlXID() string { return "'" + x.gtrid + "','" + x.bqual + "'" }
