package job

import (
	"context"
	"time"
)

// Observer is told what the engine works on, for telemetry. Its methods are called with the chunk's
// lock held and must not block.
type Observer interface {
	// Outcome counts one record of run that got its final outcome.
	Outcome(run, outcome string)
	// ChunkDone says a chunk's processing on this instance took this long (one delivery).
	ChunkDone(run string, seq, records int, took time.Duration)
	// Touch says the engine worked on run (a planning step).
	Touch(run string)
}

// noObserver is the Observer of an engine without telemetry.
type noObserver struct{}

func (noObserver) Outcome(string, string)                    {}
func (noObserver) ChunkDone(string, int, int, time.Duration) {}
func (noObserver) Touch(string)                              {}

func (e *Engine) observer() Observer {
	if e.Observer == nil {
		return noObserver{}
	}
	return e.Observer
}

// completed runs the engine's OnComplete hook for a run whose summary this worker wrote. The hook's
// failure (the report could not be written) is logged; the run is complete either way.
func (e *Engine) completed(ctx context.Context, run string) {
	if e.OnComplete == nil {
		return
	}
	if err := e.OnComplete(context.WithoutCancel(ctx), run); err != nil {
		e.Log.Warn().Err(err).Str("run", run).Msg("run complete, but its report was not written")
	}
}

// logDone writes the line a Kusto query charts a run from: one per finished chunk, with its records
// by outcome (the logger carries run, chunk and instance).
func (r *chunkRun) logDone() {
	counts := map[string]int{}
	var n, attempts int
	var ms int64
	r.lease.View(func(c *Chunk) {
		for _, rec := range c.Records {
			counts[string(rec.Outcome)]++
		}
		n, ms, attempts = len(c.Records), c.Stats.ProcessingMilli, c.Attempts
	})
	ev := r.log.Info().Int("records", n).Int64("ms", ms).Int("attempts", attempts)
	for o, c := range counts {
		ev = ev.Int(o, c)
	}
	ev.Msg("chunk done")
}

// PlanPageSize is the number of records a planning step reads per page: whole chunks, so chunks are
// full-sized except the very last. A page that is not the run's last is full.
func (s *Spec) PlanPageSize() int {
	return max(s.ChunkSize, s.PageSize/s.ChunkSize*s.ChunkSize)
}
