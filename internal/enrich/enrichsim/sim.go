// Package enrichsim is a deterministic company-data service speaking the enrichment protocol
// (README, "Enrichment service protocol"). Tests, the demo, benchmarks and the `simulate` subcommand use it in place
// of the real service: every answer is predictable from the account id (see Truth), the
// service's limits are enforced the way a real one would (records per request, concurrency,
// API key) and faults can be switched on at run time (see Faults).
package enrichsim

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Config shapes the simulated service. Zero values take the documented defaults.
type Config struct {
	MaxRecordsPerRequest int // default 25; a larger request is answered 400
	MaxConcurrency       int // default 32; requests above it are answered 429, Retry-After 1 s (scaled), or queue
	// QueueDepth switches on the queueing mode real services behind a load balancer have: up to
	// QueueDepth requests above MaxConcurrency wait (first come, first served) for a slot, so
	// latency rises before anything is refused; a request arriving with the queue full, or
	// waiting longer than QueueTimeout, is answered 429 (Retry-After 1 s, scaled). 0: no queue.
	QueueDepth   int
	QueueTimeout time.Duration // default 2 s (scaled)
	BaseLatency  time.Duration // default 120ms per request
	PerRecord    time.Duration // default 2ms per record
	// TimeScale divides the latencies and the concurrency cap's Retry-After; default 1.
	// Retry-After is then sent as decimal real seconds, e.g. "0.05". Fault durations (Faults)
	// are real time.
	TimeScale    float64
	APIKey       string // if set, requests must carry it (401 otherwise)
	APIKeyHeader string // default "x-api-key"
}

// Sim is the simulated service. It is safe for concurrent use.
type Sim struct {
	cfg      Config
	faults   *Faults
	counters counters
	calls    *callLog
	slots    chan struct{} // queueing mode: one per request being served
}

// New returns a simulator with cfg's zero values replaced by defaults. Negative latencies
// count as zero and a TimeScale that is not a positive number counts as 1.
func New(cfg Config) *Sim {
	if cfg.MaxRecordsPerRequest <= 0 {
		cfg.MaxRecordsPerRequest = 25
	}
	if cfg.MaxConcurrency <= 0 {
		cfg.MaxConcurrency = 32
	}
	if cfg.BaseLatency == 0 {
		cfg.BaseLatency = 120 * time.Millisecond
	}
	if cfg.PerRecord == 0 {
		cfg.PerRecord = 2 * time.Millisecond
	}
	cfg.BaseLatency, cfg.PerRecord = max(cfg.BaseLatency, 0), max(cfg.PerRecord, 0)
	if !(cfg.TimeScale > 0) || math.IsInf(cfg.TimeScale, 0) {
		cfg.TimeScale = 1
	}
	if cfg.APIKeyHeader == "" {
		cfg.APIKeyHeader = "x-api-key"
	}
	if cfg.QueueTimeout <= 0 {
		cfg.QueueTimeout = 2 * time.Second
	}
	s := &Sim{cfg: cfg, faults: newFaults(), calls: newCallLog()}
	if cfg.QueueDepth > 0 {
		s.slots = make(chan struct{}, cfg.MaxConcurrency)
	}
	return s
}

// Limits reports the service's true limits (after defaults): what a client is not told.
func (s *Sim) Limits() (maxConcurrency, maxRecordsPerRequest int) {
	return s.cfg.MaxConcurrency, s.cfg.MaxRecordsPerRequest
}

// Faults returns the simulator's run-time fault switches.
func (s *Sim) Faults() *Faults { return s.faults }

// Handler serves the protocol on whatever path it is mounted at.
func (s *Sim) Handler() http.Handler { return http.HandlerFunc(s.serve) }

// Start serves the simulator on a random loopback port and returns its URL (path /enrich) and
// a function that stops it. Like httptest.NewServer it panics if loopback cannot be listened
// on; use StartOn to handle that error.
func (s *Sim) Start() (url string, stop func()) {
	url, stop, err := s.StartOn("127.0.0.1:0")
	if err != nil {
		panic(fmt.Sprintf("enrichsim: %v", err))
	}
	return url, stop
}

// StartOn is Start on a chosen address such as "127.0.0.1:7072". The returned stop waits for
// in-flight requests (up to 5 s), then closes the listener; it is safe to call twice.
func (s *Sim) StartOn(addr string) (url string, stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("enrichsim: listen %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/enrich", s.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Serve returns ErrServerClosed after stop; any other failure shows up to callers as
		// refused connections, which is what a dead service looks like anyway.
		_ = srv.Serve(ln)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if srv.Shutdown(ctx) != nil {
				_ = srv.Close()
			}
			<-done
		})
	}
	return "http://" + ln.Addr().String() + "/enrich", stop, nil
}

func scaled(d time.Duration, scale float64) time.Duration {
	return time.Duration(float64(d) / scale)
}

// retryAfter formats d as Retry-After seconds: an integer when whole (what RFC 9110 allows),
// otherwise a decimal, because a time-scaled wait is usually a fraction of a second. It never
// says 0, which a client could take as "retry at once, forever".
func retryAfter(d time.Duration) string {
	ms := math.Ceil(float64(d) / float64(time.Millisecond))
	return strconv.FormatFloat(max(ms, 1)/1000, 'f', -1, 64)
}

func unknownIDFor(seq uint64) string {
	return fmt.Sprintf("ffffffff-0000-4000-8000-%012x", seq)
}
