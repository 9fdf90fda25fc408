package bench

import (
	"context"
	"fmt"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"dvbulk/internal/app"
	"dvbulk/internal/checkpoint"
	"dvbulk/internal/dataverse"
	"dvbulk/internal/enrich"
	"dvbulk/internal/job"
	"dvbulk/internal/pipeline"
)

// Knobs are the operator settings the product runs with (the app settings of the same names). A
// zero value leaves the setting unset: the shipped default applies.
type Knobs struct {
	Instances         int           // Functions instances (engines with their own clients)
	DVConcurrency     int           // DVBULK_DATAVERSE_CONCURRENCY per instance
	EnrichConcurrency int           // ENRICHMENT_CONCURRENCY per instance
	EnrichBatch       int           // ENRICHMENT_BATCH_SIZE
	EnrichFixed       bool          // ENRICHMENT_ADAPTIVE=false: EnrichConcurrency always, never adapted
	ChunkSize         int           // DVBULK_CHUNK_SIZE
	WriteBatch        int           // the job's write.batchSize (records per UpdateMultiple)
	TransformWorkers  int           // DVBULK_TRANSFORM_WORKERS
	WriteWorkers      int           // DVBULK_WRITE_WORKERS
	Messages          int           // queue messages processed at once per instance (host.json batchSize)
	FlushInterval     time.Duration // DVBULK_FLUSH_INTERVAL: how often a running chunk checkpoints
}

// DefaultKnobs sizes the product for p the way the README tells an operator to: the dop hint split
// over the instances, the enrichment service's 32 concurrent requests split over them too (so the
// service never answers 429), the service's largest batch, and enough chunks in flight per instance
// to keep both limits busy. A sandbox's small hint gains nothing from more instances.
func DefaultKnobs(p Profile) Knobs {
	inst := 4
	if p.DOPHint < 8 {
		inst = 1
	}
	k := Knobs{Instances: inst, DVConcurrency: max(1, p.DOPHint/inst), EnrichConcurrency: max(1, p.EnrichConcurrency/inst),
		EnrichBatch: min(p.EnrichBatch, 1000), EnrichFixed: true, ChunkSize: job.DefaultChunkSize, WriteBatch: dataverse.DefaultWriteBatch, WriteWorkers: pipeline.DefaultWriteWorkers, Messages: 6, FlushInterval: 2 * time.Second}
	// One chunk alone can fill the instance's enrichment allowance (its client caps all chunks together).
	k.TransformWorkers = k.EnrichConcurrency
	if p.DOPHint < 8 {
		// Few Dataverse slots: make every request count (fewer, larger UpdateMultiple requests).
		k.ChunkSize, k.WriteBatch, k.WriteWorkers, k.TransformWorkers, k.Messages = 1000, 400, 2, 8, 4
	}
	return k
}

// hostMessages is how many queue messages one instance processes at once with the shipped
// host.json: batchSize 4, and the host fetches the next batch when newBatchThreshold 2 remain.
const hostMessages = 4 + 2

// ShippedKnobs is the product as shipped: nothing set but the instance count (the same as the
// tuned row's, a deployment choice, not a setting) and the host.json message concurrency.
func ShippedKnobs(p Profile) Knobs {
	return Knobs{Instances: DefaultKnobs(p).Instances, Messages: hostMessages}
}

// Override replaces k's settings with o's non-zero ones; a changed instance count re-splits the
// Dataverse and enrichment allowances.
func (k Knobs) Override(o Knobs) Knobs {
	set := func(dst *int, v int) {
		if v > 0 {
			*dst = v
		}
	}
	if o.Instances > 0 && o.Instances != k.Instances {
		k.DVConcurrency = max(1, k.DVConcurrency*k.Instances/o.Instances)
		k.EnrichConcurrency = max(1, k.EnrichConcurrency*k.Instances/o.Instances)
		k.Instances = o.Instances
	}
	set(&k.DVConcurrency, o.DVConcurrency)
	set(&k.EnrichConcurrency, o.EnrichConcurrency)
	set(&k.EnrichBatch, o.EnrichBatch)
	set(&k.ChunkSize, o.ChunkSize)
	set(&k.WriteBatch, o.WriteBatch)
	set(&k.TransformWorkers, o.TransformWorkers)
	set(&k.WriteWorkers, o.WriteWorkers)
	set(&k.Messages, o.Messages)
	if o.FlushInterval > 0 {
		k.FlushInterval = o.FlushInterval
	}
	return k
}

