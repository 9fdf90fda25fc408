package enrich

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"sync"
	"testing"
	"time"

	"dvbulk/internal/enrich/enrichsim"
)

func TestEnrichAgainstSimulator(t *testing.T) {
	sim, url := startSim(t, enrichsim.Config{})
	cfg := testConfig(url)
	cfg.Concurrency = 4
	c := newClient(t, cfg)
	recs := records(260)
	res, err := c.Enrich(context.Background(), recs)
	if err != nil {
		t.Fatal(err)
	}
	requireAllOK(t, recs, res)
	for i, r := range res {
		want := enrichsim.Truth(r.ID)
		n, ok := r.Fields["numberofemployees"].(json.Number)
		if !ok || n.String() != fmt.Sprint(want["numberofemployees"]) {
			t.Fatalf("result %d: numberofemployees %#v, want json.Number %v", i, r.Fields["numberofemployees"], want["numberofemployees"])
		}
		if _, err := n.Int64(); err != nil {
			t.Fatalf("result %d: integer did not survive decoding: %v", i, err)
		}
		rev, _ := r.Fields["revenue"].(json.Number).Float64()
		if rev != want["revenue"] || fmt.Sprint(r.Fields["industrycode"]) != fmt.Sprint(want["industrycode"]) ||
			r.Fields["description"] != want["description"] || len(r.Fields) != len(want) {
			t.Fatalf("result %d: fields %v, want %v", i, r.Fields, want)
		}
	}
	sc, st := sim.Counters(), c.Stats()
	if sc.Requests != 11 || st.Requests != 11 || sc.Records != 260 || st.Records != 260 {
		t.Errorf("sim saw %d requests / %d records, client sent %d / %d; want ceil(260/25)=11 / 260",
			sc.Requests, sc.Records, st.Requests, st.Records)
	}
	if st.Enriched != 260 || st.Failures != 0 || st.Retries != 0 || sc.Throttled != 0 {
		t.Errorf("stats %+v, sim %+v: want 260 enriched and nothing else", st, sc)
	}
	if sc.PeakConcurrency > 4 || st.PeakInFlight > 4 {
		t.Errorf("peak concurrency sim %d / client %d, above the client's 4", sc.PeakConcurrency, st.PeakInFlight)
	}
	if sc.DuplicateCalls != 0 || sim.CallsByID(recs[7].ID) != 1 {
		t.Errorf("ids asked about more than once: %d", sc.DuplicateCalls)
	}
}

