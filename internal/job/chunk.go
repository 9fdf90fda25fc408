package job

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"dvbulk/internal/checkpoint"
	"dvbulk/internal/ctxutil"
	"dvbulk/internal/pipeline"
)

// processChunk runs one chunk to completion (or to a checkpointed stop). Ownership is an ETag-guarded
// lease inside the chunk checkpoint: a duplicate delivery waits for the owner instead of doing the
// work twice, and a stale owner's next checkpoint write fails, after which it writes nothing more.
func (e *Engine) processChunk(ctx context.Context, m *Message, d Delivery) (Result, error) {
	var res Result
	log := zerolog.Ctx(ctx).With().Int("chunk", m.Seq).Logger()
	man, _, err := load[Manifest](ctx, e.Store, manifestName(m.Run))
	if err != nil {
		// Fail closed: without the manifest nothing can be checked, and a missing one may be a storage
		// account that is briefly unreachable or being restored.
		return res, fmt.Errorf("%w: read manifest of %s: %w", ErrTransient, m.Run, err)
	}
	if man.Job != m.Job {
		return res, &BadMessageError{Reason: fmt.Sprintf("chunk names job %q but run %s is of job %q", m.Job, m.Run, man.Job)}
	}
	ch, etag, err := e.loadOrCreateChunk(ctx, man, m)
	if err != nil {
		return res, err
	}
	name := chunkName(m.Run, m.Seq)
	lease := newLease(e.Store, name, e.Instance+"/"+nonce(), e.Opt.Lease, e.now, log)
	margin := e.yieldMargin(ctx)
	for {
		result, cur, err := lease.Claim(ctx, ch, etag)
		if err != nil {
			return res, err
		}
		switch result {
		case LeaseSettled:
			res.logf("chunk %d of %s is already %s; nothing to do", m.Seq, m.Run, cur.State)
			return res, e.finishChunk(ctx, cur)
		case LeaseHeld:
			// Owned by a live worker (a duplicate delivery): wait for it rather than redo its work.
			if dl, ok := ctx.Deadline(); ok && time.Until(dl) < margin+e.Opt.WaitPoll {
				return e.yield(m, &res, "chunk %d is owned by %s; handing the wait to a new message", m.Seq, cur.Owner)
			}
			if err := ctxutil.SleepOrStop(ctx, e.Opt.WaitPoll); errors.Is(err, ctxutil.ErrStopped) {
				return e.yield(m, &res, "chunk %d is owned by %s; handing the wait to a new message at shutdown", m.Seq, cur.Owner)
			} else if err != nil {
				return res, err
			}
			if ch, etag, err = load[Chunk](ctx, e.Store, name); err != nil {
				return res, fmt.Errorf("%w: re-read chunk: %w", ErrTransient, err)
			}
			continue
		}
		lease.View(func(c *Chunk) {
			log.Debug().Int("attempt", c.Attempts).Int("records", len(c.Records)).Stringer("claim", result).Msg("chunk claimed")
		})
		run := &chunkRun{e: e, man: man, lease: lease, name: name, margin: margin, log: log}
		return run.execute(ctx, m, d)
	}
}

// loadOrCreateChunk reads the chunk checkpoint. A chunk message without one (a hand-written re-run, or
// a checkpoint lost with its storage) is rebuilt from its ids with fresh values from Dataverse.
func (e *Engine) loadOrCreateChunk(ctx context.Context, man *Manifest, m *Message) (*Chunk, checkpoint.ETag, error) {
	name := chunkName(m.Run, m.Seq)
	ch, etag, err := load[Chunk](ctx, e.Store, name)
	if err == nil {
		return ch, etag, nil
	}
	if !errors.Is(err, checkpoint.ErrNotFound) {
		return nil, "", fmt.Errorf("%w: read chunk %d: %w", ErrTransient, m.Seq, err)
	}
	if man.Spec.Import != nil {
		// An import chunk's records live only in its checkpoint (mapped from the file at planning).
		return nil, "", &BadMessageError{Reason: fmt.Sprintf("import chunk %d of %s has no checkpoint; start the import again", m.Seq, m.Run)}
	}
	rows, err := e.DV.GetByIDs(ctx, dvTable(man.Spec), m.IDs, man.Spec.SelectColumns())
	if err != nil {
		return nil, "", fmt.Errorf("%w: read chunk records: %w", ErrTransient, err)
	}
	found := map[string]Record{}
	for _, row := range rows {
		rec, err := toRecord(man.Spec, row)
		if err != nil {
			return nil, "", err
		}
		found[rec.ID] = rec
	}
	ch = &Chunk{Run: m.Run, Seq: m.Seq, State: ChunkPending, Updated: e.now().UTC(), Writer: nonce()}
	for _, id := range m.IDs {
		rec, ok := found[id]
		if !ok {
			rec = Record{ID: id, Outcome: pipeline.Gone, Reason: "record no longer exists"}
		}
		ch.Records = append(ch.Records, rec)
	}
	if _, err := create(ctx, e.Store, name, ch); err != nil && !errors.Is(err, checkpoint.ErrConflict) {
		return nil, "", fmt.Errorf("%w: write chunk %d: %w", ErrTransient, m.Seq, err)
	}
	ch, etag, err = load[Chunk](ctx, e.Store, name)
	if err != nil {
		return nil, "", fmt.Errorf("%w: read chunk %d: %w", ErrTransient, m.Seq, err)
	}
	return ch, etag, nil
}

func (e *Engine) yield(m *Message, res *Result, format string, a ...any) (Result, error) {
	s, err := m.Encode()
	if err != nil {
		return *res, err
	}
	res.Enqueue = append(res.Enqueue, s)
	res.logf(format, a...)
	return *res, nil
}
