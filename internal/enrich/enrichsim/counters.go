package enrichsim

import (
	"hash/fnv"
	"strings"
	"sync"
	"sync/atomic"
)

// Counters is a snapshot of what the simulator has seen.
type Counters struct {
	Requests        int64 // every HTTP request that reached the handler
	Answered        int64 // requests answered 200 with well-formed results
	Records         int64 // records in answered requests
	Throttled       int64 // requests answered 429 (concurrency cap or Throttle fault)
	Errors          int64 // injected 5xx answers
	Malformed       int64 // injected malformed 200 answers
	Rejected        int64 // 400, 401 and 405 answers
	InFlight        int64 // requests in the handler now
	PeakConcurrency int64 // most requests in the handler at once, rejected and queued ones included
	// PeakServing is the most requests served at once (past the concurrency cap or the queue,
	// being answered): at most MaxConcurrency.
	PeakServing int64
	Serving     int64 // requests being served now
	Queued      int64 // requests waiting in the queue now (queueing mode)
	DistinctIDs int64 // ids answered at least once
	// DuplicateCalls counts answers for ids that had been answered before (the sum over ids of
	// calls-1): zero means no record was ever looked up twice.
	DuplicateCalls int64
}

const callShards = 64

// callLog counts answers per id. It is sharded so that concurrent requests rarely contend on
// one lock even at several thousand records per second.
type callLog struct {
	shards [callShards]struct {
		mu sync.Mutex
		m  map[string]int32
	}
	distinct   atomic.Int64
	duplicated atomic.Int64
}

func newCallLog() *callLog {
	l := &callLog{}
	for i := range l.shards {
		l.shards[i].m = make(map[string]int32)
	}
	return l
}

func shardOf(id string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(id))
	return int(h.Sum32() % callShards)
}

// add records one answer for each id (ids are already lower-cased).
func (l *callLog) add(ids []string) {
	for _, id := range ids {
		s := &l.shards[shardOf(id)]
		s.mu.Lock()
		n := s.m[id]
		s.m[id] = n + 1
		s.mu.Unlock()
		if n == 0 {
			l.distinct.Add(1)
		} else {
			l.duplicated.Add(1)
		}
	}
}

func (l *callLog) get(id string) int {
	id = strings.ToLower(id)
	s := &l.shards[shardOf(id)]
	s.mu.Lock()
	defer s.mu.Unlock()
	return int(s.m[id])
}

func (l *callLog) reset() {
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		s.m = make(map[string]int32)
		s.mu.Unlock()
	}
	l.distinct.Store(0)
	l.duplicated.Store(0)
}

type counters struct {
	requests, answered, records, throttled, errors, malformed, rejected atomic.Int64
	inFlight, peak, serving, peakServing, queued                        atomic.Int64
}

// serve counts a request into service.
func (c *counters) serve() { raise(&c.peakServing, c.serving.Add(1)) }

// raise lifts peak to n if n is higher.
func raise(peak *atomic.Int64, n int64) {
	for {
		p := peak.Load()
		if n <= p || peak.CompareAndSwap(p, n) {
			return
		}
	}
}

// enter counts a request in and returns how many are in flight, itself included.
func (c *counters) enter() int64 {
	n := c.inFlight.Add(1)
	raise(&c.peak, n)
	return n
}

// Counters returns a snapshot of the simulator's counters.
func (s *Sim) Counters() Counters {
	c := &s.counters
	return Counters{
		Requests:        c.requests.Load(),
		Answered:        c.answered.Load(),
		Records:         c.records.Load(),
		Throttled:       c.throttled.Load(),
		Errors:          c.errors.Load(),
		Malformed:       c.malformed.Load(),
		Rejected:        c.rejected.Load(),
		InFlight:        c.inFlight.Load(),
		PeakConcurrency: c.peak.Load(),
		PeakServing:     c.peakServing.Load(),
		Serving:         c.serving.Load(),
		Queued:          c.queued.Load(),
		DistinctIDs:     s.calls.distinct.Load(),
		DuplicateCalls:  s.calls.duplicated.Load(),
	}
}

// CallsByID reports how many answered requests carried id (case-insensitively). Requests the
// simulator rejected, throttled or failed on purpose do not count: the caller got no answer.
func (s *Sim) CallsByID(id string) int { return s.calls.get(id) }

// ResetCounters zeroes every counter and the per-id call log (not the in-flight gauge).
func (s *Sim) ResetCounters() {
	c := &s.counters
	for _, a := range []*atomic.Int64{&c.requests, &c.answered, &c.records, &c.throttled,
		&c.errors, &c.malformed, &c.rejected} {
		a.Store(0)
	}
	c.peak.Store(c.inFlight.Load())
	c.peakServing.Store(c.serving.Load())
	s.calls.reset()
}
