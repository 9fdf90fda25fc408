package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"dvbulk/internal/bench"
)

const benchHelp = `Usage: dvbulk bench [flags]

Measures the nightly enrichment job side by side on the built-in simulators and prints the figures:
the bound computed from the environment's limits alone (pure, and respecting x-ms-dop-hint), the
seed's sequential loop (sampled, extrapolated), the seed's per-record Parallel.ForEachAsync pattern,
and this product (planner + chunk pipeline over several instances) twice: tuned (told the
enrichment service's limits) and with the shipped defaults (no setting given), for the prod
profile (4 web servers, dop hint 48) and the sandbox profile (1 server, dop hint 4); then the peak
memory of one instance process (dvbulk run) over 1,000,000 accounts; and the scale-out table (1, 3
and 8 instances of one application user on a profile whose execution-time budget binds, sharing one
service-protection budget; --scale-out-unshared adds each without). The enrichment service's
capacity (16-128 concurrent requests, queueing above it) and records per request (1-100) are drawn
per run from --enrich-seed and printed; the bound uses those true values. The simulators run time-scaled; every
figure is a real-time equivalent. Nothing is asserted: targets are marked PASS or MISS.

Examples:
  dvbulk bench
  dvbulk bench --profile prod --skip-memory
  dvbulk bench --accounts 10000 --skip-memory
  dvbulk bench --profile sandbox --time-scale 5
  dvbulk bench --profile prod --only defaults --skip-memory --enrich-seed 7
  dvbulk bench --only scale-out --skip-memory --scale-out-instances 8 --scale-out-unshared

Flags:
`

