// Package dashboard serves a live page of the state of an application's
// resilience: its circuit breakers, bulkheads, rate limiters, retry
// budgets, outboxes and sagas, the branches in doubt of its two-phase
// commits, how far behind its event store each projection is, and the
// last events of its policies, for an operator to watch during an
// incident, and, if allowed, to act.
//
// A [Dashboard] shows what it is given, and nothing else: there is no
// global registry.
//
//	d := dashboard.New(
//		dashboard.WithBreaker(payments), // by its circuitbreaker.WithName
//		dashboard.WithBulkhead("payments", paymentsBulkhead),
//		dashboard.WithOutbox("events", ob),
//		dashboard.WithSagas("checkout", coordinator),
//		dashboard.WithTwoPhase("ledger", twoPhase), // a *twophase.Coordinator
//		dashboard.WithProjections("catalogue", store), // an *eventstore.Store
//	)
//	mux.Handle("/resilience/", adminOnly(d))
//	srv.RegisterOnShutdown(d.Close)
//
// Give [Dashboard.Observer] to the policies' WithObserver options, alone or
// beside other observers with [resilience.Observers], for the page to list
// their events, with their causes and errors. A component that the
// dashboard shows needs the observer before the dashboard exists: make an
// [Events] first, and give it to both.
//
//	events := new(dashboard.Events)
//	payments := circuitbreaker.New(circuitbreaker.WithName("payments"),
//		circuitbreaker.WithObserver(resilience.Observers(events, logs)))
//	d := dashboard.New(dashboard.WithEvents(events), dashboard.WithBreaker(payments))
//
// # Mounting
//
// A Dashboard is an [http.Handler] that serves the page at a path that
// ends in a slash, and what the page loads beside it: snapshot.json (the
// state as JSON, a [Snapshot]), events (the event stream that updates the
// page), app.js and app.css (embedded in the program; the page loads
// nothing from elsewhere), and action (the operators' actions). It picks
// what to serve by the last element of the path, so it works under any
// prefix, with or without [http.StripPrefix]: mount it at a pattern that
// ends in a slash, such as "/resilience/", which also redirects
// "/resilience" there.
//
// The dashboard has no authentication of its own: mount it behind the
// application's, as any page for operators, and not on a public port. The
// page shows the names of dependencies, message IDs and error texts, which
// its templates escape; its Content-Security-Policy lets it run its own
// script and no other.
//
// The page receives its updates as a text/event-stream, one request that
// stays open while the page is: each second the stream sends the parts of
// the page whose HTML changed. A stream ends when its client goes away or
// when [Dashboard.Close] is called; [http.Server.Shutdown] waits for the
// requests it serves, streams included, so register Close with
// [http.Server.RegisterOnShutdown]. A server's WriteTimeout does not cut a
// stream: the stream sets its own deadline for each push, and ends when a
// push takes longer than 10s. A proxy in front must not buffer the stream,
// and must let it stay open longer than its usual timeouts.
//
// # Not a health check
//
// The page and snapshot.json report the state of the dependencies as the
// process sees them: an open breaker means a dependency fails, not that
// this process does. Do not point a readiness or liveness probe at them.
// A readiness probe that fails while a breaker is open takes every
// replica out of rotation together when their shared dependency fails:
// the service then answers nothing, not even what it could answer without
// that dependency, and the breakers, which exist to let it degrade
// gracefully, turn a partial failure into an outage. A liveness probe
// does worse, restarting healthy processes in a loop.
//
// # Cost
//
// The dashboard starts no goroutine and does nothing while nobody looks.
// Each page load, snapshot and second of an open stream reads every
// component: a breaker's, bulkhead's or limiter's Metrics, two queries for
// each outbox, one or two for each saga coordinator, and for each
// two-phase commit coordinator one for each participant and one for each
// branch in doubt, and four for each event store's projections
// ([projection.Status]). The failure rate of a breaker is sampled then, at
// most once a second, and kept for a minute: the sparkline of the page has
// a gap for the seconds in which nobody looked. An [Events] copies each
// event it keeps into a ring of [EventsKept] under a lock, and allocates
// nothing.
//
// # Actions
//
// With [WithActions], an operator may force a breaker open or reset it,
// retry or discard an outbox's dead letter, and retry a stuck saga or mark
// it resolved. Each action that does something is itself an event in the
// list, of kind [resilience.Action], whose Subject says what was done.
// Without WithActions, the page has no buttons and every POST is answered
// 403. A two-phase commit's branches in doubt have no action: recovery
// ends them ([twophase.Coordinator.RunRecovery]). Projections have none
// either: their Run catches them up.
//
// An action is a POST to "action", which the page's script sends. The
// dashboard does it only if all of these hold; otherwise it answers 403 and
// changes nothing:
//   - the request is not cross-origin, by its Sec-Fetch-Site or Origin
//     header ([http.CrossOriginProtection]);
//   - the authorize function given to WithActions allows it;
//   - it carries the page's token in its X-Resilience-Token header, and the
//     cookie that the page set with the token.
//
// The token is a signed double-submit cookie: the page sets a cookie
// (HttpOnly, SameSite=Strict, and Secure over TLS) holding a random
// nonce, and embeds the HMAC-SHA256 of that nonce under a key that each
// Dashboard draws at random when it is made; an action must present both,
// the token in a header. Another site can neither read the page to learn
// the token, nor send the header without the browser asking first, nor
// have the browser send the cookie with its request. Tokens last as long
// as the Dashboard, and a page loaded before a restart must be reloaded.
package dashboard
