package enrich

import (
	"context"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"dvbulk/internal/ctxutil"
)

// gate is what every request of one Client passes before it is sent: a slot among
// Concurrency, a token from the RPS limiter, and the end of any pause a throttled answer
// asked for. It is shared by all callers so that several chunks enriching at once together
// stay inside what the service allows.
type gate struct {
	slots   chan struct{}
	limiter *rate.Limiter // nil: unlimited

	mu          sync.Mutex
	pausedUntil time.Time
}

func newGate(concurrency int, rps float64) *gate {
	g := &gate{slots: make(chan struct{}, concurrency)}
	if rps > 0 {
		// A tenth of a second's worth of burst: lets a few requests go together after an
		// idle spell without letting a whole second's quota out at once.
		burst := max(1, int(math.Ceil(rps/10)))
		g.limiter = rate.NewLimiter(rate.Limit(rps), burst)
	}
	return g
}

// acquire takes a slot and waits for the limiter and any pause. It fails when ctx ends, or when
// ctx's stop (ctxutil.WithStop) closes before the request could go: a request not yet sent is never
// started after the stop, even if a slot happens to be free at the same moment. On success the
// caller must release.
func (g *gate) acquire(ctx context.Context) error {
	if ctxutil.Stopped(ctx) {
		return ctxutil.ErrStopped
	}
	select {
	case g.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-ctxutil.StopChan(ctx):
		return ctxutil.ErrStopped
	}
	for {
		if err := ctxutil.SleepOrStop(ctx, g.pauseLeft()); err != nil {
			g.release()
			return err
		}
		if g.limiter != nil {
			r := g.limiter.Reserve()
			if err := ctxutil.SleepOrStop(ctx, r.Delay()); err != nil {
				r.Cancel()
				g.release()
				return err
			}
		}
		// Another request may have been throttled while we waited for a token.
		if g.pauseLeft() <= 0 {
			// Both channels may have been ready together above, and select picks at random.
			if ctxutil.Stopped(ctx) {
				g.release()
				return ctxutil.ErrStopped
			}
			return nil
		}
	}
}

func (g *gate) release() { <-g.slots }

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
