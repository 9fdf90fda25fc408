// Package dvsim simulates the Dataverse Web API (v9.2) as Microsoft's "Use the Microsoft Dataverse Web
// API" and "Service protection API limits" describe it:
// an accounts table with ETags, paging, conditional PATCH, $batch with change sets, UpdateMultiple,
// a bound action, and service protection enforced per user per web server (concurrency,
// request-count and execution-time limits over a sliding window, 429 with a growing Retry-After,
// x-ms-dop-hint, an ARRAffinity cookie), with a cost model, a time scale and fault injection.
//
// Beside accounts it serves declared tables (contacts: TableDef) with typed columns, lookups
// written as <nav>@odata.bind, alternate keys, create, upsert, CreateMultiple and UpsertMultiple,
// and the platform's errors for a duplicate key (0x80040237), a duplicate alternate key
// (0x80060892), an undefined key and a missing lookup target; accounts have a derived, read-only
// alternate key accountnumber (ACC-000042 for seeded record 42) for lookups to resolve.
//
// The table is a sorted array of 128-bit keys with 48-byte records beside it (64 bytes a record;
// seeded names derive from the record's index), so a million records take about 64 MB and a page
// costs O(page) from the key after the paging cookie.
//
// Deliberate deviations:
//   - with TimeScale != 1 the Retry-After header carries real (scaled) seconds with three
//     decimals, because scaled windows are shorter than its one-second resolution; with
//     TimeScale 1 it is integer seconds as Dataverse sends it. x-ms-ratelimit-time-remaining
//     likewise reports real (scaled) seconds.
//   - a Faults().Storm's Retry-After is the storm's remaining time (at least one scaled second)
//     and does not grow, so a storm ends when it says it does.
//   - RequestsDuringRetryAfter identifies a client by its x-ms-client-session-id (else its user),
//     and ignores requests arriving within a short delivery grace after the 429 was written.
//     RequestsIntoPenalty is the service's own view: per user (the bearer token) per web server,
//     so several processes of one application user count together.
package dvsim

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strings"
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
	// NoCreateMultiple and NoUpsertMultiple make those messages unavailable on declared tables.
	NoCreateMultiple, NoUpsertMultiple bool
	// OnWrite is called after a write request's changes are applied, before its answer is sent.
	OnWrite func(ids []string)
	// ChangeTracking turns on Track changes for accounts (switchable later with SetChangeTracking).
	ChangeTracking bool
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

// Sim is a simulated Dataverse environment.
type Sim struct {
	cfg Config

	mu         sync.RWMutex
	tab        table
	tables     map[string]*dtable // declared tables by entity set (contacts), beside accounts
	rowVersion int64

	servers []*server
	rr      atomic.Uint64
	blocks  sync.Map // client -> *block: Retry-After windows delivered to the client
	faults  Faults
	c       counters
	ct      changeTracking
}

var industries = []int32{1, 2, 3, 6, 7, 9, 12, 19, 25, 33}

// New seeds a simulator: records 0..Accounts-1 are active, the next InactiveAccounts inactive.
func New(cfg Config) *Sim {
	cfg.defaults()
	n := cfg.Accounts + cfg.InactiveAccounts
	s := &Sim{cfg: cfg, tables: map[string]*dtable{Contacts.EntitySet: newDTable(&Contacts)}}
	s.ct.on.Store(cfg.ChangeTracking)
	rng := rand.New(rand.NewPCG(uint64(cfg.Seed), 0x5eed))
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	type seeded struct {
		k key
		r record
	}
	rows := make([]seeded, n)
	for i := range rows {
		r := record{seq: int32(i), employees: int32(rng.IntN(5000)), revenue: float64(rng.IntN(100000000)) / 100,
			flags: hasEmployees | hasRevenue, version: 1000 + int64(i), modified: base}
		if rng.IntN(4) > 0 {
			r.industry, r.flags = industries[rng.IntN(len(industries))], r.flags|hasIndustry
		}
		if i >= cfg.Accounts {
			r.state = 1
		}
		k := accountKey(i)
		if cfg.Init != nil {
			id := k.String()
			m := r.toMap(id)
			cfg.Init(i, id, m)
			if err := r.apply(m); err != nil {
				panic(fmt.Sprintf("dvsim: Init for record %d: %v", i, err))
			}
		}
		rows[i] = seeded{k, r}
	}
	slices.SortFunc(rows, func(a, b seeded) int {
		if a.k.less(b.k) {
			return -1
		}
		return 1
	})
	s.tab.keys = make([]key, n)
	s.tab.recs = make([]record, n)
	for i, row := range rows {
		s.tab.keys[i], s.tab.recs[i] = row.k, row.r
	}
	for i := 0; i < cfg.Servers; i++ {
		s.servers = append(s.servers, &server{idx: i, users: map[string]*userState{}})
	}
	return s
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
	r := s.tab.lookup(id)
	if r == nil {
		return nil, false
	}
	return r.toMap(strings.ToLower(id)), true
}

// IDs lists the existing active (or inactive) record ids in key order.
func (s *Sim) IDs(active bool) []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []string
	for i := range s.tab.recs {
		if r := &s.tab.recs[i]; !r.has(deleted) && (r.state == 0) == active {
			out = append(out, s.tab.keys[i].String())
		}
	}
	return out
}

// Delete removes a record (as someone deleting it mid-run).
func (s *Sim) Delete(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tab.remove(id)
}

// Edit changes a record as a person would: values change and the ETag moves on. Unknown columns
// and ill-typed values are ignored.
func (s *Sim) Edit(id string, fields map[string]any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.tab.lookup(id); r != nil {
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
