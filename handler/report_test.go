package main

import (
	"strings"
	"testing"

	"dvbulk/internal/job"
	"dvbulk/internal/pipeline"
)

// TestWriteReportOrdersOutcomesAndCapsFailures: outcomes are listed in the fixed order (unknown ones
// after, sorted), the failure lines stop at the cap with a pointer to --json, and the re-run hint names
// the run.
func TestWriteReportOrdersOutcomesAndCapsFailures(t *testing.T) {
	s := &job.Summary{Run: "nightly-1", Job: "nightly-enrichment", Trigger: "timer", Planned: 5, Records: 5, Chunks: 1,
		Outcomes:       map[pipeline.Outcome]int{pipeline.Failed: 2, pipeline.Updated: 2, "zzz-later": 1, pipeline.Unchanged: 1},
		Failures:       []job.Failure{{ID: "a", Outcome: pipeline.Failed, Reason: "no match"}, {ID: "b", Outcome: pipeline.Failed, Reason: "timeout"}},
		FailuresListed: true}
	var b strings.Builder
	writeReport(&b, s, 1)
	out := b.String()
	if !strings.Contains(out, " updated=2 unchanged=1 failed=2 zzz-later=1\n") {
		t.Errorf("outcomes not in the fixed order:\n%s", out)
	}
	if !strings.Contains(out, "a failed  no match") || strings.Contains(out, "timeout") || !strings.Contains(out, "... 1 more (see --json)") {
		t.Errorf("failure lines not capped at 1:\n%s", out)
	}
	if !strings.Contains(out, "dvbulk run --rerun-failed nightly-1") {
		t.Errorf("no re-run hint:\n%s", out)
	}
}
