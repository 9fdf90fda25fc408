// Package enrich is the default enrichment-service adapter: it sends account records to a
// company-data service over the JSON protocol in the README ("Enrichment service protocol") and returns one result per
// record. A Client batches records, bounds concurrency and request rate for all its callers
// together, honours Retry-After, retries transient failures with backoff, and reports every
// record's outcome, so the pipeline never loses a record to a service hiccup.
//
// Field values are passed through as the service sent them (numbers as json.Number): deciding
// which columns may be written and whether a value fits is the caller's job.
package enrich

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"

	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"dvbulk/internal/ctxutil"
)

// Record is one record to enrich: its id and the job's input columns by logical name.
type Record struct {
	ID    string
	Input map[string]any
}

// Result is the outcome for one Record. Err is empty on success, in which case Fields holds
// what the service returned (numbers as json.Number, other types untouched). Retryable marks a
// transient failure that outlasted the retry budget (or a canceled call): the caller should
// keep the record for a later attempt rather than count it as failed for good.
type Result struct {
	ID        string
	Fields    map[string]any
	Err       string
	Retryable bool
}

// Failure reasons callers may compare with. Other reasons come from the service or describe a
// status code.
const (
	// ReasonMissing is the Err of a record the service left out of its results.
	ReasonMissing = "missing from enrichment results"
	// ReasonCanceled is the Err of a record whose call ended with the caller's context.
	ReasonCanceled = "enrichment not finished: canceled"
	// MalformedPrefix starts the Err of records whose answer could not be understood.
	MalformedPrefix = "malformed enrichment response: "
)

// Stats counts what a Client has done since New.
type Stats struct {
	Requests         int64 // HTTP requests sent, retries included
	Records          int64 // records carried by those requests (a retried record counts again)
	Enriched         int64 // records returned with fields
	Failures         int64 // records returned with Err set
	Throttled        int64 // 429 and 503 answers
	Retries          int64 // requests sent again after a transient failure or throttling
	UnknownIDs       int64 // results for ids we did not send (ignored)
	DuplicateResults int64 // further results for an id already answered (ignored; the first wins)
	PeakInFlight     int64 // most requests in flight at once
	Splits           int64 // refused requests (400/413) retried in halves
	Limit            int   // the concurrency limit now (adapted up to Concurrency unless fixed)
	LimitCuts        int64 // how often the limit was cut (429/503 or rising latency)
	BatchSize        int   // records per request now (BatchSize, or the smaller size learned)
	InFlight         int64 // requests in flight now
	Concurrency      int   // the configured ceiling on requests in flight (Limit adapts below it)
}

type stats struct {
	requests, records, enriched, failures, throttled, retries, unknown, duplicates, splits atomic.Int64
	inFlight, peak                                                                         atomic.Int64
}

// Client talks to one enrichment service. It is safe for concurrent use; its concurrency limit
// (adapted up to Concurrency), its RPS limit and the records per request it has learned apply to
// all callers together.
type Client struct {
	cfg   Config
	http  *http.Client
	gate  *gate
	sizer *sizer
	log   zerolog.Logger
	stats stats
}

// New validates cfg, fills in defaults and returns a Client. Errors wrap ErrConfig and name
// the offending field.
func New(cfg Config) (*Client, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Client{
		cfg:   cfg,
		http:  httpClient(cfg.HTTPClient, cfg.Concurrency),
		gate:  newGate(cfg.Concurrency, cfg.FixedConcurrency, cfg.RPS),
		sizer: newSizer(cfg.BatchSize),
		log:   cfg.Logger.With().Str("component", "enrich").Logger(),
	}, nil
}

// httpClient returns a copy of base (or a fresh client) that never follows redirects: the API
// key travels in a custom header, which Go would forward to any host a redirect names.
func httpClient(base *http.Client, concurrency int) *http.Client {
	var c http.Client
	if base != nil {
		c = *base
	} else if t, ok := http.DefaultTransport.(*http.Transport); ok {
		t = t.Clone()
		t.MaxIdleConnsPerHost = concurrency // the default of 2 would reopen connections constantly
		t.MaxIdleConns = max(t.MaxIdleConns, concurrency)
		c.Transport = t
	}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}

