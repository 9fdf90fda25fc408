// Package pipeline processes one chunk of records as two concurrent stages joined by a bounded
// channel: transform (enrichment call, recalculation) and write (batched Dataverse updates), so
// external calls and writes overlap. Every record ends with an outcome reported by id; a record whose
// work failed transiently is reported as such and left for a later attempt.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"dvbulk/internal/ctxutil"
	"dvbulk/internal/dataverse"
)

// Outcome is how a record finished. Its values are the strings checkpoints, summaries and reports
// carry, in one set of constants.
type Outcome string

// Outcomes of a record.
const (
	Updated     Outcome = "updated"      // written
	Unchanged   Outcome = "unchanged"    // new values equal current ones: nothing written
	Gone        Outcome = "gone"         // the record no longer exists (404); never re-created
	Failed      Outcome = "failed"       // permanent failure, with a reason
	Skipped     Outcome = "skipped"      // deliberately not written (e.g. edited by someone else since read)
	WouldUpdate Outcome = "would-update" // dry run: would have been written
	Fresh       Outcome = "fresh"        // incremental run: inputs unchanged and answered recently; not sent, not written
)

// Item is one record to process.
type Item struct {
	ID      string
	ETag    string
	Current map[string]any // normalized current values of the input and writable columns
	// Fields holds transform output that was checkpointed but not yet written; such an item skips
	// the transform so a retry never pays for the enrichment call again.
	Fields map[string]any
}

// EventKind says what an Event reports.
type EventKind int

const (
	// EventTransformed: the transform produced Fields (allow-listed, normalized); worth checkpointing.
	EventTransformed EventKind = iota + 1
	// EventDone: the item is finished with Outcome, with Reason for failures and skips and Changed
	// for writes (or would-be writes).
	EventDone
	// EventRetry: the item hit a transient failure (Reason) and stays pending for a later attempt.
	EventRetry
)

