package resiliencehttp_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/resilience-go/resilience/resiliencehttp"
)

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name         string
		retryAfter   string
		date         string
		want         time.Duration
		wantOK       bool
		wantFromDate bool
	}{
		{name: "absent", wantOK: false},
		{name: "delta-seconds", retryAfter: "120", want: 2 * time.Minute, wantOK: true},
		{name: "zero", retryAfter: "0", want: 0, wantOK: true},
		{name: "spaces around", retryAfter: "  7 ", want: 7 * time.Second, wantOK: true},
		{name: "too large for a Duration", retryAfter: "99999999999999999999", want: time.Duration(1<<63 - 1), wantOK: true},
		{name: "negative", retryAfter: "-5", wantOK: false},
		{name: "signed", retryAfter: "+5", wantOK: false},
		{name: "fraction", retryAfter: "1.5", wantOK: false},
		{name: "garbage", retryAfter: "soon", wantOK: false},
		{name: "IMF-fixdate", retryAfter: "Sun, 01 Mar 2026 12:00:30 GMT", want: 30 * time.Second, wantOK: true},
		{name: "RFC 850", retryAfter: "Sunday, 01-Mar-26 12:01:00 GMT", want: time.Minute, wantOK: true},
		{name: "asctime", retryAfter: "Sun Mar  1 12:00:05 2026", want: 5 * time.Second, wantOK: true},
		{name: "date in the past", retryAfter: "Sun, 01 Mar 2026 11:59:00 GMT", want: 0, wantOK: true},
		{name: "relative to the server's Date", retryAfter: "Sun, 01 Mar 2026 12:10:00 GMT",
			date: "Sun, 01 Mar 2026 12:09:50 GMT", want: 10 * time.Second, wantOK: true},
		{name: "a server clock behind ours", retryAfter: "Sun, 01 Mar 2026 11:00:20 GMT",
			date: "Sun, 01 Mar 2026 11:00:00 GMT", want: 20 * time.Second, wantOK: true},
		{name: "a Date that does not parse is ignored", retryAfter: "Sun, 01 Mar 2026 12:00:30 GMT",
			date: "yesterday", want: 30 * time.Second, wantOK: true},
		{name: "delta-seconds ignore Date", retryAfter: "3", date: "Sun, 01 Mar 2026 11:00:00 GMT", want: 3 * time.Second, wantOK: true},
	}
	for _, tt := range tests {
		h := http.Header{}
		if tt.retryAfter != "" {
			h.Set("Retry-After", tt.retryAfter)
		}
		if tt.date != "" {
			h.Set("Date", tt.date)
		}
		d, ok := resiliencehttp.ParseRetryAfter(h, now)
		assert.Equal(t, tt.wantOK, ok, "%s: Retry-After %q, Date %q", tt.name, tt.retryAfter, tt.date)
		assert.Equal(t, tt.want, d, "%s: Retry-After %q, Date %q", tt.name, tt.retryAfter, tt.date)
	}
}

func FuzzParseRetryAfter(f *testing.F) {
	for _, s := range []string{"0", "120", "-1", "Sun, 01 Mar 2026 12:00:30 GMT", "Sunday, 01-Mar-26 12:01:00 GMT",
		"Sun Mar  1 12:00:05 2026", "99999999999999999999", ""} {
		f.Add(s, "Sun, 01 Mar 2026 12:00:00 GMT")
	}
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, retryAfter, date string) {
		h := http.Header{"Retry-After": {retryAfter}, "Date": {date}}
		d, ok := resiliencehttp.ParseRetryAfter(h, now)
		if d < 0 {
			t.Fatalf("ParseRetryAfter(%q, Date %q) = %v: negative", retryAfter, date, d)
		}
		if !ok && d != 0 {
			t.Fatalf("ParseRetryAfter(%q, Date %q) = %v, false: a wait without a header", retryAfter, date, d)
		}
	})
}

func TestStatusError(t *testing.T) {
	err := &resiliencehttp.StatusError{Response: &http.Response{Status: "503 Service Unavailable", StatusCode: 503}, StatusCode: 503}
	assert.EqualError(t, err, "resiliencehttp: 503 Service Unavailable")
	assert.Zero(t, err.RetryAfter(), "no Retry-After: no hint")
	assert.EqualError(t, &resiliencehttp.StatusError{StatusCode: 429}, "resiliencehttp: 429 Too Many Requests")
}
