package dataverse

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"golang.org/x/sync/errgroup"
)

// bulk writes ps with UpdateMultiple where the table supports it, else via $batch.
func (w *writer) bulk(ctx context.Context, ps []prep) {
	// UpdateMultiple has no per-record If-Match, so ETag-guarded records take the $batch path.
	var guarded, plain []prep
	for _, p := range ps {
		if p.ifMatch != "*" {
			guarded = append(guarded, p)
		} else {
			plain = append(plain, p)
		}
	}
	if len(guarded) > 0 {
		w.batch(ctx, guarded)
	}
	if len(plain) == 0 {
		return
	}
	ok, err := w.c.SupportsUpdateMultiple(ctx, w.t)
	if err != nil {
		if ctx.Err() != nil || errors.Is(err, ErrUnavailable) {
			w.failAll(plain, err)
			return
		}
		// A refused probe (the role lacks prvReadSdkMessage) must not stop the job: $batch works
		// everywhere. SupportsUpdateMultiple has cached the refusal and warned once.
		ok = false
	}
	if !ok {
		w.batch(ctx, plain)
		return
	}
	var g errgroup.Group
	g.SetLimit(w.c.cfg.MaxConcurrency)
	for chunk := range slices.Chunk(plain, w.o.BatchSize) {
		g.Go(func() error {
			w.bulkChunk(ctx, chunk)
			return nil
		})
	}
	_ = g.Wait()
}

// bulkChunk sends one UpdateMultiple. Because it is all-or-nothing on standard tables, a
// failure is narrowed down: records the error message names are tried alone and the rest
// together; otherwise the group is halved. Each bad record ends up alone (sent as a PATCH) with
// its own error and
// every good one still lands, for at most about 2·log2(n) extra requests per bad record.
func (w *writer) bulkChunk(ctx context.Context, ps []prep) {
	if len(ps) == 1 {
		// A record on its own gets a PATCH: its answer (404 with If-Match: *) is the documented,
		// unambiguous one, whereas UpdateMultiple's error shape for one missing record is not.
		w.set(ps[0], w.c.patch(ctx, w.t, ps[0], w.hdr))
		return
	}
	err := w.c.updateMultiple(ctx, w.t, ps, w.hdr)
	switch {
	case err == nil:
		for _, p := range ps {
			w.set(p, nil)
		}
		return
	case errors.Is(err, ErrNotSupported):
		w.c.setBulkSupport(w.t, false)
		w.batchChunk(ctx, ps)
		return
	case ctx.Err() != nil || errors.Is(err, ErrUnavailable):
		w.failAll(ps, err)
		return
	}
	w.c.st.splits.Add(1)
	var groups [][]prep
	named, rest := partitionNamed(ps, err)
	if len(named) > 0 && len(rest) > 0 {
		for _, p := range named {
			groups = append(groups, []prep{p})
		}
		groups = append(groups, rest)
	} else {
		h := len(ps) / 2
		groups = [][]prep{ps[:h], ps[h:]}
	}
	var g errgroup.Group
	for _, grp := range groups {
		g.Go(func() error {
			w.bulkChunk(ctx, grp)
			return nil
		})
	}
	_ = g.Wait()
}

// partitionNamed splits ps into the records whose id appears in the error message (Dataverse
// names missing records: "account With Ids = <guid> Do Not Exist") and the others.
func partitionNamed(ps []prep, err error) (named, rest []prep) {
	var ae *APIError
	if !errors.As(err, &ae) {
		return nil, ps
	}
	msg := strings.ToLower(ae.Message)
	for _, p := range ps {
		if strings.Contains(msg, p.id) {
			named = append(named, p)
		} else {
			rest = append(rest, p)
		}
	}
	return named, rest
}

