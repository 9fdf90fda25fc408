package enrich

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"dvbulk/internal/ctxutil"
)

// model is a service in round trips: every client fills its limit, then every request is
// answered with a latency of base × max(1, load/capacity) (requests above the capacity queue)
// and requests beyond capacity+queue are throttled. It is a fluid approximation of enrichsim's
// queueing mode that runs without clocks, so the tests assert behaviour, not timing.
type model struct {
	capacity, queue int
	base            time.Duration
	throttled       int // in the last round
}

func (m *model) round(t *testing.T, ls ...*Limiter) {
	t.Helper()
	var tickets [][]Ticket
	load := 0
	for _, l := range ls {
		var ts []Ticket
		for range l.Limit() {
			tk, err := l.Acquire(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			ts = append(ts, tk)
		}
		tickets = append(tickets, ts)
		load += len(ts)
	}
	latency := m.base
	if load > m.capacity {
		latency = time.Duration(float64(m.base) * float64(min(load, m.capacity+m.queue)) / float64(m.capacity))
	}
	m.throttled = 0
	// Answers interleave between the clients, and the requests beyond capacity+queue (the last
	// ones sent) are the ones refused.
	admitted := 0
	for i := 0; ; i++ {
		more := false
		for c, ts := range tickets {
			if i >= len(ts) {
				continue
			}
			more = true
			admitted++
			if admitted > m.capacity+m.queue {
				m.throttled++
				ls[c].Release(ts[i], Throttled, latency, 10)
			} else {
				ls[c].Release(ts[i], Answered, latency, 10)
			}
		}
		if !more {
			break
		}
	}
}

func TestLimiterGrowsToCapacity(t *testing.T) {
	for _, capacity := range []int{16, 40, 100} {
		m := &model{capacity: capacity, queue: capacity, base: 200 * time.Millisecond}
		l := NewLimiter(LimiterConfig{Max: 256})
		throttled, used, peak := 0, 0.0, 0
		for i := range 300 {
			m.round(t, l)
			if i >= 100 {
				throttled += m.throttled
				used += float64(min(l.Limit(), capacity)) / float64(capacity)
				peak = max(peak, l.Limit())
			}
		}
		if used /= 200; used < 0.9 {
			t.Errorf("capacity %d: %.0f%% of it used on average, want ≥ 90%%", capacity, 100*used)
		}
		if peak > 2*capacity {
			t.Errorf("capacity %d: limit reached %d, over the capacity plus its queue", capacity, peak)
		}
		if throttled > 0 {
			t.Errorf("capacity %d: %d requests throttled in the last 200 round trips", capacity, throttled)
		}
	}
}

func TestLimiterStartsLowAndGrowsByHalfPerRoundTrip(t *testing.T) {
	m := &model{capacity: 1000, queue: 0, base: 100 * time.Millisecond}
	l := NewLimiter(LimiterConfig{Max: 64})
	want := []int{8, 12, 18, 27, 40, 60, 64, 64}
	for i, w := range want {
		if got := l.Limit(); got != w {
			t.Fatalf("round %d: limit %d, want %d", i, got, w)
		}
		m.round(t, l)
	}
}

func TestLimiterBacksOffOn429(t *testing.T) {
	l := NewLimiter(LimiterConfig{Max: 64, Initial: 40})
	a, _ := l.Acquire(context.Background())
	b, _ := l.Acquire(context.Background())
	l.Release(a, Throttled, 0, 10)
	if got := l.Limit(); got != 20 {
		t.Fatalf("after a 429: limit %d, want 20", got)
	}
	// b was sent before the cut: its 429 describes the same overload and must not cut again.
	l.Release(b, Throttled, 0, 10)
	if got := l.Limit(); got != 20 {
		t.Fatalf("after a second 429 from before the cut: limit %d, want 20", got)
	}
	c, _ := l.Acquire(context.Background())
	l.Release(c, Throttled, 0, 10)
	if got := l.Limit(); got != 10 {
		t.Fatalf("after a 429 sent after the cut: limit %d, want 10", got)
	}
	for range 10 {
		d, _ := l.Acquire(context.Background())
		l.Release(d, Throttled, 0, 10)
	}
	if got := l.Limit(); got != 1 {
		t.Errorf("after a 429 storm: limit %d, want the floor 1", got)
	}
}

func TestLimiterBacksOffOnLatencyStep(t *testing.T) {
	m := &model{capacity: 1000, base: 100 * time.Millisecond}
	l := NewLimiter(LimiterConfig{Max: 32})
	for range 20 {
		m.round(t, l)
	}
	if got := l.Limit(); got != 32 {
		t.Fatalf("before the step: limit %d, want the ceiling 32", got)
	}
	m.base = 250 * time.Millisecond // the service got slower: requests queue
	for range 3 {
		m.round(t, l)
	}
	if got := l.Limit(); got >= 32 || l.Cuts() == 0 {
		t.Errorf("after a latency step ×2.5: limit %d (%d cuts), want it cut below 32", got, l.Cuts())
	}
	// The service is slower for good, not queueing: the base is re-measured and the limit grows back.
	for range 30 {
		m.round(t, l)
	}
	if got := l.Limit(); got != 32 || l.Cuts() > stuckCuts {
		t.Errorf("30 round trips after the step: limit %d after %d cuts, want 32 again after at most %d", got, l.Cuts(), stuckCuts)
	}
	// Other request sizes have their own base latency: slower larger requests are no signal.
	l2 := NewLimiter(LimiterConfig{Max: 8, Initial: 8})
	for i := range 200 {
		tk, _ := l2.Acquire(context.Background())
		n, lat := 1, 100*time.Millisecond
		if i%2 == 1 {
			n, lat = 50, 300*time.Millisecond
		}
		l2.Release(tk, Answered, lat, n)
	}
	if l2.Cuts() != 0 {
		t.Errorf("mixed request sizes at steady latencies: %d cuts, want 0", l2.Cuts())
	}
}

func TestLimiterFairBetweenTwoClients(t *testing.T) {
	const capacity = 60
	m := &model{capacity: capacity, queue: capacity, base: 200 * time.Millisecond}
	a := NewLimiter(LimiterConfig{Max: 256})
	b := NewLimiter(LimiterConfig{Max: 256})
	for range 50 { // a alone takes the whole service
		m.round(t, a)
	}
	if a.Limit() < capacity {
		t.Fatalf("a alone: limit %d, want at least %d", a.Limit(), capacity)
	}
	throttled, minSum := 0, 1<<30
	var la, lb float64
	for i := range 400 {
		m.round(t, a, b)
		if i >= 200 {
			throttled += m.throttled
			la, lb = la+float64(a.Limit()), lb+float64(b.Limit())
			minSum = min(minSum, a.Limit()+b.Limit())
		}
	}
	la, lb = la/200, lb/200
	if r := la / lb; r < 0.8 || r > 1.25 {
		t.Errorf("average limits a %.1f, b %.1f: not fair shares (ratio %.2f)", la, lb, r)
	}
	if minSum < capacity*9/10 {
		t.Errorf("together the clients fell to %d, well under the capacity %d", minSum, capacity)
	}
	if throttled > 0 {
		t.Errorf("%d requests throttled once the shares had settled", throttled)
	}
}

func TestLimiterNeverExceedsCeiling(t *testing.T) {
	l := NewLimiter(LimiterConfig{Max: 10})
	var inFlight, peak atomic.Int64
	var wg sync.WaitGroup
	for range 40 {
		wg.Go(func() {
			for range 200 {
				tk, err := l.Acquire(context.Background())
				if err != nil {
					t.Error(err)
					return
				}
				n := inFlight.Add(1)
				for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
				}
				time.Sleep(50 * time.Microsecond) // hold the slot a moment so that requests overlap
				inFlight.Add(-1)
				l.Release(tk, Answered, time.Millisecond, 1) // fast and unthrottled: only the ceiling holds it
			}
		})
	}
	wg.Wait()
	if p := peak.Load(); p > 10 || l.Limit() != 10 || l.InFlight() != 0 {
		t.Errorf("peak in flight %d, limit %d, in flight now %d; want ≤ 10, 10, 0", p, l.Limit(), l.InFlight())
	}
}

