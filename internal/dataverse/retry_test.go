package dataverse

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// scripted answers attempt n with steps[n] (the last step repeats): an HTTP status, or
// "reset" (TCP RST), "close" (connection closed without a response) or "slow" (hangs until the
// client gives up).
type scripted struct {
	mu       sync.Mutex
	steps    []string
	n        int
	bodies   []string
	retryAft string
}

func (s *scripted) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	step := s.steps[min(s.n, len(s.steps)-1)]
	s.n++
	s.bodies = append(s.bodies, string(b))
	s.mu.Unlock()
	switch step {
	case "reset", "close":
		conn, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			panic(err)
		}
		if step == "reset" {
			conn.(*net.TCPConn).SetLinger(0)
		}
		conn.Close()
		return
	case "slow":
		<-r.Context().Done()
		return
	}
	var st int
	fmt.Sscan(step, &st)
	if s.retryAft != "" && (st == 429 || st == 503) {
		w.Header().Set("Retry-After", s.retryAft)
	}
	if st >= 400 {
		writeJSON(w, st, errBody("0x8004ffff", fmt.Sprintf("scripted %d", st)))
		return
	}
	w.WriteHeader(st)
}

func (s *scripted) attempts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

func TestRetryTransientThenSuccess(t *testing.T) {
	cases := []struct {
		name  string
		steps []string
	}{
		{"5xx", []string{"503", "502", "500", "504", "204"}},
		{"reset and close", []string{"reset", "close", "204"}},
		{"timeout", []string{"slow", "204"}},
		{"mixed", []string{"503", "reset", "408", "204"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := &scripted{steps: tc.steps}
			srv := httptest.NewServer(s)
			defer srv.Close()
			c := newTestClient(t, srv.URL, func(cfg *Config) { cfg.RequestTimeout = 200 * time.Millisecond })
			id := testID(1)
			r := c.Patch(ctxT(t), accounts, Update{ID: id, Fields: map[string]any{"name": "x"}}, WriteOptions{})
			if r.Status != Updated {
				t.Fatalf("result %v %v", r.Status, r.Err)
			}
			if got := s.attempts(); got != len(tc.steps) {
				t.Errorf("attempts = %d, want %d", got, len(tc.steps))
			}
			if got := c.Stats().Retries; got != int64(len(tc.steps)-1) {
				t.Errorf("Stats.Retries = %d, want %d", got, len(tc.steps)-1)
			}
			for i, b := range s.bodies {
				if b != `{"name":"x"}` {
					t.Errorf("attempt %d body %q: body not resent intact", i, b)
				}
			}
		})
	}
}

func TestRetryBudgetExhausted(t *testing.T) {
	for _, step := range []string{"503", "reset"} {
		t.Run(step, func(t *testing.T) {
			s := &scripted{steps: []string{step}}
			srv := httptest.NewServer(s)
			defer srv.Close()
			c := newTestClient(t, srv.URL, func(cfg *Config) { cfg.MaxRetries = 2 })
			ids := testIDs(3)
			res, err := c.Update(ctxT(t), accounts, updatesFor(ids, "x"), WriteOptions{Mode: ModeSingle})
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("Update error = %v, want ErrUnavailable", err)
			}
			for i, r := range res {
				if r.Status != Failed || !errors.Is(r.Err, ErrUnavailable) || r.ID != ids[i] {
					t.Errorf("result %d = %+v", i, r)
				}
			}
			if got := s.attempts(); got != 3*3 {
				t.Errorf("attempts = %d, want 9 (3 records x (1 + 2 retries))", got)
			}
			if step == "503" {
				if ae := asAPIError(res[0].Err); ae == nil || ae.Status != 503 {
					t.Errorf("last cause not kept: %v", res[0].Err)
				}
			}
		})
	}
}

