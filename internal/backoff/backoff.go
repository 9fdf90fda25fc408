// Package backoff holds the retry arithmetic the Dataverse and enrichment clients share: reading a
// Retry-After header, the capped exponential ceiling, and the one jitter formula.
package backoff

import (
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// RetryAfter reads a Retry-After header ("HTTP Semantics", RFC 9110 section 10.2.3): delay-seconds or
// an HTTP-date. Decimal seconds are accepted too (the simulators scale time). The wait is at most
// maxWait, so a garbage value cannot park a client for hours; a date in the past means no wait. ok is
// false when the header is absent or not one of those forms ("1e3", "-1", "Inf", "0x10").
func RetryAfter(v string, now time.Time, maxWait time.Duration) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if isDecimal(v) {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return 0, false
		}
		if f >= maxWait.Seconds() {
			return maxWait, true // before converting: 12 digits of seconds overflow a Duration
		}
		return time.Duration(f * float64(time.Second)), true
	}
	if when, err := http.ParseTime(v); err == nil {
		return min(max(when.Sub(now), 0), maxWait), true
	}
	return 0, false
}

// isDecimal accepts "12" and "0.25" but not "1e3", "-1", "Inf" or "0x10" that ParseFloat would take,
// nor more than 12 characters.
func isDecimal(s string) bool {
	dot := false
	for i, c := range s {
		switch {
		case c >= '0' && c <= '9':
		case c == '.' && !dot && i > 0 && i < len(s)-1:
			dot = true
		default:
			return false
		}
	}
	return len(s) <= 12
}

// Ceiling is the capped exponential ceiling base·2ⁿ, at most maxWait (n = 0 is base).
func Ceiling(base, maxWait time.Duration, n int) time.Duration {
	if n > 30 || n < 0 && base > maxWait {
		return maxWait
	}
	if n < 0 {
		n = 0
	}
	d := base << n
	if d <= 0 || d > maxWait {
		return maxWait
	}
	return d
}

// Jitter is the one jitter formula: "full jitter", a uniform draw from [0, ceiling]. Of the schemes
// compared in the AWS Architecture Blog's "Exponential Backoff And Jitter" it spreads competing
// clients best and finishes soonest; a retry of nine attempts costs on average half the sum of the
// ceilings, which keeps a burst of 5xx inside an invocation's time (equal jitter, half fixed, took
// three quarters of it and let a 25-answer outage outlast a two-minute wait).
func Jitter(ceiling time.Duration) time.Duration {
	if ceiling <= 0 {
		return 0
	}
	return rand.N(ceiling + 1)
}

// Wait is the jittered wait before retry n (0-based) of a capped exponential backoff.
func Wait(base, maxWait time.Duration, n int) time.Duration { return Jitter(Ceiling(base, maxWait, n)) }