func TestLimiterFixed(t *testing.T) {
	l := NewLimiter(LimiterConfig{Max: 12, Fixed: true})
	for range 5 {
		tk, _ := l.Acquire(context.Background())
		l.Release(tk, Throttled, time.Second, 1)
	}
	if l.Limit() != 12 || l.Cuts() != 0 {
		t.Errorf("fixed limiter moved: limit %d, %d cuts", l.Limit(), l.Cuts())
	}
}

// TestLimiterWaitersStopAndCancel: a waiter leaves on ctx's end or stop without taking a slot,
// and a slot freed later goes to the next waiter.
func TestLimiterWaitersStopAndCancel(t *testing.T) {
	l := NewLimiter(LimiterConfig{Max: 1, Fixed: true})
	held, _ := l.Acquire(context.Background())

	ctx, cancel := context.WithCancel(context.Background())
	stopCh := make(chan struct{})
	sctx := ctxutil.WithStop(context.Background(), stopCh)
	stop := func() { close(stopCh) }
	errs := make(chan error, 2)
	go func() { _, err := l.Acquire(ctx); errs <- err }()
	go func() { _, err := l.Acquire(sctx); errs <- err }()
	waitFor(t, func() bool { l.mu.Lock(); defer l.mu.Unlock(); return l.waiters.Len() == 2 })
	cancel()
	stop()
	for range 2 {
		if err := <-errs; err != context.Canceled && err != ctxutil.ErrStopped {
			t.Errorf("waiter ended with %v", err)
		}
	}
	got := make(chan Ticket, 1)
	go func() { tk, _ := l.Acquire(context.Background()); got <- tk }()
	waitFor(t, func() bool { l.mu.Lock(); defer l.mu.Unlock(); return l.waiters.Len() == 1 })
	l.Release(held, Ignore, 0, 0)
	select {
	case tk := <-got:
		l.Release(tk, Ignore, 0, 0)
	case <-time.After(10 * time.Second):
		t.Fatal("the freed slot never reached the waiter")
	}
	if l.InFlight() != 0 {
		t.Errorf("in flight %d after every release", l.InFlight())
	}
	if _, err := l.Acquire(sctx); err != ctxutil.ErrStopped {
		t.Errorf("acquire after the stop: %v, want ErrStopped even with a free slot", err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestLimiterAcquireFirst: a probe queues ahead of requests already waiting.
func TestLimiterAcquireFirst(t *testing.T) {
	l := NewLimiter(LimiterConfig{Max: 1, Fixed: true})
	held, _ := l.Acquire(context.Background())
	order := make(chan string, 2)
	go func() { tk, _ := l.Acquire(context.Background()); order <- "normal"; l.Release(tk, Ignore, 0, 0) }()
	waitFor(t, func() bool { l.mu.Lock(); defer l.mu.Unlock(); return l.waiters.Len() == 1 })
	go func() { tk, _ := l.AcquireFirst(context.Background()); order <- "first"; l.Release(tk, Ignore, 0, 0) }()
	waitFor(t, func() bool { l.mu.Lock(); defer l.mu.Unlock(); return l.waiters.Len() == 2 })
	l.Release(held, Ignore, 0, 0)
	if a, b := <-order, <-order; a != "first" || b != "normal" {
		t.Errorf("granted %s then %s, want first then normal", a, b)
	}
}
