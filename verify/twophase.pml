/*
 * twophase.pml: atomicity of the two-phase commit coordinator.
 *
 * Models package twophase, a transaction of two remote branches A and B
 * and the coordinator's home database L:
 *   - (*Tx).commit (twophase/commit.go): prepares each branch but the
 *     home's, in order; inserts the Commit decision row in the home's
 *     local transaction (insertDecision) and commits it: that commit is
 *     the transaction's commit point; if that COMMIT fails, settle tells
 *     whether it happened (and makes it final); then secondPhase sends
 *     COMMIT PREPARED / XA COMMIT, a "does not exist" counting as done, a
 *     failure leaving the branch to recovery; any failure before the
 *     decision, and a decision found to be Abort, runs (*Tx).abort, whose
 *     (*Tx).rollback rolls back what is prepared (ROLLBACK PREPARED), what
 *     may be (the branch whose prepare failed: ROLLBACK PREPARED, and the
 *     session's rollback), the sessions of the rest, and the home's
 *     transaction; a settle that fails leaves the transaction in doubt
 *     ((*Tx).leave);
 *   - (*Coordinator).Recover, which RunRecovery repeats
 *     (twophase/recovery.go), and (*Coordinator).settle
 *     (twophase/twophase.go): for each prepared branch of a transaction
 *     whose ID carries the coordinator's own ID, a Commit decision commits
 *     it, an Abort decision rolls it back, and no decision, once the
 *     transaction is older than the grace period, is first settled: settle
 *     records Abort unless a decision exists (fenceDecision, an insert that
 *     waits for the home transaction's uncommitted insert of the same key
 *     and then finds it), and the branch is ended as the decision then
 *     recorded says.
 *
 * Faults: every request to a remote branch may be answered, executed with
 * its reply lost, or left in flight, to be executed at any later time or
 * lost (LOSS of these in all); the home's COMMIT may fail or lose its
 * reply, and settle may fail; the coordinator may crash at any step, with
 * its requests in flight (its home transaction then rolls back); a
 * database aborts the open (not prepared) transaction of a session whose
 * client is gone, and may abort one on its own (a deadlock victim, a
 * restart: FAULTS of these); prepared branches and committed rows survive
 * everything. Recovery runs again and again, in the live process and after
 * a restart alike; the grace period may pass at any step of Commit, so
 * that a stalled Commit may be overtaken by recovery anywhere.
 *
 * Properties:
 *   - atomicity (assertion of a monitor): never is one branch committed
 *     and another rolled back;
 *   - resolution (LTL "resolved", with weak fairness): every branch is
 *     eventually committed or rolled back, and stays so.
 *
 * Abstracted away: SQL, XA and their drivers (a branch is its state);
 * Begin, the statements of the branches, and a branch that ran none (it
 * ends unprepared); hooks, observers, alerts and the purge of old
 * decisions; the clock (the grace period matters to liveness and to how
 * often a slow commit is aborted, not to atomicity, which the model checks
 * whenever the grace period passes).
 *
 * Mutations, each of which the checker must refute:
 *   DECISIONAFTER    the decision row is written after the second phase, in
 *                    a transaction of its own;
 *   NOFENCE          recovery rolls back an undecided branch past the grace
 *                    period without recording Abort first;
 *   FOREIGN          a second coordinator's recovery resolves branches whose
 *                    ID carries another coordinator's (its own decision table
 *                    has none of them);
 *   COMMITERRABORTS  when the home's COMMIT fails, Commit rolls back without
 *                    settling (the commit may have happened);
 *   NOPRESUME        recovery never presumes abort: it commits what has a
 *                    decision and leaves the rest, so resolution fails.
 * And REACH=COMMITTED or ABORTED: Spin must find every branch so, so that
 * atomicity is not checked vacuously.
 */

#ifndef LOSS
#define LOSS   3 /* requests or replies lost, in all */
#endif
#define FAULTS 1 /* open transactions a database aborts on its own */

mtype:branch = { ACTIVE, PREPARED, COMMITTED, ABORTED };
mtype:op = { PREPARE, COMMITPREPARED, ROLLBACKPREPARED, ROLLBACK };
mtype:decision = { UNDECIDED, COMMIT, ABORT };

mtype:branch rb[2] = ACTIVE; /* the remote branches A and B */
mtype:branch lb = ACTIVE;    /* L, the home's local transaction */
mtype:decision dec = UNDECIDED; /* the committed decision row */
bool homeIns;                /* L holds its uncommitted insert of the row */
bool live = true;            /* Commit is running in a live process */
byte loss = LOSS;
byte faults = FAULTS;
/* requests in flight, per remote branch, by kind */
byte inflight[8];
#define pending(i, o) inflight[(i) * 4 + (o) - 1]

