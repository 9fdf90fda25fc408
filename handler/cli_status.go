package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/term"

	"dvbulk/internal/app"
	"dvbulk/internal/checkpoint"
	"dvbulk/internal/job"
	"dvbulk/internal/report"
)

const statusHelp = `Usage: dvbulk status [flags]

Shows a run's progress from the checkpoint store: planning, chunks finished, outcomes so far, and the
final report once the run is done. Reads checkpoints only; it never calls Dataverse.

--watch refreshes a live line until the run completes: records done of the estimated total (and which
estimate: "planned" once planning is complete, else the previous run's total or "at least: planned +
1 page"), the cluster's rate, the ETA, failures, Dataverse 429s, requests in flight against the
adaptive limit and the x-ms-dop-hint, enrichment requests in flight, instances alive. It needs the
instances' telemetry (DVBULK_TELEMETRY_INTERVAL); without it, it counts finished chunks only.

Examples:
  dvbulk status                          # the latest run in the local store ($DVBULK_CHECKPOINT_DIR)
  dvbulk status --store blob --json      # the latest run in $AzureWebJobsStorage, for scripts
  dvbulk status --run nightly-enrichment-20261123t020000z
  dvbulk status --list
  dvbulk status --store blob --watch     # live rate, ETA, 429s and concurrency until the run completes

Flags:
`

// cmdStatus is the "status" subcommand.
func cmdStatus(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	run := fs.String("run", "", "run id (default: the latest run)")
	storeKind := fs.String("store", "dir", "checkpoint store: dir ($DVBULK_CHECKPOINT_DIR) or blob ($AzureWebJobsStorage)")
	asJSON := fs.Bool("json", false, "print JSON for scripts")
	list := fs.Bool("list", false, "list the runs in the store")
	watchFlag := fs.Bool("watch", false, "refresh a live status line until the run completes")
	every := fs.Duration("interval", 2*time.Second, "with --watch: how often to refresh (0.2s-1m)")
	fs.Usage = func() { fmt.Fprint(stderr, statusHelp); fs.PrintDefaults() }
	if err := fs.Parse(args); err != nil {
		return usageError(err)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "dvbulk status: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if *watchFlag && (*every < 200*time.Millisecond || *every > time.Minute) {
		fmt.Fprintf(stderr, "dvbulk status: --interval must be from 0.2s to 1m, got %s\n", *every)
		return 2
	}
	if *watchFlag && *list {
		fmt.Fprintln(stderr, "dvbulk status: --watch and --list do not go together")
		return 2
	}
	cfg, err := app.Load(getenv, false)
	if err != nil {
		fmt.Fprintf(stderr, "dvbulk status: %v\n", err)
		return 2
	}
	st, err := app.OpenStore(ctx, cfg, *storeKind)
	if err != nil {
		return reportErr(stderr, "status", err)
	}
	runs, err := job.ListRuns(ctx, st)
	if err != nil {
		return reportErr(stderr, "status", err)
	}
	if *list {
		if *asJSON {
			return writeJSON(stdout, runs)
		}
		for _, r := range runs {
			fmt.Fprintln(stdout, r)
		}
		return 0
	}
	if *run == "" {
		if len(runs) == 0 {
			fmt.Fprintln(stderr, "dvbulk status: no runs in the checkpoint store")
			return 1
		}
		if *run, err = job.LatestRun(ctx, st, runs); err != nil {
			return reportErr(stderr, "status", err)
		}
	}
	if *watchFlag {
		return watchStatus(ctx, st, *run, *every, *asJSON, stdout, stderr)
	}
	s, err := job.ReadStatus(ctx, st, *run)
	if errors.Is(err, job.ErrNoRun) {
		fmt.Fprintf(stderr, "dvbulk status: no run %q in the checkpoint store\n", *run)
		return 1
	}
	if err != nil {
		return reportErr(stderr, "status", err)
	}
	if *asJSON {
		return writeJSON(stdout, s)
	}
	writeStatus(stdout, s)
	return 0
}

func writeStatus(w io.Writer, s *job.Status) {
	m := s.Manifest
	fmt.Fprintf(w, "run %s of %s: %s (trigger %s, created %s)\n", m.Run, m.Job, m.State, m.Trigger, m.Created.Format("2006-01-02 15:04:05Z"))
	plan := "in progress"
	if m.PlanningDone {
		plan = "complete"
	}
	fmt.Fprintf(w, "  planning   %s: %d records in %d chunks\n", plan, m.PlannedRecords, m.NextSeq)
	if m.Incremental {
		fmt.Fprintf(w, "  %s\n", freshLine(m.Fresh, m.Full, m.Spec.Transform.Kind == job.KindEnrich))
	}
	if p := s.Progress; p != nil {
		fmt.Fprintf(w, "  chunks     %d of %d finished, %d records\n", p.Chunks, m.NextSeq, p.Records)
		fmt.Fprintf(w, "  outcomes  ")
		for o, n := range p.Outcomes {
			fmt.Fprintf(w, " %s=%d", o, n)
		}
		fmt.Fprintln(w)
		if len(p.DeadLettered) > 0 {
			fmt.Fprintf(w, "  dead-lettered chunks: %v\n", p.DeadLettered)
		}
	}
	if s.Summary != nil {
		fmt.Fprintln(w)
		writeReport(w, s.Summary, 20)
	}
}

// watchStatus is status --watch: the live line until the run completes, then its report.
func watchStatus(ctx context.Context, st checkpoint.Store, run string, every time.Duration, asJSON bool, stdout, stderr io.Writer) int {
	sum, err := watchRun(ctx, st, run, every, func(l *report.Live) {
		if asJSON {
			_ = json.NewEncoder(stdout).Encode(l) // one JSON object per line
			return
		}
		liveLine(stdout, l.Line())
	})
	if errors.Is(err, job.ErrNoRun) {
		fmt.Fprintf(stderr, "dvbulk status: no run %q in the checkpoint store\n", run)
		return 1
	}
	if err != nil {
		return reportErr(stderr, "status", err)
	}
	if !asJSON {
		fmt.Fprintln(stdout)
		writeReport(stdout, sum, 20)
	}
	return 0
}

// watchRun calls show with the run's live state every interval until its summary exists (shown once
// more, final) or ctx ends. The demo's live line goes through it too.
func watchRun(ctx context.Context, st checkpoint.Store, run string, every time.Duration, show func(*report.Live)) (*job.Summary, error) {
	s, err := job.ReadStatus(ctx, st, run)
	if err != nil {
		return nil, err
	}
	previous, err := report.PreviousTotal(ctx, st, s.Manifest.Job, run)
	if err != nil {
		return nil, err
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		l, err := report.ReadLive(ctx, st, run, previous, time.Now())
		if err != nil && ctx.Err() == nil {
			return nil, err
		}
		if l != nil {
			show(l)
			if l.Summary != nil {
				return l.Summary, nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("run %s did not finish: %w", run, ctx.Err())
		case <-tick.C:
		}
	}
}

// liveLine prints a status line: rewritten in place on a terminal, one per refresh otherwise.
func liveLine(w io.Writer, line string) {
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprintf(w, "\r\033[K%s", line)
		return
	}
	fmt.Fprintln(w, line)
}

func writeJSON(w io.Writer, v any) int {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return 1
	}
	return 0
}
