package job

import (
	"context"
	"errors"
	"fmt"

	"dvbulk/internal/checkpoint"
)

// A run is taken over when it made no progress for StaleAfter (the next start of its job, see
// Start) or when an operator resumes it (dvbulk run): planning goes on from its cursor and every
// unfinished chunk nobody holds is enqueued again. A chunk's own takeover, of a lapsed lease, is the
// Lease's (lease.go).

// Resume continues a run now, whatever its staleness: planning goes on from its cursor and every
// unfinished, unowned chunk is enqueued again. The console uses it to pick up an interrupted run.
func (e *Engine) Resume(ctx context.Context, run string) (Result, error) {
	man, _, err := load[Manifest](ctx, e.Store, manifestName(run))
	if errors.Is(err, checkpoint.ErrNotFound) {
		return Result{}, fmt.Errorf("%w: %s", ErrNoRun, run)
	}
	if err != nil {
		return Result{}, err
	}
	if man.State == RunDone {
		return Result{Logs: []string{"run " + run + " is already done"}}, nil
	}
	return e.resume(ctx, man)
}

// resume takes over a stale run: planning continues from the recorded cursor and every chunk that is
// unfinished and unowned is enqueued again (its checkpoint makes the repeat cheap).
func (e *Engine) resume(ctx context.Context, man *Manifest) (Result, error) {
	var res Result
	res.logf("run %s made no progress for %s; taking it over", man.Run, e.Opt.StaleAfter)
	if !man.PlanningDone {
		m := Message{Kind: KindPlan, Job: man.Job, Run: man.Run, Cursor: man.Cursor, Seq: man.NextSeq}
		s, err := m.Encode()
		if err != nil {
			return res, err
		}
		res.Enqueue = append(res.Enqueue, s)
	}
	now := e.now()
	err := e.Store.List(ctx, chunkPrefix(man.Run), func(name string) error {
		ch, _, err := load[Chunk](ctx, e.Store, name)
		if err != nil {
			return err
		}
		if ch.State != ChunkPending || ch.heldAt(now) {
			return nil
		}
		if ch.Attempts >= e.Opt.MaxDequeue {
			// Crashed on every delivery: the host has poisoned its message by now.
			return e.deadLetterChunk(ctx, man.Run, ch.Seq, "crashed on every delivery ("+fmt.Sprint(ch.Attempts)+" attempts); message poisoned")
		}
		m := Message{Kind: KindChunk, Job: man.Job, Run: man.Run, Seq: ch.Seq, IDs: chunkIDs(ch)}
		s, err := m.Encode()
		if err != nil {
			return err
		}
		res.Enqueue = append(res.Enqueue, s)
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("%w: sweep chunks of %s: %w", ErrTransient, man.Run, err)
	}
	_, err = modify(ctx, e.Store, manifestName(man.Run), func(m *Manifest) (*Manifest, error) {
		m.Updated = e.now().UTC()
		m.Writer = nonce()
		return m, nil
	})
	if err != nil {
		return res, fmt.Errorf("%w: %w", ErrTransient, err)
	}
	res.logf("re-enqueued %d messages for run %s", len(res.Enqueue), man.Run)
	return res, e.tryComplete(ctx, man.Run)
}
