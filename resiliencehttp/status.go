package resiliencehttp

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// StatusError is the error with which an attempt of a [Transport] tells its
// policies that the server answered with a status that is a failure: by
// default 408, 429, 502, 503 and 504 (see [WithFailOn500] and
// [WithClassifier]). A retry retries it, a circuit breaker counts it, and
// its RetryAfter method, which [resilience.RetryAfter] finds, reports the
// response's Retry-After header.
//
// A StatusError seldom reaches the caller of the Transport: when the
// policies give up on it, the Transport returns its Response with a nil
// error, as a RoundTripper must, with the body unread. It reaches the
// caller only inside the error of a call that a policy refused after a
// failing status, such as a breaker that opened between two attempts; its
// Response's body is then closed, and its status and header remain.
type StatusError struct {
	// Response is the response that failed. Its Request is the attempt's.
	Response *http.Response
	// StatusCode is Response.StatusCode.
	StatusCode int

	retryAt time.Time // when the server asked to be called again; zero if it did not
}

// Error returns "resiliencehttp: " and the status, such as
// "resiliencehttp: 503 Service Unavailable".
func (e *StatusError) Error() string {
	if e.Response != nil && e.Response.Status != "" {
		return "resiliencehttp: " + e.Response.Status
	}
	return "resiliencehttp: " + strconv.Itoa(e.StatusCode) + " " + http.StatusText(e.StatusCode)
}

// RetryAfter returns how long from now until the time the response's
// Retry-After header asked for, read as [ParseRetryAfter] reads it when the
// response arrived, or zero (no hint) when it had no such header or that
// time has passed.
func (e *StatusError) RetryAfter() time.Duration {
	if e.retryAt.IsZero() {
		return 0
	}
	return time.Until(e.retryAt)
}

// ParseRetryAfter reads the Retry-After header of h as RFC 9110 §10.2.3
// defines it and reports how long from now it asks the client to wait, and
// whether h has a Retry-After that parses. It accepts delta-seconds (a
// non-negative decimal integer; one too large for a time.Duration is the
// largest Duration) and an HTTP-date in any of the three forms that
// [http.ParseTime] accepts. A date is taken relative to h's Date header
// when that parses, so that a server whose clock differs from now's gets
// the wait it meant, and otherwise relative to now; a date in the past is
// a wait of zero.
func ParseRetryAfter(h http.Header, now time.Time) (time.Duration, bool) {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0, false
	}
	if isDigits(v) {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n > int64(maxDuration/time.Second) {
			return maxDuration, true
		}
		return time.Duration(n) * time.Second, true
	}
	at, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	if date, err := http.ParseTime(h.Get("Date")); err == nil {
		now = date
	}
	return max(at.Sub(now), 0), true
}

const maxDuration = time.Duration(1<<63 - 1)

func isDigits(s string) bool {
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// failing is the default classification: whether a response with status
// code is a failure for the policies.
func failing(code int, with500 bool) bool {
	switch code {
	case http.StatusRequestTimeout, http.StatusTooManyRequests,
		http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	case http.StatusInternalServerError:
		return with500
	}
	return false
}
