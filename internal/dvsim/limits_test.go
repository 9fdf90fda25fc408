package dvsim_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"dvbulk/internal/dataverse"
	"dvbulk/internal/dvsim"
)

func retryAfter(t *testing.T, r raw) time.Duration {
	t.Helper()
	f, err := strconv.ParseFloat(r.header.Get("Retry-After"), 64)
	if err != nil {
		t.Fatalf("Retry-After %q", r.header.Get("Retry-After"))
	}
	return time.Duration(f * float64(time.Second))
}

// TestRequestLimitRetryAfterGrows: a user over the request-count limit gets 0x80072322 with a
// Retry-After of the time until the window frees a slot, which doubles (up to the window) each
// time the user sends anyway.
func TestRequestLimitRetryAfterGrows(t *testing.T) {
	cases := []struct {
		scale  float64
		format *regexp.Regexp
	}{
		{1, regexp.MustCompile(`^\d+$`)},          // Dataverse: integer seconds
		{100, regexp.MustCompile(`^\d+\.\d{3}$`)}, // scaled: real seconds, three decimals
	}
	for _, tc := range cases {
		t.Run("TimeScale="+strconv.FormatFloat(tc.scale, 'f', -1, 64), func(t *testing.T) {
			// 4 requests per window; the window is 400 s, i.e. 4 s at scale 100 (unscaled at scale 1
			// the test only checks the code and format, as waiting is out of the question).
			sim := dvsim.New(dvsim.Config{Accounts: 1, Servers: 1, TimeScale: tc.scale, Limits: dvsim.Limits{Requests: 4, Window: 400 * time.Second}})
			base, stop := sim.Start()
			defer stop()
			window := time.Duration(float64(400*time.Second) / tc.scale)
			get := func() raw { return send(t, base, http.MethodGet, "WhoAmI", nil, "") }
			get()
			if tc.scale != 1 {
				time.Sleep(window * 3 / 4) // the first request leaves the window a quarter window from now
			}
			for i := 0; i < 3; i++ {
				if r := get(); r.status != 200 {
					t.Fatalf("request %d: %d", i+2, r.status)
				}
			}
			var waits []time.Duration
			for i := 0; i < 3; i++ {
				r := get()
				code, msg := errorOf(t, r)
				if r.status != 429 || code != dvsim.CodeRequests || msg != "Number of requests exceeded the limit of 4 over time window of 400 seconds." {
					t.Fatalf("over the limit: %d %s %q", r.status, code, msg)
				}
				if !tc.format.MatchString(r.header.Get("Retry-After")) {
					t.Fatalf("Retry-After %q", r.header.Get("Retry-After"))
				}
				waits = append(waits, retryAfter(t, r))
				time.Sleep(30 * time.Millisecond) // past the simulator's delivery grace: a client ignoring the 429
			}
			if tc.scale == 1 {
				if waits[0] < 399*time.Second || waits[2] != 400*time.Second {
					t.Fatalf("waits %v, want the window (capped)", waits)
				}
				return
			}
			// First: about a quarter window (the oldest request's remaining life); then doubling.
			if waits[0] < window/5 || waits[0] > window/4+100*time.Millisecond || waits[1] < 2*waits[0]-5*time.Millisecond || waits[2] < 2*waits[1]-5*time.Millisecond || waits[2] > window {
				t.Fatalf("waits %v (window %v): want ~window/4, then doubling, at most the window", waits, window)
			}
			if c := sim.Counters(); c.Throttled[dvsim.CodeRequests] != 3 || c.RequestsDuringRetryAfter != 2 {
				t.Fatalf("throttled %v, during Retry-After %d", c.Throttled, c.RequestsDuringRetryAfter)
			}
		})
	}
}

// TestExecTimeLimit: server time accumulates per user per server; once over the budget the next
// request gets 0x80072321 (the request that crossed it was allowed: overshoot), and other users
// and other servers are unaffected.
func TestExecTimeLimit(t *testing.T) {
	// Each WhoAmI costs 6 s of server time against a 10 s budget per 100 s; at scale 20 that is
	// 300 ms against 500 ms per 5 s.
	sim := dvsim.New(dvsim.Config{Accounts: 1, Servers: 1, TimeScale: 20, Cost: dvsim.Cost{Action: 6 * time.Second},
		Limits: dvsim.Limits{ExecTime: 10 * time.Second, Window: 100 * time.Second}})
	base, stop := sim.Start()
	defer stop()
	alice := map[string]string{"Authorization": "Bearer alice"}
	var got []int
	for i := 0; i < 3; i++ {
		got = append(got, send(t, base, http.MethodGet, "WhoAmI", alice, "").status)
	}
	if got[0] != 200 || got[1] != 200 || got[2] != 429 {
		t.Fatalf("statuses %v, want 200 200 429", got)
	}
	r := send(t, base, http.MethodGet, "WhoAmI", alice, "")
	code, msg := errorOf(t, r)
	if code != dvsim.CodeExecTime || !strings.HasPrefix(msg, "Combined execution time of incoming requests exceeded limit of 10000 milliseconds over time window of 100 seconds.") {
		t.Fatalf("%s %q", code, msg)
	}
	if w := retryAfter(t, r); w <= 0 || w > 5*time.Second {
		t.Fatalf("Retry-After %v", w)
	}
	if r := send(t, base, http.MethodGet, "WhoAmI", map[string]string{"Authorization": "Bearer bob"}, ""); r.status != 200 {
		t.Fatalf("another user: %d", r.status)
	}
	if c := sim.Counters(); c.ExecTime != 3*300*time.Millisecond {
		t.Fatalf("ExecTime %v, want 900ms (three admitted requests)", c.ExecTime)
	}
}

