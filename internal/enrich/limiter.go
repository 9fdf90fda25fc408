package enrich

import (
	"container/list"
	"context"
	"math"
	"sync"
	"time"

	"dvbulk/internal/ctxutil"
)

// Limiter bounds the requests one Client has in flight and, unless it is fixed, adapts that
// bound to what the service can take: AIMD (additive increase, multiplicative decrease) driven
// by two congestion signals, a throttled answer (429/503) and a rising latency.
//
// Why AIMD with a latency signal rather than Netflix's Gradient2: several instances share one
// service and none of them knows the others. AIMD is the scheme proven to converge to fair
// shares when every client sees the same congestion signal (Chiu & Jain; it is what TCP does),
// whereas Gradient2 scales each limit by its own long/short RTT ratio and adds a queue
// allowance per client, so N clients together keep N allowances queued and their shares
// drift. The latency signal is TCP Vegas' (and concurrency-limits' VegasLimit's) idea: a
// request that takes longer than the smallest latency seen for its size is queueing behind
// others, so back off a little before the service has to refuse anything; that keeps 429s,
// each of which pauses the whole client for its Retry-After, rare.
//
//   - Slow start: from Initial, +1/2 per fast answer (the limit grows by half every round trip)
//     until the first congestion signal, then +1/limit per fast answer (+1 per round trip).
//   - Growth only while the limit is used (at least half of it in flight when the request was
//     sent): an idle client learns nothing about the service's capacity.
//   - Latency: the smoothed ratio of latency to the base latency (the smallest seen, kept per
//     request size so that a shrinking batch is not mistaken for a recovering service) above 1.2 ends slow start and above 1.5 cuts the limit to 0.6 of it:
//     from about 1.5× what the service serves at once to under it, so that the queue drains and
//     the base latency is seen again after the cut (a gentler cut would leave every answer
//     queued, and a client that joined a loaded service would never see the true base). When
//     three cuts in a row bring not one fast answer back, the service itself got slower: the
//     base is raised to what it now does.
//     There is deliberately no "hold" band (as Vegas has): a client sitting still inside it
//     would keep a newcomer, who sees the same queueing, from ever growing to its share.
//   - 429/503 halves the limit.
//   - At most one cut per round trip: answers to requests sent before the last cut do not cut
//     again (they describe the load before it).
//
// Acquire hands out slots first come, first served. A fixed Limiter never changes its limit.
type Limiter struct {
	mu       sync.Mutex
	limit    float64
	ssthresh float64
	min, max float64
	fixed    bool

	inFlight int
	waiters  list.List // of *waiter, oldest first
	seq      uint64    // tickets issued
	lastCut  uint64    // seq when the limit was last cut

	base     map[int]time.Duration // base latency by records per request
	smoothed float64               // EWMA of latency/base; 0 until the first sample
	settle   int                   // answers to requests sent after a cut before the next latency cut
	fresh    int                   // answers to requests sent after the last cut
	freshMin float64               // their smallest latency ratio
	stuck    int                   // latency cuts in a row after which no answer came back fast
	cuts     int64
}

// LimiterConfig shapes a Limiter.
type LimiterConfig struct {
	Max     int  // ceiling (required, > 0)
	Initial int  // starting limit (default min(Max, 8)); ignored when Fixed
	Fixed   bool // always Max, never adapted
}

// Signal is what an answered (or failed) request tells the Limiter.
type Signal int

const (
	// Ignore: says nothing about the service's load (a 4xx, a canceled call, a network error).
	Ignore Signal = iota
	// Answered: the service answered; its latency counts.
	Answered
	// Throttled: the service refused for load (429, 503).
	Throttled
)

// Ticket is a granted slot; pass it back to Release.
type Ticket struct {
	seq      uint64
	inFlight int     // requests in flight when this one was granted, itself included
	limit    float64 // the limit then
}

const (
	latencySlow  = 1.2  // smoothed latency ratio above which slow start ends
	latencyCut   = 1.5  // ... and above which the limit is cut
	latencyBeta  = 0.6  // the cut for latency: from 1.5× the capacity to under it, so the queue drains
	throttleBeta = 0.5  // the cut for a 429/503
	smoothing    = 0.05 // weight of a new latency sample
	stuckCuts    = 3    // latency cuts in a row without one fast answer before the base is raised
	// slowStartStep per fast answer grows the limit by half per round trip. Queueing shows in
	// answers only a round trip after it starts, so the load can grow by this factor before slow
	// start sees it end (at latencySlow): 1.2 × 1.5 stays under a queue as deep as the capacity,
	// where doubling (TCP's +1) overshot into 429s, each of which holds the whole client.
	slowStartStep = 0.5
	initialLimit  = 8 // the fixed default before the limit adapted
)

// NewLimiter returns a Limiter; cfg.Max below 1 counts as 1.
func NewLimiter(cfg LimiterConfig) *Limiter {
	m := float64(max(cfg.Max, 1))
	l := &Limiter{max: m, min: 1, fixed: cfg.Fixed, ssthresh: m, base: map[int]time.Duration{}, settle: 8, freshMin: math.Inf(1)}
	switch {
	case cfg.Fixed:
		l.limit = m
	case cfg.Initial > 0:
		l.limit = min(float64(cfg.Initial), m)
	default:
		l.limit = min(initialLimit, m)
	}
	return l
}

type waiter struct {
	ready  chan struct{}
	ticket Ticket
}

// Acquire waits for a slot. It fails when ctx ends or ctx's stop (ctxutil.WithStop) closes
// first; a stop wins over a slot that frees at the same moment.
func (l *Limiter) Acquire(ctx context.Context) (Ticket, error) { return l.acquire(ctx, false) }

