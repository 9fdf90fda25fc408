package dataverse

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// Write is one record to create or upsert. For a create, Key.ID (if set) is the new record's
// primary key, chosen by the caller; an upsert addresses its record by Key (id or alternate key).
type Write struct {
	Key    Key
	Fields map[string]any
}

// WriteStatus is the outcome of one record's create or upsert.
type WriteStatus int

const (
	Created    WriteStatus = iota + 1 // a create made the record
	Existed                           // a create with a caller-chosen id found it already there (0x80040237): made by an earlier attempt
	Upserted                          // an upsert created or updated the record (the service does not say which)
	NotWritten                        // Err says why
)

var writeStatusNames = [...]string{Created: "created", Existed: "existed", Upserted: "upserted", NotWritten: "failed"}

func (s WriteStatus) String() string {
	if s > 0 && int(s) < len(writeStatusNames) {
		return writeStatusNames[s]
	}
	return "writestatus(" + strconv.Itoa(int(s)) + ")"
}

// WriteResult is one record's outcome. ID is the record's id when known (always for a create
// with a caller-chosen id, from OData-EntityId or CreateMultiple's Ids otherwise).
type WriteResult struct {
	ID     string
	Status WriteStatus
	Err    error
}

// Duplicate-key codes: a primary key already used, and an alternate key's values already used.
const (
	CodeDuplicateKey    = "0x80040237"
	CodeDuplicateAltKey = "0x80060892"
)

// IsCode reports whether err carries the Web API error code (case-insensitively).
func IsCode(err error, code string) bool {
	var ae *APIError
	return errors.As(err, &ae) && strings.EqualFold(ae.Code, code)
}

// Create creates ws (CreateMultiple where the table has it, else $batch or single POSTs per
// o.Mode) and returns one result per input, in order. A CreateMultiple is all or nothing, so a
// failed one is halved until each bad record is alone and fails with its own error while the
// others land. Give every record a Key.ID to make the call safe to repeat: a record an earlier,
// interrupted attempt created answers Existed instead of being created twice. The error is
// non-nil only when the call could not complete (as for Update).
func (c *Client) Create(ctx context.Context, t Table, ws []Write, o WriteOptions) ([]WriteResult, error) {
	return c.writeRecords(ctx, t, ws, o, false)
}

// Upsert creates or updates ws, each addressed by its Key: by id or by an alternate key
// (contacts(emailaddress1='x') for single and $batch writes, @odata.id in UpsertMultiple
// targets). Upserts are idempotent; otherwise as Create.
func (c *Client) Upsert(ctx context.Context, t Table, ws []Write, o WriteOptions) ([]WriteResult, error) {
	return c.writeRecords(ctx, t, ws, o, true)
}

// cprep is a validated write: its address, encoded fields, position in the caller's slice.
type cprep struct {
	idx  int
	id   string // canonical id, or ""
	path string // set(key) for upserts and creates with an id
	seg  string // the key segment, for @odata.id
	body []byte // JSON object of the fields (and, for a create with an id, the primary key)
}

func (c *Client) writeRecords(ctx context.Context, t Table, ws []Write, o WriteOptions, upsert bool) ([]WriteResult, error) {
	verb := map[bool]string{false: "create", true: "upsert"}[upsert]
	o, hdr, err := o.forTable(t)
	if err != nil {
		return nil, err
	}
	results := make([]WriteResult, len(ws))
	seen := map[string]bool{}
	var ps []cprep
	for i, w := range ws {
		p, err := prepareWrite(t, i, w, upsert)
		switch {
		case err != nil:
			results[i] = WriteResult{ID: w.Key.ID, Status: NotWritten, Err: fmt.Errorf("dataverse: %s %s: %w", verb, t.EntitySet, err)}
		case p.seg != "" && seen[p.seg]:
			results[i] = WriteResult{ID: p.id, Status: NotWritten, Err: fmt.Errorf("dataverse: %s %s: key %s repeated in one call", verb, p.path, p.seg)}
		default:
			if p.seg != "" {
				seen[p.seg] = true
			}
			ps = append(ps, p)
		}
	}
	cw := &cwriter{c: c, t: t, o: o, hdr: hdr, upsert: upsert, verb: verb, results: results}
	byMode(ctx, o.Mode, ps, cw.single, cw.batch, cw.bulk)
	if err := ctx.Err(); err != nil {
		return results, fmt.Errorf("dataverse: %s %s: %w", verb, t.EntitySet, err)
	}
	for _, r := range results {
		if r.Status == NotWritten && errors.Is(r.Err, ErrUnavailable) {
			return results, fmt.Errorf("dataverse: %s %s: not all records written: %w", verb, t.EntitySet, r.Err)
		}
	}
	return results, nil
}

