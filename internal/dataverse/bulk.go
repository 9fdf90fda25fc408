package dataverse

import (
	"context"
	"errors"
	"fmt"
	"net/http"
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
	bulkOrBatch(ctx, w.c, w.t, "UpdateMultiple", w.o.BatchSize, plain, w.failAll,
		func(ps []prep) { w.batch(ctx, ps) }, func(c []prep) { w.bulkChunk(ctx, c) })
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
	case bulkUnusable(ctx, w.c, w.t, "UpdateMultiple", err, ps, func(ps []prep) { w.batchChunk(ctx, ps) }, w.failAll):
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
// bulk-operations docs recommend, and caches the answer per table for the client's lifetime.
func (c *Client) SupportsUpdateMultiple(ctx context.Context, t Table) (bool, error) {
	return c.SupportsMessage(ctx, t, "UpdateMultiple")
}
