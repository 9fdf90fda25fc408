package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"dvbulk/internal/dvsim"
)

// TestDataverseFaults: under each Dataverse fault the run completes, every account ends correct, no
// record is created, and no request is sent inside a Retry-After window.
func TestDataverseFaults(t *testing.T) {
	const n = 800
	cases := []struct {
		name   string
		env    []string
		dv     func(*dvsim.Config)
		inject func(r *rig)
	}{
		{name: "429 storm on the request-count limit", inject: func(r *rig) { r.dv.Faults().Storm("0x80072322", 2*time.Second) }},
		{name: "429 storm on the execution-time limit", inject: func(r *rig) { r.dv.Faults().Storm("0x80072321", 2*time.Second) }},
		{name: "429 storm on the concurrency limit", inject: func(r *rig) { r.dv.Faults().Storm("0x80072326", 2*time.Second) }},
		{name: "5xx burst", inject: func(r *rig) { r.dv.Faults().ServerErrors(25, 503) }},
		{name: "dropped connections", inject: func(r *rig) { r.dv.Faults().DropConnections(10) }},
		{name: "slow responses past the client timeout", env: []string{"DVBULK_REQUEST_TIMEOUT=1s"}, inject: func(r *rig) {
			r.dv.Faults().Slow(1500 * time.Millisecond)
			time.AfterFunc(3*time.Second, func() { r.dv.Faults().Slow(0) })
		}},
		{name: "batch-size error", dv: func(c *dvsim.Config) { c.NoUpdateMultiple, c.MaxBatchSize = true, 20 }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, rigOptions{accounts: n, inactive: 40, env: tc.env, dv: tc.dv})
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			run := r.planOnly(ctx)
			if tc.inject != nil {
				tc.inject(r)
			}
			sum := r.process(ctx, run)
			checkCounts(t, sum, n)
			r.checkEnriched()
			c := r.dv.Counters()
			if c.RequestsDuringRetryAfter != 0 {
				t.Errorf("%d requests sent inside a Retry-After window", c.RequestsDuringRetryAfter)
			}
			// The summary's 429 count is exact: each chunk counts only its own requests' answers.
			var sent int64
			for _, n := range c.Throttled {
				sent += n
			}
			if strings.HasPrefix(tc.name, "429") && sent == 0 {
				t.Error("the storm sent no 429s")
			}
			if sum.Stats.Throttled != sent {
				t.Errorf("summary counts %d Dataverse 429s, the simulator sent %d", sum.Stats.Throttled, sent)
			}
			if len(r.host.Messages("dvbulk-chunks-poison")) != 0 {
				t.Error("a transient fault poisoned a message")
			}
		})
	}
}

// TestRecordsDeletedAndEditedMidRun: deleted records end "gone" and are never re-created; with
// optimistic concurrency, records edited by someone else since planning are not overwritten.
func TestRecordsDeletedAndEditedMidRun(t *testing.T) {
	r := newRig(t, rigOptions{accounts: 600, inactive: 20, job: "recalculate-tier"})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	run := r.planOnly(ctx)
	for i := 0; i < 10; i++ {
		r.dv.Delete(dvsim.AccountID(i))
	}
	for i := 10; i < 25; i++ {
		r.dv.Edit(dvsim.AccountID(i), map[string]any{"description": "edited by a person"})
	}
	sum := r.process(ctx, run)
	checkCounts(t, sum, 600)
	if sum.Outcomes["gone"] != 10 || sum.Outcomes["skipped"] != 15 {
		t.Errorf("outcomes %v, want 10 gone and 15 skipped", sum.Outcomes)
	}
	for i := 0; i < 10; i++ {
		if _, ok := r.dv.Get(dvsim.AccountID(i)); ok {
			t.Errorf("deleted account %d re-created", i)
		}
	}
	for i := 10; i < 25; i++ {
		if row, _ := r.dv.Get(dvsim.AccountID(i)); row["description"] != "edited by a person" {
			t.Errorf("account %d: a person's edit was overwritten with %v", i, row["description"])
		}
	}
	if r.dv.Counters().Creates != 0 {
		t.Error("records created")
	}
}

