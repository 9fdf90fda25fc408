// Package bench measures the nightly enrichment job against the simulators and prints the figures
// side by side: the bound the environment's limits allow, the seed's sequential loop, the seed's
// per-record Parallel.ForEachAsync pattern, and this product (planner + chunk pipeline over several
// instances), plus one instance's peak memory over a million accounts. Nothing here asserts a
// timing: the numbers are for people (make bench).
package bench

import (
	"math/rand/v2"
	"time"
)

// Profile is a simulated environment in real-time figures; the simulators run it time-scaled.
type Profile struct {
	Name    string
	Servers int // web servers behind the environment
	DOPHint int // x-ms-dop-hint the environment sends

	// Service protection, per user per web server.
	Concurrency int
	Requests    int
	ExecTime    time.Duration
	Window      time.Duration

	Latency time.Duration // network latency of one Dataverse request
	// Server time of each kind of Dataverse operation.
	Patch, BulkBase, BulkPerRecord, BatchBase, BatchPerOp, PageRead time.Duration
	PageSize, MaxBatch                                              int // records per page read; records per UpdateMultiple

	// The enrichment service: EnrichBase + EnrichPerRecord × records per request, at most
	// EnrichConcurrency requests per client and EnrichBatch records per request.
	EnrichBase, EnrichPerRecord    time.Duration
	EnrichConcurrency, EnrichBatch int
	// EnrichQueue puts the enrichment simulator in its queueing mode (up to EnrichConcurrency
	// requests wait above the capacity before it answers 429); EnrichSeed is the seed the
	// service's limits were drawn with (RandomService), 0 if they are the profile's own.
	EnrichQueue bool
	EnrichSeed  uint64

	Active, Inactive int
	ChangeFraction   float64 // share of the active accounts the enrichment changes
}

// Prod is issue 7's production profile.
func Prod() Profile {
	return Profile{
		Name: "prod", Servers: 4, DOPHint: 48,
		Concurrency: 52, Requests: 6000, ExecTime: 1200 * time.Second, Window: 300 * time.Second,
		Latency: 40 * time.Millisecond,
		Patch:   20 * time.Millisecond, BulkBase: 10 * time.Millisecond, BulkPerRecord: 4 * time.Millisecond,
		BatchBase: 5 * time.Millisecond, BatchPerOp: 15 * time.Millisecond, PageRead: 50 * time.Millisecond,
		PageSize: 5000, MaxBatch: 1000,
		EnrichBase: 120 * time.Millisecond, EnrichPerRecord: 2 * time.Millisecond, EnrichConcurrency: 32, EnrichBatch: 25,
		Active: 50000, Inactive: 5000, ChangeFraction: 0.8,
	}
}

// Sandbox is Prod with one web server and a dop hint of 4.
func Sandbox() Profile {
	p := Prod()
	p.Name, p.Servers, p.DOPHint = "sandbox", 1, 4
	return p
}

// Changed is how many active accounts the enrichment changes (the writes the job must make).
func (p Profile) Changed() int { return int(float64(p.Active)*p.ChangeFraction + 0.5) }

// Ranges RandomService draws the enrichment service's limits from.
const (
	MinServiceConcurrency, MaxServiceConcurrency = 16, 128
	MinServiceBatch, MaxServiceBatch             = 1, 100
)

// RandomService replaces p's enrichment service by one whose concurrency capacity and records per
// request are drawn from seed (16-128 and 1-100), in queueing mode: a service the product is not
// told about. The tuned row's knobs and the bound are computed from the drawn (true) values.
func (p Profile) RandomService(seed uint64) Profile {
	r := rand.New(rand.NewPCG(seed, 0x15))
	p.EnrichConcurrency = MinServiceConcurrency + r.IntN(MaxServiceConcurrency-MinServiceConcurrency+1)
	p.EnrichBatch = MinServiceBatch + r.IntN(MaxServiceBatch-MinServiceBatch+1)
	p.EnrichQueue, p.EnrichSeed = true, seed
	return p
}
