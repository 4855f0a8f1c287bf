/*
 * circuitbreaker.pml: the breaker's state transitions under concurrent
 * callers.
 *
 * Models circuitbreaker/state.go and circuitbreaker.go: Breaker.Do's fast
 * path (one atomic load of the current epoch, b.cur), Breaker.admit with
 * Breaker.advanceLocked (Open to HalfOpen once the break is over, N probe
 * slots, a silent probe's slot given to a new call after a whole break),
 * Breaker.finish with Breaker.count and Breaker.trip (closed epoch: the
 * consecutive-failure rule; MetricsOnly counts and never trips),
 * Breaker.recordProbe, Breaker.setLocked, and the operator's
 * Breaker.setState (Reset, ForceOpen, Disable, MetricsOnly) and
 * Breaker.openFor. Every section under b.mu is one atomic step; the
 * lock-free steps (the load of b.cur, the count in an epoch's counter)
 * are steps of their own. An epoch is named by its generation (b.gen): a
 * permit carries the generation of the epoch that admitted it, which is
 * what the permit's *epoch pointer compares by.
 *
 * Properties (assertions):
 *   - a half-open epoch holds at most N probes (slots), and a probe's
 *     result counts only if its ticket holds a slot of the current epoch;
 *   - a result whose permit is of an epoch that is over (stale) changes
 *     neither the state nor the generation;
 *   - every way out of Open is to HalfOpen, once the break is over, unless
 *     an operator forced it (Reset, ForceOpen, Disable, MetricsOnly,
 *     OpenFor); Closed is entered only from HalfOpen after N successful
 *     probes of that epoch, or by Reset; HalfOpen only from Open.
 *
 * Abstracted away: the count and time windows and the failure-rate and
 * slow-call rules (one rule, K consecutive failures, stands for every
 * trip); the clock (the end of a break is an event that may come at any
 * time after the epoch opened; a silent probe may be declared lost at any
 * time); break durations, jitter and reopen counts; the observers and
 * their delivery queue; rejection counts. Allow's done func records as
 * finish does.
 *
 * Mutations, each of which the checker must refute:
 *   STALE        recordProbe and trip skip the check that the permit's
 *                epoch is the current one (a stale result is applied);
 *   NOPROBELIMIT admit hands out a probe permit without a free slot;
 *   SKIPHALFOPEN advanceLocked closes an open breaker whose break is over,
 *                without the half-open probes.
 * And REACH=CONSEC, PROBEFAILED or PROBESSUCCEEDED: Spin must find a change
 * of state for that cause, so that no transition is checked vacuously.
 */

#define N     2 /* WithHalfOpenProbes (setLocked and removeProbe are written for 2) */
#define K     2 /* WithConsecutiveFailures */
#define CALLS 2 /* calls per caller */

mtype:state = { CLOSED, OPEN, HALFOPEN, FORCEDOPEN, DISABLED, METRICSONLY };
mtype:cause = { NOCAUSE, CONSEC, BREAKELAPSED, PROBEFAILED, PROBESSUCCEEDED, RESET, FORCED, OPENEDFOR };
mtype:outcome = { SUCCESS, FAILURE, IGNORE };

/* the current epoch, b.cur, and what b.mu guards */
mtype:state state = CLOSED;
byte gen = 1;      /* b.gen: names the current epoch */
byte consec;       /* ep.consec of the current epoch */
bool elapsed;      /* Open: the break is over (now >= ep.readyAt) */
byte probes[N];    /* HalfOpen: ep.probes, oldest first; 0 is a free slot */
byte nprobes;      /* len(ep.probes) */
byte tickets;      /* ep.tickets */
byte successes;    /* ep.successes */

/* b.setLocked: a new epoch in state s, because of cause c */
inline setLocked(s, c) {
	/* the transitions that may happen */
	assert(!(state == OPEN && s != HALFOPEN && s != OPEN) || c == RESET || c == FORCED);
	assert(!(state == OPEN && s == OPEN) || c == OPENEDFOR);
	assert(s != HALFOPEN || (state == OPEN && elapsed && c == BREAKELAPSED));
	assert(s != CLOSED || c == RESET || (state == HALFOPEN && c == PROBESSUCCEEDED && successes >= N));
#ifdef REACH
	assert(c != REACH); /* the runner's check that a change for REACH happens */
#endif
	state = s;
	gen++;
	consec = 0;
	elapsed = false;
	probes[0] = 0; probes[1] = 0;
	nprobes = 0;
	tickets = 0;
	successes = 0
}

/* b.advanceLocked */
inline advanceLocked() {
	if
	:: state == OPEN && elapsed ->
#ifdef SKIPHALFOPEN
		setLocked(CLOSED, BREAKELAPSED)
#else
		setLocked(HALFOPEN, BREAKELAPSED)
#endif
	:: else
	fi
}

/* removes the probe in slot i, keeping the order */
inline removeProbe(i) {
	if
	:: i == 0 -> probes[0] = probes[1]
	:: else
	fi;
	probes[N - 1] = 0;
	nprobes--
}

