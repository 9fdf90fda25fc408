package enrich_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"dvbulk/internal/enrich"
	"dvbulk/internal/enrich/enrichsim"
)

func ids(n int) []enrich.Record {
	out := make([]enrich.Record, n)
	for i := range out {
		out[i] = enrich.Record{ID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i+1), Input: map[string]any{"name": fmt.Sprint("Account ", i)}}
	}
	return out
}

func newClient(t *testing.T, url string, mod func(*enrich.Config)) *enrich.Client {
	t.Helper()
	cfg := enrich.Config{URL: url, BatchSize: 25, Concurrency: 8, Timeout: 2 * time.Second, MaxRetries: 4}
	if mod != nil {
		mod(&cfg)
	}
	c, err := enrich.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestEnrichAgainstSimulator(t *testing.T) {
	sim := enrichsim.New(enrichsim.Config{TimeScale: 20, MaxConcurrency: 4})
	url, stop := sim.Start()
	defer stop()
	c := newClient(t, url, func(c *enrich.Config) { c.Concurrency = 4 })
	recs := ids(260)
	res, err := c.Enrich(context.Background(), recs)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if r.ID != recs[i].ID || r.Err != "" {
			t.Fatalf("result %d: %+v", i, r)
		}
		want := enrichsim.Truth(r.ID)
		if fmt.Sprint(r.Fields["numberofemployees"]) != fmt.Sprint(want["numberofemployees"]) || r.Fields["description"] != want["description"] {
			t.Fatalf("result %d fields %v, want %v", i, r.Fields, want)
		}
	}
	sc := sim.Counters()
	if sc.Requests != 11 || sc.Throttled != 0 {
		t.Errorf("sim saw %d requests (%d throttled), want ceil(260/25)=11 and none throttled", sc.Requests, sc.Throttled)
	}
	if sc.PeakConcurrency > 4 {
		t.Errorf("peak concurrency %d above the client's 4", sc.PeakConcurrency)
	}
	if _, isNum := res[0].Fields["numberofemployees"].(json.Number); !isNum {
		t.Errorf("numbers decoded as %T, want json.Number", res[0].Fields["numberofemployees"])
	}
}

func TestPerRecordFailures(t *testing.T) {
	sim := enrichsim.New(enrichsim.Config{TimeScale: 50})
	url, stop := sim.Start()
	defer stop()
	recs := ids(10)
	sim.Faults().NoMatch(recs[1].ID)
	sim.Faults().Missing(recs[2].ID)
	sim.Faults().UnknownIDs.Store(1)
	c := newClient(t, url, func(c *enrich.Config) { c.BatchSize = 10 })
	res, _ := c.Enrich(context.Background(), recs)
	if res[1].Err != "no match" || res[1].Retryable {
		t.Errorf("record 1: %+v, want a permanent 'no match'", res[1])
	}
	if !strings.Contains(res[2].Err, "missing") {
		t.Errorf("record 2: %+v, want missing from results", res[2])
	}
	for _, i := range []int{0, 3, 9} {
		if res[i].Err != "" {
			t.Errorf("record %d failed: %s", i, res[i].Err)
		}
	}
	if c.Stats().UnknownIDs != 1 {
		t.Errorf("unknown ids counted %d, want 1", c.Stats().UnknownIDs)
	}
}

// TestRetryAfterPausesEveryRequest: after a 429 with Retry-After no request reaches the service
// until the pause is over, and everything succeeds afterwards.
func TestRetryAfterPausesEveryRequest(t *testing.T) {
	var mu sync.Mutex
	var throttledAt time.Time
	var early atomic.Int64
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		mu.Lock()
		if !throttledAt.IsZero() && time.Since(throttledAt) < 290*time.Millisecond {
			early.Add(1)
		}
		if n == 1 {
			throttledAt = time.Now()
			mu.Unlock()
			w.Header().Set("Retry-After", "0.3")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		mu.Unlock()
		var req struct {
			Records []map[string]any `json:"records"`
		}
		_ = json.NewDecoder(r.Body).Decode(&req)
		out := []map[string]any{}
		for _, rec := range req.Records {
			out = append(out, map[string]any{"id": rec["id"], "fields": map[string]any{"description": "x"}})
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"results": out})
	}))
	defer srv.Close()
	c := newClient(t, srv.URL, func(c *enrich.Config) { c.BatchSize, c.Concurrency = 1, 1 })
	res, _ := c.Enrich(context.Background(), ids(6))
	for _, r := range res {
		if r.Err != "" {
			t.Fatalf("%s: %s", r.ID, r.Err)
		}
	}
	if early.Load() != 0 {
		t.Errorf("%d requests arrived inside the Retry-After window", early.Load())
	}
}

