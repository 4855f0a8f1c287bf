package event_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/internal/event"
)

func TestOutcome(t *testing.T) {
	done, cancel := context.WithCancel(context.Background())
	cancel()
	errDown := errors.New("down")
	tests := []struct {
		name string
		ctx  context.Context
		err  error
		want resilience.EventKind
	}{
		{"success", context.Background(), nil, resilience.Success},
		{"success after the caller gave up", done, nil, resilience.Success},
		{"failure", context.Background(), errDown, resilience.Failure},
		{"error after the caller gave up", done, errDown, resilience.Ignored},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, event.Outcome(tt.ctx, tt.err), tt.name)
	}
}

func TestEnd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		time.Sleep(1500 * time.Millisecond)
		now, took := event.End(start)
		assert.Equal(t, 1500*time.Millisecond, took)
		assert.True(t, now.Equal(time.Now()), "now %v, the clock %v", now, time.Now())
	})
}