func TestNoRetryOnClientErrors(t *testing.T) {
	for _, st := range []int{400, 403, 404, 405, 412, 413} {
		t.Run(fmt.Sprint(st), func(t *testing.T) {
			s := &scripted{steps: []string{fmt.Sprint(st), "204"}}
			srv := httptest.NewServer(s)
			defer srv.Close()
			c := newTestClient(t, srv.URL, nil)
			r := c.Patch(ctxT(t), accounts, Update{ID: testID(1)}, WriteOptions{})
			if ae := asAPIError(r.Err); ae == nil || ae.Status != st || ae.Code != "0x8004ffff" {
				t.Fatalf("result %+v", r)
			}
			if s.attempts() != 1 {
				t.Errorf("attempts = %d, want 1", s.attempts())
			}
		})
	}
}

func Test401RetriedOnceWithFreshToken(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	always := false
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get("Authorization"))
		n := len(seen)
		mu.Unlock()
		if always || n == 1 {
			writeJSON(w, 401, errBody("0x80044153", "ExpiredAuthTicket"))
			return
		}
		w.WriteHeader(204)
	}))
	defer srv.Close()
	cred := &fakeCred{prefix: "tok-"}
	c := newTestClient(t, srv.URL, func(cfg *Config) { cfg.Credential = cred })
	if r := c.Patch(ctxT(t), accounts, Update{ID: testID(1)}, WriteOptions{}); r.Status != Updated {
		t.Fatalf("%+v", r)
	}
	if len(seen) != 2 || seen[0] != "Bearer tok-1" || seen[1] != "Bearer tok-2" {
		t.Fatalf("Authorization headers = %q, want a refreshed token on the retry", seen)
	}
	mu.Lock()
	always, seen = true, nil
	mu.Unlock()
	r := c.Patch(ctxT(t), accounts, Update{ID: testID(1)}, WriteOptions{})
	if ae := asAPIError(r.Err); ae == nil || ae.Status != 401 {
		t.Fatalf("%+v", r)
	}
	if len(seen) != 2 {
		t.Errorf("attempts on persistent 401 = %d, want 2", len(seen))
	}
}

// getter issues one GET through the client (a page of an empty table).
func get(c *Client, t *testing.T) error {
	_, err := c.QueryPage(ctxT(t), Query{Table: accounts}, "")
	return err
}

func TestThrottleStormNothingSentDuringRetryAfter(t *testing.T) {
	const (
		retryAfter = 300 * time.Millisecond
		grace      = 50 * time.Millisecond // requests already on the wire when the 429 left the server
		storms     = 3
	)
	var (
		mu         sync.Mutex
		arrivals   []time.Time
		windows    [][2]time.Time
		total      int
		violations []time.Duration
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := time.Now()
		mu.Lock()
		arrivals = append(arrivals, now)
		total++
		inWindow := false
		for _, win := range windows {
			if now.After(win[0]) && now.Before(win[1]) {
				inWindow = true
				if now.Sub(win[0]) > grace {
					violations = append(violations, now.Sub(win[0]))
				}
			}
		}
		start := !inWindow && len(windows) < storms && total%20 == 0
		if start {
			windows = append(windows, [2]time.Time{now, now.Add(retryAfter)})
		}
		mu.Unlock()
		w.Header().Set("x-ms-dop-hint", "8")
		if inWindow || start {
			w.Header().Set("Retry-After", fmt.Sprintf("%.3f", retryAfter.Seconds()))
			writeJSON(w, 429, errBody("0x80072322", "Number of requests exceeded the limit of 6000 over time window of 300 seconds."))
			return
		}
		time.Sleep(2 * time.Millisecond)
		io.WriteString(w, `{"value":[]}`)
	}))
	defer srv.Close()
	c := newTestClient(t, srv.URL, func(cfg *Config) { cfg.MaxConcurrency = 8 })
	var wg sync.WaitGroup
	var failures atomic.Int32
	for range 16 {
		wg.Go(func() {
			for range 8 {
				if err := get(c, t); err != nil {
					failures.Add(1)
					t.Log(err)
				}
			}
		})
	}
	wg.Wait()
	if failures.Load() != 0 {
		t.Fatalf("%d calls failed", failures.Load())
	}
	mu.Lock()
	defer mu.Unlock()
	if len(windows) != storms {
		t.Fatalf("storms = %d, want %d", len(windows), storms)
	}
	if len(violations) > 0 {
		t.Errorf("%d requests arrived inside a Retry-After window (offsets %v)", len(violations), violations)
	}
	st := c.Stats()
	if st.Throttled < storms || st.ThrottledByCode["0x80072322"] != st.Throttled {
		t.Errorf("Throttled = %d by code %v", st.Throttled, st.ThrottledByCode)
	}
	if st.PausedFor < storms*retryAfter-30*time.Millisecond {
		t.Errorf("PausedFor = %v, want about %v", st.PausedFor, storms*retryAfter)
	}
	if st.PeakInFlight > 8 {
		t.Errorf("PeakInFlight = %d > cap 8", st.PeakInFlight)
	}
}

