package resilience_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/internal/policytest"
)

// pass is an allocation-free policy that checks ctx and calls op.
type pass struct{}

func (pass) Do(ctx context.Context, op resilience.Op) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return op(ctx)
}

// tracer records when it enters and leaves, to show the order of layers.
type tracer struct {
	name string
	log  *[]string
}

func (tr tracer) Do(ctx context.Context, op resilience.Op) error {
	*tr.log = append(*tr.log, tr.name+" in")
	err := op(ctx)
	*tr.log = append(*tr.log, tr.name+" out")
	return err
}

func TestChainOrder(t *testing.T) {
	var log []string
	a, b, c := tracer{"a", &log}, tracer{"b", &log}, tracer{"c", &log}
	want := []string{"a in", "b in", "c in", "op", "c out", "b out", "a out"}
	op := func(context.Context) error { log = append(log, "op"); return nil }

	tests := []struct {
		name  string
		chain resilience.Policy
	}{
		{"flat", resilience.Chain(a, b, c)},
		{"nested first", resilience.Chain(resilience.Chain(a, b), c)},
		{"nested last", resilience.Chain(a, resilience.Chain(b, c))},
		{"with empty chains", resilience.Chain(resilience.Chain(), a, b, resilience.Chain(), c)},
	}
	for _, tt := range tests {
		log = nil
		require.NoError(t, tt.chain.Do(context.Background(), op), tt.name)
		assert.Equal(t, want, log, "%s: order through Do", tt.name)

		log = nil
		require.NoError(t, resilience.Wrap(tt.chain, op)(context.Background()), tt.name)
		assert.Equal(t, want, log, "%s: order through Wrap", tt.name)
	}
}

func TestChainOfOneIsThePolicy(t *testing.T) {
	p := &struct{ pass }{}
	assert.Same(t, p, resilience.Chain(p), "Chain(p)")
	assert.Same(t, p, resilience.Chain(resilience.Chain(), p), "Chain(Chain(), p)")
}

func TestChainOfNoneRunsOp(t *testing.T) {
	opErr := errors.New("op failed")
	calls := 0
	err := resilience.Chain().Do(context.Background(), func(context.Context) error { calls++; return opErr })
	assert.Same(t, opErr, err, "Chain().Do returns op's error as is")
	assert.Equal(t, 1, calls, "op calls")

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = resilience.Chain().Do(ctx, func(context.Context) error { calls++; return nil })
	assert.Equal(t, context.Canceled, err, "Chain().Do with a cancelled ctx")
	assert.Equal(t, 1, calls, "op is not called with a cancelled ctx")
}

func TestChainIsNotAliasedToItsArgument(t *testing.T) {
	var log []string
	ps := []resilience.Policy{tracer{"a", &log}, tracer{"b", &log}}
	c := resilience.Chain(ps...)
	ps[0] = tracer{"changed", &log}
	require.NoError(t, c.Do(context.Background(), func(context.Context) error { return nil }))
	assert.Equal(t, []string{"a in", "b in", "b out", "a out"}, log)
}

