package perf

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"text/tabwriter"
	"time"

	"dvbulk/internal/dvsim"
	"dvbulk/internal/enrich/enrichsim"
)

// Options choose what a benchmark run measures.
type Options struct {
	Profiles         []Profile
	ProductScale     float64 // time scale for the product (1 = real time; CPU overhead then counts fully)
	SeedScale        float64 // time scale for the latency-bound seed strategies
	SequentialSample int
	SeedLimit        map[string]int // per profile: run the seed pattern on this many records and extrapolate (0 = all)
	MemoryAccounts   int            // 0 skips the memory measurement
	Binary           string         // this executable, for the memory child process
	Dir              string         // scratch directory
}

// Run measures every profile and prints the figures.
func Run(ctx context.Context, o Options, w io.Writer) error {
	fmt.Fprintf(w, "dvbulk bench — %s, %d CPUs\n", time.Now().UTC().Format("2006-01-02 15:04 MST"), runtimeCPUs())
	for _, p := range o.Profiles {
		b := ComputeBound(p)
		fmt.Fprintf(w, "\n== profile %s: %d web servers, dop hint %d, %d active + %d inactive accounts, %.0f%% changed by the enrichment\n",
			p.Name, p.Servers, p.DOPHint, p.Active, p.Inactive, 100*p.ChangeFraction)
		fmt.Fprintf(w, "%s\n", b.Formula)
		var results []Result
		seq := Sequential(ctx, p, o.SeedScale, o.SequentialSample)
		results = append(results, seq)
		seed := SeedPattern(ctx, p, o.SeedScale, o.SeedLimit[p.Name])
		results = append(results, seed)
		prod, err := Product(ctx, p, o.ProductScale, DefaultKnobs(p), fmt.Sprintf("%s/%s-%d", o.Dir, p.Name, time.Now().UnixNano()))
		if err != nil {
			return err
		}
		results = append(results, prod)
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "strategy\twall (real-time eq.)\trecords/s\tDataverse requests\t429s (Dataverse/enrichment)\tsent inside Retry-After\tlost\tnote")
		for _, r := range results {
			fmt.Fprintf(tw, "%s\t%s\t%.0f\t%d\t%d/%d\t%d\t%d\t%s\n", r.Strategy, r.Wall.Round(100*time.Millisecond), r.RecPerSec, r.Requests, r.Throttled, r.EnrichThrott, r.DuringRA, r.Lost, r.Note)
		}
		tw.Flush()
		ratio := b.Total.Seconds() / prod.Wall.Seconds()
		fmt.Fprintf(w, "product / bound      %.0f%% of the bound's throughput (%s vs %s)  %s\n", 100*ratio, prod.Wall.Round(100*time.Millisecond), b.Total.Round(100*time.Millisecond), mark(ratio >= 0.85))
		fmt.Fprintf(w, "product vs seed      %.1f×  %s\n", seed.Wall.Seconds()/prod.Wall.Seconds(), markIf(p.Name == "prod", seed.Wall.Seconds()/prod.Wall.Seconds() >= 10))
		fmt.Fprintf(w, "product vs sequential %.0f×\n", seq.Wall.Seconds()/prod.Wall.Seconds())
		if p.Name == "prod" {
			fmt.Fprintf(w, "inside Retry-After   %d  %s;  records lost %d  %s\n", prod.DuringRA, mark(prod.DuringRA == 0), prod.Lost, mark(prod.Lost == 0))
		}
	}
	if o.MemoryAccounts > 0 {
		rss, took, err := memory(ctx, o)
		if err != nil {
			fmt.Fprintf(w, "\nmemory: %v\n", err)
		} else {
			fmt.Fprintf(w, "\nmemory: one instance process (dvbulk run, local store) over %d accounts: peak RSS %d MB in %s  %s\n",
				o.MemoryAccounts, rss>>20, took.Round(time.Second), mark(rss <= 200<<20))
		}
	}
	return nil
}

func mark(ok bool) string {
	if ok {
		return "PASS"
	}
	return "MISS"
}

func markIf(applies, ok bool) string {
	if !applies {
		return ""
	}
	return mark(ok)
}

// memory runs one instance as a child process (dvbulk run) over a large simulated table and reads
// its peak RSS from the kernel.
func memory(ctx context.Context, o Options) (int64, time.Duration, error) {
	const scale = 25
	p := Prod()
	dv := dvsim.New(dvsim.Config{Accounts: o.MemoryAccounts, Servers: 4, DOPHint: 48, TimeScale: scale, Latency: p.Latency})
	dvURL, stopDV := dv.Start()
	defer stopDV()
	en := enrichsim.New(enrichsim.Config{TimeScale: scale})
	enURL, stopEN := en.Start()
	defer stopEN()
	dir := fmt.Sprintf("%s/memory-%d", o.Dir, time.Now().UnixNano())
	cmd := exec.CommandContext(ctx, o.Binary, "run", "--workers", "8")
	cmd.Env = append(os.Environ(), "DATAVERSE_URL="+dvURL, "DATAVERSE_AUTH=none", "ENRICHMENT_URL="+enURL,
		"ENRICHMENT_BATCH_SIZE=25", "ENRICHMENT_CONCURRENCY=32", "DVBULK_DATAVERSE_CONCURRENCY=48", "DVBULK_CHECKPOINT_DIR="+dir,
		"DVBULK_LOG_LEVEL=warn", "DVBULK_PLAN_PAGES=1")
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		return 0, 0, fmt.Errorf("dvbulk run over %d accounts failed: %v\n%s", o.MemoryAccounts, err, tail(string(out)))
	}
	ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		return 0, 0, fmt.Errorf("no resource usage")
	}
	return ru.Maxrss * 1024, time.Since(start), nil
}

func tail(s string) string {
	if len(s) > 2000 {
		return s[len(s)-2000:]
	}
	return s
}

func runtimeCPUs() int {
	n, err := strconv.Atoi(os.Getenv("DVBULK_BENCH_CPUS"))
	if err == nil {
		return n
	}
	return numCPU()
}