// TestStormAndRetryAfterDiscipline: during a 429 storm the real client waits out every
// Retry-After (RequestsDuringRetryAfter stays 0) and still lands every write; a client that
// ignores Retry-After is counted.
func TestStormAndRetryAfterDiscipline(t *testing.T) {
	sim := dvsim.New(dvsim.Config{Accounts: 40, TimeScale: 10})
	base, stop := sim.Start()
	defer stop()
	sim.Faults().Storm(dvsim.CodeExecTime, 300*time.Millisecond)
	ids := sim.IDs(true)
	ups := make([]dataverse.Update, len(ids))
	for i, id := range ids {
		ups[i] = dataverse.Update{ID: id, Fields: map[string]any{"description": "stormy"}}
	}
	res, err := client(t, base).Update(context.Background(), accounts, ups, dataverse.WriteOptions{Mode: dataverse.ModeSingle})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Status != dataverse.Updated {
			t.Fatalf("%+v", r)
		}
	}
	c := sim.Counters()
	if c.Throttled[dvsim.CodeExecTime] == 0 || c.Writes != 40 {
		t.Fatalf("throttled %v, writes %d: the storm did not bite", c.Throttled, c.Writes)
	}
	if c.RequestsDuringRetryAfter != 0 {
		t.Fatalf("the client sent %d requests inside a Retry-After", c.RequestsDuringRetryAfter)
	}

	sim.ResetCounters()
	sim.Faults().Storm(dvsim.CodeRequests, 2*time.Second)
	r := send(t, base, http.MethodGet, "WhoAmI", nil, "")
	if code, _ := errorOf(t, r); r.status != 429 || code != dvsim.CodeRequests || retryAfter(t, r) < time.Second {
		t.Fatalf("storm answer %d %s Retry-After %q", r.status, code, r.header.Get("Retry-After"))
	}
	for i := 0; i < 4; i++ {
		time.Sleep(30 * time.Millisecond)
		send(t, base, http.MethodGet, "WhoAmI", nil, "")
	}
	if n := sim.Counters().RequestsDuringRetryAfter; n != 4 {
		t.Fatalf("an impatient client sent 4 requests inside Retry-After; counted %d", n)
	}
	sim.Faults().Storm("", 0)
}

// TestClientFallsBackWithoutUpdateMultiple: with UpdateMultiple unavailable, the client's bulk
// mode probes once, sees no filter, and writes through $batch.
func TestClientFallsBackWithoutUpdateMultiple(t *testing.T) {
	for _, unavailable := range []bool{false, true} {
		t.Run("NoUpdateMultiple="+strconv.FormatBool(unavailable), func(t *testing.T) {
			sim := dvsim.New(dvsim.Config{Accounts: 250, NoUpdateMultiple: unavailable})
			base, stop := sim.Start()
			defer stop()
			ids := sim.IDs(true)
			ups := make([]dataverse.Update, len(ids))
			for i, id := range ids {
				ups[i] = dataverse.Update{ID: id, Fields: map[string]any{"industrycode": 12}}
			}
			res, err := client(t, base).Update(context.Background(), accounts, ups, dataverse.WriteOptions{Mode: dataverse.ModeBulk, BatchSize: 100})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range res {
				if r.Status != dataverse.Updated {
					t.Fatalf("%+v", r)
				}
			}
			c := sim.Counters()
			if c.Writes != 250 || c.ByKind["probe"] != 1 {
				t.Fatalf("writes %d, kinds %v", c.Writes, c.ByKind)
			}
			if unavailable && (c.ByKind["updateMultiple"] != 0 || c.ByKind["batch"] == 0) || !unavailable && (c.ByKind["updateMultiple"] != 3 || c.ByKind["batch"] != 0) {
				t.Fatalf("kinds %v", c.ByKind)
			}
		})
	}
}

