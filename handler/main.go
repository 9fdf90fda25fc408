// Command dvbulk is the Azure Functions custom handler of the dvbulk app (started with no arguments by
// the Functions host) and its operator CLI (started with a subcommand).
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"syscall"

	"dvbulk/internal/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// command is one CLI subcommand.
type command struct {
	summary string
	run     func(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int
}

var commands = map[string]command{
	"run":      {"run a job in this process against a Dataverse environment (resumable)", cmdRun},
	"status":   {"show a run's progress and report from the checkpoint store (--watch: live)", cmdStatus},
	"report":   {"write a run's HTML report, or its failed records as CSV (--failed)", cmdReport},
	"simulate": {"start the Dataverse and enrichment simulators on loopback", cmdSimulate},
	"demo":     {"run the nightly enrichment end to end against the simulators", cmdDemo},
	"bench":    {"measure throughput against the limits and the seed's patterns", cmdBench},
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: dvbulk [command] [flags]")
	fmt.Fprintln(w, "\nWith no command, dvbulk serves the Azure Functions custom-handler protocol on")
	fmt.Fprintln(w, "127.0.0.1:$FUNCTIONS_CUSTOMHANDLER_PORT (the Functions host starts it that way).")
	fmt.Fprintln(w, "\nCommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-9s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'dvbulk <command> --help' for a command's flags and examples.")
}

// run is main without the process: exit codes 0 success, 1 runtime failure, 2 bad usage or settings.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		return serveHandler(ctx, getenv, stdout, stderr)
	}
	switch args[0] {
	case "-h", "--help", "help":
		usage(stdout)
		return 0
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "dvbulk: unknown command %q\n", args[0])
		usage(stderr)
		return 2
	}
	return cmd.run(ctx, args[1:], getenv, stdout, stderr)
}

// serveHandler is the custom handler: it wires the engine from the app settings and serves the host.
func serveHandler(ctx context.Context, getenv func(string) string, stdout, stderr io.Writer) int {
	port, err := strconv.Atoi(getenv("FUNCTIONS_CUSTOMHANDLER_PORT"))
	if err != nil || port < 1 || port > 65535 {
		fmt.Fprintf(stderr, "dvbulk: FUNCTIONS_CUSTOMHANDLER_PORT must be a TCP port (the Functions host sets it), got %q; run 'dvbulk --help' for the CLI\n", getenv("FUNCTIONS_CUSTOMHANDLER_PORT"))
		return 2
	}
	cfg, err := app.Load(getenv, true)
	if err != nil {
		fmt.Fprintf(stderr, "dvbulk: %v\n", err)
		return 2
	}
	hs, err := app.ReadHost(getenv)
	if err != nil {
		fmt.Fprintf(stderr, "dvbulk: %v\n", err)
		return 2
	}
	log := app.NewLogger(stdout, cfg.LogLevel)
	kind := cfg.StoreKind
	st, err := app.OpenStoreRetrying(ctx, cfg, kind)
	if err != nil {
		fmt.Fprintf(stderr, "dvbulk: %v\n", err)
		return reportErr(io.Discard, "", err)
	}
	shared, err := app.NewBudget(cfg, st, app.InstanceName(), log)
	if err != nil {
		fmt.Fprintf(stderr, "dvbulk: %v\n", err)
		return 2
	}
	eng, _, err := app.NewEngine(cfg, st, log, app.WithBudget(shared))
	if err != nil {
		fmt.Fprintf(stderr, "dvbulk: %v\n", err)
		return 2
	}
	if shared != nil {
		bctx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); _ = shared.Run(bctx) }()
		defer func() { stop(); <-done }() // gives this instance's share back on the way out
	}
	eng.Opt.MaxDequeue = hs.MaxDequeueCount
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		fmt.Fprintf(stderr, "dvbulk: listen on FUNCTIONS_CUSTOMHANDLER_PORT %d: %v\n", port, err)
		return 1
	}
	log = log.With().Str("instance", eng.Instance).Logger() // invocation loggers derive from it
	log.Info().Str("job", cfg.Job.Name).Strs("jobs", cfg.Jobs.Names()).Str("jobs_dir", cfg.JobsDir).Str("store", kind).Dur("function_timeout", hs.FunctionTimeout).
		Int("max_dequeue", hs.MaxDequeueCount).Bool("shared_budget", shared != nil).Msg("custom handler ready")
	stopTelemetry := app.RunTelemetry(ctx, eng)
	defer stopTelemetry()
	srv := newServer(&functionApp{engine: eng, spec: cfg.Job, log: log, retention: cfg.TelemetryRetention}, log, hs.FunctionTimeout)
	if err := srv.serve(ctx, ln); err != nil {
		log.Error().Err(err).Msg("server stopped")
		return 1
	}
	return 0
}