func (k EventKind) String() string {
	switch k {
	case EventTransformed:
		return "transformed"
	case EventDone:
		return "done"
	case EventRetry:
		return "retry"
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// Event reports progress on one item: one Kind, and the fields that kind uses.
type Event struct {
	ID      string
	Kind    EventKind
	Fields  map[string]any // EventTransformed
	Outcome Outcome        // EventDone
	Reason  string
	Changed map[string]any
	// Dropped counts transform fields that were not on the allow-list.
	Dropped int
}

// TransformResult is the transform's answer for one item.
type TransformResult struct {
	Fields    map[string]any
	Err       string // permanent per-record failure
	Retryable bool   // transient failure: try again later
	Pending   bool   // no answer: the call was not sent (ctx's stop closed first); not a failure
}

// Transformer computes new column values. It returns one result per item, in order.
type Transformer interface {
	Transform(ctx context.Context, items []*Item) []TransformResult
}

// Writer is the part of the Dataverse client the write stage uses.
type Writer interface {
	Update(ctx context.Context, t dataverse.Table, ups []dataverse.Update, o dataverse.WriteOptions) ([]dataverse.Result, error)
}

// Actor runs a bound action per record (the "custom action per record" jobs).
type Actor interface {
	InvokeAction(ctx context.Context, t dataverse.Table, id, action string, params map[string]any) (dataverse.Record, error)
}

// ErrLostOwnership is returned by a Guard when this worker no longer owns the chunk; the pipeline then
// sends no further writes.
var ErrLostOwnership = errors.New("pipeline: chunk ownership lost")

// Config describes one chunk's processing.
type Config struct {
	Table    dataverse.Table
	Types    map[string]string // column -> type
	Writable []string          // the allow-list
	Write    dataverse.WriteOptions
	UseETag  bool // optimistic concurrency: If-Match the ETag read with the record
	DryRun   bool

	Transformer Transformer // enrich / recalculate
	Writer      Writer
	Actor       Actor // action jobs (instead of Transformer and the write stage)
	Action      string
	Params      map[string]any

	TransformBatch   int // items per Transform call (default 25)
	TransformWorkers int // concurrent Transform calls (default DefaultTransformWorkers)
	WriteBatch       int // records per write request (default Write.BatchSize or dataverse.DefaultWriteBatch)
	WriteWorkers     int // concurrent write requests from this chunk (default DefaultWriteWorkers)
	Linger           time.Duration

	// Guard is called before every write request; an error stops all further writes.
	Guard func() error
}

// Defaults of a chunk's concurrency, also the defaults of the app settings DVBULK_TRANSFORM_WORKERS and
// DVBULK_WRITE_WORKERS. Eight transform workers match the enrichment client's default concurrency, so
// one chunk alone can fill it.
const (
	DefaultTransformWorkers = 8
	DefaultWriteWorkers     = 4
)

func (c *Config) defaults() {
	if c.TransformBatch <= 0 {
		c.TransformBatch = 25
	}
	if c.TransformWorkers <= 0 {
		c.TransformWorkers = DefaultTransformWorkers
	}
	if c.WriteBatch <= 0 {
		c.WriteBatch = c.Write.BatchSize
	}
	if c.WriteBatch <= 0 {
		c.WriteBatch = dataverse.DefaultWriteBatch
	}
	if c.WriteWorkers <= 0 {
		c.WriteWorkers = DefaultWriteWorkers
	}
	if c.Linger <= 0 {
		c.Linger = 100 * time.Millisecond
	}
}

// Run processes items and reports every item through emit (called from several goroutines, never
// concurrently: Run serializes calls). It returns when every item has an outcome or a Retry event,
// or with ctx's error or ErrLostOwnership when processing had to stop early; items not reported by
// then are still pending. Once ctx's stop (ctxutil.WithStop) closes, no further transform call or
// action starts; those in flight finish and their results are reported and written.
func Run(ctx context.Context, cfg Config, items []*Item, emit func(Event)) error {
	cfg.defaults()
	var mu sync.Mutex
	report := func(ev Event) {
		mu.Lock()
		defer mu.Unlock()
		emit(ev)
	}
	if cfg.Actor != nil {
		return runActions(ctx, cfg, items, report)
	}
	if cfg.Transformer == nil {
		return errors.New("pipeline: no transformer configured")
	}
	g, ctx := errgroup.WithContext(ctx)
	toWrite := make(chan writeReq, 2*cfg.WriteBatch)
	g.Go(func() error {
		defer close(toWrite)
		return transformStage(ctx, cfg, items, toWrite, report)
	})
	g.Go(func() error { return writeStage(ctx, cfg, toWrite, report) })
	return g.Wait()
}

type writeReq struct {
	item    *Item
	changed map[string]any
}

// transformStage feeds items through the transformer and hands records with changes to the writer.
func transformStage(ctx context.Context, cfg Config, items []*Item, out chan<- writeReq, report func(Event)) error {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(cfg.TransformWorkers)
	var fresh []*Item
	for _, it := range items {
		if it.Fields != nil {
			if err := decide(ctx, cfg, it, it.Fields, out, report); err != nil {
				return err
			}
			continue
		}
		fresh = append(fresh, it)
	}
	for start := 0; start < len(fresh); start += cfg.TransformBatch {
		group := fresh[start:min(start+cfg.TransformBatch, len(fresh))]
		if ctx.Err() != nil || ctxutil.Stopped(ctx) {
			break
		}
		g.Go(func() error {
			if ctxutil.Stopped(ctx) { // stopped while this group waited for a worker
				return nil
			}
			results := cfg.Transformer.Transform(ctx, group)
			for i, it := range group {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				var r TransformResult
				if i < len(results) {
					r = results[i]
				} else {
					r = TransformResult{Err: "transform returned no result", Retryable: true}
				}
				switch {
				case r.Pending:
					// Not answered: the call was stopped before it was sent. Stays pending, unreported.
				case r.Retryable:
					report(Event{ID: it.ID, Kind: EventRetry, Reason: r.Err})
				case r.Err != "":
					report(Event{ID: it.ID, Kind: EventDone, Outcome: Failed, Reason: r.Err})
				default:
					fields, dropped, err := allow(cfg, r.Fields)
					if err != nil {
						report(Event{ID: it.ID, Kind: EventDone, Outcome: Failed, Reason: err.Error(), Dropped: dropped})
						continue
					}
					report(Event{ID: it.ID, Kind: EventTransformed, Fields: fields, Dropped: dropped})
					if err := decide(ctx, cfg, it, fields, out, report); err != nil {
						return err
					}
				}
			}
			return nil
		})
	}
	return g.Wait()
}

// decide compares new values with current ones and queues a write only for what changed.
func decide(ctx context.Context, cfg Config, it *Item, fields map[string]any, out chan<- writeReq, report func(Event)) error {
	changed := diff(it.Current, fields)
	if len(changed) == 0 {
		report(Event{ID: it.ID, Kind: EventDone, Outcome: Unchanged})
		return nil
	}
	if cfg.DryRun {
		report(Event{ID: it.ID, Kind: EventDone, Outcome: WouldUpdate, Changed: changed})
		return nil
	}
	select {
	case out <- writeReq{item: it, changed: changed}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// allow keeps only allow-listed columns and normalizes them to their declared types. A value of the
// wrong type fails the record (nothing of it is written); a column off the list is dropped and counted.
func allow(cfg Config, fields map[string]any) (map[string]any, int, error) {
	out := make(map[string]any, len(cfg.Writable))
	dropped := 0
	for col, v := range fields {
		if !slices.Contains(cfg.Writable, col) {
			dropped++
			continue
		}
		if v == nil {
			continue // no information is not an instruction to clear a column
		}
		n, err := Normalize(cfg.Types[col], v)
		if err != nil {
			return nil, dropped, fmt.Errorf("value for %s: %v", col, err)
		}
		out[col] = n
	}
	return out, dropped, nil
}

func diff(current, fields map[string]any) map[string]any {
	changed := map[string]any{}
	for col, v := range fields {
		if cur, ok := current[col]; ok && Equal(cur, v) {
			continue
		}
		changed[col] = v
	}
	return changed
}