/* a remote branch's database executes request o, atomically; ok is what
 * its reply says ("does not exist" counts as done) */
inline execute(i, o, ok) {
	if
	:: o == PREPARE ->
		if
		:: rb[i] == ACTIVE -> rb[i] = PREPARED; ok = true
		:: rb[i] == ACTIVE -> rb[i] = ABORTED; ok = false /* it refuses */
		:: else -> ok = false /* the session's transaction is gone */
		fi
	:: o == COMMITPREPARED ->
		if
		:: rb[i] == PREPARED -> rb[i] = COMMITTED
		:: else /* does not exist: done */
		fi;
		ok = true
	:: o == ROLLBACKPREPARED ->
		if
		:: rb[i] == PREPARED -> rb[i] = ABORTED
		:: else /* does not exist: done */
		fi;
		ok = true
	:: o == ROLLBACK ->
		if
		:: rb[i] == ACTIVE -> rb[i] = ABORTED
		:: else
		fi;
		ok = true
	fi
}

/* a request o to remote branch i: answered, executed with the reply
 * lost, or left in flight */
inline request(i, o, ok) {
	atomic {
		if
		:: execute(i, o, ok)
		:: loss > 0 -> loss--; execute(i, o, ok); ok = false
		:: loss > 0 -> loss--; pending(i, o)++; ok = false
		fi
	}
}

/* (*Coordinator).settle: records Abort unless a decision exists, waiting
 * for the home transaction's insert of the same key, and reads the
 * decision; or fails (a store error, out of the LOSS budget) */
inline settle(d, ok) {
	atomic {
		if
		:: !homeIns ->
			if
			:: dec == UNDECIDED -> dec = ABORT
			:: else
			fi;
			d = dec; ok = true
		:: loss > 0 -> loss--; ok = false
		fi
	}
}

/* the request in flight k arrives, or is lost */
inline deliver(k) {
	inflight[k]--;
	i = k / 4;
	o = k % 4 + 1;
	if
	:: execute(i, o, ok)
	:: loss > 0 -> loss--
	fi;
	i = 0; o = 0; ok = false
}

/* the network and the remote databases: requests in flight arrive (or
 * are lost, out of the same budget as the replies); a session whose client
 * is gone has its open transaction aborted; a database aborts an open
 * transaction on its own */
active proctype Databases() {
	byte i, o;
	bool ok;
end:	do
	:: atomic { inflight[0] > 0 -> deliver(0) }
	:: atomic { inflight[1] > 0 -> deliver(1) }
	:: atomic { inflight[2] > 0 -> deliver(2) }
	:: atomic { inflight[3] > 0 -> deliver(3) }
	:: atomic { inflight[4] > 0 -> deliver(4) }
	:: atomic { inflight[5] > 0 -> deliver(5) }
	:: atomic { inflight[6] > 0 -> deliver(6) }
	:: atomic { inflight[7] > 0 -> deliver(7) }
	:: atomic { rb[0] == ACTIVE && !live -> rb[0] = ABORTED }
	:: atomic { rb[1] == ACTIVE && !live -> rb[1] = ABORTED }
	:: atomic { faults > 0 && rb[0] == ACTIVE -> faults--; rb[0] = ABORTED }
	:: atomic { faults > 0 && rb[1] == ACTIVE -> faults--; rb[1] = ABORTED }
	od
}

bool crash;

