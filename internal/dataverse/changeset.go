package dataverse

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"dvbulk/internal/backoff"
	"dvbulk/internal/ctxutil"
)

// ChangeSet writes ups as one atomic change set inside a $batch (the Web API equivalent of
// ExecuteTransaction): either every record is Updated, or none is. On failure the record the
// server blamed gets its own outcome (Gone, Conflict or Failed) and the others are Failed with
// an error wrapping ErrRolledBack. A change set cannot be split, so more operations than one
// $batch allows is an error (ErrBatchTooLarge). Transient failures of the whole set are retried
// within the budget; the error return follows Update's contract.
func (c *Client) ChangeSet(ctx context.Context, t Table, ups []Update, o WriteOptions) ([]Result, error) {
	if err := t.validate(); err != nil {
		return nil, err
	}
	hdr, err := o.headers()
	if err != nil {
		return nil, err
	}
	results := make([]Result, len(ups))
	ps := make([]prep, 0, len(ups))
	seen := map[string]bool{}
	for i, u := range ups {
		p, err := prepare(t, i, u)
		if err == nil && seen[p.id] {
			err = fmt.Errorf("dataverse: change set %s: id %s repeated", t.EntitySet, p.id)
		}
		if err != nil {
			// Atomicity: one invalid record means the set cannot be sent as asked.
			return nil, err
		}
		seen[p.id] = true
		ps = append(ps, p)
	}
	if len(ps) == 0 {
		return results, nil
	}
	if n := c.batchCap(maxOpsPerBatch); len(ps) > n {
		return nil, fmt.Errorf("dataverse: change set of %d: %w (limit %d)", len(ps), ErrBatchTooLarge, n)
	}
	w := writer{c: c, t: t, hdr: hdr, results: results}
	members := make([]BatchOp, len(ps))
	for i, p := range ps {
		members[i] = w.patchOp(p)
		members[i].ContentID = strconv.Itoa(i + 1)
	}
	for round := 0; ; round++ {
		parts, err := c.Batch(ctx, []BatchOp{{ChangeSet: members}}, false)
		if err != nil {
			w.failAll(ps, err)
			if ctx.Err() != nil || errors.Is(err, ErrUnavailable) {
				return results, fmt.Errorf("dataverse: change set %s: %w", t.EntitySet, err)
			}
			return results, nil
		}
		failed, transient := changeSetFailure(parts)
		if failed == nil {
			if len(parts) != len(ps) {
				err := fmt.Errorf("dataverse: change set %s: %d response parts for %d operations", t.EntitySet, len(parts), len(ps))
				w.failAll(ps, err)
				return results, nil
			}
			for _, p := range ps {
				w.set(p, nil)
			}
			return results, nil
		}
		cause := fmt.Errorf("dataverse: change set %s: %w", t.EntitySet, failed.Err())
		if transient && round < c.cfg.MaxRetries {
			c.retried(ctx, 1)
			if err := ctxutil.Sleep(ctx, backoff.Wait(c.cfg.RetryBaseDelay, c.cfg.RetryMaxDelay, round)); err != nil {
				w.failAll(ps, err)
				return results, fmt.Errorf("dataverse: change set %s: %w", t.EntitySet, err)
			}
			continue
		}
		if transient {
			cause = fmt.Errorf("%w: %w", ErrUnavailable, cause)
		}
		blamed := -1
		if n, err := strconv.Atoi(failed.ContentID); err == nil && n >= 1 && n <= len(ps) {
			blamed = n - 1
		}
		for i, p := range ps {
			if i == blamed {
				w.set(p, cause)
			} else {
				w.results[p.idx] = Result{ID: p.in.ID, Status: Failed, Err: fmt.Errorf("%w: %w", ErrRolledBack, cause)}
			}
		}
		if transient {
			return results, cause
		}
		return results, nil
	}
}

// changeSetFailure returns the first failed part and whether its failure is transient.
func changeSetFailure(parts []BatchResponse) (*BatchResponse, bool) {
	for i := range parts {
		if parts[i].Err() == nil {
			continue
		}
		ae := newAPIError(parts[i].Status, parts[i].Header, parts[i].Body)
		return &parts[i], ae.Status == http.StatusTooManyRequests || transientAPIError(ae)
	}
	return nil, false
}
