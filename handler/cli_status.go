package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"

	"dvbulk/internal/app"
	"dvbulk/internal/job"
)

const statusHelp = `Usage: dvbulk status [flags]

Shows a run's progress from the checkpoint store: planning, chunks finished, outcomes so far, and the
final report once the run is done. Reads checkpoints only; it never calls Dataverse.

Examples:
  dvbulk status                          # the latest run in the local store ($DVBULK_CHECKPOINT_DIR)
  dvbulk status --store blob --json      # the latest run in $AzureWebJobsStorage, for scripts
  dvbulk status --run nightly-enrichment-20261123t020000z
  dvbulk status --list

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
	fs.Usage = func() { fmt.Fprint(stderr, statusHelp); fs.PrintDefaults() }
	if err := fs.Parse(args); err != nil {
		return usageError(err)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "dvbulk status: unexpected argument %q\n", fs.Arg(0))
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
		job.WriteReport(w, s.Summary, 20)
	}
}

func writeJSON(w io.Writer, v any) int {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return 1
	}
	return 0
}
