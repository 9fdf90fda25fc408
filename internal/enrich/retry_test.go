package enrich

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"dvbulk/internal/ctxutil"
	"dvbulk/internal/enrich/enrichsim"
)

// TestRetryAfterHoldsEveryRequest: once a 429/503 with Retry-After has reached the client, no
// request of that client reaches the service until the wait is over; then all succeed.
func TestRetryAfterHoldsEveryRequest(t *testing.T) {
	for _, status := range []int{http.StatusTooManyRequests, http.StatusServiceUnavailable} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			const window = 300 * time.Millisecond
			const grace = 50 * time.Millisecond // requests already on the wire when the 429 left
			var mu sync.Mutex
			var until, firstAnswered time.Time
			var early, throttled int
			srv := fakeServer(t, func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				now := time.Now()
				if !firstAnswered.IsZero() && now.After(firstAnswered.Add(grace)) && now.Before(until) {
					early++
				}
				if until.IsZero() {
					until = now.Add(window)
				}
				if now.Before(until) {
					throttled++
					if firstAnswered.IsZero() {
						firstAnswered = now
					}
					mu.Unlock()
					w.Header().Set("Retry-After", fmt.Sprintf("%.3f", until.Sub(now).Seconds()))
					w.WriteHeader(status)
					return
				}
				mu.Unlock()
				answerAll(w, r)
			})
			cfg := testConfig(srv.URL)
			cfg.BatchSize, cfg.Concurrency = 1, 4
			c := newClient(t, cfg)
			recs := records(12)
			start := time.Now()
			res, err := c.Enrich(context.Background(), recs)
			if err != nil {
				t.Fatal(err)
			}
			requireAllOK(t, recs, res)
			if early != 0 {
				t.Errorf("%d requests arrived inside the Retry-After window", early)
			}
			if took := time.Since(start); took < window {
				t.Errorf("finished after %s, before the %s Retry-After", took, window)
			}
			if st := c.Stats(); st.Throttled != int64(throttled) || st.Retries != int64(throttled) {
				t.Errorf("stats %+v, want %d throttled and as many retries", st, throttled)
			}
		})
	}
}

// TestThrottleBudget: waits the service asks for do not use up MaxRetries; a 429 without
// Retry-After is an ordinary transient failure that does.
func TestThrottleBudget(t *testing.T) {
	for _, tt := range []struct {
		name       string
		retryAfter string
		wantOK     bool
		wantCalls  int64
	}{
		{"with Retry-After", "0.01", true, 4},
		{"without Retry-After", "", false, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var calls atomic.Int64
			srv := fakeServer(t, func(w http.ResponseWriter, r *http.Request) {
				if calls.Add(1) <= 3 {
					if tt.retryAfter != "" {
						w.Header().Set("Retry-After", tt.retryAfter)
					}
					w.WriteHeader(http.StatusTooManyRequests)
					return
				}
				answerAll(w, r)
			})
			cfg := testConfig(srv.URL)
			cfg.MaxRetries = 1
			c := newClient(t, cfg)
			res, _ := c.Enrich(context.Background(), records(1))
			if ok := res[0].Err == ""; ok != tt.wantOK || calls.Load() != tt.wantCalls {
				t.Fatalf("result %+v after %d calls; want ok=%v after %d", res[0], calls.Load(), tt.wantOK, tt.wantCalls)
			}
			if !tt.wantOK && (!res[0].Retryable || !strings.Contains(res[0].Err, "429")) {
				t.Errorf("result %+v, want a retryable failure naming the 429", res[0])
			}
		})
	}
}

func TestSimulatorThrottle(t *testing.T) {
	sim, url := startSim(t, enrichsim.Config{TimeScale: 1000})
	sim.Faults().Throttle(200 * time.Millisecond)
	c := newClient(t, testConfig(url))
	recs := records(50)
	res, err := c.Enrich(context.Background(), recs)
	if err != nil {
		t.Fatal(err)
	}
	requireAllOK(t, recs, res)
	if sc := sim.Counters(); sc.Throttled == 0 || sc.Throttled > 4 {
		t.Errorf("%d throttled answers: the client should have paused after the first ones", sc.Throttled)
	}
}

func TestServerErrorsThenSuccess(t *testing.T) {
	sim, url := startSim(t, enrichsim.Config{})
	sim.Faults().ServerErrors.Store(2)
	cfg := testConfig(url)
	cfg.BatchSize = 5
	c := newClient(t, cfg)
	recs := records(5)
	res, err := c.Enrich(context.Background(), recs)
	if err != nil {
		t.Fatal(err)
	}
	requireAllOK(t, recs, res)
	if st, sc := c.Stats(), sim.Counters(); st.Retries != 2 || sc.Requests != 3 || sc.Errors != 2 {
		t.Errorf("client %+v, sim %+v: want 2 retries over 3 requests", st, sc)
	}
}

