package dataverse

import (
	"context"
	"maps"
	"sync"
	"sync/atomic"
	"time"
)

// Stats is a snapshot of what the client has done since New.
type Stats struct {
	Requests        int64            // attempts put on the wire
	Throttled       int64            // 429 responses
	ThrottledByCode map[string]int64 // 429s by error.code (0x80072322 requests, 0x80072321 time, 0x80072326 concurrency)
	Retries         int64            // attempts repeated after a 429, 401, 5xx or network error
	ServerErrors    int64            // 5xx responses
	TransportErrors int64            // attempts that got no response (reset, timeout, refused)
	BatchSplits     int64            // bulk/batch groups split after an error or a size refusal
	PausedFor       time.Duration    // total time the gate was closed
	PeakInFlight    int              // most attempts on the wire at once
	CurrentInFlight int
	Limit           int // adaptive concurrency limit now
	DOP             int // latest x-ms-dop-hint
	BatchLimit      int // learned maximum operations per $batch (0 = none learned)
}

type stats struct {
	requests, throttledN, retries atomic.Int64
	serverErrors, transportErrors atomic.Int64
	splits                        atomic.Int64
	mu                            sync.Mutex
	inFlight, peak                int
	byCode                        map[string]int64
}

func (s *stats) sent() {
	s.requests.Add(1)
	s.mu.Lock()
	s.inFlight++
	s.peak = max(s.peak, s.inFlight)
	s.mu.Unlock()
}

func (s *stats) done() {
	s.mu.Lock()
	s.inFlight--
	s.mu.Unlock()
}

func (s *stats) throttled(code string) {
	s.throttledN.Add(1)
	if code == "" {
		code = "unknown"
	}
	s.mu.Lock()
	s.byCode[code]++
	s.mu.Unlock()
}

// Stats returns a snapshot of the counters.
func (c *Client) Stats() Stats {
	t := c.thr.snapshot()
	c.st.mu.Lock()
	defer c.st.mu.Unlock()
	return Stats{
		Requests:        c.st.requests.Load(),
		Throttled:       c.st.throttledN.Load(),
		ThrottledByCode: maps.Clone(c.st.byCode),
		Retries:         c.st.retries.Load(),
		ServerErrors:    c.st.serverErrors.Load(),
		TransportErrors: c.st.transportErrors.Load(),
		BatchSplits:     c.st.splits.Load(),
		PausedFor:       t.pausedFor,
		PeakInFlight:    c.st.peak,
		CurrentInFlight: c.st.inFlight,
		Limit:           t.limit,
		DOP:             t.hint,
		BatchLimit:      int(c.batchLimit.Load()),
	}
}

// Tally counts the 429s and retries of the requests made with one context (see WithTally), so work
// that shares a client with other work running at once (several chunks on one instance) can report
// exactly its own, which the client-wide Stats cannot.
type Tally struct {
	throttled, retries atomic.Int64
}

// Throttled is the number of 429 answers the tallied requests got.
func (t *Tally) Throttled() int64 { return t.throttled.Load() }

// Retries is the number of attempts the tallied requests repeated.
func (t *Tally) Retries() int64 { return t.retries.Load() }

type tallyKey struct{}

// WithTally returns a context whose requests also count their 429s and retries into t.
func WithTally(ctx context.Context, t *Tally) context.Context {
	return context.WithValue(ctx, tallyKey{}, t)
}

func tallyOf(ctx context.Context) *Tally {
	t, _ := ctx.Value(tallyKey{}).(*Tally)
	return t
}

// retried counts n repeated attempts, client-wide and for ctx's tally.
func (c *Client) retried(ctx context.Context, n int64) {
	c.st.retries.Add(n)
	if t := tallyOf(ctx); t != nil {
		t.retries.Add(n)
	}
}
