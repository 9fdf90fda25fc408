package enrich

import (
	"context"
	"sync"

	"dvbulk/internal/ctxutil"
)

// sizer learns how many records per request the service takes, below the BatchSize ceiling,
// and keeps it for the life of the Client (the process).
//
// The only evidence it trusts is a split: a request refused with 400/413 whose two halves were
// then both answered. A refused request with a bad record in it splits into one half answered
// and one refused, which says nothing about size; so a bad record never shrinks the batch.
// The limit L lies between the largest size answered (ok) and the smallest size proven too
// large (tooBig); sizes in between are probed, halfway each time, so a limit of 10 under a
// ceiling of 50 is found exactly after a few requests, each probe that misses costing one split.
//
// A size not yet answered is probed by one request at a time (take): otherwise every request
// sent before the first answer would be refused and split on its own.
type sizer struct {
	probing chan struct{} // holds a token while a request of an unproven size is out

	mu      sync.Mutex
	ceiling int
	ok      int // largest size answered (0: none yet)
	tooBig  int // smallest size proven too large (0: none)
}

func newSizer(ceiling int) *sizer {
	return &sizer{ceiling: max(ceiling, 1), probing: make(chan struct{}, 1)}
}

// take returns the records the next request should carry, and whether it is the probe of a size
// not yet answered; the caller of a probe must unprobe when its request (and any split) is done.
// While a probe is out, other requests carry the largest size already answered; only when none
// is known yet does take wait for the probe, since any size might then be refused.
func (s *sizer) take(ctx context.Context) (n int, probe bool, err error) {
	for {
		s.mu.Lock()
		n, ok := s.sizeLocked(), s.ok
		s.mu.Unlock()
		if n <= ok {
			return n, false, nil
		}
		select {
		case s.probing <- struct{}{}:
			return s.size(), true, nil
		default:
		}
		if ok > 0 {
			return ok, false, nil
		}
		select {
		case s.probing <- struct{}{}: // the probe is done: look again
			<-s.probing
		case <-ctx.Done():
			return 0, false, ctx.Err()
		case <-ctxutil.StopChan(ctx):
			return 0, false, ctxutil.ErrStopped
		}
	}
}

func (s *sizer) unprobe() { <-s.probing }

// size is the size to try next: the ceiling, or between the largest size answered and the
// smallest proven too large.
func (s *sizer) size() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sizeLocked()
}

// usable is the size most requests carry: the largest answered, or the size to try while none is.
func (s *sizer) usable() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ok > 0 {
		return min(s.ok, s.sizeLocked())
	}
	return s.sizeLocked()
}

func (s *sizer) sizeLocked() int {
	if s.tooBig == 0 {
		return s.ceiling
	}
	lo, hi := max(s.ok, 1), s.tooBig-1
	if lo >= hi {
		return max(hi, 1)
	}
	return lo + (hi-lo+1)/2
}

// answered records that a request of n records was answered.
func (s *sizer) answered(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ok = max(s.ok, n)
	if s.tooBig != 0 && s.tooBig <= s.ok {
		s.tooBig = 0 // contradicted (the service's limit rose, or a refusal was something else)
	}
}

// split records that a refused request of n records was answered in two halves.
func (s *sizer) split(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n > s.ok && (s.tooBig == 0 || n < s.tooBig) {
		s.tooBig = n
	}
}