func TestTransientThenPermanent(t *testing.T) {
	sim := enrichsim.New(enrichsim.Config{TimeScale: 50})
	url, stop := sim.Start()
	defer stop()
	sim.Faults().ServerErrors.Store(2)
	sim.Faults().Malformed.Store(1)
	c := newClient(t, url, func(c *enrich.Config) { c.BatchSize = 5 })
	res, _ := c.Enrich(context.Background(), ids(5))
	for _, r := range res {
		if r.Err != "" {
			t.Fatalf("after transient faults: %+v", r)
		}
	}
	// A 4xx fails that request's records with a reason and is not retried.
	c2 := newClient(t, url, func(c *enrich.Config) { c.BatchSize = 30 }) // over the sim's 25 per request
	before := sim.Counters().Requests
	res, _ = c2.Enrich(context.Background(), ids(30))
	if !strings.Contains(res[0].Err, "400") || res[0].Retryable {
		t.Errorf("got %+v, want a permanent failure naming the 400", res[0])
	}
	if n := sim.Counters().Requests - before; n != 1 {
		t.Errorf("4xx retried: %d requests", n)
	}
	// Retry budget spent: records come back retryable.
	sim.Faults().ServerErrors.Store(100)
	c3 := newClient(t, url, func(c *enrich.Config) { c.MaxRetries = 1 })
	res, _ = c3.Enrich(context.Background(), ids(1))
	if !res[0].Retryable || res[0].Err == "" {
		t.Errorf("got %+v, want a retryable failure after the budget", res[0])
	}
}

func TestAPIKeySentAndNeverLogged(t *testing.T) {
	const key = "s3cr3t-key-value"
	sim := enrichsim.New(enrichsim.Config{TimeScale: 50, APIKey: key, APIKeyHeader: "x-company-key"})
	url, stop := sim.Start()
	defer stop()
	var logs bytes.Buffer
	c := newClient(t, url, func(c *enrich.Config) {
		c.APIKey, c.APIKeyHeader, c.Logger = key, "x-company-key", zerolog.New(&logs).Level(zerolog.TraceLevel)
	})
	res, _ := c.Enrich(context.Background(), ids(3))
	if res[0].Err != "" {
		t.Fatalf("with the key: %s", res[0].Err)
	}
	bad := newClient(t, url, func(c *enrich.Config) {
		c.APIKey, c.APIKeyHeader, c.Logger = "wrong-"+key, "x-company-key", zerolog.New(&logs)
	})
	res, _ = bad.Enrich(context.Background(), ids(1))
	if !strings.Contains(res[0].Err, "401") {
		t.Errorf("wrong key: %+v", res[0])
	}
	if strings.Contains(logs.String(), key) || strings.Contains(res[0].Err, key) {
		t.Error("the API key leaked into logs or errors")
	}
}

func TestConfigValidation(t *testing.T) {
	for _, tt := range []enrich.Config{{URL: "http://example.com/enrich"}, {URL: "ftp://x"}, {URL: "http://127.0.0.1/x", BatchSize: -1}} {
		if _, err := enrich.New(tt); err == nil {
			t.Errorf("New(%+v) accepted", tt)
		}
	}
}

func FuzzDecodeResponse(f *testing.F) {
	f.Add([]byte(`{"results":[{"id":"a","fields":{"n":1}},{"id":"b","error":"no match"}]}`))
	f.Add([]byte(`{"results":[]}`))
	f.Add([]byte(`{"results":[{"id":"a","fields":"x"}]}`))
	f.Add([]byte(`[1,2]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := enrich.DecodeResponse(data)
		if err == nil && r == nil {
			t.Fatal("nil response without error")
		}
	})
}
