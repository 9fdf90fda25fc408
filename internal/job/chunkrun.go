package job

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"dvbulk/internal/checkpoint"
	"dvbulk/internal/ctxutil"
	"dvbulk/internal/dataverse"
	"dvbulk/internal/pipeline"
)

// chunkRun is one owner's processing of a claimed chunk: the pipeline over its pending records,
// checkpoints through the lease while it runs, and how the delivery ends (done, yielded at the
// invocation deadline, failed for a redelivery, dead-lettered on the last delivery, or stopped because
// the chunk was taken over).
type chunkRun struct {
	e      *Engine
	man    *Manifest
	lease  *Lease // owns the chunk document; every change of it goes through the lease
	name   string
	margin time.Duration // stop this long before the invocation deadline
	log    zerolog.Logger

	mu        sync.Mutex // guards lastRetry and stats
	lastRetry string
	stats     Stats
}

func (r *chunkRun) execute(ctx context.Context, m *Message, d Delivery) (Result, error) {
	var res Result
	e := r.e
	started := e.now()
	// The pipeline stops starting work early enough before the invocation deadline to let the calls
	// in flight finish, checkpoint and yield (stopCtx); those calls run under the invocation's own
	// deadline. Losing the chunk to another worker stops starting work at once.
	stopCtx, stopStarting := context.WithCancel(ctx)
	if dl, ok := ctx.Deadline(); ok {
		stopCtx, stopStarting = context.WithDeadline(ctx, dl.Add(-r.margin))
	}
	defer stopStarting()
	// A stop carried in by the invocation (the process is shutting down: SIGTERM on scale-in) is a
	// yield point like the deadline: the calls in flight finish, then the chunk checkpoints and hands on.
	if stop := ctxutil.StopChan(ctx); stop != nil {
		go func() {
			select {
			case <-stop:
				stopStarting()
			case <-stopCtx.Done():
			}
		}()
	}
	// This chunk's own Dataverse 429s and retries, apart from those of chunks running beside it.
	tally := &dataverse.Tally{}
	workCtx := ctxutil.WithStop(dataverse.WithTally(ctx, tally), stopCtx.Done())
	// The lease is renewed from the claim on, through every step, until the work has drained.
	flushCtx, endFlushing := context.WithCancel(ctx)
	flushDone := make(chan struct{})
	go func() {
		defer close(flushDone)
		r.flushLoop(flushCtx, stopStarting)
	}()
	stopFlushing := func() { endFlushing(); <-flushDone }
	if err := r.refreshResumed(dataverse.WithTally(stopCtx, tally)); err != nil {
		stopFlushing()
		if r.lease.Lost() {
			return r.lostOwnership(ctx, m, &res)
		}
		return r.transientFailure(ctx, m, d, err.Error())
	}
	items, index := r.pendingItems()
	var perr error
	if r.man.Spec.Import != nil {
		perr = r.importRecords(workCtx, items, index, func(ev pipeline.Event) { r.apply(index, ev) })
	} else {
		cfg, err := r.pipelineConfig()
		if err != nil {
			stopFlushing()
			return res, err
		}
		perr = pipeline.Run(workCtx, cfg, items, func(ev pipeline.Event) { r.apply(index, ev) })
	}
	atDeadline := (errors.Is(stopCtx.Err(), context.DeadlineExceeded) || ctxutil.Stopped(ctx)) && ctx.Err() == nil
	stopFlushing()

	r.mu.Lock()
	stats := r.stats
	r.stats = Stats{}
	lastRetry := r.lastRetry
	r.mu.Unlock()
	stats.Throttled, stats.Retries = tally.Throttled(), tally.Retries()
	stats.ProcessingMilli = e.now().Sub(started).Milliseconds()
	r.lease.Update(func(c *Chunk) { c.Stats.add(stats) })
	pending, records := r.pending()
	e.observer().ChunkDone(m.Run, m.Seq, records, e.now().Sub(started))

	switch {
	case r.lease.Lost() || errors.Is(perr, pipeline.ErrLostOwnership):
		return r.lostOwnership(ctx, m, &res)
	case pending == 0:
		if err := r.finish(ctx, ChunkDone, ""); errors.Is(err, checkpoint.ErrConflict) {
			return r.lostOwnership(ctx, m, &res)
		} else if err != nil {
			return res, err
		}
		res.logf("chunk %d of %s done: %d records", m.Seq, m.Run, records)
		r.logDone()
		return res, e.finishChunk(ctx, r.settled())
	case atDeadline && lastRetry == "":
		// Stopped for the invocation deadline or a shutdown: checkpoint, release and continue in a new
		// message, unless the release found the chunk taken over (the owner has its own message).
		if r.lease.Release(ctx) {
			return r.lostOwnership(ctx, m, &res)
		}
		why := "at the invocation deadline"
		if ctxutil.Stopped(ctx) {
			why = "at shutdown"
		}
		return e.yield(m, &res, "chunk %d: %d records left %s; continuing in a new message", m.Seq, pending, why)
	case ctx.Err() != nil:
		r.lease.Release(context.WithoutCancel(ctx))
		return res, ctx.Err()
	}
	reason := lastRetry
	if reason == "" && perr != nil {
		reason = perr.Error()
	}
	return r.transientFailure(ctx, m, d, reason)
}

