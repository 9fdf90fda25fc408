package e2e

import (
	"context"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"dvbulk/internal/dvsim"
	"dvbulk/internal/job"
)

// checkpointed lists the records whose enrichment result or outcome is in a chunk checkpoint now.
func (r *rig) checkpointed(ctx context.Context, run string) map[string]bool {
	r.t.Helper()
	out := map[string]bool{}
	if err := r.eachChunk(ctx, run, func(ch *job.Chunk) {
		for _, rec := range ch.Records {
			if rec.Fields != nil || rec.Outcome != "" {
				out[rec.ID] = true
			}
		}
	}); err != nil {
		r.t.Fatal(err)
	}
	return out
}

// eachChunk calls fn with every chunk checkpoint of run.
func (r *rig) eachChunk(ctx context.Context, run string, fn func(*job.Chunk)) error {
	return r.store.List(ctx, "runs/"+run+"/chunks/", func(name string) error {
		data, _, err := r.store.Get(ctx, name)
		if err != nil {
			return err
		}
		ch, err := job.DecodeChunk(data)
		if err != nil {
			return err
		}
		fn(ch)
		return nil
	})
}

// TestKillMidChunk: SIGKILL an instance in the middle of a chunk. The run completes, every account
// ends correct, no enrichment call is repeated for a record whose result was checkpointed, and the
// summary adds up.
func TestKillMidChunk(t *testing.T) {
	var once sync.Once
	killed := make(chan struct{})
	var r *rig
	r = newRig(t, rigOptions{accounts: 3000, inactive: 100, instances: 2, onLine: func(i int, line string) {
		if i == 0 && strings.Contains(line, "chunk claimed") {
			once.Do(func() {
				go func() {
					time.Sleep(300 * time.Millisecond) // mid-chunk: enrichment and writes under way
					_ = r.host.Kill(0)
					close(killed)
				}()
			})
		}
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	defer r.serve(ctx)()
	run := r.planOnly(ctx)
	select {
	case <-killed:
	case <-ctx.Done():
		t.Fatal("instance 0 never claimed a chunk")
	}
	saved := r.checkpointed(ctx, run)
	if err := r.host.Restart(0); err != nil {
		t.Fatal(err)
	}
	sum := r.waitSummary(ctx, run)
	checkCounts(t, sum, 3000)
	r.checkEnriched()
	if n := r.reEnriched(saved); n > 0 {
		t.Errorf("%d records checkpointed before the kill were enriched again", n)
	}
	t.Logf("checkpointed at the kill: %d records; enrichment repeats overall: %d", len(saved), r.en.Counters().DuplicateCalls)
}

// TestKillRightAfterWrite: SIGKILL every instance with a chunk in flight right after Dataverse
// applied a write and before the worker heard back or checkpointed. Repeated writes stay within the
// records in flight at the kill.
func TestKillRightAfterWrite(t *testing.T) {
	var r *rig
	var once sync.Once
	var inFlightRecords atomic.Int64
	killed := make(chan struct{})
	r = newRig(t, rigOptions{accounts: 2000, inactive: 50, instances: 2, dv: func(c *dvsim.Config) {
		c.OnWrite = func(ids []string) {
			once.Do(func() {
				for i := 0; i < 2; i++ {
					n := 0
					for _, inv := range r.host.InFlight(i) {
						if inv.Function == "ChunkQueue" {
							n++
						}
					}
					if n > 0 {
						inFlightRecords.Add(int64(n * 200)) // chunk size
						_ = r.host.Kill(i)
					}
				}
				close(killed)
			})
		}
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	defer r.serve(ctx)()
	run := r.planOnly(ctx)
	select {
	case <-killed:
	case <-ctx.Done():
		t.Fatal("no write happened")
	}
	for i := 0; i < 2; i++ {
		_ = r.host.Restart(i)
	}
	sum := r.waitSummary(ctx, run)
	checkCounts(t, sum, 2000)
	r.checkEnriched()
	c := r.dv.Counters()
	repeats := 0
	for i := 0; i < 2000; i++ {
		if n := c.WritesByID(dvsim.AccountID(i)); n > 1 {
			repeats += n - 1
		}
	}
	if int64(repeats) > inFlightRecords.Load() {
		t.Errorf("%d repeated writes, more than the %d records in flight at the kill", repeats, inFlightRecords.Load())
	}
	t.Logf("records in flight at the kill: %d; repeated writes: %d", inFlightRecords.Load(), repeats)
}

// TestDuplicateDelivery: every chunk message is delivered twice, to two instances at once. Each
// record is enriched once and written at most once.
func TestDuplicateDelivery(t *testing.T) {
	r := newRig(t, rigOptions{accounts: 2000, inactive: 50, instances: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	run := r.planOnly(ctx)
	msgs := r.host.Messages("dvbulk-chunks")
	dup := 0
	for _, m := range msgs {
		if strings.Contains(m, `"kind":"chunk"`) {
			r.host.Enqueue("dvbulk-chunks", m, true)
			dup++
		}
	}
	if dup == 0 {
		t.Fatal("no chunk messages to duplicate")
	}
	sum := r.process(ctx, run)
	checkCounts(t, sum, 2000)
	r.checkEnriched()
	r.checkOnce()
}

// TestChaosRandomKills: three instances; at random moments (0.3–1.2 s apart) a random one is
// SIGKILLed and restarted, over and over while the run is under way (at most 8 kills, so it ends),
// until the queue drains. Nothing is lost, nothing is created, and the summary adds up. The seed is
// logged (and DVBULK_CHAOS_SEED replays one).
func TestChaosRandomKills(t *testing.T) {
	seed := time.Now().UnixNano()
	if v := os.Getenv("DVBULK_CHAOS_SEED"); v != "" {
		seed, _ = strconv.ParseInt(v, 10, 64)
	}
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	t.Logf("chaos seed %d", seed)
	r := newRig(t, rigOptions{accounts: 5000, inactive: 50, instances: 3, env: []string{"DVBULK_CHUNK_SIZE=100", "DVBULK_LOG_LEVEL=info"}})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	run := r.planOnly(ctx)
	defer r.serve(ctx)()
	kills := 0
	for kills < 8 {
		time.Sleep(time.Duration(300+rng.IntN(900)) * time.Millisecond)
		if s, err := job.ReadStatus(ctx, r.store, run); err == nil && s.Summary != nil {
			break
		}
		victim := rng.IntN(3)
		if err := r.host.Kill(victim); err == nil {
			kills++
		}
		time.Sleep(time.Duration(100+rng.IntN(400)) * time.Millisecond)
		if err := r.host.Restart(victim); err != nil {
			t.Fatalf("restart %d: %v", victim, err)
		}
	}
	sum := r.waitSummary(ctx, run)
	checkCounts(t, sum, 5000)
	r.checkEnriched()
	t.Logf("%d SIGKILLs; enrichment repeats %d; Dataverse record writes %d for %d changed accounts", kills, r.en.Counters().DuplicateCalls, r.dv.Counters().Writes, 4000)
}
