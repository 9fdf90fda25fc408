package perf

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"dvbulk/internal/checkpoint"
	"dvbulk/internal/dataverse"
	"dvbulk/internal/dvsim"
	"dvbulk/internal/enrich"
	"dvbulk/internal/enrich/enrichsim"
	"dvbulk/internal/job"
)

// env is one profile's simulators, time-scaled.
type env struct {
	p            Profile
	scale        float64
	dv           *dvsim.Sim
	en           *enrichsim.Sim
	dvURL, enURL string
	stop         func()
}

func newEnv(p Profile, scale float64) *env {
	keep := int(100*(1-p.ChangeFraction) + 0.5)
	dv := dvsim.New(dvsim.Config{Accounts: p.Active, InactiveAccounts: p.Inactive, Seed: 1, Servers: p.Servers, DOPHint: p.DOPHint,
		TimeScale: scale, Latency: p.Latency,
		Limits: dvsim.Limits{Concurrency: p.Concurrency, Requests: p.Requests, ExecTime: p.ExecTime, Window: p.Window},
		Cost:   dvsim.Cost{Patch: p.Patch, BulkBase: p.BulkBase, BulkPerRecord: p.BulkPerRecord, BatchBase: p.BatchBase, BatchPerOp: p.BatchPerOp, PageRead: p.PageRead, Action: p.Patch},
		Init: func(i int, id string, rec map[string]any) {
			if i < p.Active && i%100 < keep {
				for k, v := range enrichsim.Truth(id) {
					rec[k] = v
				}
			}
		}})
	en := enrichsim.New(enrichsim.Config{MaxRecordsPerRequest: p.EnrichBatch, MaxConcurrency: p.EnrichConcurrency,
		BaseLatency: p.EnrichBase, PerRecord: p.EnrichPerRecord, TimeScale: scale})
	e := &env{p: p, scale: scale, dv: dv, en: en}
	var s1, s2 func()
	e.dvURL, s1 = dv.Start()
	e.enURL, s2 = en.Start()
	e.stop = func() { s1(); s2() }
	return e
}

// Result is one strategy's figures, in real-time equivalents.
type Result struct {
	Strategy     string
	Wall         time.Duration
	Records      int
	RecPerSec    float64
	Requests     int64 // Dataverse requests
	Throttled    int64 // 429s from Dataverse
	EnrichThrott int64 // 429s from the enrichment service
	DuringRA     int64 // requests sent inside a Retry-After window
	Lost         int   // accounts not holding the enrichment afterwards
	Note         string
}

func (e *env) finish(r *Result, wall time.Duration, ids []string) {
	c := e.dv.Counters()
	r.Wall = time.Duration(float64(wall) * e.scale)
	r.RecPerSec = float64(r.Records) / r.Wall.Seconds()
	r.Requests = c.Requests
	for _, n := range c.Throttled {
		r.Throttled += n
	}
	r.EnrichThrott = e.en.Counters().Throttled
	r.DuringRA = c.RequestsDuringRetryAfter
	for _, id := range ids {
		row, ok := e.dv.Get(id)
		if !ok {
			r.Lost++
			continue
		}
		for k, v := range enrichsim.Truth(id) {
			if fmt.Sprint(row[k]) != fmt.Sprint(v) {
				r.Lost++
				break
			}
		}
	}
}

// perRecord is the seed's loop body: enrich one record, then PATCH it, each retried on 429 after
// that request's own Retry-After (as the .NET ServiceClient does: a per-request delay, no shared
// pause), without the affinity cookie.
func (e *env) perRecord(ctx context.Context, hc *http.Client, id string) error {
	body, _ := json.Marshal(map[string]any{"records": []map[string]any{{"id": id}}})
	var fields map[string]any
	for attempt := 0; ; attempt++ {
		resp, err := hc.Post(e.enURL, "application/json", bytes.NewReader(body))
		if err != nil {
			return err
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusTooManyRequests && attempt < 50 {
			wait(ctx, resp.Header.Get("Retry-After"))
			continue
		}
		var out struct {
			Results []struct {
				Fields map[string]any `json:"fields"`
			} `json:"results"`
		}
		if resp.StatusCode != 200 || json.Unmarshal(data, &out) != nil || len(out.Results) != 1 {
			return fmt.Errorf("enrich %s: %d", id, resp.StatusCode)
		}
		fields = out.Results[0].Fields
		break
	}
	patch, _ := json.Marshal(fields)
	for attempt := 0; ; attempt++ {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPatch, e.dvURL+"/api/data/v9.2/accounts("+id+")", bytes.NewReader(patch))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("If-Match", "*")
		req.Header.Set("x-ms-client-session-id", "seed-pattern")
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusTooManyRequests && attempt < 50 {
			wait(ctx, resp.Header.Get("Retry-After"))
			continue
		}
		if resp.StatusCode != http.StatusNoContent {
			return fmt.Errorf("patch %s: %d", id, resp.StatusCode)
		}
		return nil
	}
}

func wait(ctx context.Context, retryAfter string) {
	s, err := strconv.ParseFloat(retryAfter, 64)
	if err != nil {
		s = 1
	}
	select {
	case <-time.After(time.Duration(s * float64(time.Second))):
	case <-ctx.Done():
	}
}

