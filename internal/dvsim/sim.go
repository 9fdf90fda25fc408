// Package dvsim simulates the Dataverse Web API (v9.2) as described in reference/dataverse-webapi.md:
// an accounts table with ETags, paging, conditional PATCH, $batch with change sets, UpdateMultiple,
// a bound action, and service protection enforced per user per web server (concurrency,
// request-count and execution-time limits over a sliding window, 429 with a growing Retry-After,
// x-ms-dop-hint, an ARRAffinity cookie), with a cost model, a time scale and fault injection.
//
// One deliberate deviation: with TimeScale > 1 the Retry-After header carries real (scaled) seconds
// with three decimals, because scaled windows are shorter than the one-second resolution.
package dvsim

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Config configures a Sim. Zero values take the defaults noted.
type Config struct {
	Accounts, InactiveAccounts int
	Seed                       int64
	// Init may override the initial column values of record i (0 ≤ i < Accounts are the active
	// ones): name, websiteurl, numberofemployees (int), revenue (float64), industrycode (int),
	// description (string).
	Init             func(i int, id string, rec map[string]any)
	Servers          int     // default 2
	Limits           Limits  // per user per server
	TimeScale        float64 // default 1; every duration is divided by it
	DOPHint          int     // default 5
	Latency          time.Duration
	Cost             Cost
	MaxBatchSize     int  // default 1000
	NoUpdateMultiple bool // UpdateMultiple unavailable on accounts
	// OnWrite is called after a write request's changes are applied, before its answer is sent.
	OnWrite func(ids []string)
}

// Limits are the service protection limits per user per web server.
type Limits struct {
	Concurrency, Requests int
	ExecTime, Window      time.Duration
}

// Cost is the server time of each kind of operation (it counts toward the execution-time limit).
type Cost struct {
	Patch, BulkBase, BulkPerRecord, BatchBase, BatchPerOp, PageRead, Action time.Duration
}

func (c *Config) defaults() {
	if c.Servers <= 0 {
		c.Servers = 2
	}
	if c.TimeScale <= 0 {
		c.TimeScale = 1
	}
	if c.DOPHint <= 0 {
		c.DOPHint = 5
	}
	if c.MaxBatchSize <= 0 {
		c.MaxBatchSize = 1000
	}
	l := &c.Limits
	if l.Concurrency <= 0 {
		l.Concurrency = 52
	}
	if l.Requests <= 0 {
		l.Requests = 6000
	}
	if l.ExecTime <= 0 {
		l.ExecTime = 1200 * time.Second
	}
	if l.Window <= 0 {
		l.Window = 300 * time.Second
	}
	d := func(p *time.Duration, v time.Duration) {
		if *p <= 0 {
			*p = v
		}
	}
	k := &c.Cost
	d(&k.Patch, 20*time.Millisecond)
	d(&k.BulkBase, 10*time.Millisecond)
	d(&k.BulkPerRecord, 4*time.Millisecond)
	d(&k.BatchBase, 5*time.Millisecond)
	d(&k.BatchPerOp, 15*time.Millisecond)
	d(&k.PageRead, 50*time.Millisecond)
	d(&k.Action, 20*time.Millisecond)
}

// record is one account, compact so a million fit in memory.
type record struct {
	name, website, description string
	employees                  int64
	revenue                    float64
	industry                   int64
	hasIndustry, hasEmployees  bool
	hasRevenue                 bool
	state                      int8
	version                    int64
	modified                   int64
	writes                     int32
}

// Sim is a simulated Dataverse environment.
type Sim struct {
	cfg Config

	mu   sync.RWMutex
	recs map[string]*record
	keys []string // sorted ids, including deleted ones (skipped when read)

	servers []*server
	rr      atomic.Uint64
	blocks  sync.Map // user -> *block: Retry-After windows delivered to the user
	faults  Faults
	c       counters
}

