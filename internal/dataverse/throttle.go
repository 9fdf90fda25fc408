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
	limit       float64 // current adaptive limit, floor <= limit <= ceiling (below 1: paced, see release)
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

	// The cluster's share (Config.Budget): other instances' pauses and how many share the hint.
	budget      Budget
	sharedUntil time.Time
	instances   int
	nextStart   time.Time // with a share below one slot: when the next request may start
	hotUntil    time.Time // a 429 (ours or the cluster's) was seen less than hotFor ago
	lastDone    time.Time // when this instance's latest request finished
	slowStart   bool      // doubling per window of successes until the first decrease
}

// hotFor is how long after a 429 the budget counts as binding: Dataverse's 5-minute window. While
// it binds, a request starts only on a view of the shared state read after this instance's previous
// request finished (see Budget.View), which costs the budget-bound cluster nothing and keeps an
// instance from sending into a penalty another one was told about a moment ago.
const hotFor = 5 * time.Minute

// defaultDOP is what ServiceClient assumes before the server has sent x-ms-dop-hint.
const defaultDOP = 5

func newThrottle(maxConc int, base, max time.Duration, b Budget) *throttle {
	t := &throttle{maxConc: maxConc, hint: defaultDOP, changed: make(chan struct{}), base: base, max: max, budget: b, instances: 1}
	t.limit = t.ceilingLocked()
	if b != nil {
		// Instances that start together do not know of each other until their first heartbeats, so
		// each would start at the whole hint: start at one request and double per window of
		// successes instead ("ramp up gradually until you hit limits"), until the first 429.
		t.limit, t.slowStart = 1, true
		// A cold start is the first moment the budget may bind with nobody warned yet: the first
		// window of the client's life counts as binding too (see hotFor).
		t.hotUntil = time.Now().Add(hotFor)
	}
	return t
}

// ceilingLocked is this instance's share of min(hint, cap) over the live instances. Below one it is
// kept as a fraction: the instance then sends one request at a time and rests between them, so the
// cluster as a whole stays near the hint however many instances run.
func (t *throttle) ceilingLocked() float64 { return shareOf(min(t.hint, t.maxConc), t.instances) }

// floorLocked is the least the limit shrinks to: this instance's share of one request, so the
// cluster as a whole can back off to a single request in flight, as one client can.
func (t *throttle) floorLocked() float64 { return 1 / float64(t.instances) }

// halveLocked halves the limit and starts a new epoch (whole slots while above two, fractions below).
func (t *throttle) halveLocked() {
	half := t.limit / 2
	if half >= 1 {
		half = math.Floor(half)
	}
	t.limit = math.Max(t.floorLocked(), half)
	t.epoch++
	t.slowStart = false
}

// slotsLocked is how many requests may be in flight at once under the limit.
func (t *throttle) slotsLocked() int { return max(1, int(t.limit)) }

// observe takes in the cluster's view (from memory in steady state; see Budget).
func (t *throttle) observe(ctx context.Context, fresh bool) {
	if t.budget == nil {
		return
	}
	var after time.Time
	if fresh {
		t.mu.Lock()
		if time.Now().Before(t.hotUntil) {
			after = t.lastDone
		}
		t.mu.Unlock()
	}
	until, n := t.budget.View(ctx, after)
	t.mu.Lock()
	defer t.mu.Unlock()
	// A new pause another instance was told about is this cluster's 429 too: back off as if it
	// were ours (once per pause), so the cluster's limit halves like one client's.
	if now := time.Now(); until.After(t.sharedUntil) && until.After(now) {
		t.hotUntil = now.Add(hotFor)
		if !t.pausedUntil.After(now) {
			t.halveLocked()
		}
	}
	t.sharedUntil = until
	if n = max(1, n); n != t.instances {
		t.instances = n
		t.limit = math.Max(t.floorLocked(), math.Min(t.limit, t.ceilingLocked()))
		t.wakeLocked()
	}
}

// gateLocked is when the next request may start: the later of this instance's pause, the
// cluster's, and (with a fractional share) the pacing.
func (t *throttle) gateLocked() time.Time {
	g := t.pausedUntil
	for _, u := range []time.Time{t.sharedUntil, t.nextStart} {
		if u.After(g) {
			g = u
		}
	}
	return g
}