// pending counts the records without an outcome, and all records.
func (r *chunkRun) pending() (pending, records int) {
	r.lease.View(func(c *Chunk) {
		records = len(c.Records)
		for _, rec := range c.Records {
			if rec.Outcome == "" {
				pending++
			}
		}
	})
	return pending, records
}

// settled is the chunk document once no more work runs on it (the pipeline and the flush loop have
// stopped), for the run's completion.
func (r *chunkRun) settled() *Chunk {
	var ch *Chunk
	r.lease.View(func(c *Chunk) { ch = c })
	return ch
}

// lostOwnership ends a delivery that stopped because this worker's lease could no longer be trusted
// (its guard tripped, or a checkpoint write met another version). When another worker holds the
// chunk now, or finished it, that worker has its own message and this one is acknowledged. When
// nobody does (this worker's own lease lapsed in a stall and no one took over), acknowledging would
// strand the chunk with no message left, so the work continues in a new message.
func (r *chunkRun) lostOwnership(ctx context.Context, m *Message, res *Result) (Result, error) {
	ch, _, err := load[Chunk](context.WithoutCancel(ctx), r.e.Store, r.name)
	if err != nil {
		return *res, fmt.Errorf("%w: chunk %d: re-read after losing the lease: %w", ErrTransient, m.Seq, err)
	}
	switch {
	case ch.State != ChunkPending:
		res.logf("chunk %d: finished by another worker (%s); stopped without further writes", m.Seq, ch.State)
		return *res, nil
	case ch.Owner != r.lease.Owner() && ch.heldAt(r.e.now()):
		res.logf("chunk %d: ownership lost to another worker; stopped without further writes", m.Seq)
		return *res, nil
	}
	return r.e.yield(m, res, "chunk %d: this worker's lease lapsed and no other worker holds the chunk; continuing in a new message", m.Seq)
}

// transientFailure ends a delivery that could not finish the chunk. Before the host's last delivery
// it checkpoints, releases the chunk and fails the invocation so the host redelivers; on the last one
// it records the chunk as dead-lettered (its unfinished records failed with the reason), so the run
// still completes and its summary names the chunk, and fails so the host poisons the message.
func (r *chunkRun) transientFailure(ctx context.Context, m *Message, d Delivery, reason string) (Result, error) {
	var res Result
	e := r.e
	pending, _ := r.pending()
	if d.DequeueCount >= e.Opt.MaxDequeue {
		if err := r.finish(ctx, ChunkDeadLettered, reason); errors.Is(err, checkpoint.ErrConflict) {
			return r.lostOwnership(ctx, m, &res) // taken over: the new owner has its own message
		} else if err != nil {
			return res, err
		}
		if err := e.finishChunk(ctx, r.settled()); err != nil {
			return res, err
		}
		return res, fmt.Errorf("%w: chunk %d dead-lettered after %d deliveries, %d records unfinished: %s", ErrTransient, m.Seq, d.DequeueCount, pending, reason)
	}
	if r.lease.Release(ctx) { // taken over meanwhile: the new owner retries them under its own message
		return r.lostOwnership(ctx, m, &res)
	}
	return res, fmt.Errorf("%w: chunk %d: %d records hit transient failures (%s); retrying on redelivery", ErrTransient, m.Seq, pending, reason)
}

