package job

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"dvbulk/internal/checkpoint"
	"dvbulk/internal/pipeline"
)

// MaxListedFailures caps the failures and changes listed in a summary; the counts stay exact and the
// chunk checkpoints keep every record's outcome.
const MaxListedFailures = 10000

// Summary is the report of a finished run, written exactly once by whichever worker finishes last.
type Summary struct {
	Run              string                   `json:"run"`
	Job              string                   `json:"job"`
	DryRun           bool                     `json:"dryRun,omitempty"`
	RerunOf          string                   `json:"rerunOf,omitempty"`
	Trigger          string                   `json:"trigger"`
	Started          time.Time                `json:"started"`
	Finished         time.Time                `json:"finished"`
	DurationSeconds  float64                  `json:"durationSeconds"`
	RecordsPerSecond float64                  `json:"recordsPerSecond"`
	Planned          int                      `json:"planned"`
	Records          int                      `json:"records"`
	Chunks           int                      `json:"chunks"`
	Outcomes         map[pipeline.Outcome]int `json:"outcomes"`
	// EnrichmentCallsSaved counts the records of an enrich job not sent to the service because they
	// were fresh (one lookup each; with ENRICHMENT_BATCH_SIZE > 1 they would have shared requests).
	EnrichmentCallsSaved int         `json:"enrichmentCallsSaved,omitempty"`
	Full                 bool        `json:"full,omitempty"`
	Failures             []Failure   `json:"failures"`
	FailuresListed       bool        `json:"failuresComplete"`
	DeadLettered         []DeadChunk `json:"deadLettered"`
	Changes              []Change    `json:"changes,omitempty"` // dry run: what would be written
	Stats                Stats       `json:"stats"`
	Writer               string      `json:"w"`
}

// Failure is one record that did not end as intended.
type Failure struct {
	ID      string           `json:"id"`
	Outcome pipeline.Outcome `json:"outcome"`
	Reason  string           `json:"reason"`
	Chunk   int              `json:"chunk"`
	Row     int64            `json:"row,omitempty"`  // an imported record's number in its file
	Line    int64            `json:"line,omitempty"` // and the line it starts on
}

// DeadChunk is a chunk whose message was dead-lettered.
type DeadChunk struct {
	Seq     int    `json:"seq"`
	Reason  string `json:"reason"`
	Records int    `json:"records"`
}

// Change is a write a dry run would have made.
type Change struct {
	ID     string         `json:"id"`
	Fields map[string]any `json:"fields"`
}

// finishChunk counts a finished chunk into the run's progress (once, however often it is called) and
// completes the run if it was the last.
func (e *Engine) finishChunk(ctx context.Context, ch *Chunk) error {
	if err := e.ledgerOnce(ctx, ch); err != nil {
		return err
	}
	_, err := modify(ctx, e.Store, progressName(ch.Run), func(p *Progress) (*Progress, error) {
		if p == nil {
			p = &Progress{Run: ch.Run, Outcomes: map[pipeline.Outcome]int{}}
		}
		if p.has(ch.Seq) {
			return nil, errNoChange
		}
		p.set(ch.Seq)
		p.Chunks = p.count()
		p.Records += len(ch.Records)
		p.Stats.add(ch.Stats)
		notable := ch.State == ChunkDeadLettered
		for _, r := range ch.Records {
			p.Outcomes[r.Outcome]++
			notable = notable || listed(r.Outcome)
		}
		if ch.State == ChunkDeadLettered {
			p.DeadLettered = append(p.DeadLettered, fmt.Sprint(ch.Seq))
		}
		if notable {
			p.Notable = append(p.Notable, ch.Seq)
		}
		p.Updated, p.Writer = e.now().UTC(), nonce()
		return p, nil
	})
	if err != nil {
		return fmt.Errorf("%w: record progress: %w", ErrTransient, err)
	}
	return e.tryComplete(ctx, ch.Run)
}

// ledgerOnce records a finished chunk in the job's ledger unless its progress already counts it (the
// ledger is updated before the progress, so a crash in between repeats only the harmless update).
func (e *Engine) ledgerOnce(ctx context.Context, ch *Chunk) error {
	if !slices.ContainsFunc(ch.Records, func(r Record) bool { return r.FP != "" }) {
		return nil
	}
	prog, _, err := load[Progress](ctx, e.Store, progressName(ch.Run))
	switch {
	case err == nil && prog.has(ch.Seq):
		return nil
	case err != nil && !errors.Is(err, checkpoint.ErrNotFound):
		return fmt.Errorf("%w: read progress: %w", ErrTransient, err)
	}
	man, _, err := load[Manifest](ctx, e.Store, manifestName(ch.Run))
	if err != nil {
		return fmt.Errorf("%w: read manifest of %s: %w", ErrTransient, ch.Run, err)
	}
	return e.recordLedger(ctx, man, ch)
}

// deadLetterChunk marks an abandoned chunk dead-lettered (used by the stale-run sweep for a chunk that
// crashed its worker on every delivery).
func (e *Engine) deadLetterChunk(ctx context.Context, run string, seq int, reason string) error {
	ch, err := modify(ctx, e.Store, chunkName(run, seq), func(c *Chunk) (*Chunk, error) {
		if c == nil || c.State != ChunkPending {
			return nil, errNoChange
		}
		c.State, c.Reason, c.Owner, c.Lease = ChunkDeadLettered, reason, "", time.Time{}
		for i := range c.Records {
			if c.Records[i].Outcome == "" {
				c.Records[i].Outcome, c.Records[i].Reason = pipeline.Failed, "chunk dead-lettered: "+reason
			}
		}
		c.Updated, c.Writer = e.now().UTC(), nonce()
		return c, nil
	})
	if err != nil || ch == nil {
		return err
	}
	return e.finishChunk(ctx, ch)
}

