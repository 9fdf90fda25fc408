package dvsim

import (
	"fmt"
	"math"
	"strconv"
	"sync"
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
	reqTimes     fifo[time.Time] // accepted requests in the window, oldest first
	execs        fifo[execEntry] // completed requests' server time, oldest first
	execSum      time.Duration
	penaltyUntil time.Time
	penaltyFrom  time.Time // when the 429 that started the penalty reached its client (plus a grace)
	penalty      time.Duration
	penaltyCode  string
	penaltyMsg   string
}

type execEntry struct {
	at time.Time
	d  time.Duration
}

// fifo is a queue with O(1) amortised push and pop: popped slots are reclaimed in bulk once they
// are half the buffer, so each element is copied at most once on average.
type fifo[T any] struct {
	buf  []T
	head int
}

func (q *fifo[T]) len() int   { return len(q.buf) - q.head }
func (q *fifo[T]) at(i int) T { return q.buf[q.head+i] }
func (q *fifo[T]) push(v T)   { q.buf = append(q.buf, v) }
func (q *fifo[T]) front() T   { return q.buf[q.head] }
func (q *fifo[T]) pop() {
	var zero T
	q.buf[q.head] = zero
	q.head++
	if q.head == len(q.buf) {
		q.buf, q.head = q.buf[:0], 0
	} else if q.head >= 64 && 2*q.head >= len(q.buf) {
		n := copy(q.buf, q.buf[q.head:])
		q.buf, q.head = q.buf[:n], 0
	}
}

// block is a Retry-After window delivered to a user, for the RequestsDuringRetryAfter counter.
type block struct {
	mu          sync.Mutex
	from, until time.Time
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
		if !now.Before(u.penaltyFrom) {
			s.c.intoPenalty(user)
		}
		u.penalty = min(2*u.penalty, window)
		u.penaltyUntil = now.Add(u.penalty)
		return &throttled{code: u.penaltyCode, msg: u.penaltyMsg, after: u.penalty}, nil
	}
	if u.inFlight >= l.Concurrency {
		return &throttled{code: CodeConcurrency, msg: s.message(CodeConcurrency), after: s.scale(time.Second)}, nil
	}
	if n := u.reqTimes.len(); n >= l.Requests {
		wait := u.reqTimes.at(n - l.Requests).Add(window).Sub(now)
		return s.penalize(u, now, CodeRequests, s.message(CodeRequests), wait), nil
	}
	if u.execSum >= execLimit {
		// Wait until enough of the window's execution time has aged out to fall under the limit.
		over, wait := u.execSum-execLimit, time.Duration(0)
		for i := 0; i < u.execs.len(); i++ {
			e := u.execs.at(i)
			wait = e.at.Add(window).Sub(now)
			if over -= e.d; over < 0 {
				break
			}
		}
		return s.penalize(u, now, CodeExecTime, s.message(CodeExecTime), wait), nil
	}
	u.inFlight++
	u.reqTimes.push(now)
	sv.inFlight++
	sv.peak = max(sv.peak, sv.inFlight)
	leave := s.c.admit()
	return nil, func(exec time.Duration) {
		leave()
		sv.mu.Lock()
		defer sv.mu.Unlock()
		u.inFlight--
		sv.inFlight--
		u.execs.push(execEntry{at: time.Now(), d: exec})
		u.execSum += exec
	}
}

func (s *Sim) penalize(u *userState, now time.Time, code, msg string, wait time.Duration) *throttled {
	wait = max(wait, s.scale(time.Second))
	u.penalty, u.penaltyUntil, u.penaltyCode, u.penaltyMsg = wait, now.Add(wait), code, msg
	// The 429 is written after the network latency; a request arriving before it reached its client
	// (within deliveryGrace after that) was in flight when the 429 was sent, whoever sent it.
	u.penaltyFrom = now.Add(s.scale(s.cfg.Latency) + deliveryGrace)
	return &throttled{code: code, msg: msg, after: wait}
}

// message renders a service protection error from the reference's templates with the
// configured (unscaled) limits.
func (s *Sim) message(code string) string {
	l := s.cfg.Limits
	switch code {
	case CodeRequests:
		return fmt.Sprintf("Number of requests exceeded the limit of %d over time window of %d seconds.", l.Requests, int(l.Window.Seconds()))
	case CodeExecTime:
		return fmt.Sprintf("Combined execution time of incoming requests exceeded limit of %d milliseconds over time window of %d seconds. Decrease number of concurrent requests or reduce the duration of requests and try again later.", l.ExecTime.Milliseconds(), int(l.Window.Seconds()))
	case CodeConcurrency:
		return fmt.Sprintf("Number of concurrent requests exceeded the limit of %d.", l.Concurrency)
	}
	return "Service protection limit exceeded."
}

func (u *userState) prune(now time.Time, window time.Duration) {
	cut := now.Add(-window)
	for u.reqTimes.len() > 0 && u.reqTimes.front().Before(cut) {
		u.reqTimes.pop()
	}
	for u.execs.len() > 0 && u.execs.front().at.Before(cut) {
		u.execSum -= u.execs.front().d
		u.execs.pop()
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
	return max(0, s.cfg.Limits.Requests-u.reqTimes.len()), max(0, (s.scale(s.cfg.Limits.ExecTime) - u.execSum).Seconds())
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
