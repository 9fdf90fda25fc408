package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"time"

	"dvbulk/internal/dvsim"
	"dvbulk/internal/enrich/enrichsim"
)

const simulateHelp = `Usage: dvbulk simulate [flags]

Starts the built-in Dataverse and enrichment simulators on loopback and prints one line per simulator:
  dataverse <base URL>
  enrichment <URL>
then serves until interrupted. Point DATAVERSE_URL (with DATAVERSE_AUTH=none) and ENRICHMENT_URL at
them to try "dvbulk run" or "func start" without a real environment.

Examples:
  dvbulk simulate
  dvbulk simulate --accounts 1000000 --servers 1 --dop 4
  dvbulk simulate --dataverse-port 5555 --enrichment-port 5556

Flags:
`

// simFlags are the simulator knobs shared by simulate, demo and bench.
type simFlags struct {
	accounts, inactive, servers, dop int
	changeFraction, timeScale        float64
	latency                          time.Duration
}

func (s *simFlags) register(fs *flag.FlagSet, accounts int) {
	fs.IntVar(&s.accounts, "accounts", accounts, "active accounts in the Dataverse simulator")
	fs.IntVar(&s.inactive, "inactive", accounts/10, "inactive accounts (statecode 1), never to be touched")
	fs.IntVar(&s.servers, "servers", 4, "web servers behind the simulated environment")
	fs.IntVar(&s.dop, "dop", 48, "x-ms-dop-hint the simulator recommends")
	fs.Float64Var(&s.changeFraction, "change", 0.8, "fraction of accounts the enrichment changes")
	fs.Float64Var(&s.timeScale, "time-scale", 1, "simulated time runs this many times faster (windows, latency, Retry-After)")
	fs.DurationVar(&s.latency, "latency", 40*time.Millisecond, "network latency per Dataverse request")
}

func (s *simFlags) validate() error {
	switch {
	case s.accounts < 0 || s.accounts > 2_000_000:
		return fmt.Errorf("--accounts must be 0-2000000, got %d", s.accounts)
	case s.inactive < 0 || s.inactive > 2_000_000:
		return fmt.Errorf("--inactive must be 0-2000000, got %d", s.inactive)
	case s.servers < 1 || s.servers > 64:
		return fmt.Errorf("--servers must be 1-64, got %d", s.servers)
	case s.dop < 1 || s.dop > 1000:
		return fmt.Errorf("--dop must be 1-1000, got %d", s.dop)
	case s.changeFraction < 0 || s.changeFraction > 1:
		return fmt.Errorf("--change must be 0-1, got %g", s.changeFraction)
	case s.timeScale < 1 || s.timeScale > 1000:
		return fmt.Errorf("--time-scale must be 1-1000, got %g", s.timeScale)
	case s.latency < 0 || s.latency > 10*time.Second:
		return fmt.Errorf("--latency must be 0-10s, got %s", s.latency)
	}
	return nil
}

// dataverseSim builds the Dataverse simulator. A (1-change) share of the active accounts already
// holds what the enrichment service will answer, so those are "unchanged" and must not be written.
func (s *simFlags) dataverseSim() *dvsim.Sim {
	keep := int(math.Round(100 * (1 - s.changeFraction)))
	return dvsim.New(dvsim.Config{
		Accounts: s.accounts, InactiveAccounts: s.inactive, Seed: 1,
		Servers: s.servers, DOPHint: s.dop, Latency: s.latency, TimeScale: s.timeScale,
		Init: func(i int, id string, rec map[string]any) {
			if i < s.accounts && i%100 < keep {
				enrichsim.Apply(rec, id)
			}
		},
	})
}

func (s *simFlags) enrichmentSim() *enrichsim.Sim {
	return enrichsim.New(enrichsim.Config{TimeScale: s.timeScale})
}

// cmdSimulate is the "simulate" subcommand.
func cmdSimulate(ctx context.Context, args []string, _ func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("simulate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var sf simFlags
	sf.register(fs, 50000)
	dvPort := fs.Int("dataverse-port", 0, "port for the Dataverse simulator (0 = any free port)")
	enPort := fs.Int("enrichment-port", 0, "port for the enrichment simulator (0 = any free port)")
	fs.Usage = func() { fmt.Fprint(stderr, simulateHelp); fs.PrintDefaults() }
	if err := fs.Parse(args); err != nil {
		return usageError(err)
	}
	if err := sf.validate(); err != nil {
		fmt.Fprintf(stderr, "dvbulk simulate: %v\n", err)
		return 2
	}
	for _, p := range []*int{dvPort, enPort} {
		if *p < 0 || *p > 65535 {
			fmt.Fprintf(stderr, "dvbulk simulate: ports must be 0-65535, got %d\n", *p)
			return 2
		}
	}
	dvURL, stopDV, err := serveLoopback(*dvPort, sf.dataverseSim().Handler())
	if err != nil {
		fmt.Fprintf(stderr, "dvbulk simulate: dataverse: %v\n", err)
		return 1
	}
	defer stopDV()
	enURL, stopEN, err := serveLoopback(*enPort, sf.enrichmentSim().Handler())
	if err != nil {
		fmt.Fprintf(stderr, "dvbulk simulate: enrichment: %v\n", err)
		return 1
	}
	defer stopEN()
	fmt.Fprintf(stdout, "dataverse %s\n", dvURL)
	fmt.Fprintf(stdout, "enrichment %s/enrich\n", enURL)
	<-ctx.Done()
	return 0
}

// serveLoopback serves h on 127.0.0.1:port and returns its base URL.
func serveLoopback(port int, h http.Handler) (string, func(), error) {
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	stop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}
	return "http://" + ln.Addr().String(), stop, nil
}
