package enrich

import (
	"context"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

func TestParseQuota(t *testing.T) {
	now := time.Unix(1_750_000_000, 0)
	for _, tt := range []struct {
		name      string
		h         map[string]string
		remaining int64
		hasRem    bool
		reset     time.Duration
		hasReset  bool
		rps       float64
	}{
		{"none", nil, 0, false, 0, false, 0},
		{"draft -07+ structured", map[string]string{"RateLimit": `"default";r=0;t=30`, "RateLimit-Policy": `"default";q=100;w=60`},
			0, true, 30 * time.Second, true, 100.0 / 60},
		{"draft -07+ several items: least remaining binds", map[string]string{"RateLimit": `"hour";r=900;t=3000, "burst";r=2;t=1`,
			"RateLimit-Policy": `"hour";q=1000;w=3600, "burst";q=10;w=1`}, 2, true, time.Second, true, 1000.0 / 3600},
		{"draft -05/-06 dictionary", map[string]string{"RateLimit": "limit=100, remaining=5, reset=12", "RateLimit-Policy": "100;w=10"},
			5, true, 12 * time.Second, true, 10},
		{"draft -03/-04 separate fields", map[string]string{"RateLimit-Remaining": "7", "RateLimit-Reset": "2.5"},
			7, true, 2500 * time.Millisecond, true, 0},
		{"X- delta seconds", map[string]string{"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "20"},
			0, true, 20 * time.Second, true, 0},
		{"X- epoch seconds", map[string]string{"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": strconv.FormatInt(now.Unix()+45, 10)},
			0, true, 45 * time.Second, true, 0},
		{"X- epoch milliseconds", map[string]string{"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": strconv.FormatInt(now.UnixMilli()+1500, 10)},
			0, true, 1500 * time.Millisecond, true, 0},
		{"X- epoch in the past", map[string]string{"X-RateLimit-Reset": strconv.FormatInt(now.Unix()-5, 10)}, 0, false, 0, true, 0},
		{"epoch far ahead is capped", map[string]string{"X-RateLimit-Reset": strconv.FormatInt(now.Unix()+86400, 10)},
			0, false, maxRetryAfter, true, 0},
		{"delta far ahead is capped", map[string]string{"RateLimit-Reset": "100000"}, 0, false, maxRetryAfter, true, 0},
		{"garbage ignored", map[string]string{"X-RateLimit-Remaining": "-3", "X-RateLimit-Reset": "soon", "RateLimit": "r=;t=x",
			"RateLimit-Policy": `"p";q=0;w=10, "b";q=5;w=1;qu="content-bytes"`}, 0, false, 0, false, 0},
		{"structured wins over X-", map[string]string{"RateLimit": `"d";r=4;t=3`, "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "60"},
			4, true, 3 * time.Second, true, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			for k, v := range tt.h {
				h.Set(k, v)
			}
			q := parseQuota(h, now)
			if q.remaining != tt.remaining || q.hasRemaining != tt.hasRem || q.reset != tt.reset || q.hasReset != tt.hasReset ||
				(q.rps-tt.rps) > 1e-9 || (tt.rps-q.rps) > 1e-9 {
				t.Errorf("got %+v, want remaining %d (%v), reset %s (%v), rps %g", q, tt.remaining, tt.hasRem, tt.reset, tt.hasReset, tt.rps)
			}
		})
	}
}

// TestQuotaUsedUpHoldsRequests: an answer that says the quota is used up holds every request of
// the client until the reset, and a 429 without Retry-After waits for the RateLimit reset.
func TestQuotaUsedUpHoldsRequests(t *testing.T) {
	var calls atomic.Int64
	var first, second atomic.Int64 // arrival times (ns)
	srv := fakeServer(t, func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		switch n {
		case 1:
			first.Store(time.Now().UnixNano())
			w.Header().Set("RateLimit", `"default";r=0;t=0.3`)
			w.WriteHeader(http.StatusTooManyRequests)
			return
		case 2:
			second.Store(time.Now().UnixNano())
		}
		answerAll(w, r)
	})
	cfg := testConfig(srv.URL)
	cfg.BatchSize = 1
	c := newClient(t, cfg)
	recs := records(1)
	res, err := c.Enrich(context.Background(), recs)
	if err != nil {
		t.Fatal(err)
	}
	requireAllOK(t, recs, res)
	if gap := time.Duration(second.Load() - first.Load()); gap < 250*time.Millisecond {
		t.Errorf("retried %s after a 429 whose RateLimit reset was 0.3s", gap)
	}
	if st := c.Stats(); st.Throttled != 1 || st.Requests != 2 {
		t.Errorf("stats %+v, want 1 throttled of 2 requests", st)
	}
}

func TestPolicySetsThePace(t *testing.T) {
	srv := fakeServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("RateLimit-Policy", `"default";q=20;w=1`)
		answerAll(w, r)
	})
	cfg := testConfig(srv.URL)
	cfg.BatchSize = 1
	c := newClient(t, cfg)
	if _, err := c.Enrich(context.Background(), records(1)); err != nil {
		t.Fatal(err)
	}
	if got := float64(c.gate.rate.Limit()); got != 20 {
		t.Errorf("pace %g requests/s after a policy of 20 per second", got)
	}
	cfg.RPS = 5 // the setting stays the upper bound
	c = newClient(t, cfg)
	if _, err := c.Enrich(context.Background(), records(1)); err != nil {
		t.Fatal(err)
	}
	if got := float64(c.gate.rate.Limit()); got != 5 {
		t.Errorf("pace %g requests/s with ENRICHMENT_RPS 5 and a policy of 20", got)
	}
}
