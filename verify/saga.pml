/*
 * saga.pml: compensation completeness of the durable saga coordinator.
 *
 * Models package saga's durable protocol for a definition of two steps in
 * sequence, step 0 not idempotent and step 1 Idempotent:
 *   - engine.forward, engine.fail, engine.settle and engine.setback
 *     (saga/engine.go): the intent of a step is written before its action
 *     and its result after, with the next step's intent in the same write;
 *     a failure is written before any compensation; compensations run in
 *     reverse, for every step that started (the failed one included) and
 *     has no recorded compensation, and are written at the end with the
 *     Compensated status, or with a setback that gives the instance up for
 *     a later round, Stuck after STUCKAFTER failed rounds;
 *   - claim.admit, claim.commit, claim.setback, claim.release and the
 *     lease (saga/claim.go): a call starts only while the coordinator
 *     holds a lease that has not run out (renewing it first, fenced by its
 *     token, and giving up when a renewal fails); every write is fenced by
 *     the claim's token, and one that finds another owner stops the
 *     coordinator (ErrLeaseLost);
 *   - durable.open (saga/durable.go), which Coordinator.Run starts with,
 *     and durable.recover / claimBatch / load / read (saga/recover.go),
 *     which Coordinator.RunRecovery repeats: a new claim takes an instance
 *     that is not over and whose owner is gone or whose lease ran out,
 *     rebuilds it from the log, and drives it on; a step found started
 *     with no result runs again if it is idempotent, and otherwise the
 *     instance compensates (durable.takeOver, Run with the ID of an
 *     orphan, claims it as a recovery does);
 *   - Barrier.Call (saga/barrier.go) at each participant: the call's
 *     record and its effect commit together; a duplicate is skipped, a
 *     compensation whose action never ran does nothing and keeps that
 *     action from running later.
 * Faults: the first coordinator (Run) and each recovery may crash at any
 * step; leases run out at any time (stalls, cut connections); a
 * coordinator may give up a lease whose renewal fails; a call's reply may
 * be lost, or the call stay in flight and reach the participant at any
 * later time, or never (LOSS of these and of the failed renewals in
 * all); an action may fail; a compensation may fail (CFAULTS in all).
 *
 * Properties (assertions):
 *   - no double application: a participant applies each action and each
 *     compensation at most once, and never undoes an action it did not
 *     apply;
 *   - no compensation starts for a step whose action a coordinator is still
 *     calling under a lease that has not run out;
 *   - completeness, in every final state (nothing can move any more): the
 *     saga Succeeded with every action applied once and none undone, or it
 *     is Compensated and every applied action was undone, or it is parked
 *     Stuck for an operator.
 * Every behaviour of the model is finite (the faults are bounded, and the
 * recovery stops once the instance is over; verify/run checks that no
 * cycle exists, with spin -l, for LOSS 1), so the final-state check, with
 * Spin's check that no process is blocked short of its end, is the
 * liveness property; no fairness is needed.
 *
 * Abstracted away: SQL, dialects and the database clock (a lease is valid
 * or has run out; the margin with which a call is admitted is taken to
 * cover the step from the check to the call); outputs, deadlines and
 * Timeout, parallel groups, TCC, policies and in-process attempts (each
 * round calls once), backoff times, purging, operators' methods, observers;
 * store errors (a write that fails or whose reply is lost stops the
 * coordinator as a crash after or before it does).
 *
 * Mutations, each of which the checker must refute:
 *   SKIPONTAKEOVER  a recovery skips the compensation of a step it found
 *                   started without a result (as if it never ran);
 *   NOLEASECHECK    a recovery takes over an instance whose lease has not
 *                   run out;
 *   NOBARRIER       participants apply every call they receive;
 *   NOFENCE         the journal's writes are not fenced by the token.
 * And REACH=SUCCEEDED, COMPENSATED or STUCK: Spin must find a final state
 * with that status, so that no outcome is checked vacuously.
 */

#ifndef LOSS
#define LOSS       2 /* calls whose reply is lost or that stay in flight,
                        and renewals that fail */
#endif
#define CFAULTS    2 /* compensations that fail */
#define STUCKAFTER 2 /* WithStuckAfter */
#define RCRASHES   1 /* recoveries that crash */
#define MAXTOKEN   7 /* claims: Run's (1) and the recoveries', enough for
                        every way a recovery can end short of the end;
                        the Clock below expires tokens 1 to 7 */

mtype:status = { RUNNING, COMPENSATING, SUCCEEDED, COMPENSATED, STUCK };
mtype:phase = { NOTSTARTED, STARTED, DONE, FAILED };

/* the store: the instance row and its step rows */
mtype:status status = RUNNING;
byte owner;                     /* the token of the claim that owns it */
mtype:phase act[2] = NOTSTARTED; /* the log of the actions */
bool comp[2];                   /* the log: the compensation succeeded */
byte attempts;                  /* failed rounds */

byte leaseok;  /* bit t: the lease claim t last confirmed has not run out */
byte inCall[2]; /* bit t: claim t's coordinator is calling the step's action */
bool opened;   /* the instance is in the store */

