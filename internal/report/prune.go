package report

import (
	"context"
	"time"

	"dvbulk/internal/checkpoint"
	"dvbulk/internal/job"
	"dvbulk/internal/telemetry"
)

// Prune deletes the telemetry of runs finished more than retention ago (their report.html and
// summary stay: the report already holds the charts). It returns the documents deleted. Runs still
// going are never touched, whatever their age.
func Prune(ctx context.Context, st checkpoint.Store, retention time.Duration, now time.Time) (int, error) {
	if retention <= 0 {
		return 0, nil
	}
	runs, err := job.ListRuns(ctx, st)
	if err != nil {
		return 0, err
	}
	deleted := 0
	for _, run := range runs {
		s, err := job.ReadStatus(ctx, st, run)
		if err != nil {
			return deleted, err
		}
		if s.Summary == nil || now.Sub(s.Summary.Finished) < retention {
			continue
		}
		n, err := telemetry.Delete(ctx, st, run)
		deleted += n
		if err != nil {
			return deleted, err
		}
	}
	return deleted, nil
}
