package e2e

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"dvbulk/internal/enrich/enrichsim"
)

// TestSIGTERMMidChunkHandsOver: Flex Consumption scales in by sending SIGTERM and giving running
// executions a grace period. An instance SIGTERMed in the middle of its chunks lets the enrichment
// calls it has sent finish, checkpoints them, answers every in-flight invocation with a continuation
// message (so the host completes the trigger message and binds the continuation) and exits on its
// own. The other instance continues those chunks from their checkpoints: no account is enriched or
// written twice, which SIGKILL (losing whatever was in flight) cannot show.
func TestSIGTERMMidChunkHandsOver(t *testing.T) {
	const accounts = 3000
	var once sync.Once
	claimed := make(chan struct{})
	r := newRig(t, rigOptions{accounts: accounts, inactive: 20, instances: 2,
		// 6 chunks of 500 records, 20 enrichment requests of 25 each, 2 at a time per instance at
		// real-time latency: each instance's chunks take several seconds, so a SIGTERM lands mid-chunk.
		env: []string{"DVBULK_CHUNK_SIZE=500", "ENRICHMENT_CONCURRENCY=2", "DVBULK_TRANSFORM_WORKERS=2"},
		en:  func(c *enrichsim.Config) { c.TimeScale = 1 },
		onLine: func(i int, line string) {
			if i == 0 && strings.Contains(line, "chunk claimed") {
				once.Do(func() { close(claimed) })
			}
		}})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	defer r.serve(ctx)()
	run := r.planOnly(ctx)
	select {
	case <-claimed:
	case <-ctx.Done():
		t.Fatal("instance 0 never claimed a chunk")
	}
	// Mid-chunk: wait until instance 0 has checkpointed some enrichment, and still runs its chunks.
	for len(r.checkpointed(ctx, run)) == 0 {
		select {
		case <-ctx.Done():
			t.Fatal("nothing checkpointed")
		case <-time.After(50 * time.Millisecond):
		}
	}
	inFlight := r.host.InFlight(0)
	if len(inFlight) == 0 {
		t.Fatal("instance 0 ran nothing when it was to be SIGTERMed")
	}
	atSignal := len(r.checkpointed(ctx, run))
	if err := r.host.Stop(0, 60*time.Second); err != nil {
		t.Fatalf("SIGTERM instance 0: %v", err)
	}
	sum := r.waitSummary(ctx, run)
	checkCounts(t, sum, accounts)
	r.checkEnriched()
	r.checkOnce()
	// The simulator counts a lookup only once answered; a request whose client gave up (a call
	// cancelled at shutdown) is work the service did and nobody kept. There must be none.
	ec := r.en.Counters()
	abandoned := ec.Requests - ec.Answered - ec.Throttled - ec.Errors - ec.Malformed - ec.Rejected - ec.InFlight
	if abandoned != 0 {
		t.Errorf("%d enrichment requests abandoned before their answer (cancelled instead of finished)", abandoned)
	}

	handed, failed := 0, 0
	byID := map[string]bool{}
	for _, inv := range inFlight {
		byID[inv.ID] = true
	}
	for _, inv := range r.host.Invocations() {
		if !byID[inv.ID] {
			continue
		}
		switch {
		case inv.Err != "" || inv.Status != 200:
			failed++
			t.Errorf("invocation %s in flight at SIGTERM: status %d, error %q (want a hand-over)", inv.ID, inv.Status, inv.Err)
		case strings.Contains(strings.Join(inv.Logs, " "), "at shutdown; continuing in a new message"):
			handed++
			if len(inv.Outputs["chunks"]) != 1 {
				t.Errorf("hand-over %s: %d continuation messages, want 1", inv.ID, len(inv.Outputs["chunks"]))
			}
		}
	}
	if handed == 0 {
		t.Errorf("none of the %d invocations in flight at SIGTERM handed its chunk over", len(inFlight))
	}
	t.Logf("SIGTERM with %d invocations in flight, %d records checkpointed: %d hand-overs, %d failed; enrichment repeats overall: %d, abandoned requests: %d",
		len(inFlight), atSignal, handed, failed, ec.DuplicateCalls, abandoned)
}