func prepareWrite(t Table, i int, w Write, upsert bool) (cprep, error) {
	p := cprep{idx: i}
	if upsert || w.Key.ID != "" || len(w.Key.Alt) > 0 {
		if !upsert && len(w.Key.Alt) > 0 {
			return p, errors.New("a create takes an id, not an alternate key (the key columns go in Fields)")
		}
		seg, err := w.Key.Segment()
		if err != nil {
			return p, err
		}
		p.seg, p.path = seg, t.EntitySet+"("+seg+")"
		if len(w.Key.Alt) == 0 {
			p.id = seg
		}
	}
	fields := make(map[string]any, len(w.Fields)+1)
	for k, v := range w.Fields {
		if !fieldRE.MatchString(k) || strings.EqualFold(k, t.Key) {
			return p, fmt.Errorf("field %q not allowed", truncate(k, 64))
		}
		fields[k] = v
	}
	if p.id != "" && !upsert {
		fields[t.Key] = p.id
	}
	b, err := json.Marshal(fields)
	if err != nil {
		return p, fmt.Errorf("encode fields: %w", err)
	}
	p.body = b
	return p, nil
}

// cwriter carries one Create or Upsert call; results is written at disjoint indexes only.
type cwriter struct {
	c       *Client
	t       Table
	o       WriteOptions
	hdr     http.Header
	upsert  bool
	verb    string
	results []WriteResult
}

// set records p's outcome; id is what the service reported, if anything.
func (w *cwriter) set(p cprep, id string, err error) {
	if id == "" {
		id = p.id
	}
	switch {
	case err == nil && w.upsert:
		w.results[p.idx] = WriteResult{ID: id, Status: Upserted}
	case err == nil:
		w.results[p.idx] = WriteResult{ID: id, Status: Created}
	case !w.upsert && p.id != "" && IsCode(err, CodeDuplicateKey):
		w.results[p.idx] = WriteResult{ID: id, Status: Existed}
	default:
		w.results[p.idx] = WriteResult{ID: id, Status: NotWritten, Err: err}
	}
}

func (w *cwriter) failAll(ps []cprep, err error) {
	for _, p := range ps {
		w.results[p.idx] = WriteResult{ID: p.id, Status: NotWritten, Err: err}
	}
}

func (w *cwriter) single(ctx context.Context, ps []cprep) {
	eachChunk(w.c.cfg.MaxConcurrency, 1, ps, func(c []cprep) { w.sendAlone(ctx, c[0]) })
}

// sendAlone writes p as a single request and records its outcome.
func (w *cwriter) sendAlone(ctx context.Context, p cprep) {
	id, err := w.one(ctx, p)
	w.set(p, id, err)
}

// op is p as a request: POST <set> for a create, PATCH <set>(<key>) without If-Match for an upsert.
func (w *cwriter) op(p cprep) BatchOp {
	if w.upsert {
		return BatchOp{Method: http.MethodPatch, Path: p.path, Header: w.hdr.Clone(), Body: p.body}
	}
	return BatchOp{Method: http.MethodPost, Path: w.t.EntitySet, Header: w.hdr.Clone(), Body: p.body}
}

// one sends a single create or upsert and returns the id from OData-EntityId.
func (w *cwriter) one(ctx context.Context, p cprep) (string, error) {
	op := w.op(p)
	what := w.verb + " " + w.t.EntitySet
	if p.path != "" {
		what = w.verb + " " + p.path
	}
	resp, err := w.c.do(ctx, &request{op: what, method: op.Method, url: w.c.api + op.Path, header: op.Header, body: op.Body, contentType: "application/json"})
	if err != nil {
		return "", err
	}
	if ae := resp.apiError(); ae != nil {
		return "", fmt.Errorf("dataverse: %s: %w", what, ae)
	}
	return entityIDOf(resp.header.Get("OData-EntityId")), nil
}

// entityIDOf takes the id out of an OData-EntityId such as https://org/api/data/v9.2/contacts(<id>).
func entityIDOf(loc string) string {
	open := strings.LastIndexByte(loc, '(')
	if open < 0 || !strings.HasSuffix(loc, ")") {
		return ""
	}
	id, err := ParseID(loc[open+1 : len(loc)-1])
	if err != nil {
		return ""
	}
	return id
}

// batch sends $batch requests with continue-on-error: each record is its own operation.
func (w *cwriter) batch(ctx context.Context, ps []cprep) {
	eachChunk(w.c.cfg.MaxConcurrency, w.c.batchCap(w.o.BatchSize), ps, func(c []cprep) { w.batchChunk(ctx, c) })
}

func (w *cwriter) batchChunk(ctx context.Context, ps []cprep) {
	byPart, ok := sendOps(ctx, w.c, ps, w.op, func(sub []cprep) { w.batchChunk(ctx, sub) }, w.failAll)
	if !ok {
		return
	}
	for i, p := range ps {
		r, ok := byPart[i]
		if !ok {
			// Without an answer the operation may or may not have run: send it alone, where a
			// create with an id that did run answers Existed.
			w.sendAlone(ctx, p)
			continue
		}
		perr := r.Err()
		var ae *APIError
		if errors.As(perr, &ae) && (ae.Status == http.StatusTooManyRequests || transientAPIError(ae)) {
			w.sendAlone(ctx, p) // the single path retries with the client's backoff
			continue
		}
		if perr != nil {
			perr = fmt.Errorf("dataverse: %s %s: %w", w.verb, w.t.EntitySet, perr)
		}
		w.set(p, entityIDOf(r.Header.Get("OData-EntityId")), perr)
	}
}