// wakeLocked lets every waiter re-check; the waiter population is small (bounded by callers).
func (t *throttle) wakeLocked() {
	close(t.changed)
	t.changed = make(chan struct{})
}

// slot is one admitted request; epoch ties a 429 to the limit it was admitted under.
type slot struct {
	epoch uint64
	start time.Time
}

// acquire waits until the gate is open and a slot under the current limit is free.
func (t *throttle) acquire(ctx context.Context) (slot, error) {
	for {
		t.observe(ctx, true)
		t.mu.Lock()
		wait := time.Until(t.gateLocked())
		if wait <= 0 && t.inFlight < t.slotsLocked() {
			t.inFlight++
			t.peak = max(t.peak, t.inFlight)
			s := slot{epoch: t.epoch, start: time.Now()}
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
// the same limit shrinks it only once. Under a limit below one the next request waits so that this
// instance's average concurrency is the limit: a request that took d is followed by a rest of
// d·(1/limit − 1).
func (t *throttle) release(s slot, o outcome) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.inFlight--
	t.lastDone = time.Now()
	switch o {
	case succeeded:
		t.streak = 0
		// +1/limit per success for one instance; with n sharing the hint each instance sees 1/n of
		// the cluster's successes and grows by 1/(n·limit), so the cluster's limit grows by about
		// one per window of successes, as one client's does.
		inc := 1 / (float64(t.instances) * t.limit)
		if t.slowStart {
			inc = 1 // every success adds one: the limit doubles per window
		}
		t.limit = math.Min(t.limit+inc, t.ceilingLocked())
	case throttled:
		t.decreaseLocked(s.epoch)
	}
	if t.limit < 1 && !s.start.IsZero() {
		now := time.Now()
		t.nextStart = now.Add(time.Duration(float64(now.Sub(s.start)) * (1/t.limit - 1)))
	}
	t.wakeLocked()
}

// decreaseLocked halves the limit for a 429 from a request admitted under epoch, once per epoch.
func (t *throttle) decreaseLocked(epoch uint64) {
	if epoch == t.epoch {
		t.halveLocked()
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
	d, extended := t.pauseLocked(d)
	if extended && t.budget != nil {
		t.budget.Throttled(t.pausedUntil)
	}
	return d
}

func (t *throttle) pauseLocked(d time.Duration) (time.Duration, bool) {
	t.streak++
	t.hotUntil = time.Now().Add(hotFor)
	if d < 0 {
		d = backoff.Ceiling(t.base, t.max, t.streak-1)
	}
	now := time.Now()
	end := now.Add(d)
	extended := end.After(t.pausedUntil)
	if extended {
		from := now
		if t.pausedUntil.After(now) {
			from = t.pausedUntil
		}
		t.pausedFor += end.Sub(from)
		t.pausedUntil = end
	}
	t.wakeLocked()
	return d, extended
}

// remaining is how long the gate stays closed, for this instance's pause or the cluster's (the
// pacing of a fractional share is acquire's business, not the gate's).
func (t *throttle) remaining(ctx context.Context) time.Duration {
	t.observe(ctx, false)
	t.mu.Lock()
	defer t.mu.Unlock()
	g := t.pausedUntil
	if t.sharedUntil.After(g) {
		g = t.sharedUntil
	}
	return time.Until(g)
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
	if c := t.ceilingLocked(); t.limit > c {
		t.limit = c
	}
	t.wakeLocked()
}

type throttleSnapshot struct {
	limit, hint, inFlight, peak, instances int
	share                                  float64
	pausedFor                              time.Duration
}

func (t *throttle) snapshot() throttleSnapshot {
	t.mu.Lock()
	defer t.mu.Unlock()
	return throttleSnapshot{limit: t.slotsLocked(), hint: t.hint, inFlight: t.inFlight, peak: t.peak, pausedFor: t.pausedFor,
		instances: t.instances, share: t.limit}
}

// maxRetryAfter bounds a server-sent Retry-After so a garbage value cannot park the client forever;
// real values are within the 300 s window.
const maxRetryAfter = 10 * time.Minute

// retryAfter reads Dataverse's Retry-After (integer seconds; decimals from the simulator).
func retryAfter(v string, now time.Time) (time.Duration, bool) {
	return backoff.RetryAfter(v, now, maxRetryAfter)
}
