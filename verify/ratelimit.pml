/*
 * ratelimit.pml: the flow constraint of the rate limiter's bucket.
 *
 * Models ratelimit/gcra.go: gcra.takeNow (Limiter.Allow and Limiter.Do
 * without a wait), gcra.take (Limiter.Reserve and Do WithMaxWait) with its
 * loop gcra.retake, and gcra.cancel (Reservation.Cancel), run by
 * two concurrent takers of two calls each on one bucket: tat is the atomic word, every Load and
 * CompareAndSwap is one step, every reading of the clock (time.Since) is
 * one step, and the clock moves on between any two steps.
 *
 * Property (assertion, checked at every admission): for every window
 * [a, b] of the model's time, the calls admitted at times in the window
 * number at most (b - a)/I + B, that is admitted <= r*T + burst with
 * r = 1/I and T = b - a. A call is admitted at the time it is due: the
 * clock reading on which take decided, plus the wait it returned (0 for
 * takeNow). A cancelled reservation is not admitted.
 *
 * Abstracted away: the nanosecond clock is a small integer clock (TMAX
 * units, I units a token, a burst of B, reservations wait at most W);
 * overflow (init's saturating limit) is not modelled; Keyed (one gcra per
 * key, forgotten when full) and FromLimiter (x/time/rate's own lock) are
 * out; the observer and the rejection counter change nothing here. The
 * bound holds for the clock reading each call was decided on: a caller
 * descheduled between its reading and its compare-and-swap enters later
 * than that, as with any limiter that reads the clock.
 *
 * Mutation NONATOMIC: the compare-and-swap becomes a Store of the value
 * computed from an earlier Load (a read-modify-write that is not atomic);
 * two takers then take one token twice, and the bound is broken.
 *
 * Mutation CANCELANY: cancel gives the token back even when a token was
 * taken after it (a Store instead of the compare-and-swap on next), which
 * moves tat back past the later token and lets a call in ahead of it.
 *
 * And REACHBOUND: Spin must find a window whose admitted calls reach the
 * bound, so that the bound is not checked vacuously.
 */

#define I     2          /* the interval: time units per token */
#ifndef B
#define B     1          /* the burst (the runner checks 1 and 2) */
#endif
#define LIMIT (B * I)    /* gcra.limit */
#define W     2          /* the maxWait of a reservation */
#define TMAX  5          /* the clock stops here */
#define DMAX  (TMAX + W) /* the latest due time */
#define CALLS 2          /* calls per taker */

byte now;           /* the clock, time.Since(start) */
byte tat;           /* gcra.tat */
byte adm[DMAX + 1]; /* ghost: calls admitted, by due time */

#define max(a, b) ((a) > (b) -> (a) : (b))

/* every window of the model's time within the bound */
inline checkWindows() {
	d_step {
		a = 0;
		do
		:: a <= DMAX ->
			n = 0;
			b = a;
			do
			:: b <= DMAX ->
				n = n + adm[b];
				assert(n * I <= (b - a) + LIMIT);
#ifdef REACHBOUND
				assert(n == 0 || n * I < (b - a) + LIMIT); /* the bound is reached */
#endif
				b++
			:: else -> break
			od;
			a++
		:: else -> break
		od;
		a = 0; b = 0; n = 0
	}
}

/* one compare-and-swap of tat from old to next; on success the token due
 * at due is admitted */
inline cas(old, next, d, swapped) {
#ifdef NONATOMIC
	atomic { tat = next; swapped = true; adm[d]++ }
#else
	atomic {
		if
		:: tat == old -> tat = next; swapped = true; adm[d]++
		:: else -> swapped = false
		fi
	}
#endif
}

/* gcra.retake, with maxWait mw, from the reading t */
inline retake(mw) {
	do
	:: old = tat;
		next = max(old, t) + I;
		wait = next - t - LIMIT;
		if
		:: wait > mw ->
			fresh = now;
			if
			:: fresh > t -> t = fresh
			:: else -> ok = false; break
			fi
		:: else ->
			due = t + max(wait, 0);
			cas(old, next, due, ok);
			if
			:: ok -> checkWindows(); break
			:: else
			fi
		fi
	od
}

/* gcra.take with maxWait mw (mw 0 is gcra.takeNow, the same steps) */
inline take(mw) {
	t = now;
	old = tat;
	next = max(old, t) + I;
	wait = next - t - LIMIT;
	if
	:: wait > mw -> ok = false
	:: else ->
		due = t + max(wait, 0);
		cas(old, next, due, ok);
		if
		:: ok -> checkWindows()
		:: else -> retake(mw)
		fi
	fi
}

/* gcra.cancel at the reading c of the reservation whose take set tat to
 * next, due at due */
inline cancel() {
	c = now;
	if
	:: c >= next - LIMIT -> skip /* due: it may have been used */
	:: else ->
		atomic {
			if
			:: tat == next -> tat = max(next - I, c); adm[due]--
#ifdef CANCELANY
			:: tat != next -> tat = max(next - I, c); adm[due]--
#endif
			:: else -> skip /* a later token keeps its time */
			fi
		}
	fi
}

proctype Taker() {
	byte t, old, next, due, fresh, c, a, b, n;
	short wait;
	bool ok;
	byte calls = 0;
	do
	:: calls < CALLS ->
		calls++;
		if
		:: take(0)     /* Allow, Do */
		:: take(W);    /* Reserve, Do WithMaxWait */
			if
			:: ok -> if :: cancel() :: skip fi
			:: else
			fi
		fi;
		atomic { t = 0; old = 0; next = 0; due = 0; fresh = 0; c = 0; wait = 0; ok = false }
	:: else -> break
	od
}

active proctype Clock() {
	do
	:: now < TMAX -> now++
	:: else -> break
	od
}

init {
	atomic { run Taker(); run Taker() }
}
