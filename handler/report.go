package main

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"dvbulk/internal/job"
	"dvbulk/internal/pipeline"
	"dvbulk/internal/report"
)

// freshLine says how many records an incremental run left alone and what that saved.
func freshLine(fresh int, full bool, enrich bool) string {
	switch {
	case full:
		return "incremental off for this run (full): every record eligible"
	case enrich:
		return fmt.Sprintf("fresh       %d records unchanged since their last enrichment: %d enrichment lookups saved", fresh, fresh)
	}
	return fmt.Sprintf("fresh       %d records whose inputs did not change: not recomputed", fresh)
}

// writeReport renders a run summary for people (run, status and demo print it). maxFailures bounds
// the failure lines printed (the JSON form always has them all).
func writeReport(w io.Writer, s *job.Summary, maxFailures int) {
	kind := "run"
	if s.DryRun {
		kind = "dry run"
	}
	fmt.Fprintf(w, "%s %s of %s (trigger: %s)\n", strings.ToUpper(kind[:1])+kind[1:], s.Run, s.Job, s.Trigger)
	fmt.Fprintf(w, "  records     %d planned, %d processed in %d chunks\n", s.Planned, s.Records, s.Chunks)
	fmt.Fprintf(w, "  duration    %.1fs (%.0f records/s)\n", s.DurationSeconds, s.RecordsPerSecond)
	fmt.Fprintf(w, "  outcomes   ")
	for _, o := range sortedOutcomes(s.Outcomes) {
		fmt.Fprintf(w, " %s=%d", o, s.Outcomes[o])
	}
	fmt.Fprintln(w)
	if s.Outcomes[pipeline.Fresh] > 0 || s.Full {
		fmt.Fprintf(w, "  %s\n", freshLine(s.Outcomes[pipeline.Fresh], s.Full, s.EnrichmentCallsSaved > 0))
	}
	fmt.Fprintf(w, "  throttling  %d Dataverse 429s, %d retries; %d transform results; %d fields dropped (not on the allow-list)\n",
		s.Stats.Throttled, s.Stats.Retries, s.Stats.Transformed, s.Stats.DroppedFields)
	if len(s.DeadLettered) > 0 {
		fmt.Fprintf(w, "  dead-lettered chunks: %d\n", len(s.DeadLettered))
		for _, d := range s.DeadLettered {
			fmt.Fprintf(w, "    chunk %d (%d records): %s\n", d.Seq, d.Records, d.Reason)
		}
	}
	if len(s.Failures) > 0 {
		fmt.Fprintf(w, "  failed or skipped records: %d\n", len(s.Failures))
		for i, f := range s.Failures {
			if i == maxFailures {
				fmt.Fprintf(w, "    ... %d more (see --json)\n", len(s.Failures)-maxFailures)
				break
			}
			fmt.Fprintf(w, "    %s %-7s %s\n", f.ID, f.Outcome, f.Reason)
		}
		if !s.FailuresListed {
			fmt.Fprintf(w, "    (list capped at %d; every outcome is in the chunk checkpoints)\n", job.MaxListedFailures)
		}
		fmt.Fprintf(w, "  re-run the failed records: dvbulk run --rerun-failed %s\n", s.Run)
	}
	if s.DryRun && len(s.Changes) > 0 {
		fmt.Fprintf(w, "  would change (first %d):\n", min(len(s.Changes), maxFailures))
		for i, c := range s.Changes {
			if i == maxFailures {
				break
			}
			fmt.Fprintf(w, "    %s %s\n", c.ID, formatFields(c.Fields))
		}
	}
}

func sortedOutcomes(m map[pipeline.Outcome]int) []pipeline.Outcome { return report.SortedOutcomes(m) }

func formatFields(f map[string]any) string {
	keys := make([]string, 0, len(f))
	for k := range f {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%v", k, f[k])
	}
	return strings.Join(parts, " ")
}
