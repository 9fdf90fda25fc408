package job

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"dvbulk/internal/checkpoint"
)

// Status is a run's state as read from the checkpoint store.
type Status struct {
	Manifest *Manifest `json:"manifest"`
	Progress *Progress `json:"progress,omitempty"`
	Summary  *Summary  `json:"summary,omitempty"`
}

// ErrNoRun is returned when the store holds no such run.
var ErrNoRun = errors.New("job: no such run")

// ReadStatus loads a run's manifest, progress and (when finished) summary.
func ReadStatus(ctx context.Context, st checkpoint.Store, run string) (*Status, error) {
	man, _, err := load[Manifest](ctx, st, manifestName(run))
	if errors.Is(err, checkpoint.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s", ErrNoRun, run)
	}
	if err != nil {
		return nil, err
	}
	s := &Status{Manifest: man}
	if p, _, err := load[Progress](ctx, st, progressName(run)); err == nil {
		s.Progress = p
	} else if !errors.Is(err, checkpoint.ErrNotFound) {
		return nil, err
	}
	if sum, _, err := load[Summary](ctx, st, summaryName(run)); err == nil {
		s.Summary = sum
	} else if !errors.Is(err, checkpoint.ErrNotFound) {
		return nil, err
	}
	return s, nil
}

// ListRuns returns the run ids in the store, newest last (run ids sort by time within a job).
func ListRuns(ctx context.Context, st checkpoint.Store) ([]string, error) {
	var runs []string
	err := st.List(ctx, "runs/", func(name string) error {
		if strings.HasSuffix(name, "/manifest.json") {
			runs = append(runs, strings.TrimSuffix(strings.TrimPrefix(name, "runs/"), "/manifest.json"))
		}
		return nil
	})
	sort.Strings(runs)
	return runs, err
}

// ActiveRun returns the run currently marked active for a job, or "".
func ActiveRun(ctx context.Context, st checkpoint.Store, job string) (string, error) {
	act, _, err := load[Active](ctx, st, activeName(job))
	if errors.Is(err, checkpoint.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return act.Run, nil
}

// LatestRun returns the most recently created of runs.
func LatestRun(ctx context.Context, st checkpoint.Store, runs []string) (string, error) {
	best, bestAt := "", time.Time{}
	for _, r := range runs {
		man, _, err := load[Manifest](ctx, st, manifestName(r))
		if err != nil {
			return "", err
		}
		if best == "" || man.Created.After(bestAt) {
			best, bestAt = r, man.Created
		}
	}
	return best, nil
}
