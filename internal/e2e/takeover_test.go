package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"dvbulk/internal/dvsim"
	"dvbulk/internal/enrich/enrichsim"
	"dvbulk/internal/funcemu"
	"dvbulk/internal/job"
)

// waitInFlight polls the instances until one runs an invocation match accepts, and returns it.
func (r *rig) waitInFlight(ctx context.Context, what string, match func(funcemu.Invocation) bool) funcemu.Invocation {
	r.t.Helper()
	for {
		for i := range r.opts.instances {
			for _, inv := range r.host.InFlight(i) {
				if match(inv) {
					return inv
				}
			}
		}
		select {
		case <-ctx.Done():
			r.t.Fatalf("no instance started %s: %v", what, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// checkOnce fails for every active account written or enriched more than once.
func (r *rig) checkOnce() {
	r.t.Helper()
	c := r.dv.Counters()
	for i := range r.opts.accounts {
		id := dvsim.AccountID(i)
		if n := c.WritesByID(id); n > 1 {
			r.t.Errorf("account %d written %d times", i, n)
		}
		if n := r.en.CallsByID(id); n > 1 {
			r.t.Errorf("account %d enriched %d times", i, n)
		}
	}
}

// TestPlannerKilledMidPagingAndTimerRefired: the timer invocation is SIGKILLed while it reads its
// first page, so the run exists with nothing planned and nothing enqueued. The same occurrence fired
// again at once does nothing (the run may still be live); fired again once the run is stale, it takes
// the run over. Then the instance running a plan message (page 2) is SIGKILLed mid-page too; the host
// redelivers it and planning resumes from the checkpointed cursor. The run completes with every
// chunk planned once and every account correct; no record checkpointed before the kills is enriched
// again (the second kill also stops the chunks in flight on that instance).
func TestPlannerKilledMidPagingAndTimerRefired(t *testing.T) {
	const accounts, chunk = 12000, 500
	r := newRig(t, rigOptions{accounts: accounts, inactive: 100, instances: 2,
		env: []string{"DVBULK_PLAN_PAGES=1", "DVBULK_CHUNK_SIZE=500", "DVBULK_STALE_AFTER=3s", "DVBULK_LOG_LEVEL=info"},
		dv:  func(c *dvsim.Config) { c.Cost.PageRead = 1500 * time.Millisecond }})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	run := job.RunID("nightly-enrichment", occurrence)

	// 1. Kill the timer invocation mid-page.
	fired := make(chan error, 1)
	go func() {
		_, err := r.host.FireTimer(ctx, "EnrichTimer", funcemuTimer(occurrence))
		fired <- err
	}()
	inv := r.waitInFlight(ctx, "the timer", func(i funcemu.Invocation) bool { return i.Function == "EnrichTimer" })
	time.Sleep(500 * time.Millisecond) // inside the 1.5 s page read
	if err := r.host.Kill(inv.Instance); err != nil {
		t.Fatal(err)
	}
	if err := <-fired; err == nil {
		t.Fatal("the killed timer invocation reported success")
	}
	if n := len(r.host.Messages("dvbulk-chunks")); n != 0 {
		t.Fatalf("the killed timer invocation enqueued %d messages", n)
	}
	if s, err := job.ReadStatus(ctx, r.store, run); err != nil || s.Manifest == nil || s.Manifest.PlanningDone {
		t.Fatalf("after the kill: %+v %v; want a run with planning not done", s, err)
	}
	if err := r.host.Restart(inv.Instance); err != nil {
		t.Fatal(err)
	}

	// 2. The same occurrence again, at once: the run may be live, nothing happens.
	if inv, err := r.host.FireTimer(ctx, "EnrichTimer", funcemuTimer(occurrence)); err != nil || inv.Status != 200 {
		t.Fatalf("second firing: %v %+v", err, inv)
	}
	if n := len(r.host.Messages("dvbulk-chunks")); n != 0 {
		t.Fatalf("a second firing while the run may be live enqueued %d messages", n)
	}

	// 3. Once stale, the same occurrence takes it over: planning is handed on in a plan message.
	time.Sleep(3500 * time.Millisecond)
	inv2, err := r.host.FireTimer(ctx, "EnrichTimer", funcemuTimer(occurrence))
	if err != nil || inv2.Status != 200 || len(r.host.Messages("dvbulk-chunks")) != 1 ||
		!strings.Contains(strings.Join(inv2.Logs, " "), "taking it over") {
		t.Fatalf("firing once stale: %v %+v; want the run taken over with one plan message", err, inv2)
	}

	// 4. Kill whoever reads page 2 (the plan message after the first page), mid-page.
	defer r.serve(ctx)()
	page2 := r.waitInFlight(ctx, "planning page 2", func(i funcemu.Invocation) bool {
		return strings.Contains(i.Body, `"kind":"plan"`) && strings.Contains(i.Body, `"seq":10`)
	})
	time.Sleep(500 * time.Millisecond)
	if err := r.host.Kill(page2.Instance); err != nil {
		t.Fatal(err)
	}
	// The kill also takes the chunk invocations of page 1 in flight on that instance: what they had
	// checkpointed must not be enriched again; what they had not may be.
	saved := r.checkpointed(ctx, run)
	if err := r.host.Restart(page2.Instance); err != nil {
		t.Fatal(err)
	}

	sum := r.waitSummary(ctx, run)
	checkCounts(t, sum, accounts)
	if sum.Chunks != accounts/chunk {
		t.Errorf("summary counts %d chunks, want %d: a chunk was planned twice or lost", sum.Chunks, accounts/chunk)
	}
	r.checkEnriched()
	if n := r.reEnriched(saved); n > 0 {
		t.Errorf("%d records checkpointed before the kill were enriched again", n)
	}
	var deliveries int
	for _, inv := range r.host.Invocations() {
		if strings.Contains(inv.Body, `"kind":"plan"`) && strings.Contains(inv.Body, `"seq":10`) {
			deliveries++
		}
	}
	if deliveries < 2 {
		t.Errorf("the plan message for page 2 was delivered %d times, want a redelivery after the kill", deliveries)
	}
	t.Logf("2 SIGKILLs mid-page (timer, plan message); timer fired 3 times; %d chunks planned once each; %d accounts correct; %d records checkpointed at the second kill, 0 re-enriched; %d enrichment repeats overall (records in flight)",
		sum.Chunks, accounts, len(saved), r.en.Counters().DuplicateCalls)
}

// TestStaleOwnerResumes: an instance is frozen (SIGSTOP) while it owns chunks, long enough for its
// queue leases and chunk leases to lapse; the other instance takes the chunks over. Then the frozen
// instance resumes (SIGCONT) still believing it owns them: its next checkpoint write or write request
// is refused by the lease guard, and it stops without writing. Every account ends correct, and
// repeated writes stay within the records that were in flight when it froze.
func TestStaleOwnerResumes(t *testing.T) {
	const accounts = 3000
	r := newRig(t, rigOptions{accounts: accounts, inactive: 50, instances: 2,
		env: []string{"DVBULK_LOG_LEVEL=info"},
		// Slower Dataverse answers, so chunks are still mid-way when the instance freezes.
		dv: func(c *dvsim.Config) { c.Latency = 20 * time.Millisecond }})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	run := r.planOnly(ctx)
	defer r.serve(ctx)()

	r.waitInFlight(ctx, "a chunk on instance 0", func(i funcemu.Invocation) bool {
		return i.Instance == 0 && strings.Contains(i.Body, `"kind":"chunk"`)
	})
	time.Sleep(150 * time.Millisecond)
	if err := r.host.Pause(0); err != nil {
		t.Fatal(err)
	}
	frozen := r.host.InFlight(0)
	mine := map[int]bool{} // the chunks of the frozen invocations
	for _, inv := range frozen {
		if m, err := job.DecodeMessage([]byte(inv.Body)); err == nil && m.Kind == job.KindChunk {
			mine[m.Seq] = true
		}
	}
	held := map[int]string{} // chunk -> its owner at the freeze (instance 0's workers)
	if err := r.eachChunk(ctx, run, func(c *job.Chunk) {
		if mine[c.Seq] && c.State == job.ChunkPending {
			held[c.Seq] = c.Owner
		}
	}); err != nil {
		t.Fatal(err)
	}
	if len(held) == 0 {
		t.Fatalf("instance 0 froze holding no unfinished chunk (%d invocations frozen)", len(frozen))
	}
	// Past the queue lease (4 s) and the chunk lease (DVBULK_LEASE=4s); then stay frozen until instance 1
	// has taken at least one of the held chunks over (it may be busy with its own chunks for a while on a
	// loaded machine), so the resume always meets a takeover.
	time.Sleep(6 * time.Second)
	for taken := false; !taken; {
		if err := r.eachChunk(ctx, run, func(c *job.Chunk) {
			if owner, ok := held[c.Seq]; ok && (c.Owner != owner || c.State != job.ChunkPending) {
				taken = true
			}
		}); err != nil {
			t.Fatal(err)
		}
		if !taken {
			select {
			case <-ctx.Done():
				t.Fatalf("instance 1 never took over a chunk of the frozen instance: %v", ctx.Err())
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	if err := r.host.Resume(0); err != nil {
		t.Fatal(err)
	}
	sum := r.waitSummary(ctx, run)
	checkCounts(t, sum, accounts)
	r.checkEnriched()
	// The summary can be written by instance 1 while the resumed invocations are still finishing what
	// they had on the wire when they froze: wait for their answers before reading their logs.
	r.waitEnded(ctx, frozen)

	// Invocations of the resumed instance that found their chunk taken over or finished by another
	// worker ("ownership lost to another worker" / "finished by another worker").
	lost := 0
	for _, inv := range r.host.Invocations() {
		if inv.Instance == 0 && strings.Contains(strings.Join(inv.Logs, " "), "stopped without further writes") {
			lost++
		}
	}
	if lost == 0 {
		var ends []string
		for _, inv := range r.host.Invocations() {
			for _, f := range frozen {
				if inv.ID == f.ID {
					ends = append(ends, fmt.Sprintf("status %d err %q logs %q", inv.Status, inv.Err, inv.Logs))
				}
			}
		}
		t.Errorf("the resumed instance never noticed it had lost its chunks (%d invocations frozen): %s", len(frozen), strings.Join(ends, "; "))
	}
	c := r.dv.Counters()
	repeated := 0
	for i := range accounts {
		if c.WritesByID(dvsim.AccountID(i)) > 1 {
			repeated++
		}
	}
	// At most the records of the chunks it held (200 each) could have had a write in flight.
	if limit := 200 * len(frozen); repeated > limit {
		t.Errorf("%d accounts written more than once; at most %d records were in flight", repeated, limit)
	}
	t.Logf("froze instance 0 with %d chunk invocations for 6 s; %d stopped on resume finding their chunk taken over; %d accounts written twice; enrichment repeats %d",
		len(frozen), lost, repeated, r.en.Counters().DuplicateCalls)
}

// TestChunksYieldInsideAShortFunctionTimeout: with functionTimeout 8 s and chunks that need about 7 s
// of enrichment each, every invocation checkpoints and hands the rest of its chunk to a new message
// before its deadline, so the host never times an invocation out (which would kill and restart the
// whole handler process). The run completes with no record enriched twice.
func TestChunksYieldInsideAShortFunctionTimeout(t *testing.T) {
	const accounts = 3000
	r := newRig(t, rigOptions{accounts: accounts, inactive: 10, instances: 2, functionTimeout: "00:00:08",
		env: []string{"DVBULK_CHUNK_SIZE=1000", "ENRICHMENT_CONCURRENCY=1", "DVBULK_LOG_LEVEL=info"},
		en:  func(c *enrichsim.Config) { c.TimeScale = 1 }}) // 40 requests of 170 ms per chunk, one at a time
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	sum := r.runTimer(ctx)
	checkCounts(t, sum, accounts)
	r.checkEnriched()
	r.checkOnce()
	yields, timeouts := 0, 0
	for _, inv := range r.host.Invocations() {
		if strings.Contains(strings.Join(inv.Logs, " "), "continuing in a new message") {
			yields++
		}
		if strings.Contains(inv.Err, "functionTimeout") {
			timeouts++
		}
	}
	if yields == 0 {
		t.Error("no invocation handed its chunk on: the test did not exercise the deadline")
	}
	if timeouts > 0 || strings.Contains(r.logs.String(), "Timeout value of") {
		t.Errorf("%d invocations ran past functionTimeout", timeouts)
	}
	t.Logf("3 chunks of 1,000 under functionTimeout 8 s: %d hand-overs, %d timeouts, %d invocations", yields, timeouts, len(r.host.Invocations()))
}