// Enrich splits recs into requests of BatchSize records (or the smaller size learned), sends them concurrently within the
// client's shared limits and returns exactly one Result per record, in input order. Per-record
// and per-request failures are reported in the Results, never as the error. The error is
// non-nil only when ctx ended, or its stop (ctxutil.WithStop) closed, before every record had an
// answer; the Results are complete even then, with unfinished records marked ReasonCanceled and
// Retryable. After a stop, requests already sent still finish and their answers are kept.
func (c *Client) Enrich(ctx context.Context, recs []Record) ([]Result, error) {
	out := make([]Result, len(recs))
	for i, r := range recs {
		out[i] = Result{ID: r.ID, Err: ReasonCanceled, Retryable: true}
	}
	var unfinished atomic.Bool
	var g errgroup.Group
	g.SetLimit(c.cfg.Concurrency)
	for start := 0; start < len(recs); {
		if ctx.Err() != nil || ctxutil.Stopped(ctx) {
			unfinished.Store(true)
			break
		}
		// Taken for every request: a size learned from one request's answer applies to the next.
		n, probe, err := c.sizer.take(ctx)
		if err != nil {
			unfinished.Store(true)
			break
		}
		// Even pieces (34 records at 17 per request go as 17+17, 40 as 14+13+13, not 17+17+6):
		// the count of requests is what costs. A probe carries exactly the size it tests.
		left := len(recs) - start
		if n = min(n, left); !probe {
			pieces := (left + n - 1) / n
			n = (left + pieces - 1) / pieces
		}
		batch, res := recs[start:start+n], out[start:start+n]
		start += len(batch)
		g.Go(func() error {
			if !c.runBatch(ctx, batch, res, probe) {
				unfinished.Store(true)
			}
			if probe {
				c.sizer.unprobe()
			}
			return nil
		})
	}
	_ = g.Wait() // the goroutines report through out and unfinished, never an error
	if unfinished.Load() {
		err := ctx.Err()
		if err == nil {
			err = ctxutil.ErrStopped // not sent: the stop came first
		}
		return out, fmt.Errorf("enrich: %w", err)
	}
	return out, nil
}

// Limits returns what one caller needs to keep the client busy on its own: records per call (a
// multiple of the records per request now) and the concurrency ceiling. Callers may use them to size their work; the client
// still enforces its limits for all callers together.
func (c *Client) Limits() (batch, concurrency int) {
	n := c.sizer.usable()
	// A multiple of the request size near the ceiling: whole requests per call, and few calls.
	return n * max(1, c.cfg.BatchSize/n), c.cfg.Concurrency
}

// Stats returns a snapshot of the client's counters.
func (c *Client) Stats() Stats {
	s := &c.stats
	return Stats{
		Requests:         s.requests.Load(),
		Records:          s.records.Load(),
		Enriched:         s.enriched.Load(),
		Failures:         s.failures.Load(),
		Throttled:        s.throttled.Load(),
		Retries:          s.retries.Load(),
		UnknownIDs:       s.unknown.Load(),
		DuplicateResults: s.duplicates.Load(),
		PeakInFlight:     s.peak.Load(),
		Splits:           s.splits.Load(),
		Limit:            c.gate.slots.Limit(),
		LimitCuts:        c.gate.slots.Cuts(),
		BatchSize:        c.sizer.size(),
		InFlight:         s.inFlight.Load(),
		Concurrency:      c.cfg.Concurrency,
	}
}

func (s *stats) enter() {
	n := s.inFlight.Add(1)
	for {
		p := s.peak.Load()
		if n <= p || s.peak.CompareAndSwap(p, n) {
			return
		}
	}
}

func (s *stats) leave() { s.inFlight.Add(-1) }
