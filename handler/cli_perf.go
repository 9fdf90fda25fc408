package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"dvbulk/internal/perf"
)

const benchHelp = `Usage: dvbulk bench [flags]

Measures, side by side on the simulators, the nightly job's throughput: the bound computed from the
environment's limits alone, the seed's sequential loop (sampled, extrapolated), the seed's
per-record Parallel.ForEachAsync pattern, and this product (planner + chunk pipeline, 4 instances),
for the prod profile (4 web servers, dop hint 48) and the sandbox profile (1 server, dop hint 4), then
one instance's peak memory over 1,000,000 accounts. Figures are real-time equivalents.

Examples:
  dvbulk bench
  dvbulk bench --profile prod --memory-accounts 0
  dvbulk bench --accounts 10000

Flags:
`

// cmdBench is the "bench" subcommand.
func cmdBench(ctx context.Context, args []string, _ func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	profile := fs.String("profile", "all", "prod, sandbox or all")
	accounts := fs.Int("accounts", 50000, "active accounts per profile")
	productScale := fs.Float64("product-time-scale", 1, "time scale for the product run (1 = real time)")
	seedScale := fs.Float64("seed-time-scale", 5, "time scale for the latency-bound seed strategies")
	sample := fs.Int("sequential-sample", 300, "records the sequential strategy runs before extrapolating")
	memAccounts := fs.Int("memory-accounts", 1000000, "accounts for the memory measurement (0 skips it)")
	fs.Usage = func() { fmt.Fprint(stderr, benchHelp); fs.PrintDefaults() }
	if err := fs.Parse(args); err != nil {
		return usageError(err)
	}
	var profiles []perf.Profile
	switch *profile {
	case "prod":
		profiles = []perf.Profile{perf.Prod()}
	case "sandbox":
		profiles = []perf.Profile{perf.Sandbox()}
	case "all":
		profiles = []perf.Profile{perf.Prod(), perf.Sandbox()}
	default:
		fmt.Fprintf(stderr, "dvbulk bench: --profile must be prod, sandbox or all, got %q\n", *profile)
		return 2
	}
	if *accounts < 1000 || *accounts > 1000000 || *sample < 10 || *productScale < 1 || *seedScale < 1 || *memAccounts < 0 {
		fmt.Fprintln(stderr, "dvbulk bench: --accounts must be 1000-1000000, --sequential-sample >= 10, time scales >= 1, --memory-accounts >= 0")
		return 2
	}
	for i := range profiles {
		profiles[i].Active, profiles[i].Inactive = *accounts, *accounts/10
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "dvbulk bench: %v\n", err)
		return 1
	}
	dir, err := os.MkdirTemp("", "dvbulk-bench-")
	if err != nil {
		fmt.Fprintf(stderr, "dvbulk bench: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	o := perf.Options{Profiles: profiles, ProductScale: *productScale, SeedScale: *seedScale, SequentialSample: *sample,
		SeedLimit: map[string]int{"prod": 10000, "sandbox": 2000}, MemoryAccounts: *memAccounts, Binary: exe, Dir: dir}
	if err := perf.Run(ctx, o, stdout); err != nil {
		fmt.Fprintf(stderr, "dvbulk bench: %v\n", err)
		return 1
	}
	return 0
}