// AcquireFirst is Acquire ahead of every waiter: for the few requests others depend on (a
// probe of the records per request).
func (l *Limiter) AcquireFirst(ctx context.Context) (Ticket, error) { return l.acquire(ctx, true) }

func (l *Limiter) acquire(ctx context.Context, first bool) (Ticket, error) {
	if ctxutil.Stopped(ctx) {
		return Ticket{}, ctxutil.ErrStopped
	}
	if err := ctx.Err(); err != nil {
		return Ticket{}, err
	}
	l.mu.Lock()
	if l.waiters.Len() == 0 && l.inFlight < l.current() {
		t := l.grant()
		l.mu.Unlock()
		return t, nil
	}
	w := &waiter{ready: make(chan struct{})}
	var elem *list.Element
	if first {
		elem = l.waiters.PushFront(w)
	} else {
		elem = l.waiters.PushBack(w)
	}
	l.mu.Unlock()

	var err error
	select {
	case <-w.ready:
		if !ctxutil.Stopped(ctx) {
			return w.ticket, nil
		}
		err = ctxutil.ErrStopped
	case <-ctx.Done():
		err = ctx.Err()
	case <-ctxutil.StopChan(ctx):
		err = ctxutil.ErrStopped
	}
	l.mu.Lock()
	select {
	case <-w.ready: // granted meanwhile: give the slot back
		l.inFlight--
		l.wake()
	default:
		l.waiters.Remove(elem)
	}
	l.mu.Unlock()
	return Ticket{}, err
}

// Release returns t's slot and feeds what the request showed into the limit: its signal, its
// latency and how many records it carried (latencies are compared per request size).
func (l *Limiter) Release(t Ticket, s Signal, latency time.Duration, records int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.inFlight--
	if !l.fixed {
		l.update(t, s, latency, records)
	}
	l.wake()
}

// Limit is the current limit.
func (l *Limiter) Limit() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.current()
}

// InFlight is how many slots are taken.
func (l *Limiter) InFlight() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.inFlight
}

// Cuts counts how often the limit was cut (throttling or latency).
func (l *Limiter) Cuts() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cuts
}

func (l *Limiter) current() int { return int(max(l.min, min(l.limit, l.max))) }

func (l *Limiter) grant() Ticket {
	l.inFlight++
	l.seq++
	return Ticket{seq: l.seq, inFlight: l.inFlight, limit: l.limit}
}

// wake grants free slots to the oldest waiters.
func (l *Limiter) wake() {
	for l.waiters.Len() > 0 && l.inFlight < l.current() {
		w := l.waiters.Remove(l.waiters.Front()).(*waiter)
		w.ticket = l.grant()
		close(w.ready)
	}
}

func (l *Limiter) update(t Ticket, s Signal, latency time.Duration, records int) {
	switch s {
	case Throttled:
		l.cut(t, throttleBeta)
	case Answered:
		ratio := l.ratio(latency, records)
		if l.smoothed == 0 {
			l.smoothed = ratio
		} else {
			l.smoothed += smoothing * (ratio - l.smoothed)
		}
		if t.seq > l.lastCut {
			l.fresh++
			l.freshMin = min(l.freshMin, ratio)
		}
		// A latency cut waits for a round trip of answers to requests sent after the previous
		// cut: until then a high ratio may be the old queue draining.
		if l.smoothed > latencyCut && l.fresh >= l.settle {
			if l.freshMin <= latencyCut {
				l.stuck = 0 // a fast answer came back: our cuts work
			} else if l.stuck++; l.stuck >= stuckCuts {
				l.rebase(l.freshMin)
				return
			}
			l.cut(t, latencyBeta)
			return
		}
		if l.smoothed > latencySlow && l.limit < l.ssthresh {
			l.ssthresh = l.limit // queueing has begun: stop doubling, keep growing slowly
		}
		switch {
		case float64(max(t.inFlight, l.inFlight+1)) < t.limit/2: // not using what it had
		case l.limit < l.ssthresh:
			l.limit = min(l.limit+slowStartStep, l.max)
		default:
			l.limit = min(l.limit+1/l.limit, l.max)
		}
	}
}

// cut lowers the limit by beta, once per round trip.
func (l *Limiter) cut(t Ticket, beta float64) {
	if t.seq <= l.lastCut {
		return
	}
	l.limit = max(l.min, l.limit*beta)
	l.ssthresh = l.limit
	l.lastCut = l.seq
	l.settle = max(4, int(l.limit))
	l.fresh, l.freshMin, l.smoothed = 0, math.Inf(1), 0
	l.cuts++
}

// rebase accepts that the service itself got slower by factor f: cut after cut, not one answer
// came back fast, so the latency is not (only) our queue.
func (l *Limiter) rebase(f float64) {
	for k, b := range l.base {
		l.base[k] = time.Duration(float64(b) * f)
	}
	l.smoothed /= f
	l.stuck, l.fresh, l.freshMin = 0, 0, math.Inf(1)
}

// ratio is latency over the base latency of requests of this size: the smallest seen (it only
// falls, except by rebase). A cut drains the queue, so the base is seen again after every cut;
// a base that followed recent samples up instead (a sliding minimum) would follow a slowly
// growing queue and never see it, or take another client's queue for the service's speed.
func (l *Limiter) ratio(latency time.Duration, records int) float64 {
	if latency <= 0 {
		return 1
	}
	b := l.base[records]
	if b == 0 || latency < b {
		b = latency
		l.base[records] = b
	}
	return float64(latency) / float64(b)
}
