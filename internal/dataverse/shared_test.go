package dataverse

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// fakeBudget is a cluster view set by the test; it records what the client publishes.
type fakeBudget struct {
	mu        sync.Mutex
	until     time.Time
	instances int
	published []time.Time
	views     int
}

func (f *fakeBudget) View(_ context.Context, _ time.Time) (time.Time, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.views++
	return f.until, f.instances
}

func (f *fakeBudget) Throttled(until time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.published = append(f.published, until)
}

func (f *fakeBudget) set(until time.Time, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.until, f.instances = until, n
}

// TestSharedPauseHoldsEveryRequest: a pause another instance published holds this client's requests
// until it ends, though this client never got a 429 itself.
func TestSharedPauseHoldsEveryRequest(t *testing.T) {
	b := &fakeBudget{instances: 1}
	th := newThrottle(52, time.Millisecond, time.Millisecond, b)
	until := time.Now().Add(80 * time.Millisecond)
	b.set(until, 1)
	s, err := th.acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if now := time.Now(); now.Before(until) {
		t.Fatalf("admitted %v before the cluster's pause ended", until.Sub(now))
	}
	th.release(s, succeeded)
	// A pause published after admission is caught right before the send.
	b.set(time.Now().Add(time.Hour), 1)
	if th.remaining(context.Background()) < 59*time.Minute {
		t.Fatal("the gate before the send ignores the cluster's pause")
	}
}

// TestShareOfTheHint: the ceiling is the hint split over the live instances; a departed instance's
// share comes back; more instances than the hint leave each a fraction, paced.
func TestShareOfTheHint(t *testing.T) {
	b := &fakeBudget{instances: 4}
	th := newThrottle(52, time.Millisecond, time.Millisecond, b)
	th.setHint(8)
	th.limit = 8
	s1, _ := th.acquire(context.Background())
	if got := th.snapshot().limit; got != 2 {
		t.Fatalf("limit %d with 4 instances and hint 8, want 2", got)
	}
	s2, _ := th.acquire(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	if _, err := th.acquire(ctx); err == nil {
		t.Fatal("a third request admitted over a share of 2")
	}
	cancel()
	th.release(s1, succeeded)
	th.release(s2, succeeded)

	b.set(time.Time{}, 1) // the others left: additive increase grows it back
	for range 60 {
		s, _ := th.acquire(context.Background())
		th.release(s, succeeded)
	}
	if got := th.snapshot().limit; got != 8 {
		t.Fatalf("limit %d after the others left, want the whole hint back (8)", got)
	}

	b.set(time.Time{}, 16) // 16 instances, hint 8: half a request each
	s, _ := th.acquire(context.Background())
	if sh := th.snapshot().share; sh != 0.5 {
		t.Fatalf("share %v, want 0.5", sh)
	}
	time.Sleep(40 * time.Millisecond) // the request "takes" 40ms
	th.release(s, succeeded)
	released := time.Now()
	s, _ = th.acquire(context.Background())
	if rest := time.Since(released); rest < 40*time.Millisecond {
		t.Fatalf("next request after %v; a half share rests as long as the request took (>= 40ms)", rest)
	}
	th.release(s, succeeded)
}

// TestThrottledIsPublished: a 429 closes the local gate and tells the cluster until when.
func TestThrottledIsPublished(t *testing.T) {
	var mu sync.Mutex
	n := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n++
		first := n == 1
		mu.Unlock()
		if first {
			w.Header().Set("Retry-After", "0.2")
			writeJSON(w, 429, errBody("0x80072321", "Combined execution time of incoming requests exceeded limit"))
			return
		}
		w.WriteHeader(204)
	}))
	defer srv.Close()
	b := &fakeBudget{instances: 1}
	c := newTestClient(t, srv.URL, func(cfg *Config) { cfg.Budget = b })
	before := time.Now()
	if r := c.Patch(ctxT(t), accounts, Update{ID: testID(1)}, WriteOptions{}); r.Status != Updated {
		t.Fatalf("%+v", r)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.published) != 1 {
		t.Fatalf("published %d pauses, want 1", len(b.published))
	}
	if p := b.published[0]; p.Before(before.Add(200*time.Millisecond)) || p.After(time.Now()) {
		t.Fatalf("published pause until %v, want Retry-After (0.2s) after the 429", p.Sub(before))
	}
	if b.views < 2 {
		t.Fatalf("the client consulted the cluster's view %d times, want before each attempt", b.views)
	}
}
