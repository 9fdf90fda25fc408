package dataverse

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"golang.org/x/sync/errgroup"
)

// message is the bulk message of a call: CreateMultiple or UpsertMultiple.
func (w *cwriter) message() string {
	if w.upsert {
		return "UpsertMultiple"
	}
	return "CreateMultiple"
}

// bulk writes ps with CreateMultiple / UpsertMultiple where the table has the message, else $batch.
func (w *cwriter) bulk(ctx context.Context, ps []cprep) {
	if len(ps) == 0 {
		return
	}
	bulkOrBatch(ctx, w.c, w.t, w.message(), w.o.BatchSize, ps, w.failAll,
		func(ps []cprep) { w.batch(ctx, ps) }, func(c []cprep) { w.bulkChunk(ctx, c) })
}

// bulkOrBatch sends ps in chunks of size with the table's bulk message where it has it, else
// hands them all to batch. A probe the user may not be allowed to run (sdkmessagefilters read
// privilege) must not stop the job: it is logged and $batch, which works everywhere, is used.
func bulkOrBatch[T any](ctx context.Context, c *Client, t Table, message string, size int, ps []T,
	fail func([]T, error), batch func([]T), chunk func([]T)) {
	ok, err := c.SupportsMessage(ctx, t, message)
	if err != nil {
		if ctx.Err() != nil || errors.Is(err, ErrUnavailable) {
			fail(ps, err)
			return
		}
		c.log.Warn().Err(err).Str("table", t.LogicalName).Msg("dataverse " + message + " probe failed; using $batch")
	}
	if !ok {
		batch(ps)
		return
	}
	eachChunk(c.cfg.MaxConcurrency, size, ps, chunk)
}

// bulkUnusable handles a bulk request's failure that is not about its records: the table lacks
// the message after all (remembered; ps go via batch), or the call cannot go on (ps fail). It
// reports whether it handled err; if not, a record is to blame and the caller narrows it down.
func bulkUnusable[T any](ctx context.Context, c *Client, t Table, message string, err error, ps []T, batch func([]T), fail func([]T, error)) bool {
	switch {
	case errors.Is(err, ErrNotSupported):
		c.setMessageSupport(t, message, false)
		batch(ps)
	case ctx.Err() != nil || errors.Is(err, ErrUnavailable):
		fail(ps, err)
	default:
		return false
	}
	return true
}

// eachChunk runs fn on consecutive chunks of ps of at most size items, at most limit at a time.
func eachChunk[T any](limit, size int, ps []T, fn func([]T)) {
	var g errgroup.Group
	g.SetLimit(limit)
	for chunk := range slices.Chunk(ps, size) {
		g.Go(func() error {
			fn(chunk)
			return nil
		})
	}
	_ = g.Wait()
}

// bulkChunk sends one CreateMultiple / UpsertMultiple. It is all or nothing, so a failure is
// halved until each bad record is alone; a record alone goes as a single request, whose error is
// the documented per-record one (and whose duplicate-key answer tells an earlier attempt's
// create apart from a real conflict).
func (w *cwriter) bulkChunk(ctx context.Context, ps []cprep) {
	if len(ps) == 1 {
		w.sendAlone(ctx, ps[0])
		return
	}
	ids, err := w.c.multiple(ctx, w.t, w.message(), ps, w.hdr)
	switch {
	case err == nil:
		for i, p := range ps {
			id := ""
			if i < len(ids) {
				id = ids[i]
			}
			w.set(p, id, nil)
		}
		return
	case bulkUnusable(ctx, w.c, w.t, w.message(), err, ps, func(ps []cprep) { w.batchChunk(ctx, ps) }, w.failAll):
		return
	}
	w.c.st.splits.Add(1)
	h := len(ps) / 2
	var g errgroup.Group
	for _, grp := range [][]cprep{ps[:h], ps[h:]} {
		g.Go(func() error {
			w.bulkChunk(ctx, grp)
			return nil
		})
	}
	_ = g.Wait()
}

