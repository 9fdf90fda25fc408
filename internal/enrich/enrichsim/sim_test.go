package enrichsim

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

type answer struct {
	status     int
	retryAfter string
	body       []byte
	results    []map[string]any
}

// post sends one request with the given ids to h.
func post(t *testing.T, url string, header http.Header, ids ...string) answer {
	t.Helper()
	recs := make([]map[string]any, len(ids))
	for i, id := range ids {
		recs[i] = map[string]any{"id": id, "name": "Contoso " + id, "websiteurl": "https://contoso.example"}
	}
	body, _ := json.Marshal(map[string]any{"records": recs})
	return postRaw(t, url, header, string(body))
}

func postRaw(t *testing.T, url string, header http.Header, body string) answer {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	a := answer{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After")}
	a.body, _ = io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK {
		dec := json.NewDecoder(bytes.NewReader(a.body))
		dec.UseNumber()
		var out struct{ Results []map[string]any }
		if dec.Decode(&out) == nil {
			a.results = out.Results
		}
	}
	return a
}

func serve(t *testing.T, cfg Config) (*Sim, string) {
	t.Helper()
	if cfg.TimeScale == 0 {
		cfg.TimeScale = 1000
	}
	s := New(cfg)
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return s, srv.URL + "/enrich"
}

func TestAnswerIsTruth(t *testing.T) {
	s, url := serve(t, Config{})
	ids := []string{AccountIDForTest(1), AccountIDForTest(2), strings.ToUpper(AccountIDForTest(3))}
	a := post(t, url, nil, ids...)
	if a.status != http.StatusOK || len(a.results) != 3 {
		t.Fatalf("status %d, body %s", a.status, a.body)
	}
	for i, r := range a.results {
		if r["id"] != ids[i] { // echoed as sent
			t.Errorf("result %d id %v, want %s", i, r["id"], ids[i])
		}
		want := Truth(ids[i])
		fields := r["fields"].(map[string]any)
		for k, v := range want {
			if fmt.Sprint(fields[k]) != strconv.FormatFloat(toFloat(v), 'f', -1, 64) && fmt.Sprint(fields[k]) != fmt.Sprint(v) {
				t.Errorf("result %d %s = %v, want %v", i, k, fields[k], v)
			}
		}
		if len(fields) != 4 {
			t.Errorf("result %d fields %v", i, fields)
		}
	}
	if c := s.Counters(); c.Requests != 1 || c.Answered != 1 || c.Records != 3 || c.DistinctIDs != 3 {
		t.Errorf("counters %+v", c)
	}
}

func toFloat(v any) float64 {
	switch n := v.(type) {
	case int:
		return float64(n)
	case float64:
		return n
	}
	return math.NaN()
}

func TestRejections(t *testing.T) {
	s, url := serve(t, Config{MaxRecordsPerRequest: 3, APIKey: "k3y", APIKeyHeader: "x-company-key"})
	key := http.Header{"X-Company-Key": {"k3y"}}
	for _, tt := range []struct {
		name   string
		header http.Header
		body   string
		status int
		says   string
	}{
		{"no key", nil, `{"records":[{"id":"a"}]}`, 401, "API key"},
		{"wrong key", http.Header{"X-Company-Key": {"k3"}}, `{"records":[{"id":"a"}]}`, 401, "API key"},
		{"too many records", key, `{"records":[{"id":"a"},{"id":"b"},{"id":"c"},{"id":"d"}]}`, 400, "at most 3"},
		{"not JSON", key, `records: a`, 400, "invalid JSON"},
		{"no records member", key, `{"items":[]}`, 400, `{\"records\":[...]}`},
		{"record without id", key, `{"records":[{"name":"x"}]}`, 400, "record 0 has no id"},
		{"numeric id", key, `{"records":[{"id":7}]}`, 400, "invalid JSON"},
		{"empty list", key, `{"records":[]}`, 200, `{"results":[]}`},
		{"right key", key, `{"records":[{"id":"a"}]}`, 200, `"id":"a"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a := postRaw(t, url, tt.header, tt.body)
			if a.status != tt.status || !strings.Contains(string(a.body), tt.says) {
				t.Errorf("%d %s, want %d mentioning %q", a.status, a.body, tt.status, tt.says)
			}
		})
	}
	if c := s.Counters(); c.Rejected != 7 || c.Answered != 2 || s.CallsByID("a") != 1 {
		t.Errorf("counters %+v, calls for a: %d", c, s.CallsByID("a"))
	}
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("x-company-key", "k3y")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d, want 405", resp.StatusCode)
	}
}

// TestConcurrencyCap: requests above MaxConcurrency are answered 429 at once, with a
// Retry-After of one scaled second in decimal.
func TestConcurrencyCap(t *testing.T) {
	s, url := serve(t, Config{MaxConcurrency: 2, TimeScale: 10, BaseLatency: 3 * time.Second}) // 300 ms each
	var wg sync.WaitGroup
	answers := make([]answer, 5)
	for i := range answers {
		wg.Go(func() { answers[i] = post(t, url, nil, AccountIDForTest(i)) })
	}
	wg.Wait()
	ok, throttled := 0, 0
	for _, a := range answers {
		switch {
		case a.status == http.StatusOK:
			ok++
		case a.status == http.StatusTooManyRequests && a.retryAfter == "0.1":
			throttled++
		default:
			t.Errorf("answer %d, Retry-After %q: %s", a.status, a.retryAfter, a.body)
		}
	}
	if c := s.Counters(); ok != 2 || throttled != 3 || c.Throttled != 3 || c.PeakConcurrency < 3 || c.InFlight != 0 {
		t.Errorf("%d ok, %d throttled, counters %+v; want 2 and 3", ok, throttled, c)
	}
}

func TestRetryAfterFormat(t *testing.T) {
	for _, tt := range []struct {
		d    time.Duration
		want string
	}{
		{time.Second, "1"}, {2 * time.Second, "2"}, {100 * time.Millisecond, "0.1"},
		{1500 * time.Millisecond, "1.5"}, {1234567 * time.Microsecond, "1.235"}, {0, "0.001"}, {time.Nanosecond, "0.001"},
	} {
		if got := retryAfter(tt.d); got != tt.want {
			t.Errorf("retryAfter(%s) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

func TestLatency(t *testing.T) {
	_, url := serve(t, Config{TimeScale: 10, BaseLatency: time.Second, PerRecord: 100 * time.Millisecond})
	start := time.Now()
	post(t, url, nil, "a", "b", "c", "d", "e") // (1 s + 5 * 100 ms) / 10
	if took := time.Since(start); took < 150*time.Millisecond {
		t.Errorf("answered in %s, want at least 150ms", took)
	}
}

func TestFaults(t *testing.T) {
	for _, tt := range []struct {
		name   string
		inject func(f *Faults)
		check  func(t *testing.T, a answer)
	}{
		{"server errors", func(f *Faults) { f.ServerErrors.Store(1) }, func(t *testing.T, a answer) {
			if a.status != 500 {
				t.Errorf("status %d", a.status)
			}
		}},
		{"malformed", func(f *Faults) { f.Malformed.Store(1) }, func(t *testing.T, a answer) {
			if a.status != 200 || json.Valid(a.body) {
				t.Errorf("status %d, body %s", a.status, a.body)
			}
		}},
		{"throttle", func(f *Faults) { f.Throttle(time.Second) }, func(t *testing.T, a answer) {
			ra, err := strconv.ParseFloat(a.retryAfter, 64)
			if a.status != 429 || err != nil || ra <= 0.5 || ra > 1 {
				t.Errorf("status %d, Retry-After %q", a.status, a.retryAfter)
			}
		}},
		{"no match and missing", func(f *Faults) { f.NoMatch("A"); f.Missing("b") }, func(t *testing.T, a answer) {
			if len(a.results) != 2 || a.results[0]["id"] != "a" || a.results[0]["error"] != "no match" || a.results[1]["id"] != "c" {
				t.Errorf("results %v", a.results)
			}
		}},
		{"wrong type and extra fields", func(f *Faults) { f.WrongType("a"); f.ExtraFields("b") }, func(t *testing.T, a answer) {
			fa, fb := a.results[0]["fields"].(map[string]any), a.results[1]["fields"].(map[string]any)
			if fa["numberofemployees"] != fmt.Sprintf("about %v", Truth("a")["numberofemployees"]) {
				t.Errorf("wrong type: %v", fa)
			}
			if fb["ownerid"] == nil || fb["_parentaccountid_value"] == nil || fb["statecode"] != json.Number("1") {
				t.Errorf("extra fields: %v", fb)
			}
		}},
		{"duplicate and unknown", func(f *Faults) { f.Duplicate("c"); f.UnknownIDs.Store(1) }, func(t *testing.T, a answer) {
			if len(a.results) != 5 || a.results[2]["id"] != "c" || a.results[3]["id"] != "c" ||
				a.results[3]["fields"].(map[string]any)["description"] != "duplicate answer" || a.results[4]["id"] != unknownIDFor(1) {
				t.Errorf("results %v", a.results)
			}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, url := serve(t, Config{})
			tt.inject(s.Faults())
			tt.check(t, post(t, url, nil, "a", "b", "c"))
			// One-shot faults are used up; Clear removes the rest.
			s.Faults().Clear()
			if a := post(t, url, nil, "a", "b", "c"); a.status != 200 || len(a.results) != 3 {
				t.Errorf("after Clear: %d %s", a.status, a.body)
			}
		})
	}
}

func TestSlowFaultIsRealTime(t *testing.T) {
	s, url := serve(t, Config{TimeScale: 1000})
	s.Faults().Slow(200 * time.Millisecond)
	start := time.Now()
	post(t, url, nil, "a")
	if took := time.Since(start); took < 200*time.Millisecond {
		t.Errorf("answered in %s, want the 200ms Slow unscaled", took)
	}
}

// TestCallsByID counts answered asks only, case-insensitively, and DuplicateCalls sums repeats.
func TestCallsByID(t *testing.T) {
	s, url := serve(t, Config{})
	post(t, url, nil, "a", "b")
	post(t, url, nil, "A")
	s.Faults().ServerErrors.Store(1)
	post(t, url, nil, "a", "c") // failed on purpose: not an answer
	post(t, url, nil, "a")
	if s.CallsByID("a") != 3 || s.CallsByID("B") != 1 || s.CallsByID("c") != 0 {
		t.Errorf("calls a=%d b=%d c=%d, want 3 1 0", s.CallsByID("a"), s.CallsByID("b"), s.CallsByID("c"))
	}
	if c := s.Counters(); c.DuplicateCalls != 2 || c.DistinctIDs != 2 || c.Requests != 4 || c.Errors != 1 {
		t.Errorf("counters %+v, want 2 duplicate calls over 2 ids", c)
	}
	s.ResetCounters()
	if c := s.Counters(); c != (Counters{}) || s.CallsByID("a") != 0 {
		t.Errorf("after reset: %+v", c)
	}
}

func TestStart(t *testing.T) {
	s := New(Config{TimeScale: 1000})
	url, stop := s.Start()
	if !strings.HasPrefix(url, "http://127.0.0.1:") || !strings.HasSuffix(url, "/enrich") {
		t.Fatalf("url %s", url)
	}
	if a := post(t, url, nil, "a"); a.status != 200 {
		t.Fatalf("status %d", a.status)
	}
	if a := post(t, strings.TrimSuffix(url, "/enrich")+"/other", nil, "a"); a.status != 404 {
		t.Errorf("other path: %d, want 404", a.status)
	}
	stop()
	stop() // idempotent
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(`{"records":[]}`))
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Error("still serving after stop")
	}
}

// BenchmarkHandler measures the simulator's own cost per record (latency scaled away), 25
// records per request, from parallel clients.
func BenchmarkHandler(b *testing.B) {
	s := New(Config{TimeScale: 1e9})
	h := s.Handler()
	var body bytes.Buffer
	body.WriteString(`{"records":[`)
	for i := range 25 {
		if i > 0 {
			body.WriteByte(',')
		}
		fmt.Fprintf(&body, `{"id":%q,"name":"Contoso","websiteurl":"https://contoso.example"}`, AccountIDForTest(i))
	}
	body.WriteString(`]}`)
	payload := body.Bytes()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/enrich", bytes.NewReader(payload)))
			if w.Code != 200 {
				b.Fatal(w.Code)
			}
		}
	})
	b.ReportMetric(float64(b.N*25)/b.Elapsed().Seconds(), "records/s")
}

// TestQueueingMode: above MaxConcurrency requests wait their turn (so they take at least two
// service times), up to QueueDepth of them; one more is refused at once.
func TestQueueingMode(t *testing.T) {
	s, url := serve(t, Config{MaxConcurrency: 2, QueueDepth: 2, QueueTimeout: 30 * time.Second, TimeScale: 10,
		BaseLatency: 3 * time.Second}) // 300 ms each
	var wg sync.WaitGroup
	answers := make([]answer, 5)
	took := make([]time.Duration, 5)
	for i := range answers {
		wg.Go(func() {
			start := time.Now()
			answers[i] = post(t, url, nil, AccountIDForTest(i))
			took[i] = time.Since(start)
		})
	}
	wg.Wait()
	ok, throttled, slow := 0, 0, 0
	for i, a := range answers {
		switch a.status {
		case http.StatusOK:
			ok++
			if took[i] >= 600*time.Millisecond {
				slow++ // waited for a slot, then was served
			}
		case http.StatusTooManyRequests:
			throttled++
		default:
			t.Errorf("answer %d: %s", a.status, a.body)
		}
	}
	c := s.Counters()
	if ok != 4 || throttled != 1 || slow < 2 || c.PeakServing != 2 || c.Queued != 0 {
		t.Errorf("%d ok (%d after queueing), %d throttled, counters %+v; want 4 (2), 1, peak serving 2", ok, slow, throttled, c)
	}
}

func TestQueueTimeout(t *testing.T) {
	s, url := serve(t, Config{MaxConcurrency: 1, QueueDepth: 5, QueueTimeout: time.Second, TimeScale: 10,
		BaseLatency: 50 * time.Second}) // 5 s each; the queue gives up after 100 ms
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { // holds the only slot
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(`{"records":[{"id":"a"}]}`))
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for s.Counters().PeakServing == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if a := post(t, url, nil, "b"); a.status != http.StatusTooManyRequests || a.retryAfter != "0.1" {
		t.Errorf("queued past the timeout: %d, Retry-After %q; want 429 and 0.1", a.status, a.retryAfter)
	}
}