// Sequential runs the seed's "before" on a sample, one record at a time, and extrapolates.
func Sequential(ctx context.Context, p Profile, scale float64, sample int) Result {
	e := newEnv(p, scale)
	defer e.stop()
	ids := e.dv.IDs(true)[:sample]
	hc := &http.Client{}
	start := time.Now()
	for _, id := range ids {
		_ = e.perRecord(ctx, hc, id)
	}
	r := Result{Strategy: "sequential", Records: sample}
	e.finish(&r, time.Since(start), ids)
	perRec := r.Wall / time.Duration(sample)
	r.Note = fmt.Sprintf("measured on %d records (%s each), extrapolated to %d", sample, perRec.Round(time.Millisecond), p.Active)
	r.Wall = perRec * time.Duration(p.Active)
	r.Records = p.Active
	r.RecPerSec = float64(p.Active) / r.Wall.Seconds()
	return r
}

// SeedPattern fans the per-record loop out at the dop hint (Parallel.ForEachAsync with
// MaxDegreeOfParallelism = RecommendedDegreesOfParallelism). With limit > 0 it runs on that many
// records and extrapolates.
func SeedPattern(ctx context.Context, p Profile, scale float64, limit int) Result {
	e := newEnv(p, scale)
	defer e.stop()
	ids := e.dv.IDs(true)
	if limit > 0 && limit < len(ids) {
		ids = ids[:limit]
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = p.DOPHint + 8
	hc := &http.Client{Transport: tr}
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range p.DOPHint {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(ids) || ctx.Err() != nil {
					return
				}
				_ = e.perRecord(ctx, hc, ids[i])
			}
		}()
	}
	wg.Wait()
	r := Result{Strategy: "seed pattern", Records: len(ids)}
	e.finish(&r, time.Since(start), ids)
	if len(ids) < p.Active {
		r.Note = fmt.Sprintf("measured on %d records, extrapolated to %d", len(ids), p.Active)
		r.Wall = time.Duration(float64(r.Wall) * float64(p.Active) / float64(len(ids)))
		r.Records = p.Active
	}
	return r
}

// Knobs are the operator settings the product runs with.
type Knobs struct {
	Instances, DVConcurrency, EnrichConcurrency, EnrichBatch, ChunkSize, WriteBatch, TransformWorkers, WriteWorkers, Workers int
}

// DefaultKnobs sizes the product the way the README tells an operator to.
func DefaultKnobs(p Profile) Knobs {
	inst := 4
	return Knobs{Instances: inst, DVConcurrency: max(1, p.DOPHint/inst), EnrichConcurrency: p.EnrichConcurrency / inst,
		EnrichBatch: p.EnrichBatch, ChunkSize: 250, WriteBatch: 100, TransformWorkers: 4, WriteWorkers: 4, Workers: 6}
}

// Product runs the real planner and chunk pipeline with several instances (engines with their own
// clients) sharing a local checkpoint directory.
func Product(ctx context.Context, p Profile, scale float64, k Knobs, dir string) (Result, error) {
	e := newEnv(p, scale)
	defer e.stop()
	st, err := checkpoint.NewDir(dir)
	if err != nil {
		return Result{}, err
	}
	spec, err := job.Lookup("nightly-enrichment")
	if err != nil {
		return Result{}, err
	}
	spec.Write.BatchSize = k.WriteBatch
	var engines []*job.Engine
	for i := range k.Instances {
		dv, err := dataverse.New(dataverse.Config{URL: e.dvURL, MaxConcurrency: k.DVConcurrency, Logger: zerolog.Nop()})
		if err != nil {
			return Result{}, err
		}
		en, err := enrich.New(enrich.Config{URL: e.enURL, BatchSize: k.EnrichBatch, Concurrency: k.EnrichConcurrency})
		if err != nil {
			return Result{}, err
		}
		eng := &job.Engine{Store: st, DV: dv, Enricher: en, Log: zerolog.Nop(), Instance: fmt.Sprintf("bench-%d", i),
			Opt: job.Options{PlanPages: 1, ChunkSize: k.ChunkSize, TransformBatch: k.EnrichBatch, TransformWorkers: k.TransformWorkers,
				WriteWorkers: k.WriteWorkers, FlushInterval: time.Second, MaxDequeue: 5}}
		eng.Init()
		engines = append(engines, eng)
	}
	start := time.Now()
	run := job.RunID(spec.Name, start)
	first, err := engines[0].Start(ctx, spec, job.StartOptions{Run: run, Trigger: "bench"})
	if err != nil {
		return Result{}, err
	}
	q := &job.LocalQueue{Engines: engines, Workers: k.Instances * k.Workers}
	if err := q.Run(ctx, first); err != nil {
		return Result{}, err
	}
	wall := time.Since(start)
	s, err := job.ReadStatus(ctx, st, run)
	if err != nil || s.Summary == nil {
		return Result{}, fmt.Errorf("bench run did not complete: %v", err)
	}
	r := Result{Strategy: "this product", Records: s.Summary.Records}
	e.finish(&r, wall, e.dv.IDs(true))
	r.Note = fmt.Sprintf("%d instances × (Dataverse ≤%d, enrichment %d×%d), chunks of %d, UpdateMultiple of %d", k.Instances, k.DVConcurrency, k.EnrichConcurrency, k.EnrichBatch, k.ChunkSize, k.WriteBatch)
	return r, nil
}
