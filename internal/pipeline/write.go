package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sync/errgroup"

	"dvbulk/internal/ctxutil"
	"dvbulk/internal/dataverse"
)

// minSplit is the fewest records a partial batch is split down to.
const minSplit = 10

// writeStage batches changed records and writes each batch with at most WriteWorkers requests in
// flight. A partial batch is sent once the transform stage has been quiet for Linger, so a slow
// enrichment service does not hold finished records back.
func writeStage(ctx context.Context, cfg Config, in <-chan writeReq, report func(Event)) error {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(cfg.WriteWorkers)
	var batch []writeReq
	// flush sends the pending records as one request. At the end of the chunk (last) they are split
	// over the write workers instead, so the records still waiting are written in parallel rather
	// than in one long request (server time grows with the records in a request): the chunk, and the
	// run's tail, finish sooner.
	flush := func(last bool) {
		if len(batch) == 0 {
			return
		}
		parts := 1
		if last {
			parts = min(cfg.WriteWorkers, (len(batch)+minSplit-1)/minSplit)
		}
		size := (len(batch) + parts - 1) / parts
		for start := 0; start < len(batch); start += size {
			b := batch[start:min(start+size, len(batch))]
			g.Go(func() error { return writeBatch(ctx, cfg, b, report) })
		}
		batch = nil
	}
	timer := time.NewTimer(cfg.Linger)
	defer timer.Stop()
	for {
		select {
		case req, ok := <-in:
			if !ok {
				flush(true)
				return g.Wait()
			}
			batch = append(batch, req)
			if len(batch) >= cfg.WriteBatch {
				flush(false)
			}
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
			timer.Reset(cfg.Linger)
		case <-timer.C:
			flush(false)
			timer.Reset(cfg.Linger)
		case <-ctx.Done():
			_ = g.Wait()
			return ctx.Err()
		}
	}
}

func writeBatch(ctx context.Context, cfg Config, batch []writeReq, report func(Event)) error {
	if cfg.Guard != nil {
		if err := cfg.Guard(); err != nil {
			return err
		}
	}
	ups := make([]dataverse.Update, len(batch))
	byID := make(map[string]writeReq, len(batch))
	for i, r := range batch {
		ups[i] = dataverse.Update{ID: r.item.ID, Fields: r.changed}
		if cfg.UseETag {
			ups[i].IfMatch = r.item.ETag
		}
		byID[r.item.ID] = r
	}
	results, err := cfg.Writer.Update(ctx, cfg.Table, ups, cfg.Write)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// The whole call failed transiently (retry budget spent): the records stay pending with their
		// checkpointed fields, to be written by a later attempt.
		for _, r := range batch {
			report(Event{ID: r.item.ID, Kind: EventRetry, Reason: "write: " + err.Error()})
		}
		return nil
	}
	seen := make(map[string]bool, len(results))
	for _, res := range results {
		r, ok := byID[res.ID]
		if !ok || seen[res.ID] {
			continue
		}
		seen[res.ID] = true
		report(outcomeOf(res, r.changed))
	}
	for _, r := range batch {
		if !seen[r.item.ID] {
			report(Event{ID: r.item.ID, Kind: EventRetry, Reason: "write: no result reported for record"})
		}
	}
	return nil
}

func outcomeOf(res dataverse.Result, changed map[string]any) Event {
	switch res.Status {
	case dataverse.Updated:
		return Event{ID: res.ID, Kind: EventDone, Outcome: Updated, Changed: changed}
	case dataverse.Gone:
		return Event{ID: res.ID, Kind: EventDone, Outcome: Gone, Reason: "record no longer exists; not re-created"}
	case dataverse.Conflict:
		return Event{ID: res.ID, Kind: EventDone, Outcome: Skipped, Reason: "changed by someone else since it was read (ETag mismatch); not overwritten"}
	default:
		reason := "write failed"
		if res.Err != nil {
			reason = "write: " + res.Err.Error()
		}
		if res.Err != nil && errors.Is(res.Err, dataverse.ErrUnavailable) {
			return Event{ID: res.ID, Kind: EventRetry, Reason: reason}
		}
		return Event{ID: res.ID, Kind: EventDone, Outcome: Failed, Reason: reason}
	}
}

// runActions calls a bound action once per record; the action is the write.
func runActions(ctx context.Context, cfg Config, items []*Item, report func(Event)) error {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(cfg.WriteWorkers)
	for _, it := range items {
		if ctx.Err() != nil || ctxutil.Stopped(ctx) {
			break
		}
		g.Go(func() error {
			if ctxutil.Stopped(ctx) {
				return nil
			}
			if cfg.DryRun {
				report(Event{ID: it.ID, Kind: EventDone, Outcome: WouldUpdate, Reason: "would call " + cfg.Action})
				return nil
			}
			if cfg.Guard != nil {
				if err := cfg.Guard(); err != nil {
					return err
				}
			}
			_, err := cfg.Actor.InvokeAction(ctx, cfg.Table, it.ID, cfg.Action, cfg.Params)
			switch {
			case err == nil:
				report(Event{ID: it.ID, Kind: EventDone, Outcome: Updated})
			case ctx.Err() != nil:
				return ctx.Err()
			case errors.Is(err, dataverse.ErrNotFound):
				report(Event{ID: it.ID, Kind: EventDone, Outcome: Gone, Reason: "record no longer exists"})
			case errors.Is(err, dataverse.ErrUnavailable):
				report(Event{ID: it.ID, Kind: EventRetry, Reason: fmt.Sprintf("action %s: %v", cfg.Action, err)})
			default:
				report(Event{ID: it.ID, Kind: EventDone, Outcome: Failed, Reason: fmt.Sprintf("action %s: %v", cfg.Action, err)})
			}
			return nil
		})
	}
	return g.Wait()
}