// TestRequestShape pins the wire format: method, headers and body, with input columns in name
// order and the record's id winning over an input column called "id".
func TestRequestShape(t *testing.T) {
	var mu sync.Mutex
	var got []*http.Request
	var bodies []string
	srv := fakeServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got, bodies = append(got, r), append(bodies, string(b))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"results":[{"id":"A1","fields":{"n":1}},{"id":"b2","fields":null}]}`)
	})
	cfg := testConfig(srv.URL + "/enrich?v=1")
	c := newClient(t, cfg)
	recs := []Record{
		{ID: "a1", Input: map[string]any{"websiteurl": "https://contoso.com", "name": "Contoso", "id": "spoof"}},
		{ID: "b2", Input: map[string]any{"name": nil}},
	}
	res, err := c.Enrich(context.Background(), recs)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Fatalf("%d requests, want 1", len(got))
	}
	r := got[0]
	if r.Method != http.MethodPost || r.URL.Path != "/enrich" || r.URL.RawQuery != "v=1" ||
		r.Header.Get("Content-Type") != "application/json" {
		t.Errorf("request %s %s, Content-Type %q", r.Method, r.URL, r.Header.Get("Content-Type"))
	}
	want := `{"records":[{"id":"a1","name":"Contoso","websiteurl":"https://contoso.com"},{"id":"b2","name":null}]}`
	if bodies[0] != want {
		t.Errorf("body\n%s\nwant\n%s", bodies[0], want)
	}
	// Ids match case-insensitively (GUIDs); fields null is a success with nothing to write.
	if res[0].Err != "" || res[0].Fields["n"] != json.Number("1") || res[1].Err != "" || res[1].Fields == nil || len(res[1].Fields) != 0 {
		t.Errorf("results %+v", res)
	}
}

func TestBatching(t *testing.T) {
	for _, tt := range []struct{ n, batch, want int }{
		{0, 25, 0}, {1, 25, 1}, {24, 25, 1}, {25, 25, 1}, {26, 25, 2}, {260, 25, 11}, {7, 1, 7}, {10, 3, 4},
	} {
		t.Run(fmt.Sprintf("%d records by %d", tt.n, tt.batch), func(t *testing.T) {
			sim, url := startSim(t, enrichsim.Config{TimeScale: 1000})
			cfg := testConfig(url)
			cfg.BatchSize = tt.batch
			c := newClient(t, cfg)
			recs := records(tt.n)
			res, err := c.Enrich(context.Background(), recs)
			if err != nil {
				t.Fatal(err)
			}
			requireAllOK(t, recs, res)
			if got := sim.Counters().Requests; got != int64(tt.want) {
				t.Errorf("%d requests, want %d", got, tt.want)
			}
		})
	}
}

// TestConcurrencySharedByCallers: three callers on one client together never exceed its
// Concurrency, and do use it.
func TestConcurrencySharedByCallers(t *testing.T) {
	sim, url := startSim(t, enrichsim.Config{TimeScale: 10}) // 120 ms + 2 ms/record, /10
	cfg := testConfig(url)
	cfg.BatchSize, cfg.Concurrency = 2, 3
	c := newClient(t, cfg)
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			recs := records(24)
			res, err := c.Enrich(context.Background(), recs)
			if err != nil {
				t.Error(err)
				return
			}
			for _, r := range res {
				if r.Err != "" {
					t.Errorf("%s: %s", r.ID, r.Err)
				}
			}
		})
	}
	wg.Wait()
	sc := sim.Counters()
	if sc.PeakConcurrency > 3 || c.Stats().PeakInFlight > 3 {
		t.Errorf("peak in flight: sim %d, client %d; limit 3", sc.PeakConcurrency, c.Stats().PeakInFlight)
	}
	if sc.PeakConcurrency < 2 {
		t.Errorf("peak in flight %d: the callers were serialised", sc.PeakConcurrency)
	}
	if sc.Requests != 36 || sc.Throttled != 0 {
		t.Errorf("%d requests (%d throttled), want 3*24/2 = 36", sc.Requests, sc.Throttled)
	}
}

// TestRPSLimit counts arrivals: with RPS 20 (burst 2), 30 requests cannot arrive in less than
// (30-2)/20 s, and no one-second window holds more than 20 + burst.
func TestRPSLimit(t *testing.T) {
	var mu sync.Mutex
	var at []time.Time
	srv := fakeServer(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		at = append(at, time.Now())
		mu.Unlock()
		answerAll(w, r)
	})
	cfg := testConfig(srv.URL)
	cfg.BatchSize, cfg.Concurrency, cfg.RPS = 1, 8, 20
	c := newClient(t, cfg)
	recs := records(30)
	res, err := c.Enrich(context.Background(), recs)
	if err != nil {
		t.Fatal(err)
	}
	requireAllOK(t, recs, res)
	if len(at) != 30 {
		t.Fatalf("%d arrivals, want 30", len(at))
	}
	if span := at[len(at)-1].Sub(at[0]); span < 1300*time.Millisecond {
		t.Errorf("30 requests arrived within %s; at 20/s they need at least 1.4 s", span)
	}
	for i := range at {
		n := 0
		for j := i; j < len(at) && at[j].Sub(at[i]) < time.Second; j++ {
			n++
		}
		if n > 23 {
			t.Errorf("%d requests within one second from arrival %d; limit 20/s + burst 2", n, i)
		}
	}
}

func TestCancel(t *testing.T) {
	sim, url := startSim(t, enrichsim.Config{TimeScale: 1000})
	sim.Faults().Slow(10 * time.Second)
	cfg := testConfig(url)
	cfg.BatchSize, cfg.Concurrency = 5, 2
	c := newClient(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	recs := records(40)
	start := time.Now()
	res, err := c.Enrich(ctx, recs)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v, want the context's deadline", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Enrich returned %s after the deadline", took)
	}
	if len(res) != len(recs) {
		t.Fatalf("%d results for %d records", len(res), len(recs))
	}
	for i, r := range res {
		if r.ID != recs[i].ID || r.Err != ReasonCanceled || !r.Retryable {
			t.Fatalf("result %d: %+v, want retryable %q", i, r, ReasonCanceled)
		}
	}
	if sim.Counters().Requests > 2 {
		t.Errorf("%d requests started; only 2 may be in flight and none may start after cancellation", sim.Counters().Requests)
	}
}

// TestEncodeFailureIsPerRecord: a record that cannot be sent fails alone.
func TestEncodeFailureIsPerRecord(t *testing.T) {
	_, url := startSim(t, enrichsim.Config{TimeScale: 1000})
	c := newClient(t, testConfig(url))
	recs := records(4)
	recs[1].Input["name"] = math.NaN()
	recs[2].ID = ""
	res, err := c.Enrich(context.Background(), recs)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		bad := i == 1 || i == 2
		if (r.Err != "") != bad || r.Retryable {
			t.Errorf("result %d: %+v (bad input: %v)", i, r, bad)
		}
	}
	if st := c.Stats(); st.Requests != 1 || st.Records != 2 || st.Failures != 2 {
		t.Errorf("stats %+v, want 1 request carrying the 2 good records", st)
	}
}

// TestAdaptsToServiceCapacity: two clients with the default ceiling share a queueing service
// of 16 slots they are not told about. Together they fill it, every record is answered and
// throttling stays rare. (Peak and counts are asserted, not timings.)
func TestAdaptsToServiceCapacity(t *testing.T) {
	sim, url := startSim(t, enrichsim.Config{MaxConcurrency: 16, QueueDepth: 16, MaxRecordsPerRequest: 10, TimeScale: 4})
	var wg sync.WaitGroup
	clients := make([]*Client, 2)
	for i := range clients {
		cfg := testConfig(url)
		cfg.BatchSize, cfg.Concurrency = 50, 64
		clients[i] = newClient(t, cfg)
		wg.Go(func() {
			recs := records(2000)
			res, err := clients[i].Enrich(context.Background(), recs)
			if err != nil {
				t.Error(err)
				return
			}
			requireAllOK(t, recs, res)
		})
	}
	wg.Wait()
	sc := sim.Counters()
	if sc.PeakServing < 12 {
		t.Errorf("the service saw at most %d of its 16 slots busy", sc.PeakServing)
	}
	if sc.Throttled*20 > sc.Requests {
		t.Errorf("%d of %d requests throttled, want under 5%%", sc.Throttled, sc.Requests)
	}
	for i, c := range clients {
		if st := c.Stats(); st.BatchSize != 10 || st.Limit > 64 {
			t.Errorf("client %d: %+v, want 10 records per request learned and the limit within the ceiling", i, st)
		}
	}
}
