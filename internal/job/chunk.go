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
		return res, fmt.Errorf("%w: read manifest of %s: %v", ErrTransient, m.Run, err)
	}
	if man.Job != m.Job {
		return res, &BadMessageError{Reason: fmt.Sprintf("chunk names job %q but run %s is of job %q", m.Job, m.Run, man.Job)}
	}
	ch, etag, err := e.loadOrCreateChunk(ctx, man, m)
	if err != nil {
		return res, err
	}
	me := e.Instance + "/" + nonce()
	margin := e.yieldMargin(ctx)
	for {
		if ch.State != ChunkPending {
			res.logf("chunk %d of %s is already %s; nothing to do", m.Seq, m.Run, ch.State)
			return res, e.finishChunk(ctx, ch)
		}
		now := e.now()
		if ch.Owner != "" && now.Before(ch.Lease) {
			// Owned by a live worker (a duplicate delivery): wait for it rather than redo its work.
			if dl, ok := ctx.Deadline(); ok && time.Until(dl) < margin+e.Opt.WaitPoll {
				return e.yield(m, &res, "chunk %d is owned by %s; handing the wait to a new message", m.Seq, ch.Owner)
			}
			if err := ctxutil.SleepOrStop(ctx, e.Opt.WaitPoll); errors.Is(err, ctxutil.ErrStopped) {
				return e.yield(m, &res, "chunk %d is owned by %s; handing the wait to a new message at shutdown", m.Seq, ch.Owner)
			} else if err != nil {
				return res, err
			}
			if ch, etag, err = load[Chunk](ctx, e.Store, chunkName(m.Run, m.Seq)); err != nil {
				return res, fmt.Errorf("%w: re-read chunk: %v", ErrTransient, err)
			}
			continue
		}
		ch.Owner, ch.Lease, ch.Attempts = me, now.Add(e.Opt.Lease), ch.Attempts+1
		ch.Updated, ch.Writer = now.UTC(), nonce()
		etag, err = save(ctx, e.Store, chunkName(m.Run, m.Seq), ch, etag)
		if err == nil {
			break
		}
		if !errors.Is(err, checkpoint.ErrConflict) {
			return res, fmt.Errorf("%w: claim chunk: %v", ErrTransient, err)
		}
		if ch, etag, err = load[Chunk](ctx, e.Store, chunkName(m.Run, m.Seq)); err != nil {
			return res, fmt.Errorf("%w: re-read chunk: %v", ErrTransient, err)
		}
	}
	log.Debug().Int("attempt", ch.Attempts).Int("records", len(ch.Records)).Msg("chunk claimed")
	run := &chunkRun{e: e, man: man, ch: ch, etag: etag, name: chunkName(m.Run, m.Seq), me: me, margin: margin, confirmed: ch.Lease, log: log}
	return run.execute(ctx, m, d)
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
		return nil, "", fmt.Errorf("%w: read chunk %d: %v", ErrTransient, m.Seq, err)
	}
	if man.Spec.Import != nil {
		// An import chunk's records live only in its checkpoint (mapped from the file at planning).
		return nil, "", &BadMessageError{Reason: fmt.Sprintf("import chunk %d of %s has no checkpoint; start the import again", m.Seq, m.Run)}
	}
	rows, err := e.DV.GetByIDs(ctx, dvTable(man.Spec), m.IDs, man.Spec.SelectColumns())
	if err != nil {
		return nil, "", fmt.Errorf("%w: read chunk records: %v", ErrTransient, err)
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
		return nil, "", fmt.Errorf("%w: write chunk %d: %v", ErrTransient, m.Seq, err)
	}
	ch, etag, err = load[Chunk](ctx, e.Store, name)
	if err != nil {
		return nil, "", fmt.Errorf("%w: read chunk %d: %v", ErrTransient, m.Seq, err)
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

// chunkRun is one owner's processing of a claimed chunk.
type chunkRun struct {
	e    *Engine
	man  *Manifest
	name string
	log  zerolog.Logger

	mu        sync.Mutex
	ch        *Chunk
	etag      checkpoint.ETag
	me        string        // this worker's owner id in the checkpoint
	margin    time.Duration // stop this long before the invocation deadline
	confirmed time.Time     // lease expiry as last written successfully
	dirty     bool
	lost      bool
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
		if r.isLost() {
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
	r.stats.Throttled, r.stats.Retries = tally.Throttled(), tally.Retries()
	r.stats.ProcessingMilli = e.now().Sub(started).Milliseconds()
	r.ch.Stats.add(r.stats)
	r.stats = Stats{}
	pending := 0
	for _, rec := range r.ch.Records {
		if rec.Outcome == "" {
			pending++
		}
	}
	lost := r.lost
	r.mu.Unlock()

	switch {
	case lost || errors.Is(perr, pipeline.ErrLostOwnership):
		return r.lostOwnership(ctx, m, &res)
	case pending == 0:
		if err := r.finish(ctx, ChunkDone, ""); errors.Is(err, checkpoint.ErrConflict) {
			return r.lostOwnership(ctx, m, &res)
		} else if err != nil {
			return res, err
		}
		res.logf("chunk %d of %s done: %d records", m.Seq, m.Run, len(r.ch.Records))
		return res, e.finishChunk(ctx, r.ch)
	case atDeadline && r.lastRetry == "":
		// Stopped for the invocation deadline or a shutdown: checkpoint, release and continue in a new
		// message, unless the release found the chunk taken over (the owner has its own message).
		if r.release(ctx) {
			return r.lostOwnership(ctx, m, &res)
		}
		why := "at the invocation deadline"
		if ctxutil.Stopped(ctx) {
			why = "at shutdown"
		}
		return e.yield(m, &res, "chunk %d: %d records left %s; continuing in a new message", m.Seq, pending, why)
	case ctx.Err() != nil:
		r.release(context.WithoutCancel(ctx))
		return res, ctx.Err()
	}
	reason := r.lastRetry
	if reason == "" && perr != nil {
		reason = perr.Error()
	}
	return r.transientFailure(ctx, m, d, reason)
}

func (r *chunkRun) isLost() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lost
}

// lostOwnership ends a delivery that stopped because this worker's lease could no longer be trusted
// (its guard tripped, or a checkpoint write met another version). When another worker holds the
// chunk now, or finished it, that worker has its own message and this one is acknowledged. When
// nobody does (this worker's own lease lapsed in a stall and no one took over), acknowledging would
// strand the chunk with no message left, so the work continues in a new message.
func (r *chunkRun) lostOwnership(ctx context.Context, m *Message, res *Result) (Result, error) {
	ch, _, err := load[Chunk](context.WithoutCancel(ctx), r.e.Store, r.name)
	if err != nil {
		return *res, fmt.Errorf("%w: chunk %d: re-read after losing the lease: %v", ErrTransient, m.Seq, err)
	}
	switch {
	case ch.State != ChunkPending:
		res.logf("chunk %d: finished by another worker (%s); stopped without further writes", m.Seq, ch.State)
		return *res, nil
	case ch.Owner != "" && ch.Owner != r.me && r.e.now().Before(ch.Lease):
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
	pending := 0
	r.mu.Lock()
	for _, rec := range r.ch.Records {
		if rec.Outcome == "" {
			pending++
		}
	}
	r.mu.Unlock()
	if d.DequeueCount >= e.Opt.MaxDequeue {
		if err := r.finish(ctx, ChunkDeadLettered, reason); errors.Is(err, checkpoint.ErrConflict) {
			return res, nil
		} else if err != nil {
			return res, err
		}
		if err := e.finishChunk(ctx, r.ch); err != nil {
			return res, err
		}
		return res, fmt.Errorf("%w: chunk %d dead-lettered after %d deliveries, %d records unfinished: %s", ErrTransient, m.Seq, d.DequeueCount, pending, reason)
	}
	if r.release(ctx) { // taken over meanwhile: the new owner retries them under its own message
		return r.lostOwnership(ctx, m, &res)
	}
	return res, fmt.Errorf("%w: chunk %d: %d records hit transient failures (%s); retrying on redelivery", ErrTransient, m.Seq, pending, reason)
}

// pendingItems turns the chunk's unfinished records into pipeline items.
func (r *chunkRun) pendingItems() ([]*pipeline.Item, map[string]*Record) {
	r.mu.Lock()
	defer r.mu.Unlock()
	spec := r.man.Spec
	index := map[string]*Record{}
	var items []*pipeline.Item
	for i := range r.ch.Records {
		rec := &r.ch.Records[i]
		if rec.Outcome != "" {
			continue
		}
		index[rec.ID] = rec
		items = append(items, &pipeline.Item{ID: rec.ID, ETag: rec.ETag, Current: normalizeAll(spec, rec.Current), Fields: normalizeAll(spec, rec.Fields)})
	}
	return items, index
}

func normalizeAll(spec *Spec, vals map[string]any) map[string]any {
	if vals == nil {
		return nil
	}
	out := make(map[string]any, len(vals))
	for k, v := range vals {
		if n, err := pipeline.Normalize(spec.Columns[k], v); err == nil {
			v = n
		}
		out[k] = v
	}
	return out
}

// apply records a pipeline event in the checkpoint (written by the next flush).
func (r *chunkRun) apply(index map[string]*Record, ev pipeline.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec, ok := index[ev.ID]
	if !ok {
		return
	}
	r.dirty = true
	r.stats.DroppedFields += ev.Dropped
	switch {
	case ev.Transformed:
		rec.Fields = ev.Fields
		r.stats.Transformed++
	case ev.Retry:
		r.lastRetry = ev.Reason
	case ev.Outcome != "":
		rec.Outcome, rec.Reason, rec.Changed = ev.Outcome, ev.Reason, ev.Changed
		if ev.Outcome != pipeline.WouldUpdate {
			rec.Fields = nil // written or settled: nothing left to resume
		}
	}
}
