package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/term"

	"dvbulk/internal/checkpoint"
	"dvbulk/internal/ctxutil"
	"dvbulk/internal/dvsim"
	"dvbulk/internal/enrich/enrichsim"
	"dvbulk/internal/funcemu"
	"dvbulk/internal/job"
	"dvbulk/internal/report"
)

const demoHelp = `Usage: dvbulk demo [flags]

Runs the nightly enrichment end to end on this machine: a Dataverse simulator (production-like service
protection: 4 web servers, 52 concurrent / 6,000 requests / 1,200 s of server time per 300 s per user per
server, x-ms-dop-hint 48) and the enrichment simulator, with the Functions host played around several
handler instances (this same binary): the timer plans the run, chunk messages flow through the queue,
the instances enrich and write with checkpoints in a local directory. Shows live progress, then the
run report, a check of every account against the simulators, and the path of the HTML run report.

Examples:
  dvbulk demo
  dvbulk demo --accounts 200000 --instances 4
  dvbulk demo --keep --dir ./demo-checkpoints && dvbulk status --store dir

Flags:
`

// cmdDemo is the "demo" subcommand.
func cmdDemo(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var sf simFlags
	sf.register(fs, 50000)
	instances := fs.Int("instances", 3, "handler instances (processes) the emulated host scales out to")
	dir := fs.String("dir", "", "checkpoint directory (default: a temporary one)")
	keep := fs.Bool("keep", false, "keep the checkpoint directory and instance logs")
	reportPath := fs.String("report", filepath.Join("bin", "demo-report.html"), "write the run report (HTML) here")
	timeout := fs.Duration("timeout", 5*time.Minute, "give up after this long")
	fs.Usage = func() { fmt.Fprint(stderr, demoHelp); fs.PrintDefaults() }
	if err := fs.Parse(args); err != nil {
		return usageError(err)
	}
	if err := sf.validate(); err != nil {
		fmt.Fprintf(stderr, "dvbulk demo: %v\n", err)
		return 2
	}
	if *instances < 1 || *instances > 16 {
		fmt.Fprintf(stderr, "dvbulk demo: --instances must be 1-16, got %d\n", *instances)
		return 2
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if err := demo(ctx, sf, *instances, *dir, *reportPath, *keep, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "dvbulk demo: %v\n", err)
		return 1
	}
	return 0
}

func demo(ctx context.Context, sf simFlags, instances int, dir, reportPath string, keep bool, stdout, stderr io.Writer) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	root, err := appRoot(exe)
	if err != nil {
		return err
	}
	if dir == "" {
		if dir, err = os.MkdirTemp("", "dvbulk-demo-"); err != nil {
			return err
		}
		if !keep {
			defer os.RemoveAll(dir)
		}
	}
	fmt.Fprintf(stdout, "dvbulk demo: %d active + %d inactive accounts, %d web servers (dop hint %d), %d handler instances\n",
		sf.accounts, sf.inactive, sf.servers, sf.dop, instances)
	started := time.Now()
	dv := sf.dataverseSim()
	dvURL, stopDV := dv.Start()
	defer stopDV()
	en := sf.enrichmentSim()
	enURL, stopEN := en.Start()
	defer stopEN()
	fmt.Fprintf(stdout, "  simulators ready in %s: dataverse %s, enrichment %s\n", since(started), dvURL, enURL)

	logPath := filepath.Join(dir, "instances.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()
	perInstance := max(1, sf.dop/instances)
	host, err := funcemu.New(funcemu.Options{
		AppRoot: root, Binary: exe, Instances: instances, Output: logFile,
		Env: []string{
			"DATAVERSE_URL=" + dvURL, "DATAVERSE_AUTH=none",
			"ENRICHMENT_URL=" + enURL, "ENRICHMENT_BATCH_SIZE=25", fmt.Sprintf("ENRICHMENT_CONCURRENCY=%d", max(1, 30/instances)),
			fmt.Sprintf("DVBULK_DATAVERSE_CONCURRENCY=%d", perInstance),
			"DVBULK_CHECKPOINT_STORE=dir", "DVBULK_CHECKPOINT_DIR=" + dir,
			"DVBULK_JOB=nightly-enrichment", "DVBULK_SCHEDULE=0 0 2 * * *", "DVBULK_LOG_LEVEL=info",
			fmt.Sprintf("DVBULK_TRANSFORM_WORKERS=%d", max(1, 30/instances)), "DVBULK_WRITE_WORKERS=4",
			"DVBULK_TELEMETRY_INTERVAL=1s", // a run of seconds: samples every second for the live line and the charts
		},
	})
	if err != nil {
		return err
	}
	defer host.Close()
	if err := host.Start(ctx); err != nil {
		return fmt.Errorf("start instances: %w (logs: %s)", err, logPath)
	}
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	go func() { _ = host.Run(runCtx) }()

	t0 := time.Now()
	inv, err := host.FireTimer(ctx, "EnrichTimer", funcemu.TimerOptions{Next: time.Now().UTC().Truncate(time.Minute)})
	if err != nil {
		return fmt.Errorf("timer: %w (logs: %s)", err, logPath)
	}
	if inv.Status != 200 {
		return fmt.Errorf("timer invocation failed with %d: %s (logs: %s)", inv.Status, strings.Join(inv.Logs, "; "), logPath)
	}
	st, err := checkpoint.NewDir(dir)
	if err != nil {
		return err
	}
	runs, err := job.ListRuns(ctx, st)
	if err != nil || len(runs) == 0 {
		return fmt.Errorf("the timer started no run (logs: %s)", logPath)
	}
	runID := runs[len(runs)-1]
	sum, err := demoWatch(ctx, st, runID, stdout)
	if err != nil {
		return fmt.Errorf("%w (logs: %s)", err, logPath)
	}
	took := time.Since(t0)
	rerr := demoReport(ctx, st, runID, reportPath)
	stopRun()
	fmt.Fprintln(stdout)
	writeReport(stdout, sum, 10)
	fmt.Fprintln(stdout)
	if err := verify(stdout, dv, en, sf, sum, took); err != nil {
		return err
	}
	if rerr != nil {
		return fmt.Errorf("run report: %w (logs: %s)", rerr, logPath)
	}
	fmt.Fprintf(stdout, "\nrun report (charts, slowest chunks, settings): %s\n", reportPath)
	if keep {
		fmt.Fprintf(stdout, "\ncheckpoints and instance logs kept in %s (try: DVBULK_CHECKPOINT_DIR=%s dvbulk status)\n", dir, dir)
	}
	return nil
}

