package enrich

import (
	"net/http"
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	base, maxWait := 100*time.Millisecond, 2*time.Second
	for _, tt := range []struct {
		n        int
		min, max time.Duration
	}{
		{1, 0, 100 * time.Millisecond}, // full jitter: anywhere up to the ceiling
		{2, 0, 200 * time.Millisecond},
		{4, 0, 800 * time.Millisecond},
		{6, 0, 2 * time.Second}, // capped
		{100, 0, 2 * time.Second},
	} {
		for range 200 {
			if d := wait(tt.n, base, maxWait); d < tt.min || d > tt.max {
				t.Fatalf("wait(%d) = %s, want within [%s, %s]", tt.n, d, tt.min, tt.max)
			}
		}
	}
}

// TestRetryAfterCap: the shared parser (internal/backoff) with this client's cap.
func TestRetryAfterCap(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	if got, ok := retryAfter(now.Add(3*time.Second).Format(http.TimeFormat), now); !ok || got != 3*time.Second {
		t.Errorf("retryAfter(date) = %v, %v", got, ok)
	}
	if got, ok := retryAfter("86400", now); !ok || got != maxRetryAfter {
		t.Errorf("retryAfter(86400) = %v, %v; want the cap %v", got, ok, maxRetryAfter)
	}
}
