package dataverse

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
)

// Update is a change to one existing record. IfMatch "" means "*": update only, never create
// (PATCH is an upsert without it). Any other value is an ETag such as W/"123" for optimistic
// concurrency (a stale one gives Conflict).
type Update struct {
	ID      string
	Fields  map[string]any
	IfMatch string
}

// Status is the outcome of one record's update.
type Status int

const (
	Updated  Status = iota + 1 // written
	Gone                       // the record does not exist (404); nothing was created
	Conflict                   // 412: the record changed since IfMatch's ETag
	Failed                     // anything else; Err says why
)

func (s Status) String() string {
	switch s {
	case Updated:
		return "updated"
	case Gone:
		return "gone"
	case Conflict:
		return "conflict"
	case Failed:
		return "failed"
	}
	return "status(" + strconv.Itoa(int(s)) + ")"
}

// Result is one record's outcome. ID is the input's ID as given. Err is nil for Updated and
// otherwise an *APIError or an error wrapping one (or ErrUnavailable / ErrRolledBack / ErrInvalidID).
type Result struct {
	ID     string
	Status Status
	Err    error
}

// WriteMode selects the write path.
type WriteMode string

const (
	// ModeBulk uses UpdateMultiple where the table supports it (probed, cached) and falls back to
	// $batch. A failed UpdateMultiple is all-or-nothing, so it is bisected: good records still
	// land and each bad one ends up alone with its own error. Records with an ETag go via $batch.
	ModeBulk WriteMode = "bulk"
	// ModeBatch sends $batch requests with Prefer: odata.continue-on-error.
	ModeBatch WriteMode = "batch"
	// ModeSingle sends one PATCH per record, concurrently under the client's limiter.
	ModeSingle WriteMode = "single"
)

// WriteOptions tunes Update. Zero value: bulk, 100 records per request, no optional headers.
type WriteOptions struct {
	Mode      WriteMode
	BatchSize int // records per UpdateMultiple or $batch (default 100; $batch at most 1000)
	// BypassBusinessLogic: "CustomSync", "CustomAsync" or "CustomSync,CustomAsync"
	// (MSCRM.BypassBusinessLogicExecution; needs prvBypassCustomBusinessLogic).
	BypassBusinessLogic string
	// BypassCustomPlugins sends MSCRM.BypassCustomPluginExecution: true (legacy, sync plug-ins only).
	BypassCustomPlugins bool
	// SuppressDuplicateDetection sets MSCRM.SuppressDuplicateDetection; false enables detection
	// (the Web API suppresses it by default), and a duplicate then fails with 412 0x80040333.
	SuppressDuplicateDetection *bool
}

// DefaultWriteBatch is the records per UpdateMultiple or $batch request when nobody says otherwise:
// a job's write.batchSize defaults to it, and so does every layer below.
const DefaultWriteBatch = 100

func (o WriteOptions) normalized() (WriteOptions, error) {
	switch o.Mode {
	case "":
		o.Mode = ModeBulk
	case ModeBulk, ModeBatch, ModeSingle:
	default:
		return o, fmt.Errorf("dataverse: write mode %q: want bulk, batch or single", o.Mode)
	}
	if o.BatchSize <= 0 {
		o.BatchSize = DefaultWriteBatch
	}
	return o, nil
}

// byMode hands ps to the write path of mode m.
func byMode[T any](ctx context.Context, m WriteMode, ps []T, single, batch, bulk func(context.Context, []T)) {
	switch m {
	case ModeSingle:
		single(ctx, ps)
	case ModeBatch:
		batch(ctx, ps)
	case ModeBulk:
		bulk(ctx, ps)
	}
}

// forTable validates t and o and returns o with its defaults and its headers.
func (o WriteOptions) forTable(t Table) (WriteOptions, http.Header, error) {
	if err := t.validate(); err != nil {
		return o, nil, err
	}
	o, err := o.normalized()
	if err != nil {
		return o, nil, err
	}
	hdr, err := o.headers()
	return o, hdr, err
}

// headers returns the optional-parameter headers. In a $batch they go on every inner request:
// Dataverse reads them per operation.
func (o WriteOptions) headers() (http.Header, error) {
	h := http.Header{}
	if o.BypassBusinessLogic != "" {
		for _, v := range strings.Split(o.BypassBusinessLogic, ",") {
			if v != "CustomSync" && v != "CustomAsync" {
				return nil, fmt.Errorf("dataverse: BypassBusinessLogic %q: want CustomSync, CustomAsync or both", o.BypassBusinessLogic)
			}
		}
		h["MSCRM.BypassBusinessLogicExecution"] = []string{o.BypassBusinessLogic}
	}
	if o.BypassCustomPlugins {
		h["MSCRM.BypassCustomPluginExecution"] = []string{"true"}
	}
	if o.SuppressDuplicateDetection != nil {
		h["MSCRM.SuppressDuplicateDetection"] = []string{strconv.FormatBool(*o.SuppressDuplicateDetection)}
	}
	return h, nil
}

// prep is a validated update: canonical id, encoded body, its position in the caller's slice.
type prep struct {
	idx     int
	id      string
	in      Update
	ifMatch string
	body    []byte
}

var (
	fieldRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(@odata\.bind)?$`)
	etagRE  = regexp.MustCompile(`^(W/)?"[^"\r\n]*"$`)
)

