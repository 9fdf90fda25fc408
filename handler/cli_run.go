package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"dvbulk/internal/app"
	"dvbulk/internal/job"
	"dvbulk/internal/report"
)

const runHelp = `Usage: dvbulk run [flags]

Runs a job in this process against a real Dataverse environment (the console-app use), with the same
planner, chunk pipeline and checkpoints as the Functions app. Interrupt it (Ctrl-C) and run it again:
it resumes the unfinished run instead of starting over.

Settings come from the environment (see the README): DATAVERSE_URL, DATAVERSE_AUTH, ENRICHMENT_URL, ...

Examples:
  DATAVERSE_URL=https://contoso.crm.dynamics.com ENRICHMENT_URL=https://data.example.com/enrich dvbulk run
  dvbulk run --job recalculate-tier --dry-run
  dvbulk run --full          # ask the enrichment service about every record again
  dvbulk run --job import-contacts --source ./export/contacts.csv   # an import from a local file
  dvbulk run --job ./jobs/reset-status.json --store blob
  dvbulk run --rerun-failed nightly-enrichment-20261123t020000z

Flags:
`

// cmdRun is the "run" subcommand.
func cmdRun(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	jobRef := fs.String("job", "", "built-in job name or path to a job .json file (default $DVBULK_JOB)")
	dryRun := fs.Bool("dry-run", false, "do everything but the writes; the report shows what would change")
	full := fs.Bool("full", false, "send every record, whatever the job's ledger says (incremental jobs); the ledger is still updated")
	rerun := fs.String("rerun-failed", "", "start a run over the failed and unfinished records of this run id")
	resume := fs.String("resume", "", "resume this run id (default: the job's unfinished run, if any)")
	fresh := fs.Bool("new", false, "start a new run even if an unfinished one exists")
	storeKind := fs.String("store", "dir", "checkpoint store: dir ($DVBULK_CHECKPOINT_DIR) or blob ($AzureWebJobsStorage)")
	asJSON := fs.Bool("json", false, "print the final report as JSON")
	workers := fs.Int("workers", 8, "chunk messages processed at once")
	source := fs.String("source", "", "an import job's file on this machine (CSV or NDJSON, as the job says); default: the blob named by a start message")
	fs.Usage = func() { fmt.Fprint(stderr, runHelp); fs.PrintDefaults() }
	if err := fs.Parse(args); err != nil {
		return usageError(err)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "dvbulk run: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if *workers < 1 || *workers > 256 {
		fmt.Fprintf(stderr, "dvbulk run: --workers must be 1-256, got %d\n", *workers)
		return 2
	}
	env := overlay(getenv, map[string]string{"DVBULK_JOB": *jobRef})
	cfg, err := app.Load(env, true)
	if err != nil {
		fmt.Fprintf(stderr, "dvbulk run: %v\n", err)
		return 2
	}
	log := app.NewLogger(stderr, cfg.LogLevel)
	st, err := app.OpenStore(ctx, cfg, *storeKind)
	if err != nil {
		return reportErr(stderr, "run", err)
	}
	eng, _, err := app.NewEngine(cfg, st, log)
	if err != nil {
		return reportErr(stderr, "run", err)
	}
	if *dryRun {
		eng.Opt.DryRun = true
	}
	var sourceName string
	if *source != "" {
		if cfg.Job.Transform.Kind != job.KindImport {
			fmt.Fprintf(stderr, "dvbulk run: --source: job %q is not an import job\n", cfg.Job.Name)
			return 2
		}
		// The file's directory becomes the import source and its name the source: the same planner
		// reads it by offset as it reads a blob, and a resumed run checks it is the same file.
		abs, err := filepath.Abs(*source)
		if err != nil {
			fmt.Fprintf(stderr, "dvbulk run: --source: %v\n", err)
			return 2
		}
		if fi, err := os.Stat(abs); err != nil || !fi.Mode().IsRegular() {
			fmt.Fprintf(stderr, "dvbulk run: --source: %s is not a readable file\n", *source)
			return 2
		}
		eng.Imports, eng.Opt.ImportPrefix = job.DirSource{Root: filepath.Dir(abs)}, ""
		sourceName = filepath.Base(abs)
	}
	stopTelemetry := app.RunTelemetry(ctx, eng)
	defer stopTelemetry()

	var first job.Result
	runID := *resume
	switch {
	case *rerun != "":
		runID = fmt.Sprintf("%s-rerun-%s", cfg.Job.Name, strings.ToLower(time.Now().UTC().Format("20060102t150405z")))
		first, err = eng.Start(ctx, cfg.Job, job.StartOptions{Run: runID, RerunOf: *rerun, Trigger: "cli", DryRun: *dryRun})
	case runID == "" && !*fresh:
		if active, aerr := job.ActiveRun(ctx, st, cfg.Job.Name); aerr == nil && active != "" {
			runID = active
		}
		fallthrough
	default:
		if runID != "" {
			fmt.Fprintf(stderr, "resuming run %s\n", runID)
			first, err = eng.Resume(ctx, runID)
		} else {
			runID = job.RunID(cfg.Job.Name, time.Now())
			first, err = eng.Start(ctx, cfg.Job, job.StartOptions{Run: runID, Trigger: "cli", DryRun: *dryRun, Full: *full, Source: sourceName})
		}
	}
	if err != nil {
		return reportErr(stderr, "run", err)
	}
	for _, l := range first.Logs {
		fmt.Fprintln(stderr, l)
	}
	var mu sync.Mutex
	dead := 0
	q := &job.LocalQueue{Engine: eng, Workers: *workers, DeadLetters: func(body string) {
		mu.Lock()
		dead++
		mu.Unlock()
		fmt.Fprintf(stderr, "dead-lettered: %s\n", truncate(body, 300))
	}}
	if err := q.Run(ctx, first); err != nil {
		fmt.Fprintf(stderr, "dvbulk run: interrupted; checkpoints are saved, run again to resume %s\n", runID)
		return 1
	}
	status, err := job.ReadStatus(context.WithoutCancel(ctx), st, runID)
	if err != nil {
		return reportErr(stderr, "run", err)
	}
	if status.Summary == nil {
		fmt.Fprintf(stderr, "dvbulk run: run %s stopped before completing (%d dead letters); see dvbulk status --run %s\n", runID, dead, runID)
		return 1
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(status.Summary)
	} else {
		writeReport(stdout, status.Summary, 50)
		fmt.Fprintf(stderr, "run report: dvbulk report %s -o report.html (also at %s in the checkpoint store)\n", runID, report.Name(runID))
	}
	if len(status.Summary.DeadLettered) > 0 {
		return 1 // records left unfinished; failed records alone are outcomes, listed in the report
	}
	return 0
}

// overlay returns getenv with non-empty values replaced (flags override settings).
func overlay(getenv func(string) string, over map[string]string) func(string) string {
	return func(k string) string {
		if v := over[k]; v != "" {
			return v
		}
		return getenv(k)
	}
}

func usageError(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	return 2
}

// reportErr prints a failure; configuration problems exit 2, the rest 1.
func reportErr(stderr io.Writer, cmd string, err error) int {
	fmt.Fprintf(stderr, "dvbulk %s: %v\n", cmd, err)
	var se *app.SettingError
	if errors.As(err, &se) {
		return 2
	}
	return 1
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