/* the participants: barrier records, effects applied and undone */
bool recA[2], recC[2];
byte applied[2], undone[2];
/* calls in flight, by step: actions and compensations */
byte pendA[2], pendC[2];
byte loss = LOSS;
byte cfaults = CFAULTS;

#define bit(t) (1 << (t))
#define over (status == SUCCEEDED || status == COMPENSATED || status == STUCK)

/* participant i runs the action, through its barrier; ok is its reply */
inline action(i, ok) {
#ifndef NOBARRIER
	if
	:: recA[i] -> ok = true /* a duplicate, or after its compensation */
	:: else ->
#endif
		if
		:: recA[i] = true; applied[i]++; ok = true
		:: ok = false /* it fails: the transaction rolls back */
		fi
#ifndef NOBARRIER
	fi
#endif
	;
	assert(applied[i] <= 1)
}

/* participant i runs the compensation, through its barrier */
inline compensation(i, ok) {
#ifndef NOBARRIER
	if
	:: !recA[i] -> recA[i] = true; recC[i] = true; ok = true /* null */
	:: recA[i] && recC[i] -> ok = true /* a duplicate */
	:: else ->
#endif
		if
		:: recC[i] = true; undone[i]++; ok = true
		:: cfaults > 0 -> cfaults--; ok = false /* rolls back */
		fi
#ifndef NOBARRIER
	fi
#endif
	;
	assert(undone[i] <= 1 && undone[i] <= applied[i])
}

/* calls in flight reach their participant, or are lost */
active proctype Network() {
	bool ok;
end:	do
	:: atomic { pendA[0] > 0 -> pendA[0]--; action(0, ok); ok = false }
	:: atomic { pendA[1] > 0 -> pendA[1]--; action(1, ok); ok = false }
	:: atomic { pendC[0] > 0 -> pendC[0]--; compensation(0, ok); ok = false }
	:: atomic { pendC[1] > 0 -> pendC[1]--; compensation(1, ok); ok = false }
	:: atomic { pendA[0] + pendA[1] + pendC[0] + pendC[1] > 0 && loss > 0 ->
		loss--;
		if
		:: pendA[0] > 0 -> pendA[0]--
		:: pendA[1] > 0 -> pendA[1]--
		:: pendC[0] > 0 -> pendC[0]--
		:: pendC[1] > 0 -> pendC[1]--
		fi
	}
	od
}

/* leases run out: a stall, a cut connection, a slow renewal */
#define expire(t) atomic { (leaseok & bit(t)) != 0 -> leaseok = leaseok & ~bit(t) }
active proctype Clock() {
end:	do
	:: expire(1)
	:: expire(2)
	:: expire(3)
	:: expire(4)
	:: expire(5)
	:: expire(6)
	:: expire(7)
	od
}

/*
 * The coordinator's side. Each coordinator keeps the instance as it
 * stands in its own variables: st (status), la (actions), lc
 * (compensations), unknown (steps found started without a result); me is
 * its claim's token; lost says it stopped (ErrLeaseLost, or a setback
 * or the end, which give the lease up).
 */

/* claim.admit: a call may start only under a lease that has not run out;
 * with it run out, the renewal (fenced) extends it, or fails and the
 * coordinator gives the instance up */
inline admit() {
	if
	:: owner == me -> leaseok = leaseok | bit(me)
	:: owner == me && loss > 0 -> loss--; lost = true /* the renewal failed */
	:: owner != me -> lost = true
	fi
}

/* a fenced write; on success, commits the coordinator's view */
inline fenced() {
#ifdef NOFENCE
	if :: true ->
#else
	if :: owner == me ->
#endif
		status = st; act[0] = la[0]; act[1] = la[1]; comp[0] = lc[0]; comp[1] = lc[1];
		if
		:: st == RUNNING || st == COMPENSATING -> leaseok = leaseok | bit(me) /* commitLive */
		:: else -> owner = 0; leaseok = leaseok & ~bit(me); lost = true /* commitEnd: the lease given up */
		fi
	:: else -> lost = true
	fi
}

/* a call of phase compensate (comp) or action (!comp) of step i: ok is its
 * reply, as the coordinator sees it */
inline call(i, iscomp) {
	atomic {
		admit();
		if
		:: !lost && !iscomp -> inCall[i] = inCall[i] | bit(me)
		:: !lost && iscomp ->
			/* no other coordinator calls the action under a valid lease */
			assert((inCall[i] & ~bit(me) & leaseok) == 0)
		:: else
		fi
	}
	if
	:: !lost ->
		atomic {
			if
			:: !iscomp -> action(i, ok)
			:: iscomp -> compensation(i, ok)
			:: loss > 0 -> loss--; /* the reply is lost */
				if
				:: !iscomp -> action(i, ok)
				:: iscomp -> compensation(i, ok)
				fi;
				ok = false
			:: loss > 0 -> loss--; ok = false; /* still in flight */
				if
				:: !iscomp -> pendA[i]++
				:: iscomp -> pendC[i]++
				fi
			fi;
			inCall[i] = inCall[i] & ~bit(me)
		}
	:: else
	fi
}

/* engine.forward, then engine.settle: drives the instance to its end or
 * to a setback, or stops when the lease is lost */
