package backoff

import (
	"net/http"
	"testing"
	"time"
)

func TestRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	const cap = 10 * time.Minute
	cases := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"12", 12 * time.Second, true},
		{" 0 ", 0, true},
		{"0.25", 250 * time.Millisecond, true},
		{" 0.05 ", 50 * time.Millisecond, true},
		{"1.5", 1500 * time.Millisecond, true},
		{now.Add(7 * time.Second).Format(http.TimeFormat), 7 * time.Second, true},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0, true},
		{now.Add(time.Hour).Format(http.TimeFormat), cap, true},
		{"86400", cap, true},
		{"999999999999", cap, true},
		{"", 0, false},
		{"-1", 0, false},
		{"1e3", 0, false},
		{"1e9", 0, false},
		{"Inf", 0, false},
		{"+Inf", 0, false},
		{"NaN", 0, false},
		{"0x10", 0, false},
		{".5", 0, false},
		{"5.", 0, false},
		{"1.2.3", 0, false},
		{"9999999999999", 0, false},
		{"soon", 0, false},
	}
	for _, tc := range cases {
		got, ok := RetryAfter(tc.in, now, cap)
		if got != tc.want || ok != tc.ok {
			t.Errorf("RetryAfter(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
	// Each client keeps its own cap.
	if got, _ := RetryAfter("600", now, 5*time.Minute); got != 5*time.Minute {
		t.Errorf("RetryAfter with a 5m cap = %v", got)
	}
}

func TestCeiling(t *testing.T) {
	base, maxWait := 100*time.Millisecond, 2*time.Second
	for n, want := range map[int]time.Duration{-1: base, 0: base, 1: 200 * time.Millisecond, 3: 800 * time.Millisecond, 5: maxWait, 31: maxWait, 1000: maxWait} {
		if got := Ceiling(base, maxWait, n); got != want {
			t.Errorf("Ceiling(%d) = %v, want %v", n, got, want)
		}
	}
}

func TestJitterIsFull(t *testing.T) {
	seenLow, seenHigh := false, false
	for range 2000 {
		d := Jitter(time.Second)
		if d < 0 || d > time.Second {
			t.Fatalf("Jitter(1s) = %v, want within [0, 1s]", d)
		}
		seenLow = seenLow || d < 100*time.Millisecond
		seenHigh = seenHigh || d > 900*time.Millisecond
	}
	if !seenLow || !seenHigh {
		t.Errorf("2000 draws never reached both ends of [0, 1s]: not full jitter")
	}
	if Jitter(0) != 0 {
		t.Error("Jitter(0) != 0")
	}
}