// refreshResumed re-reads the records that were transformed but not confirmed written by an earlier
// attempt. The earlier attempt may have written them just before it died; comparing against fresh
// values turns such a repeat into "unchanged" instead of a second write.
func (r *chunkRun) refreshResumed(ctx context.Context) error {
	var ids []string
	attempts := 0
	r.lease.View(func(c *Chunk) {
		attempts = c.Attempts
		for _, rec := range c.Records {
			if rec.Outcome == "" && rec.Fields != nil {
				ids = append(ids, rec.ID)
			}
		}
	})
	if len(ids) == 0 || attempts <= 1 || r.man.Spec.Import != nil {
		return nil // an import's writes are idempotent by id or alternate key: nothing to re-read
	}
	spec := r.man.Spec
	rows, err := r.e.DV.GetByIDs(ctx, dvTable(spec), ids, spec.SelectColumns())
	if err != nil {
		return fmt.Errorf("%w: re-read resumed records: %w", ErrTransient, err)
	}
	fresh := map[string]Record{}
	for _, row := range rows {
		rec, err := toRecord(spec, row)
		if err != nil {
			return err
		}
		fresh[rec.ID] = rec
	}
	r.lease.Update(func(c *Chunk) {
		for i := range c.Records {
			rec := &c.Records[i]
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
	})
	return nil
}

// pendingItems turns the chunk's unfinished records into pipeline items. The index points into the
// chunk document: touch it only inside the lease's Update.
func (r *chunkRun) pendingItems() ([]*pipeline.Item, map[string]*Record) {
	spec := r.man.Spec
	index := map[string]*Record{}
	var items []*pipeline.Item
	r.lease.View(func(c *Chunk) {
		for i := range c.Records {
			rec := &c.Records[i]
			if rec.Outcome != "" {
				continue
			}
			index[rec.ID] = rec
			items = append(items, &pipeline.Item{ID: rec.ID, ETag: rec.ETag, Current: normalizeAll(spec, rec.Current), Fields: normalizeAll(spec, rec.Fields)})
		}
	})
	return items, index
}

// apply records a pipeline event in the checkpoint (written by the next flush).
func (r *chunkRun) apply(index map[string]*Record, ev pipeline.Event) {
	rec, ok := index[ev.ID]
	if !ok {
		return
	}
	r.mu.Lock()
	r.stats.DroppedFields += ev.Dropped
	switch ev.Kind {
	case pipeline.EventTransformed:
		r.stats.Transformed++
	case pipeline.EventRetry:
		r.lastRetry = ev.Reason
	}
	r.mu.Unlock()
	r.lease.Update(func(*Chunk) {
		switch ev.Kind {
		case pipeline.EventTransformed:
			rec.Fields = ev.Fields
		case pipeline.EventDone:
			rec.Outcome, rec.Reason, rec.Changed = ev.Outcome, ev.Reason, ev.Changed
			if ev.Outcome != pipeline.WouldUpdate {
				rec.Fields = nil // written or settled: nothing left to resume
			}
		}
	})
	if ev.Kind == pipeline.EventDone {
		r.e.observer().Outcome(r.man.Run, string(ev.Outcome))
	}
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
		Guard:            r.lease.Guard,
	}
	switch spec.Transform.Kind {
	case KindEnrich:
		if e.Enricher == nil {
			return cfg, fmt.Errorf("job %s: enrichment is not configured (ENRICHMENT_URL)", spec.Name)
		}
		cfg.Transformer = &enrichTransform{client: e.Enricher, input: spec.Input}
		cfg.TransformBatch, cfg.TransformWorkers = enrichSizing(e.Enricher, cfg.TransformBatch, cfg.TransformWorkers)
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

// flushLoop checkpoints every FlushInterval while there is news or the lease needs renewing. Once the
// chunk is taken over it stops the pipeline from starting more work (stop) and ends.
func (r *chunkRun) flushLoop(ctx context.Context, stop context.CancelFunc) {
	t := time.NewTicker(r.e.Opt.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !r.lease.Renewal() {
			continue
		}
		if err := r.lease.Checkpoint(ctx, nil); errors.Is(err, checkpoint.ErrConflict) {
			stop()
			return
		} else if err != nil {
			r.log.Warn().Err(err).Msg("checkpoint write failed; will retry")
		}
	}
}

// finish writes the chunk's final state and gives up the lease. checkpoint.ErrConflict means
// another worker owns the chunk now and will finish it.
func (r *chunkRun) finish(ctx context.Context, state ChunkState, reason string) error {
	err := r.lease.Checkpoint(ctx, func(c *Chunk) {
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
		return fmt.Errorf("%w: write final chunk checkpoint: %w", ErrTransient, err)
	}
	return err
}
