package dataverse

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"golang.org/x/sync/errgroup"

	"dvbulk/internal/backoff"
	"dvbulk/internal/ctxutil"
)

// batch writes ps as $batch requests of at most BatchSize (and at most the learned server limit)
// operations with continue-on-error, concurrently under the client's limiter.
func (w *writer) batch(ctx context.Context, ps []prep) {
	var g errgroup.Group
	g.SetLimit(w.c.cfg.MaxConcurrency)
	for chunk := range slices.Chunk(ps, w.c.batchCap(w.o.BatchSize)) {
		g.Go(func() error {
			w.batchChunk(ctx, chunk)
			return nil
		})
	}
	_ = g.Wait()
}

func (w *writer) patchOp(p prep) BatchOp {
	h := w.hdr.Clone()
	h["If-Match"] = []string{p.ifMatch}
	return BatchOp{Method: http.MethodPatch, Path: w.t.EntitySet + "(" + p.id + ")", Header: h, Body: p.body}
}

// batchChunk sends one group and maps every response part back to its record by position (top-
// level parts answer in request order). Parts that are transient failures (429, 5xx) or missing
// are resubmitted in a smaller follow-up batch, within the retry budget; a size refusal splits
// the group to the limit the server named and remembers it.
func (w *writer) batchChunk(ctx context.Context, ps []prep) {
	pending := ps
	for round := 0; len(pending) > 0; round++ {
		if ctx.Err() != nil {
			w.failAll(pending, ctx.Err())
			return
		}
		if n := w.c.batchCap(len(pending)); n < len(pending) {
			w.c.st.splits.Add(1)
			for sub := range slices.Chunk(pending, n) {
				w.batchChunk(ctx, sub)
			}
			return
		}
		ops := make([]BatchOp, len(pending))
		for i, p := range pending {
			ops[i] = w.patchOp(p)
		}
		parts, err := w.c.Batch(ctx, ops, true)
		if err != nil {
			if errors.Is(err, ErrBatchTooLarge) && len(pending) > 1 {
				n := MaxBatchSize(err)
				if n <= 0 || n >= len(pending) {
					n = (len(pending) + 1) / 2 // a size (413) rather than a count refusal: halve
				}
				w.c.st.splits.Add(1)
				for sub := range slices.Chunk(pending, n) {
					w.batchChunk(ctx, sub)
				}
				return
			}
			w.failAll(pending, err)
			return
		}
		byPart := make(map[int]BatchResponse, len(parts))
		for _, r := range parts {
			if _, dup := byPart[r.Part]; !dup {
				byPart[r.Part] = r
			}
		}
		var again []prep
		var lastErr error
		for i, p := range pending {
			r, ok := byPart[i]
			if !ok {
				again = append(again, p)
				lastErr = fmt.Errorf("dataverse: update %s(%s): %w: no response part for the operation", w.t.EntitySet, p.id, ErrUnavailable)
				continue
			}
			perr := r.Err()
			var ae *APIError
			if errors.As(perr, &ae) && (ae.Status == http.StatusTooManyRequests || isTransientStatus(ae.Status) || MaxBatchSize(ae) > 0) {
				if n := MaxBatchSize(ae); n > 0 {
					w.c.noteBatchLimit(n)
				}
				again = append(again, p)
				lastErr = fmt.Errorf("dataverse: update %s(%s): %w", w.t.EntitySet, p.id, perr)
				continue
			}
			if perr != nil {
				perr = fmt.Errorf("dataverse: update %s(%s): %w", w.t.EntitySet, p.id, perr)
			}
			w.set(p, perr)
		}
		if len(again) == 0 {
			return
		}
		if round >= w.c.cfg.MaxRetries {
			w.failAll(again, fmt.Errorf("%w after %d rounds: %w", ErrUnavailable, round+1, lastErr))
			return
		}
		w.c.retried(ctx, int64(len(again)))
		delay := backoff.Wait(w.c.cfg.RetryBaseDelay, w.c.cfg.RetryMaxDelay, round)
		if err := ctxutil.Sleep(ctx, delay); err != nil {
			w.failAll(again, err)
			return
		}
		pending = again
	}
}