// UpdateMultiple sends ups as one UpdateMultiple request: all or nothing. Every target carries
// @odata.type and the key. It fails with ErrNotSupported when the table lacks the message.
// Records cannot carry an ETag here (IfMatch must be "" or "*").
func (c *Client) UpdateMultiple(ctx context.Context, t Table, ups []Update, o WriteOptions) error {
	if err := t.validate(); err != nil {
		return err
	}
	hdr, err := o.headers()
	if err != nil {
		return err
	}
	ps := make([]prep, 0, len(ups))
	for i, u := range ups {
		p, err := prepare(t, i, u)
		if err != nil {
			return err
		}
		if p.ifMatch != "*" {
			return fmt.Errorf("dataverse: UpdateMultiple %s: record %s has an ETag; UpdateMultiple cannot check it", t.EntitySet, p.id)
		}
		ps = append(ps, p)
	}
	if len(ps) == 0 {
		return nil
	}
	return c.updateMultiple(ctx, t, ps, hdr)
}

func (c *Client) updateMultiple(ctx context.Context, t Table, ps []prep, hdr http.Header) error {
	_, err := c.postTargets(ctx, t, "UpdateMultiple", len(ps), func(i int) (string, []byte) {
		return fmt.Sprintf(`"%s":"%s"`, t.Key, ps[i].id), ps[i].body
	}, hdr)
	return err
}

// SupportsUpdateMultiple asks sdkmessagefilters whether the table has UpdateMultiple, as the
// bulk-operations docs recommend, and caches the answer per table for the client's lifetime. A probe
// the server refuses (a role without prvReadSdkMessage gets 403) is cached too, as "not supported",
// and warned about once: the refusal is returned to the callers whose probes met it, later calls get
// false and no error. A transient failure (ErrUnavailable) or a cancelled ctx is not cached. Callers
// that ask at the same time before any answer each probe (as each would retry a transient failure on
// its own budget); once an answer is cached nobody probes again.
func (c *Client) SupportsUpdateMultiple(ctx context.Context, t Table) (bool, error) {
	if err := t.validate(); err != nil {
		return false, err
	}
	if ok, known := c.bulkKnown(t); known {
		return ok, nil
	}
	return c.probeUpdateMultiple(ctx, t)
}

func (c *Client) probeUpdateMultiple(ctx context.Context, t Table) (bool, error) {
	p, err := c.QueryPage(ctx, Query{
		Table:    Table{EntitySet: "sdkmessagefilters", LogicalName: "sdkmessagefilter", Key: "sdkmessagefilterid"},
		Select:   []string{"sdkmessagefilterid"},
		Filter:   "sdkmessageid/name eq 'UpdateMultiple' and primaryobjecttypecode eq " + Literal(t.LogicalName),
		PageSize: 1,
	}, "")
	if err != nil {
		err = fmt.Errorf("dataverse: probe UpdateMultiple for %s: %w", t.LogicalName, err)
		if errors.Is(err, ErrUnavailable) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return false, err
		}
		// Refused (403 without prvReadSdkMessage) or otherwise answered: asking again gives the
		// same answer, so this process uses $batch for the table and says so once.
		if c.refuseBulk(t) {
			c.log.Warn().Err(err).Str("table", t.LogicalName).
				Msg("dataverse UpdateMultiple probe refused; using $batch for this table until the process restarts (grant prvReadSdkMessage to use UpdateMultiple)")
		}
		return false, err
	}
	ok := len(p.Records) > 0
	c.setBulkSupport(t, ok)
	return ok, nil
}

// refuseBulk caches a refused probe as "not supported"; it reports whether this call cached it (the
// first refusal), so the warning is logged once.
func (c *Client) refuseBulk(t Table) bool {
	c.bulkMu.Lock()
	defer c.bulkMu.Unlock()
	if _, known := c.bulkSupport[t.LogicalName]; known {
		return false
	}
	c.bulkSupport[t.LogicalName] = false
	return true
}

func (c *Client) bulkKnown(t Table) (ok, known bool) {
	c.bulkMu.Lock()
	defer c.bulkMu.Unlock()
	ok, known = c.bulkSupport[t.LogicalName]
	return ok, known
}

func (c *Client) setBulkSupport(t Table, ok bool) {
	c.bulkMu.Lock()
	defer c.bulkMu.Unlock()
	if prev, known := c.bulkSupport[t.LogicalName]; !known || prev != ok {
		c.log.Info().Str("table", t.LogicalName).Bool("supported", ok).Msg("dataverse UpdateMultiple availability")
	}
	c.bulkSupport[t.LogicalName] = ok
}
