// Package enrichsim simulates the company-data service of INTERFACES.md §4: deterministic answers
// per account id, a cost model (latency per request and per record), a concurrency cap answered with
// 429 + Retry-After, and runtime-adjustable faults. Tests, the demo and the benchmarks use it.
package enrichsim

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Config configures a Sim. Zero values take the defaults noted.
type Config struct {
	MaxRecordsPerRequest int           // default 25; more records in one request answer 400
	MaxConcurrency       int           // default 32; above it requests answer 429 with Retry-After: 1
	BaseLatency          time.Duration // default 120ms per request
	PerRecord            time.Duration // default 2ms per record
	TimeScale            float64       // default 1; every duration is divided by it
	APIKey, APIKeyHeader string        // when APIKey is set it is required (401 otherwise)
}

// Sim is the simulated service.
type Sim struct {
	cfg      Config
	faults   Faults
	inFlight atomic.Int64
	counters struct {
		requests, records, throttled, peak, errors atomic.Int64
	}
	calls sync.Map // id -> *atomic.Int64
}

// New returns a simulator.
func New(cfg Config) *Sim {
	if cfg.MaxRecordsPerRequest == 0 {
		cfg.MaxRecordsPerRequest = 25
	}
	if cfg.MaxConcurrency == 0 {
		cfg.MaxConcurrency = 32
	}
	if cfg.BaseLatency == 0 {
		cfg.BaseLatency = 120 * time.Millisecond
	}
	if cfg.PerRecord == 0 {
		cfg.PerRecord = 2 * time.Millisecond
	}
	if cfg.TimeScale <= 0 {
		cfg.TimeScale = 1
	}
	if cfg.APIKeyHeader == "" {
		cfg.APIKeyHeader = "x-api-key"
	}
	return &Sim{cfg: cfg}
}

// Truth is the service's deterministic answer for an account id: the same in every process.
func Truth(id string) map[string]any {
	h := fnv.New64a()
	_, _ = h.Write([]byte(id))
	v := h.Sum64()
	industries := []int{1, 2, 3, 6, 7, 9, 12, 19, 25, 33}
	return map[string]any{
		"numberofemployees": int(10 + v%50000),
		"revenue":           math.Round(float64(v>>20%10_000_000_00)) / 100,
		"industrycode":      industries[(v>>8)%uint64(len(industries))],
		"description":       fmt.Sprintf("Enriched profile %06x", v&0xffffff),
	}
}

// Counters is a snapshot of what the simulator saw.
type Counters struct {
	Requests, Records, Throttled, Errors int64
	PeakConcurrency                      int64
	InFlight                             int64
	DuplicateCalls                       int64 // records asked about more than once, summed over repeats
}

// Counters returns a snapshot.
func (s *Sim) Counters() Counters {
	c := Counters{Requests: s.counters.requests.Load(), Records: s.counters.records.Load(), Throttled: s.counters.throttled.Load(),
		Errors: s.counters.errors.Load(), PeakConcurrency: s.counters.peak.Load(), InFlight: s.inFlight.Load()}
	s.calls.Range(func(_, v any) bool {
		if n := v.(*atomic.Int64).Load(); n > 1 {
			c.DuplicateCalls += n - 1
		}
		return true
	})
	return c
}

// CallsByID reports how many times the service was asked about id (answered requests only).
func (s *Sim) CallsByID(id string) int {
	if v, ok := s.calls.Load(id); ok {
		return int(v.(*atomic.Int64).Load())
	}
	return 0
}

// Faults returns the runtime-adjustable faults.
func (s *Sim) Faults() *Faults { return &s.faults }

// Start serves the simulator on a loopback port and returns the URL to POST to.
func (s *Sim) Start() (string, func()) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(fmt.Sprintf("enrichsim: listen: %v", err))
	}
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String() + "/enrich", func() { _ = srv.Close() }
}

func (s *Sim) scaled(d time.Duration) time.Duration {
	return time.Duration(float64(d) / s.cfg.TimeScale)
}

// Handler serves POST /enrich.
func (s *Sim) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /enrich", s.serve)
	return mux
}

type request struct {
	Records []map[string]any `json:"records"`
}

func (s *Sim) serve(w http.ResponseWriter, r *http.Request) {
	s.counters.requests.Add(1)
	if s.cfg.APIKey != "" && r.Header.Get(s.cfg.APIKeyHeader) != s.cfg.APIKey {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "missing or wrong API key"})
		return
	}
	n := s.inFlight.Add(1)
	defer s.inFlight.Add(-1)
	for p := s.counters.peak.Load(); n > p && !s.counters.peak.CompareAndSwap(p, n); p = s.counters.peak.Load() {
	}
	if int(n) > s.cfg.MaxConcurrency || s.faults.throttling() {
		s.counters.throttled.Add(1)
		w.Header().Set("Retry-After", s.retryAfter(time.Second))
		writeJSON(w, http.StatusTooManyRequests, map[string]string{"error": "too many concurrent requests"})
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 8<<20))
	var req request
	if err == nil {
		err = json.Unmarshal(body, &req)
	}
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "body is not {\"records\":[...]}"})
		return
	}
	if len(req.Records) > s.cfg.MaxRecordsPerRequest {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("at most %d records per request", s.cfg.MaxRecordsPerRequest)})
		return
	}
	time.Sleep(s.scaled(s.cfg.BaseLatency+time.Duration(len(req.Records))*s.cfg.PerRecord) + s.faults.delay())
	if s.faults.take(&s.faults.ServerErrors) {
		s.counters.errors.Add(1)
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "simulated outage"})
		return
	}
	if s.faults.take(&s.faults.Malformed) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, `{"results":[{"id":`)
		return
	}
	s.counters.records.Add(int64(len(req.Records)))
	results := make([]map[string]any, 0, len(req.Records))
	for _, rec := range req.Records {
		id, _ := rec["id"].(string)
		v, _ := s.calls.LoadOrStore(id, new(atomic.Int64))
		v.(*atomic.Int64).Add(1)
		results = append(results, s.faults.answer(id)...)
	}
	results = append(results, s.faults.extraUnknown()...)
	writeJSON(w, http.StatusOK, map[string]any{"results": results})
}

func (s *Sim) retryAfter(d time.Duration) string {
	if s.cfg.TimeScale == 1 {
		return strconv.Itoa(int(math.Ceil(d.Seconds())))
	}
	return strconv.FormatFloat(s.scaled(d).Seconds(), 'f', 3, 64)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