func prepare(t Table, i int, u Update) (prep, error) {
	id, err := ParseID(u.ID)
	if err != nil {
		return prep{}, err
	}
	p := prep{idx: i, id: id, in: u, ifMatch: "*"}
	if u.IfMatch != "" && u.IfMatch != "*" {
		if !etagRE.MatchString(u.IfMatch) {
			return prep{}, fmt.Errorf("dataverse: update %s: IfMatch %q is not an ETag", id, truncate(u.IfMatch, 40))
		}
		p.ifMatch = u.IfMatch
	}
	for k := range u.Fields {
		if !fieldRE.MatchString(k) || strings.EqualFold(k, t.Key) {
			return prep{}, fmt.Errorf("dataverse: update %s: field %q not allowed", id, truncate(k, 64))
		}
	}
	fields := u.Fields
	if fields == nil {
		fields = map[string]any{}
	}
	if p.body, err = json.Marshal(fields); err != nil {
		return prep{}, fmt.Errorf("dataverse: update %s: encode fields: %w", id, err)
	}
	return p, nil
}

// resultFor maps a record's error to its outcome.
func resultFor(id string, err error) Result {
	if err == nil {
		return Result{ID: id, Status: Updated}
	}
	var ae *APIError
	if errors.As(err, &ae) {
		if recordGone(ae) {
			return Result{ID: id, Status: Gone, Err: err}
		}
		// 0x80040333 is duplicate detection, not a version mismatch.
		if ae.Status == http.StatusPreconditionFailed && !strings.EqualFold(ae.Code, "0x80040333") {
			return Result{ID: id, Status: Conflict, Err: err}
		}
	}
	return Result{ID: id, Status: Failed, Err: err}
}

// Update writes ups and returns one Result per input, in input order, each carrying its input ID.
// Invalid ids, fields or ETags fail only their record; an id repeated within the call fails its
// repeats. The error is non-nil only when the call could not be completed: bad options, ctx
// cancelled, or transient failures that exhausted the retry budget (wraps ErrUnavailable); the
// results are returned even then, the unwritten records as Failed with that cause, so callers
// can retry just those later.
func (c *Client) Update(ctx context.Context, t Table, ups []Update, o WriteOptions) ([]Result, error) {
	o, hdr, err := o.forTable(t)
	if err != nil {
		return nil, err
	}
	results := make([]Result, len(ups))
	seen := make(map[string]bool, len(ups))
	var preps []prep
	for i, u := range ups {
		p, err := prepare(t, i, u)
		switch {
		case err != nil:
			results[i] = Result{ID: u.ID, Status: Failed, Err: err}
		case seen[p.id]:
			results[i] = Result{ID: u.ID, Status: Failed, Err: fmt.Errorf("dataverse: update %s: id repeated in one call", p.id)}
		default:
			seen[p.id] = true
			preps = append(preps, p)
		}
	}
	w := writer{c: c, t: t, o: o, hdr: hdr, results: results}
	byMode(ctx, o.Mode, preps, w.single, w.batch, w.bulk)
	if err := ctx.Err(); err != nil {
		return results, fmt.Errorf("dataverse: update %s: %w", t.EntitySet, err)
	}
	for _, r := range results {
		if r.Status == Failed && errors.Is(r.Err, ErrUnavailable) {
			return results, fmt.Errorf("dataverse: update %s: not all records written: %w", t.EntitySet, r.Err)
		}
	}
	return results, nil
}

// writer carries one Update call's state; results is written at disjoint indexes only.
type writer struct {
	c       *Client
	t       Table
	o       WriteOptions
	hdr     http.Header
	results []Result
}

func (w *writer) set(p prep, err error) { w.results[p.idx] = resultFor(p.in.ID, err) }

func (w *writer) failAll(ps []prep, err error) {
	for _, p := range ps {
		w.results[p.idx] = Result{ID: p.in.ID, Status: Failed, Err: err}
	}
}

func (w *writer) single(ctx context.Context, ps []prep) {
	eachChunk(w.c.cfg.MaxConcurrency, 1, ps, func(c []prep) { w.set(c[0], w.c.patch(ctx, w.t, c[0], w.hdr)) })
}

// Patch updates one record with PATCH <set>(<id>) and If-Match (never creates).
func (c *Client) Patch(ctx context.Context, t Table, u Update, o WriteOptions) Result {
	if err := t.validate(); err != nil {
		return Result{ID: u.ID, Status: Failed, Err: err}
	}
	hdr, err := o.headers()
	if err != nil {
		return Result{ID: u.ID, Status: Failed, Err: err}
	}
	p, err := prepare(t, 0, u)
	if err != nil {
		return Result{ID: u.ID, Status: Failed, Err: err}
	}
	return resultFor(u.ID, c.patch(ctx, t, p, hdr))
}

func (c *Client) patch(ctx context.Context, t Table, p prep, hdr http.Header) error {
	h := hdr.Clone()
	h["If-Match"] = []string{p.ifMatch}
	resp, err := c.do(ctx, &request{
		op:          "update " + t.EntitySet + "(" + p.id + ")",
		method:      http.MethodPatch,
		url:         c.api + t.EntitySet + "(" + p.id + ")",
		header:      h,
		body:        p.body,
		contentType: "application/json",
	})
	if err != nil {
		return err
	}
	if ae := resp.apiError(); ae != nil {
		return fmt.Errorf("dataverse: update %s(%s): %w", t.EntitySet, p.id, ae)
	}
	return nil
}
