package enrich

import (
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// maxRetryAfter caps what a service may ask us to wait in one go, so a bogus header cannot
// park a chunk for hours; the request is simply throttled again if the service still objects.
const maxRetryAfter = 5 * time.Minute

// backoff returns the wait before retry number n (1-based): exponential from base, capped,
// with "equal jitter" (half fixed, half random) so that retries neither synchronise nor
// collapse to zero.
func backoff(n int, base, maxWait time.Duration) time.Duration {
	d := base
	for i := 1; i < n && d < maxWait; i++ {
		d *= 2
	}
	d = min(d, maxWait)
	half := d / 2
	return half + rand.N(d-half+1)
}

// parseRetryAfter reads a Retry-After header: seconds (decimals accepted, since the
// simulator scales time) or an HTTP date. ok is false when the header is absent or invalid.
func parseRetryAfter(h string, now time.Time) (d time.Duration, ok bool) {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0, false
	}
	if secs, err := strconv.ParseFloat(h, 64); err == nil {
		if secs < 0 || math.IsNaN(secs) || math.IsInf(secs, 0) {
			return 0, false
		}
		return min(time.Duration(math.Min(secs, maxRetryAfter.Seconds())*float64(time.Second)), maxRetryAfter), true
	}
	if t, err := http.ParseTime(h); err == nil {
		return min(max(t.Sub(now), 0), maxRetryAfter), true
	}
	return 0, false
}
