// Package enrich is the default adapter for the external company-data service (INTERFACES.md §4):
// batched lookups with their own concurrency and request-rate limits, Retry-After and retries, and a
// per-record answer for every record asked about.
package enrich

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"
)

// Config configures a Client.
type Config struct {
	URL          string
	APIKey       string // sent in APIKeyHeader; never logged
	APIKeyHeader string // default x-api-key
	BatchSize    int    // records per request (default 1)
	Concurrency  int    // requests in flight, shared by every caller (default 8)
	RPS          float64
	Timeout      time.Duration // per attempt (default 30s)
	MaxRetries   int           // transient retries per request (default 6)
	HTTPClient   *http.Client
	Logger       zerolog.Logger
}

// Record is one record to enrich: its id and the job's input columns.
type Record struct {
	ID    string
	Input map[string]any
}

// Result is the answer for one record. Err is empty on success; Retryable marks a transient failure
// that outlasted the retry budget (the caller keeps the record for a later attempt).
type Result struct {
	ID        string
	Fields    map[string]any
	Err       string
	Retryable bool
}

// Stats counts what the client did.
type Stats struct {
	Requests, Records, Throttled, Retries, Failures, UnknownIDs, Duplicates int64
	PeakInFlight                                                            int64
}

// Client calls the enrichment service. It is safe for concurrent use.
type Client struct {
	cfg     Config
	hc      *http.Client
	sem     chan struct{}
	limiter *rate.Limiter

	pauseMu    sync.Mutex
	pauseUntil time.Time

	requests, records, throttled, retries, failures, unknown, dups atomic.Int64
	inFlight, peak                                                 atomic.Int64
}

const maxBody = 32 << 20

// New validates cfg and returns a client.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, fmt.Errorf("enrich: URL must be an absolute http(s) URL, got %q", cfg.URL)
	}
	if u.Scheme == "http" && !loopback(u.Hostname()) {
		return nil, fmt.Errorf("enrich: URL must use https unless loopback, got %q", cfg.URL)
	}
	if cfg.APIKeyHeader == "" {
		cfg.APIKeyHeader = "x-api-key"
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = 1
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = 8
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.MaxRetries == 0 {
		cfg.MaxRetries = 6
	}
	switch {
	case cfg.BatchSize < 1:
		return nil, fmt.Errorf("enrich: BatchSize must be >= 1, got %d", cfg.BatchSize)
	case cfg.Concurrency < 1:
		return nil, fmt.Errorf("enrich: Concurrency must be >= 1, got %d", cfg.Concurrency)
	case cfg.RPS < 0:
		return nil, fmt.Errorf("enrich: RPS must be >= 0, got %g", cfg.RPS)
	}
	c := &Client{cfg: cfg, hc: cfg.HTTPClient, sem: make(chan struct{}, cfg.Concurrency), limiter: rate.NewLimiter(rate.Inf, 1)}
	if cfg.RPS > 0 {
		c.limiter = rate.NewLimiter(rate.Limit(cfg.RPS), max(1, int(cfg.RPS/10)))
	}
	if c.hc == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = cfg.Concurrency + 4
		c.hc = &http.Client{Transport: tr}
	}
	return c, nil
}

