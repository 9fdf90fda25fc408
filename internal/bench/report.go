package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"text/tabwriter"
	"time"

	"dvbulk/internal/enrich"
)

// Options choose what one benchmark run measures.
type Options struct {
	Profiles []Profile
	// TimeScale runs the latency-bound seed strategies this many times faster than real time.
	TimeScale float64
	// ProductTimeScale is the product's time scale. Its own CPU work per record is not scaled, so
	// a scale above what the machine can keep up with charges the product for CPU time the real
	// job would spend spread over a longer wall time.
	ProductTimeScale float64
	// SequentialTimeScale is the sequential loop's time scale: kept low because its per-request
	// overhead on this machine is not scaled and would be magnified in a one-at-a-time loop.
	SequentialTimeScale float64
	SequentialSample    int           // records the sequential strategy runs before extrapolating
	SeedBudget          time.Duration // wall time after which the seed pattern is cut and extrapolated
	Knobs               map[string]Knobs
	// Only, when set, runs just these strategies ("sequential", "seed", "product") or sections
	// ("nightly": full vs incremental nightly runs; "scale-out").
	Only   map[string]bool
	Memory *MemoryOptions // nil skips the memory measurement
	// ScaleOut, when set, also prints the scale-out table (Only "scale-out" prints just that).
	ScaleOut  *ScaleOutOptions
	Dir       string // scratch directory
	GoVersion string
}