/* (*Tx).Commit */
active proctype Coordinator() {
	byte i, failed;
	bool ok;
	mtype:decision d;
	{
		/* prepare each branch but the home's */
		i = 0;
		do
		:: i < 2 ->
			request(i, PREPARE, ok);
			if
			:: ok -> i++
			:: else -> failed = i; goto abort
			fi
		:: else -> break
		od;
#ifndef DECISIONAFTER
		/* insertDecision, in the home transaction: fails on a decision
		 * that settle recorded, or on a store error */
		atomic {
			if
			:: dec == UNDECIDED && lb == ACTIVE -> homeIns = true
			:: else -> failed = 2; goto abort
			:: loss > 0 -> loss--; failed = 2; goto abort
			fi
		}
#endif
		/* COMMIT of the home: the commit point */
		atomic {
			if
			:: lb == ACTIVE ->
				lb = COMMITTED;
				if :: homeIns -> dec = COMMIT; homeIns = false :: else fi;
				ok = true
			:: lb == ACTIVE && loss > 0 -> loss--; /* committed, the reply lost */
				lb = COMMITTED;
				if :: homeIns -> dec = COMMIT; homeIns = false :: else fi;
				ok = false
			:: lb == ACTIVE -> lb = ABORTED; homeIns = false; ok = false /* it fails */
			:: else -> ok = false
			fi
		}
		if
		:: !ok ->
#ifdef COMMITERRABORTS
			failed = 2; goto abort;
#endif
			settle(d, ok);
			if
			:: ok && d == COMMIT
			:: ok && d != COMMIT -> failed = 2; goto abort
			:: !ok -> goto indoubt
			fi
		:: else
		fi;
		/* secondPhase */
		i = 0;
		do
		:: i < 2 -> request(i, COMMITPREPARED, ok); i++
		:: else -> break
		od;
#ifdef DECISIONAFTER
		atomic { if :: dec == UNDECIDED -> dec = COMMIT :: else fi }
#endif
		live = false;
		goto end;
abort:		/* (*Tx).rollback: the prepared branches, the one that may be, the
		 * sessions of the rest, and the home's transaction */
		i = 0;
		do
		:: i < 2 ->
			if
			:: i <= failed -> request(i, ROLLBACKPREPARED, ok)
			:: else
			fi;
			if
			:: i >= failed -> request(i, ROLLBACK, ok)
			:: else
			fi;
			i++
		:: else -> break
		od;
		atomic { if :: lb == ACTIVE -> lb = ABORTED; homeIns = false :: else fi; live = false };
		goto end;
indoubt:	/* (*Tx).leave: recovery decides */
		live = false;
end:		skip
	} unless {
		crash
	}
}

/* the coordinator's process dies: its home transaction rolls back, and
 * its sessions are gone */
active proctype Crash() {
	if
	:: atomic { live -> crash = true; live = false;
		if :: lb == ACTIVE -> lb = ABORTED; homeIns = false :: else fi }
	:: skip
	fi
}

/* the grace period passes, at any step of Commit */
bool graced;
active proctype Grace() {
	graced = true
}

/* (*Coordinator).resolve of the prepared branch i */
inline resolve() {
	d = dec;
	if
	:: d == UNDECIDED ->
		if
		:: graced -> /* older than the grace period */
#ifdef NOFENCE
			d = ABORT
#else
			settle(d, ok);
			if :: !ok -> d = UNDECIDED :: else fi
#endif
		:: else /* within it: waiting */
		fi
	:: else
	fi;
	if
	:: d == COMMIT -> request(i, COMMITPREPARED, ok)
#ifndef NOPRESUME
	:: d == ABORT -> request(i, ROLLBACKPREPARED, ok)
#endif
	:: else
	fi;
	atomic { i = 0; d = UNDECIDED; ok = false }
}

/* RunRecovery of the coordinator whose ID the transaction carries, in the
 * live process and after a restart */
active proctype Recovery() {
	byte i;
	mtype:decision d;
	bool ok;
end:	do
	:: atomic { rb[0] == PREPARED -> i = 0 }; resolve()
	:: atomic { rb[1] == PREPARED -> i = 1 }; resolve()
	od
}

#ifdef FOREIGN
/* RunRecovery of another coordinator, whose home is another database:
 * its own decision table has no decision of this transaction, and its
 * settle records Abort there */
active proctype OtherRecovery() {
	byte i;
	bool ok;
end:	do
	:: atomic { rb[0] == PREPARED -> i = 0 };
		request(i, ROLLBACKPREPARED, ok);
		atomic { i = 0; ok = false }
	:: atomic { rb[1] == PREPARED -> i = 1 };
		request(i, ROLLBACKPREPARED, ok);
		atomic { i = 0; ok = false }
	od
}
#endif

#define anyCommitted (rb[0] == COMMITTED || rb[1] == COMMITTED || lb == COMMITTED)
#define anyAborted   (rb[0] == ABORTED || rb[1] == ABORTED || lb == ABORTED)
#define resolvedAll  ((rb[0] == COMMITTED || rb[0] == ABORTED) && (rb[1] == COMMITTED || rb[1] == ABORTED) && lb != ACTIVE)

/* atomicity */
active proctype Atomicity() {
end:	atomic { anyCommitted && anyAborted -> assert(!(anyCommitted && anyAborted)) }
}

#ifdef REACH
/* the runner's check that every branch can end REACH (COMMITTED, ABORTED) */
active proctype Reach() {
end:	atomic { rb[0] == REACH && rb[1] == REACH && lb == REACH -> assert(false) }
}
#endif

ltl resolved { <>[] resolvedAll }