func TestRetryAfterPausesAllCallers(t *testing.T) {
	const retryAfter = 400 * time.Millisecond
	var (
		mu       sync.Mutex
		t429     time.Time
		arrivals []time.Time // after the 429
	)
	served := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		first := t429.IsZero()
		now := time.Now()
		if first {
			t429 = now
		} else {
			arrivals = append(arrivals, now)
		}
		mu.Unlock()
		if first {
			w.Header().Set("Retry-After", "0.4")
			writeJSON(w, 429, errBody("0x80072326", "Number of concurrent requests exceeded the limit of 52."))
			close(served)
			return
		}
		io.WriteString(w, `{"value":[]}`)
	}))
	defer srv.Close()
	c := newTestClient(t, srv.URL, nil)
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	wg.Go(func() { errs <- get(c, t) })
	<-served
	time.Sleep(50 * time.Millisecond) // the client has seen the 429 by now
	for range 5 {
		wg.Go(func() { errs <- get(c, t) })
	}
	wg.Go(func() {
		errs <- c.Patch(ctxT(t), accounts, Update{ID: testID(1)}, WriteOptions{}).Err
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(arrivals) != 7 {
		t.Fatalf("arrivals after the 429 = %d, want 7", len(arrivals))
	}
	for i, a := range arrivals {
		if d := a.Sub(t429); d < retryAfter {
			t.Errorf("request %d arrived %v after the 429, inside the %v Retry-After", i, d, retryAfter)
		}
	}
}

func TestAIMDShrinksOn429AndGrowsBack(t *testing.T) {
	var throttleNext atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("x-ms-dop-hint", "8")
		if throttleNext.CompareAndSwap(true, false) {
			w.Header().Set("Retry-After", "0.02")
			writeJSON(w, 429, errBody("0x80072321", "Combined execution time ..."))
			return
		}
		io.WriteString(w, `{"value":[]}`)
	}))
	defer srv.Close()
	c := newTestClient(t, srv.URL, func(cfg *Config) { cfg.MaxConcurrency = 20 })
	if c.Limit() != 5 || c.DOP() != 5 {
		t.Fatalf("initial Limit=%d DOP=%d, want 5 and 5", c.Limit(), c.DOP())
	}
	grow := func(want int) int {
		for n := 1; n <= 200; n++ {
			if err := get(c, t); err != nil {
				t.Fatal(err)
			}
			if c.Limit() > want {
				t.Fatalf("limit %d exceeds min(hint 8, cap 20)", c.Limit())
			}
			if c.Limit() == want {
				return n
			}
		}
		t.Fatalf("limit stuck at %d, want %d", c.Limit(), want)
		return 0
	}
	n := grow(8)
	if n < 8 { // additive: +1 per window of successes, so 5->8 takes about 5+6+7 requests
		t.Errorf("limit reached 8 after %d successes: growth is not additive", n)
	}
	throttleNext.Store(true)
	if err := get(c, t); err != nil {
		t.Fatal(err)
	}
	// The 429 halved it; the retry that followed added a fraction, not a whole step.
	if got := c.Limit(); got != 4 {
		t.Errorf("limit after 429 = %d, want 4", got)
	}
	grow(8)
	if c.DOP() != 8 {
		t.Errorf("DOP = %d, want 8", c.DOP())
	}
}

