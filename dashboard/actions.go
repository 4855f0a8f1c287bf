package dashboard

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strconv"
	"time"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/outbox"
	"github.com/resilience-go/resilience/saga"
)

// The names of the cookie and of the header that carry an action's proof
// that it comes from the dashboard's own page.
const (
	cookieName  = "resilience_dashboard"
	tokenHeader = "X-Resilience-Token"
)

// maxActionBody bounds the body of an action's request.
const maxActionBody = 1 << 16

// token returns the token that the actions of r's page carry: the
// dashboard's HMAC of the nonce in r's cookie, which it sets, with a new
// nonce, when r has none.
func (d *Dashboard) token(w http.ResponseWriter, r *http.Request) string {
	for _, c := range r.CookiesNamed(cookieName) {
		if len(c.Value) == nonceLen {
			return d.sign(c.Value)
		}
	}
	nonce := rand.Text()[:nonceLen]
	http.SetCookie(w, &http.Cookie{
		Name:     cookieName,
		Value:    nonce,
		HttpOnly: true,
		Secure:   r.TLS != nil,
		SameSite: http.SameSiteStrictMode,
		// No Path: the browser sends the cookie to the page's directory,
		// where "action" is.
	})
	return d.sign(nonce)
}

// nonceLen is the length of a cookie's nonce: 22 characters of base32,
// 110 bits.
const nonceLen = 22

// sign returns the token for nonce.
func (d *Dashboard) sign(nonce string) string {
	m := hmac.New(sha256.New, d.secret)
	m.Write([]byte("resilience dashboard action\x00" + nonce))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// validToken reports whether r carries, in its header, the token of the
// nonce of one of its cookies.
func (d *Dashboard) validToken(r *http.Request) bool {
	got := r.Header.Get(tokenHeader)
	if got == "" {
		return false
	}
	for _, c := range r.CookiesNamed(cookieName) {
		if hmac.Equal([]byte(got), []byte(d.sign(c.Value))) {
			return true
		}
	}
	return false
}

// refuse answers an action that may not be done. It says no more than
// that, so as not to tell a forger which check failed.
func refuse(w http.ResponseWriter) {
	http.Error(w, "dashboard: action refused", http.StatusForbidden)
}

// serveAction serves a POST: an operator's action, if the dashboard has
// actions, the request comes from the same origin, authorize allows its
// sender, and it carries the token of its cookie.
func (d *Dashboard) serveAction(w http.ResponseWriter, r *http.Request, name string) {
	if d.cfg.authorize == nil || d.cop.Check(r) != nil || !d.cfg.authorize(r) || !d.validToken(r) {
		refuse(w)
		return
	}
	if name != "action" {
		http.NotFound(w, r)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxActionBody)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "dashboard: "+err.Error(), http.StatusBadRequest)
		return
	}
	a, status, msg := d.action(r.PostFormValue("do"), r.PostFormValue("name"), r.PostFormValue("id"), r.PostFormValue("note"))
	if a.run == nil {
		http.Error(w, "dashboard: "+msg, status)
		return
	}
	done, err := a.run(r.Context())
	if done || err != nil {
		d.events.add(resilience.Event{Time: time.Now(), Policy: a.policy, Name: a.name, Kind: resilience.Action,
			Subject: a.subject, Err: err})
		d.wake()
	}
	switch {
	case err != nil:
		http.Error(w, "dashboard: "+a.subject+": "+err.Error(), http.StatusInternalServerError)
	case !done:
		http.Error(w, "dashboard: "+a.subject+": "+a.undone, http.StatusConflict)
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

// action is what an operator asked for.
type action struct {
	policy  resilience.PolicyKind
	name    string // of the component
	subject string // what was done, for the event and the answer
	undone  string // why it did nothing, when it did nothing
	// run does it, and reports whether it did anything.
	run func(ctx context.Context) (bool, error)
}

// action returns the action that the form's fields ask for, or, if they
// ask for none, an HTTP status and why.
func (d *Dashboard) action(do, name, id, note string) (a action, status int, msg string) {
	a.name = name
	switch do {
	case "breaker-open", "breaker-reset":
		p := find(d.breakers, func(p *breakerPanel) bool { return p.name == name })
		if p == nil {
			return a, http.StatusNotFound, "no breaker named " + quote(name)
		}
		a.policy = resilience.PolicyCircuitBreaker
		if do == "breaker-open" {
			a.subject = "force open"
			a.run = func(context.Context) (bool, error) { p.b.ForceOpen(); return true, nil }
		} else {
			a.subject = "reset"
			a.run = func(context.Context) (bool, error) { p.b.Reset(); return true, nil }
		}
	case "dead-retry", "dead-discard":
		ob := find(d.cfg.outboxes, func(o named[*outbox.Outbox]) bool { return o.name == name })
		if ob.v == nil {
			return a, http.StatusNotFound, "no outbox named " + quote(name)
		}
		if id == "" {
			return a, http.StatusBadRequest, "no id"
		}
		a.policy, a.undone = resilience.PolicyOutbox, "no such message"
		if do == "dead-retry" {
			a.subject, a.undone = "retry dead letter "+id, "no dead letter of this id"
			a.run = func(ctx context.Context) (bool, error) { n, err := ob.v.Retry(ctx, id); return n > 0, err }
		} else {
			a.subject = "discard dead letter " + id
			a.run = func(ctx context.Context) (bool, error) { n, err := ob.v.Discard(ctx, id); return n > 0, err }
		}
	case "saga-retry", "saga-resolve":
		c := find(d.cfg.sagas, func(c named[*saga.Coordinator]) bool { return c.name == name })
		if c.v == nil {
			return a, http.StatusNotFound, "no saga coordinator named " + quote(name)
		}
		if id == "" {
			return a, http.StatusBadRequest, "no id"
		}
		a.policy, a.undone = resilience.PolicySaga, "no stuck saga of this id"
		if do == "saga-retry" {
			a.subject = "retry stuck saga " + id
			a.run = func(ctx context.Context) (bool, error) { return c.v.RetryStuck(ctx, id) }
		} else {
			if note = clip(note); note == "" {
				note = "resolved from the dashboard"
			}
			a.subject = "mark saga " + id + " resolved: " + note
			a.run = func(ctx context.Context) (bool, error) { return c.v.MarkResolved(ctx, id, note) }
		}
	default:
		return a, http.StatusBadRequest, "no action " + quote(do)
	}
	return a, 0, ""
}

// wake tells the event streams that an operator acted.
func (d *Dashboard) wake() {
	d.mu.Lock()
	close(d.acted)
	d.acted = make(chan struct{})
	d.mu.Unlock()
}

// woken returns the channel that the next action closes.
func (d *Dashboard) woken() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.acted
}

// quote quotes s, cut short if it is long, for an answer.
func quote(s string) string { return strconv.Quote(clip(s)) }

// find returns the first of s that ok accepts, or the zero value.
func find[T any](s []T, ok func(T) bool) (zero T) {
	for _, v := range s {
		if ok(v) {
			return v
		}
	}
	return zero
}