// tryComplete writes the run summary when planning is done and every chunk has finished. Creating
// the summary is conditional, so exactly one worker writes it.
func (e *Engine) tryComplete(ctx context.Context, run string) error {
	man, _, err := load[Manifest](ctx, e.Store, manifestName(run))
	if err != nil {
		return fmt.Errorf("%w: read manifest: %w", ErrTransient, err)
	}
	if !man.PlanningDone || man.State == RunDone {
		return nil
	}
	prog := &Progress{}
	if man.NextSeq > 0 {
		p, _, err := load[Progress](ctx, e.Store, progressName(run))
		if errors.Is(err, checkpoint.ErrNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: read progress: %w", ErrTransient, err)
		}
		if p.count() < man.NextSeq {
			return nil
		}
		prog = p
	}
	sum, err := e.buildSummary(ctx, man, prog)
	if err != nil {
		return err
	}
	if _, err := create(ctx, e.Store, summaryName(run), sum); err != nil && !errors.Is(err, checkpoint.ErrConflict) {
		return fmt.Errorf("%w: write summary: %w", ErrTransient, err)
	} else if err == nil {
		if err := e.commitDelta(ctx, man); err != nil {
			return err
		}
		e.Log.Info().Str("run", run).Int("records", sum.Records).Interface("outcomes", sum.Outcomes).
			Float64("seconds", sum.DurationSeconds).Msg("run complete")
		defer e.completed(ctx, run) // after the manifest says done, so the report shows the final state
	}
	if _, err := modify(ctx, e.Store, manifestName(run), func(m *Manifest) (*Manifest, error) {
		if m.State == RunDone {
			return nil, errNoChange
		}
		m.State, m.Updated, m.Writer = RunDone, e.now().UTC(), nonce()
		return m, nil
	}); err != nil {
		return fmt.Errorf("%w: %w", ErrTransient, err)
	}
	// The job may start again: clear the active marker if it still names this run.
	act, etag, err := load[Active](ctx, e.Store, man.activeDoc())
	if err == nil && act.Run == run {
		if err := e.Store.Delete(ctx, man.activeDoc(), etag); err != nil && !errors.Is(err, checkpoint.ErrConflict) && !errors.Is(err, checkpoint.ErrNotFound) {
			return fmt.Errorf("%w: clear active run: %w", ErrTransient, err)
		}
	}
	return nil
}

// listed reports whether the summary names records with outcome o.
func listed(o pipeline.Outcome) bool {
	return o == pipeline.Failed || o == pipeline.Skipped || o == pipeline.WouldUpdate
}

// buildSummary builds the run's summary from its progress document (counts and stats of every
// chunk) and the chunks progress marks notable (the ones with records the summary lists), so a
// clean run of any size completes with two reads rather than one per chunk.
func (e *Engine) buildSummary(ctx context.Context, man *Manifest, prog *Progress) (*Summary, error) {
	now := e.now().UTC()
	sum := &Summary{Run: man.Run, Job: man.Job, DryRun: man.DryRun, RerunOf: man.RerunOf, Trigger: man.Trigger,
		Started: man.Created, Finished: now, Planned: man.PlannedRecords, Outcomes: map[pipeline.Outcome]int{},
		Failures: []Failure{}, FailuresListed: true, DeadLettered: []DeadChunk{}, Writer: nonce(),
		Chunks: prog.count(), Records: prog.Records, Stats: prog.Stats}
	for o, n := range prog.Outcomes {
		sum.Outcomes[o] = n
	}
	if man.Fresh > 0 {
		sum.Outcomes[pipeline.Fresh] += man.Fresh
		sum.Records += man.Fresh
		if man.Spec.Transform.Kind == KindEnrich {
			sum.EnrichmentCallsSaved = man.Fresh
		}
	}
	sum.Full = man.Full
	notable := slices.Clone(prog.Notable)
	slices.Sort(notable)
	for _, seq := range slices.Compact(notable) {
		ch, _, err := load[Chunk](ctx, e.Store, chunkName(man.Run, seq))
		if err != nil {
			return nil, fmt.Errorf("%w: read chunk %d for the summary: %w", ErrTransient, seq, err)
		}
		if ch.State == ChunkDeadLettered {
			sum.DeadLettered = append(sum.DeadLettered, DeadChunk{Seq: ch.Seq, Reason: ch.Reason, Records: len(ch.Records)})
		}
		for _, r := range ch.Records {
			switch r.Outcome {
			case pipeline.Failed, pipeline.Skipped:
				if len(sum.Failures) < MaxListedFailures {
					sum.Failures = append(sum.Failures, Failure{ID: r.ID, Outcome: r.Outcome, Reason: r.Reason, Chunk: ch.Seq, Row: r.Row, Line: r.Line})
				} else {
					sum.FailuresListed = false
				}
			case pipeline.WouldUpdate:
				if len(sum.Changes) < MaxListedFailures {
					sum.Changes = append(sum.Changes, Change{ID: r.ID, Fields: r.Changed})
				}
			}
		}
	}
	sort.Slice(sum.Failures, func(i, j int) bool { return sum.Failures[i].ID < sum.Failures[j].ID })
	sum.DurationSeconds = now.Sub(man.Created).Seconds()
	if sum.DurationSeconds > 0 {
		sum.RecordsPerSecond = float64(sum.Records) / sum.DurationSeconds
	}
	return sum, nil
}
