package dashboard

import (
	"bytes"
	"context"
	"crypto/rand"
	"embed"
	"encoding/json"
	"html/template"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/resilience-go/resilience"
)

//go:embed assets
var assets embed.FS

// page is the page's template; its sections are templates of their own,
// which the event stream renders alone.
var page = template.Must(template.New("page.html").Funcs(funcs).ParseFS(assets, "assets/page.html"))

// sections are the parts of the page that the event stream replaces: the
// id of each one's element, and the name of its template.
var sections = [...]string{"breakers", "bulkheads", "limiters", "budgets", "outboxes", "sagas", "twophase", "projections", "events"}

// Dashboard is a live page of the state of the breakers, bulkheads, rate
// limiters, outboxes, saga coordinators, two-phase commit coordinators and
// projections it was given, and of the last events its [Dashboard.Observer]
// saw. It is an [http.Handler]; see the package documentation for how to
// mount it. Make one with [New]; it is safe for concurrent use. The zero
// value is not usable.
type Dashboard struct {
	cfg       config
	breakers  []*breakerPanel
	secret    []byte // keys the tokens of actions
	cop       *http.CrossOriginProtection
	events    *Events
	done      chan struct{} // closed by Close
	closeOnce sync.Once

	mu sync.Mutex
	// Guarded by mu: closed, and replaced, when an operator acts, so that
	// the event streams show the change at once.
	acted chan struct{}
}

// New returns a Dashboard of what opts give it. It starts nothing: the
// dashboard reads the components' state when a page, its event stream or
// its snapshot is served. New panics if an option is nil, or if a
// component's name is empty or another's of its kind.
func New(opts ...Option) *Dashboard {
	d := &Dashboard{
		cfg:    newConfig(opts),
		secret: make([]byte, 32),
		cop:    http.NewCrossOriginProtection(),
		done:   make(chan struct{}),
		acted:  make(chan struct{}),
	}
	d.events = d.cfg.events
	if d.events == nil {
		d.events = new(Events)
	}
	rand.Read(d.secret) // never returns an error
	for _, b := range d.cfg.breakers {
		d.breakers = append(d.breakers, &breakerPanel{b: b, name: b.Name()})
	}
	return d
}

// Observer returns the Observer that feeds the dashboard's list of events,
// its [Events]: give it to policies' WithObserver options, alone or with
// others through [resilience.Observers].
func (d *Dashboard) Observer() resilience.Observer { return d.events }

// Snapshot returns what the dashboard shows now, as snapshot.json serves
// it. It reads every component's state, with ctx for the queries of
// outboxes and saga coordinators, and samples the failure rate of each
// breaker for its history.
func (d *Dashboard) Snapshot(ctx context.Context) Snapshot {
	return *d.snapshot(ctx, time.Now())
}

// Close ends the event streams that the dashboard serves, and refuses new
// ones, so that a server's Shutdown, which waits for the requests it
// serves, need not wait for them: register it with
// [http.Server.RegisterOnShutdown]. The page, its snapshot and its actions
// are served as before. Close may be called more than once.
func (d *Dashboard) Close() {
	d.closeOnce.Do(func() { close(d.done) })
}

// ServeHTTP serves the page and what it loads, by the last element of the
// request's path: the page at "" (a path that ends in a slash) and
// "index.html", and beside it "snapshot.json", "events" (the event
// stream), "app.js", "app.css", and, for POST, "action".
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:]
	if r.Method == http.MethodPost {
		d.serveAction(w, r, name)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD, POST")
		http.Error(w, "dashboard: method not allowed", http.StatusMethodNotAllowed)
		return
	}
	switch name {
	case "", "index.html":
		d.servePage(w, r)
	case "snapshot.json":
		d.serveSnapshot(w, r)
	case "events":
		d.serveEvents(w, r)
	case "app.js":
		serveAsset(w, r, "assets/app.js", "text/javascript; charset=utf-8")
	case "app.css":
		serveAsset(w, r, "assets/app.css", "text/css; charset=utf-8")
	default:
		http.NotFound(w, r)
	}
}

// contentSecurityPolicy lets the page load its own script, style and
// stream, and nothing else: no inline script, no other origin, no frame.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; " +
	"img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// view is what the templates render: a snapshot, and whether the request
// may act, with the token its actions carry.
type view struct {
	*Snapshot
	Actions bool
	Token   string
}

func (d *Dashboard) servePage(w http.ResponseWriter, r *http.Request) {
	v := view{Snapshot: d.snapshot(r.Context(), time.Now())}
	if d.allowed(r) {
		v.Actions, v.Token = true, d.token(w, r)
	}
	var buf bytes.Buffer
	if err := page.Execute(&buf, v); err != nil {
		http.Error(w, "dashboard: "+err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	w.Write(buf.Bytes()) //nolint:errcheck // the client went away
}

func (d *Dashboard) serveSnapshot(w http.ResponseWriter, r *http.Request) {
	body, err := json.Marshal(d.snapshot(r.Context(), time.Now()))
	if err != nil {
		http.Error(w, "dashboard: "+err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.Write(append(body, '\n')) //nolint:errcheck // the client went away
}

func serveAsset(w http.ResponseWriter, r *http.Request, name, contentType string) {
	body, err := assets.ReadFile(name)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	w.Write(body) //nolint:errcheck // the client went away
}

// shows reports whether the page has the section of this name.
func (d *Dashboard) shows(section string) bool {
	switch section {
	case "breakers":
		return len(d.breakers) > 0
	case "bulkheads":
		return len(d.cfg.bulkheads) > 0
	case "limiters":
		return len(d.cfg.limiters) > 0
	case "budgets":
		return len(d.cfg.budgets) > 0
	case "outboxes":
		return len(d.cfg.outboxes) > 0
	case "sagas":
		return len(d.cfg.sagas) > 0
	case "twophase":
		return len(d.cfg.twoPhase) > 0
	case "projections":
		return len(d.cfg.stores) > 0
	}
	return true
}

// allowed reports whether r's sender may act.
func (d *Dashboard) allowed(r *http.Request) bool {
	return d.cfg.authorize != nil && d.cfg.authorize(r)
}