// cmdBench is the "bench" subcommand.
func cmdBench(ctx context.Context, args []string, _ func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	profile := fs.String("profile", "all", "prod, sandbox or all")
	accounts := fs.Int("accounts", 50000, "active accounts per profile (inactive: a tenth of that)")
	scale := fs.Float64("time-scale", 10, "time scale of the simulators for the seed pattern")
	seqScale := fs.Float64("sequential-time-scale", 2, "time scale for the sequential sample")
	productScale := fs.Float64("product-time-scale", 1, "time scale for the product's runs (its own CPU time is not scaled)")
	sample := fs.Int("sequential-sample", 100, "records the sequential strategy runs before extrapolating")
	seedBudget := fs.Duration("seed-budget", time.Minute, "wall time after which the seed pattern is cut and extrapolated")
	skipMemory := fs.Bool("skip-memory", false, "skip the 1,000,000-account memory measurement")
	memAccounts := fs.Int("memory-accounts", 1_000_000, "accounts for the memory measurement")
	memScale := fs.Float64("memory-time-scale", 25, "time scale of the memory measurement's simulators")
	var kn bench.Knobs
	fs.IntVar(&kn.Instances, "instances", 0, "product: instances (0 = the profile's default; the Dataverse and enrichment allowances are split over them)")
	fs.IntVar(&kn.ChunkSize, "chunk-size", 0, "product: records per chunk (0 = default)")
	fs.IntVar(&kn.WriteBatch, "write-batch", 0, "product: records per UpdateMultiple (0 = default)")
	fs.IntVar(&kn.TransformWorkers, "transform-workers", 0, "product: concurrent enrichment calls per chunk (0 = default)")
	fs.IntVar(&kn.WriteWorkers, "write-workers", 0, "product: concurrent writes per chunk (0 = default)")
	fs.IntVar(&kn.Messages, "messages", 0, "product: chunk messages processed at once per instance (0 = default)")
	fs.DurationVar(&kn.FlushInterval, "flush-interval", 0, "product: how often a running chunk checkpoints (0 = default)")
	only := fs.String("only", "", "comma-separated strategies to run: sequential, seed, product (tuned), defaults, scale-out, nightly (full vs incremental nightly runs) (default all)")
	enrichSeed := fs.Uint64("enrich-seed", 0, "seed of the enrichment service's capacity (16-128) and records per request (1-100), which the product is not told (0 = from the clock; printed)")
	fixedService := fs.Bool("fixed-service", false, "use the profiles' own enrichment service (32 concurrent, 25 records, 429 at once) instead of a drawn one")
	scaleInst := fs.String("scale-out-instances", "1,3,8", "scale-out: comma-separated instance counts")
	scaleUnshared := fs.Bool("scale-out-unshared", false, "scale-out: also run each count with the shared budget off")
	scaleScale := fs.Float64("scale-out-time-scale", 20, "scale-out: time scale of the simulators")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile (pprof) of the whole bench to this file")
	fs.Usage = func() { fmt.Fprint(stderr, benchHelp); fs.PrintDefaults() }
	if err := fs.Parse(args); err != nil {
		return usageError(err)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "dvbulk bench: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	var profiles []bench.Profile
	switch *profile {
	case "prod":
		profiles = []bench.Profile{bench.Prod()}
	case "sandbox":
		profiles = []bench.Profile{bench.Sandbox()}
	case "all":
		profiles = []bench.Profile{bench.Prod(), bench.Sandbox()}
	default:
		fmt.Fprintf(stderr, "dvbulk bench: --profile must be prod, sandbox or all, got %q\n", *profile)
		return 2
	}
	switch {
	case *accounts < 100 || *accounts > 2_000_000:
		fmt.Fprintf(stderr, "dvbulk bench: --accounts must be 100-2000000, got %d\n", *accounts)
		return 2
	case *sample < 1 || *seedBudget < time.Second:
		fmt.Fprintln(stderr, "dvbulk bench: --sequential-sample must be at least 1 and --seed-budget at least 1s")
		return 2
	case *scale < 1 || *scale > 1000 || *seqScale < 1 || *seqScale > 1000 || *productScale < 1 || *productScale > 1000 || *memScale < 1 || *memScale > 1000:
		fmt.Fprintln(stderr, "dvbulk bench: time scales must be 1-1000")
		return 2
	case *memAccounts < 1000 || *memAccounts > 2_000_000:
		fmt.Fprintf(stderr, "dvbulk bench: --memory-accounts must be 1000-2000000, got %d\n", *memAccounts)
		return 2
	}
	sel := map[string]bool{}
	for _, s := range strings.Split(*only, ",") {
		switch s = strings.TrimSpace(s); s {
		case "":
		case "sequential", "seed", "product", "defaults", "scale-out", "nightly":
			sel[s] = true
		default:
			fmt.Fprintf(stderr, "dvbulk bench: --only takes sequential, seed, product, defaults, scale-out and nightly, got %q\n", s)
			return 2
		}
	}
	var counts []int
	for _, v := range strings.Split(*scaleInst, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 1 || n > 100 {
			fmt.Fprintf(stderr, "dvbulk bench: --scale-out-instances takes counts from 1 to 100, got %q\n", v)
			return 2
		}
		counts = append(counts, n)
	}
	if *scaleScale < 1 || *scaleScale > 1000 {
		fmt.Fprintln(stderr, "dvbulk bench: time scales must be 1-1000")
		return 2
	}
	seedValue := *enrichSeed
	for seedValue == 0 {
		seedValue = uint64(time.Now().UnixNano()) % 1_000_000
	}
	for i := range profiles {
		profiles[i].Active, profiles[i].Inactive = *accounts, *accounts/10
		if !*fixedService {
			profiles[i] = profiles[i].RandomService(seedValue)
		}
	}
	dir, err := os.MkdirTemp("", "dvbulk-bench-")
	if err != nil {
		fmt.Fprintf(stderr, "dvbulk bench: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	o := bench.Options{Profiles: profiles, TimeScale: *scale, ProductTimeScale: *productScale,
		SequentialTimeScale: *seqScale, SequentialSample: *sample, SeedBudget: *seedBudget, Only: sel, Dir: dir, Knobs: map[string]bench.Knobs{}}
	for _, p := range profiles {
		o.Knobs[p.Name] = bench.DefaultKnobs(p).Override(kn)
	}
	o.ScaleOut = &bench.ScaleOutOptions{Profile: bench.BudgetBound(), TimeScale: *scaleScale, Instances: counts,
		Unshared: *scaleUnshared, Dir: dir}
	if !*skipMemory {
		exe, err := os.Executable()
		if err != nil {
			fmt.Fprintf(stderr, "dvbulk bench: %v\n", err)
			return 1
		}
		o.Memory = &bench.MemoryOptions{Binary: exe, Accounts: *memAccounts, TimeScale: *memScale,
			Dir: filepath.Join(dir, "memory"), Settings: bench.DefaultMemorySettings(), Workers: 4}
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintf(stderr, "dvbulk bench: %v\n", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(stderr, "dvbulk bench: %v\n", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	if err := bench.Run(ctx, o, stdout); err != nil {
		fmt.Fprintf(stderr, "dvbulk bench: %v\n", err)
		return 1
	}
	return 0
}
