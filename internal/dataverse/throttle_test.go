package dataverse

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestRetryAfterCap: the shared parser (internal/backoff) with this client's cap.
func TestRetryAfterCap(t *testing.T) {
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	if got, ok := retryAfter("12", now); !ok || got != 12*time.Second {
		t.Errorf("retryAfter(12) = %v, %v", got, ok)
	}
	if got, ok := retryAfter("86400", now); !ok || got != maxRetryAfter {
		t.Errorf("retryAfter(86400) = %v, %v; want the cap %v", got, ok, maxRetryAfter)
	}
}

func TestThrottleHalvesOncePerStorm(t *testing.T) {
	th := newThrottle(52, time.Millisecond, time.Millisecond, nil)
	th.setHint(40)
	th.limit = 32
	var slots []slot
	for range 20 {
		s, err := th.acquire(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		slots = append(slots, s)
	}
	for _, s := range slots {
		th.release(s, throttled) // 20 429s from requests admitted under the same limit
	}
	if got := th.snapshot().limit; got != 16 {
		t.Errorf("limit after a storm = %d, want 16 (halved once)", got)
	}
	s, _ := th.acquire(context.Background())
	th.release(s, throttled) // a later, separate 429 halves again
	if got := th.snapshot().limit; got != 8 {
		t.Errorf("limit after a second 429 = %d, want 8", got)
	}
	for range 10 {
		s, _ := th.acquire(context.Background())
		th.release(s, throttled)
	}
	if got := th.snapshot().limit; got != 1 {
		t.Errorf("limit floor = %d, want 1", got)
	}
}

func TestThrottleHintLowersLimitAtOnce(t *testing.T) {
	th := newThrottle(52, time.Millisecond, time.Millisecond, nil)
	th.setHint(48)
	th.limit = 48
	th.setHint(4)
	if got := th.snapshot().limit; got != 4 {
		t.Errorf("limit = %d after hint 4", got)
	}
	th.setHint(0) // ignored
	if got := th.snapshot().hint; got != 4 {
		t.Errorf("hint = %d", got)
	}
}

func TestThrottleAcquireIsContextAware(t *testing.T) {
	th := newThrottle(1, time.Millisecond, time.Millisecond, nil)
	s, err := th.acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if _, err := th.acquire(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("queued acquire = %v, want deadline", err)
	}
	// A waiter is admitted as soon as the slot is released.
	done := make(chan error)
	go func() {
		_, err := th.acquire(context.Background())
		done <- err
	}()
	time.Sleep(10 * time.Millisecond)
	th.release(s, succeeded)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("waiter not woken on release")
	}
}

func TestThrottlePauseBlocksAcquire(t *testing.T) {
	th := newThrottle(4, 20*time.Millisecond, 80*time.Millisecond, nil)
	start := time.Now()
	th.pause(60 * time.Millisecond)
	th.pause(10 * time.Millisecond) // never shortens
	s, err := th.acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 60*time.Millisecond {
		t.Errorf("acquired after %v, inside the 60ms pause", d)
	}
	th.release(s, succeeded) // a success ends the streak of 429s
	// No Retry-After: exponential in consecutive 429s, capped.
	if d := th.pause(-1); d != 20*time.Millisecond {
		t.Errorf("pause without Retry-After = %v, want 20ms", d)
	}
	if d := th.pause(-1); d != 40*time.Millisecond {
		t.Errorf("second = %v, want 40ms", d)
	}
	if d := th.pause(-1); d != 80*time.Millisecond {
		t.Errorf("third = %v, want 80ms", d)
	}
	if d := th.pause(-1); d != 80*time.Millisecond {
		t.Errorf("capped = %v, want 80ms", d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := th.acquire(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("acquire during pause = %v, want deadline", err)
	}
}
