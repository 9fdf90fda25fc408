package enrich

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"dvbulk/internal/enrich/enrichsim"
)

// testConfig is a Config with short backoffs so that retry tests stay fast.
func testConfig(url string) Config {
	return Config{URL: url, BatchSize: 25, Concurrency: 8, Timeout: 2 * time.Second, MaxRetries: 4,
		BackoffBase: time.Millisecond, BackoffMax: 10 * time.Millisecond}
}

func newClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// startSim starts a simulator whose latencies are scaled down 50 times.
func startSim(t *testing.T, cfg enrichsim.Config) (*enrichsim.Sim, string) {
	t.Helper()
	if cfg.TimeScale == 0 {
		cfg.TimeScale = 50
	}
	sim := enrichsim.New(cfg)
	url, stop := sim.Start()
	t.Cleanup(stop)
	return sim, url
}

func records(n int) []Record {
	out := make([]Record, n)
	for i := range out {
		out[i] = Record{ID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i+1),
			Input: map[string]any{"name": fmt.Sprint("Account ", i), "websiteurl": fmt.Sprintf("https://a%d.example", i)}}
	}
	return out
}

type wireRequest struct {
	Records []map[string]any `json:"records"`
}

// answerAll writes a 200 with a result for every record of the request.
func answerAll(w http.ResponseWriter, r *http.Request) {
	var req wireRequest
	_ = decodeJSON(r, &req)
	writeResults(w, req)
}

func fakeServer(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// requireAllOK fails the test unless every result succeeded and matches its record.
func requireAllOK(t *testing.T, recs []Record, res []Result) {
	t.Helper()
	if len(res) != len(recs) {
		t.Fatalf("%d results for %d records", len(res), len(recs))
	}
	for i, r := range res {
		if r.ID != recs[i].ID || r.Err != "" || r.Fields == nil {
			t.Fatalf("result %d: %+v", i, r)
		}
	}
}

func decodeJSON(r *http.Request, v any) error { return json.NewDecoder(r.Body).Decode(v) }

// writeResults answers every record of req with a description.
func writeResults(w http.ResponseWriter, req wireRequest) {
	out := make([]map[string]any, 0, len(req.Records))
	for _, rec := range req.Records {
		out = append(out, map[string]any{"id": rec["id"], "fields": map[string]any{"description": "ok"}})
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"results": out})
}

func jsonNumber(s string) json.Number { return json.Number(s) }

// refuseIf answers every record of a request, unless one of them is bad: then the whole request
// gets status and body. It counts requests in calls.
func refuseIf(calls *atomic.Int64, status int, body string, bad func(rec map[string]any) bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		var req wireRequest
		if err := decodeJSON(r, &req); err == nil {
			for _, rec := range req.Records {
				if bad(rec) {
					w.WriteHeader(status)
					fmt.Fprint(w, body)
					return
				}
			}
		}
		writeResults(w, req)
	}
}