func TestRetryBudgetSpent(t *testing.T) {
	sim, url := startSim(t, enrichsim.Config{})
	sim.Faults().ServerErrors.Store(100)
	cfg := testConfig(url)
	cfg.BatchSize, cfg.MaxRetries = 3, 2
	c := newClient(t, cfg)
	res, err := c.Enrich(context.Background(), records(3))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if !r.Retryable || !strings.Contains(r.Err, "500 Internal Server Error") || !strings.Contains(r.Err, "after 3 attempts") {
			t.Errorf("result %+v, want retryable, naming the 500 and the 3 attempts", r)
		}
	}
	if n := sim.Counters().Requests; n != 3 {
		t.Errorf("%d requests, want 1 + MaxRetries 2", n)
	}
}

func TestTimeoutRetried(t *testing.T) {
	for _, tt := range []struct {
		name   string
		hangs  int64
		wantOK bool
	}{
		{"then success", 1, true},
		{"budget spent", 100, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var calls atomic.Int64
			srv := fakeServer(t, func(w http.ResponseWriter, r *http.Request) {
				if calls.Add(1) <= tt.hangs {
					// With the body read, the server notices the client hanging up.
					_, _ = io.Copy(io.Discard, r.Body)
					select { // hang until the client gives up
					case <-r.Context().Done():
					case <-time.After(5 * time.Second):
					}
					return
				}
				answerAll(w, r)
			})
			cfg := testConfig(srv.URL)
			cfg.Timeout, cfg.MaxRetries = 100*time.Millisecond, 2
			c := newClient(t, cfg)
			res, err := c.Enrich(context.Background(), records(1))
			if err != nil {
				t.Fatal(err)
			}
			if tt.wantOK {
				if res[0].Err != "" || calls.Load() != 2 || c.Stats().Retries != 1 {
					t.Errorf("result %+v after %d calls, want success on the second", res[0], calls.Load())
				}
				return
			}
			if !res[0].Retryable || !strings.Contains(res[0].Err, "timed out after 100ms") || calls.Load() != 3 {
				t.Errorf("result %+v after %d calls, want a retryable timeout after 3", res[0], calls.Load())
			}
		})
	}
}

// TestNetworkErrorRetried: a refused connection is transient, and its reason does not repeat
// the URL (whose query may hold a secret).
func TestNetworkErrorRetried(t *testing.T) {
	srv := fakeServer(t, answerAll)
	url := srv.URL + "/enrich?code=secret-in-query"
	srv.Close()
	cfg := testConfig(url)
	cfg.MaxRetries = 1
	c := newClient(t, cfg)
	res, _ := c.Enrich(context.Background(), records(1))
	if !res[0].Retryable || !strings.Contains(res[0].Err, "enrichment request failed") {
		t.Errorf("result %+v, want a retryable network failure", res[0])
	}
	if strings.Contains(res[0].Err, "secret-in-query") {
		t.Errorf("reason %q repeats the URL's query", res[0].Err)
	}
	if st := c.Stats(); st.Requests != 2 || st.Retries != 1 {
		t.Errorf("stats %+v, want 2 attempts", st)
	}
}

// TestClientErrorFailsOnlyThatRequest: a 4xx fails the records of its request, once, with a
// one-line, size-limited excerpt of the body; other requests are unaffected.
// TestClientErrorFailsOnlyThatRequest: a 4xx other than 400/413 fails the records of that
// request, with status and a short excerpt, and is neither retried nor split.
func TestClientErrorFailsOnlyThatRequest(t *testing.T) {
	var calls atomic.Int64
	srv := fakeServer(t, refuseIf(&calls, http.StatusUnprocessableEntity,
		"{\"error\":\"name\n\tis invalid\",\"detail\":\""+strings.Repeat("x", 5000)+"\"}",
		func(rec map[string]any) bool { return rec["id"] == "bad" }))
	cfg := testConfig(srv.URL)
	cfg.BatchSize = 2
	c := newClient(t, cfg)
	recs := records(6)
	recs[2].ID = "bad"
	res, err := c.Enrich(context.Background(), recs)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if i != 2 && i != 3 {
			if r.Err != "" {
				t.Errorf("record %d of another request failed: %s", i, r.Err)
			}
			continue
		}
		if r.Retryable || !strings.HasPrefix(r.Err, `enrichment service returned 422 Unprocessable Entity: {"error":"name is invalid"`) {
			t.Errorf("record %d: %+v, want a permanent failure with status and excerpt", i, r)
		}
		if strings.ContainsAny(r.Err, "\n\t") || len([]rune(r.Err)) > 300 {
			t.Errorf("record %d: reason not a short single line (%d runes)", i, len([]rune(r.Err)))
		}
	}
	if calls.Load() != 3 {
		t.Errorf("%d requests, want 3 (a 4xx is not retried)", calls.Load())
	}
}