// AccountID is the deterministic id of record i.
func AccountID(i int) string {
	h := sha256.Sum256([]byte(fmt.Sprintf("dvsim-account-%d", i)))
	b := h[:16]
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	s := hex.EncodeToString(b)
	return s[:8] + "-" + s[8:12] + "-" + s[12:16] + "-" + s[16:20] + "-" + s[20:]
}

var industries = []int64{1, 2, 3, 6, 7, 9, 12, 19, 25, 33}

// New seeds a simulator.
func New(cfg Config) *Sim {
	cfg.defaults()
	s := &Sim{cfg: cfg, recs: make(map[string]*record, cfg.Accounts+cfg.InactiveAccounts)}
	rng := rand.New(rand.NewPCG(uint64(cfg.Seed), 0x5eed))
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	for i := 0; i < cfg.Accounts+cfg.InactiveAccounts; i++ {
		id := AccountID(i)
		r := &record{name: fmt.Sprintf("Account %06d", i), website: fmt.Sprintf("https://account%06d.example.com", i),
			employees: int64(rng.IntN(5000)), hasEmployees: true, revenue: float64(rng.IntN(100000000)) / 100, hasRevenue: true,
			description: "", version: 1000 + int64(i), modified: base}
		if rng.IntN(4) > 0 {
			r.industry, r.hasIndustry = industries[rng.IntN(len(industries))], true
		}
		if i >= cfg.Accounts {
			r.state = 1
		}
		if cfg.Init != nil {
			m := r.toMap(id)
			cfg.Init(i, id, m)
			if err := r.apply(m); err != nil {
				panic(fmt.Sprintf("dvsim: Init for record %d: %v", i, err))
			}
		}
		s.recs[id] = r
		s.keys = append(s.keys, id)
	}
	sort.Strings(s.keys)
	for i := 0; i < cfg.Servers; i++ {
		s.servers = append(s.servers, &server{idx: i, users: map[string]*userState{}})
	}
	return s
}

func (r *record) toMap(id string) map[string]any {
	m := map[string]any{"accountid": id, "name": r.name, "websiteurl": r.website, "description": r.description,
		"numberofemployees": nil, "revenue": nil, "industrycode": nil, "statecode": int(r.state), "statuscode": int(r.state) + 1,
		"_ownerid_value": "00000000-0000-0000-0000-0000000000aa", "versionnumber": r.version,
		"modifiedon": time.Unix(0, r.modified).UTC().Format(time.RFC3339)}
	if r.hasEmployees {
		m["numberofemployees"] = int(r.employees)
	}
	if r.hasRevenue {
		m["revenue"] = r.revenue
	}
	if r.hasIndustry {
		m["industrycode"] = int(r.industry)
	}
	return m
}

// Start serves the simulator on a loopback port; the returned URL is the environment root.
func (s *Sim) Start() (string, func()) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(fmt.Sprintf("dvsim: listen: %v", err))
	}
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), func() { _ = srv.Close() }
}

// Get returns a copy of a row, or false if it does not exist.
func (s *Sim) Get(id string) (map[string]any, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	r, ok := s.recs[id]
	if !ok {
		return nil, false
	}
	return r.toMap(id), true
}

// IDs lists the existing active (or inactive) record ids in key order.
func (s *Sim) IDs(active bool) []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []string
	for _, id := range s.keys {
		if r, ok := s.recs[id]; ok && (r.state == 0) == active {
			out = append(out, id)
		}
	}
	return out
}

// Delete removes a record (as someone deleting it mid-run).
func (s *Sim) Delete(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.recs, id)
}

// Edit changes a record as a person would: values change and the ETag moves on.
func (s *Sim) Edit(id string, fields map[string]any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.recs[id]; ok {
		_ = r.apply(fields)
		r.version++
		r.modified = time.Now().UnixNano()
	}
}

// Faults returns the runtime-adjustable faults.
func (s *Sim) Faults() *Faults { return &s.faults }

func (s *Sim) scale(d time.Duration) time.Duration {
	return time.Duration(float64(d) / s.cfg.TimeScale)
}
