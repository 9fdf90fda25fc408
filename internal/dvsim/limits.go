package dvsim

import (
	"fmt"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The three service protection errors (reference §1.1).
const (
	CodeRequests    = "0x80072322"
	CodeExecTime    = "0x80072321"
	CodeConcurrency = "0x80072326"
)

type server struct {
	idx      int
	mu       sync.Mutex
	users    map[string]*userState
	inFlight int
	peak     int
	requests int64
}

// userState is one user's standing on one web server.
type userState struct {
	inFlight     int
	reqTimes     []time.Time // accepted requests in the window, oldest first
	execs        []execEntry // completed requests' server time, oldest first
	execSum      time.Duration
	penaltyUntil time.Time
	penalty      time.Duration
	penaltyCode  string
	penaltyMsg   string
}

type execEntry struct {
	at time.Time
	d  time.Duration
}

// block is a Retry-After window delivered to a user, for the RequestsDuringRetryAfter counter.
type block struct {
	mu          sync.Mutex
	from, until time.Time
}

type counters struct {
	mu         sync.Mutex
	byKind     map[string]int64
	throttled  map[string]int64
	requests   atomic.Int64
	writes     atomic.Int64
	creates    atomic.Int64
	during     atomic.Int64
	errors5xx  atomic.Int64
	dropped    atomic.Int64
	inFlight   atomic.Int64
	execTotal  atomic.Int64
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

func (c *counters) wrote(id string) {
	c.writes.Add(1)
	v, _ := c.writesByID.LoadOrStore(id, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
}

// Counters is a snapshot of what the simulator saw.
type Counters struct {
	Requests                 int64
	ByKind                   map[string]int64
	Writes                   int64 // record writes applied
	Creates                  int64 // upserts that created a record
	Throttled                map[string]int64
	PeakConcurrency          []int // per server, all users
	RequestsPerServer        []int64
	InFlight                 int64
	ExecTime                 time.Duration // server time spent (scaled)
	RequestsDuringRetryAfter int64
	Errors5xx, Dropped       int64
	writesByID               *sync.Map
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
		ExecTime: time.Duration(c.execTotal.Load()), RequestsDuringRetryAfter: c.during.Load(),
		Errors5xx: c.errors5xx.Load(), Dropped: c.dropped.Load(), ByKind: map[string]int64{}, Throttled: map[string]int64{}, writesByID: &c.writesByID}
	c.mu.Lock()
	for k, v := range c.byKind {
		out.ByKind[k] = v
	}
	for k, v := range c.throttled {
		out.Throttled[k] = v
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

// ResetCounters zeroes the counters (the data stays).
func (s *Sim) ResetCounters() {
	s.c = counters{}
	for _, sv := range s.servers {
		sv.mu.Lock()
		sv.peak, sv.requests = 0, 0
		sv.mu.Unlock()
	}
}

// throttled is a 429 decision.
type throttled struct {
	code  string
	msg   string
	after time.Duration // real (scaled) time
}

// admit applies the service protection limits to a request arriving now. On success the request
// counts as in flight until done is called with its server time.
func (s *Sim) admit(sv *server, user string, now time.Time) (*throttled, func(exec time.Duration)) {
	l := s.cfg.Limits
	window := s.scale(l.Window)
	execLimit := s.scale(l.ExecTime)
	sv.mu.Lock()
	defer sv.mu.Unlock()
	sv.requests++
	u := sv.users[user]
	if u == nil {
		u = &userState{}
		sv.users[user] = u
	}
	u.prune(now, window)
	// A user that keeps sending during its penalty makes it longer (reference §1.2).
	if now.Before(u.penaltyUntil) {
		u.penalty = min(2*u.penalty, window)
		u.penaltyUntil = now.Add(u.penalty)
		return &throttled{code: u.penaltyCode, msg: u.penaltyMsg, after: u.penalty}, nil
	}
	if u.inFlight >= l.Concurrency {
		return &throttled{code: CodeConcurrency, msg: fmt.Sprintf("Number of concurrent requests exceeded the limit of %d.", l.Concurrency), after: s.scale(time.Second)}, nil
	}
	if len(u.reqTimes) >= l.Requests {
		wait := u.reqTimes[len(u.reqTimes)-l.Requests].Add(window).Sub(now)
		return s.penalize(u, now, CodeRequests, s.msgRequests(), wait), nil
	}
	if u.execSum >= execLimit {
		// Wait until enough of the window's execution time has aged out to fall under the limit.
		over, wait := u.execSum-execLimit, time.Duration(0)
		for _, e := range u.execs {
			wait = e.at.Add(window).Sub(now)
			if over -= e.d; over < 0 {
				break
			}
		}
		return s.penalize(u, now, CodeExecTime, fmt.Sprintf("Combined execution time of incoming requests exceeded limit of %d milliseconds over time window of %d seconds. Decrease number of concurrent requests or reduce the duration of requests and try again later.", l.ExecTime.Milliseconds(), int(l.Window.Seconds())), wait), nil
	}
	u.inFlight++
	u.reqTimes = append(u.reqTimes, now)
	sv.inFlight++
	sv.peak = max(sv.peak, sv.inFlight)
	return nil, func(exec time.Duration) {
		sv.mu.Lock()
		defer sv.mu.Unlock()
		u.inFlight--
		sv.inFlight--
		u.execs = append(u.execs, execEntry{at: time.Now(), d: exec})
		u.execSum += exec
	}
}

func (s *Sim) penalize(u *userState, now time.Time, code, msg string, wait time.Duration) *throttled {
	wait = max(wait, s.scale(time.Second))
	u.penalty, u.penaltyUntil, u.penaltyCode, u.penaltyMsg = wait, now.Add(wait), code, msg
	return &throttled{code: code, msg: msg, after: wait}
}

func (s *Sim) msgRequests() string {
	return fmt.Sprintf("Number of requests exceeded the limit of %d over time window of %d seconds.", s.cfg.Limits.Requests, int(s.cfg.Limits.Window.Seconds()))
}

func (u *userState) prune(now time.Time, window time.Duration) {
	cut := now.Add(-window)
	i := 0
	for i < len(u.reqTimes) && u.reqTimes[i].Before(cut) {
		i++
	}
	if i > 0 {
		u.reqTimes = append(u.reqTimes[:0], u.reqTimes[i:]...)
	}
	j := 0
	for j < len(u.execs) && u.execs[j].at.Before(cut) {
		u.execSum -= u.execs[j].d
		j++
	}
	if j > 0 {
		u.execs = append(u.execs[:0], u.execs[j:]...)
	}
}

// remaining reports the rate-limit headers' values for a user on a server.
func (s *Sim) remaining(sv *server, user string) (int, float64) {
	sv.mu.Lock()
	defer sv.mu.Unlock()
	u := sv.users[user]
	if u == nil {
		return s.cfg.Limits.Requests, s.scale(s.cfg.Limits.ExecTime).Seconds()
	}
	return max(0, s.cfg.Limits.Requests-len(u.reqTimes)), max(0, (s.scale(s.cfg.Limits.ExecTime) - u.execSum).Seconds())
}

// retryAfter formats a wait for the Retry-After header.
func (s *Sim) retryAfter(d time.Duration) string {
	if s.cfg.TimeScale == 1 {
		return strconv.Itoa(int(math.Ceil(d.Seconds())))
	}
	return strconv.FormatFloat(math.Max(d.Seconds(), 0.001), 'f', 3, 64)
}

// deliveryGrace is how long a delivered 429 takes to reach the client and close its gate: a request
// arriving within it was already on its way and does not count as sent inside the window.
const deliveryGrace = 20 * time.Millisecond

// noteArrival counts requests that arrive while a Retry-After delivered to their client is running.
// A client is its x-ms-client-session-id (one per client, as the .NET ServiceClient sends it), else
// its user: the window binds whoever received the 429, across every web server.
func (s *Sim) noteArrival(client string, now time.Time) {
	if v, ok := s.blocks.Load(client); ok {
		b := v.(*block)
		b.mu.Lock()
		inside := !now.Before(b.from.Add(deliveryGrace)) && now.Before(b.until)
		b.mu.Unlock()
		if inside {
			s.c.during.Add(1)
		}
	}
}

// noteDelivered records that a 429 reached the client now.
func (s *Sim) noteDelivered(client string, wait time.Duration) {
	v, _ := s.blocks.LoadOrStore(client, &block{})
	b := v.(*block)
	now := time.Now()
	b.mu.Lock()
	if until := now.Add(wait); until.After(b.until) {
		b.from, b.until = now, until
	}
	b.mu.Unlock()
}

// Faults are runtime-adjustable misbehaviours.
type Faults struct {
	mu         sync.Mutex
	errN       int
	errStatus  int
	dropN      int
	slow       time.Duration
	stormCode  string
	stormUntil time.Time
	reject     map[string]bool
}

// ServerErrors makes the next n requests answer status (500 or 503).
func (f *Faults) ServerErrors(n, status int) {
	f.mu.Lock()
	f.errN, f.errStatus = n, status
	f.mu.Unlock()
}

// DropConnections closes the next n connections without an answer.
func (f *Faults) DropConnections(n int) { f.mu.Lock(); f.dropN = n; f.mu.Unlock() }

// Slow adds d to every response; 0 turns it off.
func (f *Faults) Slow(d time.Duration) { f.mu.Lock(); f.slow = d; f.mu.Unlock() }

// Storm answers every request with a 429 of the given limit code for d.
func (f *Faults) Storm(code string, d time.Duration) {
	f.mu.Lock()
	f.stormCode, f.stormUntil = code, time.Now().Add(d)
	f.mu.Unlock()
}

// RejectOnWrite makes a "plugin" reject writes of these records.
func (f *Faults) RejectOnWrite(ids ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.reject == nil {
		f.reject = map[string]bool{}
	}
	for _, id := range ids {
		f.reject[id] = true
	}
}

func (f *Faults) rejects(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reject[id]
}

// take returns the fault to apply to an arriving request: "drop", an error status, a storm code.
func (f *Faults) take(now time.Time) (drop bool, status int, storm string, slow time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case f.dropN > 0:
		f.dropN--
		drop = true
	case f.errN > 0:
		f.errN--
		status = f.errStatus
	}
	if now.Before(f.stormUntil) {
		storm = f.stormCode
	}
	return drop, status, storm, f.slow
}