// TestBadRecordIsIsolated: a 400 on 50 records because of one of them is retried in halves
// until the bad record is alone: 49 answers, one failure with the service's reason, and the
// batch size is not shrunk for it.
func TestBadRecordIsIsolated(t *testing.T) {
	for _, status := range []int{http.StatusBadRequest, http.StatusRequestEntityTooLarge} {
		t.Run(strconv.Itoa(status), func(t *testing.T) {
			var calls atomic.Int64
			srv := fakeServer(t, refuseIf(&calls, status, `{"error":"websiteurl is not a URL"}`,
				func(rec map[string]any) bool { return rec["name"] == "Account 17" }))
			cfg := testConfig(srv.URL)
			cfg.BatchSize = 50
			c := newClient(t, cfg)
			recs := records(50)
			res, err := c.Enrich(context.Background(), recs)
			if err != nil {
				t.Fatal(err)
			}
			failed := 0
			for i, r := range res {
				switch {
				case i == 17:
					failed++
					if r.Retryable || !strings.Contains(r.Err, "websiteurl is not a URL") || !strings.Contains(r.Err, strconv.Itoa(status)) {
						t.Errorf("bad record: %+v, want a permanent failure with the service's reason", r)
					}
				case r.Err != "" || r.Fields == nil || r.ID != recs[i].ID:
					t.Errorf("record %d: %+v, want its answer", i, r)
				}
			}
			st := c.Stats()
			// 50 → 25 → 13 → 7 → 4 → 2 → 1: six refused requests, each split, plus the answered halves.
			if failed != 1 || st.Enriched != 49 || st.Failures != 1 || calls.Load() != 13 || st.Splits != 6 {
				t.Errorf("%d failed, stats %+v, %d requests; want 1, 49 enriched, 13 requests, 6 splits", failed, st, calls.Load())
			}
			if st.BatchSize != 50 {
				t.Errorf("batch size %d after isolating a bad record, want 50 still", st.BatchSize)
			}
		})
	}
}

// TestServiceLimitIsLearned: against a service that takes at most 10 records, the client (ceiling
// 50) ends up sending 10 per request, and every record is answered.
func TestServiceLimitIsLearned(t *testing.T) {
	for _, limit := range []int{10, 1} {
		t.Run(strconv.Itoa(limit), func(t *testing.T) {
			sim, url := startSim(t, enrichsim.Config{MaxRecordsPerRequest: limit})
			cfg := testConfig(url)
			cfg.BatchSize, cfg.Concurrency, cfg.FixedConcurrency = 50, 2, true
			c := newClient(t, cfg)
			for range 3 { // one call learns, the next ones use what was learned
				recs := records(120)
				res, err := c.Enrich(context.Background(), recs)
				if err != nil {
					t.Fatal(err)
				}
				requireAllOK(t, recs, res)
			}
			if got := c.Stats().BatchSize; got != limit {
				t.Errorf("learned %d records per request, want %d", got, limit)
			}
			sim.ResetCounters()
			recs := records(100)
			res, _ := c.Enrich(context.Background(), recs)
			requireAllOK(t, recs, res)
			if sc := sim.Counters(); sc.Rejected != 0 || sc.Requests != int64(100/limit) {
				t.Errorf("after learning: %d requests, %d refused; want %d and 0", sc.Requests, sc.Rejected, 100/limit)
			}
		})
	}
}

func TestMalformedResponse(t *testing.T) {
	t.Run("once, then fine", func(t *testing.T) {
		sim, url := startSim(t, enrichsim.Config{})
		sim.Faults().Malformed.Store(1)
		c := newClient(t, testConfig(url))
		recs := records(3)
		res, _ := c.Enrich(context.Background(), recs)
		requireAllOK(t, recs, res)
		if c.Stats().Retries != 1 || sim.Counters().Requests != 2 {
			t.Errorf("stats %+v, want one retry", c.Stats())
		}
	})
	t.Run("always", func(t *testing.T) {
		sim, url := startSim(t, enrichsim.Config{})
		sim.Faults().Malformed.Store(100)
		cfg := testConfig(url)
		cfg.MaxRetries = 2
		c := newClient(t, cfg)
		res, _ := c.Enrich(context.Background(), records(3))
		for _, r := range res {
			if !r.Retryable || !strings.HasPrefix(r.Err, MalformedPrefix) {
				t.Errorf("result %+v, want retryable %q...", r, MalformedPrefix)
			}
		}
		if sim.Counters().Requests != 3 {
			t.Errorf("%d requests, want 3", sim.Counters().Requests)
		}
	})
}

