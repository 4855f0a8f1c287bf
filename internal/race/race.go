// Package race holds what a policy whose attempts run at once (a hedge)
// and resilience.Do share, so that Do returns the value of the attempt the
// policy chose, never that of an attempt it gave up on, and hands the
// values of those to the policy's discard hook.
package race

import "context"

// Key is the ctx key under which the ctx of an attempt answers with its
// *Attempt.
type Key struct{}

// Race is one call of a policy whose attempts run at once. The policy
// sets Winner before its Do returns; Do reads it after.
type Race struct {
	// Winner is the attempt whose result the policy returned, or nil.
	Winner *Attempt
	// Discard, if not nil, is handed the values of the attempts that lost.
	Discard func(v any)
}

// Attempt is one attempt of a Race.
type Attempt struct {
	Race *Race
	// Outer is the attempt of an enclosing race whose op runs this race,
	// or nil.
	Outer *Attempt
}

// From returns the attempt whose ctx ctx is, or a child of, or nil.
func From(ctx context.Context) *Attempt {
	a, _ := ctx.Value(Key{}).(*Attempt)
	return a
}

// Won reports whether a won its race, and so did every attempt around it.
func (a *Attempt) Won() bool {
	for ; a != nil; a = a.Outer {
		if a.Race.Winner != a {
			return false
		}
	}
	return true
}

// Lost hands v, the value of an attempt that did not win, to the discard
// hook of the innermost race that a lost.
func (a *Attempt) Lost(v any) {
	for ; a != nil; a = a.Outer {
		if a.Race.Winner != a {
			if a.Race.Discard != nil {
				a.Race.Discard(v)
			}
			return
		}
	}
}