func (k Knobs) String() string {
	n := func(v int) string {
		if v == 0 {
			return "default"
		}
		return strconv.Itoa(v)
	}
	enrich := n(k.EnrichConcurrency)
	if k.EnrichFixed {
		enrich += " fixed"
	} else {
		enrich += " adaptive"
	}
	flush := "default"
	if k.FlushInterval > 0 {
		flush = k.FlushInterval.String()
	}
	return fmt.Sprintf("%d instances × (Dataverse ≤%s, enrichment %s × %s records, %d messages, %s transform / %s write workers per chunk), chunks of %s, UpdateMultiple of %s, checkpoint every %s",
		k.Instances, n(k.DVConcurrency), enrich, n(k.EnrichBatch), k.Messages, n(k.TransformWorkers), n(k.WriteWorkers),
		n(k.ChunkSize), n(k.WriteBatch), flush)
}

// Settings are the app settings of one instance running with k against the simulators at dvURL and
// enURL: what an operator would put in the Function App's configuration. Zero knobs are left out.
func (k Knobs) Settings(dvURL, enURL string) map[string]string {
	s := map[string]string{"DATAVERSE_URL": dvURL, "DATAVERSE_AUTH": "none", "ENRICHMENT_URL": enURL}
	set := func(name string, v int) {
		if v > 0 {
			s[name] = strconv.Itoa(v)
		}
	}
	set("DVBULK_DATAVERSE_CONCURRENCY", k.DVConcurrency)
	set("ENRICHMENT_CONCURRENCY", k.EnrichConcurrency)
	set("ENRICHMENT_BATCH_SIZE", k.EnrichBatch)
	set("DVBULK_CHUNK_SIZE", k.ChunkSize)
	set("DVBULK_TRANSFORM_WORKERS", k.TransformWorkers)
	set("DVBULK_WRITE_WORKERS", k.WriteWorkers)
	if k.FlushInterval > 0 {
		s["DVBULK_FLUSH_INTERVAL"] = k.FlushInterval.String()
	}
	if k.EnrichFixed {
		s["ENRICHMENT_ADAPTIVE"] = "false"
	}
	return s
}

// Product runs the real planner and chunk pipeline: several engines (instances), each with its own
// Dataverse and enrichment clients built by app.NewEngine from the app settings of k (as the custom
// handler builds them), sharing one local checkpoint directory and one in-process queue.
func Product(ctx context.Context, p Profile, scale float64, k Knobs, dir string) (Result, error) {
	e := newEnv(p, scale)
	defer e.stop()
	st, err := checkpoint.NewDir(dir)
	if err != nil {
		return Result{}, fmt.Errorf("bench: checkpoint dir: %w", err)
	}
	settings := k.Settings(e.dvURL, e.enURL)
	cfg, err := app.Load(func(name string) string { return settings[name] }, true)
	if err != nil {
		return Result{}, fmt.Errorf("bench: settings: %w", err)
	}
	spec := cfg.Job
	if k.WriteBatch > 0 {
		spec.Write.BatchSize = k.WriteBatch
	}
	var (
		engines []*job.Engine
		dvs     []*dataverse.Client
		dead    atomic.Int64
	)
	for i := range k.Instances {
		eng, dv, err := app.NewEngine(cfg, st, zerolog.Nop())
		if err != nil {
			return Result{}, fmt.Errorf("bench: %w", err)
		}
		eng.Instance = fmt.Sprintf("bench-%d", i)
		engines, dvs = append(engines, eng), append(dvs, dv)
	}
	util := sampleUtilisation(ctx, e)
	cpu0 := cpuTime()
	start := time.Now()
	run := job.RunID(spec.Name, start)
	first, err := engines[0].Start(ctx, spec, job.StartOptions{Run: run, Trigger: "bench", At: start})
	if err != nil {
		return Result{}, fmt.Errorf("bench: start: %w", err)
	}
	q := &job.LocalQueue{Engines: engines, Workers: k.Instances * k.Messages, DeadLetters: func(string) { dead.Add(1) }}
	if err := q.Run(ctx, first); err != nil {
		return Result{}, fmt.Errorf("bench: run: %w", err)
	}
	wall := time.Since(start)
	cpu := cpuTime() - cpu0
	u := util()
	s, err := job.ReadStatus(context.WithoutCancel(ctx), st, run)
	if err != nil {
		return Result{}, fmt.Errorf("bench: %w", err)
	}
	if s.Summary == nil {
		return Result{}, fmt.Errorf("bench: run %s did not complete (%d dead letters)", run, dead.Load())
	}
	r := Result{Strategy: "this product", Records: p.Active}
	e.finish(&r, wall, e.dv.IDs(true))
	var peak int
	for _, dv := range dvs {
		peak += dv.Stats().PeakInFlight
	}
	r.Note = fmt.Sprintf("enrichment slots busy %.1f of %d on average (%.1f queued), first busy at %.2fs, last at %.2fs of %.2fs; Dataverse in flight %.1f on average, peak %d (sum over instances); CPU %.1fs in %.1fs wall (%.0f%% of %d cores, simulators included)",
		u.Enrich, p.EnrichConcurrency, u.EnrichQueued, u.FirstEnrich.Seconds()*scale, u.LastEnrich.Seconds()*scale, u.Wall.Seconds()*scale, u.DV, peak, cpu.Seconds(), wall.Seconds(), 100*cpu.Seconds()/wall.Seconds()/float64(runtime.NumCPU()), runtime.NumCPU())
	r.Note += "; Dataverse requests by kind: " + byKind(e.dv.Counters().ByKind)
	ec := e.en.Counters()
	r.Note += fmt.Sprintf("; enrichment service: peak %d of %d slots busy, %d requests (%d throttled, %d refused for size)",
		ec.PeakServing, p.EnrichConcurrency, ec.Requests, ec.Throttled, ec.Rejected)
	var limits, sizes, cuts []string
	for _, eng := range engines {
		if c, ok := eng.Enricher.(*enrich.Client); ok {
			st := c.Stats()
			limits, sizes = append(limits, strconv.Itoa(st.Limit)), append(sizes, strconv.Itoa(st.BatchSize))
			cuts = append(cuts, strconv.FormatInt(st.LimitCuts, 10))
		}
	}
	r.Note += fmt.Sprintf("; per instance at the end: concurrency limit %s after %s cuts, records per request %s",
		strings.Join(limits, "/"), strings.Join(cuts, "/"), strings.Join(sizes, "/"))
	if n := dead.Load(); n > 0 {
		r.Note += fmt.Sprintf("; %d dead letters", n)
	}
	return r, nil
}

