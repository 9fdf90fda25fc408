// Package perf measures the product's throughput against the environment's limits and against the
// seed's patterns (sequential, and per-record Parallel.ForEachAsync), on the simulators, and prints
// the figures. Nothing here asserts a timing; the numbers are for people.
package perf

import (
	"fmt"
	"math"
	"time"
)

// Profile is a simulated environment (real-time figures; the simulator runs them time-scaled).
type Profile struct {
	Name                                                            string
	Servers, DOPHint                                                int
	Concurrency, Requests                                           int           // per user per server
	ExecTime, Window                                                time.Duration // per user per server
	Latency                                                         time.Duration
	Patch, BulkBase, BulkPerRecord, BatchBase, BatchPerOp, PageRead time.Duration
	EnrichBase, EnrichPerRecord                                     time.Duration
	EnrichConcurrency, EnrichBatch                                  int
	Active, Inactive                                                int
	ChangeFraction                                                  float64
}

// Prod and Sandbox are the two profiles of issue 7.
func Prod() Profile {
	return Profile{Name: "prod", Servers: 4, DOPHint: 48, Concurrency: 52, Requests: 6000, ExecTime: 1200 * time.Second, Window: 300 * time.Second,
		Latency: 40 * time.Millisecond, Patch: 20 * time.Millisecond, BulkBase: 10 * time.Millisecond, BulkPerRecord: 4 * time.Millisecond,
		BatchBase: 5 * time.Millisecond, BatchPerOp: 15 * time.Millisecond, PageRead: 50 * time.Millisecond,
		EnrichBase: 120 * time.Millisecond, EnrichPerRecord: 2 * time.Millisecond, EnrichConcurrency: 32, EnrichBatch: 25,
		Active: 50000, Inactive: 5000, ChangeFraction: 0.8}
}

func Sandbox() Profile {
	p := Prod()
	p.Name, p.Servers, p.DOPHint = "sandbox", 1, 4
	return p
}

// Bound is the shortest possible wall time of the nightly job under a profile's limits alone.
type Bound struct {
	Enrich, Read, DataverseConcurrency, DataverseWindow time.Duration
	Total                                               time.Duration
	Formula                                             string
}

// ComputeBound derives the bound. The Dataverse terms use the cheapest write the platform offers
// (UpdateMultiple with 1,000 records: 4 ms of server time per record plus 10 ms per request) and
// the effective concurrency min(x-ms-dop-hint, 52 × servers), because the product never exceeds
// the hint. The window limits (6,000 requests and 1,200 s of server time per 300 s per server)
// bind only for the part of the work beyond one window's budget, at the sustained rate.
func ComputeBound(p Profile) Bound {
	n := float64(p.Active)
	w := math.Round(n * p.ChangeFraction)
	sec := func(d time.Duration) float64 { return d.Seconds() }

	enrichRate := float64(p.EnrichConcurrency) * float64(p.EnrichBatch) / sec(p.EnrichBase+time.Duration(p.EnrichBatch)*p.EnrichPerRecord)
	tEnrich := n / enrichRate

	pages := math.Ceil((n + float64(p.Inactive)) / 5000)
	tRead := pages * sec(p.PageRead+p.Latency)

	const batch = 1000.0
	perReq := sec(p.BulkBase) + batch*sec(p.BulkPerRecord)
	conc := math.Min(float64(p.DOPHint), float64(p.Concurrency*p.Servers))
	tConc := w / (conc * batch / (perReq + sec(p.Latency)))

	// Window limits: server time needed per server beyond one window's budget, at the sustained rate.
	execNeed := (w*sec(p.BulkPerRecord) + math.Ceil(w/batch)*sec(p.BulkBase)) / float64(p.Servers)
	budget, rate := sec(p.ExecTime), sec(p.ExecTime)/sec(p.Window)
	tWindow := math.Max(0, execNeed-budget) / rate
	reqNeed := math.Ceil(w/batch) / float64(p.Servers)
	tWindow = math.Max(tWindow, math.Max(0, reqNeed-float64(p.Requests))/(float64(p.Requests)/sec(p.Window)))

	total := math.Max(tEnrich, math.Max(tConc, tWindow)) + tRead/float64(max(1, int(pages)))
	d := func(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
	b := Bound{Enrich: d(tEnrich), Read: d(tRead), DataverseConcurrency: d(tConc), DataverseWindow: d(tWindow), Total: d(total)}
	b.Formula = fmt.Sprintf("bound = max(enrich N/(C_e·b_e/(t0+b_e·t1)), write W/(C·B/(t_b+B·t_r+lat)), window) + first page\n"+
		"      = max(%.0f/(%d·%d/%.3fs)=%.1fs, %.0f/(%.0f·%.0f/%.3fs)=%.1fs, %.1fs) + %.2fs = %.1fs   (C = min(dop hint %d, 52×%d servers))",
		n, p.EnrichConcurrency, p.EnrichBatch, sec(p.EnrichBase+time.Duration(p.EnrichBatch)*p.EnrichPerRecord), tEnrich,
		w, conc, batch, perReq+sec(p.Latency), tConc, tWindow, tRead/float64(max(1, int(pages))), total, p.DOPHint, p.Servers)
	return b
}