func TestNilArgumentsPanic(t *testing.T) {
	ctx := context.Background()
	op := func(context.Context) error { return nil }
	fn := func(context.Context) (int, error) { return 1, nil }
	tests := []struct {
		name string
		f    func()
		want string
	}{
		{"Chain, nil", func() { resilience.Chain(pass{}, nil) }, "resilience: Chain: nil Policy at index 1"},
		{"Chain, nil pointer", func() { resilience.Chain((*struct{ pass })(nil)) }, "resilience: Chain: nil Policy at index 0"},
		{"Chain, nil PolicyFunc", func() { resilience.Chain(resilience.PolicyFunc(nil), pass{}) }, "resilience: Chain: nil Policy at index 0"},
		{"Chain().Do", func() { _ = resilience.Chain().Do(ctx, nil) }, "resilience: Chain.Do: nil Op"},
		{"Chain(a, b).Do", func() { _ = resilience.Chain(pass{}, pass{}).Do(ctx, nil) }, "resilience: Chain.Do: nil Op"},
		{"Wrap, nil Policy", func() { resilience.Wrap(nil, op) }, "resilience: Wrap: nil Policy"},
		{"Wrap, nil pointer", func() { resilience.Wrap((*struct{ pass })(nil), op) }, "resilience: Wrap: nil Policy"},
		{"Wrap, nil Op", func() { resilience.Wrap(pass{}, nil) }, "resilience: Wrap: nil Op"},
		{"Do, nil Policy", func() { _, _ = resilience.Do(ctx, nil, fn) }, "resilience: Do: nil Policy"},
		{"Do, nil pointer", func() { _, _ = resilience.Do(ctx, (*struct{ pass })(nil), fn) }, "resilience: Do: nil Policy"},
		{"Do, nil fn", func() { _, _ = resilience.Do[int](ctx, pass{}, nil) }, "resilience: Do: nil fn"},
		{"PolicyFunc.Do, nil PolicyFunc", func() { _ = resilience.PolicyFunc(nil).Do(ctx, op) }, "resilience: PolicyFunc.Do: nil PolicyFunc"},
		{"PolicyFunc.Do, nil Op", func() { _ = resilience.PolicyFunc(pass{}.Do).Do(ctx, nil) }, "resilience: PolicyFunc.Do: nil Op"},
	}
	for _, tt := range tests {
		assert.PanicsWithValue(t, tt.want, tt.f, tt.name)
	}
}