func loopback(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// Stats returns the client's counters.
func (c *Client) Stats() Stats {
	return Stats{Requests: c.requests.Load(), Records: c.records.Load(), Throttled: c.throttled.Load(), Retries: c.retries.Load(),
		Failures: c.failures.Load(), UnknownIDs: c.unknown.Load(), Duplicates: c.dups.Load(), PeakInFlight: c.peak.Load()}
}

// Enrich asks about recs in requests of BatchSize, concurrently within the client's limits, and
// returns one result per record in input order. The error is only ctx's.
func (c *Client) Enrich(ctx context.Context, recs []Record) ([]Result, error) {
	out := make([]Result, len(recs))
	g, gctx := errgroup.WithContext(ctx)
	for start := 0; start < len(recs); start += c.cfg.BatchSize {
		end := min(start+c.cfg.BatchSize, len(recs))
		g.Go(func() error {
			res := c.request(gctx, recs[start:end])
			copy(out[start:end], res)
			return nil
		})
	}
	_ = g.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// request sends one batch with retries and maps the answer back to its records by id.
func (c *Client) request(ctx context.Context, recs []Record) []Result {
	fail := func(reason string, retryable bool) []Result {
		c.failures.Add(int64(len(recs)))
		out := make([]Result, len(recs))
		for i, r := range recs {
			out[i] = Result{ID: r.ID, Err: reason, Retryable: retryable}
		}
		return out
	}
	body, err := encodeRequest(recs)
	if err != nil {
		return fail(err.Error(), false)
	}
	var last string
	for attempt := 0; attempt <= c.cfg.MaxRetries; attempt++ {
		if attempt > 0 {
			c.retries.Add(1)
		}
		resp, wait, err := c.attempt(ctx, body, len(recs))
		switch {
		case ctx.Err() != nil:
			return fail("cancelled: "+ctx.Err().Error(), true)
		case err == nil:
			return c.match(recs, resp)
		}
		var perm *permanentError
		if errors.As(err, &perm) {
			return fail(perm.Error(), false)
		}
		last = err.Error()
		if wait <= 0 {
			wait = backoff(attempt)
		}
		if err := sleep(ctx, wait); err != nil {
			return fail("cancelled", true)
		}
	}
	return fail(fmt.Sprintf("enrichment unavailable after %d attempts: %s", c.cfg.MaxRetries+1, last), true)
}

type permanentError struct{ msg string }

func (e *permanentError) Error() string { return e.msg }

// attempt sends one request. It returns the decoded response, or an error with a suggested wait
// (Retry-After) for transient failures, or a *permanentError.
func (c *Client) attempt(ctx context.Context, body []byte, n int) (*Response, time.Duration, error) {
	if err := c.waitPause(ctx); err != nil {
		return nil, 0, err
	}
	if err := c.limiter.Wait(ctx); err != nil {
		return nil, 0, err
	}
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, 0, ctx.Err()
	}
	defer func() { <-c.sem }()
	if err := c.waitPause(ctx); err != nil { // a 429 may have arrived while queued
		return nil, 0, err
	}
	if v := c.inFlight.Add(1); v > c.peak.Load() {
		c.peak.Store(v)
	}
	defer c.inFlight.Add(-1)

	actx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, c.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return nil, 0, &permanentError{msg: "build request: " + err.Error()}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if c.cfg.APIKey != "" {
		req.Header.Set(c.cfg.APIKeyHeader, c.cfg.APIKey)
	}
	c.requests.Add(1)
	c.records.Add(int64(n))
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("request failed: %s", redactURL(err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return nil, 0, fmt.Errorf("read response: %v", err)
	}
	if len(data) > maxBody {
		return nil, 0, &permanentError{msg: fmt.Sprintf("response larger than %d bytes", maxBody)}
	}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable:
		c.throttled.Add(1)
		wait, ok := retryAfter(resp.Header.Get("Retry-After"))
		if ok {
			c.pause(wait)
		}
		return nil, wait, fmt.Errorf("status %d (throttled)", resp.StatusCode)
	case resp.StatusCode >= 500:
		return nil, 0, fmt.Errorf("status %d: %s", resp.StatusCode, excerpt(data))
	case resp.StatusCode != http.StatusOK:
		return nil, 0, &permanentError{msg: fmt.Sprintf("enrichment service answered %d: %s", resp.StatusCode, excerpt(data))}
	}
	r, err := DecodeResponse(data)
	if err != nil {
		return nil, 0, fmt.Errorf("malformed enrichment Response: %v", err)
	}
	return r, 0, nil
}

// match maps results back to records by id: a missing result or an "error" is a per-record failure,
// results for ids not asked about are ignored and counted.
func (c *Client) match(recs []Record, r *Response) []Result {
	asked := make(map[string]int, len(recs))
	for i, rec := range recs {
		asked[rec.ID] = i
	}
	out := make([]Result, len(recs))
	seen := make([]bool, len(recs))
	for _, item := range r.Results {
		i, ok := asked[item.ID]
		if !ok {
			c.unknown.Add(1)
			continue
		}
		if seen[i] {
			c.dups.Add(1)
			continue
		}
		seen[i] = true
		if item.Error != "" {
			out[i] = Result{ID: item.ID, Err: item.Error}
			c.failures.Add(1)
			continue
		}
		out[i] = Result{ID: item.ID, Fields: item.Fields}
		if out[i].Fields == nil {
			out[i].Fields = map[string]any{}
		}
	}
	for i, rec := range recs {
		if !seen[i] {
			out[i] = Result{ID: rec.ID, Err: "missing from enrichment results"}
			c.failures.Add(1)
		}
	}
	return out
}

func (c *Client) pause(d time.Duration) {
	c.pauseMu.Lock()
	defer c.pauseMu.Unlock()
	if until := time.Now().Add(d); until.After(c.pauseUntil) {
		c.pauseUntil = until
	}
}

func (c *Client) waitPause(ctx context.Context) error {
	c.pauseMu.Lock()
	d := time.Until(c.pauseUntil)
	c.pauseMu.Unlock()
	if d <= 0 {
		return nil
	}
	return sleep(ctx, d)
}

func retryAfter(v string) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if f, err := strconv.ParseFloat(v, 64); err == nil && f >= 0 {
		return min(time.Duration(f*float64(time.Second)), 10*time.Minute), true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(0, min(time.Until(t), 10*time.Minute)), true
	}
	return 0, false
}

func backoff(attempt int) time.Duration {
	d := min(200*time.Millisecond<<attempt, 20*time.Second)
	return time.Duration(rand.Int64N(int64(d)) + int64(d)/2)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func excerpt(b []byte) string {
	const n = 200
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}

// redactURL drops the URL from transport errors (it may carry a key in its query).
func redactURL(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Op + ": " + ue.Err.Error()
	}
	return err.Error()
}

// encodeRequest builds {"records":[{"id":..., <input columns>}]}.
func encodeRequest(recs []Record) ([]byte, error) {
	items := make([]map[string]any, len(recs))
	for i, r := range recs {
		m := make(map[string]any, len(r.Input)+1)
		for k, v := range r.Input {
			m[k] = v
		}
		m["id"] = r.ID
		items[i] = m
	}
	return json.Marshal(map[string]any{"records": items})
}