inline drive() {
	/* forward */
	i = 0;
	do
	:: lost || st != RUNNING || i >= 2 -> break
	:: else ->
		if
		:: la[i] == DONE -> i++
		:: la[i] == STARTED && unknown[i] && i == 0 -> /* not idempotent */
			atomic { st = COMPENSATING; fenced() }
		:: else ->
			call(i, false);
			if
			:: lost
			:: !lost && ok ->
				atomic {
					la[i] = DONE;
					if
					:: i == 0 -> la[1] = STARTED /* the next step's intent */
					:: i == 1 -> st = SUCCEEDED
					fi;
					fenced()
				};
				i++
			:: !lost && !ok ->
				atomic { la[i] = FAILED; st = COMPENSATING; fenced() }
			fi
		fi
	od;
	/* settle: compensations in reverse */
	i = 1;
	do
	:: lost || st != COMPENSATING -> break
	:: else ->
		if
#ifdef SKIPONTAKEOVER
		:: la[i] != NOTSTARTED && !lc[i] && !(unknown[i] && la[i] == STARTED) ->
#else
		:: la[i] != NOTSTARTED && !lc[i] ->
#endif
			call(i, true);
			if
			:: lost
			:: !lost && ok -> lc[i] = true
			:: !lost && !ok -> /* engine.setback */
				atomic {
					if /* claim.setback, fenced: gives the lease up */
					:: owner == me ->
						attempts++; /* as read by the claim, plus one */
						if
						:: attempts >= STUCKAFTER -> st = STUCK
						:: else
						fi;
						status = st; comp[0] = lc[0]; comp[1] = lc[1];
						owner = 0; leaseok = leaseok & ~bit(me)
					:: else
					fi;
					lost = true
				}
			fi
		:: else
		fi;
		if
		:: !lost && i == 0 -> atomic { st = COMPENSATED; fenced() }
		:: !lost && i > 0 -> i--
		:: else
		fi
	od;
	/* claim.release */
	atomic { if :: owner == me -> owner = 0; leaseok = leaseok & ~bit(me) :: else fi; lost = true }
}

bool crashed;  /* Run's process crashed */
bool rcrash;   /* the driving recovery's process crashed */
bool rdriving; /* a recovery drives the instance */
byte rcrashes = RCRASHES;

/* Coordinator.Run: durable.open inserts the instance with step 0's
 * intent, under claim 1, then drives it */
active proctype Run() {
	byte me = 1, i;
	mtype:status st = RUNNING;
	mtype:phase la[2];
	bool lc[2], unknown[2], ok, lost;
	atomic {
		status = RUNNING; owner = me; leaseok = bit(me); act[0] = STARTED; opened = true;
		la[0] = STARTED
	};
	{
		drive()
	} unless {
		crashed
	};
	atomic { st = RUNNING; la[0] = NOTSTARTED; la[1] = NOTSTARTED; lc[0] = false; lc[1] = false; ok = false; lost = false; i = 0 }
}

/* processes crash: Run's, and up to RCRASHES recoveries' */
active proctype Crash() {
	if
	:: opened -> crashed = true
	:: skip
	fi;
end:	do
	:: atomic { rcrashes > 0 && rdriving -> rcrashes--; rcrash = true }
	od
}

/* claimBatch's condition: the instance is not over, and nobody owns it or
 * the owner's lease ran out */
#ifdef NOLEASECHECK
#define claimable (opened && !over && me < MAXTOKEN)
#else
#define claimable (opened && !over && me < MAXTOKEN && (owner == 0 || (leaseok & bit(owner)) == 0))
#endif

/* Coordinator.RunRecovery: claims after claims, each driven by a process
 * that may crash, until the instance is over */
active proctype Recovery() {
	byte me = 1, i;
	mtype:status st;
	mtype:phase la[2];
	bool lc[2], unknown[2], ok, lost;
	do
	:: atomic { opened && over -> break }
	:: atomic { claimable ->
		/* claimBatch, load and read: a new claim, and the log */
			me++; owner = me; leaseok = leaseok | bit(me);
			st = status; lc[0] = comp[0]; lc[1] = comp[1]; la[0] = act[0]; la[1] = act[1];
			unknown[0] = (act[0] == STARTED); unknown[1] = (act[1] == STARTED);
			lost = false; rdriving = true
		};
		{
			drive()
		} unless {
			rcrash
		};
		atomic { rdriving = false; rcrash = false; st = RUNNING; la[0] = NOTSTARTED; la[1] = NOTSTARTED; lc[0] = false; lc[1] = false;
			unknown[0] = false; unknown[1] = false; ok = false; i = 0 }
	od
}

/* completeness, once nothing can move */
active proctype Complete() {
	timeout ->
		assert(opened);
#ifdef REACH
		assert(status != REACH); /* the runner's check that REACH is reachable */
#endif
		assert(status == SUCCEEDED && applied[0] == 1 && applied[1] == 1 && undone[0] == 0 && undone[1] == 0 ||
			status == COMPENSATED && applied[0] == undone[0] && applied[1] == undone[1] ||
			status == STUCK)
}
