package dashboard

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
)

func TestAge(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{-time.Second, "0s"},
		{0, "0s"},
		{999 * time.Millisecond, "0s"},
		{42 * time.Second, "42s"},
		{3*time.Minute + 5*time.Second, "3m05s"},
		{2*time.Hour + 3*time.Minute + 59*time.Second, "2h03m"},
		{4*24*time.Hour + 2*time.Hour, "4d02h"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, age(tt.d), tt.d)
	}
}

// A sparkline spans the last minute, left to right, with a gap for each
// second with no sample, and the rate from the bottom up.
func TestSpark(t *testing.T) {
	now := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	at := func(ago int, rate float64) Sample {
		return Sample{Time: now.Add(-time.Duration(ago) * time.Second), FailureRate: rate}
	}
	tests := []struct {
		name string
		h    []Sample
		want []string
	}{
		{"none", nil, nil},
		{"one", []Sample{at(0, 0)}, []string{"118.0,23.0 120.0,23.0"}},
		{"a run", []Sample{at(30, 0), at(29, 0.5), at(28, 1)}, []string{"60.0,23.0 62.0,12.0 64.0,1.0"}},
		{"a gap", []Sample{at(30, 0), at(29, 0), at(10, 1)}, []string{"60.0,23.0 62.0,23.0", "99.0,1.0 101.0,1.0"}},
		{"clamped", []Sample{at(60, 2), at(59, -1)}, []string{"1.0,1.0 2.0,23.0"}},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, spark(tt.h, now), tt.name)
	}
}

// A breaker's history holds one sample a second, the last of that second,
// for a minute.
func TestHistory(t *testing.T) {
	var p breakerPanel
	start := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	p.sample(start.Add(100*time.Millisecond), 0.1)
	h := p.sample(start.Add(900*time.Millisecond), 0.2)
	assert.Equal(t, []Sample{{start, 0.2}}, h, "the last sample of the second")
	for i := 1; i <= 70; i++ {
		h = p.sample(start.Add(time.Duration(i)*time.Second), float64(i))
	}
	assert.Len(t, h, historyLen)
	assert.Equal(t, Sample{start.Add(11 * time.Second), 11}, h[0])
	assert.Equal(t, Sample{start.Add(70 * time.Second), 70}, h[len(h)-1])

	h = p.sample(start.Add(100*time.Second), 1)
	assert.Equal(t, []Sample{
		{start.Add(41 * time.Second), 41}, {start.Add(42 * time.Second), 42}, // and so on
	}, h[:2], "a sample a minute old is gone")
	assert.Len(t, h, 31)
}

func TestClip(t *testing.T) {
	assert.Equal(t, "short", clip("short"))
	long := strings.Repeat("é", maxText) // 2 bytes each
	c := clip(long)
	assert.True(t, utf8.ValidString(c))
	assert.True(t, strings.HasSuffix(c, "…"))
	assert.LessOrEqual(t, len(c), maxText+len("…"))
	assert.Equal(t, strings.Repeat("é", maxText/2)+"…", c)
}
