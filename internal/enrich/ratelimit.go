package enrich

import (
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// quota is what an answer's rate-limit headers say about the client's request quota.
type quota struct {
	// remaining requests in the current window, and the time until the window resets;
	// hasRemaining/hasReset say whether the answer said so.
	remaining    int64
	reset        time.Duration
	hasRemaining bool
	hasReset     bool
	// rps is the pace a policy advertises (quota / window), 0 if none.
	rps float64
}

// exhausted reports how long to hold every request: until the reset of a quota with nothing
// left. ok is false when the quota is not known to be used up.
func (q quota) exhausted() (time.Duration, bool) {
	if q.hasRemaining && q.remaining <= 0 && q.hasReset && q.reset > 0 {
		return q.reset, true
	}
	return 0, false
}

// parseQuota reads the rate-limit headers in use, preferring the newest form:
//
//   - IETF draft-ietf-httpapi-ratelimit-headers (-07 and later): RateLimit: "name";r=50;t=30
//     (r remaining quota units, t seconds to reset) and RateLimit-Policy: "name";q=100;w=60
//     (quota q per window of w seconds). With several items, the one with the least remaining
//     binds.
//   - Earlier drafts: RateLimit: limit=100, remaining=50, reset=30, or the separate
//     RateLimit-Limit / RateLimit-Remaining / RateLimit-Reset (reset in seconds), and
//     RateLimit-Policy: 100;w=60.
//   - The common X-RateLimit-Remaining / X-RateLimit-Reset, whose reset is epoch seconds at some
//     providers (GitHub) and seconds from now at others; values that only make sense as a
//     point in time (after 2001-09-09, i.e. ≥ 1e9; ≥ 1e12 as epoch milliseconds) are read as one.
//
// Every wait is capped like Retry-After (maxRetryAfter); unparsable values are ignored.
func parseQuota(h http.Header, now time.Time) quota {
	var q quota
	if v := h.Get("RateLimit"); v != "" {
		q = parseRateLimitField(v)
	}
	if !q.hasRemaining {
		q.remaining, q.hasRemaining = parseCount(h.Get("RateLimit-Remaining"))
		if !q.hasRemaining {
			q.remaining, q.hasRemaining = parseCount(h.Get("X-RateLimit-Remaining"))
		}
	}
	if !q.hasReset {
		if d, ok := parseSeconds(h.Get("RateLimit-Reset")); ok {
			q.reset, q.hasReset = d, true
		} else if d, ok := parseReset(h.Get("X-RateLimit-Reset"), now); ok {
			q.reset, q.hasReset = d, true
		}
	}
	if v := h.Get("RateLimit-Policy"); v != "" {
		q.rps = parsePolicy(v)
	}
	return q
}

// parseRateLimitField reads a RateLimit field in the structured (-07+) or dictionary (-05/-06)
// form. Items are separated by commas; parameters by semicolons.
func parseRateLimitField(v string) quota {
	var q quota
	best := int64(math.MaxInt64)
	for _, item := range splitList(v) {
		params := strings.Split(item, ";")
		var r int64
		var t time.Duration
		var hasR, hasT bool
		for _, p := range params {
			k, val, ok := strings.Cut(strings.TrimSpace(p), "=")
			if !ok {
				continue
			}
			switch strings.ToLower(strings.TrimSpace(k)) {
			case "r", "remaining":
				r, hasR = parseCount(val)
			case "t", "reset":
				t, hasT = parseSeconds(val)
			}
		}
		// The dictionary form spreads one quota over items: remaining=..., reset=...
		if hasR && (r < best || !q.hasRemaining) {
			best, q.remaining, q.hasRemaining = r, r, true
			if hasT {
				q.reset, q.hasReset = t, true
			}
		} else if hasT && !q.hasReset {
			q.reset, q.hasReset = t, true
		}
	}
	return q
}

// parsePolicy returns the slowest pace the policies advertise: quota per window in requests
// per second. Structured form: "name";q=100;w=60; earlier drafts: 100;w=60 (window in seconds).
func parsePolicy(v string) float64 {
	slowest := 0.0
	for _, item := range splitList(v) {
		params := strings.Split(item, ";")
		var qv, w float64
		for i, p := range params {
			p = strings.TrimSpace(p)
			k, val, ok := strings.Cut(p, "=")
			if !ok {
				if i == 0 { // earlier drafts: the bare quota first
					if n, err := strconv.ParseFloat(p, 64); err == nil {
						qv = n
					}
				}
				continue
			}
			n, err := strconv.ParseFloat(strings.Trim(strings.TrimSpace(val), `"`), 64)
			if err != nil || n <= 0 || math.IsInf(n, 0) || math.IsNaN(n) {
				continue
			}
			switch strings.ToLower(strings.TrimSpace(k)) {
			case "q":
				qv = n
			case "w":
				w = n
			}
		}
		// A quota unit may be more than a request (qu="content-bytes"): only plain request
		// quotas are a pace, and a window is needed to make one.
		if qv > 0 && w > 0 && !strings.Contains(strings.ToLower(item), "qu=") {
			if r := qv / w; slowest == 0 || r < slowest {
				slowest = r
			}
		}
	}
	return slowest
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func parseCount(v string) (int64, bool) {
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

// parseSeconds reads a non-negative delta in seconds (decimals accepted), capped.
func parseSeconds(v string) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	s, err := strconv.ParseFloat(v, 64)
	if err != nil || s < 0 || math.IsNaN(s) || math.IsInf(s, 0) {
		return 0, false
	}
	return time.Duration(math.Min(s, maxRetryAfter.Seconds()) * float64(time.Second)), true
}

// parseReset reads X-RateLimit-Reset: epoch seconds or milliseconds, or a delta in seconds.
func parseReset(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	s, err := strconv.ParseFloat(v, 64)
	if err != nil || s < 0 || math.IsNaN(s) || math.IsInf(s, 0) {
		return 0, false
	}
	var at time.Time
	switch {
	case s >= 1e12:
		at = time.UnixMilli(int64(s))
	case s >= 1e9:
		at = time.Unix(int64(s), int64((s-math.Floor(s))*1e9))
	default:
		return parseSeconds(v)
	}
	return min(max(at.Sub(now), 0), maxRetryAfter), true
}
