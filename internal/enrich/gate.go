package enrich

import (
	"context"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"dvbulk/internal/ctxutil"
)

// gate is what every request of one Client passes before it is sent: a slot of the adaptive
// concurrency Limiter, a token from the request-rate limiter, and the end of any pause a
// throttled answer (or an exhausted RateLimit quota) asked for. It is shared by all callers so
// that several chunks enriching at once together stay inside what the service allows.
type gate struct {
	slots      *Limiter
	rate       *rate.Limiter // rate.Inf when neither the RPS setting nor the service sets a pace
	configured float64       // the RPS setting (0: none)

	mu          sync.Mutex
	pausedUntil time.Time
	advertised  float64 // the pace a RateLimit-Policy advertised (0: none seen)
}

func newGate(concurrency int, fixed bool, rps float64) *gate {
	g := &gate{slots: NewLimiter(LimiterConfig{Max: concurrency, Fixed: fixed}), configured: rps,
		rate: rate.NewLimiter(rate.Inf, 1)}
	if rps > 0 {
		g.setRate(rps)
	}
	return g
}

// setRate allows a tenth of a second's worth of burst: lets a few requests go together after
// an idle spell without letting a whole second's quota out at once.
func (g *gate) setRate(rps float64) {
	g.rate.SetLimit(rate.Limit(rps))
	g.rate.SetBurst(max(1, int(math.Ceil(rps/10))))
}

// pace follows the request rate a RateLimit-Policy advertises (quota per window), never faster
// than the RPS setting.
func (g *gate) pace(rps float64) {
	if !(rps > 0) || math.IsInf(rps, 0) {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.advertised == rps {
		return
	}
	g.advertised = rps
	if g.configured > 0 {
		rps = min(rps, g.configured)
	}
	g.setRate(rps)
}

// acquire takes a slot and waits for the rate limiter and any pause. It fails when ctx ends, or
// when ctx's stop (ctxutil.WithStop) closes before the request could go: a request not yet sent
// is never started after the stop, even if a slot happens to be free at the same moment. On
// success the caller must release the ticket. A first request goes ahead of those waiting.
func (g *gate) acquire(ctx context.Context, first bool) (Ticket, error) {
	acquire := g.slots.Acquire
	if first {
		acquire = g.slots.AcquireFirst
	}
	t, err := acquire(ctx)
	if err != nil {
		return t, err
	}
	for {
		if err := ctxutil.SleepOrStop(ctx, g.pauseLeft()); err != nil {
			g.slots.Release(t, Ignore, 0, 0)
			return Ticket{}, err
		}
		r := g.rate.Reserve()
		if err := ctxutil.SleepOrStop(ctx, r.Delay()); err != nil {
			r.Cancel()
			g.slots.Release(t, Ignore, 0, 0)
			return Ticket{}, err
		}
		// Another request may have been throttled while we waited for a token.
		if g.pauseLeft() <= 0 {
			// Both channels may have been ready together above, and select picks at random.
			if ctxutil.Stopped(ctx) {
				g.slots.Release(t, Ignore, 0, 0)
				return Ticket{}, ctxutil.ErrStopped
			}
			return t, nil
		}
	}
}

// release returns the slot with what the request showed about the service's load.
func (g *gate) release(t Ticket, s Signal, latency time.Duration, records int) {
	g.slots.Release(t, s, latency, records)
}

// pause holds every request of the client until d from now (never shortening a pause).
func (g *gate) pause(d time.Duration) {
	until := time.Now().Add(d)
	g.mu.Lock()
	defer g.mu.Unlock()
	if until.After(g.pausedUntil) {
		g.pausedUntil = until
	}
}

func (g *gate) pauseLeft() time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	return time.Until(g.pausedUntil)
}
