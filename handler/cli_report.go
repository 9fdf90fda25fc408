package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"dvbulk/internal/app"
	"dvbulk/internal/job"
	"dvbulk/internal/report"
)

const reportHelp = `Usage: dvbulk report <run> [flags]

Writes a run's report from the checkpoint store. Reads checkpoints only; it never calls Dataverse.

Without --failed: a self-contained HTML page (inline SVG charts, no scripts, nothing loaded from
elsewhere): totals, outcomes, throughput, concurrency and 429s over time, the slowest chunks,
dead-lettered chunks with their reasons, failed records, and the settings the run used. The instance
that completes a run also writes it to runs/<run>/report.html in the store.

With --failed: the failed and skipped records as CSV (record key, the job's input columns, outcome,
reason, Dataverse error code, chunk), streamed one chunk at a time, with cells that begin with =, +,
- or @ neutralised against spreadsheet formula injection. Fix the file and feed it back, or re-run
them with 'dvbulk run --rerun-failed <run>'.

Examples:
  dvbulk report nightly-enrichment-20261123t020000z -o night.html
  dvbulk report nightly-enrichment-20261123t020000z --failed -o failed.csv
  dvbulk report --store blob --failed nightly-enrichment-20261123t020000z > failed.csv

Flags:
`

// cmdReport is the "report" subcommand.
func cmdReport(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("o", "-", "output file (- for stdout)")
	failed := fs.Bool("failed", false, "write the failed and skipped records as CSV instead of the HTML report")
	storeKind := fs.String("store", "dir", "checkpoint store: dir ($DVBULK_CHECKPOINT_DIR) or blob ($AzureWebJobsStorage)")
	fs.Usage = func() { fmt.Fprint(stderr, reportHelp); fs.PrintDefaults() }
	// The run may come first (dvbulk report <run> -o x) or after the flags.
	var run string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		run, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return usageError(err)
	}
	switch {
	case run == "" && fs.NArg() == 1:
		run = fs.Arg(0)
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "dvbulk report: unexpected argument %q\n", fs.Arg(0))
		return 2
	case run == "":
		fmt.Fprintln(stderr, "dvbulk report: the run id is required (dvbulk status --list shows them)")
		return 2
	}
	cfg, err := app.Load(getenv, false)
	if err != nil {
		fmt.Fprintf(stderr, "dvbulk report: %v\n", err)
		return 2
	}
	st, err := app.OpenStore(ctx, cfg, *storeKind)
	if err != nil {
		return reportErr(stderr, "report", err)
	}
	write := func(w io.Writer) error { return report.Write(ctx, st, run, time.Now(), w) }
	if *failed {
		write = func(w io.Writer) error {
			n, err := report.WriteFailed(ctx, st, run, w)
			if err == nil {
				fmt.Fprintf(stderr, "%d failed or skipped records\n", n)
			}
			return err
		}
	}
	err = toFile(*out, stdout, write)
	if errors.Is(err, job.ErrNoRun) {
		fmt.Fprintf(stderr, "dvbulk report: no run %q in the checkpoint store\n", run)
		return 1
	}
	if err != nil {
		return reportErr(stderr, "report", err)
	}
	if *out != "-" {
		fmt.Fprintln(stderr, *out)
	}
	return 0
}

// toFile runs write into path ("-" is stdout). A file appears only complete: it is written next to
// its final name and renamed, so a failure leaves no half report behind.
func toFile(path string, stdout io.Writer, write func(io.Writer) error) error {
	if path == "-" {
		return write(stdout)
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