// Run measures every profile and the memory of one instance, printing as it goes.
func Run(ctx context.Context, o Options, w io.Writer) error {
	fmt.Fprintf(w, "dvbulk bench: %s, %d CPUs, %s %s/%s\n", time.Now().UTC().Format("2006-01-02 15:04 MST"),
		runtime.NumCPU(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	fmt.Fprintf(w, "time scale: sequential ×%g, seed pattern ×%g, product ×%g; every figure below is a real-time equivalent (measured × scale)\n",
		o.SequentialTimeScale, o.TimeScale, o.ProductTimeScale)
	// The memory child runs first, while this process is small (see Memory); its figures print last.
	var (
		mem    MemoryResult
		memErr error
	)
	if o.Memory != nil {
		mem, memErr = Memory(ctx, *o.Memory)
		runtime.GC()
	}
	for _, p := range o.Profiles {
		if len(o.Only) == 1 && (o.Only["scale-out"] || o.Only["nightly"]) {
			break
		}
		if err := runProfile(ctx, o, p, w); err != nil {
			return err
		}
	}
	if len(o.Only) == 0 || o.Only["nightly"] {
		for _, p := range o.Profiles {
			if p.Name != "prod" {
				continue // the prod profile stands for the nightly sync
			}
			k, ok := o.Knobs[p.Name]
			if !ok {
				k = DefaultKnobs(p)
			}
			rs, err := Nightly(ctx, p, k, 0.01, o.Dir)
			if err != nil {
				return err
			}
			WriteNightly(w, p, rs)
		}
	}
	if o.ScaleOut != nil && (len(o.Only) == 0 || o.Only["scale-out"]) {
		if err := RunScaleOut(ctx, *o.ScaleOut, w); err != nil {
			return err
		}
	}
	if o.Memory != nil {
		fmt.Fprintf(w, "\n== memory: one instance process (dvbulk run, local checkpoint store) over %d accounts\n", o.Memory.Accounts)
		if memErr != nil {
			fmt.Fprintf(w, "memory: %v  MISS\n", memErr)
			return nil
		}
		fmt.Fprintf(w, "peak RSS %.1f MB (kernel ru_maxrss of the child; target ≤ 200 MB)  %s\n", float64(mem.MaxRSS)/(1<<20), mark(mem.MaxRSS <= 200<<20))
		fmt.Fprintf(w, "run took %s at time scale ×%g (%d records written, %d Dataverse requests, %d 429s, %d accounts without the enrichment)\n",
			mem.Took.Round(time.Second), o.Memory.TimeScale, mem.Writes, mem.Requests, mem.Throttled, mem.Lost)
		fmt.Fprintf(w, "settings: %s\n", SettingsString(o.Memory.Settings))
	}
	return nil
}

func runProfile(ctx context.Context, o Options, p Profile, w io.Writer) error {
	b := ComputeBounds(p)
	fmt.Fprintf(w, "\n== profile %s: %d web server(s), x-ms-dop-hint %d, %d active + %d inactive accounts, the enrichment changes %.0f%% (%d writes)\n",
		p.Name, p.Servers, p.DOPHint, p.Active, p.Inactive, 100*p.ChangeFraction, p.Changed())
	queue := "answers 429 at once above it"
	if p.EnrichQueue {
		queue = "queues up to as many again, then 429"
	}
	drawn := "the profile's own"
	if p.EnrichSeed != 0 {
		drawn = fmt.Sprintf("drawn with --enrich-seed %d from %d-%d and %d-%d; the product is not told", p.EnrichSeed,
			MinServiceConcurrency, MaxServiceConcurrency, MinServiceBatch, MaxServiceBatch)
	}
	fmt.Fprintf(w, "enrichment service: %d concurrent requests (%s), at most %d records per request (%s)\n",
		p.EnrichConcurrency, queue, p.EnrichBatch, drawn)
	fmt.Fprintf(w, "bound from the limits alone, pure (C = 52 × %d servers = %d):\n%s\n", p.Servers, b.Pure.Concurrency, b.Pure.Formula(p))
	fmt.Fprintf(w, "bound respecting the hint (C = min(hint %d, %d) = %d; the product never exceeds min(hint, cap)):\n%s\n",
		p.DOPHint, p.Concurrency*p.Servers, b.Hint.Concurrency, b.Hint.Formula(p))

	k, ok := o.Knobs[p.Name]
	if !ok {
		k = DefaultKnobs(p)
	}
	want := func(s string) bool { return len(o.Only) == 0 || o.Only[s] }
	var results []Result
	var seq, seed, prod *Result
	if want("sequential") {
		r, err := Sequential(ctx, p, o.SequentialTimeScale, o.SequentialSample)
		if err != nil {
			return err
		}
		results, seq = append(results, r), &r
	}
	if want("seed") {
		r, err := SeedPattern(ctx, p, o.TimeScale, o.SeedBudget)
		if err != nil {
			return err
		}
		results, seed = append(results, r), &r
	}
	if want("product") {
		r, err := runProduct(ctx, o, p, k, "product, tuned")
		if err != nil {
			return err
		}
		results, prod = append(results, r), &r
	}
	var shipped *Result
	if want("defaults") {
		r, err := runProduct(ctx, o, p, ShippedKnobs(p), "product, defaults")
		if err != nil {
			return err
		}
		results, shipped = append(results, r), &r
	}

	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "strategy\twall\trecords/s\tDV requests\tDV 429s\tenrich 429s\tsent in Retry-After\tlost\tinactive touched\t")
	for _, r := range results {
		wall := r.Wall.Round(100 * time.Millisecond).String()
		if r.Extrapolated {
			wall += "*"
		}
		fmt.Fprintf(tw, "%s\t%s\t%.0f\t%d\t%d\t%d\t%d\t%d/%d\t%d\t\n", r.Strategy, wall, r.RecPerSec, r.Requests, r.Throttled,
			r.EnrichThrottle, r.DuringRA, r.Lost, r.Checked, r.Touched)
	}
	tw.Flush()
	for _, r := range results {
		fmt.Fprintf(w, "  %s: %s\n", r.Strategy, r.Note)
	}
	fmt.Fprintf(w, "  * extrapolated from a sample; request and 429 counts are the sample's\n")
	if prod != nil {
		fmt.Fprintf(w, "  tuned knobs (told the service's true limits): %s\n", k)
	}
	if shipped != nil {
		fmt.Fprintf(w, "  defaults: %s\n", ShippedKnobs(p))
	}
	for _, r := range []*Result{prod, shipped} {
		if r != nil {
			verdict(w, p, b, r, seed, seq, prod)
		}
	}
	return nil
}

func runProduct(ctx context.Context, o Options, p Profile, k Knobs, name string) (Result, error) {
	dir := filepath.Join(o.Dir, fmt.Sprintf("%s-%d", p.Name, time.Now().UnixNano()))
	defer os.RemoveAll(dir)
	r, err := Product(ctx, p, o.ProductTimeScale, k, dir)
	r.Strategy = name
	return r, err
}

// verdict prints one product row's figures against the targets; a defaults row is also compared
// with the tuned one (tuned, when it ran) and judged on its enrichment 429s.
func verdict(w io.Writer, p Profile, b Bounds, r, seed, seq, tuned *Result) {
	fmt.Fprintf(w, "-- %s\n", r.Strategy)
	ratio := b.Hint.Total.Seconds() / r.Wall.Seconds()
	fmt.Fprintf(w, "vs bound:              %.0f%% of the hint-respecting bound's throughput (%s vs %s; target ≥ 85%%)  %s\n",
		100*ratio, r.Wall.Round(100*time.Millisecond), b.Hint.Total.Round(10*time.Millisecond), mark(ratio >= 0.85))
	fmt.Fprintf(w, "                       %.0f%% of the pure-limits bound (%s), for reference\n",
		100*b.Pure.Total.Seconds()/r.Wall.Seconds(), b.Pure.Total.Round(10*time.Millisecond))
	if p.EnrichBatch > enrich.DefaultBatchSize {
		// The bound may ask for more records per request than the shipped ceiling sends.
		c := p
		c.EnrichBatch = enrich.DefaultBatchSize
		cb := ComputeBounds(c)
		fmt.Fprintf(w, "                       %.0f%% of the bound with at most %d records per request (ENRICHMENT_BATCH_SIZE's default ceiling; %s), for reference\n",
			100*cb.Hint.Total.Seconds()/r.Wall.Seconds(), enrich.DefaultBatchSize, cb.Hint.Total.Round(10*time.Millisecond))
	}
	if seed != nil {
		seedX := seed.Wall.Seconds() / r.Wall.Seconds()
		if p.Name == "prod" {
			fmt.Fprintf(w, "vs seed:               %.1f× faster (target ≥ 10×)  %s\n", seedX, mark(seedX >= 10))
		} else {
			fmt.Fprintf(w, "vs seed:               %.1f× faster\n", seedX)
		}
	}
	if seq != nil {
		fmt.Fprintf(w, "vs sequential:         %.0f× faster\n", seq.Wall.Seconds()/r.Wall.Seconds())
	}
	if tuned != nil && tuned != r {
		x := tuned.Wall.Seconds() / r.Wall.Seconds()
		fmt.Fprintf(w, "vs tuned:              %.0f%% of the tuned row's throughput (goal ≥ 90%%)  %s\n", 100*x, mark(x >= 0.9))
	}
	share := 0.0
	if r.EnrichRequests > 0 {
		share = float64(r.EnrichThrottle) / float64(r.EnrichRequests)
	}
	fmt.Fprintf(w, "enrichment 429s:       %d of %d requests (%.2f%%; target ≤ 1%%)  %s\n", r.EnrichThrottle, r.EnrichRequests, 100*share, mark(share <= 0.01))
	if p.Name == "prod" {
		fmt.Fprintf(w, "sent in Retry-After:   %d  %s\n", r.DuringRA, mark(r.DuringRA == 0))
	}
	fmt.Fprintf(w, "records lost:          %d of %d, inactive touched %d  %s\n", r.Lost, r.Checked, r.Touched, mark(r.Lost == 0 && r.Touched == 0))
}

func mark(ok bool) string {
	if ok {
		return "PASS"
	}
	return "MISS"
}