// multiple sends one CreateMultiple or UpsertMultiple and returns CreateMultiple's Ids. An
// UpsertMultiple target carries @odata.id (its key as a relative URL, as the UpsertMultiple
// reference shows), a CreateMultiple one its primary key if chosen (it is in the fields).
func (c *Client) multiple(ctx context.Context, t Table, message string, ps []cprep, hdr http.Header) ([]string, error) {
	resp, err := c.postTargets(ctx, t, message, len(ps), func(i int) (string, []byte) {
		if message != "UpsertMultiple" {
			return "", ps[i].body
		}
		ref, _ := json.Marshal(ps[i].path)
		return `"@odata.id":` + string(ref), ps[i].body
	}, hdr)
	if err != nil {
		return nil, err
	}
	var out struct {
		Ids []string `json:"Ids"`
	}
	if len(resp.body) > 0 {
		_ = json.Unmarshal(resp.body, &out) // UpsertMultiple answers 204 without a body
	}
	return out.Ids, nil
}

// postTargets sends {"Targets":[...]} of n records to <set>/Microsoft.Dynamics.CRM.<message>.
// Target i is @odata.type, then the encoded members head returns (may be empty), then the
// members of its fields object. An answer saying the table lacks the message wraps ErrNotSupported.
func (c *Client) postTargets(ctx context.Context, t Table, message string, n int, target func(i int) (head string, fields []byte), hdr http.Header) (*response, error) {
	var b bytes.Buffer
	b.WriteString(`{"Targets":[`)
	typ, _ := json.Marshal("Microsoft.Dynamics.CRM." + t.LogicalName)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		head, fields := target(i)
		fmt.Fprintf(&b, `{"@odata.type":%s`, typ)
		if head != "" {
			b.WriteString("," + head)
		}
		if inner := bytes.TrimSpace(fields[1 : len(fields)-1]); len(inner) > 0 {
			b.WriteByte(',')
			b.Write(inner)
		}
		b.WriteByte('}')
	}
	b.WriteString(`]}`)
	op := fmt.Sprintf("%s %s (%d records)", message, t.EntitySet, n)
	resp, err := c.do(ctx, &request{
		op:          op,
		method:      http.MethodPost,
		url:         c.api + t.EntitySet + "/Microsoft.Dynamics.CRM." + message,
		header:      hdr.Clone(),
		body:        b.Bytes(),
		contentType: "application/json; charset=utf-8",
		bisected:    true,
	})
	if err != nil {
		return nil, err
	}
	if ae := resp.apiError(); ae != nil {
		if unsupportedMessage(ae, message) {
			return nil, fmt.Errorf("dataverse: %s: %w: %w", op, ErrNotSupported, ae)
		}
		return nil, fmt.Errorf("dataverse: %s: %w", op, ae)
	}
	return resp, nil
}

// SupportsMessage asks sdkmessagefilters whether the table has a bulk message (CreateMultiple,
// UpsertMultiple, UpdateMultiple) and caches the answer per table and message.
func (c *Client) SupportsMessage(ctx context.Context, t Table, message string) (bool, error) {
	if err := t.validate(); err != nil {
		return false, err
	}
	ck := message + ":" + t.LogicalName
	c.bulkMu.Lock()
	ok, known := c.bulkSupport[ck]
	c.bulkMu.Unlock()
	if known {
		return ok, nil
	}
	p, err := c.QueryPage(ctx, Query{
		Table:    Table{EntitySet: "sdkmessagefilters", LogicalName: "sdkmessagefilter", Key: "sdkmessagefilterid"},
		Select:   []string{"sdkmessagefilterid"},
		Filter:   "sdkmessageid/name eq " + Literal(message) + " and primaryobjecttypecode eq " + Literal(t.LogicalName),
		PageSize: 1,
	}, "")
	if err != nil {
		return false, fmt.Errorf("dataverse: probe %s for %s: %w", message, t.LogicalName, err)
	}
	ok = len(p.Records) > 0
	c.setMessageSupport(t, message, ok)
	return ok, nil
}

func (c *Client) setMessageSupport(t Table, message string, ok bool) {
	ck := message + ":" + t.LogicalName
	c.bulkMu.Lock()
	defer c.bulkMu.Unlock()
	if prev, known := c.bulkSupport[ck]; !known || prev != ok {
		c.log.Info().Str("table", t.LogicalName).Str("message", message).Bool("supported", ok).Msg("dataverse bulk message availability")
	}
	c.bulkSupport[ck] = ok
}
