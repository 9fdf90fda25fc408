package bench

import (
	"fmt"
	"math"
	"time"

	"dvbulk/internal/dvsim"
	"dvbulk/internal/enrich/enrichsim"
)

// env is one strategy's pair of simulators, freshly seeded so every strategy starts from the same
// data and an empty service-protection state.
type env struct {
	p            Profile
	scale        float64
	dv           *dvsim.Sim
	en           *enrichsim.Sim
	dvURL, enURL string
	inactive     map[string]map[string]any // inactive rows as seeded, to prove they stay untouched
	stop         func()
}

// newEnv starts the simulators for p at the given time scale. A (1 − ChangeFraction) share of the
// active accounts already holds what the enrichment service answers (as `dvbulk simulate` seeds
// them), so only the rest need a write.
func newEnv(p Profile, scale float64) *env {
	e := newSims(p, scale)
	for _, id := range e.dv.IDs(false) {
		row, _ := e.dv.Get(id)
		e.inactive[id] = row
	}
	var stopDV, stopEN func()
	e.dvURL, stopDV = e.dv.Start()
	e.enURL, stopEN = e.en.Start()
	e.stop = func() { stopEN(); stopDV() }
	return e
}

// newSims builds the simulators without serving them.
func newSims(p Profile, scale float64) *env {
	keep := int(math.Round(100 * (1 - p.ChangeFraction)))
	dv := dvsim.New(dvsim.Config{
		Accounts: p.Active, InactiveAccounts: p.Inactive, Seed: 1,
		Servers: p.Servers, DOPHint: p.DOPHint, TimeScale: scale, Latency: p.Latency, MaxBatchSize: p.MaxBatch,
		Limits: dvsim.Limits{Concurrency: p.Concurrency, Requests: p.Requests, ExecTime: p.ExecTime, Window: p.Window},
		Cost: dvsim.Cost{Patch: p.Patch, BulkBase: p.BulkBase, BulkPerRecord: p.BulkPerRecord, BatchBase: p.BatchBase,
			BatchPerOp: p.BatchPerOp, PageRead: p.PageRead, Action: p.Patch},
		Init: func(i int, id string, rec map[string]any) {
			if i < p.Active && i%100 < keep {
				enrichsim.Apply(rec, id)
			}
		},
	})
	ecfg := enrichsim.Config{MaxRecordsPerRequest: p.EnrichBatch, MaxConcurrency: p.EnrichConcurrency,
		BaseLatency: p.EnrichBase, PerRecord: p.EnrichPerRecord, TimeScale: scale}
	if p.EnrichQueue {
		ecfg.QueueDepth = p.EnrichConcurrency
	}
	en := enrichsim.New(ecfg)
	return &env{p: p, scale: scale, dv: dv, en: en, inactive: map[string]map[string]any{}}
}

// Result is one strategy's figures in real-time equivalents (measured wall time × time scale).
type Result struct {
	Strategy       string
	Wall           time.Duration
	Records        int // active accounts processed (or extrapolated to)
	RecPerSec      float64
	Requests       int64 // Dataverse requests received by the simulator
	Throttled      int64 // Dataverse 429s
	EnrichRequests int64
	EnrichThrottle int64 // enrichment 429s
	DuringRA       int64 // Dataverse requests sent inside a Retry-After window delivered to their client
	Lost           int   // checked accounts not holding the enrichment afterwards
	Touched        int   // inactive accounts written or changed (must be 0)
	Checked        int   // accounts checked for loss
	Extrapolated   bool
	Note           string
}

// finish fills r from the simulators' counters and checks the data: every account in ids holds
// enrichsim.Truth, and no inactive account was written or changed.
func (e *env) finish(r *Result, measured time.Duration, ids []string) {
	c := e.dv.Counters()
	r.Wall = time.Duration(float64(measured) * e.scale)
	r.RecPerSec = float64(r.Records) / r.Wall.Seconds()
	r.Requests = c.Requests
	for _, n := range c.Throttled {
		r.Throttled += n
	}
	ec := e.en.Counters()
	r.EnrichRequests, r.EnrichThrottle = ec.Requests, ec.Throttled
	r.DuringRA = c.RequestsDuringRetryAfter
	r.Checked = len(ids)
	for _, id := range ids {
		if !e.holdsTruth(id) {
			r.Lost++
		}
	}
	for id, before := range e.inactive {
		after, ok := e.dv.Get(id)
		if !ok || c.WritesByID(id) > 0 || fmt.Sprint(after) != fmt.Sprint(before) {
			r.Touched++
		}
	}
}

func (e *env) holdsTruth(id string) bool {
	row, ok := e.dv.Get(id)
	if !ok {
		return false
	}
	_, ok = enrichsim.Holds(row, id)
	return ok
}

// extrapolate scales a sampled run's wall time to all of the profile's active accounts.
func (r *Result) extrapolate(total int) {
	if r.Records >= total || r.Records == 0 {
		return
	}
	r.Wall = time.Duration(float64(r.Wall) * float64(total) / float64(r.Records))
	r.Records, r.Extrapolated = total, true
	r.RecPerSec = float64(total) / r.Wall.Seconds()
}
