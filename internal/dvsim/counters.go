package dvsim

import (
	"sync"
	"sync/atomic"
	"time"
)

type counters struct {
	mu         sync.Mutex
	byKind     map[string]int64
	throttled  map[string]int64
	penalty    map[string]int64 // user -> requests arriving inside a running penalty
	requests   atomic.Int64
	writes     atomic.Int64
	creates    atomic.Int64
	during     atomic.Int64
	errors5xx  atomic.Int64
	dropped    atomic.Int64
	inFlight   atomic.Int64
	execTotal  atomic.Int64
	admitted   atomic.Int64 // requests admitted and not yet done, every user and server
	peakAdmit  atomic.Int64
	writesByID sync.Map // id -> *atomic.Int64
}

func (c *counters) kind(k string, n int64) {
	c.mu.Lock()
	if c.byKind == nil {
		c.byKind = map[string]int64{}
	}
	c.byKind[k] += n
	c.mu.Unlock()
}

func (c *counters) throttle(code string) {
	c.mu.Lock()
	if c.throttled == nil {
		c.throttled = map[string]int64{}
	}
	c.throttled[code]++
	c.mu.Unlock()
}

// intoPenalty counts a request that arrived inside a running penalty of its user on its server.
func (c *counters) intoPenalty(user string) {
	c.mu.Lock()
	if c.penalty == nil {
		c.penalty = map[string]int64{}
	}
	c.penalty[user]++
	c.mu.Unlock()
}

// admit counts a request admitted past the service protection checks until the returned func runs.
func (c *counters) admit() func() {
	n := c.admitted.Add(1)
	for p := c.peakAdmit.Load(); n > p && !c.peakAdmit.CompareAndSwap(p, n); p = c.peakAdmit.Load() {
	}
	return func() { c.admitted.Add(-1) }
}

func (c *counters) wrote(id string) {
	c.writes.Add(1)
	v, _ := c.writesByID.LoadOrStore(id, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
}

// Counters is a snapshot of what the simulator saw.
type Counters struct {
	Requests        int64
	ByKind          map[string]int64
	Writes          int64 // record writes applied
	Creates         int64 // upserts that created a record
	Throttled       map[string]int64
	PeakConcurrency []int // per server, all users
	// PeakAdmitted is the most requests executing at once on all servers together (admitted past
	// the service protection checks, not yet done): a cluster's real concurrency.
	PeakAdmitted             int64
	RequestsPerServer        []int64
	InFlight                 int64
	ExecTime                 time.Duration // server time spent (scaled)
	RequestsDuringRetryAfter int64
	// RequestsIntoPenalty counts requests that arrived at a web server while their user's penalty
	// there was running (as Dataverse applies it: per user per web server, whichever process or
	// session sent them), excluding those that arrived before the 429 that started the penalty had
	// reached its client. IntoPenaltyByUser splits it by user (the bearer token's hash, or
	// "anonymous"). A Faults().Storm is not a user's penalty and counts here not at all.
	RequestsIntoPenalty int64
	IntoPenaltyByUser   map[string]int64
	Errors5xx, Dropped  int64
	writesByID          *sync.Map
}

// WritesByID is how many times a record was written.
func (c Counters) WritesByID(id string) int {
	if c.writesByID == nil {
		return 0
	}
	if v, ok := c.writesByID.Load(id); ok {
		return int(v.(*atomic.Int64).Load())
	}
	return 0
}

// Counters returns a snapshot.
func (s *Sim) Counters() Counters {
	c := &s.c
	out := Counters{Requests: c.requests.Load(), Writes: c.writes.Load(), Creates: c.creates.Load(), InFlight: c.inFlight.Load(),
		ExecTime: time.Duration(c.execTotal.Load()), RequestsDuringRetryAfter: c.during.Load(), PeakAdmitted: c.peakAdmit.Load(),
		Errors5xx: c.errors5xx.Load(), Dropped: c.dropped.Load(), ByKind: map[string]int64{}, Throttled: map[string]int64{}, writesByID: &c.writesByID}
	c.mu.Lock()
	for k, v := range c.byKind {
		out.ByKind[k] = v
	}
	for k, v := range c.throttled {
		out.Throttled[k] = v
	}
	out.IntoPenaltyByUser = map[string]int64{}
	for k, v := range c.penalty {
		out.IntoPenaltyByUser[k] = v
		out.RequestsIntoPenalty += v
	}
	c.mu.Unlock()
	for _, sv := range s.servers {
		sv.mu.Lock()
		out.PeakConcurrency = append(out.PeakConcurrency, sv.peak)
		out.RequestsPerServer = append(out.RequestsPerServer, sv.requests)
		sv.mu.Unlock()
	}
	return out
}

// ResetCounters zeroes the counters (the data and the service protection state stay). Safe while
// requests run; InFlight is live and is not reset.
func (s *Sim) ResetCounters() {
	c := &s.c
	c.mu.Lock()
	c.byKind, c.throttled, c.penalty = nil, nil, nil
	c.mu.Unlock()
	for _, a := range []*atomic.Int64{&c.requests, &c.writes, &c.creates, &c.during, &c.errors5xx, &c.dropped, &c.execTotal} {
		a.Store(0)
	}
	c.writesByID.Clear()
	c.peakAdmit.Store(c.admitted.Load())
	for _, sv := range s.servers {
		sv.mu.Lock()
		sv.peak, sv.requests = sv.inFlight, 0
		sv.mu.Unlock()
	}
}