func TestDopHintCapHonoured(t *testing.T) {
	cases := []struct{ hint, maxConc, want int }{
		{hint: 3, maxConc: 10, want: 3},
		{hint: 12, maxConc: 2, want: 2},
		{hint: 7, maxConc: 7, want: 7},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("hint%d_cap%d", tc.hint, tc.maxConc), func(t *testing.T) {
			var inFlight, peak atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n := inFlight.Add(1)
				for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
				}
				time.Sleep(15 * time.Millisecond)
				inFlight.Add(-1)
				w.Header().Set("x-ms-dop-hint", fmt.Sprint(tc.hint))
				io.WriteString(w, `{"value":[]}`)
			}))
			defer srv.Close()
			c := newTestClient(t, srv.URL, func(cfg *Config) { cfg.MaxConcurrency = tc.maxConc })
			// Warm up until the limit has settled at min(hint, cap).
			for range 60 {
				if err := get(c, t); err != nil {
					t.Fatal(err)
				}
			}
			peak.Store(0)
			var wg sync.WaitGroup
			for range 40 {
				wg.Go(func() {
					if err := get(c, t); err != nil {
						t.Error(err)
					}
				})
			}
			wg.Wait()
			if got := int(peak.Load()); got != tc.want {
				t.Errorf("server saw at most %d in flight, want exactly %d", got, tc.want)
			}
			if st := c.Stats(); st.PeakInFlight > max(tc.want, min(5, tc.maxConc)) || st.DOP != tc.hint {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

// Work sharing a client tells its own 429s and retries apart through WithTally; the client-wide
// counters still see everything.
func TestTallyCountsOnlyItsOwnRequests(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		who := "b"
		if strings.Contains(r.URL.Query().Get("$filter"), "'a'") {
			who = "a"
		}
		mu.Lock()
		seen[who]++
		n := seen[who]
		mu.Unlock()
		switch {
		case who == "a" && n <= 2:
			w.Header().Set("Retry-After", "0.01")
			writeJSON(w, 429, errBody("0x80072322", "Number of requests exceeded the limit of 6000 over time window of 300 seconds."))
		case who == "b" && n == 1:
			writeJSON(w, 503, errBody("0x80040216", "Service unavailable"))
		default:
			io.WriteString(w, `{"value":[]}`)
		}
	}))
	defer srv.Close()
	c := newTestClient(t, srv.URL, nil)
	var ta, tb Tally
	for _, q := range []struct {
		tally  *Tally
		filter string
	}{{&ta, "name eq 'a'"}, {&tb, "name eq 'b'"}} {
		if _, err := c.QueryPage(WithTally(ctxT(t), q.tally), Query{Table: accounts, Filter: q.filter}, ""); err != nil {
			t.Fatal(err)
		}
	}
	if ta.Throttled() != 2 || ta.Retries() != 2 || tb.Throttled() != 0 || tb.Retries() != 1 {
		t.Errorf("tallies a=%d/%d b=%d/%d (429s/retries), want a=2/2 b=0/1", ta.Throttled(), ta.Retries(), tb.Throttled(), tb.Retries())
	}
	if s := c.Stats(); s.Throttled != 2 || s.Retries != 3 {
		t.Errorf("client stats %d 429s %d retries, want 2 and 3", s.Throttled, s.Retries)
	}
}
