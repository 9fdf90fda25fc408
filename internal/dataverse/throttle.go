package dataverse

import (
	"context"
	"math"
	"sync"
	"time"

	"dvbulk/internal/backoff"
)

// throttle is the client-wide admission control: an adaptive concurrency limit (AIMD that follows
// x-ms-dop-hint) plus the service-protection gate. Both live behind one mutex because they decide
// together whether a request may start.
//
// Dataverse's Retry-After is the time before the server will process any new request from the
// user, and it grows if the client keeps sending, so a 429 on one request pauses every request of
// the client: the gate is checked when a slot is acquired and again right before the bytes go out
// (sendPolicy), and a request that meets a closed gate there gives its slot back and queues again.
type throttle struct {
	mu          sync.Mutex
	limit       float64 // current adaptive limit, 1 <= limit <= ceiling
	maxConc     int     // Config.MaxConcurrency: hard cap
	hint        int     // latest x-ms-dop-hint (5 until one is seen)
	inFlight    int     // slots held
	peak        int     // highest inFlight seen
	epoch       uint64  // bumped on every decrease so one 429 storm halves only once
	pausedUntil time.Time
	pausedFor   time.Duration
	streak      int           // consecutive 429s without a success (for missing Retry-After)
	changed     chan struct{} // closed and replaced whenever waiters may proceed
	base, max   time.Duration // backoff for a 429 without Retry-After
}

// defaultDOP is what ServiceClient assumes before the server has sent x-ms-dop-hint.
const defaultDOP = 5

func newThrottle(maxConc int, base, max time.Duration) *throttle {
	t := &throttle{maxConc: maxConc, hint: defaultDOP, changed: make(chan struct{}), base: base, max: max}
	t.limit = float64(t.ceilingLocked())
	return t
}

func (t *throttle) ceilingLocked() int { return min(t.hint, t.maxConc) }

// wakeLocked lets every waiter re-check; the waiter population is small (bounded by callers).
func (t *throttle) wakeLocked() {
	close(t.changed)
	t.changed = make(chan struct{})
}

// slot is one admitted request; epoch ties a 429 to the limit it was admitted under.
type slot struct{ epoch uint64 }

// acquire waits until the gate is open and a slot under the current limit is free.
func (t *throttle) acquire(ctx context.Context) (slot, error) {
	for {
		t.mu.Lock()
		wait := time.Until(t.pausedUntil)
		if wait <= 0 && t.inFlight < int(t.limit) {
			t.inFlight++
			t.peak = max(t.peak, t.inFlight)
			s := slot{epoch: t.epoch}
			t.mu.Unlock()
			return s, nil
		}
		ch := t.changed
		t.mu.Unlock()
		var (
			tm    *time.Timer
			timer <-chan time.Time
		)
		if wait > 0 {
			tm = time.NewTimer(wait)
			timer = tm.C
		}
		var err error
		select {
		case <-ctx.Done():
			err = ctx.Err()
		case <-ch:
		case <-timer:
		}
		if tm != nil {
			tm.Stop()
		}
		if err != nil {
			return slot{}, err
		}
	}
}

// outcome tells the limiter what an attempt taught it.
type outcome int

const (
	neutral   outcome = iota // transport error, 4xx, gate closed: no signal about capacity
	succeeded                // additive increase
	throttled                // multiplicative decrease
)

// release returns the slot and adapts the limit: +1/limit per success (about +1 per window of
// successes) and halving once per epoch on a 429, so a storm of 429s from requests admitted under
// the same limit shrinks it only once.
func (t *throttle) release(s slot, o outcome) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.inFlight--
	switch o {
	case succeeded:
		t.streak = 0
		t.limit = math.Min(t.limit+1/t.limit, float64(t.ceilingLocked()))
	case throttled:
		t.decreaseLocked(s.epoch)
	}
	t.wakeLocked()
}

func (t *throttle) decreaseLocked(epoch uint64) {
	if epoch == t.epoch {
		t.limit = math.Max(1, math.Floor(t.limit/2))
		t.epoch++
	}
}

// currentEpoch is the epoch a request admitted now would carry.
func (t *throttle) currentEpoch() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.epoch
}

// decrease halves the limit for a 429 that reached the client inside a successful response (a
// $batch part), once per epoch like release does for a top-level one.
func (t *throttle) decrease(epoch uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.decreaseLocked(epoch)
	t.wakeLocked()
}

// pause closes the gate for d (extending, never shortening, a pause already in force). d < 0
// means the server gave no Retry-After: back off exponentially in the number of consecutive 429s.
func (t *throttle) pause(d time.Duration) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.streak++
	if d < 0 {
		d = backoff.Ceiling(t.base, t.max, t.streak-1)
	}
	now := time.Now()
	end := now.Add(d)
	if end.After(t.pausedUntil) {
		from := now
		if t.pausedUntil.After(now) {
			from = t.pausedUntil
		}
		t.pausedFor += end.Sub(from)
		t.pausedUntil = end
	}
	t.wakeLocked()
	return d
}

// remaining is how long the gate stays closed.
func (t *throttle) remaining() time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	return time.Until(t.pausedUntil)
}

// setHint follows x-ms-dop-hint; a lower hint lowers the limit at once, a higher one lets it grow.
func (t *throttle) setHint(h int) {
	if h <= 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if h == t.hint {
		return
	}
	t.hint = h
	if c := float64(t.ceilingLocked()); t.limit > c {
		t.limit = c
	}
	t.wakeLocked()
}

type throttleSnapshot struct {
	limit, hint, inFlight, peak int
	pausedFor                   time.Duration
}

func (t *throttle) snapshot() throttleSnapshot {
	t.mu.Lock()
	defer t.mu.Unlock()
	return throttleSnapshot{limit: int(t.limit), hint: t.hint, inFlight: t.inFlight, peak: t.peak, pausedFor: t.pausedFor}
}

// maxRetryAfter bounds a server-sent Retry-After so a garbage value cannot park the client forever;
// real values are within the 300 s window.
const maxRetryAfter = 10 * time.Minute

// retryAfter reads Dataverse's Retry-After (integer seconds; decimals from the simulator).
func retryAfter(v string, now time.Time) (time.Duration, bool) {
	return backoff.RetryAfter(v, now, maxRetryAfter)
}
