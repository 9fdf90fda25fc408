package job

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"dvbulk/internal/checkpoint"
	"dvbulk/internal/dataverse"
	"dvbulk/internal/pipeline"
)

// refreshResumed re-reads the records that were transformed but not confirmed written by an earlier
// attempt. The earlier attempt may have written them just before it died; comparing against fresh
// values turns such a repeat into "unchanged" instead of a second write.
func (r *chunkRun) refreshResumed(ctx context.Context) error {
	r.mu.Lock()
	var ids []string
	for _, rec := range r.ch.Records {
		if rec.Outcome == "" && rec.Fields != nil {
			ids = append(ids, rec.ID)
		}
	}
	r.mu.Unlock()
	if len(ids) == 0 || r.ch.Attempts <= 1 || r.man.Spec.Import != nil {
		return nil // an import's writes are idempotent by id or alternate key: nothing to re-read
	}
	spec := r.man.Spec
	rows, err := r.e.DV.GetByIDs(ctx, dvTable(spec), ids, spec.SelectColumns())
	if err != nil {
		return fmt.Errorf("%w: re-read resumed records: %v", ErrTransient, err)
	}
	fresh := map[string]Record{}
	for _, row := range rows {
		rec, err := toRecord(spec, row)
		if err != nil {
			return err
		}
		fresh[rec.ID] = rec
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range r.ch.Records {
		rec := &r.ch.Records[i]
		if rec.Outcome != "" || rec.Fields == nil {
			continue
		}
		f, ok := fresh[rec.ID]
		if !ok {
			rec.Outcome, rec.Reason, rec.Fields = pipeline.Gone, "record no longer exists", nil
			continue
		}
		rec.Current, rec.ETag = f.Current, f.ETag
	}
	r.dirty = true
	return nil
}

func (r *chunkRun) pipelineConfig() (pipeline.Config, error) {
	e, spec := r.e, r.man.Spec
	cfg := pipeline.Config{
		Table:    dvTable(spec),
		Types:    spec.Columns,
		Writable: spec.Writable,
		Write: dataverse.WriteOptions{Mode: dataverse.WriteMode(spec.Write.Mode), BatchSize: spec.Write.BatchSize,
			BypassBusinessLogic: spec.Write.BypassBusinessLogic, BypassCustomPlugins: spec.Write.BypassCustomPlugins,
			SuppressDuplicateDetection: spec.Write.SuppressDuplicateDetection},
		UseETag:          spec.Write.Concurrency == "etag",
		DryRun:           r.man.DryRun,
		Writer:           e.DV,
		TransformBatch:   e.Opt.TransformBatch,
		TransformWorkers: e.Opt.TransformWorkers,
		WriteWorkers:     e.Opt.WriteWorkers,
		Guard:            r.guard,
	}
	switch spec.Transform.Kind {
	case KindEnrich:
		if e.Enricher == nil {
			return cfg, fmt.Errorf("job %s: enrichment is not configured (ENRICHMENT_URL)", spec.Name)
		}
		cfg.Transformer = &enrichTransform{client: e.Enricher, input: spec.Input}
	case KindRecalculate:
		prog, err := spec.Compile()
		if err != nil {
			return cfg, err
		}
		cfg.Transformer = &recalcTransform{prog: prog}
	case KindAction:
		cfg.Actor, cfg.Action, cfg.Params = e.DV, spec.Transform.Action, spec.Transform.Parameters
	}
	return cfg, nil
}

// guard stops writes once the lease as last confirmed in storage is about to run out: past that point
// another worker may own the chunk.
func (r *chunkRun) guard() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lost || r.e.now().After(r.confirmed.Add(-r.e.Opt.Lease/10)) {
		r.lost = true
		return pipeline.ErrLostOwnership
	}
	return nil
}

// flushLoop writes the checkpoint every FlushInterval while there is news, and renews the lease.
func (r *chunkRun) flushLoop(ctx context.Context, stop context.CancelFunc) {
	t := time.NewTicker(r.e.Opt.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r.mu.Lock()
		renew := r.confirmed.Sub(r.e.now()) < r.e.Opt.Lease/2
		need := r.dirty || renew
		r.mu.Unlock()
		if !need {
			continue
		}
		if err := r.flush(ctx, nil); errors.Is(err, checkpoint.ErrConflict) {
			stop()
			return
		} else if err != nil {
			r.log.Warn().Err(err).Msg("checkpoint write failed; will retry")
		}
	}
}

// flush writes the chunk checkpoint if this worker still owns it. change, if set, is applied to the
// document first. A conflict means someone else took the chunk: this worker is then lost for good.
func (r *chunkRun) flush(ctx context.Context, change func(*Chunk)) error {
	r.mu.Lock()
	if r.lost {
		r.mu.Unlock()
		return checkpoint.ErrConflict
	}
	now := r.e.now()
	if change != nil {
		change(r.ch)
	}
	if r.ch.Owner != "" {
		r.ch.Lease = now.Add(r.e.Opt.Lease)
	}
	r.ch.Updated, r.ch.Writer = now.UTC(), nonce()
	data, err := json.Marshal(r.ch)
	etag, lease := r.etag, r.ch.Lease
	r.dirty = false
	r.mu.Unlock()
	if err != nil {
		return fmt.Errorf("job: encode chunk: %w", err)
	}
	// Never abandon a checkpoint write half way: a cancelled request may still be applied by the
	// store, leaving this worker with an ETag that no longer matches its own last write.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	newTag, err := r.e.Store.Update(wctx, r.name, data, etag)
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case err == nil:
		r.etag, r.confirmed = newTag, lease
		return nil
	case errors.Is(err, checkpoint.ErrConflict) || errors.Is(err, checkpoint.ErrNotFound):
		r.lost = true
		r.log.Warn().Msg("chunk checkpoint changed under us: ownership lost, stopping")
		return checkpoint.ErrConflict
	default:
		r.dirty = true
		return err
	}
}

// release checkpoints and gives up ownership so the next delivery can claim at once. It reports
// whether this worker had lost the chunk (its checkpoint changed under it): the new owner then has
// its own message, and this one must not continue the work.
func (r *chunkRun) release(ctx context.Context) (lost bool) {
	err := r.flush(ctx, func(c *Chunk) { c.Owner, c.Lease = "", time.Time{} })
	if errors.Is(err, checkpoint.ErrConflict) {
		return true
	}
	if err != nil {
		r.log.Warn().Err(err).Msg("could not checkpoint on release; the lease will expire instead")
	}
	return false
}

// finish writes the chunk's final state. checkpoint.ErrConflict means another worker owns the chunk
// now and will finish it.
func (r *chunkRun) finish(ctx context.Context, state, reason string) error {
	err := r.flush(ctx, func(c *Chunk) {
		c.State, c.Reason, c.Owner, c.Lease = state, reason, "", time.Time{}
		if state == ChunkDeadLettered {
			for i := range c.Records {
				if c.Records[i].Outcome == "" {
					c.Records[i].Outcome = pipeline.Failed
					c.Records[i].Reason = "chunk dead-lettered: " + reason
				}
			}
		}
	})
	if err != nil && !errors.Is(err, checkpoint.ErrConflict) {
		return fmt.Errorf("%w: write final chunk checkpoint: %v", ErrTransient, err)
	}
	return nil
}