// TestClientWithAffinityStaysOnOneServer: the real client with AffinityCookie sends ARRAffinity
// back and every request lands on one server; without it requests spread.
func TestClientWithAffinityStaysOnOneServer(t *testing.T) {
	for _, affinity := range []bool{true, false} {
		t.Run("AffinityCookie="+strconv.FormatBool(affinity), func(t *testing.T) {
			sim := dvsim.New(dvsim.Config{Accounts: 30, Servers: 3})
			base, stop := sim.Start()
			defer stop()
			c, err := dataverse.New(dataverse.Config{URL: base, MaxConcurrency: 1, AffinityCookie: affinity, Logger: zerolog.Nop()})
			if err != nil {
				t.Fatal(err)
			}
			for _, id := range sim.IDs(true) {
				if r := c.Patch(context.Background(), accounts, dataverse.Update{ID: id, Fields: map[string]any{"name": "n"}}, dataverse.WriteOptions{}); r.Status != dataverse.Updated {
					t.Fatalf("%+v", r)
				}
			}
			used := 0
			for _, n := range sim.Counters().RequestsPerServer {
				if n > 0 {
					used++
				}
			}
			if affinity && used != 1 || !affinity && used != 3 {
				t.Fatalf("requests per server %v", sim.Counters().RequestsPerServer)
			}
		})
	}
}

// TestRequestsIntoPenaltyPerUserPerServer: the penalty binds the user on the web server that sent
// the 429, whichever process (session) of that user sends next; other users and the other server
// are not counted, nor is a request already on its way when the 429 was sent.
func TestRequestsIntoPenaltyPerUserPerServer(t *testing.T) {
	// Two requests per user per server per 100 s; at scale 10 a penalty lasts seconds.
	sim := dvsim.New(dvsim.Config{Accounts: 1, Servers: 2, TimeScale: 10, Limits: dvsim.Limits{Requests: 2, Window: 100 * time.Second}})
	base, stop := sim.Start()
	defer stop()
	procA := map[string]string{"Authorization": "Bearer app", "x-ms-client-session-id": "a"}
	procB := map[string]string{"Authorization": "Bearer app", "x-ms-client-session-id": "b"}
	other := map[string]string{"Authorization": "Bearer other-app"}
	affinity := func(h map[string]string, r raw) map[string]string {
		out := map[string]string{}
		for k, v := range h {
			out[k] = v
		}
		for _, c := range r.header.Values("Set-Cookie") {
			if v, ok := strings.CutPrefix(c, "ARRAffinity="); ok {
				out["Cookie"] = "ARRAffinity=" + strings.SplitN(v, ";", 2)[0]
			}
		}
		return out
	}
	first := send(t, base, http.MethodGet, "WhoAmI", procA, "")
	pinA := affinity(procA, first)
	pinB := affinity(procB, first)
	send(t, base, http.MethodGet, "WhoAmI", pinA, "")
	if r := send(t, base, http.MethodGet, "WhoAmI", pinA, ""); r.status != 429 {
		t.Fatalf("third request on one server: %d, want 429", r.status)
	}
	time.Sleep(30 * time.Millisecond) // past the delivery grace
	if r := send(t, base, http.MethodGet, "WhoAmI", pinB, ""); r.status != 429 {
		t.Fatalf("another process of the same user during the penalty: %d, want 429", r.status)
	}
	if r := send(t, base, http.MethodGet, "WhoAmI", affinity(other, first), ""); r.status != 200 {
		t.Fatalf("another user on the same server: %d", r.status)
	}
	c := sim.Counters()
	if c.RequestsIntoPenalty != 1 || c.IntoPenaltyByUser[userHash("Bearer app")] != 1 {
		t.Fatalf("into penalty %d %v, want 1 for the user", c.RequestsIntoPenalty, c.IntoPenaltyByUser)
	}
	if c.RequestsDuringRetryAfter != 0 {
		t.Fatalf("per session: %d, want 0 (process b never got a 429 itself)", c.RequestsDuringRetryAfter)
	}
}

// TestRequestInFlightWhenPenaltyStartsIsNotCounted: a request that arrives after the 429 was
// decided but before it was written (the simulator's latency) was on its way and does not count.
func TestRequestInFlightWhenPenaltyStartsIsNotCounted(t *testing.T) {
	sim := dvsim.New(dvsim.Config{Accounts: 1, Servers: 1, Latency: 2 * time.Second, TimeScale: 10,
		Limits: dvsim.Limits{Requests: 1, Window: 100 * time.Second}})
	base, stop := sim.Start()
	defer stop()
	app := map[string]string{"Authorization": "Bearer app"}
	send(t, base, http.MethodGet, "WhoAmI", app, "")
	done := make(chan int, 1)
	go func() { done <- send(t, base, http.MethodGet, "WhoAmI", app, "").status }()
	time.Sleep(50 * time.Millisecond) // the 429 is decided, its answer still 150 ms away
	if r := send(t, base, http.MethodGet, "WhoAmI", app, ""); r.status != 429 {
		t.Fatalf("second request in the penalty: %d", r.status)
	}
	if s := <-done; s != 429 {
		t.Fatalf("first over the limit: %d", s)
	}
	if n := sim.Counters().RequestsIntoPenalty; n != 0 {
		t.Fatalf("into penalty %d, want 0: the request was on its way before the 429 went out", n)
	}
	send(t, base, http.MethodGet, "WhoAmI", app, "")
	if n := sim.Counters().RequestsIntoPenalty; n != 1 {
		t.Fatalf("into penalty %d, want 1 after the 429 was delivered", n)
	}
}

func userHash(auth string) string {
	h := sha256.Sum256([]byte(auth))
	return hex.EncodeToString(h[:8])
}
