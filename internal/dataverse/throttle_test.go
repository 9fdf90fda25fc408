package dataverse

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"
)

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"12", 12 * time.Second, true},
		{" 0 ", 0, true},
		{"0.25", 250 * time.Millisecond, true},
		{"1.5", 1500 * time.Millisecond, true},
		{now.Add(7 * time.Second).Format(http.TimeFormat), 7 * time.Second, true},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0, true},
		{"86400", maxRetryAfter, true},
		{"", 0, false},
		{"-1", 0, false},
		{"1e3", 0, false},
		{"Inf", 0, false},
		{"0x10", 0, false},
		{".5", 0, false},
		{"soon", 0, false},
	}
	for _, tc := range cases {
		got, ok := parseRetryAfter(tc.in, now)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseRetryAfter(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
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
