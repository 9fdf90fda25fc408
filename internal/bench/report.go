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
	// Only, when set, runs just these strategies ("sequential", "seed", "product").
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
		if len(o.Only) == 1 && o.Only["scale-out"] {
			break
		}
		if err := runProfile(ctx, o, p, w); err != nil {
			return err
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
		dir := filepath.Join(o.Dir, fmt.Sprintf("%s-%d", p.Name, time.Now().UnixNano()))
		r, err := Product(ctx, p, o.ProductTimeScale, k, dir)
		_ = os.RemoveAll(dir)
		if err != nil {
			return err
		}
		results, prod = append(results, r), &r
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
	fmt.Fprintf(w, "  product knobs: %s\n", k)

	if prod == nil {
		return nil
	}
	prodRatio := b.Hint.Total.Seconds() / prod.Wall.Seconds()
	pureRatio := b.Pure.Total.Seconds() / prod.Wall.Seconds()
	fmt.Fprintf(w, "product / bound:       %.0f%% of the hint-respecting bound's throughput (%s vs %s; target ≥ 85%%)  %s\n",
		100*prodRatio, prod.Wall.Round(100*time.Millisecond), b.Hint.Total.Round(10*time.Millisecond), mark(prodRatio >= 0.85))
	fmt.Fprintf(w, "                       %.0f%% of the pure-limits bound (%s), for reference\n", 100*pureRatio, b.Pure.Total.Round(10*time.Millisecond))
	if seed != nil {
		seedX := seed.Wall.Seconds() / prod.Wall.Seconds()
		if p.Name == "prod" {
			fmt.Fprintf(w, "product vs seed:       %.1f× faster (target ≥ 10×)  %s\n", seedX, mark(seedX >= 10))
		} else {
			fmt.Fprintf(w, "product vs seed:       %.1f× faster\n", seedX)
		}
	}
	if seq != nil {
		fmt.Fprintf(w, "product vs sequential: %.0f× faster\n", seq.Wall.Seconds()/prod.Wall.Seconds())
	}
	if p.Name == "prod" {
		fmt.Fprintf(w, "sent in Retry-After:   %d  %s\n", prod.DuringRA, mark(prod.DuringRA == 0))
	}
	fmt.Fprintf(w, "records lost:          %d of %d, inactive touched %d  %s\n", prod.Lost, prod.Checked, prod.Touched, mark(prod.Lost == 0 && prod.Touched == 0))
	return nil
}

func mark(ok bool) string {
	if ok {
		return "PASS"
	}
	return "MISS"
}