/* b.admit: a permit (pgen, pstate, ticket), or rejected */
inline admit() {
	atomic {
		advanceLocked();
		pgen = gen; pstate = state; ticket = 0; rejected = false;
		if
		:: state == CLOSED || state == METRICSONLY || state == DISABLED
		:: state == HALFOPEN ->
			if
#ifndef NOPROBELIMIT
			:: nprobes == N ->
				if
				:: rejected = true      /* the oldest probe reported recently */
				:: i = 0; removeProbe(i) /* silent for a whole break: lost */
				fi
#endif
			:: else
			fi;
			if
			:: !rejected ->
				tickets++;
				ticket = tickets;
				if
				:: nprobes < N -> probes[nprobes] = ticket
				:: else /* NOPROBELIMIT: a probe over the limit */
				fi;
				nprobes++;
				assert(nprobes <= N)
			:: else
			fi
		:: else -> rejected = true
		fi;
		i = 0
	}
}

/* b.trip: opens the breaker if the permit's epoch is still the current one */
inline trip() {
	atomic {
		g0 = gen;
#ifdef STALE
		if
		:: state == CLOSED -> setLocked(OPEN, CONSEC)
		:: else
		fi;
#else
		if
		:: gen == pgen -> setLocked(OPEN, CONSEC)
		:: else
		fi;
#endif
		assert(pgen == g0 || gen == g0); /* a stale result changes nothing */
		g0 = 0
	}
}

/* b.count of a closed or metrics-only permit, then b.trip */
inline count() {
	if
	:: o == FAILURE ->
		atomic {
			if
			:: gen == pgen -> consec++; n = consec
			:: else -> /* the counter of an epoch that is over: any count */
				if :: n = 1 :: n = K fi
			fi
		}
		if
		:: pstate == CLOSED && n >= K -> trip()
		:: else /* MetricsOnly never trips */
		fi;
		n = 0
	:: o == SUCCESS ->
		atomic { if :: gen == pgen -> consec = 0 :: else fi }
	:: o == IGNORE
	fi
}

/* b.recordProbe */
inline recordProbe() {
	atomic {
		g0 = gen;
#ifdef STALE
		if :: true ->
#else
		if :: gen == pgen ->
#endif
			i = 0;
			do
			:: i < N && probes[i] != ticket -> i++
			:: else -> break
			od;
			if
			:: i < N && ticket != 0 -> /* not a lost probe */
				removeProbe(i);
				if
				:: o == FAILURE -> setLocked(OPEN, PROBEFAILED)
				:: o == SUCCESS ->
					successes++;
					if
					:: successes >= N -> setLocked(CLOSED, PROBESSUCCEEDED)
					:: else
					fi
				:: o == IGNORE /* the slot is returned */
				fi
			:: else
			fi
		:: else
		fi;
		assert(pgen == g0 || gen == g0); /* a stale result changes nothing */
		g0 = 0; i = 0
	}
}

/* b.finish */
inline finish() {
	if
	:: pstate == CLOSED || pstate == METRICSONLY -> count()
	:: pstate == HALFOPEN -> recordProbe()
	:: else /* Disabled: nothing to record */
	fi
}

proctype Caller() {
	byte pgen, ticket, g0, i, n;
	mtype:state pstate;
	mtype:outcome o;
	bool rejected, slow;
	byte calls = 0;
	do
	:: calls < CALLS ->
		calls++;
		/* Do's fast path: one load of b.cur */
		atomic {
			pgen = gen; pstate = state; ticket = 0; rejected = false; slow = false;
			if
			:: state == CLOSED || state == METRICSONLY || state == DISABLED
			:: state == FORCEDOPEN || (state == OPEN && !elapsed) -> rejected = true
			:: else -> slow = true /* Open with the break over, or HalfOpen */
			fi
		}
		if
		:: slow -> admit()
		:: else
		fi;
		if
		:: !rejected ->
			if /* the call's outcome */
			:: o = SUCCESS
			:: o = FAILURE
			:: o = IGNORE
			fi;
			finish()
		:: else
		fi;
		atomic { pgen = 0; pstate = CLOSED; ticket = 0; o = SUCCESS; rejected = false; slow = false }
	:: else -> break
	od
}

/* an operator: Reset, ForceOpen, Disable, MetricsOnly, OpenFor */
active proctype Operator() {
	do
	:: atomic { setLocked(CLOSED, RESET) }; break
	:: atomic { setLocked(FORCEDOPEN, FORCED) }; break
	:: atomic { setLocked(DISABLED, FORCED) }; break
	:: atomic { setLocked(METRICSONLY, FORCED) }; break
	:: atomic { /* b.openFor */
			advanceLocked();
			if
			:: state == CLOSED || state == HALFOPEN || state == OPEN -> setLocked(OPEN, OPENEDFOR)
			:: else
			fi
		}; break
	:: break
	od
}

/* the clock: the break of an open epoch ends */
active proctype Clock() {
end:	do
	:: atomic { state == OPEN && !elapsed -> elapsed = true }
	od
}

init {
	atomic { run Caller(); run Caller(); run Caller() }
}