func TestContract(t *testing.T) {
	tests := []struct {
		name string
		new  func() resilience.Policy
	}{
		{"Chain()", func() resilience.Policy { return resilience.Chain() }},
		{"Chain of four", func() resilience.Policy { return resilience.Chain(pass{}, pass{}, pass{}, pass{}) }},
		{"PolicyFunc", func() resilience.Policy {
			return resilience.PolicyFunc(func(ctx context.Context, op resilience.Op) error { return pass{}.Do(ctx, op) })
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { policytest.Run(t, tt.new) })
	}
}

// times calls op n times, or until ctx is done, and returns the last error.
type times int

func (n times) Do(ctx context.Context, op resilience.Op) error {
	var err error
	for range int(n) {
		if err = ctx.Err(); err != nil {
			return err
		}
		err = op(ctx)
	}
	return err
}

var errRefused = fmt.Errorf("refused: %w", resilience.ErrRejected)

// Under a policy that runs attempts at once, the first success wins: a
// loser that returns later does not overwrite its value.
func TestDoKeepsTheFirstSuccess(t *testing.T) {
	hedge := resilience.PolicyFunc(func(ctx context.Context, op resilience.Op) error {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		errs := make(chan error, 2)
		winner := make(chan struct{})
		go func() { errs <- op(context.WithValue(ctx, ctxKey{}, "fast")); close(winner) }()
		go func() { <-winner; cancel(); errs <- op(context.WithValue(ctx, ctxKey{}, "slow")) }()
		first := <-errs
		<-errs
		return first
	})
	v, err := resilience.Do(context.Background(), hedge, func(ctx context.Context) (string, error) {
		if ctx.Value(ctxKey{}) == "slow" {
			return "", context.Canceled
		}
		return "answer", nil
	})
	require.NoError(t, err)
	assert.Equal(t, "answer", v)
}

type ctxKey struct{}

func TestDoReturnsTheLastAttempt(t *testing.T) {
	attempt := 0
	fn := func(context.Context) (int, error) {
		attempt++
		if attempt < 3 {
			return attempt, fmt.Errorf("attempt %d", attempt)
		}
		return attempt * 10, nil
	}
	v, err := resilience.Do(context.Background(), times(3), fn)
	require.NoError(t, err)
	assert.Equal(t, 30, v, "the value of the third attempt")

	attempt = 0
	v, err = resilience.Do(context.Background(), times(2), fn)
	assert.EqualError(t, err, "attempt 2")
	assert.Equal(t, 2, v, "the value of the second, failed, attempt")

	refuse := resilience.PolicyFunc(func(context.Context, resilience.Op) error { return errRefused })
	s, err := resilience.Do(context.Background(), refuse, func(context.Context) (string, error) { return "ran", nil })
	assert.ErrorIs(t, err, resilience.ErrRejected)
	assert.Empty(t, s, "no attempt was made: the zero value")
}

// hinted is an error with a retry-after hint.
type hinted time.Duration

func (h hinted) Error() string             { return "hinted" }
func (h hinted) RetryAfter() time.Duration { return time.Duration(h) }

// zeroWrapping is an error with a hint of zero that wraps another.
type zeroWrapping struct{ err error }

func (e zeroWrapping) Error() string             { return "zero: " + e.err.Error() }
func (e zeroWrapping) RetryAfter() time.Duration { return 0 }
func (e zeroWrapping) Unwrap() error             { return e.err }

func TestRetryAfter(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		want   time.Duration
		wantOK bool
	}{
		{"nil", nil, 0, false},
		{"no hint", errors.New("plain"), 0, false},
		{"hint", hinted(time.Second), time.Second, true},
		{"wrapped", fmt.Errorf("call: %w", hinted(2*time.Second)), 2 * time.Second, true},
		{"outermost hint wins", fmt.Errorf("%w", fmt.Errorf("x: %w %w", hinted(3*time.Second), hinted(4*time.Second))), 3 * time.Second, true},
		{"joined, second", errors.Join(errors.New("a"), fmt.Errorf("b: %w", hinted(5*time.Second))), 5 * time.Second, true},
		{"joined, none", errors.Join(errors.New("a"), errors.New("b")), 0, false},
		{"negative", hinted(-time.Second), 0, false},
		{"zero", hinted(0), 0, false},
		{"zero, then a hint inside", fmt.Errorf("%w: %w", hinted(0), hinted(6*time.Second)), 6 * time.Second, true},
		{"zero wrapping a hint", zeroWrapping{hinted(7 * time.Second)}, 7 * time.Second, true},
		{"joined, zero then a hint", errors.Join(hinted(0), hinted(8*time.Second)), 8 * time.Second, true},
	}
	for _, tt := range tests {
		d, ok := resilience.RetryAfter(tt.err)
		assert.Equal(t, tt.want, d, tt.name)
		assert.Equal(t, tt.wantOK, ok, tt.name)
	}
}

// A chain of allocation-free policies bound with Wrap allocates nothing.
func TestWrapAllocatesNothing(t *testing.T) {
	op := resilience.Wrap(resilience.Chain(pass{}, pass{}, pass{}, pass{}), func(context.Context) error { return nil })
	ctx := context.Background()
	allocs := testing.AllocsPerRun(1000, func() {
		if err := op(ctx); err != nil {
			t.Fatal(err)
		}
	})
	assert.Zero(t, allocs, "allocations per call of a Wrap-bound four-layer chain")
}

func TestRejection(t *testing.T) {
	errFull := resilience.Rejection("bulkhead: full")
	assert.ErrorIs(t, errFull, resilience.ErrRejected)
	assert.Equal(t, "bulkhead: full", errFull.Error())
	wrapped := fmt.Errorf("reserve: %w", errFull)
	assert.ErrorIs(t, wrapped, resilience.ErrRejected, "through a wrap")
	assert.ErrorIs(t, wrapped, errFull)
	assert.NotErrorIs(t, errFull, resilience.Rejection("ratelimit: limited"), "another kind of refusal")
	assert.NotErrorIs(t, errors.New("bulkhead: full"), resilience.ErrRejected, "a plain error of the same text")
}