// fleet is the product's instances: engines with their own clients, one store, one in-process queue.
type fleet struct {
	engines []*job.Engine
	dvs     []*dataverse.Client
	dead    atomic.Int64
}

// newFleet builds k.Instances engines from cfg as the custom handler builds them; opts gives an
// instance's extra options (nil: none).
func newFleet(cfg *app.Config, st checkpoint.Store, k Knobs, opts func(i int, name string) []app.EngineOption) (*fleet, error) {
	f := &fleet{}
	for i := range k.Instances {
		name := fmt.Sprintf("bench-%d", i)
		var o []app.EngineOption
		if opts != nil {
			o = opts(i, name)
		}
		eng, dv, err := app.NewEngine(cfg, st, zerolog.Nop(), o...)
		if err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		eng.Instance = name
		f.engines, f.dvs = append(f.engines, eng), append(f.dvs, dv)
	}
	return f, nil
}

// run starts spec and processes its messages until none is left; it fails if the run did not
// complete.
func (f *fleet) run(ctx context.Context, spec *job.Spec, k Knobs, st checkpoint.Store) (time.Duration, error) {
	start := time.Now()
	run := job.RunID(spec.Name, start)
	first, err := f.engines[0].Start(ctx, spec, job.StartOptions{Run: run, Trigger: "bench", At: start})
	if err != nil {
		return 0, fmt.Errorf("bench: start: %w", err)
	}
	q := &job.LocalQueue{Engines: f.engines, Workers: k.Instances * k.Messages, DeadLetters: func(string) { f.dead.Add(1) }}
	if err := q.Run(ctx, first); err != nil {
		return 0, fmt.Errorf("bench: run: %w", err)
	}
	wall := time.Since(start)
	s, err := job.ReadStatus(context.WithoutCancel(ctx), st, run)
	if err != nil {
		return 0, fmt.Errorf("bench: %w", err)
	}
	if s.Summary == nil {
		return 0, fmt.Errorf("bench: run %s did not complete (%d dead letters)", run, f.dead.Load())
	}
	return wall, nil
}

func byKind(m map[string]int64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var sb strings.Builder
	for i, k := range keys {
		if i > 0 {
			sb.WriteString(", ")
		}
		fmt.Fprintf(&sb, "%s %d", k, m[k])
	}
	return sb.String()
}