func TestPerRecordAnswers(t *testing.T) {
	sim, url := startSim(t, enrichsim.Config{})
	recs := records(10)
	f := sim.Faults()
	f.NoMatch(recs[1].ID)
	f.Missing(recs[2].ID)
	f.WrongType(recs[3].ID)
	f.ExtraFields(recs[4].ID)
	f.Duplicate(recs[5].ID)
	f.UnknownIDs.Store(3)
	cfg := testConfig(url)
	cfg.BatchSize = 4 // three requests, each carrying an unknown id
	c := newClient(t, cfg)
	res, err := c.Enrich(context.Background(), recs)
	if err != nil {
		t.Fatal(err)
	}
	if res[1].Err != "no match" || res[1].Retryable || res[1].Fields != nil {
		t.Errorf("no match: %+v", res[1])
	}
	if res[2].Err != ReasonMissing || res[2].Retryable {
		t.Errorf("missing: %+v", res[2])
	}
	// Validation is the caller's: wrong types and extra fields pass through untouched.
	want := enrichsim.Truth(recs[3].ID)
	if got := res[3].Fields["numberofemployees"]; res[3].Err != "" || got != fmt.Sprintf("about %v", want["numberofemployees"]) {
		t.Errorf("wrong type: %+v", res[3])
	}
	if f := res[4].Fields; res[4].Err != "" || f["ownerid"] == nil || f["_parentaccountid_value"] == nil || f["statecode"] != jsonNumber("1") {
		t.Errorf("extra fields: %+v", res[4])
	}
	if res[5].Err != "" || res[5].Fields["description"] != enrichsim.Truth(recs[5].ID)["description"] {
		t.Errorf("duplicate: %+v, want the first answer", res[5])
	}
	for _, i := range []int{0, 6, 7, 8, 9} {
		if res[i].Err != "" {
			t.Errorf("record %d: %s", i, res[i].Err)
		}
	}
	st := c.Stats()
	if st.UnknownIDs != 3 || st.DuplicateResults != 1 || st.Failures != 2 || st.Enriched != 8 {
		t.Errorf("stats %+v, want 3 unknown ids, 1 duplicate, 2 failures, 8 enriched", st)
	}
}

// After the context's stop closes, a request still waiting for a slot is not sent, while the one on
// the wire finishes and its answer is kept.
func TestStopLetsTheRequestInFlightFinish(t *testing.T) {
	var requests atomic.Int64
	stop := make(chan struct{})
	srv := fakeServer(t, func(w http.ResponseWriter, r *http.Request) {
		if requests.Add(1) == 1 {
			close(stop) // the stop arrives while this request is on the wire
			time.Sleep(100 * time.Millisecond)
		}
		answerAll(w, r)
	})
	cfg := testConfig(srv.URL)
	cfg.BatchSize, cfg.Concurrency = 1, 1
	c := newClient(t, cfg)
	recs := records(2)
	res, err := c.Enrich(ctxutil.WithStop(context.Background(), stop), recs)
	if err == nil {
		t.Error("no error although a record was left unanswered")
	}
	if requests.Load() != 1 {
		t.Errorf("%d requests sent, want 1 (none after the stop)", requests.Load())
	}
	answered, unsent := 0, 0
	for _, r := range res {
		switch {
		case r.Err == "":
			answered++
		case r.Err == ReasonCanceled && r.Retryable:
			unsent++
		}
	}
	if answered != 1 || unsent != 1 {
		t.Errorf("results %+v: want the one in flight answered and the other unfinished", res)
	}
}

// A stop that closes while requests wait out a Retry-After ends the wait at once: nothing more is
// sent, and the records come back unfinished rather than failed.
func TestStopEndsARetryAfterWait(t *testing.T) {
	var requests atomic.Int64
	srv := fakeServer(t, func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		w.Header().Set("Retry-After", "30")
		w.WriteHeader(http.StatusTooManyRequests)
	})
	cfg := testConfig(srv.URL)
	cfg.BatchSize, cfg.Concurrency = 1, 1
	c := newClient(t, cfg)
	stop := make(chan struct{})
	time.AfterFunc(200*time.Millisecond, func() { close(stop) })
	start := time.Now()
	res, err := c.Enrich(ctxutil.WithStop(context.Background(), stop), records(3))
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Enrich returned after %s: the stop did not end the 30 s Retry-After wait", took)
	}
	if err == nil {
		t.Error("no error although every record was left unanswered")
	}
	if n := requests.Load(); n != 1 {
		t.Errorf("%d requests sent, want 1 (the one throttled before the stop)", n)
	}
	for _, r := range res {
		if r.Err != ReasonCanceled || !r.Retryable {
			t.Errorf("result %+v, want unfinished (%s, retryable)", r, ReasonCanceled)
		}
	}
}