// TestEnrichmentFaults: throttling, errors, timeouts and bad answers from the enrichment service.
// Transient faults heal; bad answers fail only their records, with a reason; nothing off the
// allow-list is ever written.
func TestEnrichmentFaults(t *testing.T) {
	r := newRig(t, rigOptions{accounts: 700, inactive: 20, env: []string{"ENRICHMENT_TIMEOUT=1s"}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	run := r.planOnly(ctx)
	f := r.en.Faults()
	f.Throttle(1500 * time.Millisecond)
	f.ServerErrors.Store(10)
	f.Malformed.Store(3)
	f.UnknownIDs.Store(5)
	f.Slow(1500 * time.Millisecond)
	time.AfterFunc(2500*time.Millisecond, func() { f.Slow(0) })
	missing, wrong, extra, nomatch := dvsim.AccountID(11), dvsim.AccountID(12), dvsim.AccountID(13), dvsim.AccountID(14)
	f.Missing(missing)
	f.WrongType(wrong)
	f.ExtraFields(extra)
	f.NoMatch(nomatch)
	sum := r.process(ctx, run)
	checkCounts(t, sum, 700)
	reasons := map[string]string{}
	for _, fl := range sum.Failures {
		reasons[fl.ID] = fl.Reason
	}
	for id, want := range map[string]string{missing: "missing", wrong: "numberofemployees", nomatch: "no match"} {
		if !strings.Contains(reasons[id], want) {
			t.Errorf("record %s: failure reason %q, want one mentioning %q", id, reasons[id], want)
		}
	}
	if sum.Outcomes["failed"] != 3 {
		t.Errorf("outcomes %v, want exactly the 3 bad answers failed", sum.Outcomes)
	}
	row, _ := r.dv.Get(extra)
	if fmt.Sprint(row["_ownerid_value"]) == "00000000-0000-0000-0000-00000000beef" {
		t.Error("a field off the allow-list (ownerid) was written")
	}
	if sum.Stats.DroppedFields < 2 {
		t.Errorf("dropped fields %d, want the extra fields counted", sum.Stats.DroppedFields)
	}
}

// TestStorageRestartMidRun: Azurite is stopped and restarted (data persisted) while chunks run.
// The shared service-protection budget falls back to each instance's local throttle with the last
// known instance count (one warning per instance for the outage, one line when it is back), no
// request goes into a penalty, and nothing is lost.
func TestStorageRestartMidRun(t *testing.T) {
	r := newRig(t, rigOptions{accounts: 2000, inactive: 20, env: []string{"DVBULK_CHUNK_SIZE=100", "DVBULK_BUDGET_REFRESH=100ms", "DVBULK_BUDGET_HEARTBEAT=500ms"}})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	run := r.planOnly(ctx)
	time.AfterFunc(700*time.Millisecond, func() {
		r.az.Stop()
		time.Sleep(1500 * time.Millisecond)
		if err := r.az.Restart(); err != nil {
			t.Errorf("restart azurite: %v", err)
		}
	})
	sum := r.process(ctx, run)
	checkCounts(t, sum, 2000)
	r.checkEnriched()
	c := r.dv.Counters()
	if c.RequestsIntoPenalty != 0 || c.RequestsDuringRetryAfter != 0 {
		t.Errorf("%d requests into a running penalty, %d inside a Retry-After during the outage", c.RequestsIntoPenalty, c.RequestsDuringRetryAfter)
	}
	warned := 0
	for i := range 2 {
		var down, back int
		for _, line := range strings.Split(r.logs.String(), "\n") {
			if !strings.HasPrefix(line, fmt.Sprintf("[%d] ", i)) {
				continue
			}
			if strings.Contains(line, "shared service-protection state unreachable") {
				down++
				// The conservative ceiling: the share of the hint over the 2 instances last seen.
				if !strings.Contains(line, `"instances":2`) {
					t.Errorf("instance %d fell back without the last known instance count: %s", i, line)
				}
			}
			if strings.Contains(line, "shared service-protection state readable again") {
				back++
			}
		}
		if down > 1 || back != down {
			t.Errorf("instance %d logged the outage %d times and the recovery %d times, want at most once each, paired", i, down, back)
		}
		warned += down
	}
	if warned == 0 {
		t.Error("no instance noticed the outage of the shared budget's store")
	}
}

// TestPoisonAfterMaxDequeue: a chunk that fails on every delivery reaches the poison queue after
// maxDequeueCount deliveries, without a hot loop, and the run summary names it.
func TestPoisonAfterMaxDequeue(t *testing.T) {
	r := newRig(t, rigOptions{accounts: 400, inactive: 10, env: []string{"DVBULK_MAX_RETRIES=0", "DVBULK_CHUNK_SIZE=200"},
		queues: map[string]any{"visibilityTimeout": "00:00:01", "maxDequeueCount": 3}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	run := r.planOnly(ctx)
	r.dv.Faults().ServerErrors(1_000_000, 503) // Dataverse down for good
	// Serve until the queue has drained, not only until the summary exists: the summary is written
	// during the last chunk's final delivery, and stopping the host then abandons that delivery (its
	// message would never reach the poison queue).
	stop := r.serve(ctx)
	sum := r.waitSummary(ctx, run)
	if len(sum.DeadLettered) != 2 {
		t.Fatalf("dead-lettered chunks %+v, want both", sum.DeadLettered)
	}
	if err := r.host.Drain(ctx, time.Second); err != nil {
		t.Fatal(err)
	}
	stop()
	if p := r.host.Messages("dvbulk-chunks-poison"); len(p) != 2 {
		t.Errorf("poison queue holds %d messages, want 2", len(p))
	}
	deliveries := map[string][]time.Time{}
	for _, inv := range r.host.Invocations() {
		if inv.Function == "ChunkQueue" {
			deliveries[inv.MessageID] = append(deliveries[inv.MessageID], inv.Start)
		}
	}
	for id, ts := range deliveries {
		if len(ts) != 3 {
			t.Errorf("message %s delivered %d times, want maxDequeueCount=3", id, len(ts))
		}
		for i := 1; i < len(ts); i++ {
			if gap := ts[i].Sub(ts[i-1]); gap < 900*time.Millisecond {
				t.Errorf("message %s redelivered after %s: hot loop (visibilityTimeout is 1s)", id, gap)
			}
		}
	}
	if sum.Outcomes["failed"] != 320 || sum.Outcomes["unchanged"] != 80 {
		t.Errorf("outcomes %v, want the 320 unwritten records failed with the reason (and the 80 pre-enriched unchanged)", sum.Outcomes)
	}
}

// TestSecretsNeverLogged scans everything a run logs (instances' stdout/stderr, invocation logs, the
// summary) for the API key and the storage account key.
func TestSecretsNeverLogged(t *testing.T) {
	const apiKey = "ek_live_5up3r53cr3t"
	r := newRig(t, rigOptions{accounts: 200, inactive: 10, env: []string{"ENRICHMENT_API_KEY=" + apiKey, "ENRICHMENT_API_KEY_HEADER=x-company-key", "DVBULK_LOG_LEVEL=trace"}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// The simulator does not require the key here; what matters is what the product logs.
	sum := r.runTimer(ctx)
	checkCounts(t, sum, 200)
	var all strings.Builder
	all.WriteString(r.logs.String())
	for _, inv := range r.host.Invocations() {
		all.WriteString(strings.Join(inv.Logs, "\n"))
	}
	for _, secret := range []string{apiKey, "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq", "AccountKey=", "Bearer ", "sig="} {
		if strings.Contains(all.String(), secret) {
			t.Errorf("a secret (%.12s...) appears in the logs", secret)
		}
	}
	if all.Len() < 1000 {
		t.Errorf("only %d bytes of logs scanned: the scan would not catch anything", all.Len())
	}
}
