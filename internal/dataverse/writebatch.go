package dataverse

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"dvbulk/internal/backoff"
	"dvbulk/internal/ctxutil"
)

// batch writes ps as $batch requests of at most BatchSize (and at most the learned server limit)
// operations with continue-on-error, concurrently under the client's limiter.
func (w *writer) batch(ctx context.Context, ps []prep) {
	eachChunk(w.c.cfg.MaxConcurrency, w.c.batchCap(w.o.BatchSize), ps, func(c []prep) { w.batchChunk(ctx, c) })
}

// splitSize is the group size to retry with after a batch of n operations was refused as too
// large: the limit the server named, or half when it named none (a 413 size refusal).
func splitSize(err error, n int) (int, bool) {
	if !errors.Is(err, ErrBatchTooLarge) || n <= 1 {
		return 0, false
	}
	m := MaxBatchSize(err)
	if m <= 0 || m >= n {
		m = (n + 1) / 2
	}
	return m, true
}

// sendOps sends ps (one operation each) as one $batch with continue-on-error and returns the
// parts by operation. A size refusal is an outcome, not an error: ps are re-sent via again in
// groups the server allows and ok is false, as it is when fail got the error for all of ps.
func sendOps[T any](ctx context.Context, c *Client, ps []T, op func(T) BatchOp, again func([]T), fail func([]T, error)) (map[int]BatchResponse, bool) {
	ops := make([]BatchOp, len(ps))
	for i, p := range ps {
		ops[i] = op(p)
	}
	parts, err := c.Batch(ctx, ops, true)
	if err != nil {
		if n, ok := splitSize(err, len(ps)); ok {
			c.st.splits.Add(1)
			for sub := range slices.Chunk(ps, n) {
				again(sub)
			}
			return nil, false
		}
		fail(ps, err)
		return nil, false
	}
	return partsByIndex(parts), true
}

// partsByIndex maps response parts to the operation they answer (the first part of each).
func partsByIndex(parts []BatchResponse) map[int]BatchResponse {
	byPart := make(map[int]BatchResponse, len(parts))
	for _, r := range parts {
		if _, dup := byPart[r.Part]; !dup {
			byPart[r.Part] = r
		}
	}
	return byPart
}

func (w *writer) patchOp(p prep) BatchOp {
	h := w.hdr.Clone()
	h["If-Match"] = []string{p.ifMatch}
	return BatchOp{Method: http.MethodPatch, Path: w.t.EntitySet + "(" + p.id + ")", Header: h, Body: p.body}
}

// batchChunk sends one group and maps every response part back to its record by position (top-
// level parts answer in request order). Parts that are transient failures (transientAPIError) or
// missing are resubmitted in a smaller follow-up batch after a backoff, within MaxRetries; 429
// parts are resubmitted when the gate that Batch closed for their Retry-After opens, within
// MaxThrottleRetries, exactly like a top-level 429; a permanent 5xx part is repeated once and
// then fails its record with its code and message. A size refusal splits the group to the limit
// the server named and remembers it.
func (w *writer) batchChunk(ctx context.Context, ps []prep) {
	pending := ps
	permanent := map[int]error{} // records whose permanent 5xx part was repeated once, by prep index
	var rounds, throttles int    // repeats for transient failures, and for 429 parts only
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
		byPart, ok := sendOps(ctx, w.c, pending, w.patchOp, func(sub []prep) { w.batchChunk(ctx, sub) }, w.failAll)
		if !ok {
			return
		}
		var again []prep
		var lastErr error
		throttledOnly := true // every repeat is a 429 part: the gate (closed by Batch) paces it
		for i, p := range pending {
			r, ok := byPart[i]
			if !ok {
				again, throttledOnly = append(again, p), false
				lastErr = fmt.Errorf("dataverse: update %s(%s): %w: no response part for the operation", w.t.EntitySet, p.id, ErrUnavailable)
				continue
			}
			perr := r.Err()
			if perr == nil {
				w.set(p, nil)
				continue
			}
			ae := perr.(*APIError)
			perr = fmt.Errorf("dataverse: update %s(%s): %w", w.t.EntitySet, p.id, perr)
			switch {
			case ae.Status == http.StatusTooManyRequests:
				again, lastErr = append(again, p), perr
			case permanentServerError(ae):
				if permanent[p.idx] != nil {
					w.set(p, perr) // repeated once already: this answer is final
					continue
				}
				permanent[p.idx] = perr
				again, lastErr, throttledOnly = append(again, p), perr, false
			case transientAPIError(ae) || MaxBatchSize(ae) > 0:
				if n := MaxBatchSize(ae); n > 0 {
					w.c.noteBatchLimit(n)
				}
				again, lastErr, throttledOnly = append(again, p), perr, false
			default:
				w.set(p, perr)
			}
		}
		if len(again) == 0 {
			return
		}
		if throttledOnly {
			throttles++
		} else {
			rounds++
		}
		if rounds > w.c.cfg.MaxRetries || throttles > w.c.cfg.MaxThrottleRetries {
			for _, p := range again {
				if err := permanent[p.idx]; err != nil {
					w.set(p, err)
				} else {
					w.results[p.idx] = Result{ID: p.in.ID, Status: Failed, Err: fmt.Errorf("%w after %d rounds: %w", ErrUnavailable, round+1, lastErr)}
				}
			}
			return
		}
		w.c.retried(ctx, int64(len(again)))
		if !throttledOnly {
			delay := backoff.Wait(w.c.cfg.RetryBaseDelay, w.c.cfg.RetryMaxDelay, rounds-1)
			if err := ctxutil.Sleep(ctx, delay); err != nil {
				w.failAll(again, err)
				return
			}
		}
		pending = again
	}
}