// since formats a duration for people.
func since(t time.Time) string { return time.Since(t).Round(100 * time.Millisecond).String() }

// appRoot finds the function app folder (host.json) from the working directory or the binary's.
func appRoot(exe string) (string, error) {
	wd, _ := os.Getwd()
	for _, start := range []string{wd, filepath.Dir(exe)} {
		for d := start; ; d = filepath.Dir(d) {
			if _, err := os.Stat(filepath.Join(d, "host.json")); err == nil {
				return d, nil
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	return "", errors.New("host.json not found: run the demo from the app folder (make demo does)")
}

// demoWatch shows the live status line (the same code as status --watch) until the run completes.
func demoWatch(ctx context.Context, st checkpoint.Store, run string, w io.Writer) (*job.Summary, error) {
	every := 2 * time.Second
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		every = 250 * time.Millisecond
	}
	return watchRun(ctx, st, run, every, func(l *report.Live) { liveLine(w, l.Line()) })
}

// demoReport copies the run report the completing instance wrote (runs/<run>/report.html) to path.
// The summary is written just before it, so it may take a moment to appear.
func demoReport(ctx context.Context, st checkpoint.Store, run, path string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		data, _, err := st.Get(ctx, report.Name(run))
		if err == nil {
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				return err
			}
			return os.WriteFile(path, data, 0o644)
		}
		if !errors.Is(err, checkpoint.ErrNotFound) {
			return err
		}
		if err := ctxutil.Sleep(ctx, 200*time.Millisecond); err != nil {
			return fmt.Errorf("the completing instance wrote no %s: %w", report.Name(run), err)
		}
	}
}

// verify checks every account against the simulators: active ones hold exactly the enrichment, the
// inactive ones are untouched, nothing was created, and unchanged accounts were not written.
func verify(w io.Writer, dv *dvsim.Sim, en *enrichsim.Sim, sf simFlags, sum *job.Summary, took time.Duration) error {
	wrong, unchangedWritten := 0, 0
	keep := int(math.Round(100 * (1 - sf.changeFraction)))
	for _, id := range dv.IDs(true) {
		row, _ := dv.Get(id)
		if _, ok := enrichsim.Holds(row, id); !ok {
			wrong++
		}
	}
	c := dv.Counters()
	inactiveWritten := 0
	for _, id := range dv.IDs(false) {
		if c.WritesByID(id) > 0 {
			inactiveWritten++
		}
	}
	for i := 0; i < sf.accounts; i++ {
		if i%100 < keep && c.WritesByID(dvsim.AccountID(i)) > 0 {
			unchangedWritten++
		}
	}
	ec := en.Counters()
	fmt.Fprintf(w, "check: %d active accounts hold the enrichment exactly (%d wrong), %d inactive untouched (%d written), %d created, %d unchanged written\n",
		sf.accounts-wrong, wrong, sf.inactive-inactiveWritten, inactiveWritten, c.Creates, unchangedWritten)
	fmt.Fprintf(w, "       Dataverse: %d requests (%v), %d record writes, 429s %v, requests inside a Retry-After window %d\n",
		c.Requests, c.ByKind, c.Writes, c.Throttled, c.RequestsDuringRetryAfter)
	fmt.Fprintf(w, "       enrichment: %d requests for %d records (%d repeated), peak concurrency %d; wall time %s\n",
		ec.Requests, ec.Records, ec.DuplicateCalls, ec.PeakConcurrency, took.Round(100*time.Millisecond))
	if wrong > 0 || inactiveWritten > 0 || c.Creates > 0 || unchangedWritten > 0 || sum.Records != sf.accounts {
		return errors.New("the run's result is not correct (see the check above)")
	}
	return nil
}
