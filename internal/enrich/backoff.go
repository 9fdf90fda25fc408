package enrich

import (
	"time"

	"dvbulk/internal/backoff"
)

// maxRetryAfter caps what a service may ask us to wait in one go, so a bogus header cannot
// park a chunk for hours; the request is simply throttled again if the service still objects.
const maxRetryAfter = 5 * time.Minute

// wait returns the wait before retry number n (1-based): exponential from base, capped, jittered.
func wait(n int, base, maxWait time.Duration) time.Duration { return backoff.Wait(base, maxWait, n-1) }

// retryAfter reads the service's Retry-After (seconds, or an HTTP date), capped at maxRetryAfter.
func retryAfter(h string, now time.Time) (time.Duration, bool) {
	return backoff.RetryAfter(h, now, maxRetryAfter)
}
